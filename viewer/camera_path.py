"""Camera paths recorded in the viewer. The file format lives in :mod:`recon.io.camera_path` (so
that ``recon render --camera-path`` can read it without importing ``viewer``); re-exported here
with :func:`render_camera_path`, which renders a path through any ``render_fn``."""

from __future__ import annotations

from pathlib import Path

from recon.io.camera_path import (  # noqa: F401
    FORMAT,
    VERSION,
    CameraPath,
    PathFrame,
    interpolate_path,
    load_camera_path,
    save_camera_path,
)

__all__ = ["CameraPath", "PathFrame", "interpolate_path", "load_camera_path", "render_camera_path",
           "save_camera_path"]

def render_camera_path(camera_path: CameraPath | str | Path, render_fn, out_dir: str | Path, *,
                       progress: bool = True) -> list[Path]:
    """Render every frame of a camera path with ``render_fn(camera, cam_from_world) -> [H, W, 3]``
    (uint8, or float in [0, 1]; e.g. the splat trainer's rasterizer) into
    ``out_dir/frame_0000.png``...; returns the paths. Frames already written are kept if the
    run is interrupted."""
    from PIL import Image
    from tqdm import tqdm

    from viewer.convert import as_rgb8

    if not isinstance(camera_path, CameraPath):
        camera_path = load_camera_path(camera_path)
    if not camera_path.frames:
        raise ValueError("camera_path: has no frames (record at least one keyframe)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(tqdm(camera_path.frames, desc="render path", disable=not progress)):
        img = as_rgb8(render_fn(f.camera, f.cam_from_world), f.camera)
        p = out_dir / f"frame_{i:04d}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths
