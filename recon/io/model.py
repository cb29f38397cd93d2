"""``read_model``: load a Reconstruction from whatever supported model a path points at."""

from __future__ import annotations

from pathlib import Path

from recon.errors import FormatError
from recon.scene import Reconstruction

__all__ = ["detect_model", "find_image_dir", "read_model"]


def detect_model(path) -> tuple[str, Path] | None:
    """('colmap', folder) or ('transforms', json file) for ``path``, else None, as
    :func:`recon.io.detect` finds them: a COLMAP folder (bin or txt), one of its files, or a
    parent holding ``sparse/0``; a transforms.json file or a folder holding one. COLMAP wins
    when a folder has both."""
    from recon.io.detect import detect

    try:
        art = detect(path)
    except (FormatError, FileNotFoundError):
        return None
    if art.model_dir is not None:
        return "colmap", art.model_dir
    if art.transforms is not None:
        return "transforms", art.transforms
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


def read_model(path) -> Reconstruction:
    """Read a COLMAP model (bin or txt; folder, file inside it, or parent with ``sparse/0``) or a
    transforms.json (file or folder holding one) into a Reconstruction.

    Raises FileNotFoundError when ``path`` does not exist, FormatError when it holds no model.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    found = detect_model(path)
    if found is None:
        raise FormatError(path, "no COLMAP model (cameras/images/points3D .bin or .txt, or sparse/0) "
                                "and no transforms.json found")
    kind, where = found
    if kind == "colmap":
        from recon.io.colmap import read_colmap

        return read_colmap(where)
    from recon.io.transforms_json import read_transforms

    return read_transforms(where)[0]
