"""Stereo rectification: from a calibrated rig (``cv2.stereoRectify`` through
``calib.stereo.rectify``) or, for an uncalibrated pair, from an estimated F
(``cv2.stereoRectifyUncalibrated``, Hartley 1999), plus the remapping of images.

After rectification corresponding points lie on the same row and the disparity is
``d = u_left - u_right`` (pixels); for a calibrated rig ``Z = f B / (d - doffs)`` in the rectified
left frame, ``doffs = cx_left - cx_right`` of the rectified cameras (0 with OpenCV's
CALIB_ZERO_DISPARITY, which we use).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib import Camera
from calib import StereoRig

__all__ = ["StereoRectification", "rectify_calibrated", "rectify_images", "rectify_uncalibrated"]


@dataclass(frozen=True, eq=False)
class StereoRectification:
    """How to rectify a pair and what the rectified geometry is.

    map_left, map_right: (map_x, map_y) float32 [H, W] each: for every rectified pixel, the
                   source pixel (pixel-centre convention) in the original image (cv2.remap).
    camera:        PINHOLE camera of the rectified left view (calibrated), or a nominal one
                   (uncalibrated: focal unknown, set to NaN-free 1.2 * max(w, h) for pictures).
    focal_px:      rectified focal length (pixels); NaN when uncalibrated.
    baseline:      distance between centres (units of T); NaN when uncalibrated (no metric depth).
    doffs:         cx_left - cx_right of the rectified cameras (pixels).
    rect_from_left:[3, 3] rotation from the left camera frame to the rectified left frame
                   (calibrated only; identity otherwise).
    calibrated:    metric depth is available.
    """

    map_left: tuple[np.ndarray, np.ndarray]
    map_right: tuple[np.ndarray, np.ndarray]
    camera: Camera
    focal_px: float
    baseline: float
    doffs: float
    rect_from_left: np.ndarray
    calibrated: bool

    @property
    def size(self) -> tuple[int, int]:
        return self.camera.size


def rectify_calibrated(calibration: StereoRig, *, alpha: float = 0.0) -> StereoRectification:
    """Rectification of a calibrated rig. ``alpha`` = 0 crops to valid pixels only, 1 keeps
    every source pixel (black borders). Raises ValueError for vertical rigs."""
    import cv2

    from calib.stereo import rectify

    if not isinstance(calibration, StereoRig):
        raise TypeError(f"calibration: expected StereoRig, got {type(calibration).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected in [0, 1], got {alpha}")
    c = calibration
    r = rectify(c.left, c.right, c.right_from_left, alpha=alpha)
    if abs(r.P2[1, 3]) > abs(r.P2[0, 3]):
        raise ValueError("calibration: the rig is vertical (baseline along y); only horizontal rigs are "
                         "supported (rotate both images by 90 degrees first)")
    size = c.left.size
    maps = []
    for cam, R, P in ((c.left, r.R1, r.P1), (c.right, r.R2, r.P2)):
        if cam.is_fisheye:
            mx, my = cv2.fisheye.initUndistortRectifyMap(cam.K, np.asarray(cam.opencv_dist(), np.float64), R, P[:, :3],
                                                         size, cv2.CV_32FC1)
        else:
            mx, my = cv2.initUndistortRectifyMap(cam.K, np.asarray(cam.opencv_dist(), np.float64), R, P[:, :3],
                                                 size, cv2.CV_32FC1)
        maps.append((mx, my))
    f = float(r.P1[0, 0])
    baseline = float(-r.P2[0, 3] / r.P2[0, 0])
    camera = Camera("PINHOLE", size[0], size[1], np.array([r.P1[0, 0], r.P1[1, 1], r.P1[0, 2], r.P1[1, 2]]))
    return StereoRectification(maps[0], maps[1], camera, f, baseline, float(r.P1[0, 2] - r.P2[0, 2]),
                               np.asarray(r.R1, np.float64), True)


def _homography_maps(H: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    w, h = size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    Hi = np.linalg.inv(H)
    x = Hi[0, 0] * u + Hi[0, 1] * v + Hi[0, 2]
    y = Hi[1, 0] * u + Hi[1, 1] * v + Hi[1, 2]
    z = Hi[2, 0] * u + Hi[2, 1] * v + Hi[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (x / z).astype(np.float32), (y / z).astype(np.float32)


def rectify_uncalibrated(F, x1, x2, size: tuple[int, int], *, threshold_px: float = 2.0) -> StereoRectification:
    """Projective rectification of an uncalibrated pair from F and its inlier matches
    (``cv2.stereoRectifyUncalibrated``). Disparities are then defined but depth is not metric
    (``focal_px`` and ``baseline`` are NaN). x1, x2: [N, 2] inlier matches (pixels);
    size: (width, height) of both images."""
    import cv2

    x1 = np.asarray(x1, np.float64).reshape(-1, 2)
    x2 = np.asarray(x2, np.float64).reshape(-1, 2)
    if x1.shape != x2.shape or x1.shape[0] < 8:
        raise ValueError(f"x1, x2: expected >= 8 matching inliers of equal shape, got {x1.shape}, {x2.shape}")
    ok, H1, H2 = cv2.stereoRectifyUncalibrated(x1, x2, np.asarray(F, np.float64), tuple(size), threshold=threshold_px)
    if not ok:
        raise ValueError("F: cv2.stereoRectifyUncalibrated failed (epipoles inside the image or degenerate F)")
    # Keep the left image's scale and position: apply the same similarity to both views so
    # the rectified left image best matches the original (Loop & Zhang-style re-centring).
    w, h = size
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)

    def warp(H, p):
        q = np.c_[p, np.ones(len(p))] @ H.T
        return q[:, :2] / q[:, 2:]

    wc = warp(H1, corners)
    s = np.sqrt((w * h) / max(abs(cv2.contourArea(wc.astype(np.float32))), 1e-9))
    c = wc.mean(0)
    S = np.array([[s, 0, (w - 1) / 2 - s * c[0]], [0, s, (h - 1) / 2 - s * c[1]], [0, 0, 1]])
    H1, H2 = S @ H1, S @ H2
    f = 1.2 * max(w, h)
    camera = Camera("PINHOLE", w, h, np.array([f, f, (w - 1) / 2, (h - 1) / 2]))
    return StereoRectification(_homography_maps(H1, size), _homography_maps(H2, size), camera, float("nan"),
                               float("nan"), 0.0, np.eye(3), False)


def rectify_images(rectification: StereoRectification, left: np.ndarray, right: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Remap both images ([H, W] or [H, W, C], any dtype OpenCV remaps) into the rectified
    frames (bilinear; outside pixels black)."""
    import cv2

    out = []
    for img, (mx, my), name in ((left, rectification.map_left, "left"), (right, rectification.map_right, "right")):
        img = np.asarray(img)
        if img.shape[:2] != mx.shape:
            raise ValueError(f"{name}: image is {img.shape[1]}x{img.shape[0]} but the rectification expects "
                             f"{mx.shape[1]}x{mx.shape[0]}")
        out.append(cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0))
    return out[0], out[1]
