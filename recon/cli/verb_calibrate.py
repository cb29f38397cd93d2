"""`recon calibrate`: camera (or stereo rig) calibration from board photos."""

from __future__ import annotations

import argparse

from recon.cli._style import add_output

NAME = "calibrate"
HELP = "calibrate a camera or a stereo rig from photos of a chessboard / ChArUco / circle grid"
ORDER = 20
DESCRIPTION = """\
Calibrate a camera from photos of a calibration board (OpenCV's solver, with outlier rejection,
parameter uncertainties, a projection-uncertainty map, coverage advice and model selection).

Boards (--board):
  chessboard:COLSxROWS[:SQUARE]        inner corners (a chess board with 8x8 squares is 7x7);
                                       COLSxROWS may be 'auto' (counted in the images)
  charuco:COLSxROWS:SQUARE:MARKER[:DICT]  squares, square and marker size, ArUco dictionary
                                       (e.g. 5X5_100; omitted: several common ones are tried)
  circles:COLSxROWS:SPACING            asymmetric circle grid (OpenCV layout, e.g. 4x11)

Mono:    recon calibrate photos/*.jpg --board chessboard:9x6:0.025 -o calib_out
Stereo:  recon calibrate --left left/*.png --right right/*.png --board charuco:7x5:0.04:0.03 -o rig
         (pairs are the i-th left and i-th right image in sorted order; each camera is first
          calibrated alone, then the rig)

Stereo rigs are judged by the vertical disparity of the board corners after rectification, on
pairs LEFT OUT of the calibration (--folds groups, default 5). Several recipes are scored that
way (--rig-recipe auto, the default): recon's per-camera calibration with the rig fitted on
fixed intrinsics ("recon"), OpenCV's textbook recipe ("opencv"), joint refinement ("joint"),
and a joint fit with one focal length for captures that cannot pin the focal length
("joint-same-focal"); the best is kept and every score is in report.json.
Quality gate: when the rectified vertical disparity (in-sample or left-out) is beyond what the
corner noise explains (above max(--max-vertical-px, 3 x the expected), the files are still
written, marked failed (report.json "status": "failed", calibration.yaml calibration_status),
the cause and the advice are printed, and the exit status is 3.
  recon calibrate --left L/*.png --right R/*.png --board chessboard:7x5:0.03 -o rig --folds 4
  recon calibrate --left L/*.png --right R/*.png --board chessboard:9x6 -o rig --rig-recipe opencv

Outputs in OUT: calibration.yaml (cv2.FileStorage: K, D; stereo: K1 D1 K2 D2 R T E F R1 R2 P1
P2 Q), cameras.txt (COLMAP camera line, principal point +0.5 for COLMAP's convention),
report.json (rms_px, model, params, param_std, views_used, views_rejected with reasons, ...),
residuals.png, coverage.png, uncertainty.png, view_errors.png (stereo: per camera in left/ and
right/). Every image that is not used is printed with the reason and listed in report.json.
"""

MODELS = ("auto", "SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", metavar="IMAGES",
                   help="board photos (files, folders or quoted globs) for a mono calibration")
    p.add_argument("--board", required=True, help="board spec, see above")
    add_output(p, "output folder")
    p.add_argument("--model", default="OPENCV",
                   help="camera model: auto (cross-validated; the simplest, most conventional model "
                        "unless a richer one is better by more than one standard error) or one of "
                        + ", ".join(MODELS[1:]) + " (default OPENCV)")
    p.add_argument("--left", nargs="+", metavar="IMG", help="stereo: left images (files, folders or quoted globs)")
    p.add_argument("--right", nargs="+", metavar="IMG", help="stereo: right images, paired with --left in sorted order")
    p.add_argument("--joint", action="store_true",
                   help="stereo: same as --rig-recipe joint (both cameras' intrinsics refined with the rig)")
    p.add_argument("--rig-recipe", default="auto", metavar="NAME",
                   help="stereo: auto (chosen by the left-out vertical disparity, default) or one of "
                        "recon, opencv, joint, joint-same-focal (joint-centred-k1, joint-centred, centred-k1, pinhole-same-focal on request)")
    p.add_argument("--folds", type=int, default=5, help="stereo: folds of the left-out evaluation (5)")
    p.add_argument("--corners", choices=("auto", "subpix", "sb"), default="auto",
                   help="chessboard corners: sb = OpenCV's sector-based detector alone, subpix = re-refined "
                        "with cornerSubPix; auto (default) = subpix for one camera, and for a rig the one "
                        "with the lower left-out vertical disparity")
    p.add_argument("--max-vertical-px", type=float, default=1.0,
                   help="stereo quality gate: fail above max(this, 3 x the corner-noise expectation) (1.0 px)")
    p.add_argument("--alpha", type=float, default=0.0,
                   help="stereo rectification: 0 keeps only valid pixels, 1 keeps all source pixels")
    p.add_argument("--no-reject", action="store_true", help="keep every corner and view (no outlier rejection)")
    p.add_argument("--corner-k", type=float, default=5.0, help="corner outlier threshold in robust sigmas (5)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG pictures")
    p.add_argument("--workers", type=int, default=None, help="detection threads (default: up to 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def expand_images(items) -> list[str]:
    """Files, folders (their images, sorted) and globs (sorted) -> list of paths, in order."""
    import glob
    import os

    out = []
    for it in items or []:
        if os.path.isdir(it):
            out += sorted(os.path.join(it, f) for f in os.listdir(it) if f.lower().endswith(IMAGE_EXTS))
        elif any(ch in it for ch in "*?["):
            hits = sorted(glob.glob(it))
            if not hits:
                raise FileNotFoundError(f"{it}: no file matches this pattern")
            out += hits
        else:
            out.append(it)
    return out


def _print_result(res, failures, title=""):
    import sys

    cam = res.camera
    print(f"{title}model {cam.model}, {cam.width}x{cam.height}, RMS {res.rms_px:.4f} px over "
          f"{len(res.views)} views ({sum(len(v.corners) for v in res.views)} corners)")
    for n, v, s in zip(cam.spec.param_names, cam.params, res.param_std):
        print(f"  {n:>3} = {v: .6g}  +- {s:.3g}")
    if res.model_scores:
        print("  model selection (cross-validated RMS +- its standard error over the folds, px): " + ", ".join(
            f"{s.model} {s.cv_rms_px:.4f} +- {s.cv_rms_se_px:.4f}" if not s.failed else f"{s.model} failed"
            for s in res.model_scores))
        if res.model_rule:
            print(f"  {res.model_rule}")
    dropped = list(failures) + list(res.rejected_views)
    if dropped:
        print(f"  {len(dropped)} view(s) not used:", file=sys.stderr)
        for r in dropped:
            print(f"    {r.name}: {r.reason}", file=sys.stderr)
    if res.rejected_corners:
        print(f"  {len(res.rejected_corners)} outlier corner(s) rejected (listed in report.json)")


def _calibrate_one(paths, board, config, out_dir, args, title="", pictures=None):
    import json

    import numpy as np

    from calib.calibrate import (
        CalibrationError,
        calibrate_camera,
        coverage_map,
        projection_uncertainty,
    )
    from calib.calibrate_images import detect_images
    from calib.files import colmap_camera_line, report_dict, write_opencv_yaml

    run = detect_images(paths, board, progress=not args.quiet, workers=args.workers,
                        refine=getattr(args, "corners", "auto") != "sb")
    try:
        res = calibrate_camera(run.observations, run.image_size, config)
    except CalibrationError as e:
        if not run.failures:
            raise
        lines = "\n".join(f"  {r.name}: {r.reason}" for r in run.failures)
        raise CalibrationError(f"{e}\nimages not used:\n{lines}") from None
    unc = projection_uncertainty(res)
    cov = coverage_map(res, uncertainty=unc)
    leftout = _mono_leftout(run.observations, run.image_size, res, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    if pictures is not None:  # drawn in the picture process while the files below are written
        pictures.submit(res, out_dir, uncertainty=unc, coverage=cov,
                        rejected=list(run.failures) + list(res.rejected_views))
    report = report_dict(res, detection_failures=run.failures, uncertainty=unc, coverage=cov, board=str(run.board),
                         extra={"leftout": leftout} if leftout else None)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    write_opencv_yaml(out_dir / "calibration.yaml", res.camera, rms_px=res.rms_px)
    (out_dir / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        "# (COLMAP convention: principal point relative to the top-left pixel CORNER)\n"
        + colmap_camera_line(res.camera) + "\n")
    _print_result(res, run.failures, title)
    if leftout and leftout.get("rms_px") is not None:
        print(f"  left-out reprojection RMS {leftout['rms_px']:.4f} px ({leftout['folds']} folds of held-out views)")
    print(f"  projection uncertainty: centre {unc.at_center():.3f} px, max {float(np.nanmax(unc.std_px)):.3f} px")
    for a in cov.advice:
        print(f"  advice: {a}")
    return run, res, report


def _mono_leftout(observations, image_size, res, config) -> dict | None:
    """Left-out reprojection RMS of the chosen model (views held out in folds, their poses
    re-fitted with intrinsics from the other views); None with fewer than 4 views."""
    import math

    from calib.calibrate import select_model

    if res.model_scores:  # --model auto already cross-validated every candidate
        s = next((s for s in res.model_scores if s.model == res.camera.model), None)
    elif len(observations) >= 4:
        s = select_model(list(observations), image_size, (res.camera.model,), folds=config.cv_folds,
                         extra_flags=config.extra_flags)[0]
    else:
        return None
    if s is None:
        return None
    ok = not s.failed and math.isfinite(s.cv_rms_px)
    return {"method": "reprojection RMS over held-out views (intrinsics from the other views, pose re-fitted)",
            "folds": max(2, min(config.cv_folds, len(observations))), "rms_px": s.cv_rms_px if ok else None,
            **({"failed": s.failed} if s.failed else {})}


def run(args: argparse.Namespace) -> int:
    import contextlib

    pictures = None
    if not args.no_plots:
        # The pictures are drawn by a process forked now, before OpenCV is even imported and
        # before detection starts any thread: it imports matplotlib while this one imports,
        # detects and calibrates, then draws; close() waits for it, so every picture is
        # complete when the command returns.
        from calib.pictures import PictureProcess

        pictures = PictureProcess()
    # The least-squares algebra here is small (a few thousand rows by ~100 columns): threaded
    # BLAS only adds spinning threads (measured: 2x the CPU time for the same wall time, and
    # long stalls on a loaded machine).
    # numpy and OpenCV each bring an OpenBLAS; load them first so that the limit applies to both.
    import cv2  # noqa: F401
    import numpy  # noqa: F401

    try:
        from threadpoolctl import threadpool_limits

        blas = threadpool_limits(1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        blas = contextlib.nullcontext()
    with blas:
        if pictures is None:
            return _run(args, None)
        with pictures:
            return _run(args, pictures)


def _run(args: argparse.Namespace, pictures) -> int:
    from pathlib import Path

    from calib.boards import parse_board_spec
    from calib.calibrate import CalibrationConfig

    board = parse_board_spec(args.board)
    model = args.model if args.model == "auto" else args.model.upper()
    if model not in MODELS:
        raise ValueError(f"--model: expected one of {', '.join(MODELS)}, got {args.model!r}")
    config = CalibrationConfig(model=model, reject_outliers=not args.no_reject, corner_k=args.corner_k)
    out = Path(args.output)
    stereo = bool(args.left or args.right)
    if stereo:
        if args.images:
            raise ValueError("give either IMAGES (mono) or --left/--right (stereo), not both")
        if not (args.left and args.right):
            raise ValueError("stereo calibration needs both --left and --right images")
        return _run_stereo(args, board, config, out, pictures)
    paths = expand_images(args.images)
    if not paths:
        raise ValueError("no images given (IMAGES..., or --left/--right for a stereo rig)")
    _calibrate_one(paths, board, config, out, args, pictures=pictures)
    print(f"wrote {out}/calibration.yaml, cameras.txt, report.json" + ("" if args.no_plots else " and pictures"))
    return 0


EXIT_QUALITY_GATE = 3  # the rig was written, marked failed


def _focal_warnings(resL, resR, rel: float = 0.05) -> list[str]:
    """Warnings for a focal length the photos do not constrain (1-sigma above ``rel`` of the
    value in either camera's own calibration): a rig can still rectify consistently (one shared
    focal error), but metric depth Z = f B / d scales with that error."""
    out = []
    for side, res in (("left", resL), ("right", resR)):
        names = res.camera.spec.param_names
        k = names.index("fx") if "fx" in names else names.index("f")
        f, sd = float(res.camera.params[k]), float(res.param_std[k])
        if f > 0 and sd > rel * f:
            out.append(f"the {side} camera's focal length is not constrained by these photos ({f:.1f} +- {sd:.1f} px "
                       "alone): the rig can rectify consistently, but metric depth scales with the focal error; "
                       "tilt the board 20-45 degrees in some pairs")
    return out


def _compare_corners(args, left, right, runL, runR, camL, camR, recipes, leftout, config):
    """The rig's arbiter for the corner refinement: the recipes scored again with the
    sector-based corners alone (the two cameras must agree on every board pose, so the more
    accurate corners rectify left-out pairs better); the SB corners win when their best
    left-out vertical disparity is lower, with no pair lost. Returns (report entry, None or
    (SB pairs left, right, rejected, their RigSelection, left camera, right camera))."""
    from calib.calibrate import CalibrationError, calibrate_camera
    from calib.calibrate_images import detect_images
    from calib.stereo_select import select_rig

    entry = {"rule": "sector-based corners alone (sb) or re-refined with cornerSubPix (subpix): the lower "
                     "best left-out vertical disparity over the recipes, with no pair lost",
             "subpix_leftout_vertical_rms_px": round(float(leftout.rms_px), 4), "used": "subpix"}
    try:
        sbL = detect_images(left, runL.board, workers=args.workers, refine=False)
        sbR = detect_images(right, runR.board, workers=args.workers, refine=False)
        QL, QR, qrej = _pairs(left, right, sbL, sbR, camL, camR)
        sel = select_rig(QL, QR, runL.image_size, recipes=recipes, folds=args.folds, config=config)
    except (CalibrationError, ValueError) as e:
        entry["sb_failed"] = str(e).splitlines()[0]
        return entry, None
    score = sel.score(sel.chosen)
    entry["sb_leftout_vertical_rms_px"] = round(float(score.rms_px), 4)
    entry["sb_recipe"] = sel.chosen
    entry["subpix_rig_selection"] = None
    if not score.rms_px < leftout.rms_px or len(QL) < len(leftout.pair_rms_px):
        entry.pop("subpix_rig_selection")
        entry["sb_rig_selection"] = sel.to_json()
        return entry, None
    entry["used"] = "sb"
    print(f"  corners: sector-based corners alone rectify left-out pairs better ({score.rms_px:.4f} px, recipe "
          f"{sel.chosen}, vs {leftout.rms_px:.4f} px re-refined): the rig uses them (left/ and right/ keep the "
          "re-refined ones)")
    cl = calibrate_camera(sbL.observations, sbL.image_size, config).camera
    cr = calibrate_camera(sbR.observations, sbR.image_size, config).camera
    return entry, (QL, QR, qrej, sel, cl, cr)


def _pairs(left, right, runL, runR, camL, camR):
    """Pair by position (a pair is used when both images have the board), make a symmetric
    chessboard's labels agree, keep the common corners. Returns (left obs, right obs, rejected)."""
    from calib.calibrate import Rejection
    from calib.stereo import align_symmetric_labels, pair_observations

    obsL = {o.name: o for o in runL.observations}
    obsR = {o.name: o for o in runR.observations}
    PL, PR, rejected = [], [], []
    for a, b in zip(left, right):
        if a in obsL and b in obsR:
            PL.append(obsL[a])
            PR.append(obsR[b])
        else:
            why = [f"{n}: no board" for n, o in ((a, obsL), (b, obsR)) if n not in o]
            rejected.append(Rejection(f"{a} | {b}", "; ".join(why)))
    if runL.board.kind == "chessboard" and PL:
        PR, _ = align_symmetric_labels(PL, PR, camL, camR, runL.board.cols, runL.board.rows)
    PL, PR, rej = pair_observations(PL, PR)
    if not PL:
        raise ValueError("no stereo pair shows the board in both images:\n"
                         + "\n".join(f"  {r.name}: {r.reason}" for r in rejected + rej))
    return PL, PR, rejected + rej


def _run_stereo(args, board, config, out, pictures=None) -> int:
    import json
    import sys

    import numpy as np

    from calib.files import colmap_camera_line, stereo_report_dict, write_opencv_yaml
    from calib.stereo_select import fit_rig, recipe, recipes_for, rig_quality, select_rig

    name = "joint" if args.joint else args.rig_recipe
    if name != "auto":
        try:
            recipe(name)
        except ValueError as e:
            raise ValueError(f"--rig-recipe: {str(e).split(': ', 1)[1]}") from None
    if args.folds < 2:
        raise ValueError(f"--folds: expected >= 2, got {args.folds}")
    left = expand_images(args.left)
    right = expand_images(args.right)
    if len(left) != len(right):
        raise ValueError(f"--left/--right: {len(left)} left and {len(right)} right images; pairs need equal counts")
    runL, resL, repL = _calibrate_one(left, board, config, out / "left", args, "left:  ", pictures)
    runR, resR, repR = _calibrate_one(right, board, config, out / "right", args, "right: ", pictures)
    if runL.image_size != runR.image_size:
        raise ValueError(f"--left/--right: image sizes differ ({runL.image_size} vs {runR.image_size})")
    PL, PR, rejected = _pairs(left, right, runL, runR, resL.camera, resR.camera)
    size = runL.image_size
    selection = None
    if len(PL) >= 4:
        chosen = [recipe(name)] if name != "auto" else list(recipes_for(config.model))
        selection = select_rig(PL, PR, size, recipes=tuple(chosen), folds=args.folds, config=config)
        name = selection.chosen
    elif name == "auto":
        name = "recon"
    leftout = selection.score(name) if selection is not None else None
    subpix_selection = selection
    camL, camR = resL.camera, resR.camera
    corners = None
    if leftout is not None and not leftout.failed and runL.board.kind == "chessboard" and args.corners == "auto":
        corners, better = _compare_corners(args, left, right, runL, runR, resL.camera, resR.camera, tuple(chosen),
                                           leftout, config)
        if better is not None:
            PL, PR, rejected, selection, camL, camR = better
            name = selection.chosen
            leftout = selection.score(name)
    rec = recipe(name)
    base = rec.per_camera == "recon" and rec.constraint_flags() == 0
    st = fit_rig(PL, PR, size, rec, config=config, alpha=args.alpha,
                 left_camera=camL if base else None, right_camera=camR if base else None)
    st.pairs_rejected = rejected + st.pairs_rejected
    advice = [a for r in (repL, repR) for a in r.get("coverage", {}).get("advice", [])]
    quality = rig_quality(st.rectified_vertical_rms_px, leftout.rms_px if leftout else float("nan"),
                          (resL.sigma_px, resR.sigma_px), max_px=args.max_vertical_px, advice=advice)
    rep = stereo_report_dict(st, left_report=repL, right_report=repR)
    rep["status"] = "ok" if quality.ok else "failed"
    rep["quality_gate"] = quality.to_json()
    rep["rig_recipe"] = name
    warnings = _focal_warnings(resL, resR)
    if warnings:
        rep["warnings"] = warnings
    if corners is not None:
        if "subpix_rig_selection" in corners:
            corners["subpix_rig_selection"] = subpix_selection.to_json()
        rep["corners"] = corners
    if not base:  # the rig's cameras are not the per-camera calibrations of left/ and right/
        rep["params"] = {n: float(v) for n, v in zip(st.left.spec.param_names, st.left.params)}
        rep.pop("param_std", None)
    if leftout is not None:
        rep["leftout"] = {"method": "rectified vertical disparity of the corners of pairs left out of the "
                                    "calibration (both cameras and the rig fitted on the other pairs)",
                          **leftout.to_json()}
        rep["leftout_vertical_rms_px"] = rep["leftout"]["leftout_vertical_rms_px"]
        rep["rig_selection"] = selection.to_json()
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    write_opencv_yaml(out / "calibration.yaml", rig=st, status="ok" if quality.ok else "failed",
                      failure=quality.cause)
    (out / "cameras.txt").write_text("# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[] (COLMAP convention)\n"
                                     + colmap_camera_line(st.left, 1) + "\n" + colmap_camera_line(st.right, 2) + "\n")
    lo = f", left-out {leftout.rms_px:.4f} px ({selection.folds} folds)" if leftout is not None else ""
    print(f"stereo: {len(st.pairs_used)} pairs, recipe {name}, RMS {st.rms_px:.4f} px, baseline {st.baseline:.6g} "
          f"board units, rectified vertical disparity RMS {st.rectified_vertical_rms_px:.4f} px{lo}")
    if selection is not None and len(selection.scores) > 1:
        print("  rig recipes (left-out vertical RMS, px): " + ", ".join(
            f"{s.recipe} {s.rms_px:.4f}" if not s.failed else f"{s.recipe} failed" for s in selection.scores))
    if not base:
        fl, fr = np.mean(st.left.focal), np.mean(st.right.focal)
        print(f"  rig cameras ({name}): left f {fl:.2f} px, right f {fr:.2f} px (left/ and right/ hold each "
              "camera's own calibration)")
    for r in st.pairs_rejected:
        print(f"  pair not used: {r.name}: {r.reason}", file=sys.stderr)
    for w in warnings:
        print(f"  warning: {w}", file=sys.stderr)
    print(f"wrote {out}/calibration.yaml, cameras.txt, report.json (per-camera results in left/ and right/)")
    if not quality.ok:
        print(f"recon calibrate: error: stereo rig FAILED the quality gate (files written, marked failed): "
              f"{quality.cause}", file=sys.stderr)
        for a in quality.advice:
            print(f"  advice: {a}", file=sys.stderr)
        return EXIT_QUALITY_GATE
    return 0
