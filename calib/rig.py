"""The one stereo-rig type (its own module so that the calibration files and the stereo solver
both import it without importing each other)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib.cameras import Camera
from calib.transforms import Rigid3

__all__ = ["StereoRig"]


@dataclass(frozen=True)
class StereoRig:
    """Two calibrated cameras and ``right_from_left`` (X_right = R X_left + t, OpenCV's R, T).

    The one stereo-rig type: calibration (``calib.stereo.StereoResult.rig``), the calibration files,
    ``recon.stereo`` and ``recon.synth`` all use it. Units of t are the calibration's (metres when
    the board square was given in metres)."""

    left: Camera
    right: Camera
    right_from_left: Rigid3

    def __post_init__(self):
        for name in ("left", "right"):
            if not isinstance(getattr(self, name), Camera):
                raise TypeError(f"{name}: expected calib.Camera, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.right_from_left, Rigid3):
            raise TypeError(f"right_from_left: expected calib.Rigid3, got {type(self.right_from_left).__name__}")

    @property
    def baseline(self) -> float:
        """Distance between the camera centres (units of t)."""
        return float(np.linalg.norm(self.right_from_left.translation))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the left camera."""
        return self.left.size

    @classmethod
    def horizontal(cls, camera: Camera, baseline: float = 0.12, *, right_camera: Camera | None = None,
                   toe_in_deg: float = 0.0, vertical_offset: float = 0.0, roll_deg: float = 0.0) -> StereoRig:
        """Right camera ``baseline`` to the right (+x of the left camera), optionally rotated
        (toe-in about y, roll about z) and shifted vertically: an unrectified rig."""
        if not (np.isfinite(baseline) and baseline > 0):
            raise ValueError(f"baseline: expected a positive distance, got {baseline}")
        from calib.transforms import matrix_from_axis_angle

        R = matrix_from_axis_angle(np.array([0.0, -np.radians(toe_in_deg), 0.0])) @ \
            matrix_from_axis_angle(np.array([0.0, 0.0, np.radians(roll_deg)]))
        centre_right_in_left = np.array([baseline, vertical_offset, 0.0])
        return cls(camera, right_camera or camera, Rigid3(R, -R @ centre_right_in_left))

    def cams_from_world(self, cam_left_from_world: Rigid3) -> tuple[Rigid3, Rigid3]:
        """(cam_left_from_world, cam_right_from_world)."""
        return cam_left_from_world, self.right_from_left @ cam_left_from_world

    def resized(self, width: int, height: int) -> StereoRig:
        """Both cameras resized to (width, height) (same pose)."""
        return StereoRig(self.left.resized(width, height), self.right.resized(width, height), self.right_from_left)
