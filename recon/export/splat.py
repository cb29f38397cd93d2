"""3DGS splat export: crop the Gaussians to a box and drop the nearly transparent ones, written
back in the standard 3DGS PLY layout (recon.io.gaussians)."""

from __future__ import annotations

import numpy as np

from recon.errors import ReconError
from recon.io.gaussians import GaussianCloud

__all__ = ["filter_gaussians"]


def filter_gaussians(gaussians: GaussianCloud, *, bbox_min=None, bbox_max=None,
                     min_opacity: float = 0.0) -> GaussianCloud:
    """The Gaussians whose centre lies in [bbox_min, bbox_max] (world, metres; None: no crop)
    and whose opacity is at least ``min_opacity``. ReconError when none remains."""
    if not 0.0 <= min_opacity < 1.0:
        raise ValueError(f"min_opacity: expected a value in [0, 1), got {min_opacity}")
    keep = gaussians.opacities >= min_opacity
    if bbox_min is not None or bbox_max is not None:
        if bbox_min is None or bbox_max is None:
            raise ValueError("bbox_min, bbox_max: give both or neither")
        lo, hi = np.asarray(bbox_min, float).reshape(3), np.asarray(bbox_max, float).reshape(3)
        keep &= np.all((gaussians.means >= lo) & (gaussians.means <= hi), axis=1)
    if not keep.any():
        raise ReconError(f"splats: none of the {len(gaussians)} Gaussians is inside the crop box with "
                         f"opacity >= {min_opacity}")
    return gaussians.subset(keep)
