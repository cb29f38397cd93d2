"""Undistortion to an ideal pinhole camera, through our camera models (any COLMAP model,
fisheye included): the pinhole camera to undistort to, and the remap tables.

    pinhole = undistorted_pinhole(camera)              # same size, no blank pixels
    map_xy = undistortion_map(camera, pinhole)         # [H, W, 2] float32 source pixels
    image = cv2.remap(src, map_xy[..., 0], map_xy[..., 1], cv2.INTER_LINEAR)

Pixels are in our convention (pixel (0, 0) is the centre of the top-left pixel), which is also
OpenCV's ``remap`` convention, so the tables go to ``cv2.remap`` as they are.
"""

from __future__ import annotations

import numpy as np

from calib.cameras import Camera

__all__ = ["has_distortion", "undistorted_pinhole", "undistortion_map"]


def has_distortion(camera: Camera) -> bool:
    """True unless ``camera`` is a pinhole (SIMPLE_PINHOLE / PINHOLE, or zero distortion and
    not a fisheye model)."""
    if not isinstance(camera, Camera):
        raise TypeError(f"camera: expected calib.Camera, got {type(camera).__name__}")
    return camera.is_fisheye or (camera.model not in ("SIMPLE_PINHOLE", "PINHOLE") and bool(np.any(camera.extra != 0)))


def _sources(camera: Camera, pinhole: Camera, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source pixels in ``camera`` of pinhole pixels ``uv`` [..., 2] and whether they are valid."""
    rays, ok = pinhole.unproject(uv)
    src, valid = camera.project(rays)
    return src, ok & valid


def _border(width: int, height: int) -> np.ndarray:
    """Every border pixel centre (radial models reach their extremes on the border)."""
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    return np.concatenate([np.stack([u, np.zeros_like(u)], 1), np.stack([u, np.full_like(u, height - 1)], 1),
                           np.stack([np.zeros_like(v), v], 1), np.stack([np.full_like(v, width - 1), v], 1)])


def undistorted_pinhole(camera: Camera) -> Camera:
    """The PINHOLE camera of ``camera``'s size and principal point whose every pixel sees a
    pixel of the original image (COLMAP's ``blank_pixels = 0``): the focal lengths are scaled by
    the smallest factor (widest view) that keeps the border inside the source image."""
    if not has_distortion(camera):
        (fx, fy), (cx, cy) = camera.focal, camera.principal_point
        return Camera("PINHOLE", camera.width, camera.height, np.array([fx, fy, cx, cy]))
    (fx, fy), (cx, cy) = camera.focal, camera.principal_point
    w, h = camera.size
    border = _border(w, h)

    def inside(s: float) -> bool:
        pin = Camera("PINHOLE", w, h, np.array([fx * s, fy * s, cx, cy]))
        src, ok = _sources(camera, pin, border)
        return bool(np.all(ok) and np.all((src[:, 0] >= -0.5) & (src[:, 0] <= w - 0.5)
                                          & (src[:, 1] >= -0.5) & (src[:, 1] <= h - 0.5)))

    lo, hi = 0.05, 1.0
    while not inside(hi):  # strong barrel / fisheye: narrower views
        lo, hi = hi, hi * 2.0
        if hi > 64:
            raise ValueError(f"camera: cannot find a pinhole view inside the image of {camera}")
    if inside(lo):
        hi = lo
    for _ in range(40):  # bisection on the focal scale: inside(hi) holds, inside(lo) does not
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if inside(mid) else (mid, hi)
    return Camera("PINHOLE", w, h, np.array([fx * hi, fy * hi, cx, cy]))


def undistortion_map(camera: Camera, pinhole: Camera) -> np.ndarray:
    """[H, W, 2] float32: for each pixel of ``pinhole``, the pixel of ``camera`` it sees (NaN-free;
    invalid rays map to -1e6, outside any image)."""
    if pinhole.model not in ("PINHOLE", "SIMPLE_PINHOLE"):
        raise ValueError(f"pinhole: expected a PINHOLE / SIMPLE_PINHOLE camera, got {pinhole.model}")
    src, ok = _sources(camera, pinhole, pinhole.pixel_grid())
    return np.where(ok[..., None], src, -1e6).astype(np.float32)
