"""File formats at the edge of recon: COLMAP models, transforms.json, PLY point clouds, images.

Foreign conventions (COLMAP's and nerfstudio's pixel corner at (0.5, 0.5), OpenGL camera axes)
are converted inside these readers and writers only; everything they return is in our
conventions (docs/conventions.md). See docs/formats.md for what is read and written.

Importing this package is light (NumPy, calib); Pillow / OpenCV load inside the functions.
"""

from recon._lazy import lazy_exports
from recon.io.colmap import find_colmap_model, read_colmap, write_colmap
from recon.io.detect import Artifact, Kind, detect, find_image_dir
from recon.io.images import (
    CameraGuess,
    exif_focal_px,
    guess_camera,
    image_size,
    read_image,
    write_image,
)
from recon.io.model import read_model
from recon.io.ply import PointCloud, read_ply, read_ply_header, write_ply
from recon.io.transforms_json import (
    TransformsMeta,
    cam_from_world_from_transform_matrix,
    find_transforms,
    read_transforms,
    transform_matrix_from_cam_from_world,
    write_transforms,
)

# 3DGS PLY I/O lives in recon.io.gaussians; resolved lazily so this package stays light whatever
# that module imports.
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(
    ("GaussianCloud", "read_splat_ply", "write_splat_ply"), "recon.io.gaussians"))


__all__ = [
    "Artifact",
    "CameraGuess",
    "GaussianCloud",
    "Kind",
    "PointCloud",
    "TransformsMeta",
    "cam_from_world_from_transform_matrix",
    "detect",
    "exif_focal_px",
    "find_colmap_model",
    "find_image_dir",
    "find_transforms",
    "guess_camera",
    "image_size",
    "read_colmap",
    "read_image",
    "read_model",
    "read_ply",
    "read_ply_header",
    "read_splat_ply",
    "read_transforms",
    "transform_matrix_from_cam_from_world",
    "write_colmap",
    "write_image",
    "write_ply",
    "write_splat_ply",
    "write_transforms",
]
