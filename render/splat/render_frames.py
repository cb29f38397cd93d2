"""Rendering frames from a trained output: the test/train cameras of its dataset, or an orbit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from calib import Camera, Rigid3, look_at
from recon.errors import ReconError
from recon.io.gaussians import read_splat_ply
from render.data import SceneData, load_scene
from render.splat.api import rasterize
from render.splat.gaussians import Gaussians

__all__ = ["orbit_cameras", "render_frames", "render_splat_frames"]


def orbit_cameras(cam_from_worlds: list[Rigid3], num_frames: int) -> list[Rigid3]:
    """A circle around the point the cameras look at, in the plane orthogonal to their mean 'up'
    (-y of the OpenCV camera), at their mean distance and height."""
    from render.data import View
    from render.splat.trainer import _look_at_centre

    fake = [View("", None, p, None) for p in cam_from_worlds]
    centre, _ = _look_at_centre(fake) if len(fake) > 1 else (np.zeros(3), 1.0)
    up = -np.mean([p.rotation[1] for p in cam_from_worlds], axis=0)
    up /= max(np.linalg.norm(up), 1e-12)
    centres = np.array([p.dst_origin_in_src() for p in cam_from_worlds])
    rel = centres - centre
    height = float(np.mean(rel @ up))
    radial = rel - np.outer(rel @ up, up)
    radius = float(np.mean(np.linalg.norm(radial, axis=1)))
    if radius < 1e-9:
        radius = float(np.mean(np.linalg.norm(rel, axis=1))) or 1.0
    e1 = radial[0] / max(np.linalg.norm(radial[0]), 1e-12) if np.linalg.norm(radial[0]) > 1e-9 else np.cross(up, [1, 0, 0])
    e2 = np.cross(up, e1)
    out = []
    for k in range(num_frames):
        a = 2 * np.pi * k / num_frames
        eye = centre + up * height + radius * (np.cos(a) * e1 + np.sin(a) * e2)
        out.append(look_at(eye, centre, up))
    return out


def render_frames(gaussians: Gaussians, cameras: list[Camera], cam_from_worlds: list[Rigid3], out_dir, *,
                  background=(0.0, 0.0, 0.0), sh_degree=None, progress=True) -> list[Path]:
    """Render one PNG per (camera, cam_from_world) into ``out_dir`` (frame_0000.png ...)."""
    from PIL import Image as PILImage
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with torch.no_grad():
        for k, (cam, cam_from_world) in enumerate(tqdm(list(zip(cameras, cam_from_worlds)), desc="render",
                                                       disable=not progress, file=sys.stderr)):
            rgb = rasterize(gaussians, cam, cam_from_world, background=background, sh_degree=sh_degree).rgb
            img = (rgb.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
            path = out_dir / f"frame_{k:04d}.png"
            PILImage.fromarray(img).save(path)
            paths.append(path)
    return paths


def _write_video(frames: list[Path], path: str, fps: int) -> None:
    import cv2

    first = cv2.imread(str(frames[0]))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise ReconError(f"{path}: OpenCV cannot open a video writer (mp4v codec)")
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()


def _split_of_run(run_dir: Path, report: dict, scene: SceneData, which: str) -> list[int]:
    """Indices into ``scene.views`` of the run's ``which`` views: the split recorded in
    report.json (by view name); for runs older than that record, the split re-derived with the
    run's config.json (test_every, max_views)."""
    from render.scaffold import Split

    if isinstance(report.get("split"), dict):
        return Split.from_json(report["split"], where=run_dir / "report.json").indices_in(scene, which)
    cfg = {}
    if (run_dir / "config.json").is_file():
        cfg = json.loads((run_dir / "config.json").read_text())
    max_views = cfg.get("max_views")
    views = scene.views[:max_views] if max_views else scene.views
    split = Split.every(SceneData(views, source=scene.source), test_every=int(cfg.get("test_every", 8)))
    return list(split.test if which == "test" else split.train)


def render_splat_frames(run_dir, output, options) -> tuple[list[Path], Path | None]:
    """(frame PNGs, video or None) of a splat training output; ``options``: a
    render.frames.RenderFramesOptions (see :func:`render.frames.render_run_frames`)."""
    from recon.errors import FormatError
    from recon.io.detect import Kind, detect
    from render._device import pick_device

    run_dir = Path(run_dir)
    try:
        art = detect(run_dir)
    except FormatError:
        art = None
    if art is None or art.kind is not Kind.SPLAT_OUTPUT:
        what = f" (it holds a {art.kind.label})" if art is not None else ""
        raise FileNotFoundError(f"{run_dir / 'splat.ply'}: no splat.ply here{what}; train with "
                                f"`recon train splat DATA -o {run_dir}`")
    report = json.loads(art.report.read_text()) if art.report is not None else {}
    g = Gaussians.from_cloud(read_splat_ply(art.ply), device=pick_device(options.device).type)
    bg = tuple(options.background) if options.background else tuple(report.get("background", (0.0, 0.0, 0.0)))
    if options.camera_path:
        cams, cam_from_worlds = _camera_path(options.camera_path)
    else:
        data = options.data or (str(art.data_path) if art.data_path else None)
        if not data:
            raise ReconError(f"{run_dir}: no dataset recorded in report.json; pass --data DATA")
        scale = options.resolution_scale or report.get("resolution_scale", 1.0)
        scene: SceneData = load_scene(data, resolution_scale=scale, background=bg,
                                      cache_dir=run_dir / "undistorted")
        if options.cameras == "orbit":
            cams, cam_from_worlds = _orbit(scene, options.frames)
        else:
            idx = _split_of_run(run_dir, report, scene, options.cameras)
            cams = [scene.views[i].camera for i in idx]
            cam_from_worlds = [scene.views[i].cam_from_world for i in idx]
    frames = render_frames(g, cams, cam_from_worlds, output, background=bg, sh_degree=options.sh_degree,
                           progress=options.progress)
    if options.video:
        _write_video(frames, str(options.video), options.fps)
    return frames, None if not options.video else Path(options.video)


def _camera_path(path):
    """(cameras, cam_from_worlds) of a recon.camera_path JSON."""
    from recon.io.camera_path import load_camera_path

    frames = load_camera_path(path).frames
    return [f.camera for f in frames], [f.cam_from_world for f in frames]


def _orbit(scene: SceneData, frames: int):
    """(cameras, cam_from_worlds) of an orbit of ``frames`` frames around the scene's views."""
    if frames < 1:
        raise ValueError(f"--frames: expected >= 1, got {frames}")
    cam_from_worlds = orbit_cameras([v.cam_from_world for v in scene.views], frames)
    return [scene.views[0].camera] * len(cam_from_worlds), cam_from_worlds
