"""recon.export against ground truth: TSDF meshes of recon.synth depth vs the true visible surface
(Chamfer, normals, colours), dense and SfM point clouds vs the truth, Poisson, marching cubes of an
analytic sphere, mesh files read back by trimesh and Open3D, filters, and `recon export` itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recon.errors import ReconError
from recon.export import (
    DensityGrid,
    DepthView,
    ExportOptions,
    ExportResult,
    Mesh,
    TSDFOptions,
    auto_volume,
    backproject,
    chamfer_distance,
    crop_points,
    decimate,
    export_artifact,
    filter_gaussians,
    filter_mesh_by_attribute,
    filter_points_by_attribute,
    fuse_depth_points,
    fuse_tsdf,
    load_depth_views,
    marching_cubes,
    normal_consistency,
    points_from_reconstruction,
    poisson_mesh,
    read_density_grid,
    read_mesh,
    remove_small_components,
    remove_statistical_outliers,
    undistort_depth_view,
    voxel_downsample,
    write_density_grid,
    write_mesh,
)
from recon.io import PointCloud

ROOT = Path(__file__).resolve().parents[1]


def _write_synth(root: Path, width: int, height: int, views: int = 24, model: str = "PINHOLE", distortion=None):
    from recon import synth

    scene = synth.make_scene(seed=0)
    cam = synth.make_camera(model, width, height, fov_deg=60, distortion=distortion)
    opts = synth.DatasetOptions(progress=False, write_normals=False, num_points=1500)
    synth.write_dataset(root, scene, cam, synth.orbit(views, radius=3.2), options=opts)
    return root


@pytest.fixture(scope="module")
def synth160(tmp_path_factory):
    """The bar's scene (`recon synth --views 24`) at 160x120."""
    return _write_synth(tmp_path_factory.mktemp("export") / "s160", 160, 120)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A quick dataset for the CLI wiring (quality is tested on synth160)."""
    return _write_synth(tmp_path_factory.mktemp("export") / "small", 80, 60, views=8)


@pytest.fixture(scope="module")
def small_mesh(views160):
    return decimate(fuse_tsdf(views160[::2], TSDFOptions(voxel_size=0.1)).mesh, 5000)


@pytest.fixture(scope="module")
def views160(synth160):
    return load_depth_views(synth160)


@pytest.fixture(scope="module")
def truth160(views160):
    """The true visible surface: every pixel of the true depth maps back-projected (with colour)."""
    parts = [backproject(v) for v in views160]
    return np.concatenate([p for p, _, _ in parts]), np.concatenate([c for _, c, _ in parts])


@pytest.fixture(scope="module")
def tsdf160(views160):
    return fuse_tsdf(views160)


# =========================================================================================
# TSDF
# =========================================================================================

def test_auto_volume_covers_the_scene_and_ignores_a_flying_pixel(views160, truth160):
    pts, _ = truth160
    spec = auto_volume(views160)
    assert np.all(spec.bbox_min <= pts.min(0)) and np.all(spec.bbox_max >= pts.max(0))
    assert np.all(spec.bbox_max - pts.max(0) < 0.05 * np.ptp(pts, 0) + 1e-6)
    # voxel from the pixel footprint: 1.5 x median z / f
    z = np.concatenate([v.depth[v.valid] for v in views160])
    assert spec.voxel_size == pytest.approx(1.5 * np.median(z) / views160[0].camera.focal[0], rel=0.1)
    # one far pixel in one view (a flying pixel 40 m away) must not stretch the box
    bad = [DepthView(v.camera, v.cam_from_world, v.depth.copy(), v.rgb, v.name) for v in views160]
    bad[3].depth[10, 10] = 40.0
    spec2 = auto_volume(bad)
    assert np.allclose(spec2.bbox_min, spec.bbox_min, atol=0.05) and np.allclose(spec2.bbox_max, spec.bbox_max, atol=0.05)


def test_tsdf_mesh_matches_the_true_surface(tsdf160, truth160, views160):
    pts, rgb = truth160
    mesh = tsdf160.mesh
    c = chamfer_distance(mesh, pts)
    # the bar is < 0.2 % of the diagonal; 0.13 % here also catches a lost half-pixel shift
    # at the Open3D edge (0.158 % without it, 0.095 % with it)
    assert c.relative < 0.0013, c
    assert normal_consistency(mesh.vertices, mesh.vertex_normals, views160) > 0.95
    # vertex colours kept: each vertex's colour is close to the nearest true surface point's colour
    from scipy.spatial import cKDTree

    _, idx = cKDTree(pts).query(mesh.vertices)
    err = np.abs(mesh.vertex_colors.astype(float) - rgb[idx].astype(float)).mean()
    assert mesh.vertex_colors is not None and err < 20, err


@pytest.mark.slow
def test_tsdf_bar_at_320x240(tmp_path):
    """The issue's quality bar on the 24-view 320x240 scene: Chamfer < 0.2 % of the diagonal,
    > 95 % of normals facing the cameras."""
    views = load_depth_views(_write_synth(tmp_path / "s320", 320, 240))
    truth = np.concatenate([backproject(v)[0] for v in views])
    res = fuse_tsdf(views)
    c = chamfer_distance(res.mesh, truth)
    assert c.relative < 0.002, c
    assert normal_consistency(res.mesh.vertices, res.mesh.vertex_normals, views) > 0.95


def test_tsdf_options_override_and_crop(views160):
    res = fuse_tsdf(views160, TSDFOptions(voxel_size=0.08, bbox_min=(-1.5, -1.5, 0.3), bbox_max=(1.5, 1.5, 2.0)))
    assert res.volume.voxel_size == 0.08
    lo, hi = res.mesh.bounds()
    assert np.all(lo >= [-1.5, -1.5, 0.3]) and np.all(hi <= [1.5, 1.5, 2.0])
    with pytest.raises(ValueError, match="voxel_size"):
        fuse_tsdf(views160, TSDFOptions(voxel_size=-1.0))


def test_tsdf_refuses_empty_depth(views160):
    empty = [DepthView(v.camera, v.cam_from_world, np.full_like(v.depth, np.nan), None, v.name) for v in views160[:3]]
    with pytest.raises(ReconError, match="empty"):
        fuse_tsdf(empty)


def test_distorted_depth_resamples_to_the_same_surface(tmp_path):
    """An OPENCV view resampled to PINHOLE equals what a pinhole camera of the same intrinsics sees
    (rendered from the same scene), except at depth edges (nearest-neighbour resampling)."""
    from recon import synth

    root = _write_synth(tmp_path / "dist", 96, 72, views=1, model="OPENCV", distortion=[-0.2, 0.05, 0.001, 0.0])
    (v,) = load_depth_views(root)
    u = undistort_depth_view(v)
    assert u.camera.model == "PINHOLE"
    truth = synth.render_view(synth.make_scene(seed=0), u.camera, v.cam_from_world).depth
    both = u.valid & (truth > 0)
    assert both.mean() > 0.8
    err = np.abs(u.depth[both] - truth[both]) / truth[both]
    # nearest-neighbour picks a ray up to 0.5 px off (0.19 % median at 96x72); relabelling the
    # distorted map as pinhole without resampling gives 0.65 % and only 62 % of pixels within 1 %
    assert np.median(err) < 0.003 and np.mean(err < 0.01) > 0.85, (np.median(err), np.mean(err < 0.01))


# =========================================================================================
# Point clouds
# =========================================================================================

def test_dense_points_reject_inconsistent_depth(views160, truth160):
    pts, _ = truth160
    bad = [DepthView(v.camera, v.cam_from_world, v.depth.copy(), v.rgb, v.name) for v in views160]
    bad = bad[::2]  # 12 views keep it quick
    bad[2].depth *= 1.1  # one view's depth is 10 % wrong: no other view agrees with it
    cloud = fuse_depth_points(bad, min_views=2)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(pts).query(cloud.xyz)
    assert np.mean(d) < 0.01 and np.quantile(d, 0.99) < 0.05
    # Per-pixel normals face their own camera by construction; the vote over all views also counts
    # points on box edges that the neighbouring face's views see (~7 % at 160x120), hence 0.9.
    assert cloud.rgb is not None and normal_consistency(cloud.xyz, cloud.normals, views160) > 0.9
    loose = fuse_depth_points(bad, min_views=1)
    d1, _ = cKDTree(pts).query(loose.xyz)
    assert np.quantile(d1, 0.99) > 0.05  # without the check the wrong view's points stay


def _voxel_reference(xyz, voxel):
    cells = {}
    k = np.floor((xyz - xyz.min(0)) / voxel).astype(int)
    for p, key in zip(xyz, map(tuple, k)):
        cells.setdefault(key, []).append(p)
    return np.array(sorted(tuple(np.mean(v, 0)) for v in cells.values()))


def test_voxel_downsample_matches_a_literal_reference(rng):
    xyz = rng.uniform(0, 1, (3000, 3))
    cls = rng.integers(0, 3, 3000).astype(np.int32)
    cloud = PointCloud(xyz, rng.integers(0, 255, (3000, 3)).astype(np.uint8), None, {"class_id": cls})
    out = voxel_downsample(cloud, 0.2)
    ref = _voxel_reference(xyz, 0.2)
    assert len(out) == len(ref)
    np.testing.assert_allclose(np.array(sorted(map(tuple, out.xyz))), ref, atol=1e-12)
    assert out.attributes["class_id"].dtype == np.int32


def test_outliers_removed_and_crop(rng):
    xyz = np.concatenate([rng.normal(0, 0.1, (2000, 3)), rng.uniform(3, 5, (20, 3))])
    cloud = remove_statistical_outliers(PointCloud(xyz))
    assert len(cloud) >= 1900 and np.all(np.abs(cloud.xyz) < 2)
    box = crop_points(PointCloud(xyz), [-0.1] * 3, [0.1] * 3)
    assert np.all(np.abs(box.xyz) <= 0.1) and 0 < len(box) < 2000


def test_sfm_points_normals_face_their_cameras(synth160):
    from recon.synth import load_dataset

    ds = load_dataset(synth160)
    cloud = points_from_reconstruction(ds.reconstruction())
    gt = ds.points()
    from scipy.spatial import cKDTree

    _, idx = cKDTree(gt.xyz).query(cloud.xyz)
    agree = np.einsum("ij,ij->i", cloud.normals, gt.normals[idx])
    # local PCA on sparse points is noisy at edges; the sign (toward the cameras) is what we check
    assert np.mean(agree > 0) > 0.9
    assert cloud.rgb is not None and "track_length" in cloud.attributes


# =========================================================================================
# Surfaces
# =========================================================================================

def test_poisson_from_dense_points(views160, truth160):
    pts, _ = truth160
    cloud = voxel_downsample(fuse_depth_points(views160[::3]), 0.05)
    mesh = poisson_mesh(cloud, depth=8)
    c = chamfer_distance(mesh, pts)
    assert c.relative < 0.01, c
    assert mesh.vertex_colors is not None
    with pytest.raises(ReconError, match="normals"):
        poisson_mesh(PointCloud(cloud.xyz))


def _sphere_grid(n=48, radius=0.6):
    lo, hi = np.full(3, -1.0), np.full(3, 1.0)
    c = -1.0 + (np.arange(n) + 0.5) * 2.0 / n
    X, Y, Z = np.meshgrid(c, c, c, indexing="ij")
    r = np.sqrt(X ** 2 + Y ** 2 + Z ** 2)
    return DensityGrid(50.0 / (1.0 + np.exp((r - radius) * 40.0)), lo, hi)  # density 25 at r = radius


def test_marching_cubes_recovers_an_analytic_sphere(tmp_path):
    grid = _sphere_grid()
    np.savez(tmp_path / "nerf.npz", density=grid.grid, bbox_min=grid.bbox_min, bbox_max=grid.bbox_max, iso_hint=25.0)
    g2 = read_density_grid(tmp_path / "nerf.npz")  # the `recon train nerf` key names
    assert g2.iso_hint == 25.0
    write_density_grid(tmp_path / "g.npz", grid)
    mesh = marching_cubes(read_density_grid(tmp_path / "g.npz"), 25.0)
    r = np.linalg.norm(mesh.vertices, axis=1)
    voxel = 2.0 / 48
    assert abs(r.mean() - 0.6) < 0.1 * voxel and r.std() < 0.1 * voxel
    assert np.mean(np.einsum("ij,ij->i", mesh.vertex_normals, mesh.vertices) > 0) > 0.99  # outward
    with pytest.raises(ReconError, match="not crossed"):
        marching_cubes(grid, 100.0)


# =========================================================================================
# Cleanup, filters and files
# =========================================================================================

def test_cleanup_and_decimation(tsdf160, truth160):
    pts, _ = truth160
    mesh = tsdf160.mesh
    junk = Mesh(mesh.vertices[:3] + 50.0, np.array([[0, 1, 2]]), mesh.vertex_colors[:3])
    both = Mesh(np.concatenate([mesh.vertices, junk.vertices]), np.concatenate([mesh.faces, junk.faces + len(mesh.vertices)]),
                np.concatenate([mesh.vertex_colors, junk.vertex_colors]))
    clean = remove_small_components(both)
    assert clean.vertices.max() < 40 and clean.num_faces >= 0.95 * mesh.num_faces
    small = decimate(clean, 20000)
    assert 15000 <= small.num_faces <= 20000 and small.vertex_colors is not None
    assert chamfer_distance(small, pts).relative < 0.004


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_mesh_files_open_in_trimesh_and_open3d_with_colours(small_mesh, tmp_path, suffix):
    import open3d as o3d
    import trimesh

    mesh = small_mesh
    f = write_mesh(tmp_path / f"m{suffix}", mesh)
    t = trimesh.load(f, force="mesh", process=False)
    assert len(t.faces) == mesh.num_faces and t.visual.kind == "vertex"
    np.testing.assert_allclose(np.asarray(t.visual.vertex_colors)[:, :3], mesh.vertex_colors, atol=1)
    o = o3d.io.read_triangle_mesh(str(f))
    assert len(o.triangles) == mesh.num_faces and o.has_vertex_colors()
    back = read_mesh(f)
    assert back.num_faces == mesh.num_faces and back.vertex_colors is not None
    with pytest.raises(ReconError, match="empty"):
        write_mesh(tmp_path / f"empty{suffix}", Mesh(np.zeros((0, 3)), np.zeros((0, 3), int)))
    assert not (tmp_path / f"empty{suffix}").exists()


def test_filters_by_vertex_attribute(rng):
    cloud = PointCloud(rng.normal(size=(100, 3)), None, None, {"instance_id": np.arange(100) % 4})
    assert set(filter_points_by_attribute(cloud, "instance_id", [1, 2]).attributes["instance_id"]) == {1, 2}
    with pytest.raises(ValueError, match="class_id"):
        filter_points_by_attribute(cloud, "class_id", 1)
    v = rng.normal(size=(6, 3))
    m = Mesh(v, np.array([[0, 1, 2], [3, 4, 5]]), attributes={"class_id": np.array([1, 1, 1, 2, 2, 2])})
    one = filter_mesh_by_attribute(m, "class_id", 2)
    assert one.num_faces == 1 and np.allclose(one.vertices, v[3:])


def test_filter_gaussians():
    from recon.io.gaussians import GaussianCloud

    xyz = np.array([[0, 0, 0], [1, 1, 1], [5, 5, 5]], float)
    g = GaussianCloud.from_points(xyz, opacity=0.5)
    g.opacity_logits[1] = -5.0  # opacity 0.0067
    out = filter_gaussians(g, bbox_min=[-2] * 3, bbox_max=[2] * 3, min_opacity=0.05)
    assert len(out) == 1 and np.allclose(out.means, 0)
    with pytest.raises(ReconError, match="none"):
        filter_gaussians(g, bbox_min=[10] * 3, bbox_max=[11] * 3)


# =========================================================================================
# `recon export`
# =========================================================================================

def _recon(*args, cwd=None, timeout: float = 600):
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "recon", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd, check=False)


def test_export_artifact_tsdf_mesh_with_a_report(small, tmp_path):
    out = tmp_path / "mesh.glb"
    res = export_artifact(small, out, ExportOptions(faces=3000, progress=False))
    assert isinstance(res, ExportResult) and res.report_path == tmp_path / "mesh.glb.report.json"
    rep = json.loads(res.report_path.read_text())
    assert rep.pop("version") == 1 and rep == json.loads(json.dumps(res.to_json()))
    assert res.method == "tsdf" and res.faces <= 3000 and res.source_kind == "synthetic dataset"
    assert res.details["tsdf"]["views"] == 8 and res.seconds > 0
    mesh = read_mesh(out)
    assert mesh.num_faces == res.faces and mesh.vertex_colors is not None
    truth = np.concatenate([backproject(v)[0] for v in load_depth_views(small)])
    assert chamfer_distance(mesh, truth).relative < 0.01


def test_export_artifact_dense_points_and_sfm_points(small, tmp_path):
    from recon.io import read_ply

    res = export_artifact(small, tmp_path / "dense.ply", ExportOptions(what="points", voxel=0.05, progress=False))
    dense = read_ply(tmp_path / "dense.ply")
    assert dense.rgb is not None and dense.normals is not None and len(dense) > 3000
    assert res.has_colors and res.has_normals and res.vertices == len(dense)
    res = export_artifact(small / "sparse" / "0", tmp_path / "sfm.ply", ExportOptions(progress=False))
    assert res.method.startswith("SfM points") and res.what == "points"


def test_export_artifact_refuses_bad_input_and_writes_nothing(small, tmp_path):
    import shutil

    from recon.io import write_ply

    # all-NaN depth
    nan = tmp_path / "nan"
    shutil.copytree(small, nan)
    for f in (nan / "depth").glob("*.npy"):
        np.save(f, np.full_like(np.load(f), np.nan))
    with pytest.raises(ReconError, match="empty"):
        export_artifact(nan, tmp_path / "a.ply", ExportOptions(progress=False))
    assert not (tmp_path / "a.ply").exists()
    # a crop box with nothing in it
    with pytest.raises(ReconError, match="crop"):
        export_artifact(small, tmp_path / "b.ply", ExportOptions(what="points", crop=(50, 50, 50, 51, 51, 51),
                                                                 progress=False))
    assert not (tmp_path / "b.ply").exists()
    # a point cloud without colours: refused unless allowed
    write_ply(tmp_path / "grey.ply", PointCloud(np.random.default_rng(0).normal(size=(100, 3))))
    with pytest.raises(ReconError, match="colours"):
        export_artifact(tmp_path / "grey.ply", tmp_path / "c.ply")
    assert not (tmp_path / "c.ply").exists()
    export_artifact(tmp_path / "grey.ply", tmp_path / "c.ply", ExportOptions(allow_no_colors=True))
    assert (tmp_path / "c.ply").exists()
    # options and outputs named in the message
    with pytest.raises(ValueError, match="--output"):
        export_artifact(small, tmp_path / "d.xyz")
    for bad, name in (({"voxel": -1.0}, "--voxel"), ({"faces": 2}, "--faces"), ({"min_views": 0}, "--min-views"),
                      ({"crop": (1, 1, 1, 0, 0, 0)}, "--crop"), ({"what": "cube"}, "--what")):
        with pytest.raises(ValueError, match=name):
            export_artifact(small, tmp_path / "e.ply", ExportOptions(**bad))
    assert not (tmp_path / "e.ply").exists()


def test_cli_bad_input_exits_2_and_writes_nothing(small, tmp_path):
    """The CLI shell: exit 2 with one line for bad input; --no-progress is a hidden alias of -q."""
    r = _recon("export", small, "-o", tmp_path / "b.ply", "--what", "points", "--crop", "50", "50", "50", "51", "51",
               "51", "--no-progress")
    assert r.returncode == 2 and "crop" in r.stderr and len(r.stderr.strip().splitlines()) <= 2, r.stderr
    assert not (tmp_path / "b.ply").exists()
    r = _recon("export", small, "-o", tmp_path / "d.xyz")
    assert r.returncode == 2 and "--output" in r.stderr
    r = _recon("export", small / "sparse" / "0", "-o", tmp_path / "sfm.ply", "-q")
    assert r.returncode == 0 and "recon export: points" in r.stderr, r.stderr
    assert json.loads((tmp_path / "sfm.ply.report.json").read_text())["what"] == "points"


def test_splat_source_needs_a_depth_renderer(tmp_path, rng):
    """recon.export never imports render: a splat output's depth comes from the caller."""
    from recon.export import DepthView
    from recon.io.gaussians import GaussianCloud, write_splat_ply

    data = _write_synth(tmp_path / "s", 64, 48)
    run = tmp_path / "splat"
    run.mkdir()
    write_splat_ply(run / "splat.ply", GaussianCloud.from_points(rng.normal(size=(20, 3)), opacity=0.5))
    (run / "report.json").write_text(json.dumps({"method": "splat", "data_path": str(data)}))
    with pytest.raises(ValueError, match="depth_renderer"):
        export_artifact(run, tmp_path / "m.ply", ExportOptions(progress=False))
    calls = []

    def truth_depth(artifact, *, min_alpha, progress):  # the dataset's true depth stands in for a render
        calls.append((artifact.kind.value, min_alpha, progress))
        return [DepthView(v.camera, v.cam_from_world, v.depth, v.rgb, v.name) for v in load_depth_views(data)]

    res = export_artifact(run, tmp_path / "m.ply", ExportOptions(min_alpha=0.3, progress=False),
                          depth_renderer=truth_depth)
    assert calls == [("splat_output", 0.3, False)] and res.details["tsdf"]["depth_source"] == "rendered splat depth"
    truth = np.concatenate([backproject(v)[0] for v in load_depth_views(data)])
    assert chamfer_distance(read_mesh(tmp_path / "m.ply"), truth).relative < 0.02


def test_import_recon_export_is_light():
    code = ("import sys, recon.export; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'open3d', 'trimesh', 'cv2', 'render'}))")
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_cli_nerf_output_layout(small, tmp_path):
    """A folder laid out as `recon train nerf` writes it (render/nerf/trainer.py docstring):
    depth/<stem>.npy for the dataset's views, density_grid.npz with key 'density' and iso_hint."""
    import shutil

    nerf = tmp_path / "nerf"
    (nerf / "depth").mkdir(parents=True)
    for f in (small / "depth").glob("*.npy"):
        shutil.copy(f, nerf / "depth" / f.name)
    (nerf / "checkpoint.pt").write_bytes(b"")
    (nerf / "report.json").write_text(json.dumps({"method": "nerf", "data_path": str(small)}))
    grid = _sphere_grid()
    np.savez_compressed(nerf / "density_grid.npz", density=grid.grid, bbox_min=grid.bbox_min, bbox_max=grid.bbox_max,
                        iso_hint=25.0)
    res = export_artifact(nerf, tmp_path / "tsdf.ply", ExportOptions(progress=False))
    assert res.source_kind == "NeRF training output" and res.details["tsdf"]["depth_source"] == "NeRF depth maps"
    opts = ExportOptions(method="marching-cubes", progress=False)
    res = export_artifact(nerf, tmp_path / "mc.obj", opts)
    assert res.details["note"].startswith("marching cubes") and not opts.allow_no_colors  # options untouched
    mesh = read_mesh(tmp_path / "mc.obj")
    assert abs(np.linalg.norm(mesh.vertices, axis=1).mean() - 0.6) < 0.01


@pytest.mark.parametrize("name", ["m.ply", "m.obj", "m.glb"])
def test_recon_view_loads_exported_meshes_with_colours(small_mesh, tmp_path, name):
    from viewer.detect import load

    content = load(write_mesh(tmp_path / name, small_mesh))
    assert len(content.mesh.faces) == small_mesh.num_faces and content.mesh.visual.kind == "vertex"


def test_recon_view_loads_exported_points(tmp_path, rng):
    from recon.io import write_ply
    from viewer.detect import load

    cloud = voxel_downsample(PointCloud(rng.normal(size=(500, 3)), rng.integers(0, 255, (500, 3)).astype(np.uint8),
                                        None, {"views": np.full(500, 2, np.int32)}), 0.1)
    content = load(write_ply(tmp_path / "p.ply", cloud))
    assert content.points is not None and content.mesh is None


@pytest.mark.slow
def test_mesh_from_gaussians_trained_on_the_cpu(tmp_path):
    """The issue's bar: splats trained on the CPU (24 views 160x120) -> TSDF of their rendered
    depth: Chamfer < 2 % of the diagonal. A fixed 400 steps (about 60 s on the idle 2-core machine,
    less than the bar's --max-seconds 150) so the work does not depend on the machine's load: under
    a load of 20, 150 s gave 116 steps and 1.36 %, a run with fewer steps 4 %."""
    data = _write_synth(tmp_path / "s160", 160, 120)
    # 400 steps did not finish within 600 s under a load average of 17 on the 2-core box
    r = _recon("train", "splat", data, "-o", tmp_path / "splat", "--steps", "400", "--quiet", timeout=3600)
    assert r.returncode == 0, r.stderr
    r = _recon("export", tmp_path / "splat", "-o", tmp_path / "mesh.ply", "--no-progress")
    assert r.returncode == 0, r.stderr
    truth = np.concatenate([backproject(v)[0] for v in load_depth_views(data)])
    c = chamfer_distance(read_mesh(tmp_path / "mesh.ply"), truth)
    assert c.relative < 0.02, c


def test_export_splat_labels_and_stereo_sources(tmp_path, rng):
    from recon.io import read_ply, write_ply
    from recon.io.gaussians import GaussianCloud, read_splat_ply, write_splat_ply

    # a 3DGS PLY: cropped and opacity-filtered, still a 3DGS PLY
    xyz = rng.uniform(-2, 2, (200, 3))
    g = GaussianCloud.from_points(xyz, opacity=0.5)
    g.opacity_logits[:50] = -6.0
    write_splat_ply(tmp_path / "g.ply", g)
    res = export_artifact(tmp_path / "g.ply", tmp_path / "g_out.ply", ExportOptions(crop=(-1, -1, -1, 1, 1, 1),
                                                                                  min_opacity=0.1))
    assert res.what == "splat" and res.details["gaussians_in"] == 200
    out = read_splat_ply(tmp_path / "g_out.ply")
    want = (np.all(np.abs(xyz) <= 1, axis=1) & (np.arange(200) >= 50)).sum()
    assert len(out) == want and np.all(np.abs(out.means) <= 1)
    # a labelled point cloud: one class by name
    cls = np.where(np.arange(300) < 100, 4, 1).astype(np.int32)  # 4 = chair
    write_ply(tmp_path / "lab.ply", PointCloud(rng.normal(size=(300, 3)), rng.integers(0, 255, (300, 3)).astype(np.uint8),
                                               None, {"class_id": cls}))
    export_artifact(tmp_path / "lab.ply", tmp_path / "chair.ply", ExportOptions(class_name="chair", outlier_std=0))
    assert np.all(read_ply(tmp_path / "chair.ply").attributes["class_id"] == 4) and len(read_ply(tmp_path / "chair.ply")) == 100
    # a `recon stereo` output folder: its points, normals facing the left camera at the origin
    st = tmp_path / "stereo"
    st.mkdir()
    plane = np.c_[rng.uniform(-1, 1, (2000, 2)), np.full(2000, 3.0)]
    write_ply(st / "points.ply", PointCloud(plane.astype(np.float32), np.full((2000, 3), 128, np.uint8)))
    np.save(st / "depth.npy", np.ones((4, 4), np.float32))
    (st / "report.json").write_text("{}")
    res = export_artifact(st, tmp_path / "st.ply")
    assert res.source_kind == "stereo output" and res.what == "points"
    n = read_ply(tmp_path / "st.ply").normals
    assert np.all(n[:, 2] < -0.99)  # facing the camera (which looks along +z)
