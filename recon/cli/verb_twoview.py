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
                 (independent re-estimates must agree with the pose; rotation_sigma_deg /
                 translation_sigma_deg include their spread; a reliable rotation is meant to
                 be within 0.5 deg),
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
    p.add_argument("--features", choices=("sift", "rootsift", "asift", "orb"), default="sift",
                   help="feature type (default: sift; rootsift = SIFT with Hellinger normalisation; asift = "
                        "RootSIFT on affine-simulated views, for wide viewpoint changes, ~9x slower; orb = fast)")
    p.add_argument("--max-features", type=int, default=8000, help="keypoints per image (default: 8000)")
    p.add_argument("--max-image-size", type=int, default=2000,
                   help="detect on images downscaled so the longer side is at most this (keypoints are "
                        "mapped back to full resolution) (default: 2000; 0 = never)")
    p.add_argument("--max-size", dest="max_image_size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ratio", type=float, default=0.8, help="Lowe's ratio test threshold (default: 0.8)")
    p.add_argument("--method", choices=("poselib", "ours", "opencv"), default="poselib",
                   help="robust estimator: poselib (PoseLib LO-RANSAC + refinement), ours (five-point LO-MSAC "
                        "for E, seven-point for F, robust Sampson refinement) or opencv (USAC_MAGSAC) "
                        "(default: poselib)")
    p.add_argument("--threshold", type=float, default=None,
                   help="inlier threshold, Sampson distance in pixels (default: 1.0 at <= 1 MP, scaled with "
                        "the image diagonal above)")
    p.add_argument("--no-refine", action="store_true", help="skip two-view bundle adjustment")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def run(args: argparse.Namespace) -> int:
    import sys

    from recon.twoview import PairOptions, analyze_pair

    opts = PairOptions(calib=args.calib, focal_px=args.focal, use_exif=not args.no_exif, features=args.features,
                       max_features=args.max_features, max_image_size=args.max_image_size, ratio=args.ratio,
                       method=args.method, threshold_px=args.threshold, refine=False if args.no_refine else None,
                       seed=args.seed)
    res = analyze_pair(args.image_a, args.image_b, args.output, opts)
    rep = res.report
    path = f"{args.output}/report.json"
    if res.exit_code == 2:
        print(f"recon twoview: bad input: {rep['message']}", file=sys.stderr)
        return 2
    if not args.quiet or res.exit_code:
        line = f"recon twoview: {res.verdict}: {rep['num_inliers']}/{rep['num_matches']} inliers, " \
               f"{rep['triangulated_points']} points"
        if "cam2_from_cam1" in rep:
            line += f", rotation {rep['cam2_from_cam1']['rotation_deg']:.2f} deg"
        print(f"{line} -> {path}", file=sys.stderr)
    if res.exit_code:
        print(f"recon twoview: no answer: {rep['message']}", file=sys.stderr)
    return res.exit_code
