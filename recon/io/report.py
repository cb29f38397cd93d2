"""The one writer of ``report.json`` files (verbs, pipeline stages, trainers).

Rules: NaN and +-inf become ``null`` (strict JSON, readable by every parser); NumPy scalars and
arrays, paths and dataclasses are converted; the file is written atomically (a temporary name in
the same folder, then ``os.replace``: a crash leaves the previous complete report or none); every
report carries a ``"version"`` field (the caller's, else :data:`REPORT_VERSION`) first.
"""

from __future__ import annotations

import dataclasses
import json
import math
from enum import Enum
from pathlib import Path

__all__ = ["REPORT_VERSION", "jsonable", "write_report"]

REPORT_VERSION = 1


def jsonable(obj):
    """``obj`` as plain JSON types: NaN / inf -> None, NumPy -> Python, Path / Enum -> str,
    dataclasses -> dicts (their ``to_json()`` when they have one)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, Enum):
        return str(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "to_json") and callable(obj.to_json):
        return jsonable(obj.to_json())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "tolist"):  # NumPy / torch arrays and scalars
        return jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return jsonable(obj.item())
    return str(obj)


def write_report(path, doc: dict, *, indent: int = 1) -> Path:
    """Write ``doc`` as strict JSON to ``path`` atomically; returns ``path``.

    ``doc``: a dict (or an object with ``to_json()``); a ``"version"`` key is added first when
    missing. Raises DiskFullError (recon.errors) naming ``path`` when the disk is full.
    """
    from recon.io.files import atomic_write_text

    doc = jsonable(doc)
    if not isinstance(doc, dict):
        raise TypeError(f"doc: expected a dict or an object with to_json(), got {type(doc).__name__}")
    doc = {"version": doc.pop("version", REPORT_VERSION), **doc}
    text = json.dumps(doc, indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(Path(path), text)
