"""Intrinsics for a pair of images from a calibration file (used by ``recon twoview --calib``).

Any file :func:`calib.read_camera_pair` reads (the one calibration reader, :mod:`calib.files`):
a stereo calibration gives image A the left camera and image B the right one; a mono calibration
(OpenCV YAML, report.json, COLMAP cameras.txt) gives both images its camera.
"""

from __future__ import annotations

from calib import Camera
from calib.files import read_camera_pair as _read_camera_pair
from recon.errors import FormatError

__all__ = ["fit_camera_to_image", "read_camera_pair"]


def read_camera_pair(path) -> tuple[Camera, Camera]:
    """(camera for image A, camera for image B); FileNotFoundError / FormatError naming the file."""
    try:
        return _read_camera_pair(path)
    except FileNotFoundError:
        raise
    except ValueError as e:
        raise FormatError.of(path, e) from None


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
