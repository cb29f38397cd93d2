"""`recon render` for NeRF outputs: test/train views of the dataset, an orbit, or a camera path,
rendered from OUT/model.pt (same options and outputs as for splat outputs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from recon.errors import ReconError

__all__ = ["render_nerf_frames"]


def render_nerf_frames(run_dir, output, options) -> tuple[list[Path], Path | None]:
    """(frame PNGs, video or None) of a NeRF training output; ``options``: a
    render.frames.RenderFramesOptions (see :func:`render.frames.render_run_frames`)."""
    from PIL import Image as PILImage
    from tqdm import tqdm

    from render._device import pick_device
    from render.data import load_scene
    from render.nerf.trainer import load_model
    from render.splat.render_frames import _camera_path, _orbit, _write_video

    run_dir = Path(run_dir)
    report = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").is_file() else {}
    device = pick_device(options.device).type
    model = load_model(run_dir, device=device)
    if options.background:
        model.background = torch.tensor(options.background, dtype=torch.float32, device=device)
    if options.camera_path:
        cams, cam_from_worlds = _camera_path(options.camera_path)
    else:
        data = options.data or report.get("data_path")
        if not data:
            raise ReconError(f"{run_dir}: no dataset recorded in report.json; pass --data DATA")
        scale = options.resolution_scale or report.get("resolution_scale", 1.0)
        scene = load_scene(data, resolution_scale=scale, allow_distortion=True)
        if options.cameras == "orbit":
            cams, cam_from_worlds = _orbit(scene, options.frames)
        else:
            idx = _split_indices(report, len(scene.views), options.cameras)
            cams = [scene.views[i].camera for i in idx]
            cam_from_worlds = [scene.views[i].cam_from_world for i in idx]
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    for k, (cam, cam_from_world) in enumerate(tqdm(list(zip(cams, cam_from_worlds)), desc="render",
                                                   file=sys.stderr, disable=not options.progress)):
        rgb = model.render_image(cam, cam_from_world).rgb
        p = out_dir / f"frame_{k:04d}.png"
        PILImage.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(p)
        frames.append(p)
    video = Path(options.video) if options.video and frames else None
    if video is not None:
        _write_video(frames, str(video), options.fps)
    return frames, video


def _split_indices(report: dict, num_views: int, which: str) -> list[int]:
    """Indices of the run's ``which`` ("test" / "train") views: the split in report.json, else
    the default split of ``num_views``."""
    from render.data import split_train_test

    split = report.get("split") or {}
    key = "test_indices" if which == "test" else "train_indices"
    if key in split:
        return [int(i) for i in split[key]]
    train_idx, test_idx = split_train_test(num_views)
    return test_idx if which == "test" else train_idx
