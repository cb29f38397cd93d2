"""Load anything `recon view` shows into a SceneContent. What a path holds is decided by
:func:`recon.io.detect` (the one detector); :func:`detect` names it in the viewer's words:

==================  ==========================================================================
``sfm_output``      a `recon sfm` folder: ``sparse/0/`` (+ ``report.json``, ``points.ply``)
``splat_output``    a `recon train splat` folder: ``splat.ply`` (+ ``report.json``)
``nerf_output``     a `recon train nerf` folder: shown as its exported mesh (``mesh.*``, from
                    `recon export`) or else its ``points.ply`` (the rendered depth maps
                    back-projected, with rendered colours), with the training cameras
``colmap``          a COLMAP model folder: ``cameras``/``images``/``points3D`` ``.bin`` or ``.txt``
``transforms``      a folder with a nerfstudio / Instant-NGP ``transforms.json``
``splat_ply``       a PLY whose vertices have ``f_dc_0``, ``opacity``, ``scale_0``, ``rot_0`` (3DGS)
``labelled_points`` a PLY point cloud with ``class_id`` and/or ``instance_id`` vertex properties
``points``          any other PLY without faces
``mesh``            a PLY with faces, or ``.obj`` / ``.glb`` / ``.gltf`` / ``.off`` / ``.stl``
==================  ==========================================================================

(a synthetic dataset shows as ``sfm_output``: its ground-truth model). Errors name the path:
unknown kinds, kinds the viewer cannot show (images, videos, a NeRF output
trained without depth maps) and unreadable files
raise ``recon.errors.FormatError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from recon.errors import FormatError
from viewer.content import (
    PointLayer,
    SceneContent,
    content_from_reconstruction,
    splats_from_gaussians,
)

__all__ = ["KINDS", "PlyHeader", "detect", "load", "read_ply_header"]

KINDS = ("sfm_output", "splat_output", "nerf_output", "colmap", "transforms", "splat_ply", "labelled_points",
         "points", "mesh")


@dataclass
class PlyHeader:
    format: str  # ascii, binary_little_endian, binary_big_endian
    elements: dict[str, int] = field(default_factory=dict)  # element name -> count
    properties: dict[str, list[str]] = field(default_factory=dict)  # element name -> property names

    def vertex_props(self) -> set[str]:
        return set(self.properties.get("vertex", []))


def read_ply_header(path: str | Path) -> PlyHeader:
    """Element counts and property names of a PLY header (no payload), from the one PLY header
    parser (:func:`recon.io.ply.read_ply_header`); FormatError naming the file when it is not a PLY."""
    from recon.io.ply import read_ply_header as _read

    path = Path(path)
    try:
        full = _read(path)
    except FileNotFoundError as e:
        raise FormatError(path, f"cannot read ({e.strerror or 'no such file'})") from None
    return PlyHeader(full.format, {e.name: e.count for e in full.elements},
                     {e.name: [n for n, _ in e.properties] for e in full.elements})


def _viewer_kind(art) -> str:
    from recon.io.detect import Kind

    kind = {Kind.SFM_OUTPUT: "sfm_output", Kind.SYNTH_DATASET: "sfm_output", Kind.SPLAT_OUTPUT: "splat_output",
            Kind.COLMAP_MODEL: "colmap", Kind.TRANSFORMS: "transforms", Kind.SPLAT_PLY: "splat_ply",
            Kind.MESH: "mesh", Kind.NERF_OUTPUT: "nerf_output"}.get(art.kind)
    if art.kind is Kind.NERF_OUTPUT and art.mesh is None and art.ply is None:
        raise FormatError(art.path, "is a NeRF training output without points.ply or a mesh (trained with "
                                    "--no-depth?); run `recon export` on it first, or retrain without --no-depth")
    if art.kind is Kind.POINT_CLOUD:
        kind = "labelled_points" if art.labelled else "points"
    if kind is None or (art.kind is Kind.SYNTH_DATASET and art.model_dir is None):
        raise FormatError(art.path, f"is a {art.kind.label}; `recon view` shows COLMAP models, recon sfm/train "
                                    "outputs, PLY (points, labelled points, 3DGS splats, meshes), "
                                    "OBJ/GLB/STL/OFF meshes")
    return kind


def _artifact(path: Path):
    from recon.io.detect import detect as detect_artifact

    try:
        return detect_artifact(path)
    except FileNotFoundError:
        raise FormatError(path, "no such file or folder") from None


def detect(path: str | Path) -> str:
    """The kind of ``path`` (one of :data:`KINDS`), from :func:`recon.io.detect`; FormatError
    naming it otherwise."""
    return _viewer_kind(_artifact(Path(path)))


def _read_class_names(path: Path) -> dict[int, str]:
    """Optional class names next to a labelled PLY: ``<stem>.classes.json`` or ``classes.json``,
    either {"0": "wall", ...} or ["wall", ...]."""
    for cand in (path.with_suffix(".classes.json"), path.parent / "classes.json"):
        if cand.is_file():
            try:
                doc = json.loads(cand.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise FormatError(cand, f"cannot read class names ({e})") from None
            if isinstance(doc, list):
                return {i: str(n) for i, n in enumerate(doc)}
            if isinstance(doc, dict):
                return {int(k): str(v) for k, v in doc.items()}
    return {}


def _points_from_ply(path: Path) -> PointLayer:
    from recon.io import read_ply

    cloud = read_ply(path)
    attrs = getattr(cloud, "attributes", {}) or {}
    return PointLayer(cloud.xyz, cloud.rgb, class_id=attrs.get("class_id"),
                      instance_id=attrs.get("instance_id"))


def _wrap(path: Path, kind: str, fn):
    try:
        return fn()
    except FormatError:
        raise
    except (ValueError, KeyError, IndexError, OSError, EOFError) as e:
        raise FormatError(path, f"cannot read it as {kind.replace('_', ' ')}: {e}") from None


def load(path: str | Path, *, kind: str | None = None, image_dir: str | Path | None = None) -> SceneContent:
    """Detect (unless ``kind`` is given) and load ``path`` into a SceneContent."""
    path = Path(path)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    art = _artifact(path)
    kind = kind or _viewer_kind(art)
    title = f"{path.name} ({kind.replace('_', ' ')})"

    if kind in ("colmap", "sfm_output"):
        from recon.io import read_colmap

        model = art.model_dir or path
        rec = _wrap(model, kind, lambda: read_colmap(model))
        report = _read_report(path) if kind == "sfm_output" else {}
        images = Path(image_dir) if image_dir is not None else art.images_dir
        content = content_from_reconstruction(rec, image_dir=images, title=title)
        if isinstance(report.get("mean_reprojection_error_px"), (int, float)):
            content.notes.append(f"recon sfm: mean reprojection error "
                                 f"{report['mean_reprojection_error_px']:.3f} px (report.json)")
    elif kind == "transforms":
        from recon.io import read_transforms

        f = art.transforms or path
        rec, _meta = _wrap(f, kind, lambda: read_transforms(f))
        content = content_from_reconstruction(rec, image_dir=Path(image_dir) if image_dir else f.parent,
                                              title=title)
    elif kind in ("splat_output", "splat_ply"):
        from recon.io.gaussians import read_splat_ply

        f = art.ply or path
        g = _wrap(f, kind, lambda: read_splat_ply(f))
        content = SceneContent(title=title, splats=_wrap(f, kind, lambda: splats_from_gaussians(g)))
        if kind == "splat_output":
            _add_training_cameras(content, art, image_dir)
    elif kind == "nerf_output":
        if art.mesh is not None:
            content = SceneContent(title=title, mesh=_load_mesh(art.mesh))
            content.notes.append(f"NeRF shown as its mesh {art.mesh.name}")
        else:
            content = SceneContent(title=title, points=_wrap(art.ply, kind, lambda: _points_from_ply(art.ply)))
            content.notes.append(f"NeRF shown as {art.ply.name}: its rendered depth maps back-projected")
        _add_training_cameras(content, art, image_dir)
    elif kind in ("points", "labelled_points"):
        pts = _wrap(path, kind, lambda: _points_from_ply(path))
        names = _read_class_names(path) if kind == "labelled_points" else {}
        content = SceneContent(title=title, points=pts, class_names=names)
    else:  # mesh
        content = SceneContent(title=title, mesh=_load_mesh(path))
    content.source = path
    return content


def _load_mesh(path: Path):
    from recon.io.meshes import read_trimesh

    return read_trimesh(path)


def _read_report(folder: Path) -> dict:
    """``folder/report.json`` as a dict ({} when absent or unreadable: it only adds notes)."""
    try:
        doc = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _add_training_cameras(content: SceneContent, art, image_dir) -> None:
    """A `recon train splat` folder: the training cameras (from the dataset recorded in
    report.json) and the test metrics. Anything missing only adds a note."""
    report_path = art.report
    if report_path is None:
        return
    try:
        report = json.loads(report_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        content.notes.append(f"report.json unreadable ({e})")
        return
    if not isinstance(report, dict):
        return
    if report.get("psnr") is not None:
        n_g = report.get("num_gaussians")
        what = f"{n_g:,} Gaussians, " if isinstance(n_g, int) else ("" if report.get("method") == "nerf" else
                                                                    f"{len(content.splats):,} Gaussians, ")
        content.notes.append(f"{report.get('eval_split', 'eval')} PSNR {report['psnr']:.2f} dB, {what}"
                             f"{report.get('steps', '?')} steps")
    data = art.data_path
    if data is None:
        return
    try:
        from recon.io import read_model
        from recon.io.detect import detect as detect_artifact

        rec = read_model(data)
        images = Path(image_dir) if image_dir is not None else detect_artifact(data).images_dir
    except (OSError, ValueError) as e:
        content.notes.append(f"training cameras not shown: {e}")
        return
    cams = content_from_reconstruction(rec, image_dir=images).cameras
    content.cameras = cams
    content.notes.append(f"{len(cams)} training cameras from {data}")
