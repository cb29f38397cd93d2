"""`recon info` and `recon convert`: real summaries checked against independent computations,
conversions checked value by value, errors printed without a traceback (exit 2), light imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calib import Camera, Rigid3
from recon import Image, Point3D, Reconstruction
from recon.cli import main
from recon.io import (
    PointCloud,
    read_colmap,
    read_ply,
    read_transforms,
    write_colmap,
    write_image,
    write_ply,
)

ROOT = Path(__file__).resolve().parents[1]


def _run_cli(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "recon", *argv], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def _scene(rng, noise_px: float = 0.0) -> Reconstruction:
    """8 cameras around a point cloud, keypoints = exact projections (+ optional noise)."""
    cam = Camera("OPENCV", 640, 480, [500.0, 505.0, 319.5, 239.5, -0.05, 0.01, 0.0005, -0.0003])
    X = rng.uniform(-1, 1, size=(40, 3))
    images, tracks = {}, {j: [] for j in range(40)}
    for k in range(8):
        a = 2 * np.pi * k / 8
        centre = np.array([4 * np.sin(a), 0.3, -4 * np.cos(a)])
        z = -centre / np.linalg.norm(centre)
        x = np.cross([0, 1, 0], z)
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(z, x), z])
        pose = Rigid3(R, -R @ centre)
        uv, valid = cam.project(pose.apply(X))
        assert valid.all()
        uv = uv + rng.normal(scale=noise_px, size=uv.shape) if noise_px else uv
        images[k + 1] = Image(k + 1, f"im{k}.png", 1, pose, uv, np.arange(40) + 1)
        for j in range(40):
            tracks[j].append((k + 1, j))
    points = {j + 1: Point3D(X[j], rng.integers(0, 256, 3), 0.0, np.array(tracks[j])) for j in range(40)}
    return Reconstruction({1: cam}, images, points)


def _info_json(path, capsys) -> list[dict]:
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------------

def test_help_lists_verbs():
    r = _run_cli("--help")
    assert r.returncode == 0 and "info" in r.stdout and "convert" in r.stdout
    for verb in ("info", "convert"):
        r = _run_cli(verb, "--help")
        assert r.returncode == 0 and "examples" in r.stdout


def test_imports_stay_light():
    code = ("import sys, recon, recon.io, calib\n"
            "from recon.cli import build_parser\n"
            "build_parser().format_help()\n"
            "heavy = [m for m in ('torch', 'open3d', 'gsplat', 'viser', 'pycolmap', 'cv2', 'PIL') if m in sys.modules]\n"
            "print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_info_colmap_matches_independent_reprojection(tmp_path, rng, capsys):
    """Mean reprojection error printed by `recon info` equals a brute-force computation with
    pycolmap's own camera model on the files we wrote (keypoints with 0.7 px noise)."""
    import pycolmap
    rec = _scene(rng, noise_px=0.7)
    write_colmap(rec, tmp_path / "sparse" / "0")
    (sec,) = _info_json(tmp_path, capsys)  # parent folder with sparse/0
    ref = pycolmap.Reconstruction(str(tmp_path / "sparse" / "0"))
    errs = []
    for im in ref.images.values():
        cam = ref.cameras[im.camera_id]
        for p2d in im.points2D:
            X = ref.points3D[p2d.point3D_id].xyz
            errs.append(np.linalg.norm(cam.img_from_cam(im.cam_from_world() * X) - p2d.xy))
    assert sec["kind"] == "colmap" and sec["format"] == "bin"
    assert sec["images_registered"] == 8 and sec["points3D"] == 40 and sec["observations"] == 320
    assert sec["mean_track_length"] == 8.0
    assert sec["mean_reprojection_error_px"] == pytest.approx(np.mean(errs), rel=1e-9)
    assert 0.5 < sec["mean_reprojection_error_px"] < 1.2  # ~ 0.7 * sqrt(pi / 2)
    assert sec["cameras"][0]["model"] == "OPENCV" and sec["cameras"][0]["params"][2] == 319.5
    # text output names the essentials
    assert main(["info", str(tmp_path / "sparse" / "0")]) == 0
    out = capsys.readouterr().out
    assert "OPENCV 640x480" in out and "8 registered" in out and "mean reprojection error" in out


def test_info_transforms_ply_image_and_folders(tmp_path, rng, capsys):
    rec = _scene(rng)
    main(["convert", str(_write(rec, tmp_path / "m")), str(tmp_path / "ns" / "transforms.json"),
          "--aabb-scale", "4"])
    capsys.readouterr()
    secs = _info_json(tmp_path / "ns", capsys)
    kinds = {s["kind"]: s for s in secs}
    assert kinds["transforms"]["images_registered"] == 8 and kinds["transforms"]["aabb_scale"] == 4
    assert kinds["transforms"]["shared_intrinsics"] is True and kinds["transforms"]["points3D"] == 40
    assert kinds["ply"]["points"] == 40
    np.testing.assert_allclose(kinds["ply"]["bbox"][0], rec.points_xyz().min(0))

    cloud = PointCloud(rng.normal(size=(100, 3)).astype(np.float32),
                       attributes={"class_id": rng.integers(0, 5, 100).astype(np.int32)})
    write_ply(tmp_path / "c.ply", cloud)
    (s,) = _info_json(tmp_path / "c.ply", capsys)
    assert s["points"] == 100 and s["fields"]["class_id"] == "i4"
    np.testing.assert_allclose(s["bbox"][1], cloud.xyz.max(0))

    img_dir = tmp_path / "imgs"
    for k in range(3):
        write_image(img_dir / f"{k}.png", np.zeros((20, 30, 3), np.uint8))
    write_image(img_dir / "big.jpg", np.zeros((40, 50, 3), np.uint8))
    (s,) = _info_json(img_dir, capsys)
    assert s["kind"] == "image_folder" and s["images"] == 4 and s["sizes"] == {"30x20": 3, "50x40": 1}
    (s,) = _info_json(img_dir / "big.jpg", capsys)
    assert (s["width"], s["height"]) == (50, 40) and s["exif_focal_px"] is None


def test_info_synth_and_report_folders(tmp_path, rng, capsys):
    ds = tmp_path / "ds"
    for k in range(2):
        write_image(ds / "images" / f"{k}.png", np.zeros((8, 8, 3), np.uint8))
    (ds / "gt.json").write_text(json.dumps({"version": 1, "scene": "cubes", "cameras": [1, 2]}))
    _write(_scene(rng), ds / "sparse" / "0")
    secs = _info_json(ds, capsys)
    assert [s["kind"] for s in secs] == ["synth", "colmap", "image_folder"]
    assert secs[0]["gt_keys"] == ["version", "scene", "cameras"]
    out = tmp_path / "sfm"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"registered": 8, "mean_reprojection_error_px": 0.41}))
    (s,) = _info_json(out, capsys)
    assert s["kind"] == "report" and s["report"]["registered"] == 8


def test_info_splat_ply_layout(tmp_path, rng, capsys):
    """A standard 3DGS PLY (x y z nx ny nz f_dc_* f_rest_* opacity scale_* rot_*) is recognised."""
    n, k = 30, 15  # SH degree 3: 15 coefficients x 3 colours
    attrs = {f"f_dc_{i}": rng.normal(size=n).astype(np.float32) for i in range(3)}
    attrs.update({f"f_rest_{i}": np.zeros(n, np.float32) for i in range(3 * k)})
    attrs["opacity"] = np.zeros(n, np.float32)  # sigmoid(0) = 0.5
    attrs.update({f"scale_{i}": np.full(n, np.log(0.01), np.float32) for i in range(3)})
    attrs.update({f"rot_{i}": np.array([1.0, 0, 0, 0][i] + np.zeros(n), np.float32) for i in range(4)})
    write_ply(tmp_path / "splat.ply", PointCloud(rng.normal(size=(n, 3)).astype(np.float32),
                                                 normals=np.zeros((n, 3), np.float32), attributes=attrs))
    (s,) = _info_json(tmp_path / "splat.ply", capsys)
    assert s["kind"] == "splat_ply" and s["gaussians"] == n and s["sh_degree"] == 3
    assert s["median_opacity"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------------------------

def _write(rec, folder, binary=True):
    write_colmap(rec, folder, binary=binary)
    return folder


def test_convert_bin_txt_bin(tmp_path, rng, capsys):
    src = _write(_scene(rng), tmp_path / "bin")
    assert main(["convert", str(src), str(tmp_path / "txt")]) == 0  # bin -> txt by default
    assert (tmp_path / "txt" / "images.txt").is_file()
    assert main(["convert", str(tmp_path / "txt"), str(tmp_path / "bin2")]) == 0  # txt -> bin
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        assert (src / name).read_bytes() == (tmp_path / "bin2" / name).read_bytes(), name
    assert main(["convert", str(src), str(tmp_path / "bin3"), "--format", "colmap-bin"]) == 0
    assert (tmp_path / "bin3" / "cameras.bin").is_file()
    assert "COLMAP" in capsys.readouterr().out


def test_convert_colmap_transforms_round_trip(tmp_path, rng):
    rec = _scene(rng)
    src = _write(rec, tmp_path / "sparse")
    out = tmp_path / "ns" / "transforms.json"
    assert main(["convert", str(src), str(out), "--image-dir", "images"]) == 0
    ns, meta = read_transforms(out)
    assert ns.images[1].name == "images/im0.png" and meta.ply_file_path == "sparse_pc.ply"
    assert main(["convert", str(out), str(tmp_path / "back"), "--format", "colmap-txt"]) == 0
    back = read_colmap(tmp_path / "back")
    np.testing.assert_array_equal(back.cameras[1].params, rec.cameras[1].params)
    for iid, im in rec.images.items():
        np.testing.assert_allclose(back.images[iid].cam_from_world.matrix(), im.cam_from_world.matrix(),
                                   atol=1e-12)
    np.testing.assert_array_equal(back.points_xyz(), rec.points_xyz())


def test_convert_model_to_ply(tmp_path, rng):
    rec = _scene(rng)
    src = _write(rec, tmp_path / "m")
    assert main(["convert", str(src), str(tmp_path / "pts.ply")]) == 0
    c = read_ply(tmp_path / "pts.ply")
    np.testing.assert_array_equal(c.xyz, rec.points_xyz())
    np.testing.assert_array_equal(c.rgb, rec.points_rgb())
    np.testing.assert_array_equal(c.attributes["track_length"], 8)
    assert main(["convert", str(tmp_path / "pts.ply"), str(tmp_path / "a.ply"), "--ascii"]) == 0
    np.testing.assert_array_equal(read_ply(tmp_path / "a.ply").xyz, c.xyz)


def test_convert_refusals(tmp_path, rng, capsys):
    src = _write(_scene(rng), tmp_path / "m")
    write_ply(tmp_path / "p.ply", PointCloud(np.zeros((3, 3))))
    assert main(["convert", str(tmp_path / "p.ply"), str(tmp_path / "x")]) == 2
    assert "no cameras" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "pts.ply")]) == 0
    assert main(["convert", str(src), str(tmp_path / "pts.ply")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "pts.ply"), "--overwrite"]) == 0
    assert main(["convert", str(tmp_path / "nothing"), str(tmp_path / "y")]) == 2
    assert "no such file" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# corrupt input through the real CLI process: message, exit 2, no traceback
# ---------------------------------------------------------------------------------------------

def test_cli_errors_for_corrupt_files(tmp_path, rng):
    model = _write(_scene(rng), tmp_path / "m")
    data = (model / "points3D.bin").read_bytes()
    (model / "points3D.bin").write_bytes(data[: len(data) // 2])
    write_ply(tmp_path / "c.ply", PointCloud(rng.normal(size=(50, 3))))
    ply = (tmp_path / "c.ply").read_bytes()
    (tmp_path / "c.ply").write_bytes(ply[: len(ply) - 100])
    (tmp_path / "transforms.json").write_text('{"frames": [{"file_path": "a.png", "transform_matr')
    cases = [(model, "points3D.bin", "truncated"), (tmp_path / "c.ply", "c.ply", "truncated"),
             (tmp_path / "transforms.json", "transforms.json", "invalid JSON")]
    for path, name, needle in cases:
        r = _run_cli("info", str(path))
        assert r.returncode == 2, (path, r.stdout, r.stderr)
        assert name in r.stderr and needle in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_info_blender_splits(tmp_path, capsys):
    """A Blender synthetic scene: transforms_{train,test}.json with camera_angle_x, no w/h."""
    write_image(tmp_path / "train" / "r_0.png", np.zeros((40, 40, 4), np.uint8))
    for split in ("train", "test"):
        doc = {"camera_angle_x": 0.69, "frames": [{"file_path": "train/r_0.png",
                                                   "transform_matrix": np.eye(4).tolist()}]}
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps(doc))
    secs = _info_json(tmp_path, capsys)
    tj = [s for s in secs if s["kind"] == "transforms"]
    assert [Path(s["path"]).name for s in tj] == ["transforms_test.json", "transforms_train.json"]
    assert tj[0]["cameras"][0]["width"] == 40 and tj[0]["images_registered"] == 1
