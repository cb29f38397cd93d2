"""`recon undistort`: remove lens distortion from images with a calibration file."""

from __future__ import annotations

import argparse

from recon.cli._style import add_calib, add_output, add_quiet

NAME = "undistort"
HELP = "undistort images with a calibration (OpenCV YAML, report.json or COLMAP cameras.txt)"
ORDER = 21
OPENS_IMAGES = True  # gets --max-image-pixels (recon.cli.build_parser)
DESCRIPTION = """\
Undistort images to an ideal pinhole camera.

  recon undistort photos/*.jpg --calib calib_out/calibration.yaml -o undistorted

--calib accepts the calibration.yaml / report.json / cameras.txt written by `recon calibrate`,
or any OpenCV YAML with K (or camera_matrix), D (or distortion_coefficients), image_width and
image_height. For a stereo calibration pick the camera with --camera left|right.
The output folder gets the undistorted images (same names) and cameras.txt with the new PINHOLE
camera (COLMAP convention), ready for SfM with fixed intrinsics.
--alpha 0 (default) crops to valid pixels only; 1 keeps every source pixel (black borders).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGES", help="images (files, folders or quoted globs)")
    add_calib(p, "calibration file (calibration.yaml / report.json / cameras.txt from `recon calibrate`, or an "
                 "OpenCV YAML)", required=True)
    add_output(p, "output folder")
    p.add_argument("--alpha", type=float, default=0.0, help="0: valid pixels only, 1: all source pixels")
    p.add_argument("--camera", choices=("left", "right"), default="left", help="which camera of a stereo file")
    add_quiet(p, "no progress bar", no_progress_alias=False)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import cv2
    import numpy as np
    from tqdm import tqdm

    from calib import Camera
    from calib.files import colmap_camera_line, read_camera
    from calib.calibrate_images import expand_images
    from recon.errors import FormatError
    from recon.io.images import open_image

    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha: expected a value in [0, 1], got {args.alpha}")
    cam = read_camera(args.calib, which=args.camera)
    paths = expand_images(args.images)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    size = cam.size
    D = np.asarray(cam.opencv_dist(), dtype=np.float64)
    if cam.is_fisheye:
        newK = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(cam.K, D, size, np.eye(3), balance=args.alpha)
        m1, m2 = cv2.fisheye.initUndistortRectifyMap(cam.K, D, np.eye(3), newK, size, cv2.CV_16SC2)
    else:
        newK, _ = cv2.getOptimalNewCameraMatrix(cam.K, D, size, args.alpha, size)
        m1, m2 = cv2.initUndistortRectifyMap(cam.K, D, None, newK, size, cv2.CV_16SC2)
    pinhole = Camera("PINHOLE", size[0], size[1], [newK[0, 0], newK[1, 1], newK[0, 2], newK[1, 2]])
    failed = []
    done = 0
    for p in tqdm(paths, desc="undistorting", unit="img", disable=args.quiet, file=sys.stderr):
        try:
            with open_image(p):  # the pixel limit, from the header, before OpenCV decodes
                pass
        except FormatError as e:
            failed.append((p, str(e).removeprefix(f"{p}: ")))
            continue
        img = cv2.imread(p, cv2.IMREAD_UNCHANGED)
        if img is None:
            failed.append((p, "cannot read image"))
            continue
        if (img.shape[1], img.shape[0]) != size:
            failed.append((p, f"size {img.shape[1]}x{img.shape[0]} differs from the calibration's {size[0]}x{size[1]}"))
            continue
        und = cv2.remap(img, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        cv2.imwrite(str(out / Path(p).name), und)
        done += 1
    (out / "cameras.txt").write_text("# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[] (COLMAP convention)\n"
                                     + colmap_camera_line(pinhole) + "\n")
    print(f"undistorted {done} of {len(paths)} image(s) into {out} (new camera: {pinhole})")
    for p, why in failed:
        print(f"  not undistorted: {p}: {why}", file=sys.stderr)
    return 0 if not failed else 2
