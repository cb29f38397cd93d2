"""Viewer: conversions at the viser edge, content building, detection, camera paths, the server
side of the GUI (no browser here; see test_viewer_browser.py for Chromium)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calib import Camera, Rigid3
from calib.transforms import matrix_from_quat
from recon.errors import FormatError
from recon.scene import Image, Point3D, Reconstruction
from viewer.camera_path import (
    CameraPath,
    PathFrame,
    interpolate_path,
    load_camera_path,
    save_camera_path,
)
from viewer.content import PointLayer, SceneContent, content_from_reconstruction
from viewer.convert import (
    SH_C0,
    cam_from_world_from_viser_pose,
    colormap,
    label_palette,
    pick_point,
    pinhole_from_fov,
    render_camera_for_view,
    rgb_from_sh_dc,
    splat_covariances,
    subsample_order,
    vertical_fov,
    viser_pose_from_cam_from_world,
)
from viewer.detect import detect, read_ply_header

REPO = Path(__file__).resolve().parents[1]


def random_pose(rng) -> Rigid3:
    q = rng.normal(size=4)
    return Rigid3(matrix_from_quat(q / np.linalg.norm(q)), rng.normal(size=3))


def ring_reconstruction(n_cams=6, n_pts=500, seed=0) -> Reconstruction:
    """Cameras on a ring looking at the origin, points near the origin; projections are real."""
    rng = np.random.default_rng(seed)
    rec = Reconstruction()
    rec.cameras[1] = Camera("PINHOLE", 640, 480, [500, 500, 319.5, 239.5])
    X = np.c_[rng.uniform(-1, 1, (n_pts, 2)), 0.2 * rng.normal(size=n_pts)]
    tracks = [[] for _ in range(n_pts)]
    for i in range(n_cams):
        a = 2 * np.pi * i / n_cams
        c = np.array([4 * np.cos(a), 4 * np.sin(a), 1.5])
        z = -c / np.linalg.norm(c)
        x = np.cross(z, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(z, x), z])
        cam_from_world = Rigid3(R, -R @ c)
        uv, ok = rec.cameras[1].project(cam_from_world.apply(X))
        keep = np.flatnonzero(ok)
        for k, j in enumerate(keep):
            tracks[j].append((i + 1, k))
        rec.images[i + 1] = Image(i + 1, f"im{i}.png", 1, cam_from_world, uv[keep], keep)
    for j in range(n_pts):
        rec.points3D[j] = Point3D(X[j], rng.integers(0, 256, 3), float(rng.uniform(0.1, 2.0)),
                                  np.array(tracks[j], dtype=np.int64).reshape(-1, 2))
    rec.validate()
    return rec


# ---- conversions at the viser edge ---------------------------------------------------------
def test_viser_pose_round_trip_and_meaning(rng):
    for _ in range(20):
        cam_from_world = random_pose(rng)
        pose = viser_pose_from_cam_from_world(cam_from_world)
        # viser: P_world = R(wxyz) p_cam + position, i.e. world_from_cam; position = camera centre.
        np.testing.assert_allclose(pose.position, cam_from_world.dst_origin_in_src(), atol=1e-12)
        p_cam = rng.normal(size=3)
        np.testing.assert_allclose(matrix_from_quat(pose.wxyz) @ p_cam + pose.position,
                                   cam_from_world.inverse().apply(p_cam), atol=1e-12)
        back = cam_from_world_from_viser_pose(pose.wxyz, pose.position)
        np.testing.assert_allclose(back.matrix(), cam_from_world.matrix(), atol=1e-12)


def test_pinhole_from_fov_matches_vertical_fov():
    cam = pinhole_from_fov(np.deg2rad(60), 800, 600)
    assert cam.model == "PINHOLE" and cam.size == (800, 600)
    assert vertical_fov(cam) == pytest.approx(np.deg2rad(60))
    # A ray at the top edge of the image (y = -0.5, pixel-centre convention) is fov/2 off-axis.
    d, ok = cam.unproject(np.array([[399.5, -0.5]]))
    assert ok[0] and np.degrees(np.arccos(d[0, 2])) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="fov"):
        pinhole_from_fov(4.0, 10, 10)


def test_render_camera_for_view_keeps_aspect_and_pose(rng):
    cam_from_world = random_pose(rng)
    pose = viser_pose_from_cam_from_world(cam_from_world)
    cam, cfw = render_camera_for_view(1.0, 1600, 900, pose.wxyz, pose.position, max_side=512)
    assert cam.size == (512, 288)
    assert vertical_fov(cam) == pytest.approx(1.0)
    np.testing.assert_allclose(cfw.matrix(), cam_from_world.matrix(), atol=1e-12)


def test_splat_covariance_and_colour(rng):
    n = 50
    log_s = rng.normal(size=(n, 3)) - 2
    q = rng.normal(size=(n, 4)) * 3  # unnormalised on purpose
    cov = splat_covariances(log_s, q)
    for i in range(5):
        R = matrix_from_quat(q[i] / np.linalg.norm(q[i]))
        ref = R @ np.diag(np.exp(2 * log_s[i])) @ R.T
        np.testing.assert_allclose(cov[i], ref, rtol=1e-4, atol=1e-9)
    assert np.allclose(cov, cov.transpose(0, 2, 1))
    assert np.all(np.linalg.eigvalsh(cov.astype(np.float64)) > 0)
    rgb = rgb_from_sh_dc(np.array([[0.0, 1.0, -10.0]]))
    np.testing.assert_allclose(rgb[0], [0.5, 0.5 + SH_C0, 0.0], atol=1e-6)


def test_subsample_is_deterministic_and_nested():
    a, b = subsample_order(1000), subsample_order(1000)
    np.testing.assert_array_equal(a, b)
    assert sorted(a.tolist()) == list(range(1000))
    assert set(a[:100]) <= set(a[:300])


def test_colours():
    c = colormap(np.array([0.0, 1.0, np.nan, -1.0]), lo=0.0, hi=1.0)
    assert c.shape == (4, 3) and c.dtype == np.uint8
    assert not np.array_equal(c[0], c[1])
    np.testing.assert_array_equal(c[2], c[3])  # both invalid: grey
    ids = np.array([0, 1, 0, 25, -1, 25])
    p = label_palette(ids)
    np.testing.assert_array_equal(p[0], p[2])
    np.testing.assert_array_equal(p[3], p[5])
    assert len({tuple(x) for x in p}) == 4
    np.testing.assert_array_equal(label_palette([7]), label_palette(np.array([3, 7]))[1:])


def test_pick_point_nearest_along_ray():
    xyz = np.array([[0, 0, 5.0], [0, 0, 2.0], [1.0, 0, 2.0], [0, 0, -3.0]])
    o, d = np.zeros(3), np.array([0, 0, 1.0])
    assert pick_point(xyz, o, d, max_angle=0.01) == 1  # the front one of the two on the ray
    assert pick_point(xyz, o, d, max_angle=0.01, candidates=[0, 2, 3]) == 0
    assert pick_point(xyz, o, -d, max_angle=0.01) == 3
    assert pick_point(xyz, o, np.array([0, 1.0, 0]), max_angle=0.01) == -1


# ---- content ---------------------------------------------------------------------------------
def test_content_from_reconstruction(tmp_path):
    rec = ring_reconstruction()
    from PIL import Image as PILImage

    (tmp_path / "images").mkdir()
    PILImage.new("RGB", (64, 48), (10, 200, 10)).save(tmp_path / "images" / "im0.png")
    c = content_from_reconstruction(rec, image_dir=tmp_path / "images")
    assert len(c.points) == 500 and len(c.cameras) == 6
    np.testing.assert_array_equal(c.points.track_length, rec.track_lengths())
    np.testing.assert_allclose(c.points.error, rec.points_error(), rtol=1e-6)
    assert c.cameras[0].image_path == tmp_path / "images" / "im0.png"
    assert c.cameras[1].image_path is None
    assert any("photos found for 1/6" in n for n in c.notes)
    with pytest.raises(TypeError, match="rec"):
        content_from_reconstruction("not a reconstruction")


def test_point_layer_checks():
    with pytest.raises(ValueError, match="rgb"):
        PointLayer(np.zeros((5, 3)), rgb=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="class_id"):
        PointLayer(np.zeros((5, 3)), class_id=np.zeros(3))
    p = PointLayer(np.zeros((2, 3)), rgb=np.array([[0.0, 0.5, 1.0], [1, 1, 1]]))
    np.testing.assert_array_equal(p.rgb[0], [0, 128, 255])


# ---- camera paths ----------------------------------------------------------------------------
def test_camera_path_json_round_trip_and_interpolation(tmp_path, rng):
    cam = Camera("PINHOLE", 640, 480, [500, 500, 319.5, 239.5])
    k0, k1 = random_pose(rng), random_pose(rng)
    frames = interpolate_path([PathFrame(cam, k0), PathFrame(cam, k1)], fps=10, seconds_per_segment=1.0)
    assert len(frames) == 11
    np.testing.assert_allclose(frames[0].cam_from_world.matrix(), k0.matrix(), atol=1e-12)
    np.testing.assert_allclose(frames[-1].cam_from_world.matrix(), k1.matrix(), atol=1e-12)
    # The camera centre moves on the straight line between the keyframe centres.
    mid = frames[5].cam_from_world.dst_origin_in_src()
    np.testing.assert_allclose(mid, (k0.dst_origin_in_src() + k1.dst_origin_in_src()) / 2, atol=1e-9)
    path = save_camera_path(tmp_path / "p.json", CameraPath([PathFrame(cam, k0), PathFrame(cam, k1)], frames, 10))
    doc = json.loads(path.read_text())
    assert doc["format"] == "recon.camera_path" and len(doc["frames"]) == 11
    assert np.asarray(doc["frames"][0]["cam_from_world"]).shape == (4, 4)
    back = load_camera_path(path)
    assert len(back.frames) == 11 and back.fps == 10
    for a, b in zip(frames, back.frames):
        np.testing.assert_allclose(a.cam_from_world.matrix(), b.cam_from_world.matrix(), atol=1e-12)
        assert a.camera.allclose(b.camera) and a.time == pytest.approx(b.time)
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(FormatError, match="bad.json"):
        load_camera_path(tmp_path / "bad.json")


# ---- detection -------------------------------------------------------------------------------
def _ply(path: Path, vertex_props: list[str], n: int = 3, faces: int = 0) -> Path:
    lines = ["ply", "format ascii 1.0", f"element vertex {n}"] + [f"property float {p}" for p in vertex_props]
    if faces:
        lines += [f"element face {faces}", "property list uchar int vertex_indices"]
    lines.append("end_header")
    body = [" ".join(["0"] * len(vertex_props))] * n + ["3 0 1 2"] * faces
    path.write_text("\n".join(lines + body) + "\n")
    return path


def test_detect_kinds(tmp_path):
    assert detect(_ply(tmp_path / "a.ply", ["x", "y", "z", "red", "green", "blue"])) == "points"
    assert detect(_ply(tmp_path / "b.ply", ["x", "y", "z", "class_id", "instance_id"])) == "labelled_points"
    splat = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]
    assert detect(_ply(tmp_path / "c.ply", splat)) == "splat_ply"
    assert detect(_ply(tmp_path / "d.ply", ["x", "y", "z"], faces=1)) == "mesh"
    (tmp_path / "m.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert detect(tmp_path / "m.obj") == "mesh"
    model = tmp_path / "out" / "sparse" / "0"
    model.mkdir(parents=True)
    for s in ("cameras", "images", "points3D"):
        (model / f"{s}.bin").write_bytes(b"")
    assert detect(tmp_path / "out") == "sfm_output"
    assert detect(model) == "colmap"
    (tmp_path / "train").mkdir()
    _ply(tmp_path / "train" / "splat.ply", splat)
    assert detect(tmp_path / "train") == "splat_output"
    assert read_ply_header(tmp_path / "c.ply").elements == {"vertex": 3}


def test_detect_errors_name_the_file(tmp_path):
    (tmp_path / "x.xyz").write_text("1 2 3\n")
    with pytest.raises(FormatError, match=r"x\.xyz.*unknown file type"):
        detect(tmp_path / "x.xyz")
    (tmp_path / "bad.ply").write_bytes(b"\x00\x01garbage")
    with pytest.raises(FormatError, match=r"bad\.ply.*not a PLY"):
        detect(tmp_path / "bad.ply")
    (tmp_path / "trunc.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\n")
    with pytest.raises(FormatError, match=r"trunc\.ply.*end_header"):
        detect(tmp_path / "trunc.ply")
    with pytest.raises(FormatError, match="no such file"):
        detect(tmp_path / "missing.ply")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="empty.*not a COLMAP model"):
        detect(tmp_path / "empty")


def _cli(*args, timeout=120):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "recon", "view", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env, check=False)


def test_cli_bad_input_exit_2(tmp_path):
    (tmp_path / "corrupt.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex x\nend_header\n")
    r = _cli(tmp_path / "corrupt.ply", "--no-block")
    assert r.returncode == 2, r.stderr
    assert "corrupt.ply" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "notes.txt").write_text("hello")
    r = _cli(tmp_path / "notes.txt", "--no-block")
    assert r.returncode == 2 and "notes.txt" in r.stderr and "unknown file type" in r.stderr


def test_help_does_not_import_viser():
    help_code = ("import sys, recon.cli as c; p = c.build_parser(); "
                 "assert 'viser' not in sys.modules and 'viewer.app' not in sys.modules")
    light_code = ("import sys, viewer, viewer.convert, viewer.content, viewer.detect, viewer.camera_path; "
                  "bad = [m for m in ('viser', 'torch', 'open3d', 'render') if m in sys.modules]; "
                  "assert not bad, bad")
    for code in (help_code, light_code):
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO)},
                       timeout=60)


def test_viewer_never_imports_render():
    import ast

    for f in (REPO / "viewer").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "render" or n.startswith("render.") for n in names), (f, names)


# ---- server side (viser running, no browser) --------------------------------------------------
def test_port_in_use_moves_to_next_and_announces(capsys):
    from viewer.app import SceneViewer

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        content = SceneContent(points=PointLayer(np.random.default_rng(0).normal(size=(100, 3))))
        with SceneViewer(content, port=port, load_thumbnails=False) as v:
            assert v.port != port and v.port > port
            assert f":{v.port}" in v.url and v.url.startswith("http://127.0.0.1:")
            out = capsys.readouterr().out
            assert f"port {port} is in use; using port {v.port}" in out
    finally:
        blocker.close()


def test_scene_viewer_budget_labels_pick(tmp_path):
    from viewer.app import SceneViewer

    rng = np.random.default_rng(0)
    n = 20_000
    xyz = rng.normal(size=(n, 3))
    class_id = (xyz[:, 0] > 0).astype(int)  # two classes split by x
    instance_id = class_id * 10 + (xyz[:, 1] > 0)  # four instances
    pts = PointLayer(xyz, rgb=rng.integers(0, 256, (n, 3)), class_id=class_id, instance_id=instance_id)
    content = SceneContent(points=pts, class_names={0: "left", 1: "right"})
    with SceneViewer(content, port=0, point_budget=5000, output_dir=tmp_path, verbose=False) as v:
        assert v.gui_color_mode.value == "Class"
        assert "Reprojection error" not in v.gui_color_mode.options
        idx = v.visible_indices()
        assert idx.size == 5000 and np.unique(idx).size == 5000
        assert v.gui_shown.content == "points shown: 5,000 of 20,000"
        v.set_class_visible(0, False)
        idx = v.visible_indices()
        assert idx.size == 5000 and np.all(class_id[idx] == 1)
        # Click: a ray from far along +z straight down onto a shown point picks that point.
        target = idx[123]
        origin = xyz[target] + np.array([0, 0, 50.0])
        i = v.pick(origin, np.array([0, 0, -1.0]), max_angle=1e-4)
        above = idx[np.linalg.norm(xyz[idx, :2] - xyz[target, :2], axis=1) < 50 * 1e-4]
        assert i == above[np.argmax(xyz[above, 2])]  # the front-most one under the cursor
        assert "class = right" in v.gui_point_info.content
        assert f"instance = {instance_id[i]}" in v.gui_point_info.content
        # Select the object: highlighted colours, the export holds exactly that instance.
        inst = v.select_instance_of(i)
        assert inst == instance_id[i]
        shown_col = v._point_handle.colors
        sel = instance_id[v._shown_idx] == inst
        assert np.all(shown_col[sel] == (255, 230, 0)) and not np.any(np.all(shown_col[~sel] == (255, 230, 0), axis=1))
        from recon.io import read_ply

        path = v.export_selected()
        cloud = read_ply(path)
        assert len(cloud.xyz) == int(np.sum(instance_id == inst))
        np.testing.assert_allclose(np.sort(cloud.xyz[:, 0]), np.sort(xyz[instance_id == inst, 0]), rtol=1e-6)


# ---- loading real files (recon.io writers) and serving them ---------------------------------
def test_load_every_kind_and_serve(tmp_path, rng):
    import trimesh

    from recon.io import PointCloud, write_colmap, write_ply, write_transforms
    from recon.io.gaussians import GaussianCloud, write_splat_ply
    from viewer.app import SceneViewer
    from viewer.detect import load

    rec = ring_reconstruction(n_pts=300)
    write_colmap(rec, tmp_path / "sfm" / "sparse" / "0")
    from PIL import Image as PILImage

    (tmp_path / "photos").mkdir()
    PILImage.new("RGB", (8, 6)).save(tmp_path / "photos" / "im1.png")
    (tmp_path / "sfm" / "report.json").write_text(json.dumps(
        {"input": str(tmp_path / "photos"), "mean_reprojection_error_px": 0.5}))
    n = 400
    xyz = rng.normal(size=(n, 3))
    write_ply(tmp_path / "pts.ply", PointCloud(xyz, rgb=rng.integers(0, 256, (n, 3)).astype(np.uint8)))
    write_ply(tmp_path / "lab.ply", PointCloud(xyz, attributes={
        "class_id": (xyz[:, 0] > 0).astype(np.int32), "instance_id": np.arange(n, dtype=np.int32) % 5}))
    (tmp_path / "classes.json").write_text('["floor", "chair"]')
    g = GaussianCloud(means=xyz, log_scales=np.full((n, 3), -3.0), quats_wxyz=rng.normal(size=(n, 4)),
                      opacity_logits=np.zeros(n), sh_dc=rng.normal(size=(n, 3)), sh_rest=np.zeros((n, 3, 3)))
    write_splat_ply(tmp_path / "train" / "splat.ply", g)
    trimesh.creation.icosphere(subdivisions=2).export(tmp_path / "ball.ply")
    trimesh.creation.box().export(tmp_path / "box.obj")

    c = load(tmp_path / "sfm")
    assert len(c.points) == 300 and len(c.cameras) == 6
    assert c.cameras[1].image_path == tmp_path / "photos" / "im1.png"  # photos from report.json input
    assert any("reprojection error 0.500 px" in s for s in c.notes)
    np.testing.assert_allclose(c.points.xyz, rec.points_xyz(), atol=1e-6)
    for view, im in zip(c.cameras, sorted(rec.images.values(), key=lambda im: im.image_id)):
        np.testing.assert_allclose(view.cam_from_world.matrix(), im.cam_from_world.matrix(), atol=1e-9)
    assert load(tmp_path / "sfm" / "sparse" / "0").title.endswith("(colmap)")
    c = load(tmp_path / "pts.ply")
    assert len(c.points) == n and c.points.rgb is not None and not c.points.has_labels
    c = load(tmp_path / "lab.ply")
    assert c.class_names == {0: "floor", 1: "chair"}
    np.testing.assert_array_equal(c.points.instance_id, np.arange(n) % 5)
    c = load(tmp_path / "train")
    assert len(c.splats) == n and not c.cameras
    (tmp_path / "train" / "report.json").write_text(json.dumps(
        {"psnr": 27.5, "eval_split": "test", "num_gaussians": n, "steps": 30, "data_path": str(tmp_path / "sfm")}))
    c = load(tmp_path / "train")
    assert len(c.cameras) == 6 and any("test PSNR 27.50 dB" in s for s in c.notes)
    R = matrix_from_quat(g.quats_wxyz[0] / np.linalg.norm(g.quats_wxyz[0]))
    np.testing.assert_allclose(c.splats.covariances[0], R @ np.diag(np.full(3, np.exp(-6.0))) @ R.T, atol=1e-6)
    np.testing.assert_allclose(c.splats.opacity, 0.5)
    write_transforms(rec, tmp_path / "nerf", image_dir="images")
    c = load(tmp_path / "nerf")
    assert c.title.endswith("(transforms)") and len(c.cameras) == 6 and c.points is None
    np.testing.assert_allclose(c.cameras[2].cam_from_world.matrix(), rec.images[3].cam_from_world.matrix(),
                               atol=1e-9)
    assert len(load(tmp_path / "nerf" / "transforms.json").cameras) == 6
    assert len(load(tmp_path / "ball.ply").mesh.faces) == 320
    assert len(load(tmp_path / "box.obj").mesh.faces) == 12
    for path in ("sfm", "lab.ply", "train", "ball.ply"):
        with SceneViewer(load(tmp_path / path), port=0, verbose=False, load_thumbnails=False) as v:
            assert v.server.scene.get_handle_by_name(
                {"sfm": "/points", "lab.ply": "/points", "train": "/splats", "ball.ply": "/mesh"}[path]) is not None


def test_corrupt_payload_names_the_file(tmp_path):
    from viewer.detect import load

    # A valid header promising 1000 binary vertices, then 10 bytes.
    (tmp_path / "short.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\n"
                                         b"property float x\nproperty float y\nproperty float z\nend_header\n"
                                         + b"\x00" * 10)
    with pytest.raises(FormatError, match="short.ply"):
        load(tmp_path / "short.ply")
    (tmp_path / "broken.obj").write_text("this is not an obj file\n")
    with pytest.raises(FormatError, match="broken.obj"):
        load(tmp_path / "broken.obj")
    (tmp_path / "m" / "sparse" / "0").mkdir(parents=True)
    for s in ("cameras", "images", "points3D"):
        (tmp_path / "m" / "sparse" / "0" / f"{s}.bin").write_bytes(b"\x01\x02")
    with pytest.raises(FormatError, match=r"sparse/0"):
        load(tmp_path / "m")


def test_cli_no_block_prints_url(tmp_path):
    from recon.io import PointCloud, write_ply

    write_ply(tmp_path / "p.ply", PointCloud(np.random.default_rng(0).normal(size=(50, 3))))
    r = _cli(tmp_path / "p.ply", "--no-block", "--port", "0", "-o", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert "recon view: open http://127.0.0.1:" in r.stdout and "stopped" in r.stdout


# ---- live training view, render loop without a browser -------------------------------------
class _FakeCamera:
    def __init__(self, fov, w, h, wxyz, position):
        self.fov, self.image_width, self.image_height = fov, w, h
        self.wxyz, self.position = np.asarray(wxyz, float), np.asarray(position, float)


class _FakeScene:
    def __init__(self):
        self.images = []

    def set_background_image(self, image, format="auto", jpeg_quality=None, depth=None):
        self.images.append(image)


class _FakeClient:
    """What TrainingViewer reads from a viser ClientHandle: camera state, background sink."""

    def __init__(self, camera):
        self.client_id, self.camera, self.scene = 7, camera, _FakeScene()


def test_training_viewer_renders_with_the_real_splat_rasterizer(rng):
    """TrainingViewer + render.splat.rasterize (the trainers' renderer, torch on CPU): the view
    of a browser camera is rendered with that camera; re-render only when the view moved or
    the model changed; bad render_fn output is reported, not raised."""
    import torch

    from recon.io.gaussians import GaussianCloud
    from render.splat import rasterize
    from viewer.live import TrainingViewer

    n = 200
    g = GaussianCloud(means=rng.uniform(-0.5, 0.5, (n, 3)), log_scales=np.full((n, 3), np.log(0.03)),
                      quats_wxyz=np.tile([1.0, 0, 0, 0], (n, 1)), opacity_logits=np.full(n, 4.0),
                      sh_dc=np.tile([1.6, -1.6, -1.6], (n, 1)), sh_rest=np.zeros((n, 0, 3)))
    seen = []

    def render_fn(camera, cam_from_world):
        seen.append((camera, cam_from_world))
        with torch.no_grad():
            return rasterize(g, camera, cam_from_world, background=(1.0, 1.0, 1.0)).rgb  # float tensor

    cam_from_world = Rigid3(np.eye(3), [0.0, 0.0, 3.0])  # looking down +z at the cloud
    pose = viser_pose_from_cam_from_world(cam_from_world)
    client = _FakeClient(_FakeCamera(0.8, 800, 600, pose.wxyz, pose.position))
    with TrainingViewer(render_fn, port=0, max_fps=50, model_refresh_s=0.0, verbose=False) as tv:
        tv.gui_live.value = False  # the loop thread stays idle; we drive _maybe_render directly
        tv.gui_resolution.value = 160
        tv._maybe_render(client)
        assert len(seen) == 1 and len(client.scene.images) == 1
        cam, cfw = seen[0]
        assert cam.size == (160, 120) and vertical_fov(cam) == pytest.approx(0.8)
        np.testing.assert_allclose(cfw.matrix(), cam_from_world.matrix(), atol=1e-12)
        img = client.scene.images[0]
        assert img.shape == (120, 160, 3) and img.dtype == np.uint8
        red = (img[..., 0] > 150) & (img[..., 1] < 100)
        yx = np.argwhere(red)
        assert len(yx) > 200  # the cloud is drawn ...
        uv, _ = cam.project(cfw.apply(g.means))
        np.testing.assert_allclose(yx.mean(0)[::-1], uv.mean(0), atol=6)  # ... where it projects
        tv._maybe_render(client)
        assert len(seen) == 1  # nothing changed: no render
        tv.log(1, {"loss": 0.5})
        tv._maybe_render(client)
        assert len(seen) == 2  # the model changed
        client.camera.position = client.camera.position + 0.1
        tv._maybe_render(client)
        assert len(seen) == 3  # the view moved
        tv.render_fn = lambda camera, cfw: np.zeros((5, 5, 3), np.uint8)
        client.camera.fov = 0.7
        tv._maybe_render(client)
        assert "render_fn returned shape (5, 5, 3)" in tv.last_render_error
        assert "render failed" in tv.gui_render_info.content
        assert not tv.paused
        tv.paused = True
        assert tv.gui_pause.label == "Resume training"


def test_pick_splat_reports_it():
    from viewer.app import SceneViewer
    from viewer.content import SplatLayer

    centers = np.array([[0, 0, 0.0], [1, 0, 0], [0, 1, 0]], np.float32)
    cov = np.tile(np.diag([0.04, 0.01, 0.0001]).astype(np.float32), (3, 1, 1))
    sp = SplatLayer(centers, cov, np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32),
                    np.array([0.9, 0.5, 0.2], np.float32))
    with SceneViewer(SceneContent(splats=sp), port=0, verbose=False) as v:
        assert v.pick_splat([1, 0, 5], [0, 0, -1], max_angle=0.01) == 1
        assert "splat 1" in v.gui_point_info.content and "opacity = 0.500" in v.gui_point_info.content
        assert "[0.2, 0.1, 0.01]" in v.gui_point_info.content
        assert v.pick_splat([5, 5, 5], [0, 0, 1], max_angle=0.01) == -1


def test_render_camera_path_with_the_splat_rasterizer(tmp_path, rng):
    """A recorded path (JSON) rendered to frames by the trainers' renderer: the splat cloud
    stays where each frame's camera projects it."""
    import torch
    from PIL import Image as PILImage

    from recon.io.gaussians import GaussianCloud
    from render.splat import rasterize
    from viewer.camera_path import render_camera_path

    n = 100
    g = GaussianCloud(means=rng.uniform(-0.3, 0.3, (n, 3)), log_scales=np.full((n, 3), np.log(0.03)),
                      quats_wxyz=np.tile([1.0, 0, 0, 0], (n, 1)), opacity_logits=np.full(n, 4.0),
                      sh_dc=np.tile([-1.6, 1.6, -1.6], (n, 1)), sh_rest=np.zeros((n, 0, 3)))
    cam = Camera("PINHOLE", 96, 72, [80, 80, 47.5, 35.5])
    k0 = Rigid3(np.eye(3), [0.3, 0.0, 3.0])
    k1 = Rigid3(np.eye(3), [-0.3, 0.1, 2.5])
    frames = interpolate_path([PathFrame(cam, k0), PathFrame(cam, k1)], fps=4, seconds_per_segment=1.0)
    path = save_camera_path(tmp_path / "path.json", CameraPath([PathFrame(cam, k0), PathFrame(cam, k1)], frames, 4))

    def render_fn(camera, cam_from_world):
        with torch.no_grad():
            return rasterize(g, camera, cam_from_world, background=(1.0, 1.0, 1.0)).rgb

    out = render_camera_path(path, render_fn, tmp_path / "frames", progress=False)
    assert [p.name for p in out] == [f"frame_{i:04d}.png" for i in range(5)]
    for p, f in zip(out, frames):
        img = np.asarray(PILImage.open(p))
        green = np.argwhere((img[..., 1] > 150) & (img[..., 0] < 100))
        uv, _ = f.camera.project(f.cam_from_world.apply(g.means))
        np.testing.assert_allclose(green.mean(0)[::-1], uv.mean(0), atol=3)
