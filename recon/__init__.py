"""recon: scenes, file formats, synthetic ground truth, features, two-view geometry, stereo,
SfM, bundle adjustment, meshing/export, semantics, pipelines and the ``recon`` CLI.

Importing ``recon`` is light: the names below load on first use (PEP 562), so ``recon --help``
imports neither NumPy nor ``calib``; ``from recon import Reconstruction`` works as usual. Heavy
dependencies (torch, open3d, pycolmap, viser, OpenCV) are imported inside the functions that use
them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recon._lazy import lazy_exports

if TYPE_CHECKING:
    from recon.errors import FormatError, ReconError
    from recon.scene import Image, Point3D, Reconstruction

__version__ = "0.1.0"
__all__ = ["FormatError", "Image", "Point3D", "ReconError", "Reconstruction", "__version__"]

_LAZY = {"FormatError": "recon.errors", "ReconError": "recon.errors", "Image": "recon.scene",
         "Point3D": "recon.scene", "Reconstruction": "recon.scene"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
