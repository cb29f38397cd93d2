"""calib: conventions, rigid transforms, camera models, calibration files and camera calibration.

Calibration files (OpenCV YAML mono/stereo, recon's report.json, COLMAP camera lines) are read
and written by :mod:`calib.files` only: ``read_camera``, ``read_rig``, ``read_camera_pair``,
``write_opencv_yaml``, ``colmap_camera_line``, ``parse_colmap_camera_line``; a stereo rig is a
:class:`StereoRig`.

The lowest layer of recon: imports nothing else of ours and nothing heavy (NumPy only at import
time; OpenCV is imported inside the functions that need it).
"""

from calib.cameras import (
    MODEL_BY_ID,
    MODELS,
    PIXEL_CORNER_OFFSET,
    Camera,
    ModelSpec,
    Projection,
    ProjectionJacobians,
    Rays,
    Undistorted,
    centre_from_corner,
    corner_from_centre,
    distort,
    project,
    project_jacobians,
    scale_pixels,
    undistort,
    unproject,
)
from calib.files import (
    StereoRig,
    colmap_camera_line,
    parse_colmap_camera_line,
    read_camera,
    read_camera_pair,
    read_rig,
    read_status,
    write_cameras_txt,
    write_opencv_yaml,
    write_report,
)
from calib.transforms import (
    Rigid3,
    Sim3,
    axis_angle_from_matrix,
    look_at,
    matrix_from_axis_angle,
    matrix_from_quat,
    project_to_so3,
    quat_from_matrix,
    quat_multiply,
    quat_slerp,
    rotation_angle_deg,
    skew,
)

__all__ = [
    "MODELS",
    "MODEL_BY_ID",
    "PIXEL_CORNER_OFFSET",
    "Camera",
    "ModelSpec",
    "Projection",
    "ProjectionJacobians",
    "Rays",
    "Rigid3",
    "Sim3",
    "StereoRig",
    "Undistorted",
    "axis_angle_from_matrix",
    "centre_from_corner",
    "colmap_camera_line",
    "corner_from_centre",
    "distort",
    "look_at",
    "matrix_from_axis_angle",
    "matrix_from_quat",
    "parse_colmap_camera_line",
    "project",
    "project_jacobians",
    "project_to_so3",
    "quat_from_matrix",
    "quat_multiply",
    "quat_slerp",
    "read_camera",
    "read_camera_pair",
    "read_rig",
    "read_status",
    "rotation_angle_deg",
    "scale_pixels",
    "skew",
    "undistort",
    "unproject",
    "write_cameras_txt",
    "write_opencv_yaml",
    "write_report",
]
