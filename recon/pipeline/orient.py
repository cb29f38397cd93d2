"""Upright, centred scenes: the similarity that puts an SfM model on its ground plane.

SfM leaves the world frame wherever the first image pair put it. For viewing and export we want
the scene standing upright on z = 0 (recon view's ground grid, and z-up as Blender, Open3D and
most mesh viewers expect) and centred above the origin, like nerfstudio's auto-orient:

- up: minus the mean of the cameras' image "down" axes (OpenCV y) in the world. People hold
  cameras level, so that mean is the gravity direction up to a few degrees; for a set of photos
  taken from above (a turntable or a drone) it is the view direction's opposite, still "up";
- centre: the median of the sparse points across the up axis (robust to stray points), so the
  object or room sits above the origin;
- floor: the 2nd percentile of point heights goes to z = 0;
- scale: 1 (SfM units are kept; nothing downstream depends on a unit cube).

The result is a :class:`calib.Sim3` ``oriented_from_model``; every oriented output records it
so its coordinates can be mapped back to the COLMAP model's frame.
"""

from __future__ import annotations

import numpy as np

from calib import Sim3
from recon.scene import Reconstruction

__all__ = ["auto_orient", "camera_up"]


def camera_up(rec: Reconstruction) -> np.ndarray:
    """[3] unit vector: minus the mean image-y axis of the registered cameras, in the world."""
    ims = rec.registered_images
    if not ims:
        raise ValueError("rec: no registered image to take the up direction from")
    downs = np.array([im.cam_from_world.rotation[1] for im in ims])  # row 1 = camera y in world
    m = -downs.mean(axis=0)
    n = np.linalg.norm(m)
    if n < 1e-6:  # cameras rolled every which way: fall back to the principal axis of the centres
        raise ValueError("rec: the cameras' up directions cancel out; cannot choose an up direction")
    return m / n


def _rotation_to_z(up: np.ndarray) -> np.ndarray:
    """Rotation R with R @ up = +z, by the shortest arc (Rodrigues)."""
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(up, z)
    s, c = np.linalg.norm(v), float(up @ z)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = v / s
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def auto_orient(rec: Reconstruction) -> Sim3:
    """``oriented_from_model``: z up, the scene above the origin, its floor at z = 0."""
    R = _rotation_to_z(camera_up(rec))
    xyz = rec.points_xyz()
    if len(xyz) == 0:
        xyz = np.array([im.center for im in rec.registered_images])
    p = xyz @ R.T
    centre = np.median(p, axis=0)
    floor = float(np.percentile(p[:, 2], 2))
    return Sim3(1.0, R, -np.array([centre[0], centre[1], floor]))
