"""PoseLib (Larsson et al., BSD-3) as the hypothesis engine of the robust estimators.

PoseLib runs LO-RANSAC over its C++ minimal solvers (five-point for E, seven-point for F,
four-point for H) and refines the best model by Levenberg-Marquardt under a Cauchy loss. On the
real pair sets of bench/bench_twoview_real.py it is the most accurate and most robust of the
peers measured (docs/twoview.md), so ``method="poselib"`` is the default of every estimator
here and of :class:`recon.twoview.TwoViewConfig`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["poselib_fundamental", "poselib_homography", "poselib_relative_pose"]

# PoseLib's default floor of 1000 hypotheses costs ~10x the adaptive count on well-matched real
# pairs and bought no accuracy on the bench's pair sets; 200 keeps a margin for low inlier ratios
# (the adaptive rule still raises the count where the inlier ratio calls for it).
MIN_ITERATIONS = 200


def _ransac(threshold_key: str, threshold: float, confidence: float, max_iterations: int, seed: int,
            min_iterations: int = MIN_ITERATIONS) -> dict:
    return {threshold_key: float(threshold), "success_prob": float(confidence),
            "max_iterations": int(max_iterations), "min_iterations": int(min(min_iterations, max_iterations)),
            "seed": int(seed) & 0xFFFFFFFF}


def _camera(K: np.ndarray) -> dict:
    return {"model": "PINHOLE", "width": 0, "height": 0, "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}


def poselib_relative_pose(p1: np.ndarray, p2: np.ndarray, K1: np.ndarray, K2: np.ndarray, *,
                          threshold_px: float, confidence: float = 0.999, max_iterations: int = 10000,
                          seed: int = 0, min_iterations: int = MIN_ITERATIONS):
    """LO-RANSAC five-point + Cauchy refinement on undistorted pinhole pixels p1, p2 [N, 2] of
    cameras K1, K2 [3, 3]; threshold on the Sampson distance in pixels.

    Returns (R [3, 3], t [3] unit, inliers [N] bool, iterations) of cam2_from_cam1, or None."""
    import poselib

    if len(p1) < 5:
        return None
    pose, info = poselib.estimate_relative_pose(
        np.ascontiguousarray(p1, np.float64), np.ascontiguousarray(p2, np.float64), _camera(K1), _camera(K2),
        _ransac("max_epipolar_error", threshold_px, confidence, max_iterations, seed, min_iterations), {})
    inl = np.asarray(info.get("inliers", []), bool)
    t = np.asarray(pose.t, np.float64)
    if inl.sum() < 5 or not np.isfinite(t).all() or np.linalg.norm(t) == 0:
        return None
    return np.asarray(pose.R, np.float64), t / np.linalg.norm(t), inl, int(info.get("iterations", -1))


def poselib_fundamental(x1: np.ndarray, x2: np.ndarray, *, threshold_px: float, confidence: float = 0.999,
                        max_iterations: int = 10000, seed: int = 0):
    """LO-RANSAC seven-point + refinement; threshold on the Sampson distance (pixels).
    Returns (F [3, 3] unit norm, x2^T F x1 = 0; inliers [N] bool; iterations) or None."""
    import poselib

    if len(x1) < 8:
        return None
    F, info = poselib.estimate_fundamental(np.ascontiguousarray(x1, np.float64), np.ascontiguousarray(x2, np.float64),
                                           _ransac("max_epipolar_error", threshold_px, confidence, max_iterations,
                                                   seed), {})
    F = np.asarray(F, np.float64)
    inl = np.asarray(info.get("inliers", []), bool)
    if not np.isfinite(F).all() or inl.sum() < 8:
        return None
    return F / np.linalg.norm(F), inl, int(info.get("iterations", -1))


def poselib_homography(x1: np.ndarray, x2: np.ndarray, *, threshold_px: float, confidence: float = 0.999,
                       max_iterations: int = 10000, seed: int = 0):
    """LO-RANSAC four-point + refinement; ``threshold_px`` on our scaled symmetric transfer
    distance, i.e. 2x that on PoseLib's one-way transfer error. Returns (H unit norm, inliers,
    iterations) or None."""
    import poselib

    if len(x1) < 4:
        return None
    H, info = poselib.estimate_homography(np.ascontiguousarray(x1, np.float64), np.ascontiguousarray(x2, np.float64),
                                          _ransac("max_reproj_error", 2.0 * threshold_px, confidence,
                                                  max_iterations, seed), {})
    H = np.asarray(H, np.float64)
    inl = np.asarray(info.get("inliers", []), bool)
    if not np.isfinite(H).all() or inl.sum() < 4:
        return None
    return H / np.linalg.norm(H), inl, int(info.get("iterations", -1))


def poselib_refine_relative_pose(R: np.ndarray, t: np.ndarray, p1: np.ndarray, p2: np.ndarray, K1: np.ndarray,
                                 K2: np.ndarray, *, scale_px: float, max_iterations: int = 30):
    """Levenberg-Marquardt of (R, t on the unit sphere) on the Sampson error of the matches p1, p2
    [N, 2] (undistorted pinhole pixels), Cauchy loss at ``scale_px``. Returns (R, t unit)."""
    import poselib

    pose = poselib.CameraPose()
    pose.R, pose.t = np.asarray(R, np.float64), np.asarray(t, np.float64)
    f = 0.25 * (K1[0, 0] + K1[1, 1] + K2[0, 0] + K2[1, 1])
    out, _info = poselib.refine_relative_pose(
        np.ascontiguousarray(p1, np.float64), np.ascontiguousarray(p2, np.float64), pose, _camera(K1), _camera(K2),
        {"loss_type": "CAUCHY", "loss_scale": float(scale_px) / f, "max_iterations": int(max_iterations)})
    t = np.asarray(out.t, np.float64)
    return np.asarray(out.R, np.float64), t / max(np.linalg.norm(t), 1e-300)
