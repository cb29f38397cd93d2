"""Point clouds for export: from an SfM model (colours, normals oriented toward the cameras
that see each point, statistical outlier removal), dense clouds fused from posed depth maps
with a multi-view consistency check, voxel down-sampling, cropping and filtering by a
per-point attribute. Everything returns :class:`recon.io.PointCloud` (the one point-cloud type).

NumPy / SciPy; Open3D loads inside :func:`estimate_normals` and :func:`remove_statistical_outliers`.
"""

from __future__ import annotations

import numpy as np

from recon.errors import ReconError
from recon.export.depth import DepthView, backproject, check_depth_views
from recon.io.ply import PointCloud

__all__ = ["crop_points", "estimate_normals", "filter_points_by_attribute", "fuse_depth_points",
           "orient_normals_toward", "points_from_reconstruction", "remove_statistical_outliers",
           "voxel_downsample"]


def _cloud(xyz, rgb=None, normals=None, attributes=None) -> PointCloud:
    return PointCloud(np.asarray(xyz, np.float64), rgb, normals, attributes or {})


def _subset(cloud: PointCloud, keep) -> PointCloud:
    return PointCloud(cloud.xyz[keep], None if cloud.rgb is None else cloud.rgb[keep],
                      None if cloud.normals is None else cloud.normals[keep],
                      {k: a[keep] for k, a in cloud.attributes.items()})


def crop_points(cloud: PointCloud, bbox_min, bbox_max) -> PointCloud:
    """The points inside the axis-aligned box [bbox_min, bbox_max] (world, metres)."""
    lo, hi = np.asarray(bbox_min, float).reshape(3), np.asarray(bbox_max, float).reshape(3)
    if not np.all(hi > lo):
        raise ValueError(f"bbox_min, bbox_max: expected min < max on every axis, got {lo.tolist()}, {hi.tolist()}")
    return _subset(cloud, np.all((cloud.xyz >= lo) & (cloud.xyz <= hi), axis=1))


def filter_points_by_attribute(cloud: PointCloud, name: str, values) -> PointCloud:
    """The points whose ``attributes[name]`` is one of ``values`` (the per-object export:
    ``instance_id`` K, or the ``class_id`` of a class name)."""
    if name not in cloud.attributes:
        raise ValueError(f"name: the point cloud has no attribute {name!r} (has: {sorted(cloud.attributes)})")
    return _subset(cloud, np.isin(cloud.attributes[name], np.atleast_1d(np.asarray(values))))


def voxel_downsample(cloud: PointCloud, voxel: float) -> PointCloud:
    """One point per occupied voxel of size ``voxel`` (metres): the mean position, mean colour
    and re-normalised mean normal of its points; integer attributes take the most common value
    (first point's on ties), float attributes the mean."""
    if not (np.isfinite(voxel) and voxel > 0):
        raise ValueError(f"voxel: expected a positive size in metres, got {voxel!r}")
    if len(cloud) == 0:
        return cloud
    k = np.floor((cloud.xyz - cloud.xyz.min(0)) / voxel).astype(np.int64)
    dims = k.max(0) + 1
    code = (k[:, 0] * dims[1] + k[:, 1]) * dims[2] + k[:, 2]
    _, inv, counts = np.unique(code, return_inverse=True, return_counts=True)
    m = len(counts)

    def mean(a):
        out = np.zeros((m,) + a.shape[1:])
        np.add.at(out, inv, a.astype(np.float64))
        return out / counts.reshape((-1,) + (1,) * (a.ndim - 1))

    xyz = mean(cloud.xyz).astype(cloud.xyz.dtype)
    rgb = None if cloud.rgb is None else np.clip(np.rint(mean(cloud.rgb)), 0, 255).astype(np.uint8)
    nrm = None
    if cloud.normals is not None:
        nrm = mean(cloud.normals)
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
        nrm = nrm.astype(cloud.normals.dtype)
    attrs = {}
    for name, a in cloud.attributes.items():
        if a.dtype.kind == "f":
            attrs[name] = mean(a).astype(a.dtype)
        else:  # majority vote per voxel
            vals, vinv = np.unique(a, return_inverse=True)
            votes = np.zeros((m, len(vals)), np.int64)
            np.add.at(votes, (inv, vinv), 1)
            attrs[name] = vals[votes.argmax(1)].astype(a.dtype)
    return PointCloud(xyz, rgb, nrm, attrs)


def remove_statistical_outliers(cloud: PointCloud, *, neighbours: int = 20, std_ratio: float = 2.0) -> PointCloud:
    """Drop points whose mean distance to their ``neighbours`` nearest points exceeds the
    cloud's mean by more than ``std_ratio`` standard deviations (PCL / Open3D's statistical
    outlier removal)."""
    if len(cloud) <= neighbours:
        return cloud
    from scipy.spatial import cKDTree

    d, _ = cKDTree(cloud.xyz).query(cloud.xyz, k=neighbours + 1, workers=-1)
    mean_d = d[:, 1:].mean(1)
    return _subset(cloud, mean_d <= mean_d.mean() + std_ratio * mean_d.std())


def estimate_normals(xyz, *, neighbours: int = 30, radius: float | None = None) -> np.ndarray:
    """[N, 3] unit normals from local PCA (Open3D hybrid KNN / radius search); their sign is
    arbitrary: orient them with :func:`orient_normals_toward`."""
    import open3d as o3d

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, np.float64)))
    if radius is None:
        pc.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(neighbours))
    else:
        pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius, neighbours))
    return np.asarray(pc.normals, np.float64)


def orient_normals_toward(xyz, normals, viewpoints) -> np.ndarray:
    """Flip each normal so it faces its viewpoint: ``viewpoints`` [N, 3] (per point, e.g. the
    mean centre of the cameras that see it) or [3] (one for all)."""
    p = np.asarray(xyz, np.float64)
    n = np.asarray(normals, np.float64).copy()
    c = np.broadcast_to(np.asarray(viewpoints, np.float64), p.shape)
    flip = np.einsum("ij,ij->i", n, c - p) < 0
    n[flip] *= -1
    return n


def points_from_reconstruction(rec, *, outlier_std: float | None = 2.0, neighbours: int = 20,
                               min_track_length: int = 2) -> PointCloud:
    """An SfM model's 3D points with their colours, normals (local PCA) oriented toward the
    mean centre of the cameras that observe each point, attribute ``error`` (reprojection px)
    and ``track_length``; statistical outliers removed (``outlier_std`` None: kept)."""
    ids = [i for i, p in rec.points3D.items() if len(p.track) >= min_track_length]
    if not ids:
        raise ReconError(f"model: no 3D points observed in >= {min_track_length} images")
    pts = [rec.points3D[i] for i in ids]
    xyz = np.array([p.xyz for p in pts], np.float64)
    rgb = np.array([p.rgb for p in pts], np.uint8)
    centres = {iid: im.center for iid, im in rec.images.items() if im.registered}
    view = np.zeros_like(xyz)
    for j, p in enumerate(pts):
        cs = [centres[i] for i in p.track[:, 0] if i in centres]
        view[j] = np.mean(cs, axis=0) if cs else xyz[j] + np.array([0, 0, 1.0])
    attrs = {"error": np.array([p.error for p in pts], np.float32),
             "track_length": np.array([len(p.track) for p in pts], np.int32)}
    normals = orient_normals_toward(xyz, estimate_normals(xyz, neighbours=max(neighbours, 8)), view)
    cloud = PointCloud(xyz, rgb, normals, attrs)
    if outlier_std is not None:
        cloud = remove_statistical_outliers(cloud, neighbours=neighbours, std_ratio=outlier_std)
    return cloud


def _depth_normals(view: DepthView, max_jump: float = 0.05) -> np.ndarray:
    """[H, W, 3] camera-frame normals from the depth map's neighbours (central differences),
    facing the camera; NaN where a neighbour is missing or a depth edge is crossed (the
    neighbours' depths differ by more than ``max_jump`` of the depth: the cross product of
    differences spanning two surfaces is meaningless)."""
    cam = view.camera
    d = np.where(view.valid, view.depth, np.nan).astype(np.float64)
    (fx, fy), (cx, cy) = cam.focal, cam.principal_point
    u, v = np.meshgrid(np.arange(cam.width), np.arange(cam.height))
    P = np.stack([(u - cx) / fx * d, (v - cy) / fy * d, d], -1)
    du = np.full_like(P, np.nan)
    dv = np.full_like(P, np.nan)
    du[:, 1:-1] = P[:, 2:] - P[:, :-2]
    dv[1:-1] = P[2:] - P[:-2]
    with np.errstate(invalid="ignore"):
        edge = (np.abs(du[..., 2]) > max_jump * d) | (np.abs(dv[..., 2]) > max_jump * d)
    du[edge] = np.nan
    n = np.cross(du, dv)
    with np.errstate(invalid="ignore", divide="ignore"):
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
    flip = np.einsum("hwc,hwc->hw", n, P) > 0
    n[flip] *= -1
    return n


def fuse_depth_points(views: list[DepthView], *, min_views: int = 2, rel_tol: float = 0.01, stride: int = 1,
                      progress: bool = False) -> PointCloud:
    """Dense coloured, oriented points from posed depth maps, kept where the depth agrees with
    at least ``min_views`` views in total (itself included): a point of view i counts view j
    when it projects inside j with ``|z_j - depth_j(pixel)| <= rel_tol * z_j``. Normals from the
    depth maps' neighbours, facing the camera; attribute ``views`` = the agreeing-view count.
    Pinhole cameras only (undistort first: :func:`recon.export.undistort_depth_view`)."""
    from recon.export.depth import undistort_depth_view

    views = [undistort_depth_view(v) for v in check_depth_views(views)]
    if isinstance(min_views, bool) or not isinstance(min_views, (int, np.integer)) or min_views < 1:
        raise ValueError(f"min_views: expected an integer >= 1, got {min_views!r}")
    if min_views > len(views):
        raise ValueError(f"min_views: {min_views} exceeds the number of views ({len(views)})")
    it = range(len(views))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="dense points", unit="view")
    xyz_all, rgb_all, nrm_all, cnt_all = [], [], [], []
    for i in it:
        vi = views[i]
        p, rgb, index = backproject(vi, stride=stride)
        if not len(p):
            continue
        count = np.ones(len(p), np.int32)
        for j, vj in enumerate(views):
            if j == i:
                continue
            pc = vj.cam_from_world.apply(p)
            (fx, fy), (cx, cy) = vj.camera.focal, vj.camera.principal_point
            with np.errstate(divide="ignore", invalid="ignore"):
                u = np.rint(fx * pc[:, 0] / pc[:, 2] + cx)
                v = np.rint(fy * pc[:, 1] / pc[:, 2] + cy)
            ok = (pc[:, 2] > 0) & (u >= 0) & (u < vj.camera.width) & (v >= 0) & (v < vj.camera.height)
            dj = np.zeros(len(p), np.float64)
            dj[ok] = vj.depth[v[ok].astype(np.int64), u[ok].astype(np.int64)]
            count += (ok & np.isfinite(dj) & (np.abs(dj - pc[:, 2]) <= rel_tol * pc[:, 2])).astype(np.int32)
        keep = count >= min_views
        n_cam = _depth_normals(vi).reshape(-1, 3)[index]
        n_world = n_cam @ vi.cam_from_world.rotation  # R^T n
        keep &= np.all(np.isfinite(n_world), axis=1)
        xyz_all.append(p[keep])
        nrm_all.append(n_world[keep])
        cnt_all.append(count[keep])
        if rgb is not None:
            rgb_all.append(rgb[keep])
    if not xyz_all or not sum(len(x) for x in xyz_all):
        raise ReconError(f"views: no depth is consistent across {min_views} views (rel_tol {rel_tol})")
    rgb = np.concatenate(rgb_all) if len(rgb_all) == len(xyz_all) else None
    return PointCloud(np.concatenate(xyz_all), rgb, np.concatenate(nrm_all), {"views": np.concatenate(cnt_all)})
