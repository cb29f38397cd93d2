"""`recon export` as a library function: :func:`export_artifact` turns the output of any stage
into a mesh, a point cloud or a cleaned 3DGS PLY, writes it and its ``FILE.report.json``, and
returns an :class:`ExportResult`.

What each source gives by default (``ExportOptions.what`` / ``method`` change it):

=========================================  =================================================
synthetic dataset, folder with ``depth/``  mesh: TSDF fusion of the depth maps
splat training output                      mesh: TSDF of depth rendered for the training
                                           cameras (by the caller's ``depth_renderer``)
NeRF training output                       mesh: TSDF of its ``depth/`` maps
SfM output / COLMAP model / transforms     points: SfM points, normals toward the cameras
stereo output                              points: its points.ply (mesh: Poisson)
point cloud PLY                            points (mesh: Poisson)
mesh                                       mesh: cleaned / decimated / converted
3DGS splat PLY                             splat: cropped, opacity filtered
=========================================  =================================================

This package never imports ``render``: depth of a trained splat model comes from a
:class:`DepthRenderer` the caller hands in (``render.splat.render_depth_views``). Inputs are
never modified.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from recon.errors import FormatError, ReconError

__all__ = ["EXPORT_METHODS", "EXPORT_WHATS", "DepthRenderer", "ExportOptions", "ExportResult",
           "export_artifact"]

EXPORT_WHATS = ("points", "mesh", "splat")
EXPORT_METHODS = ("tsdf", "poisson", "marching-cubes")
OUTPUT_SUFFIXES = (".ply", ".obj", ".glb")


class DepthRenderer(Protocol):
    """Renders depth (and colour) of a trained splat output for its training cameras.

    ``artifact``: a :class:`recon.io.Artifact` of kind ``SPLAT_OUTPUT``; ``min_alpha``: pixels
    whose accumulated opacity is below it get depth 0 (invalid). Returns
    :class:`recon.export.DepthView` s (depth [H, W] float32 metres along z, rgb [H, W, 3] uint8).
    """

    def __call__(self, artifact, *, min_alpha: float, progress: bool) -> list: ...


@dataclass(frozen=True)
class ExportOptions:
    """Options of :func:`export_artifact` (the flags of `recon export`).

    what:             "points" | "mesh" | "splat" | None (None: the source's default)
    method:           mesher "tsdf" | "poisson" | "marching-cubes" | None (tsdf for depth
                      sources, else poisson)
    crop:             (xmin, ymin, zmin, xmax, ymax, zmax) world box in metres, or None
    voxel:            metres: TSDF voxel, or point down-sampling (None: automatic / none)
    faces:            decimate the mesh to about this many faces (None: keep)
    min_component:    drop mesh pieces smaller than this fraction of the largest (0 keeps all)
    min_views:        dense points: depth must agree with this many views
    depth_max:        ignore depth beyond this many metres (None: no limit)
    min_alpha:        rendered splat depth: ignore pixels with opacity below this
    min_opacity:      what="splat": drop Gaussians with opacity below this
    poisson_depth:    Poisson octree depth
    density_quantile: Poisson: trim vertices below this density quantile
    level:            marching-cubes iso level (None: the grid's iso_hint, else its mean)
    outlier_std:      points: statistical outlier removal at this many std (0: off)
    instance:         keep instance_id == instance only (labelled sources)
    class_name:       keep one class, by name (recon.synth.CLASS_NAMES) or id as text
    allow_no_colors:  accept a source without colours (else ReconError)
    progress:         progress bars on stderr
    """

    what: str | None = None
    method: str | None = None
    crop: tuple[float, float, float, float, float, float] | None = None
    voxel: float | None = None
    faces: int | None = None
    min_component: float = 0.0002
    min_views: int = 2
    depth_max: float | None = None
    min_alpha: float = 0.5
    min_opacity: float = 0.0
    poisson_depth: int = 9
    density_quantile: float = 0.05
    level: float | None = None
    outlier_std: float = 2.0
    instance: int | None = None
    class_name: str | None = None
    allow_no_colors: bool = False
    progress: bool = True

    def validate(self) -> None:
        """ValueError naming the option (by its CLI spelling) when one is out of range."""
        if self.what is not None and self.what not in EXPORT_WHATS:
            raise ValueError(f"--what: expected one of {', '.join(EXPORT_WHATS)}, got {self.what!r}")
        if self.method is not None and self.method not in EXPORT_METHODS:
            raise ValueError(f"--method: expected one of {', '.join(EXPORT_METHODS)}, got {self.method!r}")
        if self.voxel is not None and not (np.isfinite(self.voxel) and self.voxel > 0):
            raise ValueError(f"--voxel: expected a positive size in metres, got {self.voxel}")
        if self.faces is not None and self.faces < 4:
            raise ValueError(f"--faces: expected at least 4, got {self.faces}")
        if self.min_views < 1:
            raise ValueError(f"--min-views: expected >= 1, got {self.min_views}")
        self.crop_box()

    def crop_box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(lo [3], hi [3]) of ``crop``, or None."""
        if self.crop is None:
            return None
        if len(self.crop) != 6:
            raise ValueError(f"--crop: expected 6 numbers XMIN YMIN ZMIN XMAX YMAX ZMAX, got {list(self.crop)}")
        lo, hi = np.array(self.crop[:3], float), np.array(self.crop[3:], float)
        if not np.all(hi > lo):
            raise ValueError(f"--crop: expected XMIN YMIN ZMIN < XMAX YMAX ZMAX, got {list(self.crop)}")
        return lo, hi


@dataclass
class ExportResult:
    """What :func:`export_artifact` wrote. ``details`` holds the method's figures (``tsdf``,
    ``poisson``, ``level``, ``note``, ``outliers_removed``, ``gaussians_in``, ``min_opacity``)."""

    source: Path
    source_kind: str
    what: str
    output: Path
    method: str
    vertices: int
    faces: int
    bbox_min: list[float]
    bbox_max: list[float]
    has_colors: bool | None = None
    has_normals: bool | None = None
    seconds: float = 0.0
    report_path: Path | None = None
    details: dict = field(default_factory=dict)

    @property
    def format(self) -> str:
        return self.output.suffix.lower()[1:]

    def to_json(self) -> dict:
        """The ``FILE.report.json`` document."""
        doc = {"verb": "export", "source": str(self.source), "source_kind": self.source_kind, "what": self.what,
               "output": str(self.output), "format": self.format, **self.details, "method": self.method,
               "vertices": self.vertices, "faces": self.faces, "bbox_min": list(self.bbox_min),
               "bbox_max": list(self.bbox_max)}
        if self.has_colors is not None:
            doc["has_colors"] = self.has_colors
        if self.has_normals is not None:
            doc["has_normals"] = self.has_normals
        doc["seconds"] = self.seconds
        return doc


@dataclass
class _Job:
    """One export in progress: the resolved inputs and the figures gathered on the way."""

    source: Path
    art: object  # recon.io.Artifact
    options: ExportOptions
    crop: tuple[np.ndarray, np.ndarray] | None
    depth_renderer: DepthRenderer | None
    log: Callable[[str], None]
    details: dict = field(default_factory=dict)
    colors_optional: bool = False


def _log_default(msg: str) -> None:
    print(f"[export] {msg}", file=sys.stderr)


def export_artifact(source, output, options: ExportOptions | None = None, *,
                    depth_renderer: DepthRenderer | None = None,
                    log: Callable[[str], None] | None = None) -> ExportResult:
    """Export ``source`` (any path :func:`recon.io.detect` knows) to ``output`` (.ply, .obj or
    .glb) and write ``output.report.json`` beside it (recon.io.report.write_report).

    depth_renderer: needed only for a splat training output exported as a mesh or dense points.
    Raises ValueError naming the option for bad options, FormatError naming the source when it
    cannot give what is asked, ReconError when the result would be empty (nothing is written).
    """
    from recon.io.detect import detect
    from recon.io.report import write_report

    t0 = time.perf_counter()
    opts = options or ExportOptions()
    opts.validate()
    source, out = Path(source), Path(output)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"-o/--output: unknown format {suffix or '(no extension)'!r}; use .ply, .obj or .glb")
    out.parent.mkdir(parents=True, exist_ok=True)
    art = detect(source)
    job = _Job(source, art, opts, opts.crop_box(), depth_renderer, log or _log_default)
    what = opts.what or _default_what(job)
    if what in ("points", "splat") and suffix != ".ply":
        raise ValueError(f"-o/--output: {'point clouds' if what == 'points' else '3DGS splats'} are written as "
                         f".ply, got {out.suffix!r}")
    job.log(f"{source} is a {art.kind.label}: exporting {what}")
    if what == "splat":
        result = _export_splat(job, out)
    elif what == "points":
        result = _export_points(job, out)
    else:
        result = _export_mesh(job, out)
    result.source, result.source_kind, result.what = source, art.kind.label, what
    result.details = job.details
    result.seconds = round(time.perf_counter() - t0, 3)
    result.report_path = out.with_name(out.name + ".report.json")
    write_report(result.report_path, result.to_json())
    return result


def _default_what(job: _Job) -> str:
    from recon.io.detect import Kind

    if job.art.kind == Kind.SPLAT_PLY:
        return "splat"
    if job.art.kind == Kind.MESH or _has_depth(job.art) or job.options.method is not None:
        return "mesh"  # a method names a mesher
    return "points"


def _has_depth(art) -> bool:
    from recon.io.detect import Kind

    if art.kind in (Kind.SPLAT_OUTPUT, Kind.SYNTH_DATASET):
        return True
    if art.kind == Kind.NERF_OUTPUT:
        return (art.path / "depth").is_dir()
    return art.kind != Kind.STEREO_OUTPUT and art.path.is_dir() and (art.path / "depth").is_dir()


def _depth_views(job: _Job):
    """(views, words for the report) of a depth source."""
    from recon.export.depth import load_depth_views
    from recon.io.detect import Kind

    art = job.art
    if art.kind == Kind.SPLAT_OUTPUT:
        if job.depth_renderer is None:
            raise ValueError("depth_renderer: a splat training output needs one to render depth "
                             "(render.splat.render_depth_views)")
        if art.data_path is None or not Path(art.data_path).exists():
            raise FormatError(art.path, "report.json names no dataset (data_path) whose cameras to render depth from")
        views = job.depth_renderer(art, min_alpha=job.options.min_alpha, progress=job.options.progress)
        return views, "rendered splat depth"
    if art.kind == Kind.NERF_OUTPUT:
        if art.data_path is None:
            raise FormatError(art.path, "report.json names no dataset (data_path): the cameras of depth/ are unknown")
        return load_depth_views(art.path, depth_dir=art.path / "depth", model_path=art.data_path), "NeRF depth maps"
    return load_depth_views(art.path), "depth maps"


def _require_colors(job: _Job, has: bool) -> None:
    if not has and not (job.options.allow_no_colors or job.colors_optional):
        raise ReconError(f"{job.source}: the source has no colours (pass --no-colors to export without them)")


def _write(out: Path, write) -> None:
    from recon.io.files import atomic_write

    atomic_write(out, write)  # a failure leaves no partial file and an existing file intact


# ---- splat ------------------------------------------------------------------------------
def _export_splat(job: _Job, out: Path) -> ExportResult:
    from recon.export.splat import filter_gaussians
    from recon.io.detect import Kind
    from recon.io.gaussians import read_splat_ply, write_splat_ply

    if job.art.kind not in (Kind.SPLAT_OUTPUT, Kind.SPLAT_PLY):
        raise FormatError(str(job.source), f"is a {job.art.kind.label}; --what splat needs a splat training "
                                           "output or a 3DGS PLY")
    g = read_splat_ply(job.art.ply)
    crop = job.crop
    kept = filter_gaussians(g, bbox_min=None if crop is None else crop[0], bbox_max=None if crop is None else crop[1],
                            min_opacity=job.options.min_opacity)
    _write(out, lambda p: write_splat_ply(p, kept))
    job.details.update(gaussians_in=len(g), min_opacity=job.options.min_opacity)
    return ExportResult(job.source, "", "splat", out, "3DGS filter", len(kept), 0,
                        kept.means.min(0).tolist(), kept.means.max(0).tolist())


# ---- points -----------------------------------------------------------------------------
def _export_points(job: _Job, out: Path) -> ExportResult:
    from recon.io import write_ply

    cloud, method = _points(job)
    _require_colors(job, cloud.rgb is not None)
    _write(out, lambda p: write_ply(p, cloud, comments=(f"recon export: {method}",)))
    lo, hi = cloud.bounds()
    return ExportResult(job.source, "", "points", out, method, len(cloud), 0, lo.tolist(), hi.tolist(),
                        has_colors=cloud.rgb is not None, has_normals=cloud.normals is not None)


def _source_points(job: _Job):
    """(PointCloud, method) of the source, before filtering."""
    from recon.export.points import (
        estimate_normals,
        fuse_depth_points,
        orient_normals_toward,
        points_from_reconstruction,
    )
    from recon.io import read_model, read_ply
    from recon.io.detect import Kind

    art, source = job.art, job.source
    if art.kind == Kind.STEREO_OUTPUT:  # points.ply in the original left camera frame (centre at 0)
        cloud = read_ply(art.ply)
        cloud.xyz = cloud.xyz.astype(np.float64)
        if len(cloud) >= 8:
            cloud.normals = orient_normals_toward(cloud.xyz, estimate_normals(cloud.xyz), np.zeros(3))
        return cloud, "stereo points, normals toward the left camera"
    if _has_depth(art):
        views, what = _depth_views(job)
        cloud = fuse_depth_points(views, min_views=job.options.min_views, progress=job.options.progress)
        return cloud, f"{what} fused, >= {job.options.min_views} consistent views"
    if art.kind in (Kind.SFM_OUTPUT, Kind.COLMAP_MODEL, Kind.TRANSFORMS):
        rec = read_model(art.model_dir or art.transforms or art.path)
        if not rec.points3D and art.ply is not None:
            return read_ply(art.ply), "points.ply"
        cloud = points_from_reconstruction(rec, outlier_std=None)
        if np.all(cloud.rgb == 0):
            cloud.rgb = None  # a model written without colours
        return cloud, "SfM points, normals toward their cameras"
    if art.kind == Kind.POINT_CLOUD:
        cloud = read_ply(art.ply)
        cloud.xyz = cloud.xyz.astype(np.float64)
        return cloud, "point cloud"
    if art.kind == Kind.NERF_OUTPUT:
        raise FormatError(source, "is a NeRF training output without depth maps (trained with --no-depth): "
                                  "use --method marching-cubes (its density grid) or retrain without --no-depth")
    raise FormatError(source, f"is a {art.kind.label}; --what points needs depth maps, an SfM model or a "
                              "point cloud")


def _points(job: _Job):
    """(PointCloud, method): the source's points, label-filtered, cropped, cleaned."""
    from recon.export.points import crop_points, remove_statistical_outliers, voxel_downsample

    opts = job.options
    cloud, method = _source_points(job)
    cloud = _label_filter(opts, cloud, "points")
    if job.crop is not None:
        cloud = crop_points(cloud, *job.crop)
        if len(cloud) == 0:
            raise ReconError(f"--crop: the box {list(opts.crop)} contains none of the points; nothing written")
    if opts.outlier_std and opts.outlier_std > 0 and len(cloud) > 20:
        n0 = len(cloud)
        cloud = remove_statistical_outliers(cloud, std_ratio=opts.outlier_std)
        job.details["outliers_removed"] = n0 - len(cloud)
    if opts.voxel is not None:
        cloud = voxel_downsample(cloud, opts.voxel)
    if len(cloud) == 0:
        raise ReconError(f"{job.source}: no points left; nothing written")
    return cloud, method


def class_id_of(name: str) -> int:
    """A class id from its name in recon.synth.CLASS_NAMES or its number as text; ValueError
    naming --class otherwise."""
    if name.isdigit():
        return int(name)
    from recon.synth import CLASS_NAMES

    ids = [k for k, v in CLASS_NAMES.items() if v == name]
    if not ids:
        raise ValueError(f"--class: unknown class {name!r} (known: {', '.join(CLASS_NAMES.values())})")
    return ids[0]


def _label_filter(opts: ExportOptions, obj, kind: str):
    if opts.instance is None and opts.class_name is None:
        return obj
    from recon.export.mesh import filter_mesh_by_attribute
    from recon.export.points import filter_points_by_attribute

    filt = filter_points_by_attribute if kind == "points" else filter_mesh_by_attribute
    if opts.instance is not None:
        obj = filt(obj, "instance_id", opts.instance)
    if opts.class_name is not None:
        obj = filt(obj, "class_id", class_id_of(opts.class_name))
    n = len(obj) if kind == "points" else obj.num_faces
    if n == 0:
        raise ReconError("--instance/--class: nothing of the source has that label; nothing written")
    return obj


# ---- mesh -------------------------------------------------------------------------------
def _export_mesh(job: _Job, out: Path) -> ExportResult:
    from recon.export.mesh import decimate, remove_small_components, write_mesh

    opts = job.options
    mesh, method = _mesh(job)
    if opts.min_component > 0:
        mesh = remove_small_components(mesh, min_fraction=opts.min_component)
    if opts.faces is not None:
        mesh = decimate(mesh, opts.faces)
    if mesh.num_faces == 0:
        crop = None if opts.crop is None else list(opts.crop)
        raise ReconError(f"{job.source}: the mesh is empty after cleanup (crop {crop}); nothing written")
    _require_colors(job, mesh.vertex_colors is not None)
    _write(out, lambda p: write_mesh(p, mesh))
    lo, hi = mesh.bounds()
    return ExportResult(job.source, "", "mesh", out, method, len(mesh.vertices), mesh.num_faces, lo.tolist(),
                        hi.tolist(), has_colors=mesh.vertex_colors is not None)


def _mesh(job: _Job):
    """(Mesh, method) for what="mesh"."""
    from recon.export.mesh import crop_mesh, read_mesh
    from recon.io.detect import Kind

    art, crop = job.art, job.crop
    if art.kind == Kind.MESH:
        mesh = _label_filter(job.options, read_mesh(art.mesh), "mesh")
        if crop is not None:
            mesh = crop_mesh(mesh, *crop)
            if mesh.num_faces == 0:
                raise ReconError(f"--crop: the box {list(job.options.crop)} contains none of the mesh; "
                                 "nothing written")
        return mesh, "mesh cleanup"
    method = job.options.method or ("tsdf" if _has_depth(art) else "poisson")
    if method == "marching-cubes":
        return _marching_cubes(job), method
    if method == "tsdf":
        return _tsdf(job), method
    return _poisson(job), method


def _marching_cubes(job: _Job):
    from recon.export.mesh import crop_mesh
    from recon.export.surface import marching_cubes, read_density_grid

    art, source = job.art, job.source
    grid_path = (art.path / "density_grid.npz") if art.path.is_dir() else source
    if art.path.is_dir() and not grid_path.is_file():
        raise FormatError(source, "no density_grid.npz here (written by `recon train nerf`)")
    grid = read_density_grid(grid_path)
    level = job.options.level
    if level is None:
        level = grid.iso_hint if grid.iso_hint is not None else float(np.mean(grid.grid))
    mesh = marching_cubes(grid, level)
    job.details["level"] = level
    if job.crop is not None:
        mesh = crop_mesh(mesh, *job.crop)
    job.colors_optional = True  # a density grid has no colours
    if not job.options.allow_no_colors:
        job.details["note"] = "marching cubes: density grids carry no colour"
    return mesh


def _tsdf(job: _Job):
    from recon.export.tsdf import TSDFOptions, fuse_tsdf

    if not _has_depth(job.art):
        raise FormatError(job.source, "--method tsdf needs depth maps (a dataset with depth/, or a splat / NeRF "
                                      "output); use --method poisson for points")
    views, what = _depth_views(job)
    crop = job.crop
    opts = TSDFOptions(voxel_size=job.options.voxel, depth_max=job.options.depth_max,
                       bbox_min=None if crop is None else tuple(crop[0]),
                       bbox_max=None if crop is None else tuple(crop[1]))
    res = fuse_tsdf(views, opts, progress=job.options.progress)
    job.details["tsdf"] = {"voxel_size": res.volume.voxel_size, "truncation": res.volume.truncation,
                           "volume_min": res.volume.bbox_min.tolist(), "volume_max": res.volume.bbox_max.tolist(),
                           "views": len(views), "depth_megapixels": round(res.megapixels, 3),
                           "integrate_s": round(res.integrate_s, 3), "extract_s": round(res.extract_s, 3),
                           "depth_source": what}
    return res.mesh


def _poisson(job: _Job):
    from recon.export.surface import poisson_mesh

    opts = job.options
    cloud, pmethod = _points(job)
    if cloud.normals is None:
        raise ReconError(f"{job.source}: the points have no normals and no cameras to orient them; Poisson needs "
                         "oriented normals")
    mesh = poisson_mesh(cloud, depth=opts.poisson_depth, density_quantile=opts.density_quantile)
    job.details["poisson"] = {"points": len(cloud), "points_from": pmethod, "depth": opts.poisson_depth,
                              "density_quantile": opts.density_quantile}
    return mesh

