"""Intrinsics for a pair of images from a calibration file (used by ``recon twoview --calib``).

Accepted files (OpenCV FileStorage YAML/XML unless noted):
- a stereo calibration (``K1 D1 K2 D2`` ...; see ``recon.stereo.read_stereo_calibration``):
  image A uses the left camera, image B the right one;
- a mono calibration: ``K`` (or ``camera_matrix``), ``D`` (or ``distortion_coefficients``),
  ``image_width``, ``image_height``, optional ``camera_model``: both images use it;
- a COLMAP ``cameras.txt`` (first camera, shifted to our pixel-centre convention): both images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calib import MODELS, Camera
from recon.errors import FormatError

__all__ = ["fit_camera_to_image", "read_camera_pair"]


def _colmap_line(path: Path) -> Camera:
    for line in path.read_text(errors="replace").splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        tok = s.split()
        if len(tok) < 5 or tok[1] not in MODELS:
            raise FormatError(path, f"not a COLMAP camera line: {s[:80]!r}")
        spec = MODELS[tok[1]]
        p = np.array([float(x) for x in tok[4:]])
        i = 1 if spec.single_focal else 2
        p[i:i + 2] -= 0.5  # COLMAP's (0.5, 0.5) pixel centre -> ours (0, 0)
        return Camera(tok[1], int(tok[2]), int(tok[3]), p)
    raise FormatError(path, "no camera line found")


def read_camera_pair(path) -> tuple[Camera, Camera]:
    """(camera for image A, camera for image B) from a calibration file (see module docstring)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found")
    if path.suffix.lower() == ".txt":
        cam = _colmap_line(path)
        return cam, cam
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except cv2.error:
        raise FormatError(path, "not an OpenCV FileStorage YAML/XML file") from None
    try:
        stereo = not fs.getNode("K1").empty() or not fs.getNode("M1").empty()
        if not stereo:
            def mat(*names):
                for n in names:
                    node = fs.getNode(n)
                    if not node.empty():
                        return np.asarray(node.mat(), np.float64)
                return None

            K = mat("K", "camera_matrix")
            D = mat("D", "distortion_coefficients")
            wn, hn = fs.getNode("image_width"), fs.getNode("image_height")
            w = None if wn.empty() else int(wn.real())
            h = None if hn.empty() else int(hn.real())
            mn = fs.getNode("camera_model")
            model = None if mn.empty() else mn.string()
    finally:
        fs.release()
    if stereo:
        from recon.stereo import read_stereo_calibration

        c = read_stereo_calibration(path)
        return c.left, c.right
    if K is None or w is None or h is None:
        raise FormatError(path, "expected K (or camera_matrix), image_width and image_height (mono) or "
                                "K1 D1 K2 D2 R T (stereo)")
    try:
        cam = Camera.from_K(K, w, h, None if D is None else D.ravel(), fisheye=model == "OPENCV_FISHEYE")
    except ValueError as e:
        raise FormatError(path, str(e)) from None
    return cam, cam


def fit_camera_to_image(camera: Camera, width: int, height: int, name: str) -> tuple[Camera, str | None]:
    """The camera for an image of (width, height): unchanged when sizes agree, rescaled (with a
    note) when the image is a uniform resize of the calibrated size, else ValueError."""
    if camera.size == (width, height):
        return camera, None
    sx, sy = width / camera.width, height / camera.height
    if abs(sx - sy) > 2.0 / min(camera.width, camera.height):
        raise ValueError(f"{name}: image is {width}x{height} but the calibration expects "
                         f"{camera.width}x{camera.height} (different aspect ratio); recalibrate or "
                         "resize/crop the image to the calibrated size")
    return camera.resized(width, height), (f"{name}: image is {width}x{height}, calibration {camera.width}x"
                                           f"{camera.height}: intrinsics scaled by {sx:.4g} (assumes a resize)")
