"""Gaussian splatting: rasterizers (gsplat on CUDA, pure PyTorch anywhere), trainer, strategies.

Heavy (imports torch). ``recon`` imports this lazily, inside the CLI verbs that need it.
"""

from render.splat.gaussians import Gaussians
from render.splat.rasterize import RenderOutput, camera_intrinsics, gsplat_available, rasterize

__all__ = ["Gaussians", "RenderOutput", "camera_intrinsics", "gsplat_available", "rasterize"]
