"""The one writer of ``report.json`` files (verbs, pipeline stages, trainers).

The implementation is :func:`calib.files.write_report` (calib is the bottom layer and imports
nothing of recon, so the single implementation lives there); this module re-exports it and turns
a full disk into :class:`recon.errors.DiskFullError` naming the file.

Rules: NaN and +-inf become ``null`` (strict JSON, readable by every parser); NumPy scalars and
arrays, paths and dataclasses are converted; the file is written atomically (a temporary name in
the same folder, then ``os.replace``: a crash leaves the previous complete report or none); every
report carries a ``"version"`` field (the caller's, else :data:`REPORT_VERSION`) first.
"""

from __future__ import annotations

from pathlib import Path

from calib.files import REPORT_VERSION, jsonable
from calib.files import write_report as _write_report
from recon.errors import writing

__all__ = ["REPORT_VERSION", "jsonable", "write_report"]


def write_report(path, doc, *, indent: int = 1) -> Path:
    """Write ``doc`` (a dict or an object with ``to_json()``) as strict JSON to ``path``
    atomically, ``"version"`` first; returns ``path``. DiskFullError names ``path`` when the disk
    is full (recon.errors.writing); TypeError when ``doc`` is not a dict."""
    with writing(path):
        return _write_report(path, doc, indent=indent)
