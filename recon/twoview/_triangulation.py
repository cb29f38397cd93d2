"""Two-view triangulation (linear DLT, midpoint) and non-linear two-view refinement.

Frames: points are returned in the frame of camera 1; ``cam2_from_cam1`` maps them into camera 2.
For world-frame poses use ``cam2_from_cam1 = cam2_from_world @ cam1_from_world.inverse()`` and map
the points back with ``cam1_from_world.inverse().apply(points)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib import Camera, Rigid3, matrix_from_axis_angle
from calib._check import as_array

__all__ = ["Triangulation", "TwoViewRefinement", "triangulate_dlt", "triangulate_midpoint", "refine_two_view"]


@dataclass(frozen=True)
class Triangulation:
    """Triangulated points with per-point quality.

    points:             [N, 3] in the camera-1 frame (units of the translation).
    reprojection_error: [N, 2] pixels: distance between the observed and reprojected point in
                        image 1 (column 0) and image 2 (column 1); inf where not projectable.
    parallax_deg:       [N] angle between the two viewing rays at the point, degrees.
    in_front:           [N] bool, positive depth in both cameras (cheirality).
    """

    points: np.ndarray
    reprojection_error: np.ndarray
    parallax_deg: np.ndarray
    in_front: np.ndarray

    def valid(self, *, max_error_px: float = 4.0, min_parallax_deg: float = 0.5) -> np.ndarray:
        """[N] bool: in front, reprojection error below ``max_error_px`` in both images and
        parallax above ``min_parallax_deg`` (points at near-zero parallax have unreliable depth)."""
        return (self.in_front & np.all(self.reprojection_error < max_error_px, axis=1)
                & (self.parallax_deg >= min_parallax_deg))


def _dlt_normalized(R: np.ndarray, t: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """Linear triangulation (H&Z 12.2) of normalised coordinates with P1 = [I | 0],
    P2 = [R | t]; returns [N, 3] in camera 1 (NaN/inf for points at infinity)."""
    P1 = np.hstack([np.eye(3), np.zeros((3, 1))])
    P2 = np.hstack([R, np.asarray(t, float).reshape(3, 1)])
    A = np.empty((n1.shape[0], 4, 4))
    A[:, 0] = n1[:, :1] * P1[2] - P1[0]
    A[:, 1] = n1[:, 1:2] * P1[2] - P1[1]
    A[:, 2] = n2[:, :1] * P2[2] - P2[0]
    A[:, 3] = n2[:, 1:2] * P2[2] - P2[1]
    # Scale rows so each equation has unit norm (better conditioned for distant points).
    A /= np.maximum(np.linalg.norm(A, axis=2, keepdims=True), 1e-300)
    _, _, Vt = np.linalg.svd(A)
    Xh = Vt[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        X = Xh[:, :3] / Xh[:, 3:4]
    return X


def _check_inputs(uv1, uv2, camera1, camera2, cam2_from_cam1):
    uv1 = as_array(uv1, "uv1", ndim=2, last=(2,))
    uv2 = as_array(uv2, "uv2", ndim=2, last=(2,))
    if uv1.shape != uv2.shape:
        raise ValueError(f"uv1, uv2: expected the same number of points, got {uv1.shape[0]} and {uv2.shape[0]}")
    for c, nm in ((camera1, "camera1"), (camera2, "camera2")):
        if not isinstance(c, Camera):
            raise TypeError(f"{nm}: expected calib.Camera, got {type(c).__name__}")
    if not isinstance(cam2_from_cam1, Rigid3):
        raise TypeError(f"cam2_from_cam1: expected calib.Rigid3, got {type(cam2_from_cam1).__name__}")
    return uv1, uv2


def _quality(X, uv1, uv2, camera1, camera2, T: Rigid3) -> Triangulation:
    X = np.where(np.isfinite(X), X, np.nan)
    X2 = X @ T.rotation.T + T.translation
    err = np.full((X.shape[0], 2), np.inf)
    with np.errstate(invalid="ignore"):
        for k, (Xc, cam, uv) in enumerate(((X, camera1, uv1), (X2, camera2, uv2))):
            ok = np.all(np.isfinite(Xc), 1)
            if ok.any():
                proj, valid = cam.project(Xc[ok])
                e = np.linalg.norm(proj - uv[ok], axis=1)
                err[ok, k] = np.where(valid, e, np.inf)
        c2 = T.dst_origin_in_src()
        d1 = X
        d2 = X - c2
        cosang = np.sum(d1 * d2, 1) / (np.linalg.norm(d1, axis=1) * np.linalg.norm(d2, axis=1))
        parallax = np.degrees(np.arccos(np.clip(cosang, -1.0, 1.0)))
        in_front = (X[:, 2] > 0) & (X2[:, 2] > 0)
    parallax = np.where(np.isfinite(parallax), parallax, 0.0)
    return Triangulation(X, err, parallax, in_front & np.all(np.isfinite(X), 1))


def triangulate_dlt(uv1, uv2, camera1: Camera, camera2: Camera, cam2_from_cam1: Rigid3) -> Triangulation:
    """Linear (DLT) triangulation of pixel matches (undistorted through the camera models).

    uv1, uv2: [N, 2] pixels; camera1, camera2: calib.Camera; cam2_from_cam1: relative pose.
    Returns points in the camera-1 frame with reprojection errors, parallax and cheirality.
    """
    uv1, uv2 = _check_inputs(uv1, uv2, camera1, camera2, cam2_from_cam1)
    n1, n2 = camera1.cam_from_img(uv1), camera2.cam_from_img(uv2)
    X = np.full((uv1.shape[0], 3), np.nan)
    ok = np.all(np.isfinite(n1), 1) & np.all(np.isfinite(n2), 1)
    if ok.any():
        X[ok] = _dlt_normalized(cam2_from_cam1.rotation, cam2_from_cam1.translation, n1[ok], n2[ok])
    return _quality(X, uv1, uv2, camera1, camera2, cam2_from_cam1)


def triangulate_midpoint(uv1, uv2, camera1: Camera, camera2: Camera, cam2_from_cam1: Rigid3) -> Triangulation:
    """Midpoint triangulation: the midpoint of the shortest segment between the two viewing
    rays (H&Z 12.1 notes; exact for noise-free rays, cheap, but not projectively invariant).
    Same arguments and result as :func:`triangulate_dlt`."""
    uv1, uv2 = _check_inputs(uv1, uv2, camera1, camera2, cam2_from_cam1)
    d1, v1 = camera1.unproject(uv1)
    d2c, v2 = camera2.unproject(uv2)
    R, t = cam2_from_cam1.rotation, cam2_from_cam1.translation
    c2 = -R.T @ t
    d2 = d2c @ R  # directions of camera-2 rays in the camera-1 frame (R^T d)
    # Minimise |s1 d1 - (c2 + s2 d2)|^2 over s1, s2.
    a = np.sum(d1 * d1, 1)
    b = np.sum(d1 * d2, 1)
    c = np.sum(d2 * d2, 1)
    dd = np.sum(d1 * c2, 1)
    e = np.sum(d2 * c2, 1)
    den = a * c - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        s1 = (c * dd - b * e) / den
        s2 = (b * dd - a * e) / den
        X = 0.5 * (s1[:, None] * d1 + (c2 + s2[:, None] * d2))
    X[~(v1 & v2) | (np.abs(den) < 1e-15)] = np.nan
    return _quality(X, uv1, uv2, camera1, camera2, cam2_from_cam1)


@dataclass(frozen=True)
class TwoViewRefinement:
    """Result of :func:`refine_two_view`.

    cam2_from_cam1: refined pose (translation kept at the input norm: scale is a gauge).
    points:         [N, 3] refined points in the camera-1 frame.
    rms_before_px, rms_after_px: RMS reprojection error over both images.
    success:        the optimiser converged (scipy's status > 0).
    """

    cam2_from_cam1: Rigid3
    points: np.ndarray
    rms_before_px: float
    rms_after_px: float
    success: bool


def _tangent_basis(t: np.ndarray) -> np.ndarray:
    """[3, 2] orthonormal basis of the plane orthogonal to unit t."""
    a = np.eye(3)[np.argmin(np.abs(t))]
    b1 = np.cross(t, a)
    b1 /= np.linalg.norm(b1)
    return np.stack([b1, np.cross(t, b1)], axis=1)


def refine_two_view(uv1, uv2, camera1: Camera, camera2: Camera, cam2_from_cam1: Rigid3, points, *,
                    loss: str = "huber", loss_scale_px: float = 1.0, max_nfev: int = 50) -> TwoViewRefinement:
    """Two-view bundle adjustment: minimise the reprojection error in both images over the
    relative pose (rotation: 3, translation direction on the sphere: 2, the gauge fixes its
    norm) and the points (3 each), with ``scipy.optimize.least_squares`` (trust-region
    reflective, sparse Jacobian by grouped finite differences, robust ``loss``).

    uv1, uv2: [N, 2] pixels; points: [N, 3] initial points in the camera-1 frame (e.g. from
    :func:`triangulate_dlt`), N >= 5. Cameras (intrinsics) are held fixed.
    """
    from scipy.optimize import least_squares
    from scipy.sparse import coo_matrix

    uv1, uv2 = _check_inputs(uv1, uv2, camera1, camera2, cam2_from_cam1)
    X0 = as_array(points, "points", ndim=2, last=(3,))
    if X0.shape[0] != uv1.shape[0]:
        raise ValueError(f"points: expected [{uv1.shape[0]}, 3] (one per match), got {X0.shape}")
    n = X0.shape[0]
    if n < 5:
        raise ValueError(f"points: two-view refinement needs >= 5 points, got {n}")
    R0, t0 = cam2_from_cam1.rotation, cam2_from_cam1.translation
    scale = float(np.linalg.norm(t0))
    if scale <= 0:
        raise ValueError("cam2_from_cam1: zero translation; two-view refinement needs a baseline")
    tu = t0 / scale
    B = _tangent_basis(tu)

    def unpack(p):
        R = matrix_from_axis_angle(p[:3]) @ R0
        t = tu + B @ p[3:5]
        t = scale * t / np.linalg.norm(t)
        return R, t, p[5:].reshape(n, 3)

    def fun(p):
        R, t, X = unpack(p)
        u1, _ = camera1.project(X)
        u2, _ = camera2.project(X @ R.T + t)
        r = np.concatenate([u1 - uv1, u2 - uv2], axis=1).ravel()
        return np.where(np.isfinite(r), r, 1e6)

    i = np.arange(n)
    pose_r = np.repeat(np.stack([4 * i + 2, 4 * i + 3], 1).ravel(), 5)  # image-2 residuals only
    pose_c = np.tile(np.arange(5), 2 * n)
    pt_r = np.repeat(4 * i[:, None] + np.arange(4), 3, axis=1).ravel()  # [n, 12]
    pt_c = np.tile(5 + 3 * i[:, None] + np.arange(3), (1, 4)).ravel()
    r_idx = np.concatenate([pose_r, pt_r])
    sp = coo_matrix((np.ones(r_idx.size, np.int8), (r_idx, np.concatenate([pose_c, pt_c]))),
                    shape=(4 * n, 5 + 3 * n))
    p0 = np.concatenate([np.zeros(5), X0.ravel()])
    r0 = fun(p0)
    res = least_squares(fun, p0, jac_sparsity=sp.tocsr(), method="trf", loss=loss, f_scale=loss_scale_px,
                        x_scale="jac", max_nfev=max_nfev)
    R, t, X = unpack(res.x)
    r1 = fun(res.x)
    return TwoViewRefinement(Rigid3(R, t), X, float(np.sqrt(np.mean(r0 ** 2) * 2)),
                             float(np.sqrt(np.mean(r1 ** 2) * 2)), bool(res.status > 0))
