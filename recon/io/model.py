"""``read_model``: load a Reconstruction from whatever supported model a path points at."""

from __future__ import annotations

from pathlib import Path

from recon.errors import FormatError
from recon.io.detect import find_image_dir
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
