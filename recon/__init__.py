"""recon: scenes, file formats, synthetic ground truth, features, two-view geometry, stereo,
SfM, bundle adjustment, meshing/export, semantics, pipelines and the ``recon`` CLI.

Importing ``recon`` is light: NumPy and ``calib`` only. Heavy dependencies (torch, open3d,
pycolmap, viser, OpenCV) are imported inside the functions that use them.
"""

from recon.errors import FormatError, ReconError
from recon.scene import Image, Point3D, Reconstruction

__version__ = "0.1.0"
__all__ = ["FormatError", "Image", "Point3D", "ReconError", "Reconstruction", "__version__"]
