"""Format conversion behind ``recon convert``: COLMAP (bin / txt) <-> transforms.json -> PLY."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.errors import FormatError, ReconError

__all__ = ["OUT_FORMATS", "convert", "points_cloud"]

OUT_FORMATS = ("colmap-bin", "colmap-txt", "transforms", "ply")


def points_cloud(rec):
    """The reconstruction's 3D points as a PointCloud (xyz float64, rgb, attributes ``error``
    float64 and ``track_length`` int32)."""
    from recon.io.ply import PointCloud

    return PointCloud(rec.points_xyz(), rec.points_rgb(),
                      attributes={"error": rec.points_error(),
                                  "track_length": rec.track_lengths().astype(np.int32)})


def _detect_input(path: Path, in_format: str | None) -> tuple[str, Path]:
    from recon.io.model import detect_model

    if in_format == "ply" or (in_format is None and path.is_file() and path.suffix.lower() == ".ply"):
        return "ply", path
    found = detect_model(path)
    if found is None:
        raise FormatError(path, "no COLMAP model, transforms.json or PLY found")
    kind, where = found
    if in_format is not None and kind != in_format:
        if in_format == "transforms":
            from recon.io.transforms_json import find_transforms

            js = find_transforms(path)
            if js is not None:
                return "transforms", js
        raise FormatError(path, f"--input-format {in_format} given, but this looks like {kind}")
    return kind, where


def _out_format(out: Path, requested: str | None, in_kind: str, in_where: Path) -> str:
    if requested is not None:
        if requested not in OUT_FORMATS:
            raise ValueError(f"out_format: expected one of {OUT_FORMATS}, got {requested!r}")
        return requested
    suffix = out.suffix.lower()
    if suffix == ".json":
        return "transforms"
    if suffix == ".ply":
        return "ply"
    if in_kind == "colmap":
        from recon.io.colmap import colmap_model_kind

        return "colmap-txt" if colmap_model_kind(in_where) == "bin" else "colmap-bin"
    return "colmap-bin"


def convert(inp, out, *, out_format: str | None = None, in_format: str | None = None,
            image_dir: str | None = None, points_ply: str | None = "sparse_pc.ply",
            aabb_scale: float | None = None, undo_applied_transform: bool = False,
            ply_binary: bool = True, overwrite: bool = False) -> str:
    """Convert ``inp`` to ``out``; returns a one-line description of what was written.

    See ``recon convert --help`` for the rules; raises ReconError for unsupported pairs and
    FileExistsError instead of overwriting (unless ``overwrite``)."""
    inp, out = Path(inp), Path(out)
    if not inp.exists():
        raise FileNotFoundError(f"{inp}: no such file or folder")
    in_kind, where = _detect_input(inp, in_format)
    fmt = _out_format(out, out_format, in_kind, where)
    if in_kind == "ply":
        if fmt != "ply":
            raise ReconError(f"cannot convert a PLY point cloud to {fmt}: it has no cameras or poses "
                             "(supported from PLY: ply, to rewrite it binary/ASCII)")
        from recon.io.ply import read_ply, write_ply

        _check_free(out, overwrite)
        cloud = read_ply(where)
        write_ply(out, cloud, binary=ply_binary)
        return f"wrote {len(cloud)} points to {out} ({'binary' if ply_binary else 'ASCII'} PLY)"

    meta = None
    if in_kind == "colmap":
        from recon.io.colmap import read_colmap

        rec = read_colmap(where)
    else:
        from recon.io.transforms_json import read_transforms

        rec, meta = read_transforms(where, undo_applied_transform=undo_applied_transform)
    src = f"{in_kind} {where}"

    if fmt == "ply":
        from recon.io.ply import write_ply

        if not rec.points3D:
            raise ReconError(f"{where}: the model has no 3D points to write")
        _check_free(out, overwrite)
        write_ply(out, points_cloud(rec), binary=ply_binary)
        return f"wrote {len(rec.points3D)} points from {src} to {out}"
    if fmt == "transforms":
        from recon.io.transforms_json import write_transforms

        file = out if out.suffix.lower() == ".json" else out / "transforms.json"
        _check_free(file, overwrite)
        ply = points_ply if rec.points3D else None
        if ply is not None:
            _check_free(file.parent / ply, overwrite)
        written = write_transforms(rec, file, image_dir=image_dir, meta=meta, aabb_scale=aabb_scale,
                                   points_ply=ply)
        n = len(rec.registered_images)
        hint = ("" if image_dir is not None or in_kind != "colmap" else
                "; file_path = the model's image names, relative to the JSON's folder "
                "(use --image-dir to prefix them)")
        return (f"wrote transforms.json with {n} frames from {src} to {written}"
                + (f" (+ {len(rec.points3D)} points in {ply})" if ply else "") + hint)
    from recon.io.colmap import write_colmap

    binary = fmt == "colmap-bin"
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder (a COLMAP model is a folder)")
    if out.resolve() == where.resolve() and not overwrite:
        raise FileExistsError(f"{out}: is the input folder; pass --overwrite to rewrite it in place")
    for name in ("cameras", "images", "points3D"):
        _check_free(out / f"{name}.{'bin' if binary else 'txt'}", overwrite)
    write_colmap(rec, out, binary=binary)
    return (f"wrote COLMAP {'binary' if binary else 'text'} model ({len(rec.cameras)} cameras, "
            f"{len(rec.registered_images)} images, {len(rec.points3D)} points) from {src} to {out}")


def _check_free(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass --overwrite to replace it)")
