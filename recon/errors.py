"""Errors shown to users. The CLI prints their message (no traceback) and exits non-zero."""


class ReconError(Exception):
    """Base class for errors caused by input (files, options), not by bugs."""


class FormatError(ReconError, ValueError):
    """A file is truncated, has the wrong magic, or holds invalid values. Name the file."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")
