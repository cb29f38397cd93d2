"""Model selection between F (general 3D scene) and H (planar scene or pure rotation).

Two views of a plane, or two views from the same centre (pure rotation), are related by a
homography; F (and E with the eight/seven-point solvers) is then not determined and a robust
loop happily returns one of a whole family of matrices with a high inlier count and a
meaningless translation. We detect it with Torr's GRIC (Geometric Robust Information Criterion,
Torr 1998/2002), which charges each model for its dimension and number of parameters:

    GRIC = sum_i min(e_i^2 / sigma^2, lambda3 (r - d)) + lambda1 d n + lambda2 k
    r = 4 (two 2D points), lambda1 = ln r, lambda2 = ln(r n), lambda3 = 2,
    F: d = 3 (a 3-manifold in R^4), k = 7;  H: d = 2, k = 8,

evaluated on the matches that are inliers to F or to H (so gross outliers, which both models
reject, do not bias the comparison). H wins (lower GRIC) when the extra dimension of F buys
no better fit. GRIC caps each point's cost, so a dominant plane with a minority of off-plane
points can still make H win although F is well determined; we therefore call the scene general
whenever at least 10 % (and >= 20) of the F inliers are clearly off the homography (residual
> 4 sigma), like COLMAP's H/E inlier-ratio test (max_H_inlier_ratio = 0.8). An H-winning pair is then split
into pure rotation (H is a conjugate rotation
K2 R K1^-1: with calibration the normalised H has equal singular values; without, its eigenvalues
have equal moduli, assuming K1 = K2) and planar. F-winning pairs whose triangulated points show
a tiny median parallax are marked ``low_parallax`` (the translation direction is unreliable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib import Camera

__all__ = ["VERDICTS", "Degeneracy", "classify_degeneracy", "gric"]

VERDICTS = {
    "general": "general 3D scene with enough parallax: the relative pose is determined",
    "low_parallax": "F fits better than H but the parallax is small: rotation is reliable, the translation "
                    "direction is not",
    "planar": "the matches lie on a plane (a homography explains them): F / E are not unique; the pose is "
              "ambiguous",
    "pure_rotation": "the camera only rotated (a homography that is a conjugate rotation explains the "
                     "matches): rotation is determined, translation is not",
    "identical": "the two images are (nearly) identical: no motion to estimate",
    "too_few_matches": "too few matches to estimate two-view geometry",
    "no_model": "no epipolar model could be fitted to the matches",
}


@dataclass(frozen=True)
class Degeneracy:
    """Verdict of :func:`classify_degeneracy`.

    verdict:        a key of ``VERDICTS`` (see there for the meaning).
    pose_reliable:  R and the translation direction can be trusted. From this function alone:
                    True for "general"; :func:`two_view_geometry` replaces it by the measured
                    rule (calibrated cameras, unambiguous, small pose uncertainty).
    rotation_reliable: R can be trusted. From this function alone: "general", "low_parallax",
                    "pure_rotation"; :func:`two_view_geometry` replaces it as above.
    gric_f, gric_h: GRIC scores (lower is better); NaN when not computed.
    h_f_inlier_ratio: H inliers / F inliers (close to 1 or above for planar / rotation).
    sigma_px:       noise level used by GRIC (robust estimate from the F residuals), pixels.
    median_displacement_px: median |x2 - x1| of the matches.
    median_parallax_deg: median triangulation angle of the inliers (NaN when not given).
    rotation_score: for an H winner, how far H is from a conjugate rotation (0 = exactly).
    message:        a sentence for the user.
    rotation_sigma_deg, translation_sigma_deg: 1-sigma uncertainty of the final rotation and
                    translation direction (Gauss-Newton covariance of the pose fit), degrees;
                    set by :func:`two_view_geometry`, which also sets the two reliability
                    flags from them (see ``recon.twoview._pipeline.ROTATION_BOUND_DEG``).
    pose_ambiguous: a planar pair where two different poses fit the matches equally well.
    rotation_spread_deg, translation_spread_deg: largest difference between the chosen pose
                    and independent re-estimates (other subsets and seeds); included in the
                    two sigmas above (NaN when not computed).
    """

    verdict: str
    pose_reliable: bool
    rotation_reliable: bool
    gric_f: float
    gric_h: float
    h_f_inlier_ratio: float
    sigma_px: float
    median_displacement_px: float
    median_parallax_deg: float
    rotation_score: float
    message: str
    rotation_sigma_deg: float = float("nan")
    translation_sigma_deg: float = float("nan")
    pose_ambiguous: bool = False
    rotation_spread_deg: float = float("nan")
    translation_spread_deg: float = float("nan")


def gric(residuals_px: np.ndarray, sigma_px: float, d: int, k: int, r: int = 4) -> float:
    """Torr's GRIC of a model with residuals [n] (pixels, distances in R^r), manifold dimension
    d and k parameters (see the module docstring). Lower is better."""
    e = np.asarray(residuals_px, np.float64)
    n = e.size
    rho = np.minimum((e / sigma_px) ** 2, 2.0 * (r - d))
    return float(rho.sum() + np.log(r) * d * n + np.log(r * n) * k)


def _spread(Hn: np.ndarray) -> float:
    s = np.linalg.svd(Hn, compute_uv=False)
    return float(s[0] / max(s[2], 1e-300) - 1.0)


def _rotation_score(H: np.ndarray, camera1: Camera | None, camera2: Camera | None, focal_known: bool) -> float:
    """0 for a conjugate rotation K2 R K1^-1; grows with |t| / plane distance for a planar
    homography. With unknown focal lengths, the smallest score over a focal search (principal
    points from the cameras, K1 = K2 assumed); without cameras, the spread of H's eigenvalue
    moduli (a conjugate rotation has eigenvalues of equal modulus)."""
    if camera1 is not None and camera2 is not None:
        if focal_known:
            return _spread(np.linalg.inv(camera2.K) @ H @ camera1.K)
        best = np.inf
        base = max(camera1.width, camera1.height)
        for f in base * np.geomspace(0.2, 5.0, 121):
            K1, K2 = camera1.K.copy(), camera2.K.copy()
            K1[0, 0] = K1[1, 1] = K2[0, 0] = K2[1, 1] = f
            best = min(best, _spread(np.linalg.inv(K2) @ H @ K1))
        return best
    det = np.linalg.det(H)
    if abs(det) < 1e-300:
        return float("inf")
    ev = np.abs(np.linalg.eigvals(H / np.cbrt(det)))
    return float(ev.max() / max(ev.min(), 1e-300) - 1.0)


def classify_degeneracy(x1, x2, f_residuals, f_inliers, h_residuals, h_inliers, *, camera1: Camera | None = None,
                        camera2: Camera | None = None, H: np.ndarray | None = None,
                        parallax_deg: np.ndarray | None = None, min_matches: int = 15,
                        min_parallax_deg: float = 1.0, rotation_tol: float = 0.03,
                        sigma_min_px: float = 0.3, focal_known: bool = True, off_plane_sigmas: float = 4.0,
                        off_plane_fraction: float = 0.1, min_off_plane: int = 20) -> Degeneracy:
    """Decide whether a two-view configuration determines a relative pose.

    x1, x2:          [N, 2] matched pixels (for calibrated cameras: undistorted pinhole pixels,
                     the space in which both fits' residuals were measured).
    f_residuals, f_inliers: [N] Sampson distances (px) and inlier mask of the F (or E) fit.
    h_residuals, h_inliers: [N] transfer distances (px, :func:`homography_transfer_error`) and
                     inlier mask of the H fit.
    camera1, camera2: intrinsics when known (decide rotation vs plane from K2^-1 H K1).
    H:               the fitted homography [3, 3] (needed to tell rotation from plane).
    parallax_deg:    [M] triangulation angles of the pose's inliers, if a pose was computed.
    min_matches:     below this: "too_few_matches".
    min_parallax_deg: median parallax below this: "low_parallax".
    rotation_tol:    ``rotation_score`` below this: "pure_rotation" (else "planar").
    sigma_min_px:    floor of the noise estimate (keeps GRIC stable on noise-free data).
    focal_known:     False when the cameras' focal lengths are guesses (searched instead).
    off_plane_sigmas, off_plane_fraction, min_off_plane: F inliers whose H residual exceeds
                     ``off_plane_sigmas`` noise sigmas are "off the plane"; when at least
                     ``max(min_off_plane, off_plane_fraction * F inliers)`` of them exist the scene
                     is not planar (a dominant plane plus real 3D structure), whatever GRIC says.
    """
    x1 = np.asarray(x1, np.float64)
    x2 = np.asarray(x2, np.float64)
    n = x1.shape[0]
    disp = np.linalg.norm(x2 - x1, axis=1) if n else np.zeros(0)
    med_disp = float(np.median(disp)) if n else float("nan")
    med_par = float(np.median(parallax_deg)) if parallax_deg is not None and len(parallax_deg) else float("nan")

    def out(verdict, gf=np.nan, gh=np.nan, ratio=np.nan, sigma=np.nan, rot=np.nan, extra=""):
        return Degeneracy(verdict, verdict == "general", verdict in ("general", "low_parallax", "pure_rotation"),
                          float(gf), float(gh), float(ratio), float(sigma), med_disp, med_par, float(rot),
                          VERDICTS[verdict] + extra)

    if n < min_matches:
        return out("too_few_matches", extra=f" ({n} < {min_matches})")
    if med_disp < 0.5 and np.mean(disp < 1.0) > 0.9:
        return out("identical", extra=f" (median displacement {med_disp:.2f} px)")
    f_inliers = np.asarray(f_inliers, bool)
    h_inliers = np.asarray(h_inliers, bool)
    if f_inliers.size != n:  # displacement-only screening (no fits yet)
        return out("general")
    if f_inliers.sum() < 8:
        return out("no_model")
    fr = np.asarray(f_residuals, np.float64)
    hr = np.asarray(h_residuals, np.float64)
    sigma = max(1.4826 * float(np.median(fr[f_inliers])), sigma_min_px)
    union = f_inliers | h_inliers
    gf = gric(fr[union], sigma, d=3, k=7)
    gh = gric(hr[union], sigma, d=2, k=8)
    ratio = h_inliers.sum() / max(f_inliers.sum(), 1)
    # A dominant plane plus a real share of clearly off-plane F inliers (residual to H well above
    # the noise) still determines F / E: GRIC's capped cost alone would call it planar.
    off_plane = int(np.count_nonzero(f_inliers & (hr > max(off_plane_sigmas * sigma, 1.5 * np.median(hr[h_inliers])
                                                            if h_inliers.any() else 0.0))))
    if off_plane >= max(min_off_plane, off_plane_fraction * f_inliers.sum()):
        gh_eff = np.inf
    else:
        gh_eff = gh
    if gh_eff < gf:
        rot = _rotation_score(H, camera1, camera2, focal_known) if H is not None else np.nan
        verdict = "pure_rotation" if np.isfinite(rot) and rot < rotation_tol else "planar"
        return out(verdict, gf, gh, ratio, sigma, rot)
    if np.isfinite(med_par) and med_par < min_parallax_deg:
        return out("low_parallax", gf, gh, ratio, sigma, extra=f" (median parallax {med_par:.2f} deg)")
    return out("general", gf, gh, ratio, sigma)
