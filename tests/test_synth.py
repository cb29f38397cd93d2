"""recon.synth: ground truth that is actually true.

Small scenes (8 views at 160x120, coarse textures) keep these fast; the SfM usability bar is a
slow test (tests/test_synth.py::test_pycolmap_orbit_usability).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from recon import synth
from recon.errors import FormatError
from recon.synth.dataset import ground_truth_points

W, H = 160, 120
FAST = synth.SceneConfig(texel_size=0.01)


@pytest.fixture(scope="module")
def scene():
    return synth.make_scene(3, FAST)


@pytest.fixture(scope="module")
def orbit_views(scene):
    cam = synth.make_camera("OPENCV", W, H, fov_deg=70)
    poses = synth.orbit(8, radius=3.2)
    views = [synth.render_view(scene, cam, T) for T in poses]
    return cam, poses, views


@pytest.fixture(scope="module")
def dataset(scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "orbit"
    cam = synth.make_camera("OPENCV", W, H, fov_deg=70)
    opts = synth.DatasetOptions(num_points=600, progress=False)
    return synth.write_dataset(out, scene, cam, synth.orbit(8, radius=3.2), options=opts)


def _bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    x0 = np.floor(uv[:, 0]).astype(int)
    y0 = np.floor(uv[:, 1]).astype(int)
    fx, fy = uv[:, 0] - x0, uv[:, 1] - y0
    a, b = img[y0, x0], img[y0, x0 + 1]
    c, d = img[y0 + 1, x0], img[y0 + 1, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------

def test_depth_consistency_of_ground_truth_points(scene, orbit_views):
    """GT points projected into every view where they are visible land on pixels whose rendered
    depth agrees with the point's z to < 1e-3 relative."""
    cam, poses, views = orbit_views
    rng = np.random.default_rng(0)
    samples = []
    for v in views:
        pix = rng.choice(np.flatnonzero(v.valid.ravel()), 150, replace=False)
        samples.append({"pix": pix, "rgb": v.rgb.reshape(-1, 3)[pix]})
    pts = ground_truth_points(scene, [cam] * len(poses), poses, samples)
    assert len(pts.xyz) > 500
    base = np.cumsum([0] + [p.num_patches for p in scene.primitives])
    planar = np.concatenate([np.arange(base[i], base[i + 1]) for i, p in enumerate(scene.primitives)
                             if p.kind in ("rect", "box")] + [[-2]])
    checked = 0
    rel_errors = []
    for (idx, uv), v, T in zip(pts.observations, views, poses):
        z = T.apply(pts.xyz[idx])[:, 2]
        # interior of the image (bilinear needs the 2x2 neighbourhood) and one surface patch
        ok = (uv[:, 0] >= 0) & (uv[:, 0] < W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] < H - 1)
        uv, z = uv[ok], z[ok]
        x0, y0 = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        pid = v.patch_id
        same = (pid[y0, x0] == pid[y0, x0 + 1]) & (pid[y0, x0] == pid[y0 + 1, x0]) & \
               (pid[y0, x0] == pid[y0 + 1, x0 + 1]) & (pid[y0, x0] >= 0)
        # planar patches only: on curved ones bilinear interpolation itself is not exact
        same &= np.isin(pid[y0, x0], planar)
        # inverse depth is affine in the pixel coordinates on a plane (pinhole), so interpolate it
        d = 1.0 / _bilinear(1.0 / np.where(v.valid, v.depth, np.inf), uv[same])
        rel_errors.append(np.abs(d - z[same]) / z[same])
        checked += int(same.sum())
        # every observation, curved surfaces included: the renderer's ray through the observed
        # (sub-pixel) position meets the surface at the point's depth
        dirs, ok_r = cam.unproject(uv)
        assert ok_r.all()
        c = T.dst_origin_in_src()
        hits = synth.cast_rays(scene, np.broadcast_to(c, dirs.shape), dirs @ T.rotation)
        np.testing.assert_allclose(hits.t * dirs[:, 2], z, rtol=1e-7)
    rel = np.concatenate(rel_errors)
    assert checked > 1000
    assert rel.max() < 1e-3, rel.max()


def test_every_observation_is_visible_and_unoccluded(scene, orbit_views):
    """Each observation's pixel shows the point's own instance (labels agree with geometry), and
    the nearest-pixel depth is never far in front of the point (no hidden points in tracks)."""
    cam, poses, views = orbit_views
    rng = np.random.default_rng(1)
    samples = []
    for v in views:
        pix = rng.choice(np.flatnonzero(v.valid.ravel()), 100, replace=False)
        samples.append({"pix": pix, "rgb": v.rgb.reshape(-1, 3)[pix]})
    pts = ground_truth_points(scene, [cam] * len(poses), poses, samples)
    agree = total = 0
    for (idx, uv), v, T in zip(pts.observations, views, poses):
        px = np.clip(np.round(uv).astype(int), 0, [W - 1, H - 1])
        z = T.apply(pts.xyz[idx])[:, 2]
        d = v.depth[px[:, 1], px[:, 0]]
        # a nearest pixel can sit on a neighbouring surface at an edge; never on an occluder
        # much closer than the point itself in the majority of cases
        agree += int(np.sum(v.instance_id[px[:, 1], px[:, 0]] == pts.instance_id[idx]))
        total += len(idx)
        assert np.mean(d > 0.5 * z) > 0.98
    assert agree / total > 0.95


def test_pixel_centre_depth_is_exact(scene, orbit_views):
    """Unprojecting a pixel centre with its depth and projecting back lands on that pixel
    centre; the 3D point lies on the surface (a second ray cast from elsewhere agrees)."""
    cam, poses, views = orbit_views
    v, T = views[2], poses[2]
    X = v.points_world(cam, T)
    ok = v.valid
    uv, valid = cam.project(T.apply(X[ok]))
    assert valid.all()
    np.testing.assert_allclose(uv, cam.pixel_grid()[ok], atol=1e-6)
    # cast from another camera centre towards the points: unoccluded ones are hit at their depth
    c = poses[3].dst_origin_in_src()
    P = X[ok][:: max(1, ok.sum() // 400)]
    h = synth.cast_rays(scene, np.broadcast_to(c, P.shape), P - c)
    dist = np.linalg.norm(P - c, axis=1)
    assert np.all(h.t <= dist * (1 + 1e-9))  # nothing is hit behind a surface point
    assert np.mean(np.abs(h.t - dist) < 1e-9 * dist) > 0.3


@pytest.mark.parametrize("model,fov", [("OPENCV", 80), ("FULL_OPENCV", 80), ("OPENCV_FISHEYE", 185),
                                       ("RADIAL_FISHEYE", 160), ("SIMPLE_RADIAL", 60)])
def test_exact_rendering_through_distorted_models(scene, model, fov):
    """A known 3D point (sampled in an undistorted view) projects, through the distorted or
    fisheye model, onto the pixel whose rendered ray hits it (within that pixel's footprint)."""
    pin = synth.make_camera("PINHOLE", W, H, fov_deg=60)
    T_src = synth.look_at([2.6, -1.6, 1.5], [0, 0, 0.5])
    src = synth.render_view(scene, pin, T_src, synth.RenderOptions(supersample=1))
    X = src.points_world(pin, T_src)[src.valid]
    cam = synth.make_camera(model, W, H, fov_deg=fov)
    T = synth.look_at([2.5, -1.9, 1.6], [0, 0.1, 0.6])
    v = synth.render_view(scene, cam, T, synth.RenderOptions(supersample=1))
    uv, valid = cam.project(T.apply(X))
    inside = valid & (uv[:, 0] > 0.5) & (uv[:, 0] < W - 1.5) & (uv[:, 1] > 0.5) & (uv[:, 1] < H - 1.5)
    px = np.round(uv[inside]).astype(int)
    Xr = v.points_world(cam, T)[px[:, 1], px[:, 0]]
    Xk = X[inside]
    good = np.isfinite(Xr).all(1)
    # within a few pixel footprints (range / focal, times a margin for slanted surfaces); the
    # rest are pixels where an edge or occluder sits between the point and the pixel centre
    d = np.linalg.norm(Xr - Xk, axis=1)
    foot = np.linalg.norm(T.apply(Xk), axis=1) / cam.focal[0]
    near = d < 4 * foot
    # occlusions and edges aside, the vast majority must agree
    assert good.sum() > 1000
    assert np.mean(near[good]) > 0.9, np.mean(near[good])
    # and exact on the rays themselves: the rendered point of each pixel projects to its centre
    Xv = v.points_world(cam, T)[v.valid]
    uv2, ok2 = cam.project(T.apply(Xv))
    assert ok2.all()
    np.testing.assert_allclose(uv2, cam.pixel_grid()[v.valid], atol=1e-6)


def test_fisheye_beyond_180_sees_behind_the_image_plane(scene):
    cam = synth.make_camera("OPENCV_FISHEYE", W, H, fov_deg=200, distortion=[0, 0, 0, 0])
    T = synth.look_at([0, 0, 1.2], [3, 0, 1.2])
    v = synth.render_view(scene, cam, T, synth.RenderOptions(supersample=1))
    X = v.points_world(cam, T)
    z_cam = T.apply(X[v.valid])[:, 2]
    assert z_cam.min() < 0  # surfaces behind the image plane are rendered (z-depth negative)
    assert np.all(v.depth[v.valid] == v.depth[v.valid])


def test_labels_consistent_with_geometry(scene, orbit_views):
    cam, poses, views = orbit_views
    names = {v: k for k, v in scene.class_names.items()}
    table = {i.instance_id: i.class_id for i in scene.instances}
    s = scene.config.room_half_size
    for v, T in zip(views, poses):
        X = v.points_world(cam, T)
        # instance ids always belong to the class shown
        ids = v.instance_id[v.valid]
        np.testing.assert_array_equal(np.vectorize(table.get)(ids), v.class_id[v.valid])
        floor = v.class_id == names["floor"]
        assert floor.any()
        np.testing.assert_allclose(X[floor][:, 2], 0.0, atol=1e-9)
        wall = v.class_id == names["wall"]
        on_wall = np.isclose(np.abs(X[wall][:, :2]).max(1), s, atol=1e-9)
        assert on_wall.all()
        # world normals of the floor are +z, expressed in the camera frame in `normals`
        n_world = v.normals[floor] @ T.rotation
        np.testing.assert_allclose(n_world, np.broadcast_to([0.0, 0.0, 1.0], n_world.shape), atol=1e-5)
        assert np.all(v.class_id[~v.valid] == 0) and np.all(v.depth[~v.valid] == 0)


def test_balls_are_spheres(scene, orbit_views):
    cam, poses, views = orbit_views
    balls = [p for p in scene.primitives if scene.class_names[p.class_id] == "ball"]
    assert balls
    seen = 0
    for v, T in zip(views, poses):
        X = v.points_world(cam, T)
        for p in balls:
            m = v.instance_id == p.instance_id
            if m.any():
                r = np.linalg.norm(X[m] - p.world_from_local.translation, axis=1)
                np.testing.assert_allclose(r, p.size[0], rtol=1e-9)
                seen += 1
    assert seen > 0


# ---------------------------------------------------------------------------------------------
# stereo
# ---------------------------------------------------------------------------------------------

def test_stereo_disparity_is_f_b_over_z(scene):
    cam = synth.make_camera("OPENCV", W, H, fov_deg=70)
    rig = synth.StereoRig.horizontal(cam, 0.15, toe_in_deg=2.0, vertical_offset=0.004, roll_deg=1.0)
    pair = synth.stereo.stereo_pair(scene, rig, synth.look_at([2.8, -1.5, 1.5], [0, 0, 0.5]),
                                    synth.RenderOptions(supersample=1))
    rect = pair.rectification
    B = float(np.hypot(0.15, 0.004))
    assert abs(rect.baseline - B) < 1e-12
    rc = rect.camera
    # the rectified pair differs by a pure translation along x
    rel = pair.rect_right_from_world @ pair.rect_left_from_world.inverse()
    np.testing.assert_allclose(rel.rotation, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rel.translation, [-B, 0, 0], atol=1e-12)
    L = pair.rect_left
    X = L.points_world(rc, pair.rect_left_from_world)[L.valid]
    uvl = rc.pixel_grid()[L.valid]
    uvr, ok = rc.project(pair.rect_right_from_world.apply(X))
    assert ok.all()
    np.testing.assert_allclose(uvr[:, 1], uvl[:, 1], atol=1e-6)  # same row
    disp = pair.disparity_left[L.valid]
    np.testing.assert_allclose(uvl[:, 0] - uvr[:, 0], disp, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(disp, rc.focal[0] * B / L.depth[L.valid], rtol=1e-6)
    # right disparity map agrees where the point is visible on the right (same surface)
    inside = (uvr[:, 0] > 0) & (uvr[:, 0] < W - 1)
    px = np.round(uvr[inside]).astype(int)
    dr = pair.disparity_right[px[:, 1], px[:, 0]]
    agree = np.abs(dr - disp[inside]) < 0.05 * disp[inside] + 0.2
    assert np.mean(agree) > 0.85
    # the unrectified views are really unrectified: the right camera is rotated
    assert not np.allclose(pair.cam_right_from_world.rotation, pair.cam_left_from_world.rotation)


def test_stereo_rectification_matches_opencv_epipolar_geometry(scene):
    """Points seen by the unrectified pair map, through OpenCV's undistortPoints with our
    rectifying rotations, onto equal rows."""
    import cv2
    cam = synth.make_camera("OPENCV", W, H, fov_deg=70)
    rig = synth.StereoRig.horizontal(cam, 0.1, toe_in_deg=3.0, vertical_offset=0.01, roll_deg=2.0)
    rect = synth.stereo.rectify(rig)
    rng = np.random.default_rng(0)
    X_left = np.c_[rng.uniform(-1, 1, (200, 2)), rng.uniform(2, 5, 200)]
    uv_l, ok_l = cam.project(X_left)
    uv_r, ok_r = cam.project(rig.right_from_left.apply(X_left))
    ok = ok_l & ok_r
    P = rect.camera.K
    a = cv2.undistortPoints(uv_l[ok].reshape(-1, 1, 2), cam.K, cam.opencv_dist(), R=rect.rect_from_left, P=P)
    b = cv2.undistortPoints(uv_r[ok].reshape(-1, 1, 2), cam.K, cam.opencv_dist(), R=rect.rect_from_right, P=P)
    np.testing.assert_allclose(a[:, 0, 1], b[:, 0, 1], atol=1e-3)
    Z = (X_left[ok] @ rect.rect_from_left.T)[:, 2]
    np.testing.assert_allclose(a[:, 0, 0] - b[:, 0, 0], P[0, 0] * rect.baseline / Z, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# determinism, effects, trajectories
# ---------------------------------------------------------------------------------------------

def test_deterministic_from_seed():
    cam = synth.make_camera("PINHOLE", 64, 48)
    T = synth.orbit(3)[1]
    coarse = synth.SceneConfig(texel_size=0.03)
    a = synth.render_view(synth.make_scene(11, coarse), cam, T)
    b = synth.render_view(synth.make_scene(11, coarse), cam, T)
    c = synth.render_view(synth.make_scene(12, coarse), cam, T)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.instance_id, b.instance_id)
    assert not np.array_equal(a.rgb, c.rgb)
    h1, h2 = synth.hemisphere(4, seed=5), synth.hemisphere(4, seed=5)
    np.testing.assert_array_equal(h1[3].matrix(), h2[3].matrix())


def test_image_effects_change_colour_not_geometry(scene):
    cam = synth.make_camera("PINHOLE", 64, 48)
    T = synth.orbit(3)[0]
    a = synth.render_view(scene, cam, T)
    b = synth.render_view(scene, cam, T, synth.RenderOptions(noise_sigma=4, blur_sigma=1.0, exposure=1.3))
    np.testing.assert_array_equal(a.depth, b.depth)
    assert b.rgb.astype(float).mean() > a.rgb.astype(float).mean() * 1.1
    # supersampling changes only colour, never the geometry outputs
    c = synth.render_view(scene, cam, T, synth.RenderOptions(supersample=1))
    np.testing.assert_array_equal(a.depth, c.depth)
    assert np.abs(a.rgb.astype(int) - c.rgb.astype(int)).mean() > 0.5


def test_trajectories(scene):
    target = np.array([0.0, 0.0, 0.5])
    cam = synth.make_camera("PINHOLE", W, H)
    for T in synth.orbit(12, radius=3.2, target=target):
        uv, ok = cam.project(T.apply(target))
        assert ok and np.allclose(uv, cam.principal_point, atol=1e-9)
        c = T.dst_origin_in_src()
        assert abs(np.hypot(c[0], c[1]) - 3.2) < 1e-9
        # image up is world up: the camera's y axis (down) points to -z
        assert T.rotation[1] @ [0, 0, 1] < 0
    walk = synth.walkthrough(40)
    steps = [np.linalg.norm(a.dst_origin_in_src() - b.dst_origin_in_src()) for a, b in itertools.pairwise(walk)]
    assert max(steps) < 0.2  # video-like small baselines
    # pure forward motion along a straight line: the camera looks where it goes
    line = synth.walkthrough(5, waypoints=[[-3, -3, 1.5], [0, -3, 1.5]], look_angle_deg=0, look_height=1.5,
                             sway=0.0)
    for T in line:
        np.testing.assert_allclose(T.rotation[2], [1, 0, 0], atol=1e-12)
    with pytest.raises(ValueError, match="waypoints"):
        synth.walkthrough(3, waypoints=[[0, 0, 1]])
    for T in synth.hemisphere(20, radius=3.0, seed=2):
        c = T.dst_origin_in_src() - target
        el = np.degrees(np.arcsin(c[2] / np.linalg.norm(c)))
        assert 11.9 < el < 55.1
    rig = synth.StereoRig.horizontal(cam, 0.2)
    l, r = rig.cams_from_world(synth.orbit(1)[0])
    assert abs(np.linalg.norm(l.dst_origin_in_src() - r.dst_origin_in_src()) - 0.2) < 1e-12


# ---------------------------------------------------------------------------------------------
# dataset folder
# ---------------------------------------------------------------------------------------------

def test_dataset_folder_round_trip(dataset, scene):
    ds = synth.load_dataset(dataset.root)
    assert ds.gt["complete"] is True and ds.kind == "scene" and len(ds) == 8
    assert ds.class_names[4] == "chair" and ds.instances
    v0 = synth.render_view(scene, ds.camera(0), ds.cam_from_world[0])
    np.testing.assert_array_equal(ds.load_depth(0), v0.depth.astype(np.float32))
    np.testing.assert_array_equal(ds.load_image(0), v0.rgb)
    np.testing.assert_array_equal(ds.load_class_ids(0), v0.class_id)
    np.testing.assert_array_equal(ds.load_instance_ids(0), v0.instance_id)
    np.testing.assert_allclose(ds.load_normals(0), v0.normals, atol=5e-5)
    for p in ("images/0000.png", "depth/0000.npy", "normals/0000.png", "labels/class/0000.png",
              "labels/instance/0000.png", "gt.json", "gt_points.npz", "gt_points.ply", "transforms.json",
              "sparse/0/cameras.bin"):
        assert (ds.root / p).is_file(), p
    gt = json.loads((ds.root / "gt.json").read_text())
    assert gt["depth"]["quantity"].startswith("z in the camera frame")
    assert gt["cameras"]["1"]["model"] == "OPENCV"
    # points: exact observations, visible in at least 2 views
    pts = ds.points()
    from recon import io
    cloud = io.read_ply(ds.root / "gt_points.ply")
    np.testing.assert_allclose(cloud.xyz, pts.xyz, atol=1e-5)
    np.testing.assert_array_equal(cloud.attributes["instance_id"], pts.instance_id)
    np.testing.assert_array_equal(cloud.attributes["class_id"], pts.class_id)
    table = {i.instance_id: i.class_id for i in ds.instances}
    assert all(table[i] == c for i, c in zip(pts.instance_id, pts.class_id))
    assert len(pts.xyz) > 100
    for k, (idx, uv) in enumerate(pts.observations):
        proj, ok = ds.camera(k).project(ds.cam_from_world[k].apply(pts.xyz[idx]))
        assert ok.all()
        np.testing.assert_allclose(proj, uv, atol=1e-9)


def test_dataset_sparse_model(dataset):
    rec = dataset.reconstruction()
    assert len(rec.images) == 8 and len(rec.points3D) == dataset.gt["points"]["count"]
    errs = rec.reprojection_errors()
    assert errs.max() < 1e-4
    assert rec.track_lengths().min() >= 2


def test_mesh_matches_the_analytic_ray_caster(scene):
    """Our analytic caster against Open3D's RaycastingScene on the scene's triangle mesh: equal
    hit distances on flat surfaces (exact in the mesh), close on tessellated curved ones."""
    import open3d as o3d

    from recon.synth.mesh import scene_mesh

    m = scene_mesh(scene, segments=64)
    rs = o3d.t.geometry.RaycastingScene()
    rs.add_triangles(o3d.core.Tensor(m.vertices.astype(np.float32)), o3d.core.Tensor(m.faces.astype(np.uint32)))
    cam = synth.make_camera("PINHOLE", W, H)
    T = synth.orbit(5, radius=3.2)[1]
    dirs = synth.camera_rays(cam)[0] @ T.rotation
    c = T.dst_origin_in_src()
    ours = synth.cast_rays(scene, np.broadcast_to(c, dirs.shape), dirs)
    rays = np.concatenate([np.broadcast_to(c, dirs.shape), dirs], 1).astype(np.float32)
    ans = rs.cast_rays(o3d.core.Tensor(rays))
    t_o3d = ans["t_hit"].numpy().astype(np.float64)
    inst_o3d = m.instance_id[np.minimum(ans["primitive_ids"].numpy().astype(np.int64), len(m.faces) - 1)]
    flat = np.isin(np.array([scene.primitives[p].kind for p in ours.prim]), ["rect", "box"]) & ours.hit
    same = flat & (inst_o3d == np.array([scene.primitives[p].instance_id for p in ours.prim]))
    assert same.sum() > 0.9 * flat.sum()
    np.testing.assert_allclose(t_o3d[same], ours.t[same], rtol=1e-4)
    curved = ours.hit & ~flat
    if curved.any():
        assert np.median(np.abs(t_o3d[curved] - ours.t[curved])) < 0.01


def test_parallel_workers_give_identical_datasets(scene, tmp_path):
    cam = synth.make_camera("OPENCV", 48, 36)
    poses = synth.orbit(3)
    opts = {"num_points": 40, "progress": False, "write_sparse": False, "write_transforms": False}
    a = synth.write_dataset(tmp_path / "a", scene, cam, poses, options=synth.DatasetOptions(**opts))
    b = synth.write_dataset(tmp_path / "b", scene, cam, poses, options=synth.DatasetOptions(workers=2, **opts))
    for i in range(3):
        np.testing.assert_array_equal(a.load_image(i), b.load_image(i))
        np.testing.assert_array_equal(a.load_depth(i), b.load_depth(i))
    np.testing.assert_array_equal(a.points().xyz, b.points().xyz)


def test_load_dataset_rejects_bad_folders(tmp_path):
    with pytest.raises(FormatError, match="gt.json"):
        synth.load_dataset(tmp_path)
    (tmp_path / "gt.json").write_text("{not json")
    with pytest.raises(FormatError, match="invalid JSON"):
        synth.load_dataset(tmp_path)
    (tmp_path / "gt.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(FormatError, match="recon-synth"):
        synth.load_dataset(tmp_path)


def test_stereo_dataset_folder(scene, tmp_path):
    cam = synth.make_camera("PINHOLE", 64, 48)
    rig = synth.StereoRig.horizontal(cam, 0.1, toe_in_deg=1.0)
    ds = synth.stereo.write_stereo_dataset(tmp_path / "st", scene, rig, synth.orbit(2),
                                           options=synth.DatasetOptions(num_points=50, progress=False))
    assert [v.name for v in ds.views] == ["left/0000.png", "right/0000.png", "left/0001.png", "right/0001.png"]
    assert abs(ds.gt["stereo"]["baseline"] - 0.1) < 1e-12
    rds = synth.load_dataset(tmp_path / "st" / "rectified")
    disp = np.load(tmp_path / "st" / "rectified" / "disparity" / "left" / "0000.npy")
    d = rds.load_depth(0)
    fx = rds.camera(0).focal[0]
    np.testing.assert_allclose(disp[d > 0], fx * 0.1 / d[d > 0], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def test_bad_input_is_refused_with_the_option_named(scene):
    with pytest.raises(ValueError, match="views"):
        synth.orbit(0)
    with pytest.raises(ValueError, match="views"):
        synth.walkthrough(-2)
    with pytest.raises(ValueError, match="width"):
        synth.make_camera("PINHOLE", -640, 480)
    with pytest.raises(ValueError, match="height"):
        synth.make_camera("PINHOLE", 640, 0)
    with pytest.raises(ValueError, match="model"):
        synth.make_camera("NOT_A_MODEL", 640, 480)
    with pytest.raises(ValueError, match="fov_deg"):
        synth.make_camera("OPENCV_FISHEYE", 640, 480, fov_deg=330)
    with pytest.raises(ValueError, match="fov_deg"):
        synth.make_camera("PINHOLE", 640, 480, fov_deg=185)
    with pytest.raises(ValueError, match="fov_deg"):  # strong barrel distortion folds over early
        synth.make_camera("RADIAL", 640, 480, fov_deg=120, distortion=[-0.4, 0.0])
    with pytest.raises(ValueError, match="distortion"):
        synth.make_camera("OPENCV", 640, 480, distortion=[0.1])
    with pytest.raises(ValueError, match="supersample"):
        synth.render_view(scene, synth.make_camera("PINHOLE", 8, 8), synth.orbit(1)[0],
                          synth.RenderOptions(supersample=0))
    with pytest.raises(ValueError, match="cam_from_world"):
        synth.write_dataset("/nonexistent/never", scene, synth.make_camera("PINHOLE", 8, 8), [])
    with pytest.raises(ValueError, match="seed"):
        synth.make_scene(-1)
    with pytest.raises(TypeError, match="cam_from_world"):
        synth.render_view(scene, synth.make_camera("PINHOLE", 8, 8), np.eye(4))
    with pytest.raises(ValueError, match="num_chairs"):
        synth.make_scene(0, synth.SceneConfig(num_chairs=-1))


def test_cli_synth(tmp_path, capsys):
    from recon.cli import main

    out = tmp_path / "cli"
    rc = main(["synth", "-o", str(out), "--views", "3", "--width", "48", "--height", "32", "--points", "50",
               "--texel-size", "0.02", "--no-progress", "--model", "OPENCV_FISHEYE", "--fov", "170",
               "--trajectory", "walk", "--seed", "4"])
    assert rc == 0
    ds = synth.load_dataset(out)
    assert len(ds) == 3 and ds.camera(0).model == "OPENCV_FISHEYE" and ds.seed == 4
    assert ds.gt["trajectory"]["kind"] == "walk"
    for argv, opt in ((["--views", "0"], "--views"), (["--width", "-5"], "--width"),
                      (["--model", "BOGUS"], "--model"), (["--model", "OPENCV_FISHEYE", "--fov", "400"], "--fov")):
        assert main(["synth", "-o", str(tmp_path / "bad"), *argv]) == 2
        assert opt in capsys.readouterr().err


def test_recon_info_describes_a_dataset(dataset, capsys):
    from recon.cli import main

    assert main(["info", str(dataset.root)]) == 0
    out = capsys.readouterr().out
    assert "recon-synth" in out and "8 views" in out
    assert "COLMAP model" in out  # sparse/0 is found and described


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, recon.synth; heavy = [m for m in ('cv2', 'torch', 'open3d', 'pycolmap') "
            "if m in sys.modules]; print(heavy)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# usability bar (slow)
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_pycolmap_orbit_usability(tmp_path):
    """pycolmap's default pipeline (SIFT, exhaustive matching, incremental mapping) on a 30-view
    640x480 orbit registers every view, mean reprojection error < 1 px, rotations within 0.2 deg
    of the truth after a similarity alignment."""
    import pycolmap

    from calib import Sim3, rotation_angle_deg

    scene = synth.make_scene(0)
    cam = synth.make_camera("PINHOLE", 640, 480)
    ds = synth.write_dataset(tmp_path / "ds", scene, cam, synth.orbit(30, radius=3.2),
                             options=synth.DatasetOptions(progress=False, num_points=0))
    db = tmp_path / "db.db"
    pycolmap.extract_features(db, ds.root / "images", camera_mode=pycolmap.CameraMode.SINGLE)
    pycolmap.match_exhaustive(db)
    recs = pycolmap.incremental_mapping(db, ds.root / "images", tmp_path / "sparse")
    rec = max(recs.values(), key=lambda r: r.num_reg_images())
    assert rec.num_reg_images() == 30
    assert rec.compute_mean_reprojection_error() < 1.0
    truth = {v.name: v.cam_from_world for v in ds.views}
    est_c, gt_c, rots = [], [], []
    for im in rec.images.values():
        T = im.cam_from_world()
        R, t = T.rotation.matrix(), np.asarray(T.translation)
        est_c.append(-R.T @ t)
        gt_c.append(truth[im.name].dst_origin_in_src())
        rots.append((R, truth[im.name].rotation))
    S = Sim3.align(np.array(est_c), np.array(gt_c))
    err = [float(rotation_angle_deg(Rg @ (Re @ S.rotation.T).T)) for Re, Rg in rots]
    print(f"\npycolmap on a 30-view orbit: {rec.num_reg_images()} registered, mean reprojection error "
          f"{rec.compute_mean_reprojection_error():.3f} px, rotation error max {max(err):.4f} deg "
          f"(mean {np.mean(err):.4f}), {rec.num_points3D()} points")
    assert max(err) < 0.2, err
