"""Stereo depth: rectification (calibrated rig or estimated F), SGBM + WLS disparity with a
left-right check, disparity -> depth (Z = f B / d) with per-pixel uncertainty, coloured point
clouds, and pictures.

Functional API::

    from calib import read_rig                            # the one calibration reader
    from recon.stereo import stereo_depth
    rig = read_rig("stereo.yaml")                         # OpenCV YAML from `recon calibrate`
    out = stereo_depth(left_rgb, right_rgb, rig)           # -> StereoOutput
    out.depth, out.depth_sigma, out.points, out.colors

Conventions: disparity d = u_left - u_right (pixels) in the rectified left view; depth is z in
the rectified left frame; point clouds are in the original left camera frame.
"""

from recon.stereo._disparity import (
    DisparityResult,
    SGBMConfig,
    compute_disparity,
    depth_from_disparity,
    depth_sigma,
    disparity_range_from_matches,
    points_from_depth,
)
from recon.stereo._pair import (
    StereoPairOptions,
    StereoPairResult,
    stereo_pair,
    uncalibrated_matches,
)
from recon.stereo._pipeline import (
    StereoConfig,
    StereoOutput,
    fit_calibration_to_images,
    stereo_depth,
)
from recon.stereo._rectify import (
    StereoRectification,
    rectify_calibrated,
    rectify_images,
    rectify_uncalibrated,
)

__all__ = [
    "DisparityResult",
    "SGBMConfig",
    "StereoConfig",
    "StereoOutput",
    "StereoPairOptions",
    "StereoPairResult",
    "StereoRectification",
    "compute_disparity",
    "depth_from_disparity",
    "depth_sigma",
    "disparity_range_from_matches",
    "fit_calibration_to_images",
    "points_from_depth",
    "rectify_calibrated",
    "rectify_images",
    "rectify_uncalibrated",
    "stereo_depth",
    "stereo_pair",
    "uncalibrated_matches",
]
