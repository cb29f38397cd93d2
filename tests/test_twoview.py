"""Two-view geometry against ground truth: synthetic pairs from random 3D points seen by known
cameras (calib.Camera / calib.Rigid3), with pixel noise and outliers."""

from __future__ import annotations

import numpy as np
import pytest

from calib import Camera, Rigid3, matrix_from_axis_angle, rotation_angle_deg
from recon.twoview import (
    TwoViewConfig,
    classify_degeneracy,
    decompose_essential,
    essential_from_pose,
    estimate_essential,
    estimate_fundamental,
    estimate_homography,
    fundamental_eight_point,
    fundamental_from_essential,
    fundamental_seven_point,
    homography_dlt,
    recover_pose,
    refine_two_view,
    sampson_error,
    triangulate_dlt,
    triangulate_midpoint,
    two_view_geometry,
)

W, H = 800, 600


def _camera(f=420.0, model="PINHOLE"):
    if model == "OPENCV":
        return Camera("OPENCV", W, H, np.array([f, f * 1.01, (W - 1) / 2 + 7, (H - 1) / 2 - 5, -0.12, 0.03, 1e-3, -5e-4]))
    return Camera("PINHOLE", W, H, np.array([f, f, (W - 1) / 2, (H - 1) / 2]))


def make_pair(rng, n=1500, noise=1.0, outlier_frac=0.3, scene="general", cam1=None, cam2=None):
    """Matches of ``n`` visible points; returns (uv1, uv2, cam1, cam2, cam2_from_cam1, is_inlier)."""
    cam1 = cam1 or _camera()
    cam2 = cam2 or cam1
    m = 4 * n
    xy = rng.uniform(-3.5, 3.5, (m, 2))
    if scene == "planar":
        X = np.c_[xy, 8.0 + 0.4 * xy[:, 0] - 0.2 * xy[:, 1]]
    else:
        X = np.c_[xy, rng.uniform(2.5, 8.0, m)]
    R = matrix_from_axis_angle(rng.normal(size=3) * 0.08)
    t = np.zeros(3) if scene == "rotation" else np.array([1.6, 0.4, 1.2])
    T = Rigid3(R, t)
    (u1, v1), (u2, v2) = cam1.project(X), cam2.project(T.apply(X))

    def inside(u):
        return (u[:, 0] >= 0) & (u[:, 0] <= W - 1) & (u[:, 1] >= 0) & (u[:, 1] <= H - 1)

    ok = v1 & v2 & inside(u1) & inside(u2)
    assert ok.sum() >= n, "test scene too small"
    u1, u2 = u1[ok][:n], u2[ok][:n]
    u1 = u1 + rng.normal(0, noise, u1.shape)
    u2 = u2 + rng.normal(0, noise, u2.shape)
    k = round(outlier_frac * n)
    bad = rng.choice(n, k, replace=False)
    u2[bad] = rng.uniform([0, 0], [W - 1, H - 1], (k, 2))
    truth = np.ones(n, bool)
    truth[bad] = False
    return u1, u2, cam1, cam2, T, truth


def ml_pose(u1, u2, cam1, cam2, T: Rigid3, truth) -> Rigid3:
    """The maximum-likelihood pose of a make_pair scene: least-squares two-view BA on the TRUE
    inliers, started at the truth (unit translation); the estimation limit of the noise."""
    t_unit = Rigid3(T.rotation, T.translation / np.linalg.norm(T.translation))
    X = triangulate_dlt(u1[truth], u2[truth], cam1, cam2, t_unit).points
    return refine_two_view(u1[truth], u2[truth], cam1, cam2, t_unit, X, loss="linear").cam2_from_cam1


def pose_errors(est: Rigid3, true: Rigid3):
    r = float(rotation_angle_deg(est.rotation @ true.rotation.T))
    a = est.translation / np.linalg.norm(est.translation)
    b = true.translation / np.linalg.norm(true.translation)
    return r, float(np.degrees(np.arccos(np.clip(a @ b, -1, 1))))


# ---------------------------------------------------------------------------------------------
# minimal / linear solvers (noise-free algebra)
# ---------------------------------------------------------------------------------------------
def test_eight_point_exact_and_rank2(rng):
    u1, u2, cam, _, T, _ = make_pair(rng, n=50, noise=0.0, outlier_frac=0.0)
    F = fundamental_eight_point(u1, u2)
    assert np.linalg.matrix_rank(F, tol=1e-9) == 2
    assert np.max(sampson_error(F, u1, u2)) < 1e-6
    F_true = fundamental_from_essential(essential_from_pose(T), cam, cam)
    assert min(np.linalg.norm(F - F_true), np.linalg.norm(F + F_true)) < 1e-6


def test_seven_point_contains_true_solution(rng):
    u1, u2, cam, _, T, _ = make_pair(rng, n=7, noise=0.0, outlier_frac=0.0)
    Fs, valid = fundamental_seven_point(u1[None], u2[None])
    F_true = fundamental_from_essential(essential_from_pose(T), cam, cam)
    d = [min(np.linalg.norm(F - F_true), np.linalg.norm(F + F_true)) for F in Fs[0][valid[0]]]
    assert valid.any() and min(d) < 1e-6


def test_homography_dlt_exact(rng):
    Ht = np.array([[1.1, 0.05, 20.0], [-0.03, 0.95, -10.0], [1e-4, -2e-4, 1.0]])
    x1 = rng.uniform(0, 500, (30, 2))
    y = np.c_[x1, np.ones(30)] @ Ht.T
    x2 = y[:, :2] / y[:, 2:]
    Hh = homography_dlt(x1, x2)
    assert np.allclose(Hh / Hh[2, 2], Ht, atol=1e-8)


def test_sampson_error_is_first_order_geometric_distance(rng):
    u1, u2, cam, _, T, _ = make_pair(rng, n=40, noise=0.0, outlier_frac=0.0)
    F = fundamental_from_essential(essential_from_pose(T), cam, cam)
    # Move x2 perpendicular to its epipolar line by 2 px: the Sampson distance is ~2 / sqrt(2)
    # (the displacement splits between both images at first order only when the lines have
    # equal gradients), and at least 2 / sqrt(1 + |grad1|/|grad2|)-ish; check the exact property
    # that Sampson == |x2^T F x1| / |grad| for the algebraic error.
    line = np.c_[u1, np.ones(40)] @ F.T
    nrm = line[:, :2] / np.linalg.norm(line[:, :2], axis=1, keepdims=True)
    u2s = u2 + 2.0 * nrm
    e = sampson_error(F, u1, u2s)
    Fx1 = np.c_[u1, np.ones(40)] @ F.T
    Ftx2 = np.c_[u2s, np.ones(40)] @ F
    alg = np.sum(np.c_[u2s, np.ones(40)] * Fx1, 1)
    ref = np.abs(alg) / np.sqrt(Fx1[:, 0] ** 2 + Fx1[:, 1] ** 2 + Ftx2[:, 0] ** 2 + Ftx2[:, 1] ** 2)
    assert np.allclose(e, ref, rtol=1e-10)
    assert np.all(e > 0.5) and np.all(e <= 2.0 + 1e-9)


def test_decompose_essential_has_true_pose(rng):
    T = Rigid3(matrix_from_axis_angle([0.1, -0.2, 0.05]), np.array([0.3, -0.1, 0.9]) / np.linalg.norm([0.3, -0.1, 0.9]))
    R1, R2, t = decompose_essential(essential_from_pose(T))
    best = min(pose_errors(Rigid3(R, s * t), T)[0] + pose_errors(Rigid3(R, s * t), T)[1]
               for R in (R1, R2) for s in (1, -1))
    assert best < 1e-6


# ---------------------------------------------------------------------------------------------
# robust estimation: the quality bars
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pose_accuracy_noise_and_outliers(seed):
    """1 px noise + 30 % outliers: rotation < 0.1 deg (or within 0.03 deg of the
    maximum-likelihood pose's own error), translation direction < 1 deg.

    With 1 px noise the maximum-likelihood pose itself (two-view BA on the TRUE inliers, started
    at the truth) is 0.06-0.11 deg off in rotation on these 1050-inlier scenes (seed 2: 0.106),
    so the bar sits at the estimation limit; we also check that the robust pipeline tracks that
    optimum (the meaningful property). Seed 2 holds two outliers inside the 3 px band whose rays
    meet behind a camera: kept, they pulled the pose 0.08 deg off the optimum."""
    rng = np.random.default_rng(seed)
    u1, u2, cam1, cam2, T, truth = make_pair(rng, noise=1.0, outlier_frac=0.3)
    geo = two_view_geometry(u1, u2, cam1, cam2, config=TwoViewConfig(threshold_px=3.0))
    assert geo.degeneracy.verdict == "general" and geo.degeneracy.pose_reliable
    r, t = pose_errors(geo.cam2_from_cam1, T)
    ml = ml_pose(u1, u2, cam1, cam2, T, truth)
    assert r < max(0.1, pose_errors(ml, T)[0] + 0.03), r
    assert t < 1.0, t
    # inliers: nearly all true inliers found, few outliers accepted
    assert np.mean(geo.inliers[truth]) > 0.97
    assert np.sum(geo.inliers & ~truth) <= 0.03 * truth.sum()
    assert geo.num_triangulated > 0.9 * truth.sum()
    d_r, d_t = pose_errors(geo.cam2_from_cam1, ml)
    assert d_r < 0.03 and d_t < 0.1, (d_r, d_t)


def test_pose_accuracy_aggregate_tracks_ml():
    """The synthetic bar on aggregate: over seeds 0-19 of the 1 px / 30 % pair, the median
    distance of our pose to the ML pose. Per seed, the estimator's own spread (0.01 deg) hides a
    loss that is less efficient on Gaussian noise; the median of 20 seeds does not
    (bench/bench_twoview_seeds.py compares 100 seeds with the seven-point-era code).
    Measured medians, rotation / translation direction to ML: now 0.0119 / 0.0305 deg (0.0132 /
    0.0333 before the acceptance cost counted the matches the BA leaves out as outliers); the
    seven-point era 0.0129 / 0.0277; the Cauchy-only final fits before final_loss
    0.0182 / 0.0377 (the rotation bound fails them; the translation bound is a looser guard).
    That bar is the two-view BA's (refine=True). The default (PoseLib's Cauchy refinement, no BA:
    on the real pairs the BA bought nothing, docs/twoview.md) measures 0.0187 / 0.0380 deg and is
    held to 0.022 / 0.045: on Gaussian noise a Cauchy fit is less efficient than least squares."""
    for refine, bound in ((True, 0.016), (None, 0.022)):
        d_r, d_t = [], []
        for seed in range(20):
            u1, u2, cam1, cam2, T, truth = make_pair(np.random.default_rng(seed), noise=1.0, outlier_frac=0.3)
            geo = two_view_geometry(u1, u2, cam1, cam2, config=TwoViewConfig(threshold_px=3.0, refine=refine))
            r, t = pose_errors(geo.cam2_from_cam1, ml_pose(u1, u2, cam1, cam2, T, truth))
            d_r.append(r)
            d_t.append(t)
        assert np.median(d_r) < bound, (refine, np.median(d_r))
        assert np.median(d_t) < 0.045, (refine, np.median(d_t))


def test_pose_ignores_in_band_outliers_the_ba_leaves_out():
    """Seeds 6, 18, 30, 35 of the 1 px / 30 % pair: each has a false inlier inside the 3 px band
    at 64-82 deg parallax (a point at 0.15-0.2 baselines) whose DLT triangulation reprojects
    4.1-6.2 px off, so the two-view BA leaves it out. The acceptance cost used to count it at
    its Sampson distance (1.9-2.5 px), and the polish that fitted it beat every BA without it:
    mean distance to the ML pose rotation 0.0315 / translation direction 0.0774 deg. Counted as
    an outlier (pipeline._unusable), the BA is kept: 0.0158 / 0.0254 deg."""
    d_r, d_t = [], []
    for seed in (6, 18, 30, 35):
        u1, u2, cam1, cam2, T, truth = make_pair(np.random.default_rng(seed), noise=1.0, outlier_frac=0.3)
        geo = two_view_geometry(u1, u2, cam1, cam2, config=TwoViewConfig(threshold_px=3.0))
        r, t = pose_errors(geo.cam2_from_cam1, ml_pose(u1, u2, cam1, cam2, T, truth))
        d_r.append(r)
        d_t.append(t)
    assert np.mean(d_r) < 0.024, d_r
    assert np.mean(d_t) < 0.045, d_t


def test_final_loss_follows_the_residual_tails(rng):
    """final_loss: least squares in a 3.5-sigma band on Gaussian residuals, the Cauchy on
    Student-t (nu = 2) residuals like the real pairs' (Sceaux fits nu 0.5-4), the Cauchy when
    there are too few residuals to tell; the least-squares cost is the truncated quadratic."""
    from recon.twoview import epipolar_cost, final_loss

    g = rng.normal(0.0, 1.0, 1500)
    fl = final_loss(g[np.abs(g) < 3.0], 3.0)
    assert fl.least_squares and fl.loss == "linear" and fl.nu >= 10, fl
    assert abs(fl.sigma_px - 1.0) < 0.1 and fl.cap_px == 3.0
    h = rng.normal(0.0, 0.5, 1500)
    fl = final_loss(h[np.abs(h) < 3.0], 3.0)
    assert fl.least_squares and abs(fl.cap_px - 3.5 * fl.sigma_px) < 1e-12 and fl.cap_px < 2.0
    r = np.array([0.1, 1.0, 5.0])
    assert fl.cost(r, np.array([False, False, True])) == pytest.approx(0.1 ** 2 + 1.0 + fl.cap_px ** 2, rel=1e-12)
    assert fl.cost(r, np.zeros(3, bool)) == epipolar_cost(r, np.zeros(3, bool), np.inf, fl.cap_px)
    t = 0.2 * rng.standard_t(2.0, 2500)
    fl = final_loss(t[np.abs(t) < 1.0], 1.0)
    assert not fl.least_squares and fl.loss == "cauchy" and fl.nu < 4, fl
    assert fl.cap_px == 1.0 and fl.scale_px <= 0.5
    fl = final_loss(g[:40], 3.0)  # too few residuals: the robust loss, no fit
    assert not fl.least_squares and np.isnan(fl.nu)
    with pytest.raises(ValueError, match="threshold_px"):
        final_loss(g, 0.0)


def test_sampson_jacobian_matches_finite_differences(rng):
    """The analytic Jacobian of the signed Sampson distance (refine_relative_pose's LM) against
    central differences of the literal parameterisation (R = exp(w) R0, t = normalise(t0 + B d))."""
    from recon.twoview._relpose import _stack_F, _tangent_basis, sampson_jacobian, signed_sampson

    u1, u2, cam, _, T, _ = make_pair(rng, n=60, noise=1.0, outlier_frac=0.2)
    Ki = np.linalg.inv(cam.K)
    R0 = matrix_from_axis_angle([0.01, -0.02, 0.03]) @ T.rotation  # off the optimum
    t0 = T.translation / np.linalg.norm(T.translation)
    B = _tangent_basis(t0)
    r, J = sampson_jacobian(R0, t0, B, Ki, Ki, u1, u2)
    assert np.allclose(r, signed_sampson(Ki.T @ _skew(t0) @ R0 @ Ki, u1, u2), rtol=1e-12, atol=1e-12)
    h = 1e-6
    P = np.vstack([h * np.eye(5), -h * np.eye(5)])
    rs = signed_sampson(_stack_F(R0, t0, B, P, Ki, Ki), u1, u2)  # [10, n]
    J_ref = ((rs[:5] - rs[5:]) / (2 * h)).T
    assert np.max(np.abs(J - J_ref)) <= 1e-6 * np.max(np.abs(J_ref))


def _skew(t):
    return np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])


def test_cheirality_outliers(rng):
    """Matches of points behind a camera fit the epipolar constraint exactly but are flagged;
    noisy matches of points near infinity (whose depth sign noise decides) are not."""
    from recon.twoview import cheirality_outliers

    cam = _camera()
    T = Rigid3(matrix_from_axis_angle([0.02, -0.05, 0.01]), np.array([1.0, 0.2, 0.3]) / np.linalg.norm([1.0, 0.2, 0.3]))
    X = np.c_[rng.uniform(-2, 2, (300, 2)), rng.uniform(3, 8, 300)]
    X[:100] *= -1.0  # behind camera 1 (and camera 2): images by the pinhole formula still exist
    X[200:] *= 1e5  # near infinity
    X2 = T.apply(X)
    n1, n2 = X[:, :2] / X[:, 2:], X2[:, :2] / X2[:, 2:]
    n2[200:] += rng.normal(0, 1.0 / 420.0, (100, 2))  # 1 px of noise at f = 420
    e = np.abs(np.sum(np.c_[n2, np.ones(300)] * (np.c_[n1, np.ones(300)] @ essential_from_pose(T).T), 1))
    assert np.max(e[:200]) < 1e-9  # the epipolar constraint cannot tell them apart
    out = cheirality_outliers(T, n1, n2, 3.0, cam.K, cam.K)
    assert out[:100].all() and not out[100:200].any()
    assert out[200:].mean() < 0.05


def test_pose_accuracy_distorted_cameras(rng):
    cam1, cam2 = _camera(model="OPENCV"), _camera(f=650.0)
    u1, u2, cam1, cam2, T, _truth = make_pair(rng, noise=0.5, outlier_frac=0.3, cam1=cam1, cam2=cam2)
    geo = two_view_geometry(u1, u2, cam1, cam2, config=TwoViewConfig(threshold_px=2.0))
    r, t = pose_errors(geo.cam2_from_cam1, T)
    assert geo.degeneracy.verdict == "general"
    assert r < 0.1 and t < 1.0, (r, t)


@pytest.mark.parametrize("seed", [3, 4])
def test_ours_agrees_with_opencv(seed):
    """Same matches: inlier sets overlap >= 95 % and poses differ by < 0.1 deg."""
    rng = np.random.default_rng(seed)
    u1, u2, cam, _, T, _truth = make_pair(rng, n=800, noise=0.5, outlier_frac=0.3)
    ours = estimate_fundamental(u1, u2, method="ours", threshold_px=1.5)
    cv = estimate_fundamental(u1, u2, method="opencv", threshold_px=1.5)
    overlap = np.sum(ours.inliers & cv.inliers) / np.sum(ours.inliers | cv.inliers)
    assert overlap >= 0.95, overlap
    poses = []
    for fit in (ours, cv):
        E = cam.K.T @ fit.F @ cam.K
        poses.append(recover_pose(E, cam.cam_from_img(u1), cam.cam_from_img(u2), mask=fit.inliers).cam2_from_cam1)
    dr, _dt = pose_errors(poses[0], poses[1])
    assert dr < 0.1, dr
    # and the same for E (our loop vs OpenCV's five-point)
    e_ours = estimate_essential(u1, u2, cam, cam, method="ours", threshold_px=1.5)
    e_cv = estimate_essential(u1, u2, cam, cam, method="opencv", threshold_px=1.5)
    overlap = np.sum(e_ours.inliers & e_cv.inliers) / np.sum(e_ours.inliers | e_cv.inliers)
    assert overlap >= 0.9, overlap
    pe = [recover_pose(f.E, cam.cam_from_img(u1), cam.cam_from_img(u2), mask=f.inliers).cam2_from_cam1
          for f in (e_ours, e_cv)]
    # OpenCV's five-point + MAGSAC stops at a weighted linear fit (0.2-0.7 deg off here); ours adds
    # a Sampson-distance polish on the essential manifold, so it is compared with the truth.
    r_ours, t_ours = pose_errors(pe[0], T)
    assert r_ours < 0.1 and t_ours < 1.0
    assert r_ours <= pose_errors(pe[1], T)[0] + 0.02


def test_fundamental_inliers_and_adaptive_iterations(rng):
    u1, u2, *_, truth = make_pair(rng, noise=0.5, outlier_frac=0.5)
    fit = estimate_fundamental(u1, u2, threshold_px=1.5)
    assert np.mean(fit.inliers[truth]) > 0.95
    assert np.sum(fit.inliers & ~truth) < 0.03 * truth.sum()
    easy = estimate_fundamental(*make_pair(rng, noise=0.5, outlier_frac=0.0)[:2], threshold_px=1.5)
    assert easy.num_iterations < fit.num_iterations  # fewer hypotheses at a high inlier ratio
    assert fit.median_inlier_residual() < 1.0


def test_homography_robust_on_planar(rng):
    u1, u2, *_, truth = make_pair(rng, scene="planar", noise=0.5, outlier_frac=0.3)
    for method in ("ours", "opencv"):
        fit = estimate_homography(u1, u2, method=method, threshold_px=1.5)
        assert np.mean(fit.inliers[truth]) > 0.95 and np.sum(fit.inliers & ~truth) < 10


# ---------------------------------------------------------------------------------------------
# degeneracy: planar scenes and pure rotation are flagged, not "solved"
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("calibrated", [True, False])
def test_planar_flagged(rng, calibrated):
    u1, u2, cam1, cam2, _T, _truth = make_pair(rng, n=500, scene="planar", noise=1.0, outlier_frac=0.2)
    kw = {"camera1": cam1, "camera2": cam2} if calibrated else {"image_size1": (W, H), "image_size2": (W, H)}
    geo = two_view_geometry(u1, u2, config=TwoViewConfig(threshold_px=3.0), **kw)
    assert geo.degeneracy.verdict == "planar"
    assert not geo.degeneracy.pose_reliable


@pytest.mark.parametrize("calibrated", [True, False])
def test_pure_rotation_flagged(rng, calibrated):
    u1, u2, cam1, cam2, T, _truth = make_pair(rng, n=500, scene="rotation", noise=1.0, outlier_frac=0.2)
    kw = {"camera1": cam1, "camera2": cam2} if calibrated else {"image_size1": (W, H), "image_size2": (W, H)}
    geo = two_view_geometry(u1, u2, config=TwoViewConfig(threshold_px=3.0), **kw)
    assert geo.degeneracy.verdict == "pure_rotation"
    assert not geo.degeneracy.pose_reliable
    # with guessed intrinsics (focal 960 px vs the true 420) the rotation is not trusted
    assert geo.degeneracy.rotation_reliable == calibrated
    if calibrated:  # the rotation itself is recovered from H
        assert rotation_angle_deg(geo.cam2_from_cam1.rotation @ T.rotation.T) < 0.1
        assert np.all(geo.cam2_from_cam1.translation == 0)


def test_identical_and_too_few(rng):
    u1, _, cam, *_ = make_pair(rng, n=300, noise=0.0, outlier_frac=0.0)
    geo = two_view_geometry(u1, u1 + rng.normal(0, 0.05, u1.shape), cam, cam)
    assert geo.degeneracy.verdict == "identical" and geo.cam2_from_cam1 is None
    geo = two_view_geometry(u1[:10], u1[:10] + 5, cam, cam)
    assert geo.degeneracy.verdict == "too_few_matches" and geo.cam2_from_cam1 is None


def test_classify_degeneracy_general_vs_planar_gric():
    rng = np.random.default_rng(7)
    n = 300
    fr = np.abs(rng.normal(0, 1, n))
    inl = np.ones(n, bool)
    # general scene: H residuals large for most points -> F wins
    d = classify_degeneracy(np.zeros((n, 2)), np.full((n, 2), 50.0), fr, inl, 5 + fr, np.zeros(n, bool))
    assert d.verdict == "general" and d.gric_f < d.gric_h
    # plane: H fits as well as F (chi2 with 2 dof vs 1 dof) -> H wins
    hr = np.sqrt(rng.chisquare(2, n) / 2) * np.sqrt(2)
    d = classify_degeneracy(np.zeros((n, 2)), np.full((n, 2), 50.0), fr, inl, hr, inl)
    assert d.verdict in ("planar", "pure_rotation") and d.gric_h < d.gric_f


# ---------------------------------------------------------------------------------------------
# triangulation and refinement
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tri", [triangulate_dlt, triangulate_midpoint])
def test_triangulation_exact_noise_free(rng, tri):
    u1, u2, cam1, cam2, T, _ = make_pair(rng, n=100, noise=0.0, outlier_frac=0.0, cam1=_camera(model="OPENCV"))
    res = tri(u1, u2, cam1, cam2, T)
    # recompute the true points: re-project and compare pixels (points are unique up to noise)
    assert res.in_front.all()
    assert np.max(res.reprojection_error) < 1e-6
    assert np.all(res.parallax_deg > 3.0) and np.all(res.parallax_deg < 45.0)
    assert res.valid().all()


def test_triangulation_flags_points_behind(rng):
    cam = _camera()
    T = Rigid3(np.eye(3), np.array([1.0, 0.0, 0.0]))
    X = np.array([[0.0, 0.0, 5.0], [0.2, 0.1, -5.0]])
    f = cam.focal[0]
    u1 = X[:, :2] / X[:, 2:] * f + cam.principal_point
    X2 = T.apply(X)
    u2 = X2[:, :2] / X2[:, 2:] * f + cam.principal_point
    res = triangulate_dlt(u1, u2, cam, cam, T)
    assert res.in_front.tolist() == [True, False]
    assert np.allclose(res.points[0], X[0], atol=1e-9)


def test_refine_two_view_recovers_truth(rng):
    u1, u2, cam1, cam2, T, _ = make_pair(rng, n=150, noise=0.0, outlier_frac=0.0)
    t_unit = T.translation / np.linalg.norm(T.translation)
    t0 = t_unit + np.array([0.0, 0.03, -0.02])
    start = Rigid3(matrix_from_axis_angle([0.01, -0.008, 0.004]) @ T.rotation, t0 / np.linalg.norm(t0))
    pts = triangulate_dlt(u1, u2, cam1, cam2, start).points
    ref = refine_two_view(u1, u2, cam1, cam2, start, pts, loss="linear", max_nfev=100)
    r, t = pose_errors(ref.cam2_from_cam1, T)
    assert r < 1e-6 and t < 1e-5
    assert ref.rms_after_px < 1e-6 < ref.rms_before_px


def test_refine_two_view_matches_scipy_reference(rng):
    """Our Schur-complement LM (batched normal equations, cofactor 3x3 inverses) reaches the
    optimum that scipy.optimize.least_squares (finite-difference Jacobian) finds on the same
    objective: pose (rotation vector, unit translation by two angles) + points, reprojection
    error in both images, 1 px noise, least squares."""
    from scipy.optimize import least_squares

    u1, u2, cam1, cam2, T, _ = make_pair(rng, n=30, noise=1.0, outlier_frac=0.0)
    t_unit = T.translation / np.linalg.norm(T.translation)
    start = Rigid3(T.rotation, t_unit)
    pts = triangulate_dlt(u1, u2, cam1, cam2, start).points
    ours = refine_two_view(u1, u2, cam1, cam2, start, pts, loss="linear", max_nfev=200)

    def unpack(p):
        R = matrix_from_axis_angle(p[:3]) @ T.rotation
        th, ph = p[3], p[4]
        return R, np.array([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)]), p[5:].reshape(-1, 3)

    def fun(p):
        R, t, X = unpack(p)
        return np.concatenate([(cam1.project(X)[0] - u1).ravel(), (cam2.project(X @ R.T + t)[0] - u2).ravel()])

    x0 = np.r_[0, 0, 0, np.arccos(t_unit[2]), np.arctan2(t_unit[1], t_unit[0]), pts.ravel()]
    sol = least_squares(fun, x0, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    R_ref, t_ref, _ = unpack(sol.x)
    d_r, d_t = pose_errors(ours.cam2_from_cam1, Rigid3(R_ref, t_ref))
    assert d_r < 1e-5 and d_t < 1e-4, (d_r, d_t)


def test_input_checks():
    with pytest.raises(ValueError, match="x1, x2"):
        estimate_fundamental(np.zeros((10, 2)), np.zeros((9, 2)))
    with pytest.raises(ValueError, match="method"):
        estimate_fundamental(np.zeros((10, 2)), np.zeros((10, 2)), method="magic")
    with pytest.raises(ValueError, match="threshold_px"):
        estimate_fundamental(np.zeros((10, 2)), np.zeros((10, 2)), threshold_px=-1)
    with pytest.raises(ValueError, match="eight-point"):
        fundamental_eight_point(np.zeros((5, 2)), np.zeros((5, 2)))
    with pytest.raises(TypeError, match="camera1"):
        triangulate_dlt(np.zeros((3, 2)), np.zeros((3, 2)), "cam", _camera(), Rigid3.identity())
    fit = estimate_fundamental(np.zeros((5, 2)), np.ones((5, 2)))
    assert not fit.ok and fit.num_inliers == 0


# Reference for the Sceaux pair 100_7100 -> 100_7101: the pycolmap reconstruction of all 11
# photos (`recon sfm ../shared/data/sceaux-castle -o /tmp/twoview_ref/sceaux --max-image-size 1600`,
# 11/11 registered, 0.73 px; bench/bench_twoview_real.py builds the same model): its camera
# (SIMPLE_RADIAL f = 2973.26, k = -0.16684) and the relative pose cam2_from_cam1 of the two images.
SCEAUX_CAMERA = (2973.2557536, 1415.5, 1063.5, -0.16684195722)
SCEAUX_QUAT_WXYZ = (0.9978316681, 0.0118384587, 0.0613675962, -0.0206356755)
SCEAUX_T_DIR = (-0.92429641, 0.1064305894, 0.3665360503)


@pytest.mark.slow
def test_real_photos_sceaux_pair(shared_data):
    """Two real photos (Sceaux castle) with the reconstruction's camera: a general verdict, most
    matches inliers, sub-pixel Sampson error, and the pose within 0.5 deg of the reference
    (OpenCV's five-point MAGSAC on the same matches: 1.1 deg; with K.txt, which has no
    distortion term, ours is 1.7 deg off and OpenCV 2.9 deg)."""
    from calib import matrix_from_quat
    from recon.features import detect_features, match_features
    from recon.io import read_image

    d = shared_data / "sceaux-castle"
    imgs = [read_image(d / n) for n in ("100_7100.JPG", "100_7101.JPG")]
    import cv2

    imgs = [cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA) for im in imgs]
    cam = Camera("SIMPLE_RADIAL", 2832, 2128, np.array(SCEAUX_CAMERA)).scaled(0.5)
    f1, f2 = detect_features(imgs[0]), detect_features(imgs[1])
    m = match_features(f1, f2)
    uv1, uv2 = m.points(f1, f2)
    geo = two_view_geometry(uv1, uv2, cam, cam, config=TwoViewConfig(threshold_px=1.0))
    assert geo.degeneracy.verdict == "general"
    assert geo.inliers.mean() > 0.6 and geo.num_triangulated > 300
    assert geo.fundamental.median_inlier_residual() < 0.5
    ref = Rigid3(matrix_from_quat(np.array(SCEAUX_QUAT_WXYZ)), np.array(SCEAUX_T_DIR))
    r, t = pose_errors(geo.cam2_from_cam1, ref)
    assert r < 0.5 and t < 1.0, (r, t)
    assert geo.degeneracy.rotation_reliable


def test_low_parallax_flagged(rng):
    """A 3 cm baseline at 2.5-8 m: F still beats H (parallax is above the noise) but the median
    triangulation angle is ~0.3 deg: rotation accurate, translation flagged. (Rotation 1-sigma
    with the hypothesis spread is 0.093 deg: 7 sigma exceeds the 0.5 deg bound, so the rule
    calibrated on the real pairs does not vouch for it; a flag, if set, must hold.)"""
    cam = _camera()
    X = np.c_[rng.uniform(-3.5, 3.5, (3200, 2)), rng.uniform(2.5, 8.0, 3200)]
    t = np.array([1.6, 0.4, 1.2])
    T = Rigid3(matrix_from_axis_angle(rng.normal(size=3) * 0.08), 0.03 * t / np.linalg.norm(t))
    (u1, v1), (u2, v2) = cam.project(X), cam.project(T.apply(X))
    ok = v1 & v2 & np.all((u1 >= 0) & (u1 <= [W - 1, H - 1]), 1) & np.all((u2 >= 0) & (u2 <= [W - 1, H - 1]), 1)
    u1 = u1[ok][:800] + rng.normal(0, 0.5, (800, 2))
    u2 = u2[ok][:800] + rng.normal(0, 0.5, (800, 2))
    geo = two_view_geometry(u1, u2, cam, cam, config=TwoViewConfig(threshold_px=1.5))
    assert geo.degeneracy.verdict == "low_parallax"
    assert not geo.degeneracy.pose_reliable
    assert geo.degeneracy.median_parallax_deg < 1.0
    # The default (PoseLib) gives 0.128 deg here (0.117 with the two-view BA after it); our
    # LO-MSAC + BA (method="ours") stays under the former 0.1 bar. With 0.3 deg of parallax
    # rotation trades off against translation; the pair is not flagged reliable either way.
    assert pose_errors(geo.cam2_from_cam1, T)[0] < 0.15
    ours = two_view_geometry(u1, u2, cam, cam, config=TwoViewConfig(threshold_px=1.5, method="ours"))
    assert pose_errors(ours.cam2_from_cam1, T)[0] < 0.1


def test_a_consistent_wrong_consensus_is_not_reliable(shared_data):
    """ScanNet scene0755 (wide-baseline indoor pair, ASIFT matches at 640 px): 20-32 of ~120 matches
    form a consensus 85 deg away from the ground truth that PoseLib, OpenCV and the 80 % re-estimates
    all return, with a 0.03 deg sigma. Too few inliers to vouch for it: not rotation_reliable."""
    import cv2

    from recon.features import detect_features, match_features
    from recon.io import read_image

    d = shared_data / "scannet-pairs"
    if not d.is_dir():
        pytest.skip("scannet-pairs not in the shared data")
    tok = next(t for t in (ln.split() for ln in (d / "pairs_with_gt.txt").read_text().splitlines())
               if t and t[0].startswith("scene0755_00"))
    v = np.array(tok[4:], float)
    s = 640 / 1296
    feats, cams = [], []
    for name, K in ((tok[0], v[:9].reshape(3, 3)), (tok[1], v[9:18].reshape(3, 3))):
        img = cv2.resize(read_image(d / "images" / name), (640, 478), interpolation=cv2.INTER_AREA)
        feats.append(detect_features(img, method="asift"))
        cx, cy = (K[0, 2] + 0.5) * s - 0.5, (K[1, 2] + 0.5) * s - 0.5
        cams.append(Camera("PINHOLE", 640, 478, np.array([K[0, 0] * s, K[1, 1] * s, cx, cy])))
    uv1, uv2 = match_features(*feats).points(*feats)
    R_true = v[18:34].reshape(4, 4)[:3, :3]
    for thr in (0.75, 1.0):
        g = two_view_geometry(uv1, uv2, cams[0], cams[1], config=TwoViewConfig(threshold_px=thr))
        if g.cam2_from_cam1 is None:
            continue
        err = rotation_angle_deg(g.cam2_from_cam1.rotation @ R_true.T)
        assert not (g.degeneracy.rotation_reliable and err > 0.5), (thr, err, g.degeneracy)
