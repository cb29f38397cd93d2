"""Stereo rig calibration on left-out pairs: recon against OpenCV's textbook recipe (and mrcal).

    python bench/bench_stereo_calib.py [--data ../shared/data] [--seeds 1 2] [--folds 5]

For each set (OpenCV's own 13 sample pairs in ``opencv-stereo-9x6``; rendered well-conditioned
9x6 captures at 640x480; rendered poorly conditioned 7x5 captures at 320x240, boards within 3
degrees of fronto-parallel in the middle of the image), the corners are detected once by recon's
detector and every recipe is scored on the same corners and the same folds: the RMS of the
vertical disparity of the corners of pairs LEFT OUT of the calibration, after rectification
(:func:`calib.stereo_select.leftout_vertical_disparity`).

Columns: ``opencv`` (calibrateCamera per camera with default flags, stereoCalibrate with fixed
intrinsics, stereoRectify), ``recon-old`` (recon before the recipe selection: its per-camera
calibration, rig with fixed intrinsics), ``recon`` (what ``recon calibrate`` now does: the recipe
chosen by the left-out score, named in ``chosen``), ``ratio`` = recon / opencv, and ``nested``:
recon's selection run inside each fold (the chosen recipe picked on the training pairs only,
scored on the held-out ones), which is free of the optimism of choosing on the same folds.

With ``mrcal-calibrate-cameras`` on the PATH (Debian ``mrcal``), the mono table adds mrcal's
LENSMODEL_OPENCV8 fit of the left camera beside OpenCV's on the same corners (fx and the RMS).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def detect_pairs(left_paths, right_paths, board):
    from calib.calibrate import calibrate_camera
    from calib.calibrate_images import detect_images
    from calib.stereo import align_symmetric_labels, pair_observations

    rl = detect_images(left_paths, board)
    rr = detect_images(right_paths, board)
    oL = {o.name: o for o in rl.observations}
    oR = {o.name: o for o in rr.observations}
    keep = [(a, b) for a, b in zip(left_paths, right_paths) if a in oL and b in oR]
    PL = [oL[a] for a, _ in keep]
    PR = [oR[b] for _, b in keep]
    cl = calibrate_camera(rl.observations, rl.image_size).camera
    cr = calibrate_camera(rr.observations, rr.image_size).camera
    PR, _ = align_symmetric_labels(PL, PR, cl, cr, rl.board.cols, rl.board.rows)
    PL, PR, _ = pair_observations(PL, PR)
    return PL, PR, rl.image_size, len(left_paths)


def synthetic_sets(seeds, tmp: Path):
    from calib import Camera, Rigid3
    from calib.boards import BoardSpec
    from calib.transforms import matrix_from_axis_angle
    from recon.synth.boards import stereo_board_poses, write_stereo_board_dataset

    good = (BoardSpec("chessboard", 9, 6, 0.03),
            Camera("OPENCV", 640, 480, [520, 520, 319.5, 239.5, -0.12, 0.05, 0.0005, -0.0003]),
            Camera("OPENCV", 640, 480, [525, 524, 322.0, 236.0, -0.10, 0.04, 0.0, 0.0002]),
            Rigid3(matrix_from_axis_angle([0.01, -0.02, 0.005]), [-0.1, 0.001, 0.0]),
            dict(distance=(0.35, 0.6), max_tilt_deg=35, spread=0.9))
    poor = (BoardSpec("chessboard", 7, 5, 0.03),
            Camera("OPENCV", 320, 240, [300, 300, 159.5, 119.5, -0.08, 0.02, 0.0, 0.0]),
            Camera("OPENCV", 320, 240, [305, 304, 162.0, 118.0, -0.07, 0.015, 0.0, 0.0]),
            Rigid3(matrix_from_axis_angle([0.005, -0.01, 0.003]), [-0.06, 0.0005, 0.0]),
            dict(distance=(0.6, 0.8), max_tilt_deg=3, max_roll_deg=5, spread=0.25))
    for kind, (board, L, R, rig, kw) in (("synthetic well-conditioned 9x6 640x480", good),
                                        ("synthetic poorly conditioned 7x5 320x240", poor)):
        for seed in seeds:
            poses = stereo_board_poses(board, L, R, rig, 14, np.random.default_rng(seed), **kw)
            d = write_stereo_board_dataset(tmp / f"{kind[:14]}{seed}".replace(" ", "_"), board, L, R, rig, poses,
                                           blur_px=0.7, image_noise=2.0, seed=seed)
            yield (f"{kind} seed {seed}", sorted(str(p) for p in (d / "left").glob("*.png")),
                   sorted(str(p) for p in (d / "right").glob("*.png")), board)


def nested_selection(PL, PR, size, folds):
    """Recon's selection inside each fold: choose on the training pairs, score on the held-out."""
    from calib.stereo_select import _folds, fit_rig, pair_vertical_disparity, recipe, select_rig

    n = len(PL)
    dv = []
    for g in _folds(n, folds):
        train = [i for i in range(n) if i not in g]
        tl, tr = [PL[i] for i in train], [PR[i] for i in train]
        name = select_rig(tl, tr, size, folds=folds).chosen
        rig = fit_rig(tl, tr, size, recipe(name))
        dv += [pair_vertical_disparity(rig, PL[i], PR[i]) for i in g]
    dv = np.concatenate(dv)
    return float(np.sqrt(np.mean(dv * dv)))


def mrcal_fx(obs, size, board, square):
    """mrcal's LENSMODEL_OPENCV8 fx and RMS on the given corners (corners cache), or None."""
    import subprocess

    exe = shutil.which("mrcal-calibrate-cameras")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rows = ["# filename x y level"]
        for k, o in enumerate(obs):
            name = f"img{k:03d}.png"
            order = np.argsort(o.ids)
            for x, y in o.corners[order]:
                rows.append(f"{name} {x:.4f} {y:.4f} 0")
        (d / "corners.vnl").write_text("\n".join(rows) + "\n")
        for k in range(len(obs)):  # mrcal reads the image size from one image
            import cv2

            cv2.imwrite(str(d / f"img{k:03d}.png"), np.zeros((size[1], size[0]), np.uint8))
        f0 = 0.9 * size[0]
        cmd = [exe, "--corners-cache", "corners.vnl", "--lensmodel", "LENSMODEL_OPENCV8",
               "--object-width-n", str(board.cols), "--object-height-n", str(board.rows),
               "--object-spacing", str(square), "--focal", f"{f0:.1f}", "--outdir", str(d), "img*.png"]
        p = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=600)
        models = list(d.glob("*.cameramodel"))
        if p.returncode != 0 or not models:
            return f"failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}"
        text = models[0].read_text()
        import ast
        import re

        m = re.search(r"'intrinsics':\s*\[([^\]]*)\]", text)
        intr = ast.literal_eval("[" + m.group(1) + "]") if m else None
        rms = re.search(r"RMS reprojection error:\s*([0-9.]+)", p.stdout + p.stderr)
        return {"fx": intr[0] if intr else float("nan"), "rms": float(rms.group(1)) if rms else float("nan")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-nested", action="store_true", help="skip the nested (selection inside each fold) column")
    args = ap.parse_args(argv)
    from calib.boards import BoardSpec
    from calib.stereo_select import leftout_vertical_disparity, recipe, select_rig

    sets = []
    real = args.data / "opencv-stereo-9x6"
    if real.is_dir():
        sets.append(("real opencv-stereo-9x6 (13 pairs)", sorted(str(p) for p in real.glob("left*.jpg")),
                     sorted(str(p) for p in real.glob("right*.jpg")), BoardSpec("chessboard", 9, 6, 1.0)))
    else:
        print(f"(no {real}: real set skipped)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, lp, rp, board in list(sets) + list(synthetic_sets(args.seeds, Path(tmp))):
            t = time.perf_counter()
            PL, PR, size, n = detect_pairs(lp, rp, board)
            sel = select_rig(PL, PR, size, folds=args.folds)
            old = leftout_vertical_disparity(PL, PR, size, recipe("recon"), folds=args.folds)
            ocv = sel.score("opencv")
            best = sel.score(sel.chosen)
            nested = float("nan") if args.no_nested else nested_selection(PL, PR, size, args.folds)
            rows.append((name, f"{len(PL)}/{n}", ocv.rms_px, old.rms_px, best.rms_px, sel.chosen,
                         best.rms_px / ocv.rms_px, nested, time.perf_counter() - t))
            print("  " + " | ".join(str(x) for x in rows[-1]), flush=True)
            mr = mrcal_fx(PL, size, board, board.square)
            if mr is not None:
                print(f"  {name}: mrcal LENSMODEL_OPENCV8 left camera: {mr}")
    print()
    print(f"left-out rectified vertical disparity RMS (px), {args.folds} folds, same corners and folds for every column")
    hdr = f"| set | pairs | opencv | recon-old | recon | chosen | ratio recon/opencv | nested | time (s) |"
    print(hdr)
    print("|" + "---|" * 9)
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.4g} | {r[3]:.4g} | {r[4]:.4g} | {r[5]} | {r[6]:.3f} | {r[7]:.4g} | "
              f"{r[8]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
