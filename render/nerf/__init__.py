"""NeRF: Instant-NGP-style hash-grid field, occupancy-grid sampling, packed volume rendering,
trainer (``recon train nerf``). Light at import (no torch): names load their modules on first use.
"""

from __future__ import annotations

from recon._lazy import lazy_exports

_LAZY = {
    "HashGrid": "render.nerf.encoding",
    "HashGridConfig": "render.nerf.encoding",
    "FrequencyEncoding": "render.nerf.encoding",
    "hash_grid_encode": "render.nerf.encoding",
    "sh_encode": "render.nerf.encoding",
    "FieldConfig": "render.nerf.field",
    "NerfField": "render.nerf.field",
    "RenderedRays": "render.nerf.volume",
    "composite": "render.nerf.volume",
    "distortion_loss": "render.nerf.volume",
    "render_weights": "render.nerf.volume",
    "OccupancyGrid": "render.nerf.sampling",
    "SceneBounds": "render.nerf.sampling",
    "choose_bounds": "render.nerf.sampling",
    "march_rays": "render.nerf.sampling",
    "camera_rays": "render.nerf.rays",
    "NerfConfig": "render.nerf.trainer",
    "NerfModel": "render.nerf.trainer",
    "train": "render.nerf.trainer",
    "load_model": "render.nerf.trainer",
}

__all__ = [  # the names of _LAZY
    "FieldConfig",
    "FrequencyEncoding",
    "HashGrid",
    "HashGridConfig",
    "NerfConfig",
    "NerfField",
    "NerfModel",
    "OccupancyGrid",
    "RenderedRays",
    "SceneBounds",
    "camera_rays",
    "choose_bounds",
    "composite",
    "distortion_loss",
    "hash_grid_encode",
    "load_model",
    "march_rays",
    "render_weights",
    "sh_encode",
    "train",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
