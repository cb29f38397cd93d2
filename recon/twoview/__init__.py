"""Two-view geometry: epipolar estimation (F, E, H), robust loops, relative pose, triangulation,
degeneracy detection (planar scenes, pure rotation) and pictures.

Functional API (NumPy in, typed results out; OpenCV and SciPy are imported lazily)::

    from recon.twoview import estimate_fundamental, estimate_essential, recover_pose
    fit = estimate_fundamental(x1, x2, threshold_px=1.0)   # -> EpipolarResult (PoseLib LO-RANSAC)
    efit = estimate_essential(uv1, uv2, cam1, cam2)                        # -> EssentialResult
    pose = recover_pose(efit.E, cam1.cam_from_img(uv1), cam2.cam_from_img(uv2), mask=efit.inliers)
    tri = triangulate_dlt(uv1, uv2, cam1, cam2, pose.cam2_from_cam1)       # -> Triangulation
    geo = two_view_geometry(uv1, uv2, cam1, cam2)                          # everything, with a verdict
    res = analyze_pair("a.jpg", "b.jpg", "out/pair", PairOptions(calib="cameras.txt"))  # the CLI's job

Conventions: ``x2^T F x1 = 0``; ``cam2_from_cam1`` maps camera-1 points into camera 2;
pixels have (0, 0) at the centre of the top-left pixel.
"""

from recon.twoview._analyze import (
    PairAnalysis,
    PairOptions,
    analyze_pair,
    default_threshold_px,
)
from recon.twoview._degeneracy import VERDICTS, Degeneracy, classify_degeneracy, gric
from recon.twoview._epipolar import (
    EpipolarResult,
    EssentialResult,
    FinalLoss,
    HomographyResult,
    RelativePose,
    RobustFit,
    cheirality_outliers,
    decompose_essential,
    epipolar_cost,
    essential_from_fundamental,
    essential_from_pose,
    estimate_essential,
    estimate_fundamental,
    estimate_homography,
    final_loss,
    fundamental_from_essential,
    normalized_coords,
    recover_pose,
)
from recon.twoview._fivepoint import essential_five_point
from recon.twoview._pipeline import TwoViewConfig, TwoViewGeometry, two_view_geometry
from recon.twoview._relpose import PoseRefinement, refine_relative_pose
from recon.twoview._solvers import (
    enforce_rank2,
    fundamental_eight_point,
    fundamental_seven_point,
    hartley_normalization,
    homography_dlt,
    homography_transfer_error,
    project_to_essential,
    sampson_error,
)
from recon.twoview._triangulation import (
    Triangulation,
    TwoViewRefinement,
    refine_two_view,
    triangulate_dlt,
    triangulate_midpoint,
)

__all__ = [
    "VERDICTS",
    "Degeneracy",
    "EpipolarResult",
    "EssentialResult",
    "FinalLoss",
    "HomographyResult",
    "PairAnalysis",
    "PairOptions",
    "PoseRefinement",
    "RelativePose",
    "RobustFit",
    "Triangulation",
    "TwoViewConfig",
    "TwoViewGeometry",
    "TwoViewRefinement",
    "analyze_pair",
    "cheirality_outliers",
    "classify_degeneracy",
    "decompose_essential",
    "default_threshold_px",
    "enforce_rank2",
    "epipolar_cost",
    "essential_five_point",
    "essential_from_fundamental",
    "essential_from_pose",
    "estimate_essential",
    "estimate_fundamental",
    "estimate_homography",
    "final_loss",
    "fundamental_eight_point",
    "fundamental_from_essential",
    "fundamental_seven_point",
    "gric",
    "hartley_normalization",
    "homography_dlt",
    "homography_transfer_error",
    "normalized_coords",
    "project_to_essential",
    "recover_pose",
    "refine_relative_pose",
    "refine_two_view",
    "sampson_error",
    "triangulate_dlt",
    "triangulate_midpoint",
    "two_view_geometry",
]
