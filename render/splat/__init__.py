"""Gaussian splatting: rasterizers (gsplat on CUDA, pure PyTorch anywhere), trainer, strategies.

Importing this package is light (no torch): the names below load their modules on first use,
so ``recon train --help`` can discover ``render.splat.cli_train`` without importing torch.
"""

from __future__ import annotations

from recon._lazy import lazy_exports

_LAZY = {
    "Gaussians": "render.splat.gaussians",
    "RenderOutput": "render.splat.api",
    "camera_intrinsics": "render.splat.api",
    "gsplat_available": "render.splat.api",
    "rasterize": "render.splat.api",
    "TrainConfig": "render.splat.trainer",
    "TrainResult": "render.splat.trainer",
    "TrainingDiverged": "render.splat.trainer",
    "train": "render.splat.trainer",
    "DefaultStrategy": "render.splat.strategy",
    "MCMCStrategy": "render.splat.strategy",
    "render_depth_views": "render.splat.depth_views",
}

__all__ = [  # the names of _LAZY
    "DefaultStrategy", "Gaussians", "MCMCStrategy", "RenderOutput", "TrainConfig", "TrainResult",
    "TrainingDiverged", "camera_intrinsics", "gsplat_available", "rasterize", "render_depth_views", "train",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
