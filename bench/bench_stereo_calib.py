"""Stereo rig calibration on pairs left out of everything: recon's rule against OpenCV's recipe.

    python bench/bench_stereo_calib.py [--data ../shared/data] [--subsets 6] [--subset-size 9]
                                       [--synthetic NAME ...] [--folds 5] [--no-timing] [--candidates]
                                       [--timing-only]

Rigs: OpenCV's 13 sample pairs (``opencv-stereo-9x6``, 5 interleaved outer folds); random
subsets of them (``--subset-size`` pairs calibrate, the other pairs are held out of
everything); rendered rigs (:data:`RIGS`: other boards, lenses, blur and noise, 10-25 pairs;
``recon.synth.boards``; 5 outer folds). The board is detected once per image (OpenCV's
sector-based corners, "sb", and the same re-refined with ``cornerSubPix``, "subpix": recon's).

For every held-out group, each method is fitted on the training pairs only and the held-out
pairs' corners are rectified with its rig; the score is the RMS of their vertical disparity
(pixels), measured on the SB corners, on recon's corners and, for rendered rigs, on the TRUE
corners. ``opencv`` is OpenCV's textbook recipe (``calibrateCamera`` per camera with default
flags, ``stereoCalibrate`` with fixed intrinsics, ``stereoRectify``) fitted on the corners it is
measured on (SB corners for the SB column, recon's for recon's); ``recon`` is
``recon calibrate``'s rule (:func:`calib.stereo_select.choose_rig`, run inside each training
set, then :func:`calib.stereo_select.fit_rig`), which sees both corner sets. ``time`` is
:func:`calib.rig_calibration.calibrate_rig` on all pairs of the rig, from the image files
(detection, both cameras' calibrations and reports, the rule, the final fit).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rigs():
    """name -> (board, left camera, right camera, right_from_left, pose options, pairs, blur px, noise)."""
    from calib import Camera, Rigid3
    from calib.boards import BoardSpec
    from calib.transforms import matrix_from_axis_angle as aa

    return {
        "9x6, 25 pairs, k1 -0.25": (
            BoardSpec("chessboard", 9, 6, 0.03),
            Camera("OPENCV", 640, 480, [530, 530, 318.0, 242.0, -0.25, 0.10, 0.0008, -0.0005]),
            Camera("OPENCV", 640, 480, [536, 535, 324.0, 235.0, -0.22, 0.08, -0.0004, 0.0006]),
            Rigid3(aa([0.01, -0.015, 0.004]), [-0.09, 0.0008, 0.001]),
            {"distance": (0.3, 0.55), "max_tilt_deg": 35, "spread": 0.9}, 25, 0.8, 2.0),
        "7x5, wide f 340, k1 -0.30": (
            BoardSpec("chessboard", 7, 5, 0.04),
            Camera("OPENCV", 640, 480, [340, 340, 322.0, 238.0, -0.30, 0.09, 0.0, 0.0]),
            Camera("OPENCV", 640, 480, [345, 344, 316.0, 244.0, -0.28, 0.08, 0.0, 0.0]),
            Rigid3(aa([0.006, 0.01, -0.003]), [-0.12, 0.001, 0.0]),
            {"distance": (0.3, 0.6), "max_tilt_deg": 40, "spread": 0.9}, 15, 0.7, 2.0),
        "11x8, blur 1.5, noise 5": (
            BoardSpec("chessboard", 11, 8, 0.02),
            Camera("OPENCV", 640, 480, [600, 600, 320.0, 240.0, -0.10, 0.05, 0.0, 0.0]),
            Camera("OPENCV", 640, 480, [610, 608, 315.0, 245.0, -0.12, 0.06, 0.0, 0.0]),
            Rigid3(aa([-0.01, 0.02, 0.002]), [-0.08, 0.0, 0.0015]),
            {"distance": (0.35, 0.6), "max_tilt_deg": 30, "spread": 0.8}, 12, 1.5, 5.0),
        "9x6, 10 pairs, sharp": (
            BoardSpec("chessboard", 9, 6, 0.025),
            Camera("OPENCV", 640, 480, [520, 520, 319.5, 239.5, -0.12, 0.05, 0.0005, -0.0003]),
            Camera("OPENCV", 640, 480, [525, 524, 322.0, 236.0, -0.10, 0.04, 0.0, 0.0002]),
            Rigid3(aa([0.01, -0.02, 0.005]), [-0.1, 0.001, 0.0]),
            {"distance": (0.3, 0.5), "max_tilt_deg": 30, "spread": 0.9}, 10, 0.5, 1.0),
        "7x5 320x240, fronto-parallel (poorly conditioned)": (
            BoardSpec("chessboard", 7, 5, 0.03),
            Camera("OPENCV", 320, 240, [300, 300, 159.5, 119.5, -0.08, 0.02, 0.0, 0.0]),
            Camera("OPENCV", 320, 240, [305, 304, 162.0, 118.0, -0.07, 0.015, 0.0, 0.0]),
            Rigid3(aa([0.005, -0.01, 0.003]), [-0.06, 0.0005, 0.0]),
            {"distance": (0.6, 0.8), "max_tilt_deg": 3, "max_roll_deg": 5, "spread": 0.25}, 14, 0.7, 2.0),
    }


def render(name, spec, out: Path, seed: int = 7):
    from recon.synth.boards import stereo_board_poses, write_stereo_board_dataset

    board, L, R, rig, kw, n, blur, noise = spec
    poses = stereo_board_poses(board, L, R, rig, n, np.random.default_rng(seed), **kw)
    return write_stereo_board_dataset(out, board, L, R, rig, poses, blur_px=blur, image_noise=noise, seed=seed)


def detect_sets(left_paths, right_paths, board):
    """{"sb": (left obs, right obs), "subpix": (...)} of the pairs seen in both sets, and the size."""
    from calib.calibrate import calibrate_camera
    from calib.calibrate_images import detect_images, refine_run
    from calib.rig_calibration import pair_runs

    runs = {}
    for side, paths in (("left", left_paths), ("right", right_paths)):
        sb = detect_images(paths, board, refine=False)
        runs[side] = {"sb": sb, "subpix": refine_run(sb)}
    cams = [calibrate_camera(runs[s]["subpix"].observations, runs[s]["subpix"].image_size).camera
            for s in ("left", "right")]
    pairs = {c: pair_runs(left_paths, right_paths, runs["left"][c], runs["right"][c], *cams) for c in ("sb", "subpix")}
    assert [o.name for o in pairs["sb"].left] == [o.name for o in pairs["subpix"].left]
    return {c: (p.left, p.right) for c, p in pairs.items()}, runs["left"]["sb"].image_size


def true_set(sets, gt_path: Path):
    """The TRUE corners of a rendered rig with the ids of the detected ones (nearest true corner)."""
    from calib.calibrate import Observation

    gt = json.loads(gt_path.read_text())
    out = []
    for side, obs in (("left", sets["subpix"][0]), ("right", sets["subpix"][1])):
        views = []
        for o in obs:
            tc = np.asarray(gt["views"][int(Path(o.name).stem)][f"{side}_corners"])
            d = np.linalg.norm(o.corners[:, None] - tc[None], axis=2)
            views.append(Observation(o.name, tc[d.argmin(axis=1)], o.object_points, o.ids))
        out.append(views)
    return tuple(out)


CANDIDATES = ("recon", "joint", "opencv-joint")
"""Fixed recipes scored with ``--candidates`` on each corner set (the study behind the rule)."""


def methods_on(sets, size, train, folds, candidates=False):
    """The rigs of every method fitted on the ``train`` pairs: {method: rig}, recon's choice.
    ``candidates``: also every fixed recipe of :data:`CANDIDATES` on each corner set, and the
    former rule ("old": the lowest left-out score over recon, opencv, joint, joint-same-focal
    on each corner set, each set scored on its own corners), and joint / opencv fitted on the
    mean of the two corner sets ("avg")."""
    from calib.stereo_select import (
        FOLD_CRITERIA,
        RECIPES,
        RigRecipe,
        choose_rig,
        fit_rig,
        recipe,
        select_rig,
    )

    sub = {c: ([L[i] for i in train], [R[i] for i in train]) for c, (L, R) in sets.items() if c != "true"}
    rigs = {f"opencv/{c}": fit_rig(*sub[c], size, recipe("opencv"), criteria=FOLD_CRITERIA) for c in sub}
    choice = choose_rig(sub, size, folds=folds, threshold_px=1.0)
    rigs["recon"] = fit_rig(*sub[choice.corners], size, recipe(choice.recipe))
    if candidates:
        extra = {"opencv-joint": RigRecipe("opencv-joint", "OpenCV's per-camera fits, then joint", per_camera="opencv",
                                           joint=True)}
        for name in CANDIDATES:
            for c, (tl, tr) in sub.items():
                try:
                    rigs[f"{name}/{c}"] = fit_rig(tl, tr, size, extra.get(name) or recipe(name))
                except Exception as e:  # noqa: BLE001 - a recipe that cannot be fitted is reported, not fatal
                    print(f"    {name}/{c} failed: {e}")
        avg = _average_sets(sub["sb"], sub["subpix"])
        for name in ("joint", "opencv"):
            rigs[f"{name}/avg"] = fit_rig(*avg, size, recipe(name))
        old = {c: select_rig(*sub[c], size, recipes=RECIPES, folds=folds) for c in sub}
        c = min(old, key=lambda k: old[k].score(old[k].chosen).rms_px)
        rigs["old"] = fit_rig(*sub[c], size, recipe(old[c].chosen))
        print(f"    old rule picks {old[c].chosen}/{c}", flush=True)
    return rigs, choice


def _average_sets(a, b):
    """(left, right) observations whose corners are the mean of the two corner sets' (same ids)."""
    from calib.calibrate import Observation

    out = []
    for va, vb in zip(a, b):
        views = []
        for oa, ob in zip(va, vb):
            common, ia, ib = np.intersect1d(oa.ids, ob.ids, return_indices=True)
            mean = 0.5 * (oa.corners[ia] + ob.corners[ib])
            views.append(Observation(oa.name, mean, oa.object_points[ia], common))
        out.append(views)
    return tuple(out)


def score(rig, sets, test, key):
    from calib.stereo_select import pair_vertical_disparity

    L, R = sets[key]
    return np.concatenate([pair_vertical_disparity(rig, L[i], R[i]) for i in test])


def evaluate(sets, size, groups, folds, candidates=False):
    """{(method, eval set): RMS px over every held-out corner}, the choices made."""
    dv, chosen = {}, []
    n = len(sets["sb"][0])
    for test in groups:
        train = [i for i in range(n) if i not in test]
        rigs, choice = methods_on(sets, size, train, folds, candidates)
        chosen.append(f"{choice.recipe}/{choice.corners}")
        for m, rig in rigs.items():
            for e in sets:
                dv.setdefault((m, e), []).append(score(rig, sets, test, e))
    return {k: float(np.sqrt(np.mean(np.concatenate(v) ** 2))) for k, v in dv.items()}, chosen


def time_library(left_paths, right_paths, board):
    from calib.rig_calibration import calibrate_rig

    t = time.perf_counter()
    rig = calibrate_rig(left_paths, right_paths, board)
    return time.perf_counter() - t, f"{rig.recipe}/{rig.corners_used}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--subsets", type=int, default=6, help="random subsets of the real pairs (0: none)")
    ap.add_argument("--subset-size", type=int, default=9)
    ap.add_argument("--synthetic", nargs="*", default=None, help="rendered rigs by name (default: all)")
    ap.add_argument("--no-timing", action="store_true", help="skip the end-to-end time per rig")
    ap.add_argument("--timing-only", action="store_true",
                    help="only the end-to-end time per rig (calibrate_rig from the image files) and its choice")
    ap.add_argument("--candidates", action="store_true",
                    help="also score fixed recipes on each corner set and the former rule (slower)")
    args = ap.parse_args(argv)
    from calib.boards import BoardSpec
    from calib.stereo_select import _folds

    rows = []

    def report(name, sets, size, groups, t, chosen_all):
        if args.timing_only:
            print(f"  {name}: calibrate_rig {t:.1f} s, chose {chosen_all}", flush=True)
            return
        res, chosen = evaluate(sets, size, groups, args.folds, args.candidates)
        rows.append((name, len(sets["sb"][0]), res, chosen, t, chosen_all))
        print("  " + name + ": " + ", ".join(f"{m} on {e} {v:.4f}" for (m, e), v in sorted(res.items()))
              + f" | chosen {chosen} | time {t:.1f} s", flush=True)

    real = args.data / "opencv-stereo-9x6"
    if real.is_dir():
        lp, rp = sorted(str(p) for p in real.glob("left*.jpg")), sorted(str(p) for p in real.glob("right*.jpg"))
        board = BoardSpec("chessboard", 9, 6, 1.0)
        sets, size = detect_sets(lp, rp, board)
        t, ch = (float("nan"), "") if args.no_timing else time_library(lp, rp, board)
        n = len(sets["sb"][0])
        report(f"real opencv-stereo-9x6 ({n} pairs, {args.folds} folds)", sets, size, _folds(n, args.folds), t, ch)
        rng = np.random.default_rng(0)
        for k in range(0 if args.timing_only else args.subsets):
            train = sorted(rng.choice(n, args.subset_size, replace=False).tolist())
            test = [i for i in range(n) if i not in train]
            sub_sets = {c: ([L[i] for i in train + test], [R[i] for i in train + test]) for c, (L, R) in sets.items()}
            m = len(train)
            report(f"real subset {k}: {m} pairs calibrate, pairs {test} held out", sub_sets, size,
                   [list(range(m, m + len(test)))], float("nan"), "")
    else:
        print(f"(no {real}: real rigs skipped)")
    specs = rigs()
    names = list(specs) if args.synthetic is None else args.synthetic
    with tempfile.TemporaryDirectory() as tmp:
        for k, name in enumerate(names):
            board = specs[name][0]
            d = render(name, specs[name], Path(tmp) / f"rig{k}")
            lp, rp = sorted(str(p) for p in (d / "left").glob("*.png")), sorted(str(p) for p in (d / "right").glob("*.png"))
            sets, size = detect_sets(lp, rp, board)
            sets["true"] = true_set(sets, d / "gt.json")
            t, ch = (float("nan"), "") if args.no_timing else time_library(lp, rp, board)
            n = len(sets["sb"][0])
            report(f"rendered {name} ({n} pairs, {args.folds} folds)", sets, size, _folds(n, args.folds), t, ch)
    if args.timing_only:
        return 0
    print()
    print("left-out rectified vertical disparity RMS (px): each method fitted on the training pairs, measured on "
          "the held-out pairs' SB corners / recon's corners / the true corners (rendered rigs)")
    print("| rig | pairs | OpenCV on SB | recon on SB | OpenCV on recon's | recon on recon's | OpenCV on true "
          "(SB-fit / recon's-fit) | recon on true | recon's choices | time per rig (s) |")
    print("|" + "---|" * 10)
    for name, n, res, chosen, t, ch in rows:
        tru = (f"{res[('opencv/sb', 'true')]:.4f} / {res[('opencv/subpix', 'true')]:.4f}", f"{res[('recon', 'true')]:.4f}") \
            if ("recon", "true") in res else ("", "")

        def mark(a, b):
            return f"**{a:.4f}**" if a <= b else f"{a:.4f} (above)"

        counts = {c: chosen.count(c) for c in dict.fromkeys(chosen)}
        print(f"| {name} | {n} | {res[('opencv/sb', 'sb')]:.4f} | {mark(res[('recon', 'sb')], res[('opencv/sb', 'sb')])} | "
              f"{res[('opencv/subpix', 'subpix')]:.4f} | "
              f"{mark(res[('recon', 'subpix')], res[('opencv/subpix', 'subpix')])} | {tru[0]} | {tru[1]} | "
              + ", ".join(f"{c} x{k}" for c, k in counts.items()) + f" | {t:.1f} |")
    methods = sorted({m for _, _, res, *_ in rows for m, _ in res} - {"recon", "opencv/sb", "opencv/subpix"})
    if methods:
        print()
        print("fixed recipes / corner sets and the former rule, held-out RMS (px) on SB / recon's [/ true] corners")
        print("| rig | " + " | ".join(methods) + " |")
        print("|" + "---|" * (len(methods) + 1))
        for name, _, res, *_ in rows:
            cells = [" / ".join(f"{res[(m, e)]:.4f}" for e in ("sb", "subpix", "true") if (m, e) in res)
                     for m in methods]
            print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
