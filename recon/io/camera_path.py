"""Camera paths: keyframes recorded in the viewer, saved as JSON in OUR conventions, rendered by
``recon render --camera-path``. Lives in ``recon.io`` (a file format) so that both ``viewer`` (records) and
``render`` (renders) can use it without importing each other.

Schema (``"format": "recon.camera_path"``, ``"version": 1``; documented in docs/viewer.md)::

    {
      "format": "recon.camera_path", "version": 1,
      "fps": 30.0,
      "keyframes": [FRAME, ...],      # what the user recorded
      "frames": [FRAME, ...]          # what to render: keyframes interpolated, in order
    }
    FRAME = {
      "camera": {"model": "PINHOLE", "width": W, "height": H, "params": [fx, fy, cx, cy]},
      "cam_from_world": [[r00, r01, r02, t0], [r10, r11, r12, t1], [r20, r21, r22, t2], [0, 0, 0, 1]],
      "time": seconds
    }

``camera`` uses COLMAP model names and parameter order with pixel (0, 0) at the centre of the
top-left pixel; ``cam_from_world`` maps world points into the OpenCV camera frame
(x right, y down, z forward). Interpolation: slerp on rotation, linear on camera centre and
focal length (``calib.Rigid3.interpolate`` works on ``world_from_cam`` so the camera centre moves
on a straight line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calib import Camera, Rigid3

__all__ = ["CameraPath", "PathFrame", "interpolate_path", "load_camera_path", "save_camera_path"]

FORMAT = "recon.camera_path"
VERSION = 1


@dataclass(frozen=True, eq=False)
class PathFrame:
    camera: Camera
    cam_from_world: Rigid3
    time: float = 0.0  # seconds from the start of the path


@dataclass(eq=False)
class CameraPath:
    keyframes: list[PathFrame]
    frames: list[PathFrame]
    fps: float = 30.0


def _frame_to_json(f: PathFrame) -> dict:
    return {
        "camera": {"model": f.camera.model, "width": f.camera.width, "height": f.camera.height,
                   "params": [float(p) for p in f.camera.params]},
        "cam_from_world": f.cam_from_world.matrix().tolist(),
        "time": float(f.time),
    }


def _frame_from_json(d: dict, where: str) -> PathFrame:
    try:
        c = d["camera"]
        cam = Camera(str(c["model"]), int(c["width"]), int(c["height"]), np.asarray(c["params"], float))
        cam_from_world = Rigid3.from_matrix(np.asarray(d["cam_from_world"], dtype=np.float64))
        return PathFrame(cam, cam_from_world, float(d.get("time", 0.0)))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: {type(e).__name__}: {e}") from None


def interpolate_path(keyframes: list[PathFrame], *, fps: float = 30.0,
                     seconds_per_segment: float = 2.0) -> list[PathFrame]:
    """Frames at ``fps`` between consecutive keyframes (``seconds_per_segment`` each); the image
    size of the first keyframe is kept, focal lengths and principal points are interpolated
    linearly after scaling to that size."""
    if not keyframes:
        return []
    if len(keyframes) == 1:
        return [PathFrame(keyframes[0].camera, keyframes[0].cam_from_world, 0.0)]
    w, h = keyframes[0].camera.width, keyframes[0].camera.height
    cams = [k.camera if (k.camera.width, k.camera.height) == (w, h) else k.camera.resized(w, h)
            for k in keyframes]
    n_per = max(1, round(fps * seconds_per_segment))
    frames = []
    for i in range(len(keyframes) - 1):
        a, b = keyframes[i].cam_from_world.inverse(), keyframes[i + 1].cam_from_world.inverse()
        for j in range(n_per):
            t = j / n_per
            world_from_cam = a.interpolate(b, t)
            pa, pb = cams[i].params, cams[i + 1].params
            cam = Camera(cams[i].model, w, h, (1 - t) * pa + t * pb) if cams[i].model == cams[i + 1].model \
                else cams[i]
            frames.append(PathFrame(cam, world_from_cam.inverse(), len(frames) / fps))
    frames.append(PathFrame(cams[-1], keyframes[-1].cam_from_world, len(frames) / fps))
    return frames


def save_camera_path(path: str | Path, camera_path: CameraPath) -> Path:
    """Write ``camera_path`` as JSON (schema in the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "version": VERSION, "fps": float(camera_path.fps),
           "keyframes": [_frame_to_json(f) for f in camera_path.keyframes],
           "frames": [_frame_to_json(f) for f in camera_path.frames]}
    path.write_text(json.dumps(doc, indent=1))
    return path


def load_camera_path(path: str | Path) -> CameraPath:
    """Read a camera path JSON; raises ``recon.errors.FormatError`` naming the file."""
    from recon.errors import FormatError

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(path, f"not a readable JSON camera path ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise FormatError(path, f'expected "format": "{FORMAT}" (written by `recon view`)')
    if int(doc.get("version", 0)) > VERSION:
        raise FormatError(path, f"version {doc.get('version')} is newer than this reader ({VERSION})")
    try:
        keyframes = [_frame_from_json(d, f"keyframes[{i}]") for i, d in enumerate(doc.get("keyframes", []))]
        frames = [_frame_from_json(d, f"frames[{i}]") for i, d in enumerate(doc.get("frames", []))]
    except ValueError as e:
        raise FormatError(path, str(e)) from None
    return CameraPath(keyframes, frames, float(doc.get("fps", 30.0)))
