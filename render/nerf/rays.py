"""Camera rays through the calib camera models, so distorted and fisheye cameras (COLMAP
OPENCV / OPENCV_FISHEYE / ..., transforms.json ``k1 k2 p1 p2``) need no undistortion.

Pixel (u, v) = (0, 0) is the centre of the top-left pixel (the house convention); the ray of
pixel (x, y) goes through (u, v) = (x, y). Directions are unit vectors; ``z_per_t`` is the
camera-frame z of the unit direction, so z-depth = t * z_per_t (t: distance along the ray).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib import Camera, Rigid3

__all__ = ["CameraRays", "camera_frame_directions", "camera_rays"]


@dataclass
class CameraRays:
    origin: np.ndarray  # [3] world, the camera centre
    directions: np.ndarray  # [H, W, 3] unit, world frame
    z_per_t: np.ndarray  # [H, W] camera-frame z of each unit direction
    valid: np.ndarray  # [H, W] bool: the camera model's unprojection converged (inside its valid region)


def camera_frame_directions(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """[H, W, 3] unit directions in the OpenCV camera frame for every pixel centre, and the
    validity mask [H, W] (``calib.Camera.unproject``: exact inverse of ``project``)."""
    rays = camera.unproject(camera.pixel_grid())
    d = np.where(rays.valid[..., None], rays.directions, np.array([0.0, 0.0, 1.0]))
    return d, rays.valid


def camera_rays(camera: Camera, cam_from_world: Rigid3) -> CameraRays:
    """World-frame rays of every pixel of ``camera`` at pose ``cam_from_world``."""
    if not isinstance(camera, Camera):
        raise TypeError(f"camera: expected calib.Camera, got {type(camera).__name__}")
    if not isinstance(cam_from_world, Rigid3):
        raise TypeError(f"cam_from_world: expected calib.Rigid3, got {type(cam_from_world).__name__}")
    d_cam, valid = camera_frame_directions(camera)
    world_from_cam = cam_from_world.inverse()
    d_world = d_cam @ world_from_cam.rotation.T
    return CameraRays(world_from_cam.translation.copy(), d_world, d_cam[..., 2].copy(), valid)
