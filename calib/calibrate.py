"""Intrinsic camera calibration from board observations.

The solver is OpenCV's (``cv2.calibrateCameraExtended``, ``cv2.fisheye.calibrate``), so with the
same input, model and flags and nothing rejected the result IS ``cv2.calibrateCamera``'s. Around
it this module adds what OpenCV leaves to the user:

* outlier rejection with reasons: after a solve, a corner whose reprojection error exceeds
  ``corner_k`` robust sigmas (sigma from the median error) is dropped; a view whose RMS exceeds
  ``view_k`` times the median view RMS, or that lost more than half its corners, is dropped;
  then the problem is solved again (at most ``max_rounds`` times);
* parameter standard deviations from the Jacobian at the solution (all intrinsics and every
  view's pose): ``cov = sigma^2 (J^T J)^-1`` with ``sigma^2 = sum r^2 / (2 N - P - 6 V)``;
* a projection-uncertainty map (:func:`projection_uncertainty`), the mrcal method: a pixel's ray
  at the working distance is fixed relative to the boards (mapped into every board frame with the
  solved poses and back with perturbed ones, averaged), projected with perturbed intrinsics, and
  the covariance is propagated linearly; the map is the worst-direction 1-sigma in pixels;
* a coverage map of observed corners with advice on where more views are needed;
* model selection by cross-validation over held-out views (:func:`select_model`).

Models (COLMAP names): SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV (k1 k2 p1 p2),
FULL_OPENCV (OpenCV's rational model: k1 k2 p1 p2 k3 k4 k5 k6) and OPENCV_FISHEYE (k1..k4).

``rms_px`` everywhere is OpenCV's: sqrt(mean over corners of |residual|^2) in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calib.cameras import Camera
from calib.transforms import Rigid3, skew

__all__ = [
    "AUTO_MODEL_CANDIDATES",
    "CALIBRATION_MODELS",
    "MODEL_PREFERENCE",
    "CalibrationConfig",
    "CalibrationError",
    "CalibrationResult",
    "CoverageMap",
    "ModelScore",
    "Observation",
    "Rejection",
    "UncertaintyMap",
    "ViewResult",
    "calibrate_camera",
    "compare_cameras",
    "comparison_grid",
    "coverage_map",
    "opencv_flags",
    "pick_model",
    "projection_uncertainty",
    "refine_cam_from_board",
    "select_model",
    "solve_intrinsics",
]

CALIBRATION_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV",
                      "OPENCV_FISHEYE")
AUTO_MODEL_CANDIDATES = ("PINHOLE", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE")


class CalibrationError(ValueError):
    """The observations cannot be calibrated (too few views, solver failure); the message says
    which views and why."""


@dataclass(frozen=True)
class CalibrationConfig:
    """Options of :func:`calibrate_camera`.

    model: COLMAP model name (see ``CALIBRATION_MODELS``) or "auto" (cross-validated choice
        among ``auto_candidates``).
    reject_outliers: drop outlier corners / views and re-solve (reasons are recorded).
    corner_k: a corner is an outlier when its error exceeds corner_k * sigma, sigma being the
        robust per-axis noise (median corner error / 1.1774, the median of a 2D Gaussian norm).
    view_k: a view is an outlier when its RMS exceeds view_k * the median view RMS.
    min_outlier_px: errors below this (pixels) are never outliers (clean data has tiny sigma).
    max_rounds: rejection / re-solve rounds.
    min_views: fewer usable views than this is an error.
    min_corners: a view with fewer corners is not used.
    extra_flags: OR-ed into the OpenCV flags of the model (e.g. cv2.CALIB_FIX_PRINCIPAL_POINT).
    cv_folds: folds of the model cross-validation (held-out views).
    auto_tolerance: kept for old callers; "auto" uses the one-standard-error rule (see
        :func:`pick_model`), and a model within this factor of the best also counts as
        indistinguishable (a floor for folds that happen to agree closely).
    """

    model: str = "OPENCV"
    reject_outliers: bool = True
    corner_k: float = 5.0
    view_k: float = 3.0
    min_outlier_px: float = 0.5
    max_rounds: int = 3
    min_views: int = 3
    min_corners: int = 6
    extra_flags: int = 0
    cv_folds: int = 5
    auto_candidates: tuple[str, ...] = AUTO_MODEL_CANDIDATES
    auto_tolerance: float = 1.02

    def __post_init__(self):
        if self.model != "auto" and self.model not in CALIBRATION_MODELS:
            raise ValueError(f"model: expected 'auto' or one of {CALIBRATION_MODELS}, got {self.model!r}")
        for m in self.auto_candidates:
            if m not in CALIBRATION_MODELS:
                raise ValueError(f"auto_candidates: {m!r} is not one of {CALIBRATION_MODELS}")
        if self.min_views < 3:
            raise ValueError(f"min_views: at least 3 views are needed, got {self.min_views}")


@dataclass
class Observation:
    """Board corners seen in one view."""

    name: str  # image name (for messages and reports)
    corners: np.ndarray  # [N, 2] pixels (pixel-centre convention)
    object_points: np.ndarray  # [N, 3] board frame
    ids: np.ndarray  # [N] corner ids (board_object_points index)

    def __post_init__(self):
        self.corners = np.asarray(self.corners, dtype=np.float64).reshape(-1, 2)
        self.object_points = np.asarray(self.object_points, dtype=np.float64).reshape(-1, 3)
        self.ids = np.asarray(self.ids, dtype=np.int64).ravel()
        if not (len(self.corners) == len(self.object_points) == len(self.ids)):
            raise ValueError(f"observation {self.name}: corners {self.corners.shape}, object_points "
                             f"{self.object_points.shape} and ids {self.ids.shape} disagree")

    def subset(self, mask: np.ndarray) -> Observation:
        return Observation(self.name, self.corners[mask], self.object_points[mask], self.ids[mask])

    @classmethod
    def from_detection(cls, name: str, detection) -> Observation:
        return cls(name, detection.corners, detection.object_points, detection.ids)


@dataclass
class ViewResult:
    name: str
    cam_from_board: Rigid3
    rms_px: float
    corners: np.ndarray  # [N, 2] used corners
    ids: np.ndarray  # [N]
    residuals: np.ndarray  # [N, 2] projected - observed, pixels
    object_points: np.ndarray  # [N, 3]


@dataclass
class Rejection:
    name: str  # image name
    reason: str
    corner_id: int | None = None  # None: the whole view
    error_px: float | None = None

    def to_json(self) -> dict:
        d = {"view": self.name, "reason": self.reason}
        if self.corner_id is not None:
            d["corner_id"] = int(self.corner_id)
        if self.error_px is not None:
            d["error_px"] = round(float(self.error_px), 4)
        return d


@dataclass
class ModelScore:
    model: str
    cv_rms_px: float  # RMS over held-out views (pose re-fitted, intrinsics from the other views)
    fit_rms_px: float  # RMS of the fit on all views
    failed: str = ""  # why the model could not be fitted, if it could not
    fold_rms_px: tuple[float, ...] = ()  # held-out RMS of each fold (same folds for every model)
    cv_rms_se_px: float = float("nan")  # standard error of the mean fold RMS: std(folds) / sqrt(K)


@dataclass
class CalibrationResult:
    camera: Camera
    rms_px: float
    views: list[ViewResult]
    rejected_views: list[Rejection]
    rejected_corners: list[Rejection]
    param_std: np.ndarray  # [P] 1-sigma of camera.params
    covariance: np.ndarray  # [P + 6 V, P + 6 V]: intrinsics then (rotation, translation) per view
    sigma_px: float  # per-axis noise estimated from the residuals
    opencv_flags: int
    model_scores: list[ModelScore] = field(default_factory=list)
    model_rule: str = ""  # why "auto" chose this model (empty when the model was given)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.camera.size

    @property
    def intrinsic_covariance(self) -> np.ndarray:
        P = self.camera.spec.num_params
        return self.covariance[:P, :P]


# =============================================================================================
# OpenCV solve
# =============================================================================================

def opencv_flags(model: str) -> int:
    """OpenCV flags that make ``cv2.calibrateCamera`` (or ``cv2.fisheye.calibrate``) fit exactly
    the parameters of a COLMAP model."""
    import cv2

    fix_radial = cv2.CALIB_FIX_K1 | cv2.CALIB_FIX_K2 | cv2.CALIB_FIX_K3
    table = {
        "SIMPLE_PINHOLE": cv2.CALIB_FIX_ASPECT_RATIO | fix_radial | cv2.CALIB_ZERO_TANGENT_DIST,
        "PINHOLE": fix_radial | cv2.CALIB_ZERO_TANGENT_DIST,
        "SIMPLE_RADIAL": cv2.CALIB_FIX_ASPECT_RATIO | cv2.CALIB_FIX_K2 | cv2.CALIB_FIX_K3 | cv2.CALIB_ZERO_TANGENT_DIST,
        "RADIAL": cv2.CALIB_FIX_ASPECT_RATIO | cv2.CALIB_FIX_K3 | cv2.CALIB_ZERO_TANGENT_DIST,
        "OPENCV": cv2.CALIB_FIX_K3,
        "FULL_OPENCV": cv2.CALIB_RATIONAL_MODEL,
        "OPENCV_FISHEYE": cv2.fisheye.CALIB_RECOMPUTE_EXTRINSIC | cv2.fisheye.CALIB_FIX_SKEW,
    }
    if model not in table:
        raise ValueError(f"model: calibration supports {CALIBRATION_MODELS}, got {model!r}")
    return table[model]


class _deterministic_opencv:
    """Run OpenCV single-threaded inside the block: its multi-threaded reductions make
    ``calibrateCamera`` vary from run to run by ~1e-9..1e-6 relative; one thread makes the same
    input give bit-identical output (the problems are small, the cost is negligible)."""

    def __enter__(self):
        import cv2

        self._n = cv2.getNumThreads()
        cv2.setNumThreads(1)
        return self

    def __exit__(self, *exc):
        import cv2

        cv2.setNumThreads(self._n)
        return False


def _camera_from_opencv(model: str, size: tuple[int, int], K: np.ndarray, dist: np.ndarray) -> Camera:
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    d = np.asarray(dist, dtype=np.float64).ravel()
    d = np.pad(d, (0, max(0, 8 - d.size)))
    if model == "SIMPLE_PINHOLE":
        p = [fx, cx, cy]
    elif model == "PINHOLE":
        p = [fx, fy, cx, cy]
    elif model == "SIMPLE_RADIAL":
        p = [fx, cx, cy, d[0]]
    elif model == "RADIAL":
        p = [fx, cx, cy, d[0], d[1]]
    elif model == "OPENCV":
        p = [fx, fy, cx, cy, d[0], d[1], d[2], d[3]]
    elif model == "FULL_OPENCV":
        p = [fx, fy, cx, cy, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]
    elif model == "OPENCV_FISHEYE":
        p = [fx, fy, cx, cy, d[0], d[1], d[2], d[3]]
    else:
        raise ValueError(f"model: {model!r} not supported by calibration")
    return Camera(model, size[0], size[1], np.array(p, dtype=np.float64))


def solve_intrinsics(observations: list[Observation], image_size: tuple[int, int], model: str, *,
                     extra_flags: int = 0, initial: Camera | None = None):
    """One OpenCV solve. Returns (camera, [cam_from_board per view], opencv rms, flags).

    Perspective models call ``cv2.calibrateCameraExtended`` with :func:`opencv_flags` (default
    criteria), i.e. exactly what ``cv2.calibrateCamera(obj, img, size, None, None, flags=...)``
    computes, initialisation included (``initCameraMatrix2D``, Zhang's method). The fisheye
    model is initialised from a pinhole fit of the central corners when OpenCV's own
    initialisation fails."""
    import cv2

    if len(observations) < 3:
        raise CalibrationError(f"need at least 3 views to calibrate, got {len(observations)}")
    w, h = int(image_size[0]), int(image_size[1])
    obj = [np.ascontiguousarray(o.object_points, dtype=np.float32).reshape(-1, 1, 3) for o in observations]
    img = [np.ascontiguousarray(o.corners, dtype=np.float32).reshape(-1, 1, 2) for o in observations]
    flags = opencv_flags(model) | int(extra_flags)
    if model == "OPENCV_FISHEYE":
        return _solve_fisheye(observations, (w, h), flags, initial)
    K0 = np.eye(3) if initial is None else initial.K.copy()
    D0 = np.zeros(8 if model == "FULL_OPENCV" else 5)
    if initial is not None:
        flags |= cv2.CALIB_USE_INTRINSIC_GUESS
        d = initial.opencv_dist()
        D0[: min(len(d), len(D0))] = d[: len(D0)]
    try:
        with _deterministic_opencv():
            out = cv2.calibrateCameraExtended(obj, img, (w, h), K0, D0, flags=flags)
    except cv2.error as e:
        raise CalibrationError(f"OpenCV calibration failed for model {model}: {e.err or e}") from None
    rms, K, D, rvecs, tvecs = out[:5]
    cam = _camera_from_opencv(model, (w, h), K, D)
    poses = [Rigid3.from_axis_angle(np.asarray(r, dtype=np.float64).ravel(), np.asarray(t, dtype=np.float64).ravel())
             for r, t in zip(rvecs, tvecs)]
    return cam, poses, float(rms), flags


def _solve_fisheye(observations, size, flags, initial):
    import cv2

    w, h = size
    obj = [np.ascontiguousarray(o.object_points, dtype=np.float64).reshape(1, -1, 3) for o in observations]
    img = [np.ascontiguousarray(o.corners, dtype=np.float64).reshape(1, -1, 2) for o in observations]
    crit = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    attempts = []
    if initial is not None:
        attempts.append(initial)
    attempts.append(None)
    errors = []
    for init in attempts + ["pinhole"]:
        if init == "pinhole":
            init = _fisheye_init_from_pinhole(observations, size)
            if init is None:
                break
        K0 = np.eye(3) if init is None else init.K.copy()
        D0 = np.zeros(4) if init is None else np.asarray(init.opencv_dist() if init.is_fisheye else np.zeros(4), float)
        fl = flags | (cv2.fisheye.CALIB_USE_INTRINSIC_GUESS if init is not None else 0)
        try:
            with _deterministic_opencv():
                rms, K, D, rvecs, tvecs = cv2.fisheye.calibrate(obj, img, (w, h), K0, D0, flags=fl, criteria=crit)
        except cv2.error as e:
            errors.append(str(e.err or e))
            continue
        if not (np.all(np.isfinite(K)) and np.all(np.isfinite(D)) and K[0, 0] > 0 and K[1, 1] > 0):
            errors.append("non-finite solution")
            continue
        cam = _camera_from_opencv("OPENCV_FISHEYE", size, K, D)
        poses = [Rigid3.from_axis_angle(np.asarray(r, dtype=np.float64).ravel(), np.asarray(t, dtype=np.float64).ravel())
                 for r, t in zip(rvecs, tvecs)]
        return cam, poses, float(rms), fl
    raise CalibrationError("OpenCV fisheye calibration failed: " + "; ".join(errors[-2:]))


def _fisheye_init_from_pinhole(observations, size):
    """A fisheye starting point: pinhole fit on the corners nearest the image centre."""
    import cv2

    w, h = size
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    rad = 0.35 * np.hypot(w, h)
    sub = []
    for o in observations:
        m = np.linalg.norm(o.corners - c, axis=1) < rad
        if m.sum() >= 6:
            sub.append(o.subset(m))
    if len(sub) < 3:
        return None
    obj = [np.ascontiguousarray(o.object_points, dtype=np.float32) for o in sub]
    img = [np.ascontiguousarray(o.corners, dtype=np.float32) for o in sub]
    try:
        K = cv2.initCameraMatrix2D(obj, img, (w, h))
    except cv2.error:
        return None
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0:
        return None
    return Camera("OPENCV_FISHEYE", w, h, [K[0, 0], K[1, 1], c[0], c[1], 0, 0, 0, 0])


# =============================================================================================
# Residuals, Jacobians, covariance
# =============================================================================================

def _residuals(camera: Camera, pose: Rigid3, obs: Observation) -> np.ndarray:
    uv, _ = camera.project(pose.apply(obs.object_points))
    return uv - obs.corners


def _rms(res: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum(res * res, axis=1)))) if len(res) else float("nan")


def _jacobian(camera: Camera, poses: list[Rigid3], observations: list[Observation]):
    """Dense Jacobian of all residuals w.r.t. (intrinsics, (w_i, t_i) per view), where a pose is
    perturbed as R <- exp([w]x) R, t <- t + dt (left, camera frame). Returns (J [2N, P+6V], r [2N])."""
    P = camera.spec.num_params
    V = len(observations)
    rows = sum(len(o.corners) for o in observations) * 2
    J = np.zeros((rows, P + 6 * V))
    r = np.zeros(rows)
    k = 0
    for i, (pose, o) in enumerate(zip(poses, observations)):
        Xc = pose.apply(o.object_points)
        uv, d_pt, d_par, _ = camera.project_jacobians(Xc)
        n = len(Xc)
        sl = slice(k, k + 2 * n)
        J[sl, :P] = d_par.reshape(2 * n, P)
        # d Xc / d w = -[R X]x = -[Xc - t]x
        RX = Xc - pose.translation
        d_w = -np.einsum("nij,njk->nik", d_pt, skew(RX))
        J[sl, P + 6 * i:P + 6 * i + 3] = d_w.reshape(2 * n, 3)
        J[sl, P + 6 * i + 3:P + 6 * i + 6] = d_pt.reshape(2 * n, 3)
        r[sl] = (uv - o.corners).reshape(-1)
        k += 2 * n
    return J, r


def _covariance(camera, poses, observations):
    J, r = _jacobian(camera, poses, observations)
    dof = max(1, J.shape[0] - J.shape[1])
    sigma2 = float(r @ r) / dof
    JtJ = J.T @ J
    # Scale columns for conditioning (focal ~1e3 vs distortion ~1e-1).
    s = np.sqrt(np.maximum(np.diag(JtJ), 1e-300))
    A = JtJ / s[:, None] / s[None, :]
    try:
        Ainv = np.linalg.inv(A)
    except np.linalg.LinAlgError:
        Ainv = np.linalg.pinv(A)
    cov = sigma2 * Ainv / s[:, None] / s[None, :]
    return cov, float(np.sqrt(sigma2))


# =============================================================================================
# Main entry
# =============================================================================================

def calibrate_camera(observations: list[Observation], image_size: tuple[int, int],
                     config: CalibrationConfig | None = None, *, initial: Camera | None = None) -> CalibrationResult:
    """Calibrate one camera from board observations (one per view) taken at ``image_size``
    (width, height). See the module docstring for what is added to OpenCV's solve."""
    config = config or CalibrationConfig()
    if not isinstance(observations, (list, tuple)):
        raise TypeError(f"observations: expected a list of Observation, got {type(observations).__name__}")
    w, h = int(image_size[0]), int(image_size[1])
    rejected_views: list[Rejection] = []
    obs = []
    for o in observations:
        if len(o.corners) < config.min_corners:
            rejected_views.append(Rejection(o.name, f"only {len(o.corners)} corners (need {config.min_corners})"))
        else:
            obs.append(o)
    scores: list[ModelScore] = []
    rule = ""
    model = config.model
    if model == "auto":
        if len(obs) < 3:
            _too_few(obs, rejected_views, config)
        scores = select_model(obs, (w, h), config.auto_candidates, folds=config.cv_folds,
                              extra_flags=config.extra_flags, tolerance=config.auto_tolerance)
        model, rule = pick_model(scores, tolerance=config.auto_tolerance)
    rejected_corners: list[Rejection] = []
    masks = [np.ones(len(o.corners), dtype=bool) for o in obs]
    active = list(range(len(obs)))
    cam = poses = flags = None
    for rnd in range(config.max_rounds + 1):
        if len(active) < config.min_views:
            _too_few([obs[i] for i in active], rejected_views, config)
        cur = [obs[i].subset(masks[i]) for i in active]
        # Round 0 is exactly OpenCV's own solve (its initialisation included); re-solves after a
        # rejection start from the previous solution, which converges in a few iterations.
        cam, poses, _, flags = solve_intrinsics(cur, (w, h), model, extra_flags=config.extra_flags,
                                                initial=initial if rnd == 0 else cam)
        if not config.reject_outliers or rnd == config.max_rounds:
            break
        res = [_residuals(cam, p, o) for p, o in zip(poses, cur)]
        errs = np.concatenate([np.linalg.norm(r, axis=1) for r in res])
        sigma = np.median(errs) / 1.1774  # median of |N(0, s^2 I_2)| = 1.1774 s
        thr = max(config.corner_k * sigma, config.min_outlier_px)
        bad_masks = [np.linalg.norm(r, axis=1) > thr for r in res]
        # A view's RMS is judged on its inlier corners, so one bad corner drops that corner only.
        view_rms = np.array([_rms(r[~b]) if (~b).any() else np.inf for r, b in zip(res, bad_masks)])
        view_thr = max(config.view_k * float(np.median(view_rms[np.isfinite(view_rms)])), config.min_outlier_px)
        changed = False
        still = []
        for j, i in enumerate(active):
            e = np.linalg.norm(res[j], axis=1)
            bad = bad_masks[j]
            idx_used = np.nonzero(masks[i])[0]
            if bad.sum() > 0.5 * len(e):
                rejected_views.append(Rejection(obs[i].name, f"{int(bad.sum())} of {len(e)} corners have errors > "
                                                f"{thr:.3f} px ({config.corner_k:g} sigma)", error_px=_rms(res[j])))
                changed = True
                continue
            if view_rms[j] > view_thr:
                rejected_views.append(Rejection(obs[i].name, f"view RMS {view_rms[j]:.3f} px > {config.view_k:g} x "
                                                f"median view RMS ({view_thr:.3f} px)", error_px=view_rms[j]))
                changed = True
                continue
            if bad.any():
                for k in np.nonzero(bad)[0]:
                    rejected_corners.append(Rejection(obs[i].name, f"error {e[k]:.3f} px > {thr:.3f} px "
                                                      f"({config.corner_k:g} sigma)", int(obs[i].ids[idx_used[k]]), e[k]))
                m = masks[i].copy()
                m[idx_used[bad]] = False
                masks[i] = m
                changed = True
                if m.sum() < config.min_corners:
                    rejected_views.append(Rejection(obs[i].name, f"only {int(m.sum())} corners left after rejecting "
                                                    "outlier corners"))
                    continue
            still.append(i)
        active = still
        if not changed:
            break
    cur = [obs[i].subset(masks[i]) for i in active]
    views = []
    all_res = []
    for p, o in zip(poses, cur):
        r = _residuals(cam, p, o)
        all_res.append(r)
        views.append(ViewResult(o.name, p, _rms(r), o.corners, o.ids, r, o.object_points))
    rms = _rms(np.concatenate(all_res))
    cov, sigma = _covariance(cam, poses, cur)
    P = cam.spec.num_params
    std = np.sqrt(np.maximum(np.diag(cov)[:P], 0.0))
    return CalibrationResult(cam, rms, views, rejected_views, rejected_corners, std, cov, sigma, flags, scores, rule)


def _too_few(obs, rejected, config):
    lines = [f"  {r.name}: {r.reason}" for r in rejected]
    raise CalibrationError(f"only {len(obs)} usable view(s), at least {config.min_views} needed"
                           + ("; rejected views:\n" + "\n".join(lines) if lines else ""))


# =============================================================================================
# Pose refinement and model selection
# =============================================================================================

def refine_cam_from_board(camera: Camera, object_points, corners, *,
                          iterations: int = 10) -> tuple[Rigid3, np.ndarray]:
    """The board's cam_from_board minimising the pixel reprojection error under ``camera`` (any model):
    PnP on undistorted rays for the start, then Gauss-Newton. Returns (cam_from_board, residuals [N, 2])."""
    import cv2

    obj = np.asarray(object_points, dtype=np.float64).reshape(-1, 3)
    uv = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
    xy = camera.cam_from_img(uv)
    ok = np.all(np.isfinite(xy), axis=1)
    if ok.sum() < 4:
        raise CalibrationError("refine_cam_from_board: fewer than 4 corners can be unprojected")
    _, rvec, tvec = cv2.solvePnP(obj[ok], xy[ok], np.eye(3), None, flags=cv2.SOLVEPNP_ITERATIVE)
    cam_from_board = Rigid3.from_axis_angle(rvec.ravel(), tvec.ravel())
    for _ in range(iterations):
        Xc = cam_from_board.apply(obj)
        pred, d_pt, _, _ = camera.project_jacobians(Xc)
        r = (pred - uv).reshape(-1)
        Jw = -np.einsum("nij,njk->nik", d_pt, skew(Xc - cam_from_board.translation)).reshape(-1, 3)
        J = np.hstack([Jw, d_pt.reshape(-1, 3)])
        step, *_ = np.linalg.lstsq(J, -r, rcond=None)
        from calib.transforms import matrix_from_axis_angle

        cam_from_board = Rigid3(matrix_from_axis_angle(step[:3]) @ cam_from_board.rotation,
                                cam_from_board.translation + step[3:])
        if np.abs(step).max() < 1e-12:
            break
    return cam_from_board, _residuals(camera, cam_from_board, Observation("", uv, obj, np.arange(len(uv))))


def select_model(observations: list[Observation], image_size, candidates=AUTO_MODEL_CANDIDATES, *,
                 folds: int = 5, extra_flags: int = 0, tolerance: float = 1.02) -> list[ModelScore]:
    """Cross-validated reprojection RMS of each candidate model: views are split into ``folds``
    groups; each group is held out in turn, the intrinsics fitted on the others, the held-out
    boards' poses re-fitted with those intrinsics (:func:`refine_cam_from_board`) and their errors pooled.
    Extra parameters that only fit noise raise the held-out error, so this does not reward
    over-fitting the way the training RMS does."""
    n = len(observations)
    folds = max(2, min(folds, n))
    # Interleaved folds: views are often taken in sweeps, so neighbours are similar.
    groups = [list(range(k, n, folds)) for k in range(folds)]
    scores = []
    for model in candidates:
        try:
            cam_all, poses_all, _, _ = solve_intrinsics(observations, image_size, model, extra_flags=extra_flags)
            fit = _rms(np.concatenate([_residuals(cam_all, p, o) for p, o in zip(poses_all, observations)]))
            held, fold_rms = [], []
            for g in groups:
                train = [observations[i] for i in range(n) if i not in g]
                if len(train) < 3:
                    continue
                cam, _, _, _ = solve_intrinsics(train, image_size, model, extra_flags=extra_flags, initial=None)
                fold = [refine_cam_from_board(cam, observations[i].object_points, observations[i].corners)[1] for i in g]
                held += fold
                fold_rms.append(_rms(np.concatenate(fold)))
            cv = _rms(np.concatenate(held)) if held else float("nan")
            if not np.isfinite(cv):
                raise CalibrationError("held-out error is not finite")
            se = float(np.std(fold_rms, ddof=1) / np.sqrt(len(fold_rms))) if len(fold_rms) > 1 else float("nan")
            scores.append(ModelScore(model, cv, fit, fold_rms_px=tuple(float(v) for v in fold_rms), cv_rms_se_px=se))
        except (CalibrationError, ValueError) as e:
            scores.append(ModelScore(model, float("inf"), float("inf"), failed=str(e).splitlines()[0]))
    return scores


# Preference of "auto", simplest and most widely readable first: fewer parameters first, and the
# fisheye model last (many downstream tools cannot read it), after every perspective model.
MODEL_PREFERENCE = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV",
                    "OPENCV_FISHEYE")


def pick_model(scores: list[ModelScore], *, tolerance: float = 1.0) -> tuple[str, str]:
    """(model, rule) by the one-standard-error rule (Hastie, Tibshirani & Friedman, ESL 7.10):
    the best cross-validated RMS plus its standard error over the folds is the threshold, and the
    first model of :data:`MODEL_PREFERENCE` at or below it wins. So a richer or less conventional
    model is chosen only when it beats the simpler one by more than the noise of the score.
    ``tolerance`` (>= 1): also accept models within this factor of the best. ``rule`` says what
    was compared, for the report."""
    ok = [s for s in scores if not s.failed and np.isfinite(s.cv_rms_px)]
    if not ok:
        raise CalibrationError("no candidate model could be fitted: "
                               + "; ".join(f"{s.model}: {s.failed}" for s in scores))
    best = min(ok, key=lambda s: s.cv_rms_px)
    se = best.cv_rms_se_px if np.isfinite(best.cv_rms_se_px) else 0.0
    threshold = max(best.cv_rms_px + se, best.cv_rms_px * tolerance)
    good = [s for s in ok if s.cv_rms_px <= threshold]
    chosen = min(good, key=lambda s: (MODEL_PREFERENCE.index(s.model), s.cv_rms_px))
    rule = (f"one-standard-error rule: best {best.model} {best.cv_rms_px:.4f} +- {se:.4f} px (SE over "
            f"{len(best.fold_rms_px)} folds), threshold {threshold:.4f} px; the first of "
            f"{' < '.join(m for m in MODEL_PREFERENCE if any(s.model == m for s in ok))} at or below it: "
            f"{chosen.model}")
    return chosen.model, rule


# =============================================================================================
# Uncertainty, coverage, comparison
# =============================================================================================

@dataclass
class UncertaintyMap:
    u: np.ndarray  # [Gu] pixel columns of the grid
    v: np.ndarray  # [Gv] pixel rows
    std_px: np.ndarray  # [Gv, Gu] worst-direction 1-sigma of the projection, pixels (NaN: invalid)
    distance: float  # working distance of the query points (board units)

    def at_center(self) -> float:
        return float(self.std_px[len(self.v) // 2, len(self.u) // 2])


def projection_uncertainty(result: CalibrationResult, *, grid: tuple[int, int] = (40, 30),
                           distance: float | None = None) -> UncertaintyMap:
    """How uncertain the projection of a fixed 3D point is, across the image (mrcal's method,
    linearised).

    For each grid pixel q: its ray (nominal intrinsics) at ``distance`` (default: the median
    depth of the observed corners) gives a camera-frame point p. The camera frame itself is only
    known through the board poses, so p is carried into every board frame with the solved pose
    and back with the perturbed one, the results averaged, and projected with the perturbed
    intrinsics: dq = J_intr d(intr) + J_point * mean_i(d p_i). With the joint covariance C of
    (intrinsics, poses) from the solve, Var(q) = G C G^T; the map is sqrt of its largest
    eigenvalue (worst direction), in pixels."""
    cam = result.camera
    P = cam.spec.num_params
    V = len(result.views)
    if distance is None:
        depths = np.concatenate([v.cam_from_board.apply(v.object_points)[:, 2] for v in result.views])
        distance = float(np.median(depths))
    gu = np.linspace(0, cam.width - 1, grid[0])
    gv = np.linspace(0, cam.height - 1, grid[1])
    uv = np.stack(np.meshgrid(gu, gv), -1).reshape(-1, 2)
    rays, valid = cam.unproject(uv)
    # Same depth for every pixel along its ray: point at z = distance (perspective) or at range
    # = distance (fisheye, where z may be small or negative).
    if cam.is_fisheye:
        p = rays * distance
    else:
        p = rays / np.where(np.abs(rays[:, 2:3]) > 1e-9, rays[:, 2:3], 1.0) * distance
    p = np.where(valid[:, None], p, np.array([0.0, 0.0, distance]))
    _, d_pt, d_par, ok = cam.project_jacobians(p)
    n = len(p)
    G = np.zeros((n, 2, P + 6 * V))
    G[:, :, :P] = d_par
    for i, view in enumerate(result.views):
        t = view.cam_from_board.translation
        # p_i' = exp(w) (p - t) + t + dt  =>  dp/dw = -[p - t]x, dp/dt = I; averaged over views.
        dpw = -skew(p - t)  # [n, 3, 3]
        G[:, :, P + 6 * i:P + 6 * i + 3] = np.einsum("nij,njk->nik", d_pt, dpw) / V
        G[:, :, P + 6 * i + 3:P + 6 * i + 6] = d_pt / V
    C = result.covariance
    GC = (G.reshape(-1, G.shape[2]) @ C).reshape(G.shape)  # one BLAS product, not a 3-operand einsum
    Sq = np.einsum("nip,njp->nij", GC, G)
    a, b, c = Sq[:, 0, 0], Sq[:, 0, 1], Sq[:, 1, 1]
    lam = 0.5 * (a + c) + np.sqrt(np.maximum(0.25 * (a - c) ** 2 + b * b, 0.0))
    std = np.sqrt(np.maximum(lam, 0.0))
    std = np.where(valid & ok, std, np.nan)
    return UncertaintyMap(gu, gv, std.reshape(len(gv), len(gu)), float(distance))


@dataclass
class CoverageMap:
    counts: np.ndarray  # [rows, cols] number of used corners per image cell
    cell_size: tuple[float, float]  # (width, height) of a cell in pixels
    advice: list[str]  # human-readable suggestions (empty when coverage is good)
    covered_fraction: float  # fraction of cells with at least one corner


_ZONE_NAMES = {(0, 0): "top-left", (1, 0): "top", (2, 0): "top-right", (0, 1): "left", (1, 1): "centre",
               (2, 1): "right", (0, 2): "bottom-left", (1, 2): "bottom", (2, 2): "bottom-right"}


def coverage_map(result: CalibrationResult, *, cells: tuple[int, int] = (16, 12),
                 uncertainty: UncertaintyMap | None = None) -> CoverageMap:
    """Where corners were observed (counts per image cell) and advice: image zones (3x3) with
    few corners, regions of high projection uncertainty, and too few views / tilts."""
    cam = result.camera
    W, H = cam.size
    pts = np.concatenate([v.corners for v in result.views])
    counts, _, _ = np.histogram2d(pts[:, 1], pts[:, 0], bins=[cells[1], cells[0]], range=[[-0.5, H - 0.5], [-0.5, W - 0.5]])
    zone, _, _ = np.histogram2d(pts[:, 1], pts[:, 0], bins=[3, 3], range=[[-0.5, H - 0.5], [-0.5, W - 0.5]])
    advice = []
    expect = len(pts) / 9.0
    weak = [(_ZONE_NAMES[(x, y)], int(zone[y, x])) for y in range(3) for x in range(3) if zone[y, x] < 0.25 * expect]
    if weak:
        names = ", ".join(f"{n} ({c} corners)" for n, c in weak)
        advice.append(f"few corners near the {names} of the image: add views with the board there "
                      "(distortion is least constrained where no corners were seen)")
    if len(result.views) < 10:
        advice.append(f"only {len(result.views)} views: 15-30 views at varied distances and tilts give "
                      "more reliable intrinsics")
    tilts = []
    for v in result.views:
        n = v.cam_from_board.rotation[:, 2]
        tilts.append(np.degrees(np.arccos(min(1.0, abs(n[2])))))
    if tilts and np.percentile(tilts, 75) < 15:
        advice.append("the board is nearly fronto-parallel in most views: tilt it 20-45 degrees "
                      "in some views (this separates focal length from distance)")
    if uncertainty is not None and np.isfinite(uncertainty.std_px).any():
        s = uncertainty.std_px
        worst = np.nanmax(s)
        centre = uncertainty.at_center()
        if worst > 3 * max(centre, 1e-6) and worst > 0.1:
            iy, ix = np.unravel_index(np.nanargmax(s), s.shape)
            zx = min(2, int(3 * ix / s.shape[1]))
            zy = min(2, int(3 * iy / s.shape[0]))
            advice.append(f"projection uncertainty reaches {worst:.2f} px near the {_ZONE_NAMES[(zx, zy)]} "
                          f"(centre {centre:.2f} px): more board views there would reduce it")
    return CoverageMap(counts, (W / cells[0], H / cells[1]), advice, float(np.mean(counts > 0)))


def comparison_grid(image_size: tuple[int, int], step: float) -> tuple[np.ndarray, np.ndarray]:
    """(columns [Gu], rows [Gv]) of :func:`compare_cameras`' grid: every ``step`` pixels from 0,
    plus the last column / row of the image."""
    if step <= 0:
        raise ValueError(f"step: expected > 0 pixels, got {step}")
    out = []
    for n in image_size:
        g = np.arange(0, n - 1 + 1e-9, step)
        out.append(g if g[-1] >= n - 1 - 1e-9 else np.r_[g, n - 1.0])
    return out[0], out[1]


def compare_cameras(estimated: Camera, reference: Camera, *, step: float = 4.0,
                    fit_rotation: bool = False) -> np.ndarray:
    """|difference| in pixels, over a grid every ``step`` pixels, between where ``estimated``
    and ``reference`` project the same ray (the ray of each grid pixel under ``reference``).
    The grid is ``0, step, 2 step, ...`` plus the last column ``W - 1`` and row ``H - 1``, so it
    covers the whole image, its four corner pixels included. Returns [Gv, Gu] (NaN where a ray
    is invalid for either); :func:`comparison_grid` gives the grid's columns and rows.

    ``fit_rotation``: first fit the small rotation of the camera frame that best aligns the two
    (mrcal's "implied transform" for projection differences). A calibration fixes the camera
    frame only through the board poses, and a slight rotation of it is nearly the same as a
    principal-point shift plus distortion, so the raw difference includes that unobservable part;
    the fitted one measures how differently the two cameras map the world."""
    if estimated.size != reference.size:
        raise ValueError(f"estimated/reference: image sizes differ, {estimated.size} vs {reference.size}")
    gu, gv = comparison_grid(reference.size, step)
    uv = np.stack(np.meshgrid(gu, gv), -1)
    rays, ok = reference.unproject(uv)
    R = np.eye(3)
    if fit_rotation:
        from calib.transforms import matrix_from_axis_angle

        flat_rays, flat_uv = rays[ok], uv[ok]
        for _ in range(10):
            X = flat_rays @ R.T
            pred, d_pt, _, good = estimated.project_jacobians(X)
            r = (pred - flat_uv)[good].reshape(-1)
            J = -np.einsum("nij,njk->nik", d_pt[good], skew(X[good])).reshape(-1, 3)
            w, *_ = np.linalg.lstsq(J, -r, rcond=None)
            R = matrix_from_axis_angle(w) @ R
            if np.abs(w).max() < 1e-13:
                break
    uv2, ok2 = estimated.project(rays @ R.T)
    d = np.linalg.norm(uv2 - uv, axis=-1)
    return np.where(ok & ok2, d, np.nan)
