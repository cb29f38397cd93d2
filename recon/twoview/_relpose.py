"""Non-linear refinement of a relative pose (R, t on the unit sphere) on the Sampson error.

The 5-dof relative pose of two calibrated views is refined by Levenberg-Marquardt with a robust
loss (IRLS), minimising the signed Sampson distance in undistorted pinhole pixels of both
cameras (Hartley & Zisserman 11.4.3; COLMAP's ``RefineEssentialMatrix`` does the same in
normalised coordinates). Parameterisation: ``R = exp([w]_x) R0`` (a rotation increment in the
camera-2 frame), ``t = normalise(t0 + B d)`` with B an orthonormal basis of the tangent plane of
the sphere at t0. Every accepted step re-centres (R0, t0), so the increments stay small.

The Gauss-Newton covariance ``s^2 (J^T W J)^-1`` of the five parameters at the optimum gives the
1-sigma rotation and translation-direction uncertainties used by the reliability flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib import matrix_from_axis_angle
from recon.twoview._triangulation import _tangent_basis

__all__ = ["PoseRefinement", "refine_relative_pose", "sampson_jacobian", "signed_sampson"]


@dataclass(frozen=True)
class PoseRefinement:
    """Result of :func:`refine_relative_pose`.

    R, t:              cam2_from_cam1 rotation [3, 3] and unit translation [3].
    residuals:         [N] signed Sampson distances (px) of ALL given points at (R, t).
    rotation_sigma_deg: 1-sigma RMS rotation uncertainty (sqrt of the trace of the 3x3 rotation
                       block of the covariance), degrees; inf when not determined.
    translation_sigma_deg: the same for the translation direction (2x2 block), degrees.
    noise_px:          robust noise estimate (px) used for the covariance.
    """

    R: np.ndarray
    t: np.ndarray
    residuals: np.ndarray
    rotation_sigma_deg: float
    translation_sigma_deg: float
    noise_px: float


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])


def signed_sampson(F: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """Signed Sampson distance (x2^T F x1 / |gradient|), pixels; F [3, 3] or [M, 3, 3],
    p1, p2 [N, 2] -> [N] or [M, N]."""
    Fx1 = p1 @ np.swapaxes(F[..., :, :2], -1, -2) + F[..., None, :, 2]
    Ftx2 = p2 @ F[..., :2, :] + F[..., None, 2, :]
    num = np.sum(p2 * Fx1[..., :2], axis=-1) + Fx1[..., 2]
    den = Fx1[..., 0] ** 2 + Fx1[..., 1] ** 2 + Ftx2[..., 0] ** 2 + Ftx2[..., 1] ** 2
    return num / np.sqrt(np.maximum(den, 1e-300))


def _stack_F(R0, t0, Bt, P, K1i, K2i):
    """F for a batch of parameter vectors P [M, 5] around (R0, t0) (the finite-difference
    reference of :func:`sampson_jacobian`)."""
    out = np.empty((P.shape[0], 3, 3))
    for m, p in enumerate(P):
        R = matrix_from_axis_angle(p[:3]) @ R0
        t = t0 + Bt @ p[3:]
        t = t / np.linalg.norm(t)
        out[m] = K2i.T @ _skew(t) @ R @ K1i
    return out


_GENERATORS = np.stack([_skew(e) for e in np.eye(3)])  # [3, 3, 3]: [e_k]_x


def sampson_jacobian(R0, t0, Bt, K1i, K2i, q1, q2) -> tuple[np.ndarray, np.ndarray]:
    """Signed Sampson distances r [n] at (R0, t0) and their analytic Jacobian [n, 5] with
    respect to the increment (w, d): R = exp([w]_x) R0, t = normalise(t0 + Bt d).

    dF/dw_k = K2^-T [t0]_x [e_k]_x R0 K1^-1 and dF/dd_j = K2^-T [Bt_j]_x R0 K1^-1 (Bt is
    orthogonal to t0, so the normalisation has no first-order effect); with r = n / sqrt(D),
    n = x2^T F x1 and D the squared gradient norm, dr = dn / sqrt(D) - n dD / (2 D^1.5)."""
    F0 = K2i.T @ _skew(t0) @ R0 @ K1i
    RK = R0 @ K1i
    G = np.empty((6, 3, 3))
    G[0] = F0
    G[1:4] = K2i.T @ _skew(t0) @ _GENERATORS @ RK
    G[4] = K2i.T @ _skew(Bt[:, 0]) @ RK
    G[5] = K2i.T @ _skew(Bt[:, 1]) @ RK
    a = q1 @ np.swapaxes(G[:, :, :2], -1, -2) + G[:, None, :, 2]  # [6, n, 3]: G x1
    b = q2 @ G[:, :2, :] + G[:, None, 2, :]  # [6, n, 3]: G^T x2
    num = np.sum(q2 * a[:, :, :2], axis=-1) + a[:, :, 2]  # [6, n]
    den = a[0, :, 0] ** 2 + a[0, :, 1] ** 2 + b[0, :, 0] ** 2 + b[0, :, 1] ** 2
    den = np.maximum(den, 1e-300)
    dden = 2.0 * (a[0, :, 0] * a[1:, :, 0] + a[0, :, 1] * a[1:, :, 1] + b[0, :, 0] * b[1:, :, 0]
                  + b[0, :, 1] * b[1:, :, 1])  # [5, n]
    sq = np.sqrt(den)
    r = num[0] / sq
    J = (num[1:] / sq - 0.5 * num[0] * dden / (den * sq)).T  # [n, 5]
    return r, J


def refine_relative_pose(R, t, p1, p2, K1, K2, *, mask=None, scale_px: float = 1.0, loss: str = "cauchy",
                         max_iterations: int = 20) -> PoseRefinement:
    """Robust Levenberg-Marquardt on the Sampson distance over (R, t on the sphere).

    R [3, 3], t [3]: the starting cam2_from_cam1 pose (any of the four decompositions of E works:
                  the Sampson cost depends on E only; the returned pose keeps the start's branch).
    p1, p2 [N, 2]: undistorted pinhole pixels (``x2_h^T K2^-T [t]_x R K1^-1 x1_h = 0``).
    K1, K2 [3, 3]: the pinhole matrices of those pixels.
    mask [N]:     the points that enter the cost (default all); residuals are returned for all.
    scale_px:     robust loss scale (pixels): "cauchy" rho = s^2 log(1 + r^2/s^2), "linear" = LSQ.
    """
    R0 = np.asarray(R, np.float64).copy()
    t0 = np.asarray(t, np.float64).ravel()
    t0 = t0 / np.linalg.norm(t0)
    p1 = np.asarray(p1, np.float64)
    p2 = np.asarray(p2, np.float64)
    K1i, K2i = np.linalg.inv(K1), np.linalg.inv(K2)
    use = np.ones(p1.shape[0], bool) if mask is None else np.asarray(mask, bool)
    q1, q2 = p1[use], p2[use]
    s2 = scale_px * scale_px

    def rho(r):
        return np.sum(s2 * np.log1p(r * r / s2)) if loss == "cauchy" else float(np.sum(r * r))

    def weights(r):
        return 1.0 / (1.0 + r * r / s2) if loss == "cauchy" else np.ones_like(r)

    lam = 1e-4
    Bt = _tangent_basis(t0)
    r = signed_sampson(K2i.T @ _skew(t0) @ R0 @ K1i, q1, q2)
    cost = rho(r)
    J = None
    for _ in range(max_iterations if q1.shape[0] >= 5 else 0):
        r, J = sampson_jacobian(R0, t0, Bt, K1i, K2i, q1, q2)  # [n], [n, 5]
        w = weights(r)
        A = (J * w[:, None]).T @ J
        g = (J * w[:, None]).T @ r
        improved = False
        for _try in range(6):
            try:
                dp = -np.linalg.solve(A + lam * np.diag(np.diag(A) + 1e-12), g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            Rn = matrix_from_axis_angle(dp[:3]) @ R0
            tn = t0 + Bt @ dp[3:]
            tn = tn / np.linalg.norm(tn)
            rn = signed_sampson(K2i.T @ _skew(tn) @ Rn @ K1i, q1, q2)
            cn = rho(rn)
            if np.isfinite(cn) and cn < cost:
                R0, t0, r, lam = Rn, tn, rn, max(lam / 10, 1e-9)
                Bt = _tangent_basis(t0)
                improved = cost - cn > 1e-10 * cost
                cost = cn
                break
            lam *= 10
        if not improved:
            break
    # covariance at the optimum (inliers by their robust weights)
    r, J = sampson_jacobian(R0, t0, Bt, K1i, K2i, q1, q2)
    w = weights(r)
    rot_sig = tr_sig = float("inf")
    noise = float("nan")
    dof = w.sum() - 5
    if q1.shape[0] >= 6 and dof > 0:
        noise2 = float(np.sum(w * r * r) / dof)
        noise = float(np.sqrt(noise2))
        try:
            C = noise2 * np.linalg.inv((J * w[:, None]).T @ J)
            rot_sig = float(np.degrees(np.sqrt(max(np.trace(C[:3, :3]), 0.0))))
            tr_sig = float(np.degrees(np.sqrt(max(np.trace(C[3:, 3:]), 0.0))))
        except np.linalg.LinAlgError:
            pass
    full = signed_sampson(K2i.T @ _skew(t0) @ R0 @ K1i, p1, p2)
    return PoseRefinement(R0, t0, full, rot_sig, tr_sig, noise)
