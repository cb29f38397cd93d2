"""recon data prepare (recon.io.prepare): small archives built here in each dataset's published
layout, converted, and read back by the loaders `recon train` / `recon ba` use, against the
truth the test put in."""

from __future__ import annotations

import bz2
import json
import math
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from recon.io.colmap import read_colmap, write_colmap
from recon.io.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth_scene(tmp_path_factory):
    """A 5-view recon.synth dataset at 64x48: images/ + sparse/0 with exact cameras and points."""
    from recon import synth

    out = tmp_path_factory.mktemp("synth") / "ds"
    scene = synth.make_scene(seed=0)
    cam = synth.make_camera("PINHOLE", 64, 48, fov_deg=60)
    synth.write_dataset(out, scene, cam, synth.orbit(5, radius=3.2),
                        options=synth.DatasetOptions(progress=False, write_normals=False, write_labels=False,
                                                     num_points=300, write_transforms=False))
    return out


def _copy_colmap_scene(src: Path, dst: Path, image_dir: str = "images") -> None:
    shutil.copytree(src / "images", dst / image_dir)
    write_colmap(read_colmap(src / "sparse" / "0"), (dst / "sparse" / "0").resolve())


# ---- NeRF synthetic (Blender) ------------------------------------------------------------

def _look_at_gl(centre, target=(0.0, 0.0, 0.0)):
    """Blender camera-to-world (OpenGL axes: x right, y up, looks down -z)."""
    c = np.asarray(centre, float)
    back = c - np.asarray(target, float)
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    M = np.eye(4)
    M[:3, 0], M[:3, 1], M[:3, 2], M[:3, 3] = right, up, back, c
    return M


def _blender_zip(tmp_path: Path) -> tuple[Path, dict]:
    """nerf_example_data.zip with nerf_synthetic/lego in the published layout (RGBA PNGs,
    file_path without extension, camera_angle_x)."""
    root = tmp_path / "build" / "nerf_synthetic" / "lego"
    angle = 0.6911112070083618
    truth = {}
    rng = np.random.default_rng(0)
    for part, n in (("train", 3), ("val", 1), ("test", 2)):
        (root / part).mkdir(parents=True)
        frames = []
        for i in range(n):
            M = _look_at_gl(rng.normal(size=3) * 0.3 + [3.0 * math.cos(i + len(truth)), 3.0 * math.sin(i + len(truth)), 1.0])
            rgba = rng.integers(0, 256, (8, 10, 4), dtype=np.uint8)
            PILImage.fromarray(rgba, "RGBA").save(root / part / f"r_{i}.png")
            frames.append({"file_path": f"./{part}/r_{i}", "rotation": 0.012, "transform_matrix": M.tolist()})
            truth[f"{part}/r_{i}.png"] = M
        (root / f"transforms_{part}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    archive = tmp_path / "nerf_example_data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted((tmp_path / "build").rglob("*")):
            z.write(p, p.relative_to(tmp_path / "build").as_posix())
    return archive, {"angle": angle, "poses": truth}


def test_blender_scene_to_transforms_json(tmp_path):
    from render.data import load_scene

    archive, truth = _blender_zip(tmp_path)
    got = prepare("nerf_synthetic", archive, "lego", tmp_path / "lego")
    assert got.kind == "transforms" and got.num_images == 6
    assert got.split == {"train": ["train/r_0.png", "train/r_1.png", "train/r_2.png"], "val": ["val/r_0.png"],
                         "test": ["test/r_0.png", "test/r_1.png"]}
    assert json.loads((tmp_path / "lego" / "split.json").read_text()) == got.split
    scene = load_scene(tmp_path / "lego")
    assert len(scene.views) == 6
    f = 0.5 * 10 / math.tan(0.5 * truth["angle"])
    for v in scene.views:
        assert (v.camera.width, v.camera.height) == (10, 8)
        np.testing.assert_allclose(v.camera.focal, [f, f], rtol=1e-9)
        np.testing.assert_allclose(v.camera.principal_point, [4.5, 3.5], atol=1e-9)  # centre of a 10x8 image
        M = truth["poses"][v.name]
        np.testing.assert_allclose(v.cam_from_world.dst_origin_in_src(), M[:3, 3], atol=1e-9)
        np.testing.assert_allclose(v.cam_from_world.rotation[2], -M[:3, 2], atol=1e-9)  # OpenCV z = -GL z
        np.testing.assert_allclose(v.cam_from_world.rotation[1], -M[:3, 1], atol=1e-9)  # y down = -GL y
        assert v.image.shape == (8, 10, 3)


# ---- Mip-NeRF 360 ------------------------------------------------------------------------

def test_mipnerf360_uses_images_n_with_resized_intrinsics(tmp_path, synth_scene):
    from render.data import load_scene

    src = tmp_path / "360_v2" / "garden"
    _copy_colmap_scene(synth_scene, src)
    (src / "images_4").mkdir()
    for p in (src / "images").iterdir():
        PILImage.open(p).resize((16, 12), PILImage.BILINEAR).save(src / "images_4" / p.name)
    got = prepare("mipnerf360", tmp_path, "garden", tmp_path / "garden4")  # outdoor: factor 4 by default
    assert got.kind == "colmap" and got.num_images == 5
    full = read_colmap(synth_scene / "sparse" / "0")
    small = read_colmap(tmp_path / "garden4" / "sparse" / "0")
    X = full.points_xyz()
    for iid, im in full.images.items():
        cam_full, cam_small = full.cameras[im.camera_id], small.cameras[small.images[iid].camera_id]
        assert (cam_small.width, cam_small.height) == (16, 12)
        pc = im.cam_from_world.apply(X)
        uv_full, ok = cam_full.project(pc)
        uv_small, _ = cam_small.project(pc)
        # pixel centres at integers: u_small = (u_full + 0.5) / 4 - 0.5
        np.testing.assert_allclose(uv_small[ok], (uv_full[ok] + 0.5) / 4 - 0.5, atol=1e-9)
    assert len(small.points3D) == len(full.points3D)
    assert [v.image.shape for v in load_scene(tmp_path / "garden4").views] == [(12, 16, 3)] * 5
    with pytest.raises(Exception, match="images_2"):
        prepare("mipnerf360", tmp_path, "garden", tmp_path / "g2", factor=2)


# ---- Tanks and Temples (3DGS preprocessed) -----------------------------------------------

def test_tandt_checks_images_and_writes_the_model(tmp_path, synth_scene):
    from render.data import load_scene

    src = tmp_path / "tandt_db" / "tandt" / "truck"
    _copy_colmap_scene(synth_scene, src)
    archive = shutil.make_archive(str(tmp_path / "tandt_db"), "zip", tmp_path, "tandt_db")
    got = prepare("tandt_db", archive, "tandt/truck", tmp_path / "truck")
    assert got.num_images == 5 and len(load_scene(tmp_path / "truck").views) == 5
    a, b = read_colmap(synth_scene / "sparse" / "0"), read_colmap(tmp_path / "truck" / "sparse" / "0")
    for iid in a.images:
        np.testing.assert_allclose(b.images[iid].cam_from_world.matrix(), a.images[iid].cam_from_world.matrix(), atol=1e-12)
    next((src / "images").iterdir()).unlink()
    with pytest.raises(Exception, match="1 of 5 registered images are missing"):
        prepare("tandt_db", tmp_path / "tandt_db", "tandt/truck", tmp_path / "truck2")


# ---- DTU (2DGS layout) with the reference points -----------------------------------------

def _dtu_layout(tmp_path: Path, synth_scene: Path, *, with_sparse: bool):
    """scan24 (2DGS: images, mask, cameras.npz, optional sparse/0 in the normalised frame) and
    the official Points/stl/stl024_total.ply in the DTU frame x_dtu = s x_model + c."""
    from recon.io.ply import PointCloud, write_ply

    s, c = 150.0, np.array([10.0, -20.0, 600.0])
    S = np.eye(4)
    S[:3, :3] *= s
    S[:3, 3] = c
    rec = read_colmap(synth_scene / "sparse" / "0")
    scan = tmp_path / "DTU" / "scan24"
    (scan / "images").mkdir(parents=True)
    (scan / "mask").mkdir()
    mats = {}
    for i, iid in enumerate(sorted(rec.images, key=lambda k: rec.images[k].name)):
        im = rec.images[iid]
        shutil.copy(synth_scene / "images" / im.name, scan / "images" / f"{i:06d}.png")
        PILImage.new("L", (64, 48), 255).save(scan / "mask" / f"{i:03d}.png")
        im.name = f"{i:06d}.png"
        cam = rec.cameras[im.camera_id]
        K = np.array([[cam.focal[0], 0, cam.principal_point[0]], [0, cam.focal[1], cam.principal_point[1]], [0, 0, 1]])
        P = np.eye(4)
        P[:3] = K @ im.cam_from_world.matrix()[:3] @ np.linalg.inv(S)  # DTU-frame points -> pixels
        mats[f"world_mat_{i}"] = P
        mats[f"scale_mat_{i}"] = S
    np.savez(scan / "cameras.npz", **mats)
    if with_sparse:
        write_colmap(rec, (scan / "sparse" / "0").resolve())
    pts = rec.points_xyz() * s + c
    (tmp_path / "Points" / "stl").mkdir(parents=True)
    write_ply(tmp_path / "Points" / "stl" / "stl024_total.ply", PointCloud(pts))
    return S, rec


@pytest.mark.parametrize("with_sparse", [True, False])
def test_dtu_reference_points_and_frame(tmp_path, synth_scene, with_sparse):
    from recon.io.ply import read_ply

    S, rec = _dtu_layout(tmp_path, synth_scene, with_sparse=with_sparse)
    got = prepare("dtu_2dgs", tmp_path, "scan24", tmp_path / "out")
    assert got.num_images == 5 and got.reference is not None
    ref = json.loads(got.reference.read_text())
    M = np.array(ref["reference_from_model"])
    out_rec = read_colmap(tmp_path / "out" / "sparse" / "0")
    ref_pts = read_ply(tmp_path / "out" / ref["points"]).xyz.astype(float)
    # the model's own frame: normalised (shipped sparse/0) or DTU mm (converted from cameras.npz)
    np.testing.assert_allclose(M, S if with_sparse else np.eye(4), atol=1e-6 * 150)
    # reference points mapped into the model frame project where the truth's points project
    model_pts = (ref_pts - M[:3, 3]) @ np.linalg.inv(M[:3, :3]).T
    by_name = {im.name: im for im in rec.images.values()}
    for im in out_rec.images.values():
        uv, ok = out_rec.cameras[im.camera_id].project(im.cam_from_world.apply(model_pts))
        t = by_name[im.name]
        uv_true, ok_true = rec.cameras[t.camera_id].project(t.cam_from_world.apply(rec.points_xyz()))
        np.testing.assert_allclose(uv[ok & ok_true], uv_true[ok & ok_true], atol=1e-5)
    assert (tmp_path / "out" / "mask").is_dir()


# ---- BAL ---------------------------------------------------------------------------------

def test_bal_problem_decompressed_and_as_colmap(tmp_path):
    from recon.ba.bal import read_bal

    src = ROOT / "tests" / "data" / "ba" / "synthetic-6-60.bal"
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "problem-49-7776-pre.txt.bz2").write_bytes(bz2.compress(src.read_bytes()))
    got = prepare("bal", tmp_path / "dl", "ladybug/problem-49-7776-pre", tmp_path / "bal")
    assert got.kind == "bal" and got.num_images == 6
    assert (tmp_path / "bal" / "problem.txt").read_bytes() == src.read_bytes()
    rec = read_colmap(tmp_path / "bal" / "sparse" / "0")
    prob = read_bal(src)
    assert (len(rec.images), len(rec.points3D)) == (6, 60)
    np.testing.assert_allclose(rec.points_xyz(), prob.points)


# ---- CLI ---------------------------------------------------------------------------------

def _recon(*args):
    return subprocess.run([sys.executable, "-m", "recon", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_prepare_and_bad_input(tmp_path):
    src = ROOT / "tests" / "data" / "ba" / "synthetic-6-60.bal"
    shutil.copy(src, tmp_path / "problem-16-22106-pre.txt")
    p = _recon("data", "prepare", "bal", "dubrovnik/problem-16-22106-pre", "--from", str(tmp_path), "-o", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    assert "6 cameras" in p.stdout and (tmp_path / "o" / "prepared.json").is_file()
    (tmp_path / "empty").mkdir()
    p = _recon("data", "prepare", "mipnerf360", "garden", "--from", str(tmp_path / "empty"))
    assert p.returncode == 2 and "garden" in p.stderr and str(tmp_path / "empty") in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = _recon("data", "prepare", "middlebury2014", "Adirondack", "--from", str(tmp_path))
    assert p.returncode == 2 and "no preparer" in p.stderr
