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
pairs LEFT OUT of the calibration (--folds groups, default 5). --rig-recipe auto (the default)
uses one fixed recipe, "joint" (recon's per-camera calibration, then both cameras refined with
the rig); for a chessboard, the corners re-refined with cornerSubPix are kept unless OpenCV's
sector-based corners alone rectify left-out pairs better by more than 10 %; only when the rig
fails the quality gate are the rescue recipes ("joint-same-focal") scored too. Every score is
in report.json (rig_selection); docs/calibration.md has the rule and the bench.
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
                   help="stereo: auto (joint, rescued when the rig fails the quality gate; default) or one of "
                        "recon, opencv, joint, joint-same-focal "
                        "(joint-centred-k1, joint-centred, centred-k1, pinhole-same-focal on request)")
    p.add_argument("--folds", type=int, default=5, help="stereo: folds of the left-out evaluation (5)")
    p.add_argument("--corners", choices=("auto", "subpix", "sb"), default="auto",
                   help="chessboard corners: sb = OpenCV's sector-based detector alone, subpix = re-refined "
                        "with cornerSubPix; auto (default) = subpix for one camera, and for a rig sb unless the rigs "
                        "fitted on subpix rectify left-out pairs better by more than 5 %% measured on both sets")
    p.add_argument("--max-vertical-px", type=float, default=1.0,
                   help="stereo quality gate: fail above max(this, 3 x the corner-noise expectation) (1.0 px)")
    p.add_argument("--alpha", type=float, default=0.0,
                   help="stereo rectification: 0 keeps only valid pixels, 1 keeps all source pixels")
    p.add_argument("--no-reject", action="store_true", help="keep every corner and view (no outlier rejection)")
    p.add_argument("--corner-k", type=float, default=5.0, help="corner outlier threshold in robust sigmas (5)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG pictures")
    p.add_argument("--threads", type=int, default=None, help="detection threads (default: up to 4)")
    p.add_argument("--workers", type=int, dest="threads", help=argparse.SUPPRESS)  # old spelling
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _print_camera(cal, title=""):
    import sys

    import numpy as np

    res, cam = cal.result, cal.result.camera
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
    if cal.failures:
        print(f"  {len(cal.failures)} view(s) not used:", file=sys.stderr)
        for r in cal.failures:
            print(f"    {r.name}: {r.reason}", file=sys.stderr)
    if res.rejected_corners:
        print(f"  {len(res.rejected_corners)} outlier corner(s) rejected (listed in report.json)")
    if cal.leftout and cal.leftout.get("rms_px") is not None:
        print(f"  left-out reprojection RMS {cal.leftout['rms_px']:.4f} px ({cal.leftout['folds']} folds of "
              "held-out views)")
    print(f"  projection uncertainty: centre {cal.uncertainty.at_center():.3f} px, max "
          f"{float(np.nanmax(cal.uncertainty.std_px)):.3f} px")
    for a in cal.coverage.advice:
        print(f"  advice: {a}")


def run(args: argparse.Namespace) -> int:
    import contextlib

    pictures = None
    if not args.no_plots:
        # The pictures are drawn by a process forked now, before OpenCV is even imported and
        # before detection starts any thread; close() waits for it.
        from calib.pictures import PictureProcess

        pictures = PictureProcess()
    # The least-squares algebra is small: threaded BLAS only adds spinning threads. numpy and
    # OpenCV each bring an OpenBLAS; load them first so that the limit applies to both.
    import cv2  # noqa: F401
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"), (pictures if pictures is not None else contextlib.nullcontext()):
        return _run(args, pictures)


def _run(args: argparse.Namespace, pictures) -> int:
    from pathlib import Path

    from calib.boards import parse_board_spec
    from calib.calibrate import CalibrationConfig
    from calib.calibrate_images import expand_images
    from calib.rig_calibration import calibrate_from_images, write_camera_files

    board = parse_board_spec(args.board)
    model = args.model if args.model == "auto" else args.model.upper()
    if model not in MODELS:
        raise ValueError(f"--model: expected one of {', '.join(MODELS)}, got {args.model!r}")
    config = CalibrationConfig(model=model, reject_outliers=not args.no_reject, corner_k=args.corner_k)
    out = Path(args.output)
    if args.left or args.right:
        if args.images:
            raise ValueError("give either IMAGES (mono) or --left/--right (stereo), not both")
        if not (args.left and args.right):
            raise ValueError("stereo calibration needs both --left and --right images")
        return _run_stereo(args, board, config, out, pictures)
    paths = expand_images(args.images)
    if not paths:
        raise ValueError("no images given (IMAGES..., or --left/--right for a stereo rig)")
    cal = calibrate_from_images(paths, board, config, threads=args.threads, progress=not args.quiet,
                                refine=args.corners != "sb")
    write_camera_files(out, cal)
    if pictures is not None:
        pictures.submit(cal.result, out, uncertainty=cal.uncertainty, coverage=cal.coverage, rejected=cal.failures)
    _print_camera(cal)
    print(f"wrote {out}/calibration.yaml, cameras.txt, report.json" + ("" if args.no_plots else " and pictures"))
    return 0


EXIT_QUALITY_GATE = 3  # the rig was written, marked failed


def _run_stereo(args, board, config, out, pictures=None) -> int:
    import sys

    import numpy as np

    from calib.calibrate_images import expand_images
    from calib.rig_calibration import RigOptions, calibrate_rig, write_rig_files

    def on_camera(side, cal):  # each camera's pictures are drawn while the rig is calibrated
        if pictures is not None:
            (out / side).mkdir(parents=True, exist_ok=True)
            pictures.submit(cal.result, out / side, uncertainty=cal.uncertainty, coverage=cal.coverage,
                            rejected=cal.failures)
        _print_camera(cal, f"{side + ':':7s}")

    def flag(e):  # the library names its options; the user knows the flags
        return str(e).replace("recipe:", "--rig-recipe:").replace("folds:", "--folds:").replace(
            "left_paths/right_paths:", "--left/--right:")

    try:
        options = RigOptions(recipe="joint" if args.joint else args.rig_recipe, corners=args.corners,
                             folds=args.folds, max_vertical_px=args.max_vertical_px, alpha=args.alpha,
                             threads=args.threads)
        left, right = expand_images(args.left), expand_images(args.right)
        rig = calibrate_rig(left, right, board, config, options, progress=not args.quiet, on_camera=on_camera)
    except ValueError as e:
        raise ValueError(flag(e)) from None
    write_rig_files(out, rig)
    st, lo = rig.stereo, rig.leftout
    los = f", left-out {lo.rms_px:.4f} px ({rig.choice.folds} folds)" if lo is not None else ""
    print(f"stereo: {len(st.pairs_used)} pairs, recipe {rig.recipe}, corners {rig.corners_used}, RMS "
          f"{st.rms_px:.4f} px, baseline {st.baseline:.6g} board units, rectified vertical disparity RMS "
          f"{st.rectified_vertical_rms_px:.4f} px{los}")
    scores = [(c, s) for c, by in rig.choice.scores.items() for s in by.values()]
    if len(scores) > 1:
        print("  scored (left-out vertical RMS, px): " + ", ".join(
            f"{s.recipe} on {c} corners " + (f"{s.rms_px:.4f}" if not s.failed else "failed") for c, s in scores))
    print(f"  rule: {rig.choice.rule}")
    if not rig.per_camera_intrinsics:
        print(f"  rig cameras ({rig.recipe}, {rig.corners_used} corners): left f {np.mean(st.left.focal):.2f} px, "
              f"right f {np.mean(st.right.focal):.2f} px (left/ and right/ hold each camera's own calibration)")
    for r in st.pairs_rejected:
        print(f"  pair not used: {r.name}: {r.reason}", file=sys.stderr)
    for w in rig.warnings:
        print(f"  warning: {w}", file=sys.stderr)
    print(f"wrote {out}/calibration.yaml, cameras.txt, report.json (per-camera results in left/ and right/)")
    if not rig.ok:
        print(f"recon calibrate: error: stereo rig FAILED the quality gate (files written, marked failed): "
              f"{rig.quality.cause}", file=sys.stderr)
        for a in rig.quality.advice:
            print(f"  advice: {a}", file=sys.stderr)
        return EXIT_QUALITY_GATE
    return 0
