"""Stereo calibration files for ``recon stereo``: thin wrappers over the one reader and writer,
:mod:`calib.files` (keys, formats and conventions are documented there).

``StereoCalibration`` is :class:`calib.StereoRig` (the one rig type; the old name stays for the
code and docs that use it)."""

from __future__ import annotations

from pathlib import Path

from calib.files import StereoRig, read_rig, write_opencv_yaml
from recon.errors import FormatError

__all__ = ["StereoCalibration", "read_stereo_calibration", "write_stereo_calibration"]

StereoCalibration = StereoRig


def read_stereo_calibration(path) -> StereoRig:
    """The rig of a stereo calibration file (OpenCV stereo YAML: K1 D1 K2 D2 R T image_width
    image_height, or a stereo report.json). FileNotFoundError / FormatError naming the file."""
    try:
        return read_rig(path)
    except FileNotFoundError:
        raise
    except ValueError as e:
        raise FormatError.of(path, e) from None


def write_stereo_calibration(path, calibration: StereoRig) -> Path:
    """Write the OpenCV stereo YAML ``recon calibrate`` writes (R1 R2 P1 P2 Q with alpha 0)."""
    return write_opencv_yaml(path, rig=calibration)
