"""`recon stereo LEFT RIGHT --calib FILE -o OUT`: rectify, SGBM + WLS, depth, point cloud."""

from __future__ import annotations

import argparse

from recon.cli._style import add_calib, add_output

NAME = "stereo"
HELP = "dense depth from a stereo pair: rectification, SGBM + WLS disparity, depth + uncertainty, PLY"
ORDER = 31
OPENS_IMAGES = True  # gets --max-image-pixels (recon.cli.build_parser)
DESCRIPTION = """\
Rectify a stereo pair with its calibration, compute the disparity by semi-global matching
(OpenCV SGBM) with a left-right consistency check and the WLS edge-aware filter, convert it to
depth Z = f B / d with the per-pixel uncertainty sigma_Z = Z^2 / (f B) * sigma_d for a disparity
error sigma_d (default 1 px), and write a coloured point cloud.

--calib: OpenCV FileStorage YAML as written by `recon calibrate` for a stereo rig. Keys read:
K1 (or M1), D1, K2 (or M2), D2, R, T (X_right = R X_left + T), image_width, image_height,
optional camera_model / camera_model_right (OPENCV_FISHEYE selects the fisheye model). R1 R2 P1
P2 Q are recomputed. A rig that `recon calibrate` marked failed (calibration_status: failed, its
quality gate) is refused with the cause (exit 2) unless --allow-failed-calib is given. Images that are a
uniform resize of the calibrated size get scaled
intrinsics; other sizes are refused. Without --calib the pair is rectified from an estimated
F (SIFT matches): disparity only, no metric depth.

Writes to OUT:
  disparity.npy / disparity.png   float32 [H, W] pixels (rectified left view; NaN = unknown)
  depth.npy / depth.png           float32 [H, W] z in the rectified left frame (units of T)
  depth_sigma.npy / depth_sigma.png   the depth uncertainty map
  points.ply                      coloured points in the ORIGINAL left camera frame
  rectified.png                   the rectified pair with horizontal check lines
  report.json                     sizes, focal, baseline, disparity range, valid fraction, depth
                                  percentiles, median sigma, timings, notes, verdict

Exit status: 0 ok; 1 when no depth could be computed (no valid pixel); 2 bad input (unreadable
files, image sizes that do not fit the calibration); report.json is written in every case.

examples:
  recon stereo left.png right.png --calib stereo.yaml -o out/depth
  recon stereo left.png right.png --calib stereo.yaml -o out/depth --num-disparities 256 --block-size 7
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("left", help="left image")
    p.add_argument("right", help="right image")
    add_output(p, "output folder (created)")
    add_calib(p, "stereo calibration (OpenCV stereo YAML or report.json from `recon calibrate --left --right`, "
                 "see above); omit for uncalibrated")
    p.add_argument("--allow-failed-calib", action="store_true",
                   help="use a rig that `recon calibrate` marked failed (its quality gate); refused otherwise")
    p.add_argument("--min-disparity", type=int, default=None,
                   help="smallest disparity searched (pixels); with --num-disparities disables the automatic range")
    p.add_argument("--num-disparities", type=int, default=None,
                   help="search range size (pixels, multiple of 16) (default: automatic from sparse matches, "
                        "fallback 128)")
    p.add_argument("--block-size", type=int, default=5, help="SGBM block size, odd (default: 5)")
    p.add_argument("--mode", choices=("sgbm", "3way", "hh"), default="sgbm",
                   help="SGBM variant: sgbm (5 paths), 3way (faster), hh (8 paths, slower) (default: sgbm)")
    p.add_argument("--no-wls", action="store_true", help="do not apply the WLS filter")
    p.add_argument("--alpha", type=float, default=0.0,
                   help="rectification crop: 0 = valid pixels only, 1 = keep all source pixels (default: 0)")
    p.add_argument("--disparity-sigma", type=float, default=1.0,
                   help="disparity error (px) for the depth uncertainty map (default: 1)")
    p.add_argument("--max-depth", type=float, default=0.0,
                   help="drop points farther than this from the point cloud (units of T; 0 = keep) (default: 0)")
    p.add_argument("--ascii-ply", action="store_true", help="write an ASCII PLY (default: binary)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def run(args: argparse.Namespace) -> int:
    import sys

    from recon.stereo import StereoPairOptions, stereo_pair

    opts = StereoPairOptions(calib=args.calib, allow_failed_calib=args.allow_failed_calib,
                             min_disparity=args.min_disparity, num_disparities=args.num_disparities,
                             block_size=args.block_size, mode=args.mode, wls=not args.no_wls,
                             alpha=args.alpha,
                             disparity_sigma_px=args.disparity_sigma, max_depth=args.max_depth,
                             ascii_ply=args.ascii_ply)
    res = stereo_pair(args.left, args.right, args.output, opts)
    rep = res.report
    if res.exit_code == 2:
        print(f"recon stereo: bad input: {rep['message']}", file=sys.stderr)
    elif "valid_fraction" not in rep:
        print(f"recon stereo: {rep['message']}", file=sys.stderr)
    elif not args.quiet or res.exit_code:
        msg = f"recon stereo: {res.verdict}: {100 * rep['valid_fraction']:.0f}% valid pixels"
        if rep.get("calibrated") and rep.get("num_points"):
            p50 = rep["depth_percentiles"]["p50"]
            msg += f", {rep['num_points']} points, median depth {p50:.3g}"
        print(f"{msg} -> {args.output}/report.json", file=sys.stderr)
    return res.exit_code
