"""Load anything `recon view` shows into a SceneContent. What a path holds is decided by
:func:`recon.io.detect` (the one detector); :func:`detect` names it in the viewer's words:

==================  ==========================================================================
``sfm_output``      a `recon sfm` folder: ``sparse/0/`` (+ ``report.json``, ``points.ply``)
``splat_output``    a `recon train splat` folder: ``splat.ply`` (+ ``report.json``)
``colmap``          a COLMAP model folder: ``cameras``/``images``/``points3D`` ``.bin`` or ``.txt``
``transforms``      a folder with a nerfstudio / Instant-NGP ``transforms.json``
``splat_ply``       a PLY whose vertices have ``f_dc_0``, ``opacity``, ``scale_0``, ``rot_0`` (3DGS)
``labelled_points`` a PLY point cloud with ``class_id`` and/or ``instance_id`` vertex properties
``points``          any other PLY without faces
``mesh``            a PLY with faces, or ``.obj`` / ``.glb`` / ``.gltf`` / ``.off`` / ``.stl``
==================  ==========================================================================

(a synthetic dataset shows as ``sfm_output``: its ground-truth model). Errors name the path:
unknown kinds, kinds the viewer cannot show (images, videos, NeRF outputs) and unreadable files
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

KINDS = ("sfm_output", "splat_output", "colmap", "transforms", "splat_ply", "labelled_points",
         "points", "mesh")


@dataclass
class PlyHeader:
    format: str  # ascii, binary_little_endian, binary_big_endian
    elements: dict[str, int] = field(default_factory=dict)  # element name -> count
    properties: dict[str, list[str]] = field(default_factory=dict)  # element name -> property names

    def vertex_props(self) -> set[str]:
        return set(self.properties.get("vertex", []))


def read_ply_header(path: str | Path) -> PlyHeader:
    """Parse a PLY header (no payload); FormatError naming the file when it is not a PLY."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError as e:
        raise FormatError(path, f"cannot read ({e.strerror or e})") from None
    if not head.startswith(b"ply"):
        raise FormatError(path, "not a PLY file (it does not start with 'ply')")
    end = head.find(b"end_header")
    if end < 0:
        raise FormatError(path, "PLY header has no 'end_header' in its first 64 KiB (truncated or corrupt)")
    hdr = PlyHeader(format="")
    current = None
    for raw in head[:end].decode("ascii", errors="replace").splitlines()[1:]:
        tok = raw.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format" and len(tok) >= 2:
            hdr.format = tok[1]
        elif tok[0] == "element" and len(tok) == 3:
            try:
                hdr.elements[tok[1]] = int(tok[2])
            except ValueError:
                raise FormatError(path, f"bad PLY element line {raw!r}") from None
            current = tok[1]
            hdr.properties[current] = []
        elif tok[0] == "property" and current is not None and len(tok) >= 3:
            hdr.properties[current].append(tok[-1])
        else:
            raise FormatError(path, f"bad PLY header line {raw!r}")
    if hdr.format not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise FormatError(path, f"unknown PLY format {hdr.format!r}")
    return hdr


def _viewer_kind(art) -> str:
    from recon.io.detect import Kind

    kind = {Kind.SFM_OUTPUT: "sfm_output", Kind.SYNTH_DATASET: "sfm_output", Kind.SPLAT_OUTPUT: "splat_output",
            Kind.COLMAP_MODEL: "colmap", Kind.TRANSFORMS: "transforms", Kind.SPLAT_PLY: "splat_ply",
            Kind.MESH: "mesh"}.get(art.kind)
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
    elif kind in ("points", "labelled_points"):
        pts = _wrap(path, kind, lambda: _points_from_ply(path))
        names = _read_class_names(path) if kind == "labelled_points" else {}
        content = SceneContent(title=title, points=pts, class_names=names)
    else:  # mesh
        content = SceneContent(title=title, mesh=_load_mesh(path))
    content.source = path
    return content


def _load_mesh(path: Path):
    import trimesh

    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as e:
        raise FormatError(path, f"cannot read it as a mesh: {type(e).__name__}: {e}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise FormatError(path, "no triangles found in the mesh file")
    return mesh


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
        content.notes.append(f"{report.get('eval_split', 'eval')} PSNR {report['psnr']:.2f} dB, "
                             f"{report.get('num_gaussians', len(content.splats)):,} Gaussians, "
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
