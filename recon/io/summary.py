"""Summaries of files and folders for ``recon info``: what a path holds, in a few lines.

:func:`describe` returns a list of :class:`Section` (a title, printable lines and the same facts
as plain data for ``--json``). Every supported kind has one function here; a folder can hold
several (an SfM output folder has a COLMAP model, a transforms.json, a PLY and a report).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.errors import FormatError

__all__ = ["Section", "describe", "describe_reconstruction", "mean_reprojection_error"]


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def text(self) -> str:
        return "\n".join([self.title, *("  " + ln for ln in self.lines)])


def describe(path) -> list[Section]:
    """Summarise any supported file or folder (what it is: :func:`recon.io.detect`).
    Raises FileNotFoundError / FormatError."""
    from recon.io.detect import detect

    path = Path(path)
    art = detect(path)
    if path.is_dir():
        return _describe_folder(path, art)
    return [_describe_file(path, art)]


# =========================================================================================
# Files
# =========================================================================================

def _describe_file(path: Path, art) -> Section:
    from recon.io.detect import Kind

    if art.report == path:
        return describe_report(path)
    if path.suffix.lower() == ".ply":
        return describe_splat_ply(path, None) if art.kind is Kind.SPLAT_PLY else describe_ply(path)
    if art.kind is Kind.MESH:
        return describe_mesh(path)
    if art.kind is Kind.IMAGE:
        return describe_image(path)
    if art.kind is Kind.VIDEO:
        return describe_video(path)
    if art.kind is Kind.SYNTH_DATASET:
        return describe_synth(path.parent)
    if art.kind is Kind.TRANSFORMS:
        return describe_transforms(art.transforms)
    if art.kind is Kind.COLMAP_MODEL:
        return describe_colmap(art.model_dir)
    raise FormatError(path, f"is a {art.kind.label}; recon info reads COLMAP models, transforms.json, PLY, "
                            "meshes, images, videos, gt.json and report.json")


def mean_reprojection_error(rec) -> tuple[float, int]:
    """(mean error in pixels over all observations whose camera model we can project, count).
    Vectorised per image; NaN when nothing can be projected."""
    total, count = 0.0, 0
    if not rec.points3D:
        return float("nan"), 0
    pids = np.array(list(rec.points3D), dtype=np.int64)
    order = np.argsort(pids)
    pids = pids[order]
    xyz = rec.points_xyz()[order]
    for im in rec.images.values():
        if not im.registered:
            continue
        cam = rec.cameras[im.camera_id]
        if not cam.spec.supported:
            continue
        sel = np.flatnonzero(im.point3D_ids >= 0)
        slot = np.minimum(np.searchsorted(pids, im.point3D_ids[sel]), len(pids) - 1)
        known = pids[slot] == im.point3D_ids[sel]
        sel, slot = sel[known], slot[known]
        if sel.size == 0:
            continue
        uv, valid = cam.project(im.cam_from_world.apply(xyz[slot]))
        err = np.linalg.norm(uv - im.keypoints[sel], axis=1)[valid]
        total += float(err.sum())
        count += int(err.size)
    return (total / count if count else float("nan")), count


def describe_reconstruction(rec, title: str) -> Section:
    s = Section(title)
    s.lines.append(f"cameras: {len(rec.cameras)}")
    cams = []
    n_images = {}
    for im in rec.images.values():
        n_images[im.camera_id] = n_images.get(im.camera_id, 0) + 1
    for cid, cam in sorted(rec.cameras.items()):
        vals = ", ".join(f"{n}={v:.6g}" for n, v in zip(cam.spec.param_names, cam.params, strict=True))
        s.lines.append(f"  camera {cid}: {cam.model} {cam.width}x{cam.height}  {vals}  "
                       f"({n_images.get(cid, 0)} images)")
        cams.append({"id": cid, "model": cam.model, "width": cam.width, "height": cam.height,
                     "params": cam.params.tolist(), "param_names": list(cam.spec.param_names),
                     "images": n_images.get(cid, 0)})
    reg = len(rec.registered_images)
    tl = rec.track_lengths()
    s.lines.append(f"images: {len(rec.images)} ({reg} registered)")
    s.lines.append(f"points3D: {len(rec.points3D)}")
    s.data = {"pixel_convention": "centre of the top-left pixel at (0, 0) (files: (0.5, 0.5))",
              "cameras": cams, "images": len(rec.images), "images_registered": reg,
              "points3D": len(rec.points3D)}
    if tl.size and tl.sum():
        s.lines.append(f"observations: {int(tl.sum())}, mean track length: {tl.mean():.3f}")
        err, n = mean_reprojection_error(rec)
        stored = rec.points_error()
        stored = stored[stored >= 0]
        s.lines.append(f"mean reprojection error: {err:.4f} px over {n} observations (recomputed)"
                       + (f"; points' stored mean error {stored.mean():.4f} px" if stored.size else ""))
        s.data.update(observations=int(tl.sum()), mean_track_length=float(tl.mean()),
                      mean_reprojection_error_px=err,
                      stored_mean_error_px=float(stored.mean()) if stored.size else None)
    if len(rec.points3D):
        xyz = rec.points_xyz()
        lo, hi = xyz.min(0), xyz.max(0)
        s.lines.append(f"points bbox: min {_v(lo)}  max {_v(hi)}")
        s.data["points_bbox"] = [lo.tolist(), hi.tolist()]
    if reg:
        c = np.array([im.center for im in rec.registered_images])
        s.lines.append(f"camera centres bbox: min {_v(c.min(0))}  max {_v(c.max(0))}")
    return s


_NOTE = "(cx, cy in recon's pixel-centre convention; COLMAP / nerfstudio files store cx + 0.5, cy + 0.5)"


def describe_colmap(folder: Path) -> Section:
    from recon.io.colmap import colmap_model_kind, read_colmap

    rec = read_colmap(folder)
    kind = colmap_model_kind(folder)
    s = describe_reconstruction(rec, f"COLMAP model ({'binary' if kind == 'bin' else 'text'}): {folder}")
    s.lines.append(_NOTE)
    s.data = {"kind": "colmap", "format": kind, "path": str(folder), **s.data}
    return s


def describe_transforms(path: Path) -> Section:
    from recon.io.transforms_json import read_transforms

    rec, meta = read_transforms(path, load_points=True)
    s = describe_reconstruction(rec, f"transforms.json: {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    shared = "fl_x" in data or "camera_angle_x" in data
    s.lines.insert(0, f"frames: {len(rec.images)}, intrinsics: {'shared' if shared else 'per frame'}")
    if meta.aabb_scale is not None:
        s.lines.append(f"aabb_scale: {meta.aabb_scale:g}")
    if meta.mask_paths:
        s.lines.append(f"masks: {len(meta.mask_paths)}")
    if meta.depth_paths:
        s.lines.append(f"depth maps: {len(meta.depth_paths)}")
    if meta.applied_transform is not None:
        s.lines.append("applied_transform: present (nerfstudio world; read_transforms(..., "
                       "undo_applied_transform=True) restores the original)")
    if meta.ply_file_path:
        s.lines.append(f"ply_file_path: {meta.ply_file_path} ({len(rec.points3D)} points)")
    s.lines.append(_NOTE)
    s.data = {"kind": "transforms", "path": str(path), "shared_intrinsics": shared,
              "aabb_scale": meta.aabb_scale, "masks": len(meta.mask_paths), **s.data}
    return s


def describe_ply(path: Path) -> Section:
    """A PLY point cloud (or a mesh's vertices; its faces are listed as other elements)."""
    from recon.io.ply import read_ply, read_ply_header

    header = read_ply_header(path)
    vertex = header.element("vertex")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # faces are reported below
        cloud = read_ply(path)
    s = Section(f"PLY point cloud ({header.format}): {path}")
    s.lines.append(f"points: {len(cloud)}")
    s.lines.append("fields: " + ", ".join(f"{n}:{t}" for n, t in vertex.properties))
    others = [f"{e.name} ({e.count})" for e in header.elements if e.name != "vertex"]
    if others:
        s.lines.append("other elements (not loaded): " + ", ".join(others))
    s.data = {"kind": "ply", "path": str(path), "format": header.format, "points": len(cloud),
              "fields": dict(vertex.properties), "other_elements": others}
    if len(cloud):
        lo, hi = cloud.bounds()
        s.lines.append(f"bbox: min {_v(lo)}  max {_v(hi)}  (size {_v(hi - lo)})")
        s.data["bbox"] = [lo.tolist(), hi.tolist()]
        for name in ("class_id", "instance_id"):
            if name in cloud.attributes:
                u = np.unique(cloud.attributes[name])
                s.lines.append(f"{name}: {u.size} distinct values")
    return s


def describe_splat_ply(path: Path, header=None) -> Section:
    from recon.io.ply import read_ply_header

    header = header or read_ply_header(path)
    vertex = header.element("vertex")
    s = Section(f"3D Gaussian Splatting PLY ({header.format}): {path}")
    n_rest = sum(1 for n, _ in vertex.properties if n.startswith("f_rest_"))
    degree = int(round(np.sqrt(n_rest / 3 + 1) - 1)) if n_rest % 3 == 0 else None
    s.lines.append(f"gaussians: {vertex.count}, SH degree: {degree} ({n_rest} f_rest coefficients)")
    s.data = {"kind": "splat_ply", "path": str(path), "gaussians": vertex.count, "sh_degree": degree}
    try:
        from recon.io.gaussians import read_splat_ply
    except ImportError:
        read_splat_ply = None
    if read_splat_ply is not None:
        g = read_splat_ply(path)
        means = np.asarray(g.means)
        opacity = 1.0 / (1.0 + np.exp(-np.asarray(g.opacity_logits, dtype=np.float64)))
        scales = np.exp(np.asarray(g.log_scales, dtype=np.float64))
    else:
        from recon.io.ply import read_ply

        c = read_ply(path)
        means = c.xyz
        opacity = 1.0 / (1.0 + np.exp(-c.attributes["opacity"].astype(np.float64)))
        scales = np.exp(np.stack([c.attributes[f"scale_{i}"] for i in range(3)], 1).astype(np.float64))
    if len(means):
        lo, hi = means.min(0), means.max(0)
        s.lines.append(f"means bbox: min {_v(lo)}  max {_v(hi)}")
        s.lines.append(f"opacity: median {np.median(opacity):.3f}; scale: median {np.median(scales):.4g}")
        s.data.update(bbox=[lo.tolist(), hi.tolist()], median_opacity=float(np.median(opacity)))
    return s


def describe_mesh(path: Path) -> Section:
    """A mesh file (OBJ / GLB / GLTF / STL / OFF), read by recon.io.meshes.read_trimesh."""
    from recon.io.meshes import read_trimesh

    mesh = read_trimesh(path, allow_empty=True)
    s = Section(f"mesh: {path}")
    nv, nf = len(mesh.vertices), len(mesh.faces)
    s.lines.append(f"vertices: {nv}, faces: {nf}")
    s.data = {"kind": "mesh", "path": str(path), "vertices": nv, "faces": nf}
    if nv:
        lo, hi = np.asarray(mesh.bounds[0]), np.asarray(mesh.bounds[1])
        s.lines.append(f"bbox: min {_v(lo)}  max {_v(hi)}")
        s.data["bbox"] = [lo.tolist(), hi.tolist()]
    return s


def describe_video(path: Path) -> Section:
    """A video: frame size, count and rate (OpenCV)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise FormatError(path, "OpenCV cannot open this video")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS))
    finally:
        cap.release()
    s = Section(f"video: {path}")
    s.lines.append(f"size: {w}x{h}, frames: {n}, fps: {fps:.3g}")
    s.data = {"kind": "video", "path": str(path), "width": w, "height": h, "frames": n, "fps": fps}
    return s


def describe_image(path: Path) -> Section:
    from recon.io.images import exif_focal_px, exif_orientation, image_size, open_image

    w, h = image_size(path)
    try:
        with open_image(path) as im:
            mode, fmt = im.mode, im.format
            exif = im.getexif()
            make = str(exif.get(0x010F, "")).strip()
            model = str(exif.get(0x0110, "")).strip()
        orient = exif_orientation(path)
        f = exif_focal_px(path)
    except OSError as e:  # Pillow reads EXIF past the header: a truncated file fails here
        raise FormatError(path, f"cannot read the image's metadata (truncated or corrupt): {e}") from None
    s = Section(f"image ({fmt}): {path}")
    s.lines.append(f"size: {w}x{h} (width x height, EXIF orientation {orient} applied), mode {mode}")
    if make or model:
        s.lines.append(f"camera: {make} {model}".rstrip())
    s.lines.append(f"EXIF focal guess: {f:.1f} px" if f else "EXIF focal guess: none")
    s.data = {"kind": "image", "path": str(path), "width": w, "height": h, "mode": mode, "format": fmt,
              "orientation": orient, "exif_focal_px": f}
    return s


def describe_image_folder(folder: Path, images: list[Path]) -> Section:
    from collections import Counter

    from recon.io.images import exif_focal_px, image_size

    sizes = Counter()
    bad = []
    for p in images:
        try:
            sizes[image_size(p)] += 1
        except (OSError, FormatError) as e:
            bad.append(f"{p.name}: {e}")
    exts = Counter(p.suffix.lower() for p in images)
    s = Section(f"image folder: {folder}")
    s.lines.append(f"images: {len(images)} ({', '.join(f'{n} {e}' for e, n in exts.most_common())})")
    s.lines.append("sizes: " + ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(5)))
    f = None
    for p in images[:3]:
        try:
            f = exif_focal_px(p)
        except (OSError, FormatError):
            f = None
        if f:
            break
    s.lines.append(f"EXIF focal guess (first images): {f:.1f} px" if f else "EXIF focal guess: none")
    if bad:
        s.lines.append(f"unreadable: {len(bad)}: " + "; ".join(bad[:3]))
    s.data = {"kind": "image_folder", "path": str(folder), "images": len(images),
              "sizes": {f"{w}x{h}": n for (w, h), n in sizes.items()}, "exif_focal_px": f, "unreadable": bad}
    return s


def describe_synth(folder: Path) -> Section:
    gt_path = folder / "gt.json"
    try:
        gt = json.loads(gt_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(gt_path, f"invalid JSON at line {e.lineno}: {e.msg}") from None
    s = Section(f"synthetic dataset: {folder}")
    for sub in ("images", "depth", "labels", "masks"):
        d = folder / sub
        if d.is_dir():
            s.lines.append(f"{sub}/: {sum(1 for p in d.rglob('*') if p.is_file())} files")
    if isinstance(gt, dict):
        for k, v in gt.items():
            s.lines.append(f"gt.{k}: {_short(v)}")
    s.data = {"kind": "synth", "path": str(folder), "gt_keys": list(gt) if isinstance(gt, dict) else None}
    return s


def describe_report(path: Path) -> Section:
    try:
        rep = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(path, f"invalid JSON at line {e.lineno}: {e.msg}") from None
    s = Section(f"report: {path}")
    if isinstance(rep, dict):
        for k, v in rep.items():
            s.lines.append(f"{k}: {_short(v)}")
    s.data = {"kind": "report", "path": str(path), "report": rep}
    return s


# =========================================================================================
# Folders
# =========================================================================================

def _describe_folder(folder: Path, art) -> list[Section]:
    """What recon.io.detect found (dataset facts, report, model), then every transforms*.json,
    PLY and the images the folder holds."""
    from recon.io.images import list_images

    sections: list[Section] = []
    if art.gt is not None:
        sections.append(describe_synth(folder))
    if art.report is not None:
        sections.append(describe_report(art.report))
    if art.model_dir is not None:
        sections.append(describe_colmap(art.model_dir))
    for js in sorted(folder.glob("transforms*.json")):  # also Blender's transforms_{train,val,test}
        sections.append(describe_transforms(js))
    for ply in sorted(folder.glob("*.ply")):
        sections.append(_describe_file(ply, _detect_quiet(ply)))
    images = list_images(folder)
    if not images and (folder / "images").is_dir():
        images = list_images(folder / "images")
        img_folder = folder / "images"
    else:
        img_folder = folder
    if images:
        sections.append(describe_image_folder(img_folder, images))
    if not sections:
        raise FormatError(folder, "nothing recon can read here (no COLMAP model, transforms.json, PLY, "
                                  "images, gt.json or report.json)")
    return sections


def _detect_quiet(path: Path):
    from recon.io.detect import detect

    return detect(path)


def _v(a) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in np.asarray(a).ravel()) + ")"


def _short(v) -> str:
    if isinstance(v, (int, float, str, bool)) or v is None:
        return repr(v) if isinstance(v, str) else str(v)
    if isinstance(v, list):
        return f"list of {len(v)}" if len(v) > 6 or any(isinstance(x, (list, dict)) for x in v) else str(v)
    if isinstance(v, dict):
        keys = list(v)
        return "{" + ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "") + "}"
    return type(v).__name__
