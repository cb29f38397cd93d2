"""The bundle-adjustment problem as flat arrays, and its conversion to/from a Reconstruction.

Objective (the same as COLMAP / Ceres, so costs compare one to one)::

    cost = 1/2 * sum_obs rho( || project(camera_c, R_i X_j + t_i) - uv_ij ||^2 )

with ``rho`` the robust loss applied to the squared pixel residual of each observation
(identity for ``"trivial"``). Observations whose point lies behind the camera (camera-frame
z <= 1e-12) contribute zero, as in COLMAP's reprojection cost functor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calib import Camera, Rigid3
from recon.scene import Reconstruction

__all__ = ["BAProblem", "ProblemIndex", "problem_from_reconstruction", "update_reconstruction"]


@dataclass(eq=False)
class BAProblem:
    """Flat-array bundle-adjustment problem (all float64 NumPy, our pixel convention).

    cameras:         C intrinsics (calib.Camera, COLMAP model names and parameter order)
    image_camera:    [I] int, index into ``cameras`` of each image
    rotations:       [I, 3, 3] cam_from_world rotation of each image
    translations:    [I, 3] cam_from_world translation
    points:          [N, 3] world points
    obs_image:       [M] int, image index of each observation
    obs_point:       [M] int, point index of each observation
    obs_uv:          [M, 2] observed pixels, (0, 0) = centre of the top-left pixel
    intrinsics_free: C bool arrays [P_c]: which parameters of camera c are refined
    pose_fixed:      [I] bool: poses held constant (besides the gauge, see BAOptions.gauge)
    point_fixed:     [N] bool: points held constant
    """

    cameras: list[Camera]
    image_camera: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray
    points: np.ndarray
    obs_image: np.ndarray
    obs_point: np.ndarray
    obs_uv: np.ndarray
    intrinsics_free: list[np.ndarray] = field(default_factory=list)
    pose_fixed: np.ndarray | None = None
    point_fixed: np.ndarray | None = None

    def __post_init__(self):
        C = len(self.cameras)
        for c in self.cameras:
            if not isinstance(c, Camera):
                raise TypeError(f"cameras: expected calib.Camera items, got {type(c).__name__}")
        self.image_camera = np.asarray(self.image_camera, dtype=np.int64).reshape(-1)
        I = self.image_camera.shape[0]
        self.rotations = np.asarray(self.rotations, dtype=np.float64).reshape(I, 3, 3)
        self.translations = np.asarray(self.translations, dtype=np.float64).reshape(I, 3)
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
        N = self.points.shape[0]
        self.obs_image = np.asarray(self.obs_image, dtype=np.int64).reshape(-1)
        self.obs_point = np.asarray(self.obs_point, dtype=np.int64).reshape(-1)
        self.obs_uv = np.asarray(self.obs_uv, dtype=np.float64).reshape(-1, 2)
        M = self.obs_uv.shape[0]
        if self.obs_image.shape != (M,) or self.obs_point.shape != (M,):
            raise ValueError(f"obs_image, obs_point: expected [{M}] each (one per obs_uv row), got "
                             f"{self.obs_image.shape} and {self.obs_point.shape}")
        if I and (self.image_camera.min() < 0 or self.image_camera.max() >= C):
            raise ValueError(f"image_camera: indices must lie in [0, {C}), got range "
                             f"[{self.image_camera.min()}, {self.image_camera.max()}]")
        if M and (self.obs_image.min() < 0 or self.obs_image.max() >= I):
            raise ValueError(f"obs_image: indices must lie in [0, {I})")
        if M and (self.obs_point.min() < 0 or self.obs_point.max() >= N):
            raise ValueError(f"obs_point: indices must lie in [0, {N})")
        for name in ("rotations", "translations", "points", "obs_uv"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"{name}: contains NaN/Inf")
        if not self.intrinsics_free:
            self.intrinsics_free = [np.ones(c.spec.num_params, dtype=bool) for c in self.cameras]
        if len(self.intrinsics_free) != C:
            raise ValueError(f"intrinsics_free: expected {C} masks (one per camera), got "
                             f"{len(self.intrinsics_free)}")
        masks = []
        for c, m in zip(self.cameras, self.intrinsics_free):
            m = np.asarray(m, dtype=bool).reshape(-1)
            if m.shape != (c.spec.num_params,):
                raise ValueError(f"intrinsics_free: {c.model} needs a mask of {c.spec.num_params}, "
                                 f"got {m.shape}")
            masks.append(m)
        self.intrinsics_free = masks
        self.pose_fixed = (np.zeros(I, dtype=bool) if self.pose_fixed is None
                           else np.asarray(self.pose_fixed, dtype=bool).reshape(I))
        self.point_fixed = (np.zeros(N, dtype=bool) if self.point_fixed is None
                            else np.asarray(self.point_fixed, dtype=bool).reshape(N))

    @property
    def num_images(self) -> int:
        return self.image_camera.shape[0]

    @property
    def num_points(self) -> int:
        return self.points.shape[0]

    @property
    def num_observations(self) -> int:
        return self.obs_uv.shape[0]

    def copy(self) -> BAProblem:
        return BAProblem(list(self.cameras), self.image_camera.copy(), self.rotations.copy(),
                         self.translations.copy(), self.points.copy(), self.obs_image.copy(),
                         self.obs_point.copy(), self.obs_uv.copy(),
                         [m.copy() for m in self.intrinsics_free], self.pose_fixed.copy(),
                         self.point_fixed.copy())

    def cam_from_world(self, i: int) -> Rigid3:
        return Rigid3(self.rotations[i], self.translations[i])

    def reprojection_residuals(self) -> tuple[np.ndarray, np.ndarray]:
        """(residuals [M, 2] = projected - observed in pixels, valid [M] = in front)."""
        Xc = np.einsum("mij,mj->mi", self.rotations[self.obs_image], self.points[self.obs_point])
        Xc += self.translations[self.obs_image]
        res = np.zeros((self.num_observations, 2))
        valid = Xc[:, 2] > 1e-12
        cam_of_obs = self.image_camera[self.obs_image]
        for c, cam in enumerate(self.cameras):
            sel = np.nonzero((cam_of_obs == c) & valid)[0]
            if sel.size:
                uv, _ = cam.project(Xc[sel])
                res[sel] = uv - self.obs_uv[sel]
        res[~valid] = 0.0
        return res, valid


@dataclass(frozen=True)
class ProblemIndex:
    """Maps problem indices back to the Reconstruction's ids."""

    camera_ids: list[int]  # camera index -> camera_id
    image_ids: list[int]  # image index -> image_id
    point_ids: list[int]  # point index -> point3D_id


def problem_from_reconstruction(rec: Reconstruction, *, refine_focal: bool = True,
                                refine_principal_point: bool = False, refine_extra: bool = True,
                                fixed_image_ids=(), constant_camera_ids=()) -> tuple[BAProblem, ProblemIndex]:
    """Build a problem from the registered images and all 3D points of ``rec``.

    The defaults refine what COLMAP's ``BundleAdjustmentOptions`` refines by default: focal
    length(s) and distortion, not the principal point. ``constant_camera_ids`` keeps every
    intrinsic of those cameras fixed; ``fixed_image_ids`` keeps those poses fixed.
    """
    camera_ids = sorted(rec.cameras)
    cam_index = {cid: k for k, cid in enumerate(camera_ids)}
    image_ids = sorted(i for i, im in rec.images.items() if im.registered)
    img_index = {iid: k for k, iid in enumerate(image_ids)}
    cameras = [rec.cameras[cid] for cid in camera_ids]
    masks = []
    for cid, cam in zip(camera_ids, cameras):
        spec = cam.spec
        nf = 1 if spec.single_focal else 2
        m = np.zeros(spec.num_params, dtype=bool)
        if cid not in set(constant_camera_ids):
            m[:nf] = refine_focal
            m[nf:nf + 2] = refine_principal_point
            m[nf + 2:] = refine_extra
        masks.append(m)
    R = np.array([rec.images[i].cam_from_world.rotation for i in image_ids]).reshape(-1, 3, 3)
    t = np.array([rec.images[i].cam_from_world.translation for i in image_ids]).reshape(-1, 3)
    point_ids, xyz, oi, op, uv = [], [], [], [], []
    for pid, p in rec.points3D.items():
        k = len(point_ids)
        used = False
        for image_id, idx in p.track:
            j = img_index.get(int(image_id))
            if j is None:
                continue
            oi.append(j)
            op.append(k)
            uv.append(rec.images[int(image_id)].keypoints[idx])
            used = True
        if used:
            point_ids.append(int(pid))
            xyz.append(p.xyz)
    problem = BAProblem(cameras, [cam_index[rec.images[i].camera_id] for i in image_ids], R, t,
                        np.array(xyz).reshape(-1, 3), oi, op, np.array(uv).reshape(-1, 2), masks,
                        np.array([i in set(fixed_image_ids) for i in image_ids], dtype=bool))
    return problem, ProblemIndex(camera_ids, image_ids, point_ids)


def update_reconstruction(rec: Reconstruction, problem: BAProblem, index: ProblemIndex) -> None:
    """Write refined cameras, poses, points (and per-point mean errors) back into ``rec``."""
    for k, cid in enumerate(index.camera_ids):
        rec.cameras[cid] = problem.cameras[k]
    for k, iid in enumerate(index.image_ids):
        rec.images[iid].cam_from_world = problem.cam_from_world(k)
    res, valid = problem.reprojection_residuals()
    err = np.where(valid, np.linalg.norm(res, axis=1), np.nan)
    sums = np.bincount(problem.obs_point, weights=np.nan_to_num(err), minlength=problem.num_points)
    cnt = np.bincount(problem.obs_point, weights=valid.astype(float), minlength=problem.num_points)
    for k, pid in enumerate(index.point_ids):
        p = rec.points3D[pid]
        p.xyz = problem.points[k].copy()
        p.error = float(sums[k] / cnt[k]) if cnt[k] else -1.0
