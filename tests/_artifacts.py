"""One small fixture per artifact kind (recon.io.detect), written with recon's own writers, so
the detector table test and the consumers (info, view, train, render) see the same folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from calib import Camera, Rigid3
from recon.io import PointCloud, write_colmap, write_image, write_ply, write_transforms
from recon.scene import Image, Point3D, Reconstruction

W, H = 16, 12


def posed_reconstruction(num_views: int = 4, *, model: str = "PINHOLE") -> Reconstruction:
    """Cameras on a small arc looking at the origin; 30 coloured points near it."""
    params = {"PINHOLE": [14.0, 14.0, 7.5, 5.5], "SIMPLE_RADIAL": [14.0, 7.5, 5.5, -0.05]}[model]
    cam = Camera(model, W, H, np.array(params))
    images = {}
    for k in range(num_views):
        a = 0.2 * (k - num_views / 2)
        R = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
        images[k + 1] = Image(k + 1, f"view_{k:03d}.png", 1, Rigid3(R, np.array([0.0, 0.0, 3.0])))
    rng = np.random.default_rng(0)
    pts = {i + 1: Point3D(rng.uniform(-0.5, 0.5, 3), rng.integers(0, 255, 3)) for i in range(30)}
    return Reconstruction({1: cam}, images, pts)


def _images(folder: Path, rec: Reconstruction) -> None:
    rng = np.random.default_rng(1)
    for im in rec.images.values():
        write_image(folder / im.name, rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def _points(path: Path, *, labels: bool = False) -> Path:
    rng = np.random.default_rng(2)
    attrs = {"class_id": rng.integers(0, 3, 50).astype(np.int32)} if labels else {}
    return write_ply(path, PointCloud(rng.normal(size=(50, 3)), rgb=rng.integers(0, 255, (50, 3), dtype=np.uint8),
                                      attributes=attrs))


def _splat_ply(path: Path) -> Path:
    from recon.io.gaussians import GaussianCloud, write_splat_ply

    rng = np.random.default_rng(3)
    n = 20
    g = GaussianCloud(means=rng.normal(size=(n, 3)).astype(np.float32),
                      log_scales=np.full((n, 3), -3.0, np.float32),
                      quats_wxyz=np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1)),
                      opacity_logits=np.zeros(n, np.float32),
                      sh_dc=rng.normal(size=(n, 3)).astype(np.float32),
                      sh_rest=np.zeros((n, 0, 3), np.float32))
    return write_splat_ply(path, g)


def _mesh_ply(path: Path) -> Path:
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    f = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    lines = ["ply", "format ascii 1.0", f"element vertex {len(v)}", "property float x", "property float y",
             "property float z", f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    lines += [" ".join(map(str, p)) for p in v] + ["3 " + " ".join(map(str, t)) for t in f]
    path.write_text("\n".join(lines) + "\n")
    return path


def make(kind: str, root: Path) -> Path:
    """Write a fixture of ``kind`` (a recon.io.Kind value) under ``root``; returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    rec = posed_reconstruction()
    if kind == "sfm_output":
        _images(root / "photos", rec)
        write_colmap(rec, root / "out" / "sparse" / "0")
        write_transforms(rec, root / "out", image_dir="../photos")
        _points(root / "out" / "points.ply")
        (root / "out" / "report.json").write_text(json.dumps({"input": str(root / "photos")}))
        return root / "out"
    if kind == "colmap_model":
        _images(root / "images", rec)
        write_colmap(rec, root / "model")
        return root / "model"
    if kind == "transforms":
        _images(root / "images", rec)
        write_transforms(rec, root, image_dir="images")
        return root
    if kind == "synth_dataset":
        _images(root / "images", rec)
        write_colmap(rec, root / "sparse" / "0")
        write_transforms(rec, root, image_dir="images")
        (root / "depth").mkdir()
        (root / "labels").mkdir()
        (root / "gt.json").write_text(json.dumps({"complete": True}))
        return root
    if kind == "splat_output":
        data = make("colmap_model", root / "data")
        (root / "run").mkdir()
        _splat_ply(root / "run" / "splat.ply")
        (root / "run" / "report.json").write_text(json.dumps(
            {"method": "splat", "data_path": str(data), "psnr": 20.0,
             "split": {"train": ["view_000.png", "view_001.png", "view_003.png"], "test": ["view_002.png"],
                       "train_indices": [0, 1, 3], "test_indices": [2], "test_every": 0}}))
        return root / "run"
    if kind == "nerf_output":
        data = make("colmap_model", root / "data")
        (root / "run").mkdir()
        (root / "run" / "checkpoint.pt").write_bytes(b"not a real checkpoint")
        (root / "run" / "report.json").write_text(json.dumps({"method": "nerf", "data_path": str(data)}))
        return root / "run"
    if kind == "image_folder":
        _images(root / "photos", rec)
        return root / "photos"
    if kind == "image":
        _images(root, rec)
        return root / "view_000.png"
    if kind == "video":
        import cv2

        writer = cv2.VideoWriter(str(root / "walk.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (W * 2, H * 2))
        for k in range(3):
            writer.write(np.full((H * 2, W * 2, 3), 40 * k, np.uint8))
        writer.release()
        return root / "walk.mp4"
    if kind == "splat_ply":
        return _splat_ply(root / "g.ply")
    if kind == "mesh":
        return _mesh_ply(root / "mesh.ply")
    if kind == "point_cloud":
        return _points(root / "cloud.ply")
    if kind == "labelled_point_cloud":
        return _points(root / "labels.ply", labels=True)
    raise ValueError(f"kind: no fixture for {kind!r}")
