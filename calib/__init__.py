"""calib: conventions, rigid transforms, camera models and camera calibration.

The lowest layer of recon: imports nothing else of ours and nothing heavy (NumPy only at import
time; OpenCV is imported inside the functions that need it).
"""

from calib.cameras import (
    MODEL_BY_ID,
    MODELS,
    Camera,
    ModelSpec,
    Projection,
    ProjectionJacobians,
    Rays,
    Undistorted,
    distort,
    project,
    project_jacobians,
    undistort,
    unproject,
)
from calib.transforms import (
    Rigid3,
    Sim3,
    axis_angle_from_matrix,
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
    "Camera",
    "ModelSpec",
    "Projection",
    "ProjectionJacobians",
    "Rays",
    "Rigid3",
    "Sim3",
    "Undistorted",
    "axis_angle_from_matrix",
    "distort",
    "matrix_from_axis_angle",
    "matrix_from_quat",
    "project",
    "project_jacobians",
    "project_to_so3",
    "quat_from_matrix",
    "quat_multiply",
    "quat_slerp",
    "rotation_angle_deg",
    "skew",
    "undistort",
    "unproject",
]
