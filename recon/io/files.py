"""Writing files so that a failure never leaves a half-written file under the final name.

``atomic_write(path, write)`` calls ``write(tmp)`` on a temporary name in the same folder, then
renames it over ``path`` (``os.replace``: atomic on POSIX file systems). A crash (SIGKILL), an
exception or a full disk leaves ``path`` as it was (absent, or the previous complete version),
so a resumable pipeline never takes a partial checkpoint, report or PLY for a finished one. A
write that fails for lack of space raises :class:`recon.errors.DiskFullError` naming ``path``
and the space left; the temporary file is removed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from recon.errors import writing

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]

_TMP_TAG = ".tmp"


def _tmp_name(path: Path, pid: int) -> Path:
    # keeps the suffix (writers that dispatch on it, e.g. write_mesh, still work); hidden, so a
    # folder listing or a detector does not take it for an output
    return path.with_name(f".{path.stem}{_TMP_TAG}{pid}{path.suffix}")


def _remove_stale(path: Path) -> None:
    """Temporary files of ``path`` left by a killed process (its pid no longer runs)."""
    prefix, suffix = f".{path.stem}{_TMP_TAG}", path.suffix
    try:
        siblings = list(path.parent.glob(f"{prefix}*{suffix}"))
    except OSError:
        return
    for f in siblings:
        pid = f.name[len(prefix):len(f.name) - len(suffix)] if suffix else f.name[len(prefix):]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            f.unlink(missing_ok=True)
        except (PermissionError, OSError):
            pass


def atomic_write(path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` through ``write(tmp)`` and a rename; returns ``path``.

    ``write`` receives the temporary path (same folder, same suffix). On any error the temporary
    file is removed and ``path`` is untouched; a full disk (ENOSPC / EFBIG / EDQUOT, also when a
    C++ writer wraps it) becomes DiskFullError naming ``path``.
    """
    path = Path(path)
    _remove_stale(path)
    tmp = _tmp_name(path, os.getpid())
    try:
        with writing(path):
            write(tmp)
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda p: Path(p).write_bytes(data))


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda p: Path(p).write_text(text))
