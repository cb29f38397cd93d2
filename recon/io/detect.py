"""What does a path hold? The one detector every verb asks (`view`, `info`, `train`, `render`,
`export`, `label`).

``detect(path) -> Artifact``: the :class:`Kind` of ``path`` and the paths found with it. Nothing
is loaded; only names, PLY headers and small JSON files (``report.json``, ``gt.json``) are read.

Example::

    >>> from recon.io import detect, Kind
    >>> art = detect("out/sfm")                       # doctest: +SKIP
    >>> art.kind, art.model_dir, art.images_dir       # doctest: +SKIP
    (<Kind.SFM_OUTPUT: 'sfm_output'>, PosixPath('out/sfm/sparse/0'), PosixPath('photos'))
    >>> art.is_posed_images                           # doctest: +SKIP
    True

The rules (folders in order, files by name, extension and PLY header) are in docs/formats.md,
"What a path holds"; tests/test_detect.py has one fixture per kind.

Paths in the :class:`Artifact` (None when absent): ``model_dir`` (COLMAP model folder),
``transforms`` (the JSON), ``images_dir`` (photos of a model, via :func:`recon.io.find_image_dir`),
``report`` (report.json), ``checkpoint``, ``ply`` (splat.ply / points.ply / the PLY itself),
``mesh``, ``depth_dir``, ``labels_dir``, ``gt`` (gt.json), ``undistorted`` (a ``recon sfm
--undistort`` folder), ``data_path`` (the dataset a trained output was trained on, from its
report). ``method`` is the report's ``"method"`` (``"splat"``, ``"nerf"``) for trained outputs.

Errors: a missing path raises ``FileNotFoundError``; an unknown or unreadable one raises
``recon.errors.FormatError`` naming it. A consumer that cannot use a kind says so with
:meth:`Artifact.require`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from recon.errors import FormatError

__all__ = ["MESH_EXTENSIONS", "VIDEO_EXTENSIONS", "Artifact", "Kind", "detect", "find_image_dir"]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
MESH_EXTENSIONS = (".obj", ".glb", ".gltf", ".off", ".stl")
_SPLAT_PROPS = {"f_dc_0", "opacity", "scale_0", "rot_0"}
_LABEL_PROPS = {"class_id", "instance_id"}
_COLMAP_FILES = {f"{s}.{e}" for s in ("cameras", "images", "points3D") for e in ("bin", "txt")}


class Kind(str, Enum):
    """What a path holds. The values are stable strings (JSON, ``recon info --json``)."""

    NERF_OUTPUT = "nerf_output"
    SPLAT_OUTPUT = "splat_output"
    SYNTH_DATASET = "synth_dataset"
    SFM_OUTPUT = "sfm_output"
    STEREO_OUTPUT = "stereo_output"
    COLMAP_MODEL = "colmap_model"
    TRANSFORMS = "transforms"
    IMAGE_FOLDER = "image_folder"
    SPLAT_PLY = "splat_ply"
    MESH = "mesh"
    POINT_CLOUD = "point_cloud"
    IMAGE = "image"
    VIDEO = "video"
    REPORT = "report"

    def __str__(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        """Words for messages: 'sfm output', '3DGS splat PLY', ..."""
        return _LABELS[self]


_LABELS = {
    Kind.NERF_OUTPUT: "NeRF training output", Kind.SPLAT_OUTPUT: "splat training output",
    Kind.SYNTH_DATASET: "synthetic dataset", Kind.SFM_OUTPUT: "SfM output",
    Kind.STEREO_OUTPUT: "stereo output",
    Kind.COLMAP_MODEL: "COLMAP model", Kind.TRANSFORMS: "transforms.json dataset",
    Kind.IMAGE_FOLDER: "image folder", Kind.SPLAT_PLY: "3DGS splat PLY", Kind.MESH: "mesh",
    Kind.POINT_CLOUD: "point cloud", Kind.IMAGE: "image", Kind.VIDEO: "video",
    Kind.REPORT: "report",
}

#: Kinds that hold posed images (a trainer's input): a COLMAP model or transforms.json with photos.
POSED_KINDS = (Kind.SFM_OUTPUT, Kind.COLMAP_MODEL, Kind.TRANSFORMS, Kind.SYNTH_DATASET)
#: Kinds written by a trainer (``recon render``, ``recon export`` read them).
TRAINED_KINDS = (Kind.SPLAT_OUTPUT, Kind.NERF_OUTPUT)


@dataclass(frozen=True)
class Artifact:
    """The kind of a path and the paths found with it (see the module docstring)."""

    kind: Kind
    path: Path  # what was asked about
    model_dir: Path | None = None
    transforms: Path | None = None
    images_dir: Path | None = None
    report: Path | None = None
    checkpoint: Path | None = None
    ply: Path | None = None
    mesh: Path | None = None
    depth_dir: Path | None = None
    labels_dir: Path | None = None
    gt: Path | None = None
    undistorted: Path | None = None
    data_path: Path | None = None
    method: str | None = None
    labelled: bool = False  # point_cloud: has class_id / instance_id per vertex

    @property
    def is_posed_images(self) -> bool:
        """True when a trainer can read it (a COLMAP model or transforms.json)."""
        return self.kind in POSED_KINDS and (self.model_dir is not None or self.transforms is not None)

    def require(self, *kinds: Kind, verb: str) -> Artifact:
        """``self`` when its kind is one of ``kinds``; else FormatError naming the path, what it
        is and what ``verb`` needs."""
        if self.kind in kinds:
            return self
        want = ", ".join(k.label for k in kinds)
        raise FormatError(self.path, f"is a {self.kind.label}; {verb} needs a {want}")


def detect(path) -> Artifact:
    """The :class:`Artifact` ``path`` holds (see the module docstring for the rules).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FormatError: nothing recon reads is there (the message names the path and what is read).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        art = _detect_folder(path)
        if art is None:
            raise FormatError(path, "folder is not a COLMAP model (cameras/images/points3D .bin|.txt), a "
                                    "`recon sfm` output (sparse/0), a trained output (splat.ply, or "
                                    "report.json + checkpoint.pt), a synthetic dataset (gt.json), a "
                                    "transforms.json dataset or an image folder")
        return art
    return _detect_file(path)


# =========================================================================================
# Folders
# =========================================================================================

def _model_in(folder: Path) -> Path | None:
    from recon.io.colmap import colmap_model_kind

    return folder if colmap_model_kind(folder) else None


def _read_json(path: Path) -> dict:
    """A small JSON file as a dict ({} when absent, unreadable or not an object)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _opt(p: Path) -> Path | None:
    return p if p.exists() else None


def _data_path(report: dict, folder: Path) -> Path | None:
    d = report.get("data_path")
    if not isinstance(d, str) or not d:
        return None
    p = Path(d)
    return p if p.is_absolute() else folder / p


def _detect_folder(folder: Path) -> Artifact | None:
    if (folder / "pipeline.json").is_file() or ((folder / "sfm" / "sparse").is_dir() and (folder / "scene").is_dir()):
        # a `recon reconstruct` (pipeline.json) or `recon demo` output: its trained model, else its
        # oriented / SfM model, speaks for it (`recon view OUT`, `recon export OUT`, ...)
        for sub in ("splat", "nerf", "scene", "sfm"):
            if (folder / sub).is_dir() and (art := _detect_folder(folder / sub)) is not None:
                return art
    report_path = _opt(folder / "report.json")
    report = _read_json(folder / "report.json") if report_path else {}
    method = report.get("method") if isinstance(report.get("method"), str) else None
    ckpt = _opt(folder / "checkpoint.pt")

    if method == "nerf" and ckpt is not None:
        return Artifact(Kind.NERF_OUTPUT, folder, report=report_path, checkpoint=ckpt, method=method,
                        data_path=_data_path(report, folder), ply=_opt(folder / "points.ply"),
                        mesh=next((p for p in sorted(folder.glob("mesh.*")) if p.suffix in (".ply", *MESH_EXTENSIONS)), None))
    if (folder / "splat.ply").is_file():
        return Artifact(Kind.SPLAT_OUTPUT, folder, report=report_path, checkpoint=ckpt, ply=folder / "splat.ply",
                        method=method or "splat", data_path=_data_path(report, folder))

    transforms = _opt(folder / "transforms.json")
    if (folder / "gt.json").is_file():
        model = _model_in(folder / "sparse" / "0")
        return Artifact(Kind.SYNTH_DATASET, folder, gt=folder / "gt.json", model_dir=model, transforms=transforms,
                        images_dir=_opt(folder / "images"), depth_dir=_opt(folder / "depth"),
                        labels_dir=_opt(folder / "labels"), report=report_path)

    if report_path is not None and all((folder / n).is_file() for n in ("depth.npy", "points.ply")):
        return Artifact(Kind.STEREO_OUTPUT, folder, report=report_path, ply=folder / "points.ply")
    model = _model_in(folder / "sparse" / "0") or _model_in(folder / "sparse")
    if model is not None:
        return Artifact(Kind.SFM_OUTPUT, folder, model_dir=model, transforms=transforms, report=report_path,
                        images_dir=find_image_dir(model, dataset_dir=folder), ply=_opt(folder / "points.ply"),
                        undistorted=_opt(folder / "undistorted"))
    model = _model_in(folder) or _model_in(folder / "0")  # a model folder, or a `sparse` folder holding 0/
    if model is not None:
        return Artifact(Kind.COLMAP_MODEL, folder, model_dir=model, images_dir=find_image_dir(model))
    if transforms is None:  # Blender synthetic scenes: transforms_{train,val,test}.json
        splits = sorted(folder.glob("transforms_*.json"))
        transforms = next((p for p in splits if p.name == "transforms_train.json"), splits[0] if splits else None)
    if transforms is not None:
        return Artifact(Kind.TRANSFORMS, folder, transforms=transforms, images_dir=folder,
                        report=report_path, ply=_opt(folder / "points.ply"))

    from recon.io.images import list_images

    if list_images(folder):
        return Artifact(Kind.IMAGE_FOLDER, folder, images_dir=folder)
    if (folder / "images").is_dir() and list_images(folder / "images"):
        return Artifact(Kind.IMAGE_FOLDER, folder, images_dir=folder / "images")
    if report_path is not None:  # e.g. a run that stopped before writing its model
        return Artifact(Kind.REPORT, folder, report=report_path, method=method)
    return None


def find_image_dir(model_dir, *, dataset_dir=None) -> Path | None:
    """The folder holding the photos of a COLMAP model, or None when none is found.

    Looks for ``images/`` in ``model_dir`` and up to three levels above it (``DATA/sparse/0`` ->
    ``DATA/images``), then, for a ``recon sfm`` output folder ``dataset_dir`` (which leaves the
    photos where they were), at the folder its ``transforms.json`` frames point to (relative to
    the JSON, so it survives moving the tree) and at the ``input`` recorded in its report.json.
    """
    import json

    model_dir = Path(model_dir)
    cands = [model_dir / "images", *(p / "images" for p in list(model_dir.parents)[:3])]
    if dataset_dir is not None:
        dataset_dir = Path(dataset_dir)
        for name, key in (("transforms.json", "frames"), ("report.json", "input")):
            try:
                doc = json.loads((dataset_dir / name).read_text())
            except (OSError, ValueError):
                continue
            try:
                if key == "frames":
                    cands.append((dataset_dir / doc["frames"][0]["file_path"]).parent)
                elif isinstance(doc.get("input"), str):
                    cands.append(Path(doc["input"]))
            except (KeyError, IndexError, TypeError, AttributeError):
                continue
    return next((c for c in cands if c.is_dir()), None)


# =========================================================================================
# Files
# =========================================================================================

def _detect_file(path: Path) -> Artifact:
    from recon.io.images import IMAGE_EXTENSIONS

    ext = path.suffix.lower()
    if ext == ".ply":
        return _detect_ply(path)
    if ext in MESH_EXTENSIONS:
        return Artifact(Kind.MESH, path, mesh=path)
    if ext in IMAGE_EXTENSIONS:
        return Artifact(Kind.IMAGE, path)
    if ext in VIDEO_EXTENSIONS:
        return Artifact(Kind.VIDEO, path)
    if path.name in _COLMAP_FILES:
        model = _model_in(path.parent)
        if model is None:
            raise FormatError(path, "a COLMAP model file, but its folder lacks the other two "
                                    "(cameras, images, points3D with one extension)")
        return Artifact(Kind.COLMAP_MODEL, path, model_dir=model, images_dir=find_image_dir(model))
    if ext == ".json":
        if path.name == "gt.json":
            return _detect_folder(path.parent) or Artifact(Kind.SYNTH_DATASET, path, gt=path)
        if path.name == "report.json":
            parent = _detect_folder(path.parent)
            if parent is not None and parent.kind in (*TRAINED_KINDS, Kind.SFM_OUTPUT):
                return parent
            return Artifact(Kind.REPORT, path, report=path)
        if path.name.startswith("transforms"):  # transforms.json, Blender's transforms_train.json
            return Artifact(Kind.TRANSFORMS, path, transforms=path, images_dir=path.parent)
        doc = _read_json(path)
        if isinstance(doc.get("frames"), list):
            return Artifact(Kind.TRANSFORMS, path, transforms=path, images_dir=path.parent)
        raise FormatError(path, "a JSON file that is neither a transforms.json (no 'frames' list), "
                                "gt.json nor report.json")
    raise FormatError(path, f"unknown file type {ext or '(no extension)'!r}: recon reads COLMAP models, "
                            "transforms.json, PLY (points, 3DGS splats, meshes), OBJ/GLB/GLTF/STL/OFF, "
                            "images and videos")


def _detect_ply(path: Path) -> Artifact:
    from recon.io.ply import read_ply_header

    hdr = read_ply_header(path)
    face = hdr.element("face")
    if face is not None and face.count > 0:
        return Artifact(Kind.MESH, path, mesh=path, ply=path)
    vertex = hdr.element("vertex")
    if vertex is None:
        raise FormatError(path, "PLY has no 'vertex' element")
    props = {n for n, _ in vertex.properties}
    if _SPLAT_PROPS <= props:
        return Artifact(Kind.SPLAT_PLY, path, ply=path)
    return Artifact(Kind.POINT_CLOUD, path, ply=path, labelled=bool(props & _LABEL_PROPS))
