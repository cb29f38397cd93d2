"""The NeRF trainer on tiny scenes: it learns (PSNR far above the untrained field), writes model,
depth maps and density grid, resumes, stops on NaN keeping the last good checkpoint, casts rays
through distorted / fisheye cameras, handles mixed image sizes, refuses unposed images by name,
and `recon train nerf` / `recon render` work on its output."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from calib import Camera, Rigid3
from recon.errors import ReconError
from render.data import SceneData, View
from render.metrics import psnr
from render.nerf.encoding import HashGridConfig
from render.nerf.field import FieldConfig
from render.nerf.rays import camera_rays
from render.nerf.trainer import NerfConfig, NerfTrainer, load_model, train
from render.scaffold import Split, TrainingDiverged
from render.splat.toy import toy_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_scene() -> SceneData:
    return toy_scene(num_views=24, width=48, height=36, n_gaussians=600, n_points=300, seed=0,
                     background=(1.0, 1.0, 1.0))


def _cfg(**kw) -> NerfConfig:
    f = FieldConfig(hash=HashGridConfig(num_levels=6, log2_table_size=12, base_resolution=8, max_resolution=96),
                    hidden=32)
    base = NerfConfig(steps=200, rays_per_batch=512, field=f, march_steps=96, grid_resolution=24,
                      background=(1.0, 1.0, 1.0), checkpoint_every=100, density_grid_resolution=24,
                      render_chunk=2048, grid_warmup_steps=32, grid_update_every=8, grid_decay=0.8)
    return dataclasses.replace(base, **kw)


@pytest.fixture(scope="module")
def trained(tiny_scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("nerf_run")
    return out, train(tiny_scene, out, _cfg(), progress=False, log=lambda m: None, threads=1)


@pytest.mark.slow
def test_nerf_learns_and_writes_outputs(tiny_scene, trained):
    out, _ = trained
    split = Split.every(tiny_scene)
    untrained = NerfTrainer(tiny_scene, split, _cfg())
    before = np.mean([psnr(np.clip(untrained.render_view(tiny_scene.views[i].camera,
                                                         tiny_scene.views[i].cam_from_world).rgb, 0, 1),
                           tiny_scene.views[i].image) for i in split.test])
    rep = json.loads((out / "report.json").read_text())
    for key in ("psnr_test", "ssim_test", "lpips_test", "lpips_reason", "eval_split", "eval_views", "psnr", "ssim",
                "steps", "seconds", "num_gaussians", "device", "peak_memory_mb", "train_views", "test_views",
                "resolution", "source", "resolution_scale", "background"):
        assert key in rep, key
    assert rep["method"] == "nerf" and rep["steps"] == 200 and rep["test_views"] == 3
    # measured: 16.98 dB after 200 steps (load ~15, 118 s); the untrained field is a grey fog
    assert rep["psnr_test"] > before + 5.0, (before, rep["psnr_test"])
    assert rep["psnr_test"] > 15.5, rep["psnr_test"]
    assert rep["occupancy"] < 0.9  # the occupancy grid carved empty space
    assert len(list((out / "renders" / "test").glob("*.png"))) == 3
    # one depth map per view; the density grid in its documented format
    depths = sorted((out / "depth").glob("*.npy"))
    assert len(depths) == len(tiny_scene.views)
    d0 = np.load(depths[0])
    assert d0.shape == (36, 48) and d0.dtype == np.float32 and (d0 > 0).mean() > 0.2
    g = np.load(out / "density_grid.npz")
    assert g["density"].shape == (24, 24, 24) and np.all(g["bbox_max"] > g["bbox_min"])
    assert g["density"].max() > float(g["iso_hint"])  # something solid was learned
    # model.pt renders what the trainer rendered
    m = load_model(out)
    v = tiny_scene.views[0]
    assert psnr(np.clip(m.render_image(v.camera, v.cam_from_world).rgb, 0, 1), v.image) > 15.0


@pytest.mark.slow
def test_points_ply_lies_on_the_scene_and_recon_view_shows_it(tiny_scene, trained):
    """points.ply (the depth maps back-projected) sits on the toy scene's points, and `recon view`
    loads the NeRF output as those points (the cameras come from report.json's data_path, which
    an in-memory scene does not have)."""
    from scipy.spatial import cKDTree

    from viewer.detect import detect as view_kind
    from viewer.detect import load as view_load

    out, _ = trained
    content = view_load(out)
    assert view_kind(out) == "nerf_output" and content.source == out
    pts = content.points.xyz
    assert len(pts) > 1000 and content.points.rgb is not None
    diag = float(np.linalg.norm(np.ptp(tiny_scene.points_xyz, axis=0)))
    d, _ = cKDTree(tiny_scene.points_xyz).query(pts)
    assert np.median(d) < 0.05 * diag, (np.median(d), diag)
    assert any("depth maps back-projected" in n for n in content.notes)


@pytest.mark.slow
def test_depth_maps_are_z_depth_of_the_learned_surface(tiny_scene, trained):
    """z-depth (OpenCV camera frame) = ray distance * z of the unit ray: check against the toy
    scene's SfM points that project into each pixel (median relative error)."""
    out, _ = trained
    errs = []
    for v in tiny_scene.views[:6]:
        stem = Path(v.name).with_suffix("").as_posix().replace("/", "_")
        depth = np.load(out / "depth" / f"{stem}.npy")
        pc = v.cam_from_world.apply(tiny_scene.points_xyz)
        uv, ok = v.camera.project(pc)
        ok &= (uv[:, 0] > -0.5) & (uv[:, 0] < v.camera.width - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < v.camera.height - 0.5)
        px = np.round(uv[ok]).astype(int)
        d = depth[px[:, 1], px[:, 0]]
        z = pc[ok, 2]
        hit = d > 0
        errs.append(np.abs(d[hit] - z[hit]) / z[hit])
    # points can be occluded by nearer surfaces: judge the median
    # (the toy scene is a cloud of soft Gaussians: fuzzy surfaces; the exact convention is tested below)
    assert np.median(np.concatenate(errs)) < 0.15


@pytest.mark.slow
def test_resume_continues_to_the_total_steps(tiny_scene, tmp_path):
    cfg = _cfg(steps=20, checkpoint_every=10, write_depth=False, rays_per_batch=128)
    train(tiny_scene, tmp_path, cfg, progress=False, log=lambda m: None, threads=1)
    res = train(tiny_scene, tmp_path, dataclasses.replace(cfg, steps=30), resume=True, progress=False,
                log=lambda m: None, threads=1)
    assert res.report["steps"] == 30


def test_nan_stops_with_the_last_good_checkpoint(tiny_scene, tmp_path, monkeypatch):
    original = NerfTrainer.step

    def poisoned(self, step):
        if step == 7:  # a corrupted parameter: the next loss is NaN
            with torch.no_grad():
                self.model.field.color_mlp[0].weight.fill_(float("nan"))
        return original(self, step)

    monkeypatch.setattr(NerfTrainer, "step", poisoned)
    cfg = _cfg(steps=50, checkpoint_every=5, write_depth=False, rays_per_batch=128)
    with pytest.raises(TrainingDiverged, match="loss became"):
        train(tiny_scene, tmp_path, cfg, progress=False, log=lambda m: None, threads=1)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 5
    assert all(torch.isfinite(t).all() for t in ck["state"]["model"].values() if t.is_floating_point())


@pytest.mark.parametrize("model,params", [
    ("OPENCV", [60.0, 58.0, 31.5, 23.5, -0.25, 0.08, 0.002, -0.001]),
    ("OPENCV_FISHEYE", [40.0, 40.0, 31.7, 23.2, 0.05, -0.01, 0.002, 0.0]),
])
def test_rays_through_distorted_cameras_reproject_to_their_pixel_centres(model, params):
    cam = Camera(model, 64, 48, params)
    pose = Rigid3.from_axis_angle([0.1, -0.2, 0.3], [0.5, -0.1, 2.0])
    r = camera_rays(cam, pose)
    assert r.valid.all()
    pts_world = r.origin + 3.0 * r.directions  # 3 m along each ray
    uv, ok = cam.project(pose.apply(pts_world.reshape(-1, 3)))
    assert ok.all()
    np.testing.assert_allclose(uv.reshape(48, 64, 2), cam.pixel_grid(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(r.directions, axis=-1), 1.0, atol=1e-12)
    z = pose.apply(pts_world.reshape(-1, 3))[:, 2].reshape(48, 64)
    np.testing.assert_allclose(z, 3.0 * r.z_per_t, atol=1e-9)


def test_pinhole_principal_point_ray_is_the_optical_axis():
    """Pixel (0, 0) is the centre of the top-left pixel: with cx = 19, cy = 14 the ray of pixel
    (19, 14) is the optical axis, and pixel (20, 14) is one focal length's pixel to the right."""
    cam = Camera("PINHOLE", 40, 30, [50.0, 50.0, 19.0, 14.0])
    r = camera_rays(cam, Rigid3.identity())
    np.testing.assert_allclose(r.directions[14, 19], [0.0, 0.0, 1.0], atol=1e-12)
    d = r.directions[14, 20]
    np.testing.assert_allclose(d[0] / d[2], 1.0 / 50.0, atol=1e-12)


@pytest.mark.slow
def test_mixed_image_sizes_train(tiny_scene, tmp_path):
    views = list(tiny_scene.views[:9])
    v = views[3]
    small = v.camera.resized(24, 18)
    img = v.image.reshape(18, 2, 24, 2, 3).mean((1, 3))
    views[3] = View(v.name, small, v.cam_from_world, img.astype(np.float32))
    scene = SceneData(views, tiny_scene.points_xyz, tiny_scene.points_rgb, source="memory")
    res = train(scene, tmp_path, _cfg(steps=5, write_depth=True), progress=False, log=lambda m: None, threads=1)
    assert res.report["mixed_sizes"] is True
    stem = Path(v.name).with_suffix("").as_posix().replace("/", "_")
    assert np.load(tmp_path / "depth" / f"{stem}.npy").shape == (18, 24)


def test_unposed_image_is_refused_by_name(tmp_path):
    """COLMAP models hold registered images only (write_colmap drops the others), so an unposed
    camera reaches the trainer through transforms.json: refused naming the frame's file."""
    from PIL import Image as PILImage

    from render.data import load_scene

    (tmp_path / "images").mkdir()
    for n in ("a.png", "lost.png"):
        PILImage.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "images" / n)
    doc = {"camera_model": "OPENCV", "w": 8, "h": 6, "fl_x": 10.0, "fl_y": 10.0, "cx": 4.0, "cy": 3.0,
           "frames": [{"file_path": "images/a.png", "transform_matrix": np.eye(4).tolist()},
                      {"file_path": "images/lost.png"}]}
    (tmp_path / "transforms.json").write_text(json.dumps(doc))
    with pytest.raises(ReconError, match="lost.png"):
        load_scene(tmp_path, allow_distortion=True, require_poses=True)


def _recon(*args, timeout=600):
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", "import sys; from recon.cli import run_cli; sys.exit(run_cli())",
                           *map(str, args)], check=False, capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def test_cli_train_nerf_bad_input_exits_2(tmp_path):
    r = _recon("train", "nerf", tmp_path / "missing", "-o", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("recon train: error:") and "missing" in last and "Traceback" not in r.stderr
    r = _recon("train", "nerf", "--help")
    assert r.returncode == 0 and "transforms.json" in r.stdout


@pytest.mark.slow
def test_cli_train_nerf_on_a_synth_dataset_then_recon_render(tmp_path):
    data, out = tmp_path / "synth", tmp_path / "nerf"
    r = _recon("synth", "-o", data, "--kind", "scene", "--views", "9", "--width", "40", "--height", "30",
               "--no-progress", "--points", "500")
    assert r.returncode == 0, r.stderr
    r = _recon("train", "nerf", data, "-o", out, "--steps", "20", "--rays-per-batch", "256", "--quiet",
               "--threads", "1", "--no-depth")
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["steps"] == 20 and rep["bounds"]["kind"] == "box" and rep["test_views"] == 2
    r = _recon("render", out, "--cameras", "test", "-o", tmp_path / "frames")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 2
    r = _recon("render", out, "--cameras", "orbit", "--frames", "0", "-o", tmp_path / "f2")
    assert r.returncode == 2 and "--frames" in r.stderr


@pytest.mark.gpu
def test_cuda_renders_like_cpu(trained, tiny_scene):
    out, _ = trained
    v = tiny_scene.views[0]
    a = load_model(out, device="cpu").render_image(v.camera, v.cam_from_world)
    mc = load_model(out, device="cuda")
    mc.amp = False
    b = mc.render_image(v.camera, v.cam_from_world)
    assert float(np.abs(a.rgb - b.rgb).mean()) < 1e-3


class _Slab(torch.nn.Module):
    """A stand-in field: opaque (sigma 1e4 / m) where world z > 2 m, empty elsewhere, colour = 0.7."""

    def __init__(self, bounds):
        super().__init__()
        self.bounds = bounds

    def _z(self, u):
        lo, hi = torch.tensor(self.bounds.lo), torch.tensor(self.bounds.hi)
        return (lo + u * (hi - lo))[:, 2]

    def density(self, u):
        return torch.where(self._z(u) > 2.0, 1e4, 0.0)

    def forward(self, u, dirs):
        return self.density(u), torch.full((len(u), 3), 0.7)


@pytest.mark.parametrize("model,params", [("PINHOLE", [30.0, 30.0, 15.5, 11.5]),
                                          ("OPENCV_FISHEYE", [20.0, 20.0, 15.5, 11.5, 0.05, 0.0, 0.0, 0.0])])
def test_depth_maps_are_z_depth_in_the_camera_frame(model, params):
    """A camera at the origin looking along +z at the opaque half-space z > 2: every pixel's
    depth map value is z = 2 (not the ray length, which grows off-axis), within one march step."""
    from render.nerf.sampling import SceneBounds
    from render.nerf.trainer import NerfModel

    b = SceneBounds("box", (-4.0, -4.0, -1.0), (4.0, 4.0, 5.0), 0.0, 20.0)
    m = NerfModel(FieldConfig(hash=HashGridConfig(num_levels=2, log2_table_size=8, max_resolution=32)), b, 8,
                  march_steps=512, cone_angle=0.0, early_stop_eps=1e-4)
    m.field = _Slab(b)
    cam = Camera(model, 32, 24, params)
    out = m.render_image(cam, Rigid3.identity())
    step = m.dt_min
    assert np.all(out.depth > 0)
    np.testing.assert_allclose(out.depth, 2.0, atol=step)
    np.testing.assert_allclose(out.rgb, 0.7, atol=1e-3)


def _with_tracks(scene: SceneData) -> SceneData:
    """The toy scene with each SfM point 'seen' by the views it projects into unoccluded (a
    stand-in for COLMAP tracks): in 3x3-pixel cells, only the points within 5 % of the nearest
    point's depth count (the toy's far sphere side is hidden behind its near side)."""
    obs = []
    for vi, v in enumerate(scene.views):
        pc = v.cam_from_world.apply(scene.points_xyz)
        uv, ok = v.camera.project(pc)
        ok &= (uv[:, 0] > 0) & (uv[:, 0] < v.camera.width - 1) & (uv[:, 1] > 0) & (uv[:, 1] < v.camera.height - 1)
        idx = np.flatnonzero(ok)
        cell = (np.floor(uv[idx, 1] / 3).astype(int) * 1000 + np.floor(uv[idx, 0] / 3).astype(int))
        nearest = {}
        for c, z in zip(cell, pc[idx, 2]):
            nearest[c] = min(z, nearest.get(c, np.inf))
        obs += [(int(p), vi) for p, c, z in zip(idx, cell, pc[idx, 2]) if z <= 1.05 * nearest[c]]
    return dataclasses.replace(scene, point_views=np.array(obs, dtype=np.int64))


def test_depth_supervision_rays_come_from_training_views_only_and_the_loss_is_line_of_sight(tiny_scene):
    from render.nerf.sampling import PackedSamples

    scene = _with_tracks(tiny_scene)
    split = Split.every(scene)
    tr = NerfTrainer(scene, split, _cfg(lambda_depth=0.5, depth_rays_per_batch=64))
    o, d, dist = tr.depth_rays
    n_train_obs = int(np.isin(scene.point_views[:, 1], split.train).sum())
    assert len(dist) == n_train_obs < len(scene.point_views)
    # every ray starts at a training camera and passes through its point at the target distance
    centres = np.array([scene.views[i].cam_from_world.dst_origin_in_src() for i in split.train])
    assert np.min(np.linalg.norm(o.numpy()[:, None] - centres[None], axis=2), axis=1).max() < 1e-5
    hit = (o + d * dist[:, None]).numpy()
    assert np.min(np.linalg.norm(hit[:, None] - scene.points_xyz[None], axis=2), axis=1).max() < 1e-4

    # exact arithmetic: put every ray's three samples at 0.5 D, D and 1.5 D of its own target
    def run(weights):
        calls = {}

        def depth_weights(origins, dirs):
            r = origins.shape[0]
            key = (origins.numpy()[:, None] == o.numpy()[None]).all(2) & \
                (np.abs(dirs.numpy()[:, None] - d.numpy()[None]) < 1e-7).all(2)
            target = dist.numpy()[key.argmax(1)]
            mids = np.stack([0.5 * target, target, 1.5 * target], 1).reshape(-1)
            half = 1e-3
            calls["n"] = r
            return (torch.tensor(np.tile(weights, r), dtype=torch.float32),
                    PackedSamples(torch.arange(r).repeat_interleave(3), torch.tensor(mids - half, dtype=torch.float32),
                                  torch.tensor(mids + half, dtype=torch.float32), torch.zeros(3 * r, 3), r))

        tr._depth_weights = depth_weights
        try:
            return float(tr.depth_loss()), calls["n"]
        finally:
            del tr._depth_weights

    # default: the near-surface term alone
    assert tr.cfg.depth_free_weight == 0.0
    assert run([0.0, 1.0, 0.0]) == (pytest.approx(0.0, abs=1e-6), 64)  # opaque at the point: no loss
    assert run([1.0, 0.0, 0.0])[0] == pytest.approx(1.0)  # all weight in front: the surface is missing
    assert run([0.0, 0.0, 1.0])[0] == pytest.approx(1.0)  # behind the point: the same
    assert run([0.2, 0.5, 0.0])[0] == pytest.approx(0.5)
    # with the explicit free-space term (weight in front of the point) at weight 1
    tr.cfg = dataclasses.replace(tr.cfg, depth_free_weight=1.0)
    assert run([0.0, 1.0, 0.0])[0] == pytest.approx(0.0, abs=1e-6)
    assert run([1.0, 0.0, 0.0])[0] == pytest.approx(2.0)  # free-space + missing surface
    assert run([0.0, 0.0, 1.0])[0] == pytest.approx(1.0)  # behind the point: only the missing surface
    assert run([0.2, 0.5, 0.0])[0] == pytest.approx(0.7)


def test_depth_weight_schedule_and_its_validation():
    cfg = NerfConfig.preset("cpu")
    assert cfg.depth_weight(0.0) == pytest.approx(0.3) and cfg.depth_weight(1.0) == pytest.approx(0.001)
    assert cfg.depth_weight(0.5) == pytest.approx((0.3 * 0.001) ** 0.5)  # log-linear: the geometric mean
    assert cfg.depth_weight(2.0) == pytest.approx(0.001)
    assert dataclasses.replace(cfg, lambda_depth_final=None).depth_weight(0.7) == 0.3
    with pytest.raises(ValueError, match="lambda_depth_final"):
        dataclasses.replace(cfg, lambda_depth=0.0).validate()
    with pytest.raises(ValueError, match="lambda_depth_final"):
        dataclasses.replace(cfg, lambda_depth_final=0.0).validate()


@pytest.mark.slow
def test_depth_supervision_improves_the_learned_depth(tiny_scene, tmp_path):
    """Same steps with and without the SfM-point depth loss: the depth maps' error at the points
    (as in the test above) drops."""
    scene = _with_tracks(tiny_scene)
    errs = {}
    for lam in (0.0, 0.1):
        out = tmp_path / f"l{lam}"
        train(scene, out, _cfg(steps=150, lambda_depth=lam), progress=False, log=lambda m: None, threads=1)
        e = []
        for v in scene.views[:6]:
            depth = np.load(out / "depth" / f"{Path(v.name).stem}.npy")
            pc = v.cam_from_world.apply(scene.points_xyz)
            uv, ok = v.camera.project(pc)
            ok &= (uv[:, 0] > 0) & (uv[:, 0] < v.camera.width - 1) & (uv[:, 1] > 0) & (uv[:, 1] < v.camera.height - 1)
            px = np.round(uv[ok]).astype(int)
            dd, z = depth[px[:, 1], px[:, 0]], pc[ok, 2]
            e.append(np.where(dd > 0, np.abs(dd - z) / z, 1.0))
        errs[lam] = float(np.median(np.concatenate(e)))
    assert errs[0.1] < 0.8 * errs[0.0], errs


def test_scene_point_views_are_the_colmap_tracks(tmp_path):
    """SceneData.point_views (what depth supervision reads) holds exactly the (point, view)
    pairs of the model's tracks, once each, with view indices into the loaded (name-sorted) views."""
    from recon import synth
    from recon.io import read_colmap
    from render.data import load_scene

    synth.write_dataset(tmp_path / "ds", synth.make_scene(seed=0), synth.make_camera("PINHOLE", 64, 48, fov_deg=60),
                        synth.orbit(5, radius=3.2),
                        options=synth.DatasetOptions(num_points=300, progress=False, write_normals=False,
                                                     write_labels=False))
    scene = load_scene(tmp_path / "ds")
    rec = read_colmap(tmp_path / "ds" / "sparse" / "0")
    name_of_view = [v.name for v in scene.views]
    expected = {(i, im_name) for i, p in enumerate(rec.points3D.values())
                for im_name in {rec.images[int(j)].name for j in p.track[:, 0]}}
    got = [(int(p), name_of_view[int(v)]) for p, v in scene.point_views]
    assert len(got) == len(set(got)) == len(expected) > 0
    assert set(got) == expected
