"""Gaussian splatting: rasterizers (gsplat on CUDA, pure PyTorch anywhere), trainer, strategies.

Importing this package is light (no torch): the names below load their modules on first use,
so ``recon train --help`` can discover ``render.splat.cli_train`` without importing torch.
"""

from __future__ import annotations

import importlib

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


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'render.splat' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
