"""Errors shown to users. The CLI prints their message (no traceback) and exits non-zero."""

from __future__ import annotations


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
        msg = str(error)
        prefix = f"{path}: "
        return cls(path, msg[len(prefix):] if msg.startswith(prefix) else msg)
