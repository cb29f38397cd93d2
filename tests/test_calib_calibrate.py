"""Intrinsic / stereo calibration against synthetic ground truth and against OpenCV itself."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from calib import Camera, Rigid3
from calib.boards import (
    BoardSpec,
    board_object_points,
    canonical_chessboard_order,
    parse_board_spec,
)
from calib.calibrate import (
    CalibrationConfig,
    CalibrationError,
    Observation,
    calibrate_camera,
    compare_cameras,
    comparison_grid,
    coverage_map,
    projection_uncertainty,
    refine_cam_from_board,
)
from calib.transforms import matrix_from_axis_angle
from recon.synth.boards import coverage_board_poses, random_board_poses, true_corners

PINHOLE_TRUTH = Camera("OPENCV", 640, 480, [350.0, 351.0, 321.3, 238.2, -0.12, 0.05, 0.0005, -0.0003])
FISHEYE_TRUTH = Camera("OPENCV_FISHEYE", 640, 480, [300.0, 300.5, 318.7, 241.1, 0.05, -0.02, 0.004, -0.001])
DENSE = BoardSpec("chessboard", 20, 14, 0.02)


def synthetic_views(camera, board, n, noise, seed, **pose_kw):
    rng = np.random.default_rng(seed)
    poses = random_board_poses(board, camera, n, rng, **pose_kw)
    obs = []
    for k, p in enumerate(poses):
        uv, vis = true_corners(board, camera, p)
        assert vis.all()
        obs.append(Observation(f"view{k:02d}", uv + rng.normal(0.0, noise, uv.shape), board_object_points(board),
                               np.arange(len(uv))))
    return obs, poses


def coverage_views(camera, board, n, noise, seed, **pose_kw):
    """Views captured the way a careful user does (recon.synth.boards.coverage_board_poses):
    close, tilted boards reaching into every image corner and edge; each view keeps the corners
    inside the image, with their ids (partially visible boards, as ChArUco allows)."""
    rng = np.random.default_rng(seed)
    poses = coverage_board_poses(board, camera, n, rng, **pose_kw)
    P = board_object_points(board)
    obs = []
    for k, p in enumerate(poses):
        uv, vis = true_corners(board, camera, p)
        noisy = uv + rng.normal(0.0, noise, uv.shape)
        obs.append(Observation(f"view{k:02d}", noisy[vis], P[vis], np.nonzero(vis)[0]))
    return obs, poses


# The whole-image bar needs many corners: the worst-pixel projection 1-sigma (the uncertainty
# map, checked against Monte Carlo below) is ~5.5 px / sqrt(total corners) for these captures,
# so "< 0.1 px everywhere" (2-3 sigma at the worst pixel) needs ~15-20 thousand corners in 20
# views. A 50x35-corner board (ChArUco-like, partially visible) gives 700-1100 per view; the
# 20x14 board gives ~200 and a worst-pixel sigma of ~0.1 px (docs/calibration.md).
COVERAGE_BOARD = BoardSpec("chessboard", 50, 35, 0.01)


def _check_quality_bars(truth, seed):
    obs, _ = coverage_views(truth, COVERAGE_BOARD, 20, 0.2, seed=seed)
    res = calibrate_camera(obs, truth.size, CalibrationConfig(model=truth.model))
    est = res.camera
    assert not res.rejected_views
    assert np.all(np.abs(est.focal / truth.focal - 1) < 1e-3)
    assert np.all(np.abs(est.principal_point - truth.principal_point) < 0.5)
    # Noise 0.2 px per axis -> RMS of the norm ~ 0.2 * sqrt(2).
    assert 0.25 < res.rms_px < 0.32
    assert abs(res.sigma_px - 0.2) < 0.02
    # Errors consistent with the reported standard deviations (4 sigma).
    err = est.params - truth.params
    assert np.all(np.abs(err) < 4 * res.param_std + 1e-12)
    # Whole image: every 20 px plus the last row/column (the four corner pixels included).
    step = 20.0
    diff = compare_cameras(est, truth, step=step, fit_rotation=True)
    raw = compare_cameras(est, truth, step=step)
    gu, gv = comparison_grid(truth.size, step)
    assert diff.shape == (len(gv), len(gu)) and gu[-1] == truth.width - 1 and gv[-1] == truth.height - 1
    assert np.all(np.isfinite(diff)) and np.all(np.isfinite(raw))
    assert diff.max() < 0.1  # the bar, with the unobservable rotation of the camera frame fitted
    # The difference stays within 3x the predicted uncertainty at every pixel.
    unc = projection_uncertainty(res, grid=(33, 25))
    from scipy.interpolate import RegularGridInterpolator

    interp = RegularGridInterpolator((unc.v, unc.u), unc.std_px)
    pred = interp(np.stack(np.meshgrid(gv, gu, indexing="ij"), -1))
    assert np.all(np.isfinite(pred))
    assert np.all(diff < 3 * pred + 0.05)
    return diff.max(), raw.max()


@pytest.mark.parametrize("truth", [PINHOLE_TRUTH, FISHEYE_TRUTH], ids=["OPENCV", "OPENCV_FISHEYE"])
def test_synthetic_quality_bars(truth):
    """The issue's bar, literally: 20 views, 0.2 px corner noise -> focal < 0.1 %, principal
    point < 0.5 px, max projection difference over the whole image < 0.1 px (implied rotation
    fitted, as mrcal does; the raw difference is reported in docs/calibration.md)."""
    _check_quality_bars(truth, 0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("truth", [PINHOLE_TRUTH, FISHEYE_TRUTH], ids=["OPENCV", "OPENCV_FISHEYE"])
def test_synthetic_quality_bars_other_seeds(truth, seed):
    """The same bar on other random captures (so the pass is not one lucky draw)."""
    _check_quality_bars(truth, seed)


def test_coverage_board_poses_checks_its_arguments():
    rng = np.random.default_rng(0)
    for kw, name in [({"fill": (2.0, 1.0)}, "fill"), ({"min_visible": 0.0}, "min_visible"),
                     ({"targets": []}, "targets")]:
        with pytest.raises(ValueError, match=name):
            coverage_board_poses(DENSE, PINHOLE_TRUTH, 3, rng, **kw)
    with pytest.raises(ValueError, match="num_views"):
        coverage_board_poses(DENSE, PINHOLE_TRUTH, -1, rng)


def test_whole_board_views_leave_image_corners_uncertain():
    """Whole boards in view (random_board_poses, targets at 0.15..0.85 of the image) never put a
    corner near the image corners: the uncertainty map says the projection there is several
    times less certain than with coverage_board_poses on the same board and noise."""
    whole, _ = synthetic_views(PINHOLE_TRUTH, DENSE, 20, 0.2, seed=0, max_tilt_deg=60, fill=(0.5, 0.85))
    cover, _ = coverage_views(PINHOLE_TRUTH, DENSE, 20, 0.2, seed=0)
    u = [projection_uncertainty(calibrate_camera(o, PINHOLE_TRUTH.size), grid=(17, 13)) for o in (whole, cover)]
    corner = [np.max(m.std_px[[0, 0, -1, -1], [0, -1, 0, -1]]) for m in u]
    assert corner[0] > 2 * corner[1]
    pts = np.concatenate([o.corners for o in cover])
    W, H = PINHOLE_TRUTH.size
    for c in [(0, 0), (W - 1, 0), (0, H - 1), (W - 1, H - 1)]:
        assert np.min(np.linalg.norm(pts - c, axis=1)) < 0.04 * np.hypot(W, H)


@pytest.mark.parametrize("truth", [PINHOLE_TRUTH, FISHEYE_TRUTH], ids=["OPENCV", "OPENCV_FISHEYE"])
def test_noise_free_recovers_truth_exactly(truth):
    board = BoardSpec("chessboard", 10, 7, 0.03)
    obs, poses = synthetic_views(truth, board, 12, 0.0, seed=3, max_tilt_deg=50, fill=(0.5, 0.85))
    res = calibrate_camera(obs, truth.size, CalibrationConfig(model=truth.model))
    assert res.rms_px < 1e-3
    assert np.nanmax(compare_cameras(res.camera, truth, step=16.0)) < 5e-3
    for v, p in zip(res.views, poses):
        assert np.allclose(v.cam_from_board.translation, p.translation, atol=1e-5)


def test_identical_to_opencv_calibrate_camera():
    """Same input, same model and flags, nothing rejected -> exactly cv2.calibrateCamera."""
    import cv2

    board = BoardSpec("chessboard", 9, 6, 0.03)
    obs, _ = synthetic_views(PINHOLE_TRUTH, board, 12, 0.3, seed=5)
    objp = [o.object_points.astype(np.float32) for o in obs]
    imgp = [o.corners.astype(np.float32).reshape(-1, 1, 2) for o in obs]
    for model, flags, n in [("OPENCV", cv2.CALIB_FIX_K3, 4), ("FULL_OPENCV", cv2.CALIB_RATIONAL_MODEL, 8),
                            ("PINHOLE", cv2.CALIB_FIX_K1 | cv2.CALIB_FIX_K2 | cv2.CALIB_FIX_K3 | cv2.CALIB_ZERO_TANGENT_DIST, 0)]:
        # OpenCV's threaded reductions vary results by up to ~1e-6 relative from run to run on
        # ill-conditioned fits (FULL_OPENCV here); calibrate_camera runs it single-threaded, so
        # the reference does too.
        nthreads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            rms, K, D, _, _ = cv2.calibrateCamera(objp, imgp, PINHOLE_TRUTH.size, None, None, flags=flags)
        finally:
            cv2.setNumThreads(nthreads)
        res = calibrate_camera(obs, PINHOLE_TRUTH.size, CalibrationConfig(model=model, reject_outliers=False))
        ref = np.r_[K[0, 0], K[1, 1], K[0, 2], K[1, 2], D.ravel()[:n]]
        np.testing.assert_allclose(res.camera.params, ref, rtol=1e-6, atol=1e-12)
        # our RMS is recomputed in float64 from the solution; OpenCV's comes from its last step
        assert abs(res.rms_px - rms) < 1e-4 * rms


def test_param_std_matches_opencv_extended():
    """Our Jacobian-based standard deviations agree with cv2.calibrateCameraExtended's."""
    import cv2

    board = BoardSpec("chessboard", 9, 6, 0.03)
    obs, _ = synthetic_views(PINHOLE_TRUTH, board, 15, 0.3, seed=6)
    res = calibrate_camera(obs, PINHOLE_TRUTH.size, CalibrationConfig(model="OPENCV", reject_outliers=False))
    objp = [o.object_points.astype(np.float32) for o in obs]
    imgp = [o.corners.astype(np.float32).reshape(-1, 1, 2) for o in obs]
    out = cv2.calibrateCameraExtended(objp, imgp, PINHOLE_TRUTH.size, None, None, flags=cv2.CALIB_FIX_K3)
    std_cv = out[5].ravel()[:8]
    np.testing.assert_allclose(res.param_std, std_cv, rtol=0.05)


def _relabel(corners, cols, rows, k):
    g = corners.reshape(rows, cols, 2)
    cands = [g, g[::-1, ::-1], g[::-1, :], g[:, ::-1]]
    if cols == rows:
        t = g.transpose(1, 0, 2)
        cands += [t, t[::-1, ::-1], t[::-1, :], t[:, ::-1]]
    return cands[k % len(cands)].reshape(-1, 2)


@pytest.mark.parametrize("cols,rows", [(7, 7), (9, 6)])
def test_canonical_order_is_independent_of_detector_order(cols, rows):
    board = BoardSpec("chessboard", cols, rows, 0.03)
    rng = np.random.default_rng(1)
    poses = random_board_poses(board, PINHOLE_TRUTH, 6, rng, max_roll_deg=180)
    n_sym = 8 if cols == rows else 4
    for p in poses:
        uv, _ = true_corners(board, PINHOLE_TRUTH, p)
        canon = [canonical_chessboard_order(_relabel(uv, cols, rows, k), cols, rows) for k in range(n_sym)]
        for c in canon[1:]:
            assert np.array_equal(c, canon[0])


def test_symmetric_board_calibration_identical_under_any_ordering():
    """A 7x7 board (8x8 squares) rolled through 360 degrees: each view's detections are given in
    a random symmetric relabeling; after canonicalisation the corner lists are identical, so the
    calibration is bit-identical (OpenCV runs single-threaded inside calibrate_camera)."""
    board = BoardSpec("chessboard", 7, 7, 0.03)
    rng = np.random.default_rng(2)
    poses = random_board_poses(board, PINHOLE_TRUTH, 12, rng, max_roll_deg=180)
    base, perm, raw = [], [], []
    for k, p in enumerate(poses):
        uv, _ = true_corners(board, PINHOLE_TRUTH, p)
        uv = uv + rng.normal(0, 0.2, uv.shape)
        ids = np.arange(49)
        base.append(Observation(f"v{k}", canonical_chessboard_order(uv, 7, 7), board_object_points(board), ids))
        shuffled = _relabel(uv, 7, 7, int(rng.integers(8)))
        raw.append(Observation(f"v{k}", shuffled, board_object_points(board), ids))
        perm.append(Observation(f"v{k}", canonical_chessboard_order(shuffled, 7, 7), board_object_points(board), ids))
    assert all(np.array_equal(a.corners, b.corners) for a, b in zip(base, perm))
    a = calibrate_camera(base, PINHOLE_TRUTH.size)
    b = calibrate_camera(perm, PINHOLE_TRUTH.size)
    assert np.array_equal(a.camera.params, b.camera.params)
    # Even without canonicalisation the intrinsics do not depend on the labeling (poses absorb it).
    c = calibrate_camera(raw, PINHOLE_TRUTH.size)
    np.testing.assert_allclose(a.camera.params, c.camera.params, rtol=1e-5, atol=1e-8)
    assert np.all(np.abs(a.camera.focal / PINHOLE_TRUTH.focal - 1) < 5e-3)


def test_outlier_views_and_corners_rejected_with_reasons():
    board = BoardSpec("chessboard", 9, 6, 0.03)
    obs, _ = synthetic_views(PINHOLE_TRUTH, board, 15, 0.2, seed=7)
    rng = np.random.default_rng(0)
    obs[3].corners = obs[3].corners + rng.normal(0, 4.0, obs[3].corners.shape)  # a blurred/misdetected view
    obs[5].corners[10] += [6.0, -5.0]  # one bad corner
    obs[8].corners[0] += [0.0, 8.0]
    res = calibrate_camera(obs, PINHOLE_TRUTH.size, CalibrationConfig(model="OPENCV"))
    assert [r.name for r in res.rejected_views] == ["view03"]
    assert "RMS" in res.rejected_views[0].reason or "corners" in res.rejected_views[0].reason
    bad = {(r.name, r.corner_id) for r in res.rejected_corners}
    assert {("view05", 10), ("view08", 0)} <= bad
    assert len(res.views) == 14
    assert np.all(np.abs(res.camera.focal / PINHOLE_TRUTH.focal - 1) < 5e-3)
    assert res.rms_px < 0.35


def test_too_few_views_message_lists_views():
    board = BoardSpec("chessboard", 9, 6, 0.03)
    obs, _ = synthetic_views(PINHOLE_TRUTH, board, 4, 0.2, seed=8)
    obs[0] = obs[0].subset(np.arange(54) < 4)
    obs[1] = obs[1].subset(np.arange(54) < 5)
    with pytest.raises(CalibrationError, match=r"(?s)only 2 usable view.*view00: only 4 corners"):
        calibrate_camera(obs, PINHOLE_TRUTH.size)


def test_uncertainty_map_and_coverage_advice():
    board = BoardSpec("chessboard", 9, 6, 0.03)
    # All boards in the left half: the right side must be flagged and be more uncertain.
    obs, _ = synthetic_views(PINHOLE_TRUTH, board, 12, 0.2, seed=9, fill=(0.3, 0.4))
    left = [o for o in obs if o.corners[:, 0].max() < 420]
    assert len(left) >= 4
    res = calibrate_camera(left, PINHOLE_TRUTH.size)
    unc = projection_uncertainty(res)
    s = unc.std_px
    assert np.all(np.isfinite(s))
    assert np.nanmax(s[:, -3:]) > 3 * unc.at_center()
    cov = coverage_map(res, uncertainty=unc)
    assert any("right" in a for a in cov.advice)


def test_uncertainty_matches_monte_carlo():
    """Predicted projection spread at the image centre and corner vs the spread of 30 re-noised
    calibrations (the mrcal check)."""
    board = BoardSpec("chessboard", 9, 6, 0.03)
    cam = Camera("PINHOLE", 640, 480, [400.0, 400.0, 319.5, 239.5])
    rng = np.random.default_rng(11)
    poses = random_board_poses(board, cam, 10, rng, max_tilt_deg=45)
    clean = [true_corners(board, cam, p)[0] for p in poses]
    P = board_object_points(board)

    def run(noise_rng):
        obs = [Observation(f"v{k}", uv + noise_rng.normal(0, 0.3, uv.shape), P, np.arange(len(P)))
               for k, uv in enumerate(clean)]
        return calibrate_camera(obs, cam.size, CalibrationConfig(model="PINHOLE", reject_outliers=False))

    ref = run(np.random.default_rng(0))
    unc = projection_uncertainty(ref, grid=(3, 3))
    pix = np.array([[unc.u[1], unc.v[1]], [unc.u[2], unc.v[2]]])
    depth = unc.distance
    rays = cam.unproject(pix)[0]
    pts = rays / rays[:, 2:] * depth
    qs = []
    for s in range(30):
        r = run(np.random.default_rng(100 + s))
        # mrcal: the point is fixed to the boards, i.e. moved with the mean pose change
        shift = np.zeros_like(pts)
        for vr, v0 in zip(r.views, ref.views):
            shift += (vr.cam_from_board @ v0.cam_from_board.inverse()).apply(pts) - pts
        qs.append(r.camera.project(pts + shift / len(r.views))[0])
    qs = np.array(qs)
    emp = np.sqrt(np.linalg.eigvalsh(np.einsum("sni,snj->nij", qs - qs.mean(0), qs - qs.mean(0)) / len(qs))[:, -1])
    pred = np.array([unc.std_px[1, 1], unc.std_px[2, 2]])
    assert np.all(emp < 2.0 * pred) and np.all(emp > 0.5 * pred)


def test_refine_pose_recovers_pose():
    board = BoardSpec("chessboard", 9, 6, 0.03)
    rng = np.random.default_rng(4)
    for cam in (PINHOLE_TRUTH, FISHEYE_TRUTH):
        p = random_board_poses(board, cam, 1, rng)[0]
        uv, _ = true_corners(board, cam, p)
        est, r = refine_cam_from_board(cam, board_object_points(board), uv)
        assert np.abs(r).max() < 1e-6
        assert np.allclose(est.translation, p.translation, atol=1e-7)


def test_auto_model_selection():
    board = BoardSpec("chessboard", 9, 6, 0.03)
    pin = Camera("PINHOLE", 640, 480, [400.0, 400.0, 319.5, 239.5])
    obs, _ = synthetic_views(pin, board, 12, 0.2, seed=12)
    res = calibrate_camera(obs, pin.size, CalibrationConfig(model="auto", auto_candidates=("PINHOLE", "OPENCV")))
    assert res.camera.model == "PINHOLE"
    distorted = Camera("OPENCV", 640, 480, [400.0, 400.0, 319.5, 239.5, -0.25, 0.08, 0.0, 0.0])
    obs, _ = synthetic_views(distorted, board, 12, 0.2, seed=12)
    res = calibrate_camera(obs, pin.size, CalibrationConfig(model="auto", auto_candidates=("PINHOLE", "OPENCV")))
    assert res.camera.model == "OPENCV"
    scores = {s.model: s.cv_rms_px for s in res.model_scores}
    assert scores["PINHOLE"] > 2 * scores["OPENCV"]


def test_auto_keeps_the_ordinary_model_when_fisheye_is_indistinguishable():
    """An ordinary 63-degree lens: OPENCV_FISHEYE's k1..k4 fit it too, and on this draw its
    cross-validated RMS is even a little lower (by far less than the fold-to-fold spread); the
    one-standard-error rule keeps OPENCV. The scores carry their spread into the report."""
    from calib.files import report_dict

    board = BoardSpec("chessboard", 9, 6, 0.03)
    lens = Camera("OPENCV", 640, 480, [522.0, 522.0, 319.5, 239.5, -0.08, 0.02, 0.0, 0.0])
    obs, _ = synthetic_views(lens, board, 15, 0.3, seed=5)
    res = calibrate_camera(obs, lens.size, CalibrationConfig(model="auto", auto_candidates=("OPENCV", "OPENCV_FISHEYE")))
    s = {x.model: x for x in res.model_scores}
    assert s["OPENCV_FISHEYE"].cv_rms_px < s["OPENCV"].cv_rms_px  # the case the old rule got wrong
    assert s["OPENCV"].cv_rms_px - s["OPENCV_FISHEYE"].cv_rms_px < s["OPENCV_FISHEYE"].cv_rms_se_px
    assert res.camera.model == "OPENCV"
    assert "one-standard-error" in res.model_rule and res.model_rule.endswith("OPENCV")
    for x in res.model_scores:
        assert len(x.fold_rms_px) == 5 and 0 < x.cv_rms_se_px < 0.05
        assert np.isclose(x.cv_rms_se_px, np.std(x.fold_rms_px, ddof=1) / np.sqrt(5))
    sel = report_dict(res)["model_selection"]
    assert sel["rule"] == res.model_rule
    assert all(len(e["fold_rms_px"]) == 5 and e["cv_rms_se_px"] > 0 for e in sel["scores"])


def test_auto_chooses_fisheye_for_a_fisheye_lens():
    board = BoardSpec("chessboard", 9, 6, 0.03)
    obs, _ = synthetic_views(FISHEYE_TRUTH, board, 15, 0.3, seed=5)
    res = calibrate_camera(obs, FISHEYE_TRUTH.size, CalibrationConfig(
        model="auto", auto_candidates=("OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE")))
    assert res.camera.model == "OPENCV_FISHEYE"
    s = {x.model: x for x in res.model_scores}
    for m in ("OPENCV", "FULL_OPENCV"):  # better by many standard errors, not by noise
        assert s[m].cv_rms_px > s["OPENCV_FISHEYE"].cv_rms_px + 10 * s["OPENCV_FISHEYE"].cv_rms_se_px


def test_pick_model_one_standard_error_rule():
    from calib.calibrate import ModelScore, pick_model

    def score(m, cv, se):
        return ModelScore(m, cv, cv, fold_rms_px=(cv,) * 5, cv_rms_se_px=se)

    # the richer model is better by less than one SE of the best: the simpler one
    assert pick_model([score("PINHOLE", 0.505, 0.01), score("OPENCV", 0.50, 0.01)])[0] == "PINHOLE"
    # better by more than one SE: the richer one
    assert pick_model([score("PINHOLE", 0.52, 0.01), score("OPENCV", 0.50, 0.01)])[0] == "OPENCV"
    # equal parameter counts: the conventional model unless fisheye is clearly better
    assert pick_model([score("OPENCV", 0.40001, 0.004), score("OPENCV_FISHEYE", 0.4, 0.004)])[0] == "OPENCV"
    assert pick_model([score("OPENCV", 0.9, 0.1), score("OPENCV_FISHEYE", 0.4, 0.004)])[0] == "OPENCV_FISHEYE"
    # a failed model is never chosen; all failed is an error naming them
    failed = ModelScore("PINHOLE", float("inf"), float("inf"), failed="diverged")
    assert pick_model([failed, score("OPENCV", 0.5, 0.01)])[0] == "OPENCV"
    with pytest.raises(CalibrationError, match="PINHOLE: diverged"):
        pick_model([failed])


@pytest.mark.parametrize("truth", [Camera("OPENCV", 640, 480, [500, 500, 319.5, 239.5, -0.1, 0.03, 0.0005, -0.0003]),
                                   FISHEYE_TRUTH], ids=["OPENCV", "OPENCV_FISHEYE"])
def test_stereo_rig_and_rectification(truth, tmp_path):
    import cv2

    from calib.files import read_camera as read_calibration
    from calib.files import write_opencv_yaml
    from calib.stereo import stereo_calibrate

    board = BoardSpec("chessboard", 9, 6, 0.03)
    right_cam = truth.with_params(truth.params + np.r_[3.0, 3.0, 2.0, -1.5, np.zeros(len(truth.params) - 4)])
    rig = Rigid3(matrix_from_axis_angle([0.01, -0.02, 0.005]), [-0.12, 0.002, 0.001])
    rng = np.random.default_rng(0)
    L, R = [], []
    for k, p in enumerate(random_board_poses(board, truth, 40, rng, max_tilt_deg=35)):
        ul, _ = true_corners(board, truth, p)
        ur, vr = true_corners(board, right_cam, rig @ p)
        if vr.all() and len(L) < 20:
            ids = np.arange(len(ul))
            L.append(Observation(f"l{k}", ul + rng.normal(0, 0.2, ul.shape), board_object_points(board), ids))
            R.append(Observation(f"r{k}", ur + rng.normal(0, 0.2, ur.shape), board_object_points(board), ids))
    cfg = CalibrationConfig(model=truth.model)
    cl = calibrate_camera(L, truth.size, cfg).camera
    cr = calibrate_camera(R, truth.size, cfg).camera
    for fix in (True, False):
        st = stereo_calibrate(L, R, cl, cr, fix_intrinsics=fix)
        assert abs(st.baseline / np.linalg.norm(rig.translation) - 1) < 0.01
        ang = np.degrees(np.arccos(np.clip((np.trace(st.right_from_left.rotation @ rig.rotation.T) - 1) / 2, -1, 1)))
        # Each camera's principal-point error (~1 px of 500 here) is nearly a camera rotation, so
        # the rig rotation is known to ~0.1-0.3 degrees; rectification absorbs it (next check).
        assert ang < 0.5
        # two images with 0.2 px noise each: vertical disparity RMS ~ 0.28 px
        assert st.rectified_vertical_rms_px < 0.45
    path = write_opencv_yaml(tmp_path / "stereo.yaml", rig=st)
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    for key in ("K1", "D1", "K2", "D2", "R", "T", "E", "F", "R1", "R2", "P1", "P2", "Q"):
        assert not fs.getNode(key).empty() and fs.getNode(key).mat() is not None, key
    np.testing.assert_allclose(fs.getNode("T").mat().ravel(), st.right_from_left.translation)
    fs.release()
    back = read_calibration(path, which="right")
    assert back.allclose(st.right, rtol=1e-12, atol=1e-12)


def test_calib_imports_stay_light():
    code = ("import sys, calib, calib.boards, calib.calibrate, calib.calibrate_images, calib.stereo, calib.stereo_select,"
            " calib.files, calib.pictures;"
            "bad=[m for m in ('cv2','matplotlib','torch','recon') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_parse_board_spec():
    assert parse_board_spec("chessboard:9x6:0.025") == BoardSpec("chessboard", 9, 6, 0.025)
    assert parse_board_spec("chessboard:auto").auto_size
    b = parse_board_spec("charuco:7x5:0.04:0.03:5x5_100")
    assert (b.cols, b.rows, b.dictionary) == (7, 5, "DICT_5X5_100")
    assert parse_board_spec("circles:4x11:0.02").num_points == 44
    for bad, msg in [("chessboard:9y6", "COLSxROWS"), ("charuco:7x5:0.04", "MARKER"), ("hexboard:3x3", "unknown kind"),
                     ("charuco:7x5:0.04:0.05", "marker"), ("chessboard:9x6:-1", "square")]:
        with pytest.raises(ValueError, match=msg):
            parse_board_spec(bad)


def test_stereo_symmetric_labels_aligned():
    """A 7x7 board: the right images' labels are rotated at random (as a per-image rule may do);
    align_symmetric_labels restores agreement and the rig is recovered."""
    from calib.boards import canonical_chessboard_order
    from calib.stereo import align_symmetric_labels, stereo_calibrate

    board = BoardSpec("chessboard", 7, 7, 0.03)
    rig = Rigid3(matrix_from_axis_angle([0.0, -0.03, 0.0]), [-0.1, 0.0, 0.0])
    rng = np.random.default_rng(3)
    L, R = [], []
    P = board_object_points(board)
    for k, p in enumerate(random_board_poses(board, PINHOLE_TRUTH, 40, rng, max_tilt_deg=30, fill=(0.35, 0.5))):
        ul, _ = true_corners(board, PINHOLE_TRUTH, p)
        ur, vr = true_corners(board, PINHOLE_TRUTH, rig @ p)
        if vr.all() and len(L) < 12:
            ids = np.arange(49)
            L.append(Observation(f"l{k}", canonical_chessboard_order(ul + rng.normal(0, 0.1, ul.shape), 7, 7), P, ids))
            g = (ur + rng.normal(0, 0.1, ur.shape)).reshape(7, 7, 2)
            g = [g, g[::-1, ::-1], g.transpose(1, 0, 2)[::-1], g.transpose(1, 0, 2)[:, ::-1]][int(rng.integers(4))]
            R.append(Observation(f"r{k}", g.reshape(-1, 2), P, ids))
    assert len(L) >= 8
    _, changed = align_symmetric_labels(L, R, PINHOLE_TRUTH, PINHOLE_TRUTH, 7, 7)
    assert changed  # some were rotated
    st = stereo_calibrate(L, R, PINHOLE_TRUTH, PINHOLE_TRUTH, symmetric_grid=(7, 7))
    assert abs(st.baseline - 0.1) < 1e-3 and st.rectified_vertical_rms_px < 0.3
