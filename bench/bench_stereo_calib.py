"""Stereo rig calibration on left-out pairs: recon against OpenCV's textbook recipe (and mrcal).

    python bench/bench_stereo_calib.py [--data ../shared/data] [--seeds 1 2] [--folds 5]

For each set (OpenCV's own 13 sample pairs in ``opencv-stereo-9x6``; rendered well-conditioned
9x6 captures at 640x480; rendered poorly conditioned 7x5 captures at 320x240, boards within 3
degrees of fronto-parallel in the middle of the image), the corners are detected once by recon's
detector and every recipe is scored on the same corners and the same folds: the RMS of the
vertical disparity of the corners of pairs LEFT OUT of the calibration, after rectification
(:func:`calib.stereo_select.leftout_vertical_disparity`).

Columns: ``opencv`` (calibrateCamera per camera with default flags, stereoCalibrate with fixed
intrinsics, stereoRectify) on recon's corners, ``opencv (SB corners)`` the same on the
sector-based corners alone (what plain ``findChessboardCornersSB`` users get), ``recon-old`` (recon before the recipe selection: its per-camera
calibration, rig with fixed intrinsics), ``recon`` (what ``recon calibrate`` now does: the recipe
chosen by the left-out score, then ``--corners auto``: the SB corners when they score lower;
named in ``chosen``), ``ratio`` = recon / the better opencv column, and ``nested``:
recon's selection run inside each fold (the chosen recipe picked on the training pairs only,
scored on the held-out ones), which is free of the optimism of choosing on the same folds.

With ``mrcal-calibrate-cameras`` on the PATH (Debian ``mrcal``), ``mrcal`` is scored the same
way: both cameras in one mrcal solve (LENSMODEL_OPENCV8, its own outlier rejection and board
warp) per fold from the same corners (``--corners-cache``), rectified with OpenCV's
stereoRectify; the row's note gives its in-sample figure and left fx.
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


def detect_pairs(left_paths, right_paths, board, refine=True):
    from calib.calibrate import calibrate_camera
    from calib.calibrate_images import detect_images
    from calib.stereo import align_symmetric_labels, pair_observations

    rl = detect_images(left_paths, board, refine=refine)
    rr = detect_images(right_paths, board, refine=refine)
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
            {"distance": (0.35, 0.6), "max_tilt_deg": 35, "spread": 0.9})
    poor = (BoardSpec("chessboard", 7, 5, 0.03),
            Camera("OPENCV", 320, 240, [300, 300, 159.5, 119.5, -0.08, 0.02, 0.0, 0.0]),
            Camera("OPENCV", 320, 240, [305, 304, 162.0, 118.0, -0.07, 0.015, 0.0, 0.0]),
            Rigid3(matrix_from_axis_angle([0.005, -0.01, 0.003]), [-0.06, 0.0005, 0.0]),
            {"distance": (0.6, 0.8), "max_tilt_deg": 3, "max_roll_deg": 5, "spread": 0.25})
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


def _read_cameramodel(path: Path):
    """(Camera FULL_OPENCV, right_from_ref Rigid3) of an mrcal LENSMODEL_OPENCV8 .cameramodel."""
    import ast

    from calib import Camera, Rigid3

    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    start = text.index("{")
    d = ast.literal_eval(text[start:text.rindex("}") + 1])
    w, h = d["imagersize"]
    cam = Camera("FULL_OPENCV", int(w), int(h), list(d["intrinsics"][:12]))  # same order as OPENCV8
    rt = np.asarray(d["extrinsics"], dtype=np.float64)  # rt_fromref: cam_from_ref (rvec, t)
    return cam, Rigid3.from_axis_angle(rt[:3], rt[3:])


def run_mrcal(cameras, size, board):
    """``mrcal-calibrate-cameras`` (LENSMODEL_OPENCV8) on the corners of one or more cameras in
    ONE solve (``cameras``: per camera, a list of Observation; view k of every camera taken at
    the same moment). Returns [(Camera FULL_OPENCV, cam_from_camera0 Rigid3)] per camera, or None
    when mrcal is not installed; RuntimeError when it fails."""
    import subprocess

    import cv2

    exe = shutil.which("mrcal-calibrate-cameras")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rows = ["# filename x y level"]
        blank = np.zeros((size[1], size[0]), np.uint8)  # mrcal reads the image size from the files
        for c, views in enumerate(cameras):
            for k, o in enumerate(views):
                name = f"cam{c}-{k:03d}.png"
                full = np.full((board.rows * board.cols, 2), -1.0)
                full[o.ids] = o.corners
                for x, y in full:
                    rows.append(f"{name} {x:.4f} {y:.4f} {0 if x >= 0 else '-'}")
                cv2.imwrite(str(d / name), blank)
        (d / "corners.vnl").write_text("\n".join(rows) + "\n")
        cmd = [exe, "--corners-cache", "corners.vnl", "--lensmodel", "LENSMODEL_OPENCV8",
               "--object-width-n", str(board.cols), "--object-height-n", str(board.rows),
               "--object-spacing", str(board.square), "--focal", f"{0.9 * size[0]:.1f}", "--outdir", str(d),
               *[f"cam{c}-*.png" for c in range(len(cameras))]]
        p = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=900, check=False)
        models = [d / f"camera-{c}.cameramodel" for c in range(len(cameras))]
        if p.returncode != 0 or not all(m.is_file() for m in models):
            raise RuntimeError("mrcal failed: " + " ".join((p.stderr or p.stdout).strip().splitlines()[-2:]))
        return [_read_cameramodel(m) for m in models]


def mrcal_rig(PL, PR, size, board):
    """Both cameras in one mrcal solve: a rig with .left .right .right_from_left .rectification
    (OpenCV's stereoRectify), or None when mrcal is absent."""
    from types import SimpleNamespace

    from calib.stereo import rectify

    out = run_mrcal([PL, PR], size, board)
    if out is None:
        return None
    (left, _), (right, right_from_left) = out
    return SimpleNamespace(left=left, right=right, right_from_left=right_from_left,
                           rectification=rectify(left, right, right_from_left))


def mrcal_leftout(PL, PR, size, board, folds):
    """mrcal as a rig peer, scored like the recipes: (left-out vertical RMS px, in-sample px, left fx)."""
    from calib.stereo_select import _folds, pair_vertical_disparity

    n = len(PL)
    dv = []
    for g in _folds(n, folds):
        train = [i for i in range(n) if i not in g]
        rig = mrcal_rig([PL[i] for i in train], [PR[i] for i in train], size, board)
        if rig is None:
            return None
        dv += [pair_vertical_disparity(rig, PL[i], PR[i]) for i in g]
    full = mrcal_rig(PL, PR, size, board)
    ins = np.concatenate([pair_vertical_disparity(full, a, b) for a, b in zip(PL, PR)])
    dv = np.concatenate(dv)
    return float(np.sqrt(np.mean(dv * dv))), float(np.sqrt(np.mean(ins * ins))), float(full.left.params[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-nested", action="store_true", help="skip the nested (selection inside each fold) column")
    ap.add_argument("--no-mrcal", action="store_true", help="skip mrcal even when it is installed")
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
            SL, SR, _, _ = detect_pairs(lp, rp, board, refine=False)
            sel = select_rig(PL, PR, size, folds=args.folds)
            old = leftout_vertical_disparity(PL, PR, size, recipe("recon"), folds=args.folds)
            ocv = sel.score("opencv")
            ocv_sb = leftout_vertical_disparity(SL, SR, size, recipe("opencv"), folds=args.folds)
            best = sel.score(sel.chosen)
            chosen = sel.chosen
            sb = leftout_vertical_disparity(SL, SR, size, recipe(sel.chosen), folds=args.folds)
            if not sb.failed and sb.rms_px < best.rms_px and len(SL) >= len(PL):  # recon calibrate's --corners auto
                best, chosen = sb, f"{sel.chosen} (SB corners)"
            nested = float("nan") if args.no_nested else nested_selection(PL, PR, size, args.folds)
            try:
                mr = None if args.no_mrcal else mrcal_leftout(PL, PR, size, board, args.folds)
            except RuntimeError as e:
                mr = (float("nan"), float("nan"), float("nan"))
                print(f"  {name}: {e}")
            mr = mr or (float("nan"),) * 3
            rows.append((name, f"{len(PL)}/{n}", ocv.rms_px, ocv_sb.rms_px, old.rms_px, best.rms_px, chosen,
                         best.rms_px / min(ocv.rms_px, ocv_sb.rms_px), nested, mr[0], time.perf_counter() - t))
            print("  " + " | ".join(str(x) for x in rows[-1]) + f" | mrcal in-sample {mr[1]:.4g} fx {mr[2]:.2f}",
                  flush=True)
    print()
    print(f"left-out rectified vertical disparity RMS (px), {args.folds} folds, same corners and folds for every column")
    hdr = ("| set | pairs | opencv | opencv (SB corners) | recon-old | recon | chosen | ratio recon / best opencv | "
           "nested | mrcal | time (s) |")
    print(hdr)
    print("|" + "---|" * 11)
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.4g} | {r[3]:.4g} | {r[4]:.4g} | {r[5]:.4g} | {r[6]} | {r[7]:.3f} | "
              f"{r[8]:.4g} | {r[9]:.4g} | {r[10]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
