"""Rotations and rigid transforms (SO(3), SE(3)), float64 NumPy, vectorised.

Conventions (docs/conventions.md):
- A transform is named ``dst_from_src``: ``cam_from_world.apply(X_world) -> X_cam``.
- Quaternions are Hamilton, stored ``[w, x, y, z]``; returned with ``w >= 0``.
- Axis-angle ("rotation vector") is ``angle * unit_axis`` in radians, as ``cv2.Rodrigues``.

All functions accept a single element (``[3]``, ``[4]``, ``[3, 3]``) or a batch (``[..., 3]``,
``[..., 4]``, ``[..., 3, 3]``) and return the same leading shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Rigid3",
    "Sim3",
    "axis_angle_from_matrix",
    "look_at",
    "matrix_from_axis_angle",
    "matrix_from_quat",
    "project_to_so3",
    "quat_from_matrix",
    "quat_multiply",
    "quat_slerp",
    "rotation_angle_deg",
    "skew",
]


def _as_float_array(x, name: str, last_shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape[arr.ndim - len(last_shape):] != last_shape or arr.ndim < len(last_shape):
        raise ValueError(f"{name}: expected shape [..., {', '.join(map(str, last_shape))}], got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or Inf")
    return arr


def skew(v) -> np.ndarray:
    """Cross-product matrix ``[v]_x`` with ``[v]_x @ w == cross(v, w)``. v: [..., 3] -> [..., 3, 3]."""
    v = _as_float_array(v, "v", (3,))
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def matrix_from_quat(q) -> np.ndarray:
    """Rotation matrix from a Hamilton quaternion [..., 4] (w, x, y, z); normalised first."""
    q = _as_float_array(q, "q", (4,))
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise ValueError("q: zero-norm quaternion")
    w, x, y, z = np.moveaxis(q / norm, -1, 0)
    R = np.empty(q.shape[:-1] + (3, 3))
    R[..., 0, 0] = 1 - 2 * (y * y + z * z)
    R[..., 0, 1] = 2 * (x * y - w * z)
    R[..., 0, 2] = 2 * (x * z + w * y)
    R[..., 1, 0] = 2 * (x * y + w * z)
    R[..., 1, 1] = 1 - 2 * (x * x + z * z)
    R[..., 1, 2] = 2 * (y * z - w * x)
    R[..., 2, 0] = 2 * (x * z - w * y)
    R[..., 2, 1] = 2 * (y * z + w * x)
    R[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return R


def quat_from_matrix(R) -> np.ndarray:
    """Hamilton quaternion (w, x, y, z), w >= 0, from rotation matrices [..., 3, 3].

    Shepperd's method: pick the largest of (w, x, y, z) to divide by, so it is stable for every
    rotation including 180 degrees.
    """
    R = _as_float_array(R, "R", (3, 3))
    m = R.reshape(-1, 3, 3)
    tr = np.trace(m, axis1=1, axis2=2)
    cand = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1)
    k = np.argmax(cand, axis=1)
    q = np.empty((m.shape[0], 4))
    for i in range(4):
        sel = k == i
        if not np.any(sel):
            continue
        a = m[sel]
        if i == 0:
            s = np.sqrt(1.0 + tr[sel]) * 2
            q[sel] = np.stack([0.25 * s, (a[:, 2, 1] - a[:, 1, 2]) / s,
                               (a[:, 0, 2] - a[:, 2, 0]) / s, (a[:, 1, 0] - a[:, 0, 1]) / s], 1)
        elif i == 1:
            s = np.sqrt(1.0 + a[:, 0, 0] - a[:, 1, 1] - a[:, 2, 2]) * 2
            q[sel] = np.stack([(a[:, 2, 1] - a[:, 1, 2]) / s, 0.25 * s,
                               (a[:, 0, 1] + a[:, 1, 0]) / s, (a[:, 0, 2] + a[:, 2, 0]) / s], 1)
        elif i == 2:
            s = np.sqrt(1.0 + a[:, 1, 1] - a[:, 0, 0] - a[:, 2, 2]) * 2
            q[sel] = np.stack([(a[:, 0, 2] - a[:, 2, 0]) / s, (a[:, 0, 1] + a[:, 1, 0]) / s,
                               0.25 * s, (a[:, 1, 2] + a[:, 2, 1]) / s], 1)
        else:
            s = np.sqrt(1.0 + a[:, 2, 2] - a[:, 0, 0] - a[:, 1, 1]) * 2
            q[sel] = np.stack([(a[:, 1, 0] - a[:, 0, 1]) / s, (a[:, 0, 2] + a[:, 2, 0]) / s,
                               (a[:, 1, 2] + a[:, 2, 1]) / s, 0.25 * s], 1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    return q.reshape(R.shape[:-2] + (4,))


def matrix_from_axis_angle(rvec) -> np.ndarray:
    """Rodrigues' formula: rotation vector [..., 3] (radians * unit axis) -> [..., 3, 3]."""
    rvec = _as_float_array(rvec, "rvec", (3,))
    theta = np.linalg.norm(rvec, axis=-1)[..., None, None]
    K = skew(rvec)
    K2 = K @ K
    small = theta < 1e-8
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    return np.eye(3) + a * K + b * K2


def axis_angle_from_matrix(R) -> np.ndarray:
    """Inverse of :func:`matrix_from_axis_angle`; angle in [0, pi]. Goes through the quaternion
    so it is exact near 0 and 180 degrees."""
    q = quat_from_matrix(R)
    w = np.clip(q[..., 0], -1.0, 1.0)
    xyz = q[..., 1:]
    s = np.linalg.norm(xyz, axis=-1)
    angle = 2.0 * np.arctan2(s, w)
    small = s < 1e-12
    factor = np.where(small, 2.0, angle / np.where(small, 1.0, s))
    return xyz * factor[..., None]


def quat_multiply(q1, q2) -> np.ndarray:
    """Hamilton product q1 * q2 (apply q2 first, then q1), both [..., 4] wxyz."""
    q1 = _as_float_array(q1, "q1", (4,))
    q2 = _as_float_array(q2, "q2", (4,))
    w1, x1, y1, z1 = np.moveaxis(q1, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(q2, -1, 0)
    return np.stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ], axis=-1)


def quat_slerp(q0, q1, t) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions (shortest arc); t in [0, 1]."""
    q0 = _as_float_array(q0, "q0", (4,))
    q1 = _as_float_array(q1, "q1", (4,))
    q0 = q0 / np.linalg.norm(q0, axis=-1, keepdims=True)
    q1 = q1 / np.linalg.norm(q1, axis=-1, keepdims=True)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    # theta from atan2 of |q0 - q1| and |q0 + q1| is accurate for tiny angles where arccos(dot)
    # loses half the digits; below 1e-9 rad the linear weights equal the sine ratios to 1e-18.
    theta = 2.0 * np.arctan2(np.linalg.norm(q0 - q1, axis=-1, keepdims=True),
                             np.linalg.norm(q0 + q1, axis=-1, keepdims=True))
    near = theta < 1e-9
    sin_theta = np.where(near, 1.0, np.sin(theta))
    a = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / sin_theta)
    b = np.where(near, t, np.sin(t * theta) / sin_theta)
    q = a * q0 + b * q1
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def rotation_angle_deg(R) -> np.ndarray:
    """Angle of rotation matrices in degrees (e.g. of ``R_est @ R_true.T``), robust near 0."""
    q = quat_from_matrix(R)
    return np.degrees(2.0 * np.arctan2(np.linalg.norm(q[..., 1:], axis=-1), np.abs(q[..., 0])))


def project_to_so3(M) -> np.ndarray:
    """Nearest rotation matrix (Frobenius) to M [..., 3, 3], via SVD with det = +1."""
    M = _as_float_array(M, "M", (3, 3))
    U, _, Vt = np.linalg.svd(M)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.ones(M.shape[:-2] + (3,))
    D[..., 2] = d
    return (U * D[..., None, :]) @ Vt


@dataclass(frozen=True)
class Rigid3:
    """A rigid transform ``dst_from_src``: ``X_dst = rotation @ X_src + translation``.

    Name variables after what they map, e.g. ``cam_from_world``; compose with ``@``:
    ``cam_from_world = cam_from_rig @ rig_from_world``.
    """

    rotation: np.ndarray  # [3, 3] float64, orthonormal, det +1
    translation: np.ndarray  # [3] float64, in the units of the dst frame (metres where known)

    def __post_init__(self):
        R = _as_float_array(self.rotation, "rotation", (3, 3))
        t = _as_float_array(self.translation, "translation", (3,))
        if R.shape != (3, 3) or t.shape != (3,):
            raise ValueError(f"Rigid3: expected rotation [3, 3] and translation [3], got {R.shape}, {t.shape}")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
            raise ValueError("Rigid3: rotation is not orthonormal with det +1")
        object.__setattr__(self, "rotation", R)
        object.__setattr__(self, "translation", t)

    @classmethod
    def identity(cls) -> Rigid3:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_matrix(cls, T) -> Rigid3:
        """From a [4, 4] or [3, 4] matrix ``[R | t]``."""
        T = np.asarray(T, dtype=np.float64)
        if T.shape not in ((4, 4), (3, 4)):
            raise ValueError(f"T: expected [4, 4] or [3, 4], got {T.shape}")
        if not np.all(np.isfinite(T)):
            raise ValueError("T: contains NaN or Inf")
        if T.shape == (4, 4) and not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-12):
            raise ValueError(f"T: last row must be [0, 0, 0, 1] for a rigid transform, got {T[3].tolist()}")
        return cls(T[:3, :3], T[:3, 3])

    @classmethod
    def from_quat(cls, quat_wxyz, translation) -> Rigid3:
        return cls(matrix_from_quat(quat_wxyz), translation)

    @classmethod
    def from_axis_angle(cls, rvec, translation) -> Rigid3:
        return cls(matrix_from_axis_angle(rvec), translation)

    @property
    def quat_wxyz(self) -> np.ndarray:
        return quat_from_matrix(self.rotation)

    @property
    def axis_angle(self) -> np.ndarray:
        return axis_angle_from_matrix(self.rotation)

    def matrix(self) -> np.ndarray:
        """[4, 4] homogeneous matrix."""
        T = np.eye(4)
        T[:3, :3] = self.rotation
        T[:3, 3] = self.translation
        return T

    def matrix3x4(self) -> np.ndarray:
        return self.matrix()[:3]

    def inverse(self) -> Rigid3:
        Rt = self.rotation.T
        return Rigid3(Rt, -Rt @ self.translation)

    def __matmul__(self, other: Rigid3) -> Rigid3:
        if not isinstance(other, Rigid3):
            return NotImplemented
        return Rigid3(self.rotation @ other.rotation, self.rotation @ other.translation + self.translation)

    def apply(self, points) -> np.ndarray:
        """Map points [..., 3] from src to dst."""
        p = _as_float_array(points, "points", (3,))
        return p @ self.rotation.T + self.translation

    def src_origin_in_dst(self) -> np.ndarray:
        """Where the origin of src lies in dst (the translation)."""
        return self.translation.copy()

    def dst_origin_in_src(self) -> np.ndarray:
        """Where the origin of dst lies in src: for ``cam_from_world`` the camera centre in world."""
        return -self.rotation.T @ self.translation

    def interpolate(self, other: Rigid3, t: float) -> Rigid3:
        """Geodesic-ish interpolation: slerp on rotation, linear on translation (t in [0, 1])."""
        q = quat_slerp(self.quat_wxyz, other.quat_wxyz, t)
        return Rigid3(matrix_from_quat(q), (1 - t) * self.translation + t * other.translation)

    def __repr__(self) -> str:
        q = np.round(self.quat_wxyz, 6).tolist()
        return f"Rigid3(quat_wxyz={q}, translation={np.round(self.translation, 6).tolist()})"


@dataclass(frozen=True)
class Sim3:
    """A similarity ``X_dst = scale * rotation @ X_src + translation`` (e.g. aligning an SfM
    result to ground truth)."""

    scale: float  # > 0
    rotation: np.ndarray  # [3, 3] orthonormal, det +1
    translation: np.ndarray  # [3] in dst units

    def __post_init__(self):
        if not (np.isscalar(self.scale) and np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale: expected a positive finite number, got {self.scale!r}")
        rigid = Rigid3(self.rotation, self.translation)  # checks shapes and orthonormality
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "rotation", rigid.rotation)
        object.__setattr__(self, "translation", rigid.translation)

    @classmethod
    def identity(cls) -> Sim3:
        return cls(1.0, np.eye(3), np.zeros(3))

    def matrix(self) -> np.ndarray:
        """[4, 4] homogeneous matrix ``[s R | t]``."""
        T = np.eye(4)
        T[:3, :3] = self.scale * self.rotation
        T[:3, 3] = self.translation
        return T

    def __matmul__(self, other: Sim3) -> Sim3:
        """``a_from_c = a_from_b @ b_from_c``."""
        if not isinstance(other, Sim3):
            return NotImplemented
        return Sim3(self.scale * other.scale, self.rotation @ other.rotation,
                    self.scale * self.rotation @ other.translation + self.translation)

    def apply(self, points) -> np.ndarray:
        """Map points [..., 3] from src to dst."""
        p = _as_float_array(points, "points", (3,))
        return self.scale * p @ self.rotation.T + self.translation

    def transform_pose(self, cam_from_world: Rigid3) -> Rigid3:
        """Given ``cam_from_src``, return ``cam_from_dst`` for ``dst_from_src = self``."""
        # X_cam = R X_src + t and X_src = Rs^T (X_dst - ts) / s; the camera frame is scaled by s
        # too so that the result stays rigid: X_cam' = R Rs^T (X_dst - ts) + s t.
        if not isinstance(cam_from_world, Rigid3):
            raise TypeError(f"cam_from_world: expected calib.Rigid3, got {type(cam_from_world).__name__}")
        R = cam_from_world.rotation @ self.rotation.T
        return Rigid3(R, self.scale * cam_from_world.translation - R @ self.translation)

    def inverse(self) -> Sim3:
        Rt = self.rotation.T
        return Sim3(1.0 / self.scale, Rt, -Rt @ self.translation / self.scale)

    @classmethod
    def align(cls, src, dst, *, with_scale: bool = True) -> Sim3:
        """Least-squares ``dst ~ Sim3 @ src`` (Umeyama 1991). src, dst: [N, 3], N >= 3."""
        src = _as_float_array(src, "src", (3,))
        dst = _as_float_array(dst, "dst", (3,))
        if src.shape != dst.shape or src.ndim != 2 or src.shape[0] < 3:
            raise ValueError(f"src, dst: expected equal shapes [N>=3, 3], got {src.shape} and {dst.shape}")
        mu_s, mu_d = src.mean(0), dst.mean(0)
        xs, xd = src - mu_s, dst - mu_d
        cov = xd.T @ xs / len(src)
        U, S, Vt = np.linalg.svd(cov)
        D = np.eye(3)
        if np.linalg.det(U) * np.linalg.det(Vt) < 0:
            D[2, 2] = -1
        R = U @ D @ Vt
        var_s = np.mean(np.sum(xs**2, axis=1))
        if var_s <= 1e-300 or S[1] <= 1e-12 * S[0]:
            raise ValueError("src, dst: the points are identical or collinear; the similarity is "
                             f"not determined (singular values of the covariance {S.tolist()})")
        scale = float(np.trace(np.diag(S) @ D) / var_s) if with_scale else 1.0
        t = mu_d - scale * R @ mu_s
        return cls(scale, R, t)


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> Rigid3:
    """``cam_from_world`` of a camera at ``eye`` [3] looking at ``target`` [3] with image-up ~
    ``up`` [3] (world frame; OpenCV camera axes: z forward, x right, y down, so the camera's -y
    leans towards ``up``). ValueError when target == eye or up is parallel to the view."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    if np.linalg.norm(z) < 1e-12:
        raise ValueError("target: must differ from eye")
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("up: parallel to the viewing direction")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return Rigid3(R, -R @ eye)
