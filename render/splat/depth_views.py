"""Depth (and colour) rendered from a trained splat output for its training cameras: the
:class:`recon.export.DepthRenderer` that `recon export` and the pipeline hand to
:func:`recon.export.export_artifact`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from recon.errors import FormatError

__all__ = ["render_depth_views"]


def _log(msg: str) -> None:
    print(f"[export] {msg}", file=sys.stderr)


def _resolution_scale(report_path) -> float:
    """The training resolution scale recorded in report.json (1.0 when absent or unreadable)."""
    if not report_path:
        return 1.0
    try:
        return float(json.loads(Path(report_path).read_text()).get("resolution_scale") or 1.0)
    except (OSError, ValueError, AttributeError):
        return 1.0


def render_depth_views(artifact, *, min_alpha: float = 0.5, progress: bool = True) -> list:
    """DepthViews of a splat training output (``artifact``: recon.io.Artifact, SPLAT_OUTPUT).

    One view per registered image of the dataset it was trained on (report.json data_path), at
    the training resolution, with the pinhole the trainer undistorted to. depth [H, W] float32
    (metres along z; 0 where the accumulated opacity is below ``min_alpha``), rgb [H, W, 3] uint8.
    """
    import torch

    from calib.undistort import has_distortion, undistorted_pinhole
    from recon.export import DepthView
    from recon.io import read_model
    from recon.io.gaussians import read_splat_ply
    from render.scaffold import ThreadGovernor
    from render.splat.api import rasterize

    ThreadGovernor(log=_log).start()
    if artifact.data_path is None or not Path(artifact.data_path).exists():
        raise FormatError(artifact.path, "report.json names no dataset (data_path) whose cameras to render depth from")
    gaussians = read_splat_ply(artifact.ply)
    rec = read_model(artifact.data_path)
    scale = _resolution_scale(artifact.report)
    images = sorted((im for im in rec.images.values() if im.registered), key=lambda im: im.name)
    it = images
    if progress:
        from tqdm import tqdm

        it = tqdm(images, desc="render depth", unit="view", file=sys.stderr)
    views = []
    with torch.no_grad():
        for im in it:
            cam = rec.cameras[im.camera_id]
            if has_distortion(cam):  # the trainer undistorted these to this pinhole (render.data)
                cam = undistorted_pinhole(cam)
            if scale != 1.0:
                cam = cam.scaled(scale)
            out = rasterize(gaussians, cam, im.cam_from_world)
            alpha = out.alpha.cpu().numpy()
            depth = np.where(alpha >= min_alpha, out.depth.cpu().numpy(), 0.0).astype(np.float32)
            rgb = np.clip(np.rint(out.rgb.clamp(0, 1).cpu().numpy() * 255), 0, 255).astype(np.uint8)
            views.append(DepthView(cam, im.cam_from_world, depth, rgb, im.name))
    return views
