"""The one lazy re-export helper (PEP 562) of our packages: names of a package load their
module on first use, so importing the package stays light (``recon --help`` without NumPy,
``recon train --help`` without torch, ``import viewer`` without viser). Standard library only.

Usage, in a package ``__init__``::

    _LAZY = {"Gaussians": "render.splat.gaussians", "train": "render.splat.trainer"}
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(``__getattr__``, ``__dir__``) for the module ``package``: ``names`` maps an attribute to
    the module that defines it; the first access imports that module and caches the value in
    the package's namespace. Unknown names raise AttributeError as Python's own does."""

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            sys.modules[package].__dict__[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(sys.modules[package].__dict__) | set(names))

    return __getattr__, __dir__
