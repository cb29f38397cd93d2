"""Errors shown to users. The CLI prints their message (no traceback) and exits non-zero."""

from __future__ import annotations

import errno
from contextlib import contextmanager


class ReconError(Exception):
    """Base class for errors caused by input (files, options), not by bugs."""


class FormatError(ReconError, ValueError):
    """A file is truncated, has the wrong magic, or holds invalid values. Name the file."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")

    @classmethod
    def of(cls, path, error: Exception) -> FormatError:
        """A FormatError for ``path`` from a ValueError of a lower layer (e.g. ``calib.files``),
        whose message may already start with the path."""
        return cls(path, str(error).removeprefix(f"{path}: "))


@contextmanager
def reading(path):
    """Inside it, a ValueError of a lower-layer reader (e.g. ``calib.files``) becomes a
    FormatError naming ``path``; FileNotFoundError and FormatError pass unchanged."""
    try:
        yield
    except FormatError:
        raise
    except ValueError as e:
        raise FormatError.of(path, e) from None


# ---- a full disk -------------------------------------------------------------------------
# ENOSPC: the file system is full; EFBIG: the file would pass the process's file-size limit
# (`ulimit -f`, with SIGXFSZ ignored) or the file system's; EDQUOT: the user's quota is spent.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def disk_full_cause(error: BaseException | None) -> OSError | None:
    """The OSError with a disk-full errno in ``error``'s chain (``__cause__`` / ``__context__``),
    or None. A chain is followed because C++ writers wrap it: ``torch.save`` to a file object
    raises RuntimeError("... unexpected pos ...") whose ``__context__`` is the OSError."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None


def free_bytes(path) -> int | None:
    """Bytes free to this user on the file system holding ``path`` (its nearest existing
    parent), or None when it cannot be asked."""
    import os
    from pathlib import Path

    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _size_text(n: int) -> str:
    for unit, k in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} bytes"


class DiskFullError(ReconError, OSError):
    """A write failed because the disk (or the file-size limit, or the quota) is full. The
    message names the file, the cause and the space left; ``errno`` is the original one."""

    def __init__(self, path, cause: OSError, *, detail: str | None = None):
        self.path = str(path)
        free = free_bytes(path)
        left = f"{_size_text(free)} free on its file system" if free is not None else "free space unknown"
        if cause.errno == errno.EFBIG:
            why = "file too large: the file-size limit (ulimit -f) or the file system's was reached"
        elif cause.errno == errno.EDQUOT:
            why = "disk quota exceeded"
        else:
            why = "no space left on device"
        super().__init__(cause.errno, detail or f"cannot write {path}: {why} ({left})")
        self.free_bytes = free

    def __str__(self) -> str:
        return self.strerror


@contextmanager
def writing(path):
    """Inside it, a write that fails for lack of space (an OSError with ENOSPC / EFBIG / EDQUOT,
    also when wrapped by a C++ writer's RuntimeError) becomes a DiskFullError naming ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        cause = disk_full_cause(e)
        if cause is None:
            raise
        raise DiskFullError(path, cause) from e
