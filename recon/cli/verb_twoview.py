"""`recon twoview A B -o OUT`: features, matches, epipolar geometry, pose, triangulation."""

from __future__ import annotations

import argparse

from recon.cli._style import add_calib, add_output

NAME = "twoview"
HELP = "two-view geometry of an image pair: matches, F/E, relative pose, degeneracy verdict, points"
ORDER = 30
OPENS_IMAGES = True  # gets --max-image-pixels (recon.cli.build_parser)
DESCRIPTION = """\
Detect and match features in two images, estimate the epipolar geometry robustly, select
between a general 3D scene (F/E) and a homography (planar scene / pure rotation), recover the
relative pose with the cheirality check, triangulate and refine (two-view bundle adjustment).

Writes to OUT:
  report.json    verdict (general | low_parallax | planar | pure_rotation | identical |
                 too_few_matches | no_model | bad_input), pose_reliable / rotation_reliable
                 (from the pose's measured 1-sigma uncertainty, rotation_sigma_deg /
                 translation_sigma_deg; a reliable rotation is meant to be within 0.5 deg),
                 pose_ambiguous (planar pairs two poses explain), matches, inliers, inlier ratio, median
                 Sampson error (px), R and t direction (cam2_from_cam1: X_B = R X_A + t, |t| = 1),
                 rotation angle, triangulated points, median parallax, GRIC scores, F, E, H
  matches.png    all matches (inliers green, outliers red)
  epipolar.png   epipolar lines of a sample of inliers on both images
  points.ply     triangulated inliers (frame of camera A, unit baseline), coloured from A

--calib accepts a stereo YAML from `recon calibrate` (K1 D1 K2 D2 ...: A = left, B = right), a
mono YAML (K, D, image_width, image_height: both images) or a COLMAP cameras.txt. Without it,
the focal length comes from --focal, else from EXIF (both images), else it is guessed as
1.2 * max(width, height) (F is then estimated on raw pixels); the principal point is put at the
image centre and distortion is ignored, so R and t are approximate.

Exit status: 0 when a pose or rotation was determined (read the verdict), 1 when no answer can
be given (too few matches, identical images, no model), 2 for bad input (unreadable files,
image sizes that do not fit the calibration); report.json is written in every case.

examples:
  recon twoview a.jpg b.jpg -o out/pair
  recon twoview left.png right.png --calib stereo.yaml -o out/rig --method opencv
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image_a", metavar="IMAGE_A", help="first image")
    p.add_argument("image_b", metavar="IMAGE_B", help="second image")
    add_output(p, "output folder (created)")
    add_calib(p, "calibration file (stereo or mono OpenCV YAML, report.json or COLMAP cameras.txt)")
    p.add_argument("--focal", type=float, default=None,
                   help="focal length in pixels for both images when there is no --calib")
    p.add_argument("--no-exif", action="store_true",
                   help="without --calib / --focal, do not use the EXIF focal length (guess 1.2 * max side)")
    p.add_argument("--features", choices=("sift", "rootsift", "orb"), default="sift",
                   help="feature type (default: sift; rootsift = SIFT with Hellinger normalisation; orb = fast)")
    p.add_argument("--max-features", type=int, default=8000, help="keypoints per image (default: 8000)")
    p.add_argument("--max-size", type=int, default=2000,
                   help="detect on images downscaled so the longer side is at most this (keypoints are "
                        "mapped back to full resolution) (default: 2000; 0 = never)")
    p.add_argument("--ratio", type=float, default=0.8, help="Lowe's ratio test threshold (default: 0.8)")
    p.add_argument("--method", choices=("ours", "opencv"), default="ours",
                   help="robust estimator: ours (five-point LO-MSAC for E, seven-point for F, robust Sampson "
                        "refinement) or opencv (USAC_MAGSAC) (default: ours)")
    p.add_argument("--threshold", type=float, default=None,
                   help="inlier threshold, Sampson distance in pixels (default: 1.0 at <= 1 MP, scaled with "
                        "the image diagonal above)")
    p.add_argument("--no-refine", action="store_true", help="skip two-view bundle adjustment")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")


def _clean(obj):
    """JSON-safe copy: NaN / inf -> null, NumPy scalars -> Python numbers."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _write_report(out, report: dict) -> None:
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(_clean(report), indent=2, allow_nan=False))


def _detect(img, args):
    import cv2

    from recon.features import detect_features

    h, w = img.shape[:2]
    s = 1.0
    if args.max_size and max(w, h) > args.max_size:
        s = args.max_size / max(w, h)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    f = detect_features(img, method=args.features, max_features=args.max_features)
    if s != 1.0:  # back to full-resolution pixel centres
        from dataclasses import replace

        from calib import scale_pixels

        f = replace(f, keypoints=scale_pixels(f.keypoints, 1.0 / s).astype(f.keypoints.dtype, copy=False),
                    scales=f.scales / s, image_size=(w, h))
    return f, s


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    import numpy as np

    from recon.io import read_image

    out = Path(args.output)
    t_start = time.perf_counter()
    report: dict = {"version": 1, "images": {"A": str(args.image_a), "B": str(args.image_b)},
                    "calibration": args.calib, "notes": []}
    timings: dict = {}
    img_a = read_image(args.image_a)
    img_b = read_image(args.image_b)
    (ha, wa), (hb, wb) = img_a.shape[:2], img_b.shape[:2]
    report["images"]["size_A"], report["images"]["size_B"] = [wa, ha], [wb, hb]

    cam_a = cam_b = None
    intrinsics_source = "calibration file" if args.calib else "guessed"
    if args.calib:
        from recon.twoview._calibfile import fit_camera_to_image, read_camera_pair

        cam_a, cam_b = read_camera_pair(args.calib)
        try:
            cam_a, note_a = fit_camera_to_image(cam_a, wa, ha, "A")
            cam_b, note_b = fit_camera_to_image(cam_b, wb, hb, "B")
        except ValueError as e:
            report.update(verdict="bad_input", message=str(e))
            _write_report(out, report)
            print(f"recon twoview: bad input: {e}", file=sys.stderr)
            return 2
        report["notes"] += [n for n in (note_a, note_b) if n]
    elif args.focal:
        from recon.twoview import guess_camera

        cam_a, cam_b = guess_camera(wa, ha, args.focal), guess_camera(wb, hb, args.focal)
        report["notes"].append(f"intrinsics from --focal {args.focal} px, principal point at the centre")
        intrinsics_source = "focal option"
    elif not args.no_exif:
        from recon.io import exif_focal_px
        from recon.twoview import guess_camera

        fa_px, fb_px = exif_focal_px(args.image_a), exif_focal_px(args.image_b)
        if fa_px and fb_px:
            cam_a, cam_b = guess_camera(wa, ha, fa_px), guess_camera(wb, hb, fb_px)
            intrinsics_source = "exif"
            report["notes"].append(f"intrinsics from EXIF focal lengths ({fa_px:.1f}, {fb_px:.1f} px), principal "
                                   "point at the centre, no distortion: pass --calib for an exact pose")

    from recon.features import match_features
    from recon.twoview import TwoViewConfig, two_view_geometry

    t = time.perf_counter()
    fa, _ = _detect(img_a, args)
    fb, _ = _detect(img_b, args)
    timings["features_s"] = time.perf_counter() - t
    t = time.perf_counter()
    m = match_features(fa, fb, ratio=args.ratio, mutual=True)
    timings["matching_s"] = time.perf_counter() - t
    uv1, uv2 = m.points(fa, fb)
    diag = float(np.hypot(max(wa, wb), max(ha, hb)))
    thr = args.threshold if args.threshold else max(1.0, diag / 1600.0)
    report["features"] = {"type": args.features, "keypoints_A": len(fa), "keypoints_B": len(fb),
                          "matches": len(m), "ratio": args.ratio}
    cfg = TwoViewConfig(method=args.method, threshold_px=thr, refine=not args.no_refine, seed=args.seed)
    t = time.perf_counter()
    geo = two_view_geometry(uv1, uv2, cam_a, cam_b, image_size1=(wa, ha), image_size2=(wb, hb), config=cfg)
    timings["geometry_s"] = time.perf_counter() - t
    deg = geo.degeneracy
    fit = geo.fundamental
    report.update({
        "verdict": deg.verdict,
        "message": deg.message,
        "pose_reliable": deg.pose_reliable,
        "rotation_reliable": deg.rotation_reliable,
        "rotation_sigma_deg": deg.rotation_sigma_deg,
        "translation_sigma_deg": deg.translation_sigma_deg,
        "pose_ambiguous": deg.pose_ambiguous,
        "method": args.method,
        "threshold_px": thr,
        "intrinsics": "guessed" if geo.intrinsics_guessed else intrinsics_source,
        "num_matches": len(m),
        "num_inliers": int(geo.inliers.sum()),
        "inlier_ratio": float(geo.inliers.mean()) if len(m) else 0.0,
        "median_sampson_px": fit.median_inlier_residual() if fit.ok else None,
        "num_iterations": int(fit.num_iterations),
        "refined": geo.refined,
        "triangulated_points": geo.num_triangulated,
        "median_parallax_deg": None if np.isnan(deg.median_parallax_deg) else deg.median_parallax_deg,
        "model_selection": {"gric_F": deg.gric_f, "gric_H": deg.gric_h, "H_inliers": geo.homography.num_inliers,
                            "F_inliers": fit.num_inliers, "H_over_F_inliers": deg.h_f_inlier_ratio,
                            "sigma_px": deg.sigma_px, "rotation_score": deg.rotation_score},
        "median_displacement_px": deg.median_displacement_px,
    })
    report["notes"] += geo.notes
    if geo.camera1 is not None:
        report["camera_A"] = {"model": geo.camera1.model, "params": geo.camera1.params.tolist()}
        report["camera_B"] = {"model": geo.camera2.model, "params": geo.camera2.params.tolist()}
    if geo.cam2_from_cam1 is not None:
        from calib import rotation_angle_deg

        T = geo.cam2_from_cam1
        report["cam2_from_cam1"] = {
            "R": T.rotation.tolist(), "quat_wxyz": T.quat_wxyz.tolist(),
            "rotation_deg": float(rotation_angle_deg(T.rotation)),
            "t_direction": (T.translation / np.linalg.norm(T.translation)).tolist()
            if np.linalg.norm(T.translation) > 0 else None,
        }
    for name, res, attr in (("F", geo.fundamental, "F"), ("E", geo.essential, "E"), ("H", geo.homography, "H")):
        if res is not None and res.ok:
            report[name] = getattr(res, attr).tolist()

    pictures = []
    from recon.twoview.pictures import draw_epipolar_lines, draw_matches

    t = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if len(m):
        pictures.append(draw_matches(out / "matches.png", img_a, img_b, uv1, uv2, geo.inliers,
                                     title=f"{len(m)} matches, {int(geo.inliers.sum())} inliers "
                                           f"({deg.verdict})").name)
    if fit.ok and geo.inliers.sum() >= 1:
        pictures.append(draw_epipolar_lines(out / "epipolar.png", img_a, img_b, fit.F, uv1, uv2, geo.inliers,
                                            title=f"epipolar lines (median Sampson error "
                                                  f"{fit.median_inlier_residual():.2f} px)").name)
    if geo.triangulation is not None and geo.num_triangulated:
        from recon.io import PointCloud, write_ply

        ok = geo.triangulation.valid() & geo.inliers
        ij = np.clip(np.rint(uv1[ok]).astype(int), 0, [wa - 1, ha - 1])
        rgb = img_a[ij[:, 1], ij[:, 0]][:, :3].astype(np.uint8)
        write_ply(out / "points.ply", PointCloud(geo.triangulation.points[ok].astype(np.float32), rgb))
        pictures.append("points.ply")
    timings["pictures_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start
    report["outputs"] = pictures
    report["timings"] = timings
    no_answer = deg.verdict in ("too_few_matches", "identical", "no_model")
    report["exit_code"] = 1 if no_answer else 0
    _write_report(out, report)
    line = (f"recon twoview: {deg.verdict}: {int(geo.inliers.sum())}/{len(m)} inliers, "
            f"{geo.num_triangulated} points")
    if "cam2_from_cam1" in report:
        line += f", rotation {report['cam2_from_cam1']['rotation_deg']:.2f} deg"
    print(line + f" -> {out / 'report.json'}", file=sys.stderr)
    if no_answer:
        print(f"recon twoview: no answer: {deg.message}", file=sys.stderr)
    return report["exit_code"]
