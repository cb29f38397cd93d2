"""Writers for the SfM outputs other than sparse/0: transforms.json and points.ply, through
``recon.io``'s writers (nerfstudio transforms.json; binary little-endian PLY)."""

from __future__ import annotations

import os
from pathlib import Path

from recon.scene import Reconstruction

__all__ = ["write_points_ply", "write_transforms_json"]


def write_transforms_json(rec: Reconstruction, path, *, image_dir, out_dir) -> None:
    """nerfstudio transforms.json of ``rec`` (recon.io's writer), image paths relative to ``out_dir``."""
    from recon.io import write_transforms

    write_transforms(rec, path, image_dir=os.path.relpath(Path(image_dir), Path(out_dir)))


def write_points_ply(rec: Reconstruction, path) -> None:
    """points.ply (x y z, red green blue) of the 3D points (recon.io's writer)."""
    from recon.io import PointCloud, write_ply

    write_ply(path, PointCloud(rec.points_xyz(), rec.points_rgb()))
