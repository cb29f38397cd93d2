"""TSDF fusion of posed depth maps (Curless & Levoy 1996; Newcombe et al. 2011, KinectFusion)
into a triangle mesh with vertex colours, on Open3D's sparse tensor ``VoxelBlockGrid``.

The volume needs no hand-set box: :func:`auto_volume` takes the bounds from the back-projected
depth (robust percentiles, padded) and the voxel size from the depth sampling (the median pixel
footprint on the surface, times ``footprint_factor``), capped so the volume holds at most
``max_voxels_per_axis`` voxels along its longest side. Memory grows with the observed surface,
not with the box (voxel blocks are allocated only where depth lands). ``ScalableTSDFVolume`` of
open3d 0.20.0 returns empty meshes, so it is not used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from recon.errors import ReconError
from recon.export.depth import DepthView, backproject, check_depth_views, undistort_depth_view
from recon.export.mesh import Mesh, crop_mesh
from recon.io.colmap import PIXEL_SHIFT

__all__ = ["TSDFOptions", "TSDFResult", "VolumeSpec", "auto_volume", "fuse_tsdf"]


@dataclass(frozen=True)
class VolumeSpec:
    """The fusion volume: axis-aligned box ``bbox_min`` / ``bbox_max`` [3] (world, metres),
    ``voxel_size`` (metres) and ``truncation`` (metres, the TSDF band half-width)."""

    bbox_min: np.ndarray
    bbox_max: np.ndarray
    voxel_size: float
    truncation: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(x) for x in np.ceil((self.bbox_max - self.bbox_min) / self.voxel_size))


@dataclass(frozen=True)
class TSDFOptions:
    """Options of :func:`fuse_tsdf` (None = chosen from the data by :func:`auto_volume`).

    voxel_size: metres. truncation: metres (default ``truncation_voxels`` voxels).
    bbox_min / bbox_max: [3] world box (default: the depth's 0.5-99.5 percentile box padded by
    ``padding`` of its size). depth_max: ignore depth beyond this (metres). footprint_factor:
    voxel = this many median pixel footprints. max_voxels_per_axis: cap on the box's longest
    side in voxels (bounds memory and time). min_weight: drop surface vertices whose fused
    weight (number of observations) is below this. normal_smoothing: 1-ring averaging passes
    over the vertex normals (geometry unchanged; on the 24-view 160x120 scene the share of
    normals facing their cameras goes from 94.5 % to 98.1 % with 5 passes). device: Open3D device.
    """

    voxel_size: float | None = None
    truncation: float | None = None
    truncation_voxels: float = 4.0
    bbox_min: tuple[float, float, float] | None = None
    bbox_max: tuple[float, float, float] | None = None
    padding: float = 0.02
    depth_max: float | None = None
    footprint_factor: float = 1.5
    max_voxels_per_axis: int = 1024
    min_weight: float = 1.0
    normal_smoothing: int = 5
    device: str = "CPU:0"

    def validate(self) -> None:
        for name in ("voxel_size", "truncation", "depth_max"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name}: expected a positive number of metres, got {v!r}")
        if (self.bbox_min is None) != (self.bbox_max is None):
            raise ValueError("bbox_min, bbox_max: give both or neither")
        if self.bbox_min is not None and not np.all(np.asarray(self.bbox_max) > np.asarray(self.bbox_min)):
            raise ValueError(f"bbox_min, bbox_max: expected min < max on every axis, got {self.bbox_min}, "
                             f"{self.bbox_max}")
        if self.max_voxels_per_axis < 16:
            raise ValueError(f"max_voxels_per_axis: expected >= 16, got {self.max_voxels_per_axis}")


@dataclass
class TSDFResult:
    """The fused mesh (vertex colours when the views had images, normals out of the surface),
    the volume used, and timings (seconds; ``integrate_s`` over ``megapixels`` of depth)."""

    mesh: Mesh
    volume: VolumeSpec
    block_count: int
    integrate_s: float
    extract_s: float
    megapixels: float


def auto_volume(views: list[DepthView], options: TSDFOptions = TSDFOptions()) -> VolumeSpec:
    """Bounds and voxel size from the depth maps (see the module docstring); the options'
    explicit values win."""
    options.validate()
    views = check_depth_views(views)
    pts, foot = [], []
    for v in views:
        stride = max(1, int(np.sqrt(v.camera.width * v.camera.height / 5000)))
        p_cam, _, _ = backproject(v, stride=stride, world=False)
        if options.depth_max is not None:
            p_cam = p_cam[p_cam[:, 2] <= options.depth_max]
        if not len(p_cam):
            continue
        pts.append(v.cam_from_world.inverse().apply(p_cam))
        foot.append(p_cam[:, 2] / float(np.mean(v.camera.focal)))
    if not pts:
        raise ReconError("views: no depth within depth_max")
    if options.bbox_min is not None:
        lo, hi = np.asarray(options.bbox_min, float), np.asarray(options.bbox_max, float)
    else:
        lo, hi = _supported_bounds(pts, min(2, len(pts)))
        pad = options.padding * (hi - lo) + 1e-6
        lo, hi = lo - pad, hi + pad
    if options.voxel_size is not None:
        voxel = float(options.voxel_size)
    else:
        voxel = options.footprint_factor * float(np.median(np.concatenate(foot)))
        voxel = max(voxel, float(np.max(hi - lo)) / options.max_voxels_per_axis)
    trunc = float(options.truncation) if options.truncation is not None else options.truncation_voxels * voxel
    return VolumeSpec(lo, hi, voxel, trunc)


def _cell_codes(points: np.ndarray, cell: float, origin: np.ndarray, dims: np.ndarray) -> np.ndarray:
    k = np.clip(np.floor((points - origin) / cell).astype(np.int64), 0, dims - 1)
    return (k[:, 0] * dims[1] + k[:, 1]) * dims[2] + k[:, 2]


def _supported_bounds(points_per_view: list[np.ndarray], min_views: int) -> tuple[np.ndarray, np.ndarray]:
    """Box of the points that fall in coarse cells (1/64 of the 1-99 percentile box) seen by
    at least ``min_views`` views: a flying pixel or a far background seen once does not
    stretch the box, while the real extremes (a wall's top edge) are kept."""
    allp = np.concatenate(points_per_view)
    lo, hi = np.percentile(allp, 1, axis=0), np.percentile(allp, 99, axis=0)
    cell = max(float(np.max(hi - lo)) / 64.0, 1e-9)
    origin = allp.min(0)
    dims = np.floor((allp.max(0) - origin) / cell).astype(np.int64) + 1
    per_view = [np.unique(_cell_codes(p, cell, origin, dims)) for p in points_per_view]
    codes, counts = np.unique(np.concatenate(per_view), return_counts=True)
    good = codes[counts >= min_views]
    if not len(good):
        return allp.min(0), allp.max(0)
    kept = allp[np.isin(_cell_codes(allp, cell, origin, dims), good)]
    return kept.min(0), kept.max(0)


def _block_count(views: list[DepthView], spec: VolumeSpec, block_voxels: int) -> int:
    """Voxel blocks the fusion will touch: blocks hit by back-projected depth (subsampled),
    dilated for the truncation band, with head-room (the hash map does not grow on CPU)."""
    block = spec.voxel_size * block_voxels
    dims = np.ceil((spec.bbox_max - spec.bbox_min) / block).astype(np.int64) + 1
    codes = []
    for v in views:
        stride = max(1, int(np.sqrt(v.camera.width * v.camera.height / 20000)))
        p, _, _ = backproject(v, stride=stride)
        codes.append(np.unique(_cell_codes(p, block, spec.bbox_min, dims)))
    n = len(np.unique(np.concatenate(codes)))
    band = 1 + 2 * int(np.ceil(spec.truncation / block))
    return int(min(4_000_000, max(4096, 2 * n * band)))


def fuse_tsdf(views: list[DepthView], options: TSDFOptions = TSDFOptions(), *, progress: bool = False) -> TSDFResult:
    """Fuse ``views`` into a TSDF and extract its zero level set as a mesh, cropped to the
    volume box. Distorted cameras are resampled to pinhole first. Raises ReconError when every
    depth map is empty or the surface falls outside the box."""
    import open3d as o3d
    import open3d.core as o3c

    views = check_depth_views(views)
    spec = auto_volume(views, options)
    dev = o3c.Device(options.device)
    has_rgb = all(v.rgb is not None for v in views)
    names = ("tsdf", "weight", "color") if has_rgb else ("tsdf", "weight")
    dtypes = (o3c.float32,) * len(names)
    channels = ((1), (1), (3)) if has_rgb else ((1), (1))
    block_res = 8
    block_count = _block_count(views, spec, block_res)
    vbg = o3d.t.geometry.VoxelBlockGrid(names, dtypes, channels, voxel_size=spec.voxel_size,
                                        block_resolution=block_res, block_count=block_count, device=dev)
    depth_max = options.depth_max if options.depth_max is not None else \
        float(np.linalg.norm(spec.bbox_max - spec.bbox_min)) * 2.0
    it = views
    if progress:
        from tqdm import tqdm

        it = tqdm(views, desc="TSDF fusion", unit="view")
    t0 = time.perf_counter()
    mp = 0.0
    for v in it:
        v = undistort_depth_view(v)
        d = np.where(v.valid, v.depth, 0.0).astype(np.float32)
        if not d.any():
            continue
        mp += d.size / 1e6
        K = v.camera.K
        # Open3D's tensor integration takes the pixel of a projected voxel as int(u) (the pixel
        # corner convention, like COLMAP's): shift the principal point at this edge. Measured on
        # the 24-view 160x120 scene: Chamfer 0.158 % of the diagonal without it, 0.095 % with it.
        K[0, 2] += PIXEL_SHIFT
        K[1, 2] += PIXEL_SHIFT
        K = o3c.Tensor(K, o3c.float64)
        T = o3c.Tensor(v.cam_from_world.matrix(), o3c.float64)
        depth = o3d.t.geometry.Image(o3c.Tensor(d)).to(dev)
        blocks = vbg.compute_unique_block_coordinates(depth, K, T, depth_scale=1.0, depth_max=depth_max,
                                                      trunc_voxel_multiplier=spec.truncation / spec.voxel_size)
        if has_rgb:
            color = o3d.t.geometry.Image(o3c.Tensor(v.rgb.astype(np.float32) / 255.0)).to(dev)
            vbg.integrate(blocks, depth, color, K, K, T, depth_scale=1.0, depth_max=depth_max,
                          trunc_voxel_multiplier=spec.truncation / spec.voxel_size)
        else:
            vbg.integrate(blocks, depth, K, T, depth_scale=1.0, depth_max=depth_max,
                          trunc_voxel_multiplier=spec.truncation / spec.voxel_size)
    t1 = time.perf_counter()
    tm = vbg.extract_triangle_mesh(weight_threshold=float(options.min_weight)).to_legacy()
    mesh = crop_mesh(Mesh.from_open3d(tm), spec.bbox_min, spec.bbox_max).compute_vertex_normals()
    if options.normal_smoothing and mesh.num_faces:
        mesh = mesh.smooth_vertex_normals(options.normal_smoothing)
    t2 = time.perf_counter()
    if mesh.num_faces == 0:
        raise ReconError("views: TSDF fusion produced no surface inside the volume "
                         f"[{np.round(spec.bbox_min, 3).tolist()} .. {np.round(spec.bbox_max, 3).tolist()}]")
    if not has_rgb:
        mesh.vertex_colors = None
    return TSDFResult(mesh, spec, block_count, t1 - t0, t2 - t1, mp)
