"""Stereo calibration files (OpenCV FileStorage YAML, as written by ``recon calibrate``).

Keys read (``cv2.FileStorage``; ``%YAML:1.0`` header and ``!!opencv-matrix`` nodes):

============================  ================================================================
``K1`` (or ``M1``)            [3, 3] left intrinsics (required)
``D1``                        left distortion, OpenCV order (k1 k2 p1 p2 [k3 [k4 k5 k6]]) or
                              k1..k4 for fisheye (optional, default 0)
``K2`` (or ``M2``), ``D2``    right intrinsics / distortion (required / optional)
``R``, ``T``                  right_from_left: X_right = R X_left + T (OpenCV stereoCalibrate),
                              T in the calibration's unit (metres if the board square was)
``image_width``,              image size in pixels (required: rectification needs it; also
``image_height``              accepted: ``image_size`` [w, h] or ``width`` / ``height``)
``camera_model``,             COLMAP model names; ``OPENCV_FISHEYE`` selects the fisheye model
``camera_model_right``        (optional)
``R1 R2 P1 P2 Q E F``         ignored: rectification is recomputed from the above (with our
                              ``alpha``), so a file without them works too
============================  ================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calib import Camera, Rigid3
from recon.errors import FormatError

__all__ = ["StereoCalibration", "read_stereo_calibration", "write_stereo_calibration"]


@dataclass(frozen=True)
class StereoCalibration:
    """A calibrated stereo rig: intrinsics of both cameras and ``right_from_left``."""

    left: Camera
    right: Camera
    right_from_left: Rigid3

    @property
    def baseline(self) -> float:
        """Distance between the camera centres (units of T)."""
        return float(np.linalg.norm(self.right_from_left.translation))

    @property
    def size(self) -> tuple[int, int]:
        return self.left.size


def read_stereo_calibration(path) -> StereoCalibration:
    """Read a stereo calibration YAML (see the module docstring for the keys)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found")
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except cv2.error as e:
        raise FormatError(path, f"not an OpenCV FileStorage YAML/XML file ({str(e).strip().splitlines()[-1]})") from None
    if not fs.isOpened():
        raise FormatError(path, "cannot be opened as an OpenCV FileStorage file")
    try:
        def mat(*names):
            for n in names:
                node = fs.getNode(n)
                if not node.empty():
                    m = node.mat()
                    if m is None:
                        raise FormatError(path, f"key {n!r} is not a matrix")
                    return np.asarray(m, np.float64), n
            return None, None

        def num(name):
            node = fs.getNode(name)
            return None if node.empty() else node.real()

        def text(name):
            node = fs.getNode(name)
            return None if node.empty() else node.string()

        K1, _ = mat("K1", "M1")
        K2, _ = mat("K2", "M2")
        D1, _ = mat("D1")
        D2, _ = mat("D2")
        R, _ = mat("R")
        T, _ = mat("T")
        w, h = num("image_width"), num("image_height")
        if w is None or h is None:
            size, _ = mat("image_size")
            if size is not None and size.size == 2:
                w, h = size.ravel()
            else:
                w, h = num("width"), num("height")
        model1, model2 = text("camera_model"), text("camera_model_right")
    finally:
        fs.release()
    missing = [n for n, v in (("K1", K1), ("K2", K2), ("R", R), ("T", T), ("image_width", w), ("image_height", h))
               if v is None]
    if missing:
        raise FormatError(path, f"missing key(s) {missing}; a stereo calibration needs K1 D1 K2 D2 R T "
                                "image_width image_height (see docs/twoview.md)")
    for name, m, shape in (("K1", K1, (3, 3)), ("K2", K2, (3, 3)), ("R", R, (3, 3))):
        if m.shape != shape:
            raise FormatError(path, f"{name}: expected a {shape[0]}x{shape[1]} matrix, got {m.shape}")
    if T.size != 3:
        raise FormatError(path, f"T: expected 3 values, got shape {T.shape}")
    model2 = model2 or model1
    try:
        left = Camera.from_K(K1, int(w), int(h), None if D1 is None else D1.ravel(),
                             fisheye=model1 == "OPENCV_FISHEYE")
        right = Camera.from_K(K2, int(w), int(h), None if D2 is None else D2.ravel(),
                              fisheye=model2 == "OPENCV_FISHEYE")
        right_from_left = Rigid3(R, T.ravel())
    except ValueError as e:
        raise FormatError(path, str(e)) from None
    if right_from_left.translation @ right_from_left.translation <= 0:
        raise FormatError(path, "T: zero baseline")
    return StereoCalibration(left, right, right_from_left)


def write_stereo_calibration(path, calibration: StereoCalibration) -> Path:
    """Write the keys :func:`read_stereo_calibration` reads (plus R1 R2 P1 P2 Q from
    ``calib.stereo.rectify`` with alpha 0), in the layout ``recon calibrate`` writes."""
    import cv2

    from calib.stereo import rectify

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    c = calibration
    r = rectify(c.left, c.right, c.right_from_left)
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    try:
        fs.write("image_width", int(c.left.width))
        fs.write("image_height", int(c.left.height))
        fs.write("camera_model", c.left.model)
        fs.write("camera_model_right", c.right.model)
        fs.write("K1", c.left.K)
        fs.write("D1", np.asarray(c.left.opencv_dist(), np.float64).reshape(1, -1))
        fs.write("K2", c.right.K)
        fs.write("D2", np.asarray(c.right.opencv_dist(), np.float64).reshape(1, -1))
        fs.write("R", c.right_from_left.rotation)
        fs.write("T", c.right_from_left.translation.reshape(3, 1))
        for k in ("R1", "R2", "P1", "P2", "Q"):
            fs.write(k, getattr(r, k))
        fs.write("baseline", c.baseline)
    finally:
        fs.release()
    return path
