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
quality gate) is refused with the cause (exit 2) unless --allow-failed-calib is given. Images that are a uniform resize of the calibrated size get scaled
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


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    import numpy as np

    from recon.cli.verb_twoview import _write_report
    from recon.io import read_image

    out = Path(args.output)
    t0 = time.perf_counter()
    report: dict = {"version": 1, "left": str(args.left), "right": str(args.right), "calibration": args.calib,
                    "notes": []}
    left = read_image(args.left)
    right = read_image(args.right)
    report["size_left"] = [left.shape[1], left.shape[0]]
    report["size_right"] = [right.shape[1], right.shape[0]]

    from recon.stereo import SGBMConfig, StereoConfig, read_stereo_calibration, stereo_depth

    sg = SGBMConfig(block_size=args.block_size, mode=args.mode, wls=not args.no_wls)
    auto = args.num_disparities is None
    if not auto:
        sg = SGBMConfig(**{**sg.__dict__, "num_disparities": args.num_disparities,
                           "min_disparity": args.min_disparity or 0})
    elif args.min_disparity is not None:
        sg = SGBMConfig(**{**sg.__dict__, "min_disparity": args.min_disparity})
    cfg = StereoConfig(sgbm=sg, auto_range=auto, alpha=args.alpha, disparity_sigma_px=args.disparity_sigma,
                       max_depth=args.max_depth)
    calib = None
    matches = None
    try:
        if args.calib:
            calib = read_stereo_calibration(args.calib)
            _check_status(args.calib, args.allow_failed_calib, report)
        else:
            if left.shape[:2] != right.shape[:2]:
                raise ValueError(f"left, right: image sizes differ ({left.shape[1]}x{left.shape[0]} vs "
                                 f"{right.shape[1]}x{right.shape[0]})")
            from recon.features import detect_features, match_features
            from recon.twoview import estimate_fundamental

            fa, fb = detect_features(left), detect_features(right)
            m = match_features(fa, fb)
            x1, x2 = m.points(fa, fb)
            fit = estimate_fundamental(x1, x2, threshold_px=1.0)
            if not fit.ok or fit.num_inliers < 30:
                report.update(verdict="no_depth", message=f"uncalibrated: only {fit.num_inliers} epipolar inliers "
                                                           "among {len(m)} matches; cannot rectify")
                _write_report(out, report)
                print(f"recon stereo: {report['message']}", file=sys.stderr)
                return 1
            matches = (fit.F, x1[fit.inliers], x2[fit.inliers])
        t = time.perf_counter()
        res = stereo_depth(left, right, calib, config=cfg, uncalibrated_matches=matches)
    except ValueError as e:
        report.update(verdict="bad_input", message=str(e))
        _write_report(out, report)
        print(f"recon stereo: bad input: {e}", file=sys.stderr)
        return 2
    t_match = time.perf_counter() - t
    out.mkdir(parents=True, exist_ok=True)
    rect = res.rectification
    disp = res.disparity
    h, w = disp.disparity.shape
    valid_frac = float(disp.valid.mean())
    report.update({
        "calibrated": rect.calibrated,
        "rectified_size": [w, h],
        "focal_px": rect.focal_px if rect.calibrated else None,
        "baseline": abs(rect.baseline) if rect.calibrated else None,
        "disparity_range_px": [disp.min_disparity, disp.min_disparity + disp.num_disparities],
        "sgbm": {**res.config.sgbm.__dict__, "min_disparity": disp.min_disparity,
                 "num_disparities": disp.num_disparities},
        "valid_fraction": valid_frac,
        "wls_filtered": not args.no_wls,
    })
    report["notes"] += res.notes
    from recon.stereo.pictures import draw_map, draw_rectified_pair

    np.save(out / "disparity.npy", disp.disparity)
    outputs = ["disparity.npy"]
    draw_map(out / "disparity.png", disp.disparity, title="disparity (WLS)" if not args.no_wls else "disparity",
             unit="disparity [px]", reference=res.left_rect)
    draw_rectified_pair(out / "rectified.png", res.left_rect, res.right_rect)
    outputs += ["disparity.png", "rectified.png"]
    if rect.calibrated:
        z, sig = res.depth, res.depth_sigma
        fin = np.isfinite(z)
        np.save(out / "depth.npy", z)
        np.save(out / "depth_sigma.npy", sig)
        draw_map(out / "depth.png", z, title="depth Z = f B / d", unit="depth [units of T]", cmap="turbo_r",
                 reference=res.left_rect)
        draw_map(out / "depth_sigma.png", sig, title=f"depth uncertainty for +-{args.disparity_sigma:g} px disparity",
                 unit="sigma_Z [units of T]", cmap="magma")
        from recon.io import PointCloud, write_ply

        write_ply(out / "points.ply", PointCloud(res.points.astype(np.float32), res.colors),
                  binary=not args.ascii_ply, comments=("frame: original left camera (OpenCV axes)",))
        outputs += ["depth.npy", "depth.png", "depth_sigma.npy", "depth_sigma.png", "points.ply"]
        report.update({
            "num_points": int(res.points.shape[0]),
            "depth_percentiles": {f"p{p}": float(np.percentile(z[fin], p)) for p in (5, 50, 95)} if fin.any() else None,
            "median_depth_sigma": float(np.median(sig[fin])) if fin.any() else None,
        })
    report["outputs"] = outputs
    report["timings"] = {"stereo_s": t_match, "total_s": time.perf_counter() - t0,
                         "megapixels_per_s": (w * h / 1e6) / max(t_match, 1e-9)}
    ok = valid_frac > 0
    report["verdict"] = "ok" if ok else "no_depth"
    if not ok:
        report["message"] = "no pixel passed the left-right check: check the calibration and the image order"
    report["exit_code"] = 0 if ok else 1
    _write_report(out, report)
    msg = f"recon stereo: {report['verdict']}: {100 * valid_frac:.0f}% valid pixels"
    if rect.calibrated and report.get("num_points"):
        msg += f", {report['num_points']} points, median depth {report['depth_percentiles']['p50']:.3g}"
    print(msg + f" -> {out / 'report.json'}", file=sys.stderr)
    return report["exit_code"]


def _check_status(path, allow: bool, report: dict) -> None:
    """Refuse a rig that `recon calibrate` marked failed, unless ``allow``."""
    from calib.files import read_status

    st = read_status(path)
    report["calibration_status"] = st.status
    if not st.failed:
        return
    why = f": {st.cause}" if st.cause else ""
    if not allow:
        raise ValueError(f"{path}: this stereo calibration is marked failed by `recon calibrate`{why}; "
                         "recalibrate (the calibration's report says how), or pass --allow-failed-calib to use it anyway")
    report["notes"].append(f"calibration marked failed, used because of --allow-failed-calib{why}")
