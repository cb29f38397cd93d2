"""transforms.json (nerfstudio / Instant-NGP): paired OpenGL <-> OpenCV pose converters, pixel
centre shift, shared / per-frame intrinsics, extras, nerfstudio's own COLMAP export recipe, and
clear FormatErrors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from calib import Camera, Rigid3
from recon import FormatError, Image, Point3D, Reconstruction
from recon.io import (
    cam_from_world_from_transform_matrix,
    read_colmap,
    read_model,
    read_transforms,
    transform_matrix_from_cam_from_world,
    write_colmap,
    write_image,
    write_transforms,
)
from recon.io.transforms_json import TransformsMeta


def _rec(cameras: dict[int, Camera], rng, n_images=5, n_points=30) -> Reconstruction:
    images = {}
    ids = list(cameras)
    for k in range(n_images):
        pose = Rigid3.from_axis_angle(rng.normal(size=3), rng.normal(size=3) * 2)
        images[k + 1] = Image(k + 1, f"frame_{k:04d}.jpg", ids[k % len(ids)], pose)
    pts = {i + 1: Point3D(rng.normal(size=3), rng.integers(0, 256, 3)) for i in range(n_points)}
    return Reconstruction(cameras, images, pts)


# ---------------------------------------------------------------------------------------------
# the paired converters
# ---------------------------------------------------------------------------------------------

def test_pose_converters_round_trip(rng):
    for _ in range(50):
        cam_from_world = Rigid3.from_axis_angle(rng.normal(size=3) * 2, rng.normal(size=3) * 10)
        T = transform_matrix_from_cam_from_world(cam_from_world)
        back = cam_from_world_from_transform_matrix(T)
        np.testing.assert_allclose(back.rotation, cam_from_world.rotation, atol=1e-15)
        np.testing.assert_allclose(back.translation, cam_from_world.translation, atol=1e-13)
        T2 = transform_matrix_from_cam_from_world(back)
        np.testing.assert_allclose(T2, T, atol=1e-13)


def test_pose_converter_axes_meaning(rng):
    """OpenGL camera-to-world: the camera looks along its -z, y is up. A point 5 m in front of an
    identity-pose OpenGL camera is at z = +5 in our OpenCV camera frame, and a point above it
    (+y world) has v < 0 (image up)."""
    cam_from_world = cam_from_world_from_transform_matrix(np.eye(4))
    np.testing.assert_allclose(cam_from_world.apply(np.array([0.0, 0.0, -5.0])), [0, 0, 5])
    np.testing.assert_allclose(cam_from_world.apply(np.array([0.0, 1.0, -5.0])), [0, -1, 5])
    # the translation column of transform_matrix is the camera centre in the world
    pose = Rigid3.from_axis_angle(rng.normal(size=3), rng.normal(size=3))
    T = transform_matrix_from_cam_from_world(pose)
    np.testing.assert_allclose(T[:3, 3], pose.dst_origin_in_src(), atol=1e-14)
    # OpenGL viewing direction -z_gl equals our +z_cv, expressed in the world
    np.testing.assert_allclose(-T[:3, 2], pose.rotation[2], atol=1e-15)


def test_converter_rejects_bad_input():
    with pytest.raises(ValueError, match="4, 4"):
        cam_from_world_from_transform_matrix(np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        cam_from_world_from_transform_matrix(np.full((4, 4), np.nan))
    with pytest.raises(TypeError, match="Rigid3"):
        transform_matrix_from_cam_from_world(np.eye(4))


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------

MODELS_PARAMS = {
    "SIMPLE_PINHOLE": [500.0, 319.5, 239.5],
    "PINHOLE": [500.0, 505.0, 320.25, 240.75],
    "SIMPLE_RADIAL": [500.0, 320.0, 240.0, -0.05],
    "RADIAL": [500.0, 320.0, 240.0, -0.05, 0.01],
    "OPENCV": [500.0, 502.0, 321.0, 238.0, -0.1, 0.02, 0.001, -0.002],
    "OPENCV_FISHEYE": [300.0, 301.0, 320.0, 240.0, 0.05, -0.01, 0.002, -0.0005],
    "FULL_OPENCV": [500.0, 502.0, 321.0, 238.0, -0.1, 0.02, 0.001, -0.002, 0.003, 0.0, 0.0, 0.0],
}


@pytest.mark.parametrize("model", list(MODELS_PARAMS))
def test_round_trip_each_model(tmp_path, rng, model):
    cam = Camera(model, 640, 480, MODELS_PARAMS[model])
    rec = _rec({1: cam}, rng)
    write_transforms(rec, tmp_path)
    back, meta = read_transforms(tmp_path)
    assert len(back.cameras) == 1
    b = back.cameras[1]
    assert b.model == model and b.size == (640, 480)
    np.testing.assert_array_equal(b.params, cam.params)
    for iid, im in rec.images.items():
        np.testing.assert_allclose(back.images[iid].cam_from_world.matrix(), im.cam_from_world.matrix(),
                                   atol=1e-13)
        assert back.images[iid].name == im.name
    data = json.loads((tmp_path / "transforms.json").read_text())
    # shared intrinsics at the top level, corner convention for the principal point
    assert "fl_x" in data and "fl_x" not in data["frames"][0]
    assert data["cx"] == cam.principal_point[0] + 0.5 and data["cy"] == cam.principal_point[1] + 0.5
    assert data["camera_model"] in ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV",
                                    "OPENCV_FISHEYE")


def test_per_frame_intrinsics_and_extras(tmp_path, rng):
    cams = {1: Camera("PINHOLE", 640, 480, [500, 500, 320, 240]),
            2: Camera("OPENCV", 800, 600, [600, 610, 400, 300, 0.1, 0.0, 0.0, 0.0])}
    rec = _rec(cams, rng, n_images=6)
    out = write_transforms(rec, tmp_path / "scene.json", image_dir="images", aabb_scale=16,
                           mask_dir="masks", points_ply="sparse_pc.ply")
    data = json.loads(out.read_text())
    assert "fl_x" not in data and all("fl_x" in f for f in data["frames"])
    assert data["aabb_scale"] == 16 and data["ply_file_path"] == "sparse_pc.ply"
    assert data["frames"][0]["file_path"] == "images/frame_0000.jpg"
    assert data["frames"][0]["mask_path"] == "masks/frame_0000.png"
    back, meta = read_transforms(out)
    assert meta.aabb_scale == 16 and meta.mask_paths[1] == "masks/frame_0000.png"
    assert meta.ply_file_path == "sparse_pc.ply"
    assert len(back.cameras) == 2
    for iid, im in rec.images.items():
        b = back.images[iid]
        assert b.name == f"images/{im.name}"
        np.testing.assert_array_equal(back.cameras[b.camera_id].params, cams[im.camera_id].params)
    # points came back from the PLY (float64 written, exact)
    np.testing.assert_array_equal(back.points_xyz(), rec.points_xyz())
    np.testing.assert_array_equal(back.points_rgb(), rec.points_rgb())
    # unknown keys survive a rewrite
    data["my_tool_version"] = "3.1"
    data["frames"][0]["exposure"] = 0.25
    out.write_text(json.dumps(data))
    back, meta = read_transforms(out)
    again = write_transforms(back, tmp_path / "again.json", meta=meta)
    d2 = json.loads(again.read_text())
    assert d2["my_tool_version"] == "3.1" and d2["frames"][0]["exposure"] == 0.25
    assert d2["frames"][0]["mask_path"] == "masks/frame_0000.png" and d2["aabb_scale"] == 16


def test_nerfstudio_colmap_export_recipe(tmp_path, rng):
    """A transforms.json built with nerfstudio's own recipe (colmap_utils.colmap_to_json: c2w of
    COLMAP's cam_from_world, y/z columns negated, world rows permuted [0, 2, 1] and row 2
    negated; cx, cy copied unchanged; applied_transform recorded; points transformed too) reads
    back, with undo_applied_transform=True, as exactly the COLMAP model."""
    cam = Camera("OPENCV", 640, 480, [500.0, 502.0, 321.0, 238.0, -0.1, 0.02, 0.001, -0.002])
    rec = _rec({1: cam}, rng)
    write_colmap(rec, tmp_path / "sparse" / "0")
    colmap = read_colmap(tmp_path / "sparse" / "0")
    frames = []
    for iid, im in colmap.images.items():
        w2c = im.cam_from_world.matrix()
        c2w = np.linalg.inv(w2c)
        c2w[0:3, 1:3] *= -1
        c2w = c2w[np.array([0, 2, 1, 3]), :]
        c2w[2, :] *= -1
        frames.append({"file_path": f"./images/{im.name}", "transform_matrix": c2w.tolist(),
                       "colmap_im_id": iid})
    applied = np.eye(4)[:3, :][np.array([0, 2, 1]), :]
    applied[2, :] *= -1
    xyz_ns = colmap.points_xyz() @ applied[:3, :3].T + applied[:3, 3]
    from recon.io import PointCloud, write_ply

    write_ply(tmp_path / "sparse_pc.ply", PointCloud(xyz_ns, colmap.points_rgb()), binary=False)
    colmap_params = cam.params.copy()
    colmap_params[2:4] += 0.5  # what cameras.bin holds
    doc = {"w": 640, "h": 480, "fl_x": colmap_params[0], "fl_y": colmap_params[1], "cx": colmap_params[2],
           "cy": colmap_params[3], "k1": colmap_params[4], "k2": colmap_params[5], "p1": colmap_params[6],
           "p2": colmap_params[7], "camera_model": "OPENCV", "frames": frames,
           "applied_transform": applied.tolist(), "ply_file_path": "sparse_pc.ply"}
    (tmp_path / "transforms.json").write_text(json.dumps(doc))

    back, meta = read_transforms(tmp_path / "transforms.json", undo_applied_transform=True)
    assert meta.undone
    np.testing.assert_array_equal(back.cameras[1].params, cam.params)
    for iid, im in colmap.images.items():
        np.testing.assert_allclose(back.images[iid].cam_from_world.matrix(), im.cam_from_world.matrix(),
                                   atol=1e-12)
    np.testing.assert_allclose(back.points_xyz(), colmap.points_xyz(), atol=1e-12)
    # without undo: the same cameras in nerfstudio's z-up world; centres differ by `applied`
    ns, _ = read_transforms(tmp_path / "transforms.json")
    for iid, im in colmap.images.items():
        np.testing.assert_allclose(ns.images[iid].center, applied[:3, :3] @ im.center, atol=1e-12)
    # writing back re-applies the transform: the file's poses are reproduced
    out = write_transforms(back, tmp_path / "out.json", meta=meta)
    d = json.loads(out.read_text())
    for f_in, f_out in zip(frames, d["frames"]):
        np.testing.assert_allclose(f_out["transform_matrix"], f_in["transform_matrix"], atol=1e-12)
    # read_model finds the COLMAP model first in this folder
    assert len(read_model(tmp_path).images) == len(rec.images)


def test_instant_ngp_camera_angle_and_image_size_from_file(tmp_path):
    """Blender / Instant-NGP style: camera_angle_x only, no w/h: the size comes from the image."""
    write_image(tmp_path / "r_0.png", np.zeros((60, 80, 3), dtype=np.uint8))
    angle = 0.6911112070083618
    doc = {"camera_angle_x": angle, "frames": [{"file_path": "r_0.png", "transform_matrix": np.eye(4).tolist()}]}
    (tmp_path / "transforms_train.json").write_text(json.dumps(doc))
    rec, _ = read_transforms(tmp_path / "transforms_train.json")
    cam = rec.cameras[1]
    assert cam.size == (80, 60)
    assert cam.params[0] == pytest.approx(0.5 * 80 / math.tan(0.5 * angle), rel=1e-15)
    np.testing.assert_array_equal(cam.principal_point, [39.5, 29.5])  # image centre, our convention


def test_instant_ngp_is_fisheye_flag(tmp_path):
    """Instant-NGP's colmap2nerf.py writes "is_fisheye": true and no camera_model."""
    doc = {"w": 64, "h": 48, "fl_x": 30.0, "fl_y": 30.0, "cx": 32.0, "cy": 24.0, "k1": 0.1, "k2": 0.01,
           "is_fisheye": True, "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}
    (tmp_path / "transforms.json").write_text(json.dumps(doc))
    rec, _ = read_transforms(tmp_path)
    cam = rec.cameras[1]
    assert cam.model == "OPENCV_FISHEYE"
    np.testing.assert_array_equal(cam.params, [30.0, 30.0, 31.5, 23.5, 0.1, 0.01, 0.0, 0.0])
    write_transforms(rec, tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text())["is_fisheye"] is True


def test_meta_defaults():
    m = TransformsMeta()
    assert m.aabb_scale is None and m.mask_paths == {} and not m.undone


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def good_json(tmp_path, rng):
    rec = _rec({1: Camera("OPENCV", 640, 480, MODELS_PARAMS["OPENCV"])}, rng, n_images=3)
    return write_transforms(rec, tmp_path)


def _expect(path, *needles):
    with pytest.raises(FormatError) as e:
        read_transforms(path)
    msg = str(e.value)
    assert path.name in msg, msg
    for n in needles:
        assert n.lower() in msg.lower(), msg


def test_truncated_json(good_json):
    text = good_json.read_text()
    good_json.write_text(text[: len(text) // 2])
    _expect(good_json, "invalid json", "truncated")
    good_json.write_text("")
    _expect(good_json, "empty")


def test_nan_in_json(good_json):
    d = json.loads(good_json.read_text())
    text = json.dumps(d).replace(str(d["frames"][1]["transform_matrix"][0][3]), "NaN", 1)
    good_json.write_text(text)
    _expect(good_json, "non-finite", "nan")
    d["fl_x"] = float("inf")
    good_json.write_text(json.dumps(d))
    _expect(good_json, "non-finite")


@pytest.mark.parametrize("edit,needles", [
    (lambda d: d.pop("frames"), ["frames"]),
    (lambda d: d["frames"][0].pop("transform_matrix"), ["frames[0]", "transform_matrix"]),
    (lambda d: d["frames"][1].pop("file_path"), ["frames[1]", "file_path"]),
    (lambda d: d["frames"][0].__setitem__("transform_matrix", [[1, 0], [0, 1]]), ["shape"]),
    (lambda d: d["frames"][0].__setitem__("transform_matrix", (2 * np.eye(4)).tolist()), ["rotation"]),
    (lambda d: d.__setitem__("camera_model", "KANNALA"), ["camera_model", "KANNALA"]),
    (lambda d: d.__setitem__("k4", 0.01), ["k4"]),
    (lambda d: d.__setitem__("fl_x", "big"), ["fl_x", "number"]),
    (lambda d: d.__setitem__("w", -3), ["w=-3"]),
])
def test_malformed_fields(good_json, edit, needles):
    d = json.loads(good_json.read_text())
    edit(d)
    good_json.write_text(json.dumps(d))
    _expect(good_json, *needles)


def test_not_json(tmp_path):
    p = tmp_path / "transforms.json"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    _expect(p)


def test_write_refuses_unrepresentable(tmp_path, rng):
    cam = Camera("FULL_OPENCV", 640, 480, [500, 500, 320, 240, 0.1, 0, 0, 0, 0, 0.05, 0, 0])
    with pytest.raises(ValueError, match="rational"):
        write_transforms(_rec({1: cam}, rng), tmp_path)


def test_read_model_finds_transforms(tmp_path, rng):
    rec = _rec({1: Camera("PINHOLE", 64, 48, [50.0, 50.0, 31.5, 23.5])}, rng, n_images=3, n_points=0)
    write_transforms(rec, tmp_path / "scene")
    for p in (tmp_path / "scene", tmp_path / "scene" / "transforms.json"):
        back = read_model(p)
        assert len(back.images) == 3 and back.cameras[1].allclose(rec.cameras[1], rtol=0, atol=0)
    with pytest.raises(FormatError, match="no COLMAP model"):
        read_model(tmp_path)  # the parent holds neither a model nor a transforms.json
