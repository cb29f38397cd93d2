"""`recon render` for NeRF outputs: test/train views of the dataset, an orbit, or a camera path,
rendered from OUT/model.pt (same options and outputs as for splat outputs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from recon.errors import ReconError

__all__ = ["render_frames_cli"]


def render_frames_cli(args) -> int:
    from PIL import Image as PILImage
    from tqdm import tqdm

    from render.data import load_scene, split_train_test
    from render.nerf.trainer import load_model
    from render.splat.render_frames import _write_video, orbit_cameras

    run_dir = Path(args.run_dir)
    report = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").is_file() else {}
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    model = load_model(run_dir, device=device)
    if args.background:
        model.background = torch.tensor(args.background, dtype=torch.float32, device=device)
    if getattr(args, "camera_path", None):
        from recon.io.camera_path import load_camera_path

        path = load_camera_path(args.camera_path)
        cams, poses = [f.camera for f in path.frames], [f.cam_from_world for f in path.frames]
    else:
        data = args.data or report.get("data_path")
        if not data:
            raise ReconError(f"{run_dir}: no dataset recorded in report.json; pass --data DATA")
        scale = args.resolution_scale or report.get("resolution_scale", 1.0)
        scene = load_scene(data, resolution_scale=scale, allow_distortion=True)
        if args.cameras == "orbit":
            if args.frames < 1:
                raise ValueError(f"--frames: expected >= 1, got {args.frames}")
            poses = orbit_cameras([v.cam_from_world for v in scene.views], args.frames)
            cams = [scene.views[0].camera] * len(poses)
        else:
            split = report.get("split") or {}
            key = "test_indices" if args.cameras == "test" else "train_indices"
            if key in split:
                idx = [int(i) for i in split[key]]
            else:
                train_idx, test_idx = split_train_test(len(scene.views))
                idx = test_idx if args.cameras == "test" else train_idx
            cams = [scene.views[i].camera for i in idx]
            poses = [scene.views[i].cam_from_world for i in idx]
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    for k, (cam, pose) in enumerate(tqdm(list(zip(cams, poses)), desc="render", file=sys.stderr)):
        rgb = model.render_image(cam, pose).rgb
        p = out_dir / f"frame_{k:04d}.png"
        PILImage.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(p)
        frames.append(p)
    if args.video and frames:
        _write_video(frames, args.video, args.fps)
    print(f"render: {len(frames)} frames -> {args.output}" + (f", video {args.video}" if args.video else ""))
    return 0
