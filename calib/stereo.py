"""Stereo calibration and rectification of a two-camera rig (OpenCV underneath).

``right_from_left`` maps left-camera coordinates to right-camera coordinates: X_r = R X_l + T
(OpenCV's R, T of ``stereoCalibrate``). The baseline is |T| in board units.

Rectification quality is the RMS of the vertical disparity (v_left - v_right, pixels) of the
board corners seen in both images, after undistorting and rectifying them with (R1, P1) and
(R2, P2): ideal rectification makes it equal to the corner noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calib.calibrate import (
    CalibrationError,
    Observation,
    Rejection,
    _deterministic_opencv,
    opencv_flags,
)
from calib.cameras import Camera
from calib.rig import StereoRig
from calib.transforms import Rigid3, skew

__all__ = [
    "Rectification",
    "StereoResult",
    "pair_observations",
    "rectified_vertical_rms",
    "rectify",
    "stereo_calibrate",
]


@dataclass
class Rectification:
    R1: np.ndarray  # [3, 3] rect_left_from_left
    R2: np.ndarray  # [3, 3] rect_right_from_right
    P1: np.ndarray  # [3, 4] rectified left projection
    P2: np.ndarray  # [3, 4] rectified right projection (P2[0, 3] = -f * baseline)
    Q: np.ndarray  # [4, 4] disparity-to-depth
    size: tuple[int, int]  # (width, height) of the rectified images


@dataclass
class StereoResult:
    left: Camera
    right: Camera
    right_from_left: Rigid3
    E: np.ndarray  # [3, 3] essential matrix, x_r^T E x_l = 0 (normalised coordinates)
    F: np.ndarray  # [3, 3] fundamental matrix of the undistorted pixel coordinates
    rms_px: float  # OpenCV's stereo RMS over both images
    rectification: Rectification
    rectified_vertical_rms_px: float
    pairs_used: list[str]
    pairs_rejected: list[Rejection] = field(default_factory=list)
    fix_intrinsics: bool = True

    @property
    def baseline(self) -> float:
        return float(np.linalg.norm(self.right_from_left.translation))

    @property
    def rig(self) -> StereoRig:
        """The calibrated rig (cameras and right_from_left) without the calibration details."""
        return StereoRig(self.left, self.right, self.right_from_left)


def pair_observations(left: list[Observation], right: list[Observation], *, min_corners: int = 6):
    """Keep the corners seen in both images of each pair (same ids). Returns (left', right',
    rejections) where a pair with fewer than ``min_corners`` common corners is rejected."""
    if len(left) != len(right):
        raise ValueError(f"left/right: expected as many left as right views, got {len(left)} and {len(right)}")
    L, R, rej = [], [], []
    for a, b in zip(left, right):
        common, ia, ib = np.intersect1d(a.ids, b.ids, return_indices=True)
        if len(common) < min_corners:
            rej.append(Rejection(f"{a.name} | {b.name}", f"only {len(common)} corners seen in both images"))
            continue
        L.append(Observation(a.name, a.corners[ia], a.object_points[ia], common))
        R.append(Observation(b.name, b.corners[ib], b.object_points[ib], common))
    return L, R, rej


def _grid_rotations(cols: int, rows: int) -> list[np.ndarray]:
    """Id permutations that rotate a cols x rows corner grid onto itself (new k <- old p[k])."""
    ids = np.arange(cols * rows).reshape(rows, cols)
    rots = [ids, ids[::-1, ::-1]]
    if cols == rows:
        rots += [ids.T[::-1, :], ids.T[:, ::-1]]
    return [r.ravel().copy() for r in rots]


def align_symmetric_labels(left_obs: list[Observation], right_obs: list[Observation], left: Camera, right: Camera,
                           cols: int, rows: int) -> tuple[list[Observation], list[str]]:
    """Make a symmetric chessboard's corner labels agree between the two images of each pair.

    Each image was labelled by its own geometric rule, which can disagree between the cameras
    (e.g. a board near 45 degrees of roll). For every pair, each rotation of the right image's
    labels gives an implied rig ``right_from_left = cam_from_board_R @ cam_from_board_L^-1``;
    the rig most pairs agree on (within 5 degrees and 10 % of the baseline) is taken as the
    reference and every pair keeps the labeling closest to it. Returns the relabelled right
    observations and the names of the pairs that were changed."""
    from calib.calibrate import refine_cam_from_board

    perms = _grid_rotations(cols, rows)
    cands = []  # per pair: list of (perm index, implied rig)
    for a, b in zip(left_obs, right_obs):
        full = len(a.ids) == len(b.ids) == cols * rows and np.array_equal(a.ids, np.arange(cols * rows)) \
            and np.array_equal(b.ids, a.ids)
        if not full:
            cands.append([])
            continue
        pl, _ = refine_cam_from_board(left, a.object_points, a.corners)
        row = []
        for k, perm in enumerate(perms):
            pr, _ = refine_cam_from_board(right, b.object_points, b.corners[perm])
            row.append((k, pr @ pl.inverse()))
        cands.append(row)

    def close(r1: Rigid3, r2: Rigid3) -> bool:
        d = r1 @ r2.inverse()
        ang = np.degrees(np.arccos(np.clip((np.trace(d.rotation) - 1) / 2, -1, 1)))
        base = max(np.linalg.norm(r2.translation), 1e-12)
        return ang < 5.0 and np.linalg.norm(r1.translation - r2.translation) < 0.1 * base

    flat = [rig for row in cands for _, rig in row]
    if not flat:
        return list(right_obs), []
    ref = max(flat, key=lambda r: sum(any(close(rig, r) for _, rig in row) for row in cands))
    out, changed = [], []
    for b, row in zip(right_obs, cands):
        best = next((k for k, rig in row if close(rig, ref)), 0)
        if best:
            b = Observation(b.name, b.corners[perms[best]], b.object_points, b.ids)
            changed.append(b.name)
        out.append(b)
    return out, changed


def _dist(cam: Camera, n: int | None = None) -> np.ndarray:
    d = np.asarray(cam.opencv_dist(), dtype=np.float64)
    if n is not None and d.size < n:
        d = np.pad(d, (0, n - d.size))
    return d


def rectify(left: Camera, right: Camera, right_from_left: Rigid3, *, alpha: float = 0.0) -> Rectification:
    """``cv2.stereoRectify`` (``cv2.fisheye.stereoRectify`` for fisheye pairs, ``alpha`` then
    acting as the balance). ``alpha`` = 0 keeps only valid pixels, 1 keeps every source pixel."""
    import cv2

    if left.size != right.size:
        raise ValueError(f"left/right: image sizes differ ({left.size} vs {right.size})")
    if left.is_fisheye != right.is_fisheye:
        raise ValueError("left/right: mixing fisheye and perspective models is not supported for rectification")
    size = left.size
    R = right_from_left.rotation
    T = right_from_left.translation.reshape(3, 1)
    if left.is_fisheye:
        R1, R2, P1, P2, Q = cv2.fisheye.stereoRectify(left.K, _dist(left), right.K, _dist(right), size, R, T,
                                                      flags=cv2.CALIB_ZERO_DISPARITY, newImageSize=size,
                                                      balance=float(alpha), fov_scale=1.0)
    else:
        R1, R2, P1, P2, Q, _, _ = cv2.stereoRectify(left.K, _dist(left), right.K, _dist(right), size, R, T,
                                                    flags=cv2.CALIB_ZERO_DISPARITY, alpha=float(alpha))
    return Rectification(R1, R2, P1, P2, Q, size)


def _rectify_points(cam: Camera, uv: np.ndarray, R: np.ndarray, P: np.ndarray) -> np.ndarray:
    import cv2

    pts = np.ascontiguousarray(uv, dtype=np.float64).reshape(-1, 1, 2)
    if cam.is_fisheye:
        out = cv2.fisheye.undistortPoints(pts, cam.K, _dist(cam), R=R, P=P)
    else:
        out = cv2.undistortPointsIter(pts, cam.K, _dist(cam), R, P,
                                      (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12))
    return out.reshape(-1, 2)


def rectified_vertical_rms(left: Camera, right: Camera, rect: Rectification,
                           left_obs: list[Observation], right_obs: list[Observation]) -> float:
    """RMS (pixels) of v_left - v_right of common corners after rectification."""
    dv = []
    for a, b in zip(left_obs, right_obs):
        common, ia, ib = np.intersect1d(a.ids, b.ids, return_indices=True)
        if not len(common):
            continue
        ua = _rectify_points(left, a.corners[ia], rect.R1, rect.P1)
        ub = _rectify_points(right, b.corners[ib], rect.R2, rect.P2)
        dv.append(ua[:, 1] - ub[:, 1])
    if not dv:
        return float("nan")
    dv = np.concatenate(dv)
    return float(np.sqrt(np.mean(dv * dv)))


def stereo_calibrate(left_obs: list[Observation], right_obs: list[Observation], left: Camera, right: Camera, *,
                     fix_intrinsics: bool = True, alpha: float = 0.0, min_corners: int = 6,
                     symmetric_grid: tuple[int, int] | None = None, extra_flags: int = 0,
                     criteria: tuple[int, float] = (100, 1e-10)) -> StereoResult:
    """Calibrate the rig from paired observations (view k of the left list and view k of the
    right list show the board at the same moment). ``left``/``right``: intrinsics from
    :func:`calib.calibrate.calibrate_camera`; with ``fix_intrinsics=False`` they are refined
    jointly with the relative pose (same model). ``symmetric_grid=(cols, rows)`` for a
    chessboard: first make the two images' corner labels agree (:func:`align_symmetric_labels`).
    ``extra_flags``: OpenCV flags OR-ed into a joint refinement (e.g. ``cv2.CALIB_FIX_PRINCIPAL_POINT``).
    ``criteria``: (max iterations, epsilon) of OpenCV's Levenberg-Marquardt (OpenCV's default is
    (30, 1e-6); an ill-conditioned problem runs to the iteration limit)."""
    import cv2

    if left.model != right.model and not fix_intrinsics:
        raise ValueError(f"left/right: joint refinement needs the same model, got {left.model} and {right.model}")
    if symmetric_grid is not None:
        right_obs, _ = align_symmetric_labels(left_obs, right_obs, left, right, *symmetric_grid)
    L, R, rej = pair_observations(left_obs, right_obs, min_corners=min_corners)
    if len(L) < 1:
        raise CalibrationError("no stereo pair shows the board in both images:\n"
                               + "\n".join(f"  {r.name}: {r.reason}" for r in rej))
    size = left.size
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, int(criteria[0]), float(criteria[1]))
    if left.is_fisheye:
        obj = [np.ascontiguousarray(o.object_points, dtype=np.float64).reshape(-1, 1, 3) for o in L]
        il = [np.ascontiguousarray(o.corners, dtype=np.float64).reshape(-1, 1, 2) for o in L]
        ir = [np.ascontiguousarray(o.corners, dtype=np.float64).reshape(-1, 1, 2) for o in R]
        flags = cv2.fisheye.CALIB_FIX_SKEW | cv2.fisheye.CALIB_RECOMPUTE_EXTRINSIC
        flags |= cv2.fisheye.CALIB_FIX_INTRINSIC if fix_intrinsics else cv2.fisheye.CALIB_USE_INTRINSIC_GUESS
        try:
            with _deterministic_opencv():
                out = cv2.fisheye.stereoCalibrate(obj, il, ir, left.K, _dist(left), right.K, _dist(right), size,
                                                  flags=flags, criteria=crit)
        except cv2.error as e:
            raise CalibrationError(f"OpenCV fisheye stereo calibration failed: {e.err or e}") from None
        rms, K1, D1, K2, D2, Rm, T = out[:7]
        K1, K2 = np.asarray(K1), np.asarray(K2)
        newL = Camera.from_K(K1, *size, np.ravel(D1), fisheye=True)
        newR = Camera.from_K(K2, *size, np.ravel(D2), fisheye=True)
    else:
        obj = [np.ascontiguousarray(o.object_points, dtype=np.float32) for o in L]
        il = [np.ascontiguousarray(o.corners, dtype=np.float32) for o in L]
        ir = [np.ascontiguousarray(o.corners, dtype=np.float32) for o in R]
        n = 8 if "FULL_OPENCV" in (left.model, right.model) else 5
        if fix_intrinsics:
            flags = cv2.CALIB_FIX_INTRINSIC
        else:
            flags = cv2.CALIB_USE_INTRINSIC_GUESS | opencv_flags(left.model) | int(extra_flags)
        try:
            with _deterministic_opencv():
                rms, K1, D1, K2, D2, Rm, T, E, F = cv2.stereoCalibrate(
                    obj, il, ir, left.K.copy(), _dist(left, n), right.K.copy(), _dist(right, n), size,
                    flags=flags, criteria=crit)
        except cv2.error as e:
            raise CalibrationError(f"OpenCV stereo calibration failed: {e.err or e}") from None
        from calib.calibrate import _camera_from_opencv

        newL = left if fix_intrinsics else _camera_from_opencv(left.model, size, K1, D1)
        newR = right if fix_intrinsics else _camera_from_opencv(right.model, size, K2, D2)
    if fix_intrinsics:
        newL, newR = left, right
    rig = Rigid3(np.asarray(Rm, dtype=np.float64), np.asarray(T, dtype=np.float64).ravel())
    E = skew(rig.translation) @ rig.rotation
    F = np.linalg.inv(newR.K).T @ E @ np.linalg.inv(newL.K)
    F = F / (F[2, 2] if abs(F[2, 2]) > 1e-12 else np.linalg.norm(F))
    rect = rectify(newL, newR, rig, alpha=alpha)
    vrms = rectified_vertical_rms(newL, newR, rect, L, R)
    return StereoResult(newL, newR, rig, E, F, float(rms), rect, vrms, [f"{a.name} | {b.name}" for a, b in zip(L, R)],
                        rej, fix_intrinsics)
