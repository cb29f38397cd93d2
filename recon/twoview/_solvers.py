"""Minimal and least-squares solvers for two-view models (batched NumPy, float64).

Conventions: ``x1, x2`` are pixel (or normalised) coordinates [..., N, 2] of the same scene
points in image 1 and image 2; the fundamental matrix satisfies ``x2_h^T F x1_h = 0`` and the
homography ``x2_h ~ H x1_h`` (``_h`` = homogeneous, appended 1).

References: Hartley, "In defense of the eight-point algorithm" (PAMI 1997) for the
normalisation; Hartley & Zisserman (2nd ed.) 11.1-11.2 (eight-point, rank-2 by SVD), 11.1.2
(seven-point cubic), 4.1 (homography DLT).
"""

from __future__ import annotations

import numpy as np

from calib._check import as_array

__all__ = [
    "enforce_rank2",
    "fundamental_eight_point",
    "fundamental_seven_point",
    "hartley_normalization",
    "homography_dlt",
    "homography_transfer_error",
    "project_to_essential",
    "sampson_error",
]


def hartley_normalization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity T [..., 3, 3] moving the centroid of x [..., N, 2] to the origin with mean
    distance sqrt(2); returns (T @ x_h)[..., :2] and T."""
    c = x.mean(axis=-2, keepdims=True)
    d = np.linalg.norm(x - c, axis=-1).mean(axis=-1)
    s = np.sqrt(2.0) / np.maximum(d, 1e-12)
    T = np.zeros(x.shape[:-2] + (3, 3))
    T[..., 0, 0] = s
    T[..., 1, 1] = s
    T[..., 0, 2] = -s * c[..., 0, 0]
    T[..., 1, 2] = -s * c[..., 0, 1]
    T[..., 2, 2] = 1.0
    return (x - c) * s[..., None, None], T


def _epipolar_rows(n1: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """Rows of A with A @ vec(F) = x2^T F x1 (row-major vec). [..., N, 9]."""
    u1, v1 = n1[..., 0], n1[..., 1]
    u2, v2 = n2[..., 0], n2[..., 1]
    one = np.ones_like(u1)
    return np.stack([u2 * u1, u2 * v1, u2, v2 * u1, v2 * v1, v2, u1, v1, one], axis=-1)


def enforce_rank2(F: np.ndarray) -> np.ndarray:
    """Closest rank-2 matrix (Frobenius) by zeroing the smallest singular value. [..., 3, 3]."""
    U, S, Vt = np.linalg.svd(F)
    S = S.copy()
    S[..., 2] = 0.0
    return (U * S[..., None, :]) @ Vt


def project_to_essential(E: np.ndarray) -> np.ndarray:
    """Closest essential matrix: singular values (s, s, 0) with s = mean of the first two;
    returned with unit Frobenius norm. [..., 3, 3]."""
    U, _S, Vt = np.linalg.svd(E)
    D = np.zeros(E.shape[:-2] + (3,))
    D[..., 0] = D[..., 1] = 1.0 / np.sqrt(2.0)
    return (U * D[..., None, :]) @ Vt


def _unit_frobenius(M: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(M, axis=(-2, -1), keepdims=True)
    return M / np.maximum(n, 1e-300)


def fundamental_eight_point(x1, x2, weights=None) -> np.ndarray:
    """Normalised eight-point algorithm (Hartley 1997): F [3, 3], rank 2, unit Frobenius norm.

    x1, x2:  [N, 2] matching points (N >= 8), pixels; also accepts a batch [B, N, 2] -> [B, 3, 3].
    weights: optional [N] (or [B, N]) non-negative row weights (e.g. IRLS / Sampson weights);
             zero-weight points are ignored.
    """
    x1 = as_array(x1, "x1", last=(2,))
    x2 = as_array(x2, "x2", last=(2,))
    if x1.shape != x2.shape or x1.ndim not in (2, 3):
        raise ValueError(f"x1, x2: expected equal shapes [N, 2] (or [B, N, 2]), got {x1.shape}, {x2.shape}")
    if x1.shape[-2] < 8:
        raise ValueError(f"x1, x2: the eight-point algorithm needs >= 8 points, got {x1.shape[-2]}")
    return _eight_point(x1, x2, None if weights is None else np.asarray(weights, np.float64))


def _eight_point(x1: np.ndarray, x2: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    if weights is not None:
        # Normalise with the points that carry weight only.
        w = weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-300)
        c1 = (x1 * w[..., None]).sum(-2, keepdims=True)
        c2 = (x2 * w[..., None]).sum(-2, keepdims=True)
        T1 = _similarity(c1, (np.linalg.norm(x1 - c1, axis=-1) * w).sum(-1))
        T2 = _similarity(c2, (np.linalg.norm(x2 - c2, axis=-1) * w).sum(-1))
        n1 = _apply_h(T1, x1)
        n2 = _apply_h(T2, x2)
    else:
        n1, T1 = hartley_normalization(x1)
        n2, T2 = hartley_normalization(x2)
    A = _epipolar_rows(n1, n2)
    if weights is not None:
        A = A * np.sqrt(weights)[..., None]
    # Solve via the 9x9 normal matrix: same null vector, much cheaper than an SVD of [N, 9].
    M = np.swapaxes(A, -1, -2) @ A
    _, V = np.linalg.eigh(M)
    Fn = V[..., :, 0].reshape(A.shape[:-2] + (3, 3))
    Fn = enforce_rank2(Fn)
    F = np.swapaxes(T2, -1, -2) @ Fn @ T1
    return _unit_frobenius(F)


def _similarity(c: np.ndarray, mean_dist: np.ndarray) -> np.ndarray:
    s = np.sqrt(2.0) / np.maximum(mean_dist, 1e-12)
    T = np.zeros(c.shape[:-2] + (3, 3))
    T[..., 0, 0] = T[..., 1, 1] = s
    T[..., 0, 2] = -s * c[..., 0, 0]
    T[..., 1, 2] = -s * c[..., 0, 1]
    T[..., 2, 2] = 1.0
    return T


def _apply_h(T: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Apply a 3x3 projective map [..., 3, 3] to points [..., N, 2] (one matmul)."""
    xh = np.concatenate([x, np.ones(x.shape[:-1] + (1,))], axis=-1)
    y = xh @ np.swapaxes(T, -1, -2)
    return y[..., :2] / y[..., 2:3]


def fundamental_seven_point(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seven-point algorithm (H&Z 11.1.2), batched.

    x1, x2: [B, 7, 2]. Returns F [B, 3, 3, 3] (up to three real solutions per sample, unit
    Frobenius norm) and valid [B, 3] (False where a cubic root is complex or degenerate).
    """
    n1, T1 = hartley_normalization(x1)
    n2, T2 = hartley_normalization(x2)
    A = _epipolar_rows(n1, n2)  # [B, 7, 9]
    _, _, Vt = np.linalg.svd(A, full_matrices=True)
    F1 = Vt[:, 7].reshape(-1, 3, 3)
    F2 = Vt[:, 8].reshape(-1, 3, 3)
    # det(a F1 + (1 - a) F2) is a cubic in a: fit it exactly from four evaluations.
    a_s = np.array([0.0, 1.0, -1.0, 2.0])
    dets = np.stack([np.linalg.det(a * F1 + (1 - a) * F2) for a in a_s], axis=-1)  # [B, 4]
    V = np.vander(a_s, 4)  # columns a^3, a^2, a, 1
    coef = dets @ np.linalg.inv(V).T  # [B, 4] highest power first
    B = coef.shape[0]
    roots = np.zeros((B, 3), dtype=complex)
    lead = coef[:, 0]
    ok = np.abs(lead) > 1e-12 * np.maximum(np.abs(coef).max(axis=1), 1e-300)
    if np.any(ok):
        c = coef[ok] / lead[ok, None]
        comp = np.zeros((c.shape[0], 3, 3))
        comp[:, 0, :] = -c[:, 1:]
        comp[:, 1, 0] = comp[:, 2, 1] = 1.0
        roots[ok] = np.linalg.eigvals(comp)
    valid = ok[:, None] & (np.abs(roots.imag) < 1e-8 * np.maximum(1.0, np.abs(roots.real)))
    a = roots.real[:, :, None, None]
    Fn = a * F1[:, None] + (1 - a) * F2[:, None]  # [B, 3, 3, 3]
    F = np.swapaxes(T2, -1, -2)[:, None] @ Fn @ T1[:, None]
    F = _unit_frobenius(F)
    valid &= np.all(np.isfinite(F), axis=(-2, -1))
    return F, valid


def homography_dlt(x1, x2, weights=None) -> np.ndarray:
    """Normalised DLT (H&Z 4.1 + 4.4): H [3, 3] (or [B, 3, 3]) with x2_h ~ H x1_h, H[2, 2]-free
    scale (unit Frobenius norm). x1, x2: [N, 2] or [B, N, 2], N >= 4."""
    x1 = np.asarray(x1, np.float64)
    x2 = np.asarray(x2, np.float64)
    if x1.shape != x2.shape or x1.shape[-1] != 2 or x1.shape[-2] < 4:
        raise ValueError(f"x1, x2: expected equal shapes [N>=4, 2], got {x1.shape}, {x2.shape}")
    n1, T1 = hartley_normalization(x1)
    n2, T2 = hartley_normalization(x2)
    u1, v1 = n1[..., 0], n1[..., 1]
    u2, v2 = n2[..., 0], n2[..., 1]
    z, o = np.zeros_like(u1), np.ones_like(u1)
    r1 = np.stack([-u1, -v1, -o, z, z, z, u2 * u1, u2 * v1, u2], -1)
    r2 = np.stack([z, z, z, -u1, -v1, -o, v2 * u1, v2 * v1, v2], -1)
    if weights is not None:
        sw = np.sqrt(np.asarray(weights, np.float64))[..., None]
        r1, r2 = r1 * sw, r2 * sw
    A = np.concatenate([r1, r2], axis=-2)
    M = np.swapaxes(A, -1, -2) @ A
    _, V = np.linalg.eigh(M)
    Hn = V[..., :, 0].reshape(A.shape[:-2] + (3, 3))
    H = np.linalg.solve(T2, Hn @ T1) if Hn.ndim == 2 else np.linalg.inv(T2) @ Hn @ T1
    return _unit_frobenius(H)


def sampson_error(F, x1, x2, *, squared: bool = False) -> np.ndarray:
    """Sampson's first-order geometric error of matches under F (H&Z 11.4.3).

    F: [3, 3] (or a batch [B, 3, 3]); x1, x2: [N, 2] pixels. Returns [N] (or [B, N]): by default
    the Sampson DISTANCE in pixels (square root of Sampson's squared error), the first-order
    distance of (x1, x2) in R^4 to the variety x2^T F x1 = 0; ``squared=True`` gives px^2.
    """
    F = np.asarray(F, np.float64)
    x1 = np.asarray(x1, np.float64)
    x2 = np.asarray(x2, np.float64)
    # point index last ([..., 3, N]): contiguous rows, 2-3x faster than [..., N, 3] for batches
    x1h = np.concatenate([x1.T, np.ones((1, x1.shape[0]))])  # [3, N]
    x2h = np.concatenate([x2.T, np.ones((1, x2.shape[0]))])
    Fx1 = F @ x1h  # [..., 3, N]
    Ftx2 = np.swapaxes(F, -1, -2)[..., :2, :] @ x2h  # [..., 2, N]: the first two rows of F^T x2
    num = np.sum(x2h * Fx1, axis=-2)
    den = Fx1[..., 0, :] ** 2 + Fx1[..., 1, :] ** 2 + Ftx2[..., 0, :] ** 2 + Ftx2[..., 1, :] ** 2
    e2 = num * num / np.maximum(den, 1e-300)
    return e2 if squared else np.sqrt(e2)


def homography_transfer_error(H, x1, x2) -> np.ndarray:
    """Symmetric transfer distance, scaled to be comparable with :func:`sampson_error` (a
    distance in R^4): sqrt((|x2 - H x1|^2 + |x1 - H^-1 x2|^2) / 4). H: [3, 3] or [B, 3, 3];
    x1, x2: [N, 2]. Returns [N] or [B, N] pixels."""
    H = np.asarray(H, np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        Hinv = np.linalg.inv(H)
        f = _apply_h(H, x1) - x2
        b = _apply_h(Hinv, x2) - x1
        e = np.sqrt((np.sum(f * f, -1) + np.sum(b * b, -1)) / 4.0)
    return np.where(np.isfinite(e), e, np.inf)
