"""Matches -> two-view geometry: F/E, H, model selection, pose, triangulation, refinement."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from calib import Camera, Rigid3, project_to_so3
from calib._check import as_array
from recon.twoview._degeneracy import Degeneracy, classify_degeneracy
from recon.twoview._epipolar import (
    EpipolarResult,
    EssentialResult,
    HomographyResult,
    cheirality_outliers,
    essential_from_fundamental,
    essential_from_pose,
    estimate_essential,
    estimate_fundamental,
    estimate_homography,
    final_loss,
    fundamental_from_essential,
    recover_pose,
)
from recon.twoview._relpose import refine_relative_pose
from recon.twoview._solvers import sampson_error
from recon.twoview._triangulation import Triangulation, refine_two_view, triangulate_dlt

__all__ = ["TwoViewConfig", "TwoViewGeometry", "two_view_geometry"]


@dataclass(frozen=True)
class TwoViewConfig:
    """Options of :func:`two_view_geometry`.

    method:           "poselib" (PoseLib's LO-RANSAC + refinement, the default: the most accurate
                      on the real pair sets, docs/twoview.md), "ours" (LO-MSAC) or "opencv"
                      (USAC_MAGSAC; five-point for E).
    threshold_px:     inlier threshold (Sampson distance, pixels); ~2-3x the keypoint noise.
    confidence:       RANSAC confidence for the adaptive stopping rule.
    max_iterations:   cap on hypotheses.
    refine:           run two-view bundle adjustment on the inliers (pose + points); None: for
                      "ours" and "opencv" only. After PoseLib's own refinement the BA is no more
                      accurate on the real pairs (Sceaux median rotation error 0.150 with it,
                      0.146 without) at 3x the time (bench/bench_twoview_real.py --variants);
                      on Gaussian synthetic noise it tracks the ML pose more closely.
    min_matches:      fewer matches: verdict "too_few_matches", no model.
    min_parallax_deg: median triangulation angle below this: verdict "low_parallax".
    max_reproj_px:    triangulated points with a larger reprojection error are not counted.
    seed:             sampling seed (results are reproducible).
    num_hypotheses:   independent re-estimates (PoseLib on random 80 % subsets of the matches,
                      other seeds) whose spread around the chosen pose enters the reported sigma
                      and the reliability flags (0 = none: the flags then stay False).
    """

    method: str = "poselib"
    threshold_px: float = 1.0
    confidence: float = 0.999
    max_iterations: int = 10000
    refine: bool | None = None
    min_matches: int = 15
    min_parallax_deg: float = 1.0
    max_reproj_px: float = 4.0
    seed: int = 0
    num_hypotheses: int = 2


@dataclass(frozen=True)
class TwoViewGeometry:
    """Everything :func:`two_view_geometry` found.

    fundamental:    F fit in raw pixels (calibrated: F = K2^-T E K1^-1 from the E fit).
    essential:      E fit (None when no model could be fitted).
    homography:     H fit (same pixel space as the epipolar residuals).
    degeneracy:     model-selection verdict; read ``degeneracy.pose_reliable`` before using
                    the pose.
    cam2_from_cam1: relative pose (unit translation), or None when not determined. For
                    "pure_rotation" the translation is zero (unknown), for "planar" it is one of
                    the homography decompositions (ambiguous).
    inliers:        [N] bool final inliers (epipolar inlier and, with a pose, in front).
    triangulation:  [N] triangulated matches (points in the camera-1 frame, unit baseline), or
                    None; ``triangulation.valid()`` marks the good ones.
    camera1, camera2: the intrinsics used.
    intrinsics_guessed: True when no calibration was given and K was guessed from the image
                    size (focal = 1.2 * max(width, height)): R and t are then approximate.
    """

    fundamental: EpipolarResult
    essential: EssentialResult | None
    homography: HomographyResult
    degeneracy: Degeneracy
    cam2_from_cam1: Rigid3 | None
    inliers: np.ndarray
    triangulation: Triangulation | None
    camera1: Camera | None
    camera2: Camera | None
    intrinsics_guessed: bool
    refined: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def num_triangulated(self) -> int:
        if self.triangulation is None:
            return 0
        return int(np.count_nonzero(self.triangulation.valid() & self.inliers))


def _guessed(size, focal_px: float | None = None) -> Camera:
    """SIMPLE_PINHOLE guess for an uncalibrated image of ``size`` (the one guess,
    :func:`recon.io.guess_camera`): focal ``focal_px`` or 1.2 * max(W, H), centred."""
    from recon.io.images import guess_camera

    return guess_camera(tuple(size), model="SIMPLE_PINHOLE", focal_px=focal_px).camera


def _pose_from_homography(H, camera1: Camera, camera2: Camera, n1, n2) -> Rigid3 | None:
    """Best decomposition of a planar homography (Malis & Vargas 2007 via OpenCV), chosen by
    the number of points in front of both cameras; translation scaled to unit norm."""
    import cv2

    Hn = np.linalg.inv(camera2.K) @ H @ camera1.K
    _num, Rs, ts, normals = cv2.decomposeHomographyMat(Hn, np.eye(3))
    best, best_count = None, -1
    from recon.twoview._triangulation import _dlt_normalized

    for R, t, nrm in zip(Rs, ts, normals):
        t = t.ravel()
        if np.linalg.norm(t) < 1e-9:
            continue
        tu = t / np.linalg.norm(t)
        X = _dlt_normalized(R, tu, n1, n2)
        count = int(np.sum((X[:, 2] > 0) & ((X @ R.T + tu)[:, 2] > 0)))
        if count > best_count:
            best, best_count = Rigid3(project_to_so3(R), tu), count
    return best


def two_view_geometry(uv1, uv2, camera1: Camera | None = None, camera2: Camera | None = None, *,
                      image_size1: tuple[int, int] | None = None, image_size2: tuple[int, int] | None = None,
                      config: TwoViewConfig = TwoViewConfig()) -> TwoViewGeometry:
    """Estimate the geometry of a pair from matched pixels.

    uv1, uv2: [N, 2] matched pixels (pixel-centre convention).
    camera1, camera2: intrinsics (both or neither). Without them F is estimated on raw pixels
                and, if ``image_size1/2`` (width, height) are given, K is guessed (see
                :func:`recon.io.guess_camera`) so that a rough pose can still be reported.
    """
    uv1 = as_array(uv1, "uv1", ndim=2, last=(2,))
    uv2 = as_array(uv2, "uv2", ndim=2, last=(2,))
    if uv1.shape != uv2.shape:
        raise ValueError(f"uv1, uv2: expected the same number of points, got {uv1.shape[0]} and {uv2.shape[0]}")
    if (camera1 is None) != (camera2 is None):
        raise ValueError("camera1, camera2: give both cameras or neither")
    cfg = config
    n = uv1.shape[0]
    notes: list[str] = []
    guessed = False
    if camera1 is None and image_size1 is not None and image_size2 is not None:
        camera1, camera2 = _guessed(image_size1), _guessed(image_size2)
        guessed = True
        notes.append("no calibration: K guessed as focal = 1.2 * max(width, height), principal point at "
                     "the centre; R and t are approximate")
    kw = {"method": cfg.method, "threshold_px": cfg.threshold_px, "confidence": cfg.confidence,
          "max_iterations": cfg.max_iterations, "seed": cfg.seed}
    empty_f = EpipolarResult(np.zeros(n, bool), np.full(n, np.inf), 0, cfg.threshold_px, cfg.method)
    empty_h = HomographyResult(np.zeros(n, bool), np.full(n, np.inf), 0, cfg.threshold_px, cfg.method)

    def finish(deg, F=empty_f, E=None, Hr=empty_h, pose=None, inl=None, tri=None, refined=False):
        return TwoViewGeometry(F, E, Hr, deg, pose, np.zeros(n, bool) if inl is None else inl, tri, camera1,
                               camera2, guessed, refined, notes)

    if n < cfg.min_matches:
        return finish(classify_degeneracy(uv1, uv2, [], [], [], [], min_matches=cfg.min_matches))

    pre = classify_degeneracy(uv1, uv2, [], [], [], [], min_matches=cfg.min_matches)
    if pre.verdict == "identical":  # decided by displacements alone: no fit needed
        return finish(pre)
    calibrated = camera1 is not None and not guessed
    if calibrated:
        Er = estimate_essential(uv1, uv2, camera1, camera2, **kw)
        n1, n2 = camera1.cam_from_img(uv1), camera2.cam_from_img(uv2)
        good = np.all(np.isfinite(n1), 1) & np.all(np.isfinite(n2), 1)
        p1 = np.where(good[:, None], n1 @ camera1.K[:2, :2].T + camera1.K[:2, 2], uv1)
        p2 = np.where(good[:, None], n2 @ camera2.K[:2, :2].T + camera2.K[:2, 2], uv2)
        if Er.ok:
            F = fundamental_from_essential(Er.E, camera1, camera2)
            Fr = EpipolarResult(Er.inliers, Er.residuals, Er.num_iterations, cfg.threshold_px, cfg.method, F=F)
        else:
            Fr = empty_f
    else:
        p1, p2 = uv1, uv2
        Fr = estimate_fundamental(uv1, uv2, **kw)
        Er = None
        if camera1 is not None and Fr.ok:
            E = essential_from_fundamental(Fr.F, camera1, camera2)
            Er = EssentialResult(Fr.inliers, Fr.residuals, Fr.num_iterations, cfg.threshold_px, cfg.method, E=E)
            n1, n2 = camera1.cam_from_img(uv1), camera2.cam_from_img(uv2)
    # H only competes with F in model selection: a capped budget is enough (a planar scene has a
    # high H inlier ratio and stops early anyway).
    # PoseLib's LO-RANSAC refines its best H, so 100 hypotheses suffice there.
    h_cap = 100 if cfg.method == "poselib" else 400
    Hr = estimate_homography(p1, p2, **{**kw, "max_iterations": min(cfg.max_iterations, h_cap)})
    if not Fr.ok:
        deg = classify_degeneracy(p1, p2, Fr.residuals, Fr.inliers, Hr.residuals, Hr.inliers,
                                  min_matches=cfg.min_matches)
        return finish(deg, Fr, Er, Hr)

    pose = None
    tri = None
    inl = Fr.inliers.copy()
    refined = False
    parallax = None
    if Er is not None and Er.ok:
        rp = recover_pose(Er.E, n1, n2, mask=Fr.inliers)
        pose = rp.cam2_from_cam1
        inl = rp.inliers
        tri = triangulate_dlt(uv1, uv2, camera1, camera2, pose)
        ok = inl & tri.valid(max_error_px=cfg.max_reproj_px, min_parallax_deg=0.0)
        parallax = tri.parallax_deg[ok]
    deg = classify_degeneracy(p1, p2, Fr.residuals, Fr.inliers, Hr.residuals, Hr.inliers,
                              camera1=camera1, camera2=camera2, H=Hr.H if Hr.ok else None, parallax_deg=parallax,
                              min_matches=cfg.min_matches, min_parallax_deg=cfg.min_parallax_deg,
                              focal_known=not guessed)
    if deg.verdict in ("identical", "no_model", "too_few_matches"):
        return finish(deg, Fr, Er, Hr)
    ambiguous = False
    if calibrated and pose is not None and deg.verdict == "planar":
        # Known intrinsics: the five-point E is not degenerate for a plane, but a plane leaves two
        # poses (the homography's two physical decompositions) that fit equally well. Compare the
        # E pose with the H poses on the matches (robust Sampson cost after refinement, as COLMAP
        # compares its E and H models by support) and keep the best; it is ambiguous when a
        # different pose fits about as well (no off-plane evidence tells them apart).
        pose, ambiguous, alt_rot_deg = _select_planar_pose(pose, Hr, Er, camera1, camera2, n1, n2, p1, p2, cfg)
        tri = triangulate_dlt(uv1, uv2, camera1, camera2, pose)
        F = fundamental_from_essential(_essential(pose), camera1, camera2)
        inl = (sampson_error(F, p1, p2) < cfg.threshold_px) & tri.in_front
        notes.append("planar scene: pose from the five-point E compared with the homography decompositions"
                     + ("; a different pose fits as well (ambiguous)" if ambiguous else
                        "; the off-plane matches single out this pose"))
    else:
        alt_rot_deg = 0.0
    refine_ok = deg.verdict in ("general", "low_parallax") or (calibrated and deg.verdict == "planar")
    if pose is not None and refine_ok:
        ok = inl & tri.valid(max_error_px=cfg.max_reproj_px, min_parallax_deg=0.0)
        do_ba = cfg.refine if cfg.refine is not None else cfg.method != "poselib"
        for _ in range(2 if do_ba else 0):  # BA, re-select inliers under the refined pose, BA again
            if ok.sum() < 8:
                break
            use, loss, scale = ok, "cauchy", cfg.threshold_px
            if calibrated:
                # One objective for every final fit (the five-point polish and this BA): the
                # capped Sampson cost over all matches under the loss the inlier residuals call
                # for (least squares on Gaussian ones, Cauchy on heavier tails), matches behind a
                # camera counted as outliers (recon.twoview._epipolar.final_loss / epipolar_cost).
                # "Behind" here is also what the BA's match set leaves out: a triangulation that
                # is behind a camera or reprojects more than max_reproj_px off (_unusable).
                r_before = sampson_error(fundamental_from_essential(_essential(pose), camera1, camera2), p1, p2)
                behind_before = _unusable(pose, tri, n1, n2, camera1, camera2, cfg)
                fl = final_loss(r_before[(r_before < cfg.threshold_px) & ~behind_before], cfg.threshold_px)
                use, loss, scale = ok & (r_before < fl.cap_px), fl.loss, fl.loss_scale_px
                if use.sum() < 8:
                    break
            ref = refine_two_view(uv1[use], uv2[use], camera1, camera2, pose, tri.points[use], loss=loss,
                                  loss_scale_px=scale, max_nfev=100)
            if not np.isfinite(ref.rms_after_px):
                break
            tri_after = triangulate_dlt(uv1, uv2, camera1, camera2, ref.cam2_from_cam1)
            if calibrated:
                r_after = sampson_error(fundamental_from_essential(_essential(ref.cam2_from_cam1), camera1, camera2),
                                        p1, p2)
                behind_after = _unusable(ref.cam2_from_cam1, tri_after, n1, n2, camera1, camera2, cfg)
                if fl.cost(r_after, behind_after) > fl.cost(r_before, behind_before):
                    break
            elif ref.rms_after_px > ref.rms_before_px:
                break
            pose = ref.cam2_from_cam1
            refined = True
            tri = tri_after
            if guessed:  # E from a guessed K is only approximate: keep the F inliers
                inl = Fr.inliers & tri.in_front
            else:
                F = fundamental_from_essential(_essential(pose), camera1, camera2)
                r = sampson_error(F, p1, p2)
                inl = (r < cfg.threshold_px) & tri.in_front
            ok = inl & tri.valid(max_error_px=cfg.max_reproj_px, min_parallax_deg=0.0)
    rot_sigma = t_sigma = float("inf")
    spread = (float("inf"), float("inf"))
    if camera1 is not None and deg.verdict == "pure_rotation":
        Hn = np.linalg.inv(camera2.K) @ Hr.H @ camera1.K
        pose = Rigid3(project_to_so3(Hn * np.sign(np.linalg.det(Hn))), np.zeros(3))
        inl = Hr.inliers
        tri = None
        rot_sigma = _rotation_sigma_deg(pose.rotation, n1[inl], n2[inl], camera2)
        spread = (_rotation_spread_pure(pose, p1, p2, camera1, camera2, cfg), float("inf"))
        notes.append("pure rotation: translation is zero / undetermined; no points triangulated")
    elif camera1 is not None and not calibrated and deg.verdict == "planar":
        hp = _pose_from_homography(Hr.H, camera1, camera2, n1[Hr.inliers], n2[Hr.inliers])
        if hp is not None:
            pose = hp
            inl = Hr.inliers
            tri = triangulate_dlt(uv1, uv2, camera1, camera2, pose)
            notes.append("planar scene: pose from the homography decomposition; a second (mirror) solution "
                         "may fit equally well")
    elif calibrated and pose is not None and inl.sum() >= 6:
        pr = refine_relative_pose(pose.rotation, pose.translation, p1, p2, camera1.K, camera2.K, mask=inl,
                                  scale_px=0.5 * cfg.threshold_px, max_iterations=0)
        rot_sigma, t_sigma = pr.rotation_sigma_deg, pr.translation_sigma_deg
    if calibrated and pose is not None and deg.verdict in ("general", "low_parallax", "planar"):
        spread = _hypothesis_spread(pose, p1, p2, camera1.K, camera2.K, cfg)
    deg = _reliability(deg, calibrated, ambiguous, alt_rot_deg, rot_sigma, t_sigma, spread, cfg,
                       num_inliers=int(np.count_nonzero(inl)))
    if guessed:
        notes.append("intrinsics guessed: rotation_reliable and pose_reliable are False")
    return finish(deg, Fr, Er, Hr, pose, inl, tri, refined)


def _unusable(pose: Rigid3, tri: Triangulation, n1, n2, camera1: Camera, camera2: Camera,
              cfg: TwoViewConfig) -> np.ndarray:
    """[N] bool: matches the final fits count as outliers under ``pose`` (``tri``: its
    triangulation): rays that meet behind a camera (``cheirality_outliers``) or a triangulated
    point that is behind a camera or reprojects more than ``cfg.max_reproj_px`` off, i.e. the
    matches the two-view BA leaves out of its fit. Without the second part the acceptance cost
    kept counting such a match at its (small) Sampson distance: the polish that fitted it beat
    every BA that had left it out (at 1 px / 30 % outliers, false inliers at 64-82 deg parallax
    with Sampson distances of 1.9-2.5 px moved the rotation by up to 0.03 deg, seed 30; with them left out
    the final pose ties the seven-point era's, bench/bench_twoview_seeds.py)."""
    behind = cheirality_outliers(pose, n1, n2, cfg.threshold_px, camera1.K, camera2.K)
    return behind | ~tri.valid(max_error_px=cfg.max_reproj_px, min_parallax_deg=0.0)


# Reliability flags. sigma = sqrt(curvature sigma^2 + hypothesis spread^2) (_hypothesis_spread:
# independent PoseLib re-estimates on 80 % subsets). A pair is rotation_reliable when the verdict
# determines a rotation, it is not pose_ambiguous, it has MIN_RELIABLE_INLIERS inliers or more, the
# spread is <= SPREAD_BOUND_DEG and
# sqrt((ROTATION_SIGMAS sigma)^2 + ROTATION_FLOOR_DEG^2) <= ROTATION_BOUND_DEG; pose_reliable when
# in addition TRANSLATION_SIGMAS sigma of translation direction stay within TRANSLATION_BOUND_DEG.
# Set on all pair sets of bench/bench_twoview_real.py together (--dump, grid over the multiplier
# 2-10 and the floor 0.1-0.25): the real pairs carry model errors (lens model, matching bias,
# the reference's own error) beyond what sigma describes, up to 4.7 sigma on Sceaux (one pair at
# 0.41 deg with sigma 0.086); 7 sigma keeps every flagged pair under 0.35 deg there and under
# 0.09 deg on the synthetic pairs (docs/twoview.md, docs/twoview_sigma.png).
ROTATION_BOUND_DEG = 0.5
ROTATION_SIGMAS = 7.0
ROTATION_FLOOR_DEG = 0.15
TRANSLATION_BOUND_DEG = 5.0
TRANSLATION_SIGMAS = 5.0
SPREAD_BOUND_DEG = 0.1
MIN_RELIABLE_INLIERS = 50
"""Fewer inliers are never flagged reliable, whatever the spread: on a wide-baseline indoor pair
(ScanNet scene0755, ASIFT matches at 640 px) 20-32 of 121 matches formed a consistent wrong
consensus (85 deg off) that every estimator and every 80 % re-estimate returned, with a 0.03 deg
sigma; the smallest inlier set among the reliable real pairs of bench/bench_twoview_real.py is
317 (Sceaux), so the bound costs none of them."""


def _hypothesis_spread(pose: Rigid3, p1, p2, K1, K2, cfg: TwoViewConfig) -> tuple[float, float]:
    """(rotation, translation-direction) spread in degrees: the largest difference between
    ``pose`` and ``cfg.num_hypotheses`` independent PoseLib re-estimates, each on a random 80 %
    of the matches with its own seed (a run that finds no pose counts as infinite spread).
    Independent hypotheses that land elsewhere mean the chosen minimum is not the only one the
    data support: the curvature at the minimum cannot tell."""
    from calib import rotation_angle_deg
    from recon.twoview._poselib import poselib_relative_pose

    good = np.all(np.isfinite(p1), 1) & np.all(np.isfinite(p2), 1)
    idx = np.flatnonzero(good)
    rng = np.random.default_rng(cfg.seed + 7919)
    d_rot = d_t = 0.0 if cfg.num_hypotheses else float("inf")
    for k in range(cfg.num_hypotheses):
        sub = np.sort(rng.choice(idx, max(5, int(0.8 * idx.size)), replace=False))
        got = poselib_relative_pose(p1[sub], p2[sub], K1, K2, threshold_px=cfg.threshold_px,
                                    confidence=cfg.confidence, max_iterations=cfg.max_iterations,
                                    seed=cfg.seed + 1 + k, min_iterations=100)
        if got is None:
            return float("inf"), float("inf")
        R, t = got[0], got[1]
        d_rot = max(d_rot, float(rotation_angle_deg(R @ pose.rotation.T)))
        d_t = max(d_t, float(np.degrees(np.arccos(np.clip(t @ pose.translation, -1.0, 1.0)))))
    return d_rot, d_t


def _rotation_spread_pure(pose: Rigid3, p1, p2, camera1: Camera, camera2: Camera, cfg: TwoViewConfig) -> float:
    """Largest rotation difference (deg) between ``pose`` and the rotations of
    ``cfg.num_hypotheses`` homographies re-estimated on random 80 % subsets (own seeds)."""
    from calib import rotation_angle_deg

    rng = np.random.default_rng(cfg.seed + 7919)
    idx = np.flatnonzero(np.all(np.isfinite(p1), 1) & np.all(np.isfinite(p2), 1))
    worst = 0.0 if cfg.num_hypotheses else float("inf")
    for k in range(cfg.num_hypotheses):
        sub = np.sort(rng.choice(idx, max(4, int(0.8 * idx.size)), replace=False))
        h = estimate_homography(p1[sub], p2[sub], threshold_px=cfg.threshold_px, seed=cfg.seed + 1 + k)
        if not h.ok:
            return float("inf")
        Hn = np.linalg.inv(camera2.K) @ h.H @ camera1.K
        R = project_to_so3(Hn * np.sign(np.linalg.det(Hn)))
        worst = max(worst, float(rotation_angle_deg(R @ pose.rotation.T)))
    return worst


def _reliability(deg: Degeneracy, calibrated: bool, ambiguous: bool, alt_rot_deg: float, rot_sigma: float,
                 t_sigma: float, spread: tuple[float, float], cfg: TwoViewConfig, *,
                 num_inliers: int) -> Degeneracy:
    v = deg.verdict
    rot_spread, t_spread = spread
    rot_sigma = float(np.hypot(rot_sigma, rot_spread))
    t_sigma = float(np.hypot(t_sigma, t_spread))
    rot_ok = (calibrated and v in ("general", "low_parallax", "planar", "pure_rotation")
              and np.hypot(ROTATION_SIGMAS * rot_sigma, ROTATION_FLOOR_DEG) <= ROTATION_BOUND_DEG
              and rot_spread <= SPREAD_BOUND_DEG and not ambiguous
              and num_inliers >= MIN_RELIABLE_INLIERS)
    pose_ok = (rot_ok and v in ("general", "planar")
               and TRANSLATION_SIGMAS * t_sigma <= TRANSLATION_BOUND_DEG)
    msg = deg.message
    if v == "planar" and calibrated:
        msg = ("the matches lie close to a plane: " + ("two poses explain them (ambiguous)" if ambiguous else
               "the five-point E and the off-plane matches determine the pose"))
    if np.isfinite(rot_sigma):
        msg += f" (rotation 1-sigma {rot_sigma:.3f} deg" + (
            f", translation direction 1-sigma {t_sigma:.2f} deg)" if np.isfinite(t_sigma) else ")")
    return replace(deg, pose_reliable=bool(pose_ok), rotation_reliable=bool(rot_ok), rotation_sigma_deg=rot_sigma,
                   translation_sigma_deg=t_sigma, pose_ambiguous=bool(ambiguous), message=msg,
                   rotation_spread_deg=float(rot_spread), translation_spread_deg=float(t_spread))


def _rotation_sigma_deg(R: np.ndarray, n1: np.ndarray, n2: np.ndarray, camera2: Camera) -> float:
    """1-sigma RMS rotation uncertainty (deg) of a pure rotation x2 ~ R x1 fitted to normalised
    matches: Gauss-Newton covariance of the image-2 transfer residuals (pixels)."""
    from calib import matrix_from_axis_angle

    if n1.shape[0] < 4:
        return float("inf")
    f = float(np.mean(camera2.focal))

    def res(w):
        y = np.c_[n1, np.ones(len(n1))] @ (matrix_from_axis_angle(w) @ R).T
        return (f * (y[:, :2] / y[:, 2:3] - n2)).ravel()

    r0 = res(np.zeros(3))
    h = 1e-7
    J = np.stack([(res(h * e) - r0) / h for e in np.eye(3)], 1)
    noise2 = float(np.sum(r0 * r0) / max(r0.size - 3, 1))
    try:
        C = noise2 * np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        return float("inf")
    return float(np.degrees(np.sqrt(max(np.trace(C), 0.0))))


def _select_planar_pose(pose: Rigid3, Hr: HomographyResult, Er: EssentialResult, camera1: Camera, camera2: Camera,
                        n1, n2, p1, p2, cfg: TwoViewConfig):
    """(best pose, ambiguous, rotation difference to the best competing pose in deg)."""
    import cv2

    from calib import rotation_angle_deg

    thr = cfg.threshold_px
    support = Er.inliers | Hr.inliers
    cands = [pose]
    if Hr.ok:
        Hn = np.linalg.inv(camera2.K) @ Hr.H @ camera1.K
        _num, Rs, ts, _normals = cv2.decomposeHomographyMat(Hn, np.eye(3))
        for R, t in zip(Rs, ts):
            t = t.ravel()
            if np.linalg.norm(t) > 1e-9:
                cands.append(Rigid3(project_to_so3(R), t / np.linalg.norm(t)))
    scored = []
    for c in cands:
        R, t = c.rotation, c.translation
        if cfg.method == "poselib":  # the same LM in C++, then residuals and noise at its optimum
            from recon.twoview._poselib import poselib_refine_relative_pose

            R, t = poselib_refine_relative_pose(R, t, p1[support], p2[support], camera1.K, camera2.K,
                                                scale_px=0.5 * thr, max_iterations=15)
        pr = refine_relative_pose(R, t, p1, p2, camera1.K, camera2.K, mask=support, scale_px=0.5 * thr,
                                  max_iterations=0 if cfg.method == "poselib" else 15)
        cost = float(np.sum(np.minimum(pr.residuals ** 2, thr * thr)))
        rp = recover_pose(essential_from_pose(Rigid3(pr.R, pr.t)), n1, n2, mask=support)
        scored.append((cost, rp.cam2_from_cam1, pr.noise_px, np.abs(pr.residuals)))
    scored.sort(key=lambda s: s[0])
    _best_cost, best, noise, r_best = scored[0]
    sigma = max(noise if np.isfinite(noise) else thr / 3, 0.1)
    fit_best = r_best < min(2.0 * sigma, thr)
    ambiguous, alt = False, 0.0
    for _cost, c, _, r_c in scored[1:]:
        d_rot = float(rotation_angle_deg(c.rotation @ best.rotation.T))
        d_t = float(np.degrees(np.arccos(np.clip(c.translation @ best.translation, -1, 1))))
        if d_rot < 0.25 and d_t < 5.0:  # (nearly) the same pose reached from another start
            continue
        # Evidence against the competitor: matches the best pose fits (< 2 sigma) that the
        # competitor clearly does not (> 4 sigma), i.e. off-plane structure; a lower cost alone
        # is not enough (on a pure plane the two poses' costs differ by noise only).
        evidence = int(np.count_nonzero(fit_best & (r_c > 4.0 * sigma)))
        if evidence < max(10, 0.02 * np.count_nonzero(fit_best)):
            ambiguous = True
            alt = max(alt, d_rot)
    return best, ambiguous, alt


def _essential(pose: Rigid3) -> np.ndarray:
    from recon.twoview._epipolar import essential_from_pose

    return essential_from_pose(pose)
