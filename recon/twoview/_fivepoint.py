"""The five-point essential-matrix solver (batched NumPy, float64).

Stewenius, Engels & Nister, "Recent developments on direct relative orientation" (ISPRS 2006),
the Groebner-basis / action-matrix form of Nister's solver (PAMI 2004):

1. Five correspondences in normalised coordinates give five linear equations
   ``x2_h^T E x1_h = 0`` in the nine entries of E; their null space is 4-dimensional,
   ``E = x X + y Y + z Z + W``.
2. The ten cubic constraints ``det(E) = 0`` and ``2 E E^T E - trace(E E^T) E = 0`` in (x, y, z)
   are written in the 20 monomials of degree <= 3 (graded reverse lexicographic order).
3. Gauss-Jordan elimination of the 10 x 20 coefficient matrix expresses the ten cubic
   monomials in the ten basis monomials [x^2, xy, xz, y^2, yz, z^2, x, y, z, 1]; the 10 x 10
   action matrix of multiplication by x follows, and its real eigenvectors (the basis monomials
   evaluated at a solution) give up to ten real essential matrices.

Unlike the eight-point algorithm, the five-point solver with known intrinsics is not
degenerate for planar scenes (Nister 2004, section 1): a plane still leaves a finite set of
candidate E (the true one among them), which a robust loop can tell apart with off-plane points.
"""

from __future__ import annotations

import numpy as np

__all__ = ["essential_five_point"]

# Polynomials in (x, y, z) of total degree <= 3 are dense arrays [..., 4, 4, 4] indexed by the
# exponents (i, j, k) of x^i y^j z^k.
_CUBIC = [(3, 0, 0), (2, 1, 0), (2, 0, 1), (1, 2, 0), (1, 1, 1), (1, 0, 2), (0, 3, 0), (0, 2, 1), (0, 1, 2),
          (0, 0, 3)]
_BASIS = [(2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0), (0, 1, 1), (0, 0, 2), (1, 0, 0), (0, 1, 0), (0, 0, 1),
          (0, 0, 0)]
_MONOMIALS = _CUBIC + _BASIS
_MI = np.array([m[0] for m in _MONOMIALS])
_MJ = np.array([m[1] for m in _MONOMIALS])
_MK = np.array([m[2] for m in _MONOMIALS])


def _linear(c: np.ndarray) -> np.ndarray:
    """Linear polynomial c[..., 0] x + c[..., 1] y + c[..., 2] z + c[..., 3] -> dense [..., 4, 4, 4]."""
    p = np.zeros(c.shape[:-1] + (4, 4, 4))
    p[..., 1, 0, 0] = c[..., 0]
    p[..., 0, 1, 0] = c[..., 1]
    p[..., 0, 0, 1] = c[..., 2]
    p[..., 0, 0, 0] = c[..., 3]
    return p


def _times_linear(p: np.ndarray, c: np.ndarray) -> np.ndarray:
    """p (dense, degree <= 2) times the linear polynomial with coefficients c [..., 4]."""
    out = p * c[..., 3, None, None, None]
    out[..., 1:, :, :] += p[..., :-1, :, :] * c[..., 0, None, None, None]
    out[..., :, 1:, :] += p[..., :, :-1, :] * c[..., 1, None, None, None]
    out[..., :, :, 1:] += p[..., :, :, :-1] * c[..., 2, None, None, None]
    return out


# Polynomial products as fixed 0/1 tensors on coefficient vectors: linear polynomials have the
# coefficients of (x, y, z, 1), quadratics those of the ten monomials of degree <= 2, cubics
# those of _MONOMIALS. ``_P2[a, b, q] = 1`` when LIN[a] * LIN[b] = QUAD[q], ``_P3[q, c, m] = 1``
# when QUAD[q] * LIN[c] = _MONOMIALS[m]; a product is then one matrix product per batch.
_LIN = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0)]
_QUAD = [(2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0), (0, 1, 1), (0, 0, 2), (1, 0, 0), (0, 1, 0), (0, 0, 1),
         (0, 0, 0)]


def _product_tensor(left, right, out):
    T = np.zeros((len(left), len(right), len(out)))
    for a, ma in enumerate(left):
        for b, mb in enumerate(right):
            T[a, b, out.index(tuple(i + j for i, j in zip(ma, mb)))] = 1.0
    return T.reshape(len(left) * len(right), len(out))


_P2 = _product_tensor(_LIN, _LIN, _QUAD)  # [16, 10]
_P3 = _product_tensor(_QUAD, _LIN, _MONOMIALS)  # [40, 20]
_EPS = np.zeros((3, 3, 3))
_EPS[0, 1, 2] = _EPS[1, 2, 0] = _EPS[2, 0, 1] = 1.0
_EPS[0, 2, 1] = _EPS[2, 1, 0] = _EPS[1, 0, 2] = -1.0


def _constraint_matrix(Ec: np.ndarray) -> np.ndarray:
    """The ten cubic constraints on E = x X + y Y + z Z + W as a [B, 10, 20] coefficient matrix
    (columns: _MONOMIALS). Ec [B, 3, 3, 4]: each entry of E as a linear polynomial (x, y, z, 1).
    Rows 0..8: 2 E E^T E - trace(E E^T) E (row-major), row 9: det(E)."""
    B = Ec.shape[0]
    EEt = (np.einsum("bija,bkjc->bikac", Ec, Ec).reshape(B, 3, 3, 16) @ _P2)  # [B, 3, 3, 10]
    tr = EEt[:, 0, 0] + EEt[:, 1, 1] + EEt[:, 2, 2]  # [B, 10]
    eqs = (2.0 * np.einsum("bikq,bklc->bilqc", EEt, Ec) - np.einsum("bq,bilc->bilqc", tr, Ec))
    eqs = eqs.reshape(B, 9, 40) @ _P3  # [B, 9, 20]
    minor = np.einsum("abc,nbx,ncy->naxy", _EPS, Ec[:, 1], Ec[:, 2]).reshape(B, 3, 16) @ _P2  # [B, 3, 10]
    det = np.einsum("naq,nac->nqc", minor, Ec[:, 0]).reshape(B, 1, 40) @ _P3  # [B, 1, 20]
    return np.concatenate([eqs, det], axis=1)


def _constraint_matrix_dense(Ec: np.ndarray) -> np.ndarray:
    """Slow literal reference of :func:`_constraint_matrix` (dense [4, 4, 4] polynomial products)."""
    B = Ec.shape[0]
    Ep = _linear(Ec)  # [B, 3, 3, 4, 4, 4]
    EEt = np.zeros((B, 3, 3, 4, 4, 4))
    for j in range(3):
        EEt += _times_linear(Ep[:, :, None, j], Ec[:, None, :, j])
    tr = EEt[:, 0, 0] + EEt[:, 1, 1] + EEt[:, 2, 2]
    eqs = []
    for i in range(3):
        for lcol in range(3):
            acc = -_times_linear(tr, Ec[:, i, lcol])
            for k in range(3):
                acc += 2.0 * _times_linear(EEt[:, i, k], Ec[:, k, lcol])
            eqs.append(acc)
    cof = [(1, 2), (2, 0), (0, 1)]
    det = np.zeros((B, 4, 4, 4))
    for c0 in range(3):
        a, b = cof[c0]
        minor = _times_linear(Ep[:, 1, a], Ec[:, 2, b]) - _times_linear(Ep[:, 1, b], Ec[:, 2, a])
        det += _times_linear(minor, Ec[:, 0, c0])
    eqs.append(det)
    return np.stack(eqs, axis=1)[..., _MI, _MJ, _MK]


def essential_five_point(xy1: np.ndarray, xy2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All essential matrices consistent with five (or more: least-squares null space) matches.

    xy1, xy2: [B, 5, 2] normalised coordinates (x/z, y/z) of matches in camera 1 / camera 2
              (``x2_h^T E x1_h = 0``); more than five points per sample are allowed (the four
              smallest right singular vectors of the stacked constraints are used).
    Returns E [B, 10, 3, 3] (unit Frobenius norm; slots without a real solution are NaN) and
    valid [B, 10] bool.
    """
    xy1 = np.asarray(xy1, np.float64)
    xy2 = np.asarray(xy2, np.float64)
    if xy1.ndim != 3 or xy1.shape != xy2.shape or xy1.shape[-1] != 2 or xy1.shape[1] < 5:
        raise ValueError(f"xy1, xy2: expected equal shapes [B, >=5, 2], got {xy1.shape}, {xy2.shape}")
    B = xy1.shape[0]
    u1, v1 = xy1[..., 0], xy1[..., 1]
    u2, v2 = xy2[..., 0], xy2[..., 1]
    one = np.ones_like(u1)
    # row-major vec(E): x2^T E x1 = sum_ij x2_i x1_j E_ij
    Q = np.stack([u2 * u1, u2 * v1, u2, v2 * u1, v2 * v1, v2, u1, v1, one], axis=-1)  # [B, n, 9]
    _, _, Vt = np.linalg.svd(Q, full_matrices=True)
    N = Vt[:, -4:, :]  # [B, 4, 9]: X, Y, Z, W
    # entries of E as linear polynomials: coefficient vector (x, y, z, 1) per entry [B, 3, 3, 4]
    Ec = np.moveaxis(N, 1, -1).reshape(B, 3, 3, 4)
    A = _constraint_matrix(Ec)  # [B, 10, 20]
    E_out = np.full((B, 10, 3, 3), np.nan)
    valid = np.zeros((B, 10), bool)
    # Gauss-Jordan: [A_cubic | A_basis] -> [I | G]; cubic monomials = -G @ basis monomials
    Ac = A[:, :, :10]
    with np.errstate(all="ignore"):
        cond_ok = np.abs(np.linalg.det(Ac)) > 1e-300
        cond_ok &= np.all(np.isfinite(A), axis=(1, 2))
    if not np.any(cond_ok):
        return E_out, valid
    idx = np.flatnonzero(cond_ok)
    G = np.linalg.solve(Ac[idx], A[idx, :, 10:])  # [b, 10, 10]
    M = np.zeros((idx.size, 10, 10))
    # x * [x^2, xy, xz, y^2, yz, z^2] = [x^3, x^2y, x^2z, xy^2, xyz, xz^2] = cubic rows 0..5
    M[:, :6] = -G[:, :6]
    # x * [x, y, z] = [x^2, xy, xz] (basis 0, 1, 2); x * 1 = x (basis 6)
    M[:, 6, 0] = 1.0
    M[:, 7, 1] = 1.0
    M[:, 8, 2] = 1.0
    M[:, 9, 6] = 1.0
    with np.errstate(all="ignore"):
        w, V = np.linalg.eig(M)  # right eigenvectors: the basis monomials at each solution
    real = np.abs(w.imag) <= 1e-8 * np.maximum(1.0, np.abs(w.real))
    V = V.real
    with np.errstate(all="ignore"):
        x = V[:, 6] / V[:, 9]
        y = V[:, 7] / V[:, 9]
        z = V[:, 8] / V[:, 9]
    E = (x[..., None, None] * N[:, None, 0].reshape(-1, 1, 3, 3) + y[..., None, None] * N[:, None, 1].reshape(-1, 1, 3, 3)
         + z[..., None, None] * N[:, None, 2].reshape(-1, 1, 3, 3) + N[:, None, 3].reshape(-1, 1, 3, 3))
    with np.errstate(all="ignore"):
        E = E / np.linalg.norm(E, axis=(-2, -1), keepdims=True)
    ok = real & np.all(np.isfinite(E), axis=(-2, -1))
    E_out[idx] = np.where(ok[..., None, None], E, np.nan)
    valid[idx] = ok
    return E_out, valid
