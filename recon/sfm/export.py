"""Writers for the SfM outputs other than sparse/0: transforms.json and points.ply.

Uses ``recon.io`` (helper `io`) when it provides the writer; otherwise a local writer of the same
standard format (nerfstudio transforms.json; binary little-endian PLY with x y z, red green blue).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from recon.scene import Reconstruction

__all__ = ["OPENGL_FROM_OPENCV", "write_points_ply", "write_transforms_json"]

# camera-frame flip between OpenCV (x right, y down, z forward) and OpenGL/nerfstudio (y up, z back)
OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def write_transforms_json(rec: Reconstruction, path, *, image_dir, out_dir) -> None:
    try:
        from recon.io import write_transforms  # type: ignore[attr-defined]
    except ImportError:
        write_transforms = None
    rel = os.path.relpath(Path(image_dir), Path(out_dir))
    if write_transforms is not None:
        write_transforms(rec, path, image_dir=rel)
        return
    _write_transforms_local(rec, Path(path), rel)


def _intrinsics_ns(cam) -> dict:
    """nerfstudio intrinsics: principal point with the pixel-corner convention (+0.5)."""
    (fx, fy), (cx, cy) = cam.focal, cam.principal_point
    d = {"fl_x": float(fx), "fl_y": float(fy), "cx": float(cx + 0.5), "cy": float(cy + 0.5),
         "w": cam.width, "h": cam.height}
    if cam.is_fisheye:
        k = np.zeros(4)
        k[:len(cam.opencv_dist())] = cam.opencv_dist()
        d.update(camera_model="OPENCV_FISHEYE", k1=k[0], k2=k[1], k3=k[2], k4=k[3])
    else:
        k = np.zeros(8)
        dist = cam.opencv_dist()
        k[:len(dist)] = dist
        d.update(camera_model="OPENCV", k1=k[0], k2=k[1], p1=k[2], p2=k[3])
        if np.any(k[4:]):
            d.update(k3=k[4], k4=k[5])
    return {a: (float(b) if isinstance(b, (np.floating, float)) else b) for a, b in d.items()}


def _write_transforms_local(rec: Reconstruction, path: Path, rel: str) -> None:
    frames = []
    cams = {im.camera_id for im in rec.registered_images}
    single = len(cams) == 1
    for im in sorted(rec.registered_images, key=lambda i: i.name):
        world_from_cam_gl = im.world_from_cam.matrix() @ OPENGL_FROM_OPENCV
        fr = {"file_path": f"{rel}/{im.name}", "transform_matrix": world_from_cam_gl.tolist(),
              "colmap_im_id": im.image_id}
        if not single:
            fr.update(_intrinsics_ns(rec.cameras[im.camera_id]))
        frames.append(fr)
    doc = {}
    if single and cams:
        doc.update(_intrinsics_ns(rec.cameras[next(iter(cams))]))
    doc["frames"] = frames
    # nerfstudio's COLMAP importer applies this world transform; ours is the identity (COLMAP world)
    doc["applied_transform"] = np.eye(4)[:3].tolist()
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_points_ply(rec: Reconstruction, path) -> None:
    xyz = rec.points_xyz()
    rgb = rec.points_rgb()
    try:
        from recon.io import PointCloud, write_ply  # type: ignore[attr-defined]
    except ImportError:
        PointCloud = write_ply = None
    if write_ply is not None:
        write_ply(path, PointCloud(xyz, rgb))
        return
    n = len(xyz)
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    rec_t = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    arr = np.empty(n, dtype=rec_t)
    arr["x"], arr["y"], arr["z"] = xyz.T.astype(np.float32) if n else (np.zeros(0),) * 3
    if n:
        arr["red"], arr["green"], arr["blue"] = rgb.T
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(arr.tobytes())
