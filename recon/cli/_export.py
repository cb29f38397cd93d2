"""The work behind `recon export` (recon/cli/verb_export.py): pick the source's default, build the
geometry with recon.export, write the file. Rendering depth from a trained splat model happens
here, inside the command (recon.export itself never imports render)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from recon.errors import FormatError, ReconError


def _log(msg: str) -> None:
    print(f"[export] {msg}", file=sys.stderr)


def _is_stereo_output(path: Path) -> bool:
    # `recon stereo` output (depth.npy + points.ply + report.json); not a recon.io.detect kind yet.
    return path.is_dir() and all((path / n).is_file() for n in ("depth.npy", "points.ply", "report.json"))


def _crop(args):
    if args.crop is None:
        return None
    lo, hi = np.array(args.crop[:3], float), np.array(args.crop[3:], float)
    if not np.all(hi > lo):
        raise ValueError(f"--crop: expected XMIN YMIN ZMIN < XMAX YMAX ZMAX, got {args.crop}")
    return lo, hi


def _check_args(args, out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix not in (".ply", ".obj", ".glb"):
        raise ValueError(f"-o/--output: unknown format {suffix or '(no extension)'!r}; use .ply, .obj or .glb")
    if args.voxel is not None and not (np.isfinite(args.voxel) and args.voxel > 0):
        raise ValueError(f"--voxel: expected a positive size in metres, got {args.voxel}")
    if args.faces is not None and args.faces < 4:
        raise ValueError(f"--faces: expected at least 4, got {args.faces}")
    if args.min_views < 1:
        raise ValueError(f"--min-views: expected >= 1, got {args.min_views}")
    if not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)


# =========================================================================================
# Sources -> depth views
# =========================================================================================

def _splat_depth_views(art, args):
    """Render depth (and colour) from a trained splat model for the training cameras."""
    import torch

    from calib.undistort import has_distortion, undistorted_pinhole
    from recon.export import DepthView
    from recon.io import read_model
    from recon.io.gaussians import read_splat_ply
    from render.scaffold import ThreadGovernor
    from render.splat.api import rasterize

    ThreadGovernor(log=_log).start()
    if art.data_path is None or not Path(art.data_path).exists():
        raise FormatError(art.path, "report.json names no dataset (data_path) whose cameras to render depth from")
    gaussians = read_splat_ply(art.ply)
    rec = read_model(art.data_path)
    scale = 1.0
    try:
        import json

        scale = float(json.loads(Path(art.report).read_text()).get("resolution_scale") or 1.0) if art.report else 1.0
    except (OSError, ValueError):
        scale = 1.0
    images = sorted((im for im in rec.images.values() if im.registered), key=lambda im: im.name)
    it = images
    if not args.no_progress:
        from tqdm import tqdm

        it = tqdm(images, desc="render depth", unit="view", file=sys.stderr)
    views = []
    with torch.no_grad():
        for im in it:
            cam = rec.cameras[im.camera_id]
            if has_distortion(cam):  # the trainer undistorted these to this pinhole (render.data)
                cam = undistorted_pinhole(cam)
            if scale != 1.0:
                cam = cam.scaled(scale)
            out = rasterize(gaussians, cam, im.cam_from_world)
            alpha = out.alpha.cpu().numpy()
            depth = np.where(alpha >= args.min_alpha, out.depth.cpu().numpy(), 0.0).astype(np.float32)
            rgb = np.clip(np.rint(out.rgb.clamp(0, 1).cpu().numpy() * 255), 0, 255).astype(np.uint8)
            views.append(DepthView(cam, im.cam_from_world, depth, rgb, im.name))
    return views


def _depth_views(art, args):
    from recon.export import load_depth_views
    from recon.io.detect import Kind

    if art.kind == Kind.SPLAT_OUTPUT:
        return _splat_depth_views(art, args), "rendered splat depth"
    if art.kind == Kind.NERF_OUTPUT:
        if art.data_path is None:
            raise FormatError(art.path, "report.json names no dataset (data_path): the cameras of depth/ are unknown")
        return load_depth_views(art.path, depth_dir=art.path / "depth", model_path=art.data_path), "NeRF depth maps"
    return load_depth_views(art.path), "depth maps"


def _has_depth(art) -> bool:
    from recon.io.detect import Kind

    if art.kind in (Kind.SPLAT_OUTPUT, Kind.SYNTH_DATASET):
        return True
    if art.kind == Kind.NERF_OUTPUT:
        return (art.path / "depth").is_dir()
    return art.path.is_dir() and (art.path / "depth").is_dir()


# =========================================================================================
# The export
# =========================================================================================

def export(args, source: Path, out: Path) -> dict:
    from recon.io.detect import Kind, detect

    _check_args(args, out)
    crop = _crop(args)
    if _is_stereo_output(source):
        kind_label, art = "stereo output", None
    else:
        art = detect(source)
        kind_label = art.kind.label
    what = args.what
    if what is None:
        if art is not None and art.kind == Kind.SPLAT_PLY:
            what = "splat"
        elif art is not None and (art.kind == Kind.MESH or _has_depth(art) or args.method is not None):
            what = "mesh"  # --method names a meshing method
        else:
            what = "points"
    if what in ("points", "splat") and out.suffix.lower() != ".ply":
        raise ValueError(f"-o/--output: {'point clouds' if what == 'points' else '3DGS splats'} are written as "
                         f".ply, got {out.suffix!r}")
    report = {"verb": "export", "source": str(source), "source_kind": kind_label, "what": what,
              "output": str(out), "format": out.suffix.lower()[1:]}
    _log(f"{source} is a {kind_label}: exporting {what}")
    if what == "splat":
        return _export_splat(args, art, out, crop, report)
    if what == "points":
        cloud, method = _points(args, art, source, crop, report)
        if out.suffix.lower() != ".ply":
            raise ValueError(f"-o/--output: point clouds are written as .ply, got {out.suffix!r}")
        _require_colors(args, cloud.rgb is not None, source)
        from recon.io import write_ply

        _atomic(out, lambda p: write_ply(p, cloud, comments=(f"recon export: {method}",)))
        lo, hi = cloud.bounds()
        report.update(method=method, vertices=len(cloud), faces=0, bbox_min=lo.tolist(), bbox_max=hi.tolist(),
                      has_colors=cloud.rgb is not None, has_normals=cloud.normals is not None)
        return report
    mesh, method = _mesh(args, art, source, crop, report)
    from recon.export import decimate, remove_small_components, write_mesh

    if args.min_component > 0:
        mesh = remove_small_components(mesh, min_fraction=args.min_component)
    if args.faces is not None:
        mesh = decimate(mesh, args.faces)
    if mesh.num_faces == 0:
        raise ReconError(f"{source}: the mesh is empty after cleanup (crop {args.crop}); nothing written")
    _require_colors(args, mesh.vertex_colors is not None, source)
    _atomic(out, lambda p: write_mesh(p, mesh))
    lo, hi = mesh.bounds()
    report.update(method=method, vertices=len(mesh.vertices), faces=mesh.num_faces, bbox_min=lo.tolist(),
                  bbox_max=hi.tolist(), has_colors=mesh.vertex_colors is not None)
    return report


def _export_splat(args, art, out: Path, crop, report) -> dict:
    from recon.export import filter_gaussians
    from recon.io.detect import Kind
    from recon.io.gaussians import read_splat_ply, write_splat_ply

    if art is None or art.kind not in (Kind.SPLAT_OUTPUT, Kind.SPLAT_PLY):
        raise FormatError(report["source"], f"is a {report['source_kind']}; --what splat needs a splat training "
                                            "output or a 3DGS PLY")
    if out.suffix.lower() != ".ply":
        raise ValueError(f"-o/--output: 3DGS splats are written as .ply, got {out.suffix!r}")
    g = read_splat_ply(art.ply)
    kept = filter_gaussians(g, bbox_min=None if crop is None else crop[0], bbox_max=None if crop is None else crop[1],
                            min_opacity=args.min_opacity)
    _atomic(out, lambda p: write_splat_ply(p, kept))
    lo, hi = kept.means.min(0), kept.means.max(0)
    report.update(method="3DGS filter", vertices=len(kept), faces=0, gaussians_in=len(g),
                  min_opacity=args.min_opacity, bbox_min=lo.tolist(), bbox_max=hi.tolist())
    return report


def _require_colors(args, has: bool, source: Path) -> None:
    if not has and not args.no_colors:
        raise ReconError(f"{source}: the source has no colours (pass --no-colors to export without them)")


def _atomic(out: Path, write) -> None:
    """Write through a temporary name in the same folder, then rename: a failure leaves no
    partial or empty file and an existing file intact (recon.io.files.atomic_write)."""
    from recon.io.files import atomic_write

    atomic_write(out, write)


def _label_filter(args, obj, kind: str):
    if args.instance is None and args.class_name is None:
        return obj
    from recon.export import filter_mesh_by_attribute, filter_points_by_attribute

    filt = filter_points_by_attribute if kind == "points" else filter_mesh_by_attribute
    if args.instance is not None:
        obj = filt(obj, "instance_id", args.instance)
    if args.class_name is not None:
        name = args.class_name
        if name.isdigit():
            cid = int(name)
        else:
            from recon.synth import CLASS_NAMES

            ids = [k for k, v in CLASS_NAMES.items() if v == name]
            if not ids:
                raise ValueError(f"--class: unknown class {name!r} (known: {', '.join(CLASS_NAMES.values())})")
            cid = ids[0]
        obj = filt(obj, "class_id", cid)
    n = len(obj) if kind == "points" else obj.num_faces
    if n == 0:
        raise ReconError("--instance/--class: nothing of the source has that label; nothing written")
    return obj


def _points(args, art, source: Path, crop, report):
    """(PointCloud, method) for --what points."""
    from recon.export import (
        crop_points,
        estimate_normals,
        fuse_depth_points,
        orient_normals_toward,
        points_from_reconstruction,
        remove_statistical_outliers,
        voxel_downsample,
    )
    from recon.io import read_model, read_ply
    from recon.io.detect import Kind

    if art is None:  # stereo output: points.ply in the original left camera frame (centre at 0)
        cloud = read_ply(source / "points.ply")
        cloud.xyz = cloud.xyz.astype(np.float64)
        method = "stereo points, normals toward the left camera"
        if len(cloud) >= 8:
            cloud.normals = orient_normals_toward(cloud.xyz, estimate_normals(cloud.xyz), np.zeros(3))
    elif _has_depth(art):
        views, what = _depth_views(art, args)
        cloud = fuse_depth_points(views, min_views=args.min_views, progress=not args.no_progress)
        method = f"{what} fused, >= {args.min_views} consistent views"
    elif art.kind in (Kind.SFM_OUTPUT, Kind.COLMAP_MODEL, Kind.TRANSFORMS):
        rec = read_model(art.model_dir or art.transforms or art.path)
        if not rec.points3D and art.ply is not None:
            cloud, method = read_ply(art.ply), "points.ply"
        else:
            cloud = points_from_reconstruction(rec, outlier_std=None)
            if np.all(cloud.rgb == 0):
                cloud.rgb = None  # a model written without colours
            method = "SfM points, normals toward their cameras"
    elif art.kind == Kind.POINT_CLOUD:
        cloud, method = read_ply(art.ply), "point cloud"
        cloud.xyz = cloud.xyz.astype(np.float64)
    elif art.kind == Kind.NERF_OUTPUT:
        raise FormatError(source, "is a NeRF training output without depth maps (trained with --no-depth): "
                                  "use --method marching-cubes (its density grid) or retrain without --no-depth")
    else:
        raise FormatError(source, f"is a {art.kind.label}; --what points needs depth maps, an SfM model or a "
                                  "point cloud")
    cloud = _label_filter(args, cloud, "points")
    if crop is not None:
        cloud = crop_points(cloud, *crop)
        if len(cloud) == 0:
            raise ReconError(f"--crop: the box {args.crop} contains none of the points; nothing written")
    if args.outlier_std and args.outlier_std > 0 and len(cloud) > 20:
        n0 = len(cloud)
        cloud = remove_statistical_outliers(cloud, std_ratio=args.outlier_std)
        report["outliers_removed"] = n0 - len(cloud)
    if args.voxel is not None:
        cloud = voxel_downsample(cloud, args.voxel)
    if len(cloud) == 0:
        raise ReconError(f"{source}: no points left; nothing written")
    return cloud, method


def _mesh(args, art, source: Path, crop, report):
    """(Mesh, method) for --what mesh."""
    from recon.export import (
        TSDFOptions,
        crop_mesh,
        fuse_tsdf,
        marching_cubes,
        poisson_mesh,
        read_mesh,
    )
    from recon.io.detect import Kind

    method = args.method
    if art is not None and art.kind == Kind.MESH:
        mesh = _label_filter(args, read_mesh(art.mesh), "mesh")
        if crop is not None:
            mesh = crop_mesh(mesh, *crop)
            if mesh.num_faces == 0:
                raise ReconError(f"--crop: the box {args.crop} contains none of the mesh; nothing written")
        return mesh, "mesh cleanup"
    if method is None:
        method = "tsdf" if art is not None and _has_depth(art) else "poisson"
    if method == "marching-cubes":
        from recon.export import read_density_grid

        grid_path = (art.path / "density_grid.npz") if art is not None and art.path.is_dir() else source
        if art is not None and art.path.is_dir() and not grid_path.is_file():
            raise FormatError(source, "no density_grid.npz here (written by `recon train nerf`)")
        grid = read_density_grid(grid_path)
        level = args.level if args.level is not None else (grid.iso_hint if grid.iso_hint is not None
                                                            else float(np.mean(grid.grid)))
        mesh = marching_cubes(grid, level)
        report["level"] = level
        if crop is not None:
            mesh = crop_mesh(mesh, *crop)
        if not args.no_colors:
            args.no_colors = True  # a density grid has no colours
            report["note"] = "marching cubes: density grids carry no colour"
        return mesh, "marching-cubes"
    if method == "tsdf":
        if art is None or not _has_depth(art):
            raise FormatError(source, "--method tsdf needs depth maps (a dataset with depth/, or a splat / NeRF "
                                      "output); use --method poisson for points")
        views, what = _depth_views(art, args)
        opts = TSDFOptions(voxel_size=args.voxel, depth_max=args.depth_max,
                           bbox_min=None if crop is None else tuple(crop[0]),
                           bbox_max=None if crop is None else tuple(crop[1]))
        res = fuse_tsdf(views, opts, progress=not args.no_progress)
        report["tsdf"] = {"voxel_size": res.volume.voxel_size, "truncation": res.volume.truncation,
                          "volume_min": res.volume.bbox_min.tolist(), "volume_max": res.volume.bbox_max.tolist(),
                          "views": len(views), "depth_megapixels": round(res.megapixels, 3),
                          "integrate_s": round(res.integrate_s, 3), "extract_s": round(res.extract_s, 3),
                          "depth_source": what}
        return res.mesh, "tsdf"
    # poisson
    cloud, pmethod = _points(args, art, source, crop, report)
    if cloud.normals is None:
        raise ReconError(f"{source}: the points have no normals and no cameras to orient them; Poisson needs "
                         "oriented normals")
    mesh = poisson_mesh(cloud, depth=args.poisson_depth, density_quantile=args.density_quantile)
    report["poisson"] = {"points": len(cloud), "points_from": pmethod, "depth": args.poisson_depth,
                         "density_quantile": args.density_quantile}
    return mesh, "poisson"
