"""Our bundle adjuster (recon.ba): analytic Jacobians, recovery of known truth, robust losses,
fixed intrinsics, gauge, the torch backend and the BAL reader/writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calib import Sim3, rotation_angle_deg
from recon.ba import BAOptions, BAProblem, bundle_adjust, evaluate_cost, loss_rho
from recon.ba.bal import BAL_FLIP, read_bal, write_bal
from recon.ba.solver import _apply_step, _Evaluator, _Layout
from recon.ba.synthetic import perturb_problem, synthetic_problem

DATA = Path(__file__).parent / "data" / "ba"


def _align_error(est: BAProblem, gt: BAProblem):
    """(max rotation error deg, max centre error / scene extent) after Sim3 alignment."""
    c_est = -np.einsum("nji,nj->ni", est.rotations, est.translations)
    c_gt = -np.einsum("nji,nj->ni", gt.rotations, gt.translations)
    s = Sim3.align(c_est, c_gt)
    rot = rotation_angle_deg(est.rotations @ s.rotation.T @ np.transpose(gt.rotations, (0, 2, 1))).max()
    extent = np.ptp(c_gt, axis=0).max()
    return rot, np.linalg.norm(s.apply(c_est) - c_gt, axis=1).max() / extent


@pytest.mark.parametrize("model", ["SIMPLE_RADIAL", "OPENCV"])
def test_jacobians_match_finite_differences(model):
    p = perturb_problem(synthetic_problem(4, 20, model=model, seed=2))
    p.intrinsics_free = [np.ones(c.spec.num_params, dtype=bool) for c in p.cameras]
    layout = _Layout(p, "none")
    ev = _Evaluator(p, layout, BAOptions())
    res, valid, Jc, Jx = ev.residuals(p, need_jac=True)
    assert valid.all()
    rng = np.random.default_rng(0)
    for _ in range(6):  # random directions in camera-side and point space
        dc = rng.standard_normal(layout.Dc) * 1e-6
        dc[6 * p.num_images:] *= np.abs(np.concatenate([c.params for c in p.cameras])) + 1e-3
        dp = rng.standard_normal(p.points.shape) * 1e-6
        r_plus, *_ = ev.residuals(_apply_step(p, layout, dc, dp), need_jac=False)
        r_minus, *_ = ev.residuals(_apply_step(p, layout, -dc, -dp), need_jac=False)
        fd = (r_plus - r_minus) / 2
        lin = np.einsum("mkl,ml->mk", Jc, dc[layout.idx]) + np.einsum("mki,mi->mk", Jx, dp[p.obs_point])
        np.testing.assert_allclose(lin, fd, rtol=1e-5, atol=1e-9 * np.abs(fd).max() + 1e-12)


def test_recovers_truth_from_noise_free_observations():
    gt = synthetic_problem(8, 300, seed=1, noise_px=0.0)
    start = perturb_problem(gt, rotation_deg=0.5, translation=0.05, point=0.05, focal_rel=0.02)
    assert evaluate_cost(start) > 1e3
    r = bundle_adjust(start, BAOptions(backend="numpy"))
    assert r.converged, r.termination
    assert r.final_cost < 1e-12 * r.initial_cost
    rot, centre = _align_error(r.problem, gt)
    assert rot < 1e-6 and centre < 1e-8
    np.testing.assert_allclose(r.problem.cameras[0].params, gt.cameras[0].params, rtol=1e-7, atol=1e-9)
    # the input problem is left untouched
    assert evaluate_cost(start) == pytest.approx(r.initial_cost)


@pytest.mark.parametrize("solver", ["dense", "sparse", "pcg"])
def test_linear_solvers_agree(solver):
    start = perturb_problem(synthetic_problem(8, 200, seed=3))
    ref = bundle_adjust(start, BAOptions(linear_solver="dense"))
    r = bundle_adjust(start, BAOptions(linear_solver=solver))
    assert r.final_cost == pytest.approx(ref.final_cost, rel=1e-9)
    np.testing.assert_allclose(r.problem.points, ref.problem.points, atol=1e-6)


@pytest.mark.parametrize("loss", ["trivial", "huber"])
def test_pair_block_and_sparse_product_schur_paths_agree(monkeypatch, loss):
    """Problems whose per-image-pair blocks would not fit in memory use the scipy sparse-product
    Schur complement instead: both paths reach the same minimum and the same points."""
    from recon.ba import solver as ba_solver

    start = perturb_problem(synthetic_problem(8, 200, seed=4))
    opts = BAOptions(loss=loss, backend="numpy")
    ref = bundle_adjust(start, opts)
    monkeypatch.setattr(ba_solver._NumpySolver, "MAX_PAIR_BYTES", 0)
    r = bundle_adjust(start, opts)
    assert r.final_cost == pytest.approx(ref.final_cost, rel=1e-9)
    assert r.iterations == ref.iterations
    np.testing.assert_allclose(r.problem.points, ref.problem.points, atol=1e-6)


def test_losses_and_irls_weights():
    s = np.array([0.0, 0.25, 1.0, 4.0, 100.0])
    for loss in ("trivial", "huber", "cauchy", "soft_l1"):
        rho, drho = loss_rho(loss, 1.0, s)
        h = 1e-6
        fd = (loss_rho(loss, 1.0, s + h)[0] - loss_rho(loss, 1.0, np.maximum(s - h, 0))[0]) / (
            s + h - np.maximum(s - h, 0))
        np.testing.assert_allclose(drho, fd, rtol=1e-4)
        assert rho[0] == 0 and np.all(np.diff(rho) > 0)
    # a robust loss ignores gross outliers that wreck the least-squares solution
    gt = synthetic_problem(8, 300, seed=4, noise_px=0.3)
    bad = gt.copy()
    rng = np.random.default_rng(0)
    out = rng.choice(bad.num_observations, bad.num_observations // 20, replace=False)
    bad.obs_uv[out] += rng.uniform(-60, 60, (len(out), 2))
    start = perturb_problem(bad)
    robust = bundle_adjust(start, BAOptions(loss="cauchy", loss_scale=1.0))
    plain = bundle_adjust(start, BAOptions(loss="trivial"))
    assert _align_error(robust.problem, gt)[1] < 0.3 * _align_error(plain.problem, gt)[1]
    assert abs(robust.problem.cameras[0].params[0] / gt.cameras[0].params[0] - 1) < 2e-3


def test_fixed_intrinsics_and_poses_stay_fixed():
    start = perturb_problem(synthetic_problem(6, 150, seed=5))
    start.intrinsics_free = [np.zeros(c.spec.num_params, dtype=bool) for c in start.cameras]
    start.pose_fixed[[1, 4]] = True
    start.point_fixed[:10] = True
    r = bundle_adjust(start, BAOptions(gauge="none"))
    assert r.final_cost < 0.1 * r.initial_cost
    np.testing.assert_array_equal(r.problem.cameras[0].params, start.cameras[0].params)
    for i in (1, 4):
        np.testing.assert_array_equal(r.problem.rotations[i], start.rotations[i])
        np.testing.assert_array_equal(r.problem.translations[i], start.translations[i])
    np.testing.assert_array_equal(r.problem.points[:10], start.points[:10])


def test_two_cams_gauge_holds_first_pose_and_a_translation_component():
    start = perturb_problem(synthetic_problem(6, 150, seed=6))
    r = bundle_adjust(start, BAOptions(gauge="two_cams"))
    np.testing.assert_array_equal(r.problem.rotations[0], start.rotations[0])
    np.testing.assert_array_equal(r.problem.translations[0], start.translations[0])
    same = r.problem.translations[1:] == start.translations[1:]
    assert same.sum() == 1  # exactly one translation component of one other image (the scale)


def test_torch_backend_matches_numpy_on_cpu():
    start = perturb_problem(synthetic_problem(5, 60, seed=7))
    a = bundle_adjust(start, BAOptions(backend="numpy", loss="huber"))
    b = bundle_adjust(start, BAOptions(backend="torch", device="cpu", loss="huber"))
    assert b.backend == "torch"
    assert b.final_cost == pytest.approx(a.final_cost, rel=1e-8)
    np.testing.assert_allclose(b.problem.points, a.problem.points, atol=1e-6)
    np.testing.assert_allclose(b.problem.cameras[0].params, a.problem.cameras[0].params, rtol=1e-8)


@pytest.mark.gpu
def test_torch_backend_on_cuda_matches_numpy():
    start = perturb_problem(synthetic_problem(20, 3000, seed=8))
    a = bundle_adjust(start, BAOptions(backend="numpy"))
    b = bundle_adjust(start, BAOptions(backend="torch", device="cuda"))
    assert b.final_cost == pytest.approx(a.final_cost, rel=1e-6)
    np.testing.assert_allclose(b.problem.points, a.problem.points, atol=1e-5)


def test_input_checks():
    p = synthetic_problem(3, 10, seed=0)
    with pytest.raises(ValueError, match="loss"):
        BAOptions(loss="tukey")
    with pytest.raises(TypeError, match="problem"):
        bundle_adjust("not a problem")
    with pytest.raises(ValueError, match="obs_point"):
        BAProblem(p.cameras, p.image_camera, p.rotations, p.translations, p.points, p.obs_image,
                  p.obs_point + 1000, p.obs_uv)


# ---- BAL ----------------------------------------------------------------------------------

def _bal_project_reference(path: Path):
    """BAL's own projection, straight from its documentation, on the raw file numbers."""
    tok = path.read_text().split()
    nc, npt, nobs = map(int, tok[:3])
    v = np.array(tok[3:], dtype=float)
    obs = v[:4 * nobs].reshape(-1, 4)
    cams = v[4 * nobs:4 * nobs + 9 * nc].reshape(-1, 9)
    pts = v[4 * nobs + 9 * nc:].reshape(-1, 3)
    out = []
    for ci, pi, _, _ in obs:
        c = cams[int(ci)]
        r = c[:3]
        th = np.linalg.norm(r)
        k = r / th
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        R = np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * K @ K
        P = R @ pts[int(pi)] + c[3:6]
        p = -P[:2] / P[2]
        n2 = p @ p
        out.append(c[6] * (1 + c[7] * n2 + c[8] * n2 * n2) * p)
    return np.array(out), obs[:, 2:]


def test_bal_convention_matches_bal_projection():
    path = DATA / "synthetic-6-60.bal"
    prob = read_bal(path)
    assert (prob.num_images, prob.num_points, prob.num_observations) == (6, 60, 230)
    assert all(c.model == "RADIAL" for c in prob.cameras)
    pred_bal, obs_bal = _bal_project_reference(path)
    res, valid = prob.reprojection_residuals()
    assert valid.all()
    # our residual (projected - observed, pixels, y down) == BAL's with y flipped
    np.testing.assert_allclose(res[:, 0], pred_bal[:, 0] - obs_bal[:, 0], atol=1e-9)
    np.testing.assert_allclose(res[:, 1], -(pred_bal[:, 1] - obs_bal[:, 1]), atol=1e-9)
    np.testing.assert_allclose(np.diag(BAL_FLIP), [1, -1, -1])


def test_bal_round_trip(tmp_path):
    a = read_bal(DATA / "synthetic-6-60.bal")
    write_bal(tmp_path / "b.bal", a)
    b = read_bal(tmp_path / "b.bal")
    np.testing.assert_allclose(b.rotations, a.rotations, atol=1e-14)
    np.testing.assert_allclose(b.translations, a.translations, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(b.points, a.points, rtol=1e-15)
    np.testing.assert_allclose(b.obs_uv, a.obs_uv, rtol=1e-15, atol=1e-12)
    for ca, cb in zip(a.cameras, b.cameras):
        assert ca.allclose(cb, rtol=1e-15, atol=1e-12)


def test_bal_file_adjusts_to_zero_cost():
    prob = read_bal(DATA / "synthetic-6-60.bal")  # noise-free observations, perturbed parameters
    r = bundle_adjust(prob, BAOptions())
    assert r.initial_cost > 100
    assert r.final_cost < 1e-10 * r.initial_cost, (r.initial_cost, r.final_cost, r.termination)


def test_bal_reader_rejects_broken_files(tmp_path):
    from recon.errors import FormatError

    bad = tmp_path / "bad.bal"
    bad.write_text("2 3 4\n0 0 1.0 2.0\n")
    with pytest.raises(FormatError, match="truncated"):
        read_bal(bad)
    bad.write_text("hello\n")
    with pytest.raises(FormatError, match="header"):
        read_bal(bad)


# ---- CLI -----------------------------------------------------------------------------------

def test_cli_ba_on_bal_and_colmap_model(tmp_path):
    import json

    from recon.ba.synthetic import reconstruction_from_problem
    from recon.cli import main
    from recon.io import read_colmap, write_colmap

    assert main(["ba", str(DATA / "synthetic-6-60.bal"), "-o", str(tmp_path / "bal")]) == 0
    rep = json.loads((tmp_path / "bal" / "report.json").read_text())
    assert rep["format"] == "bal" and rep["final_cost"] < 1e-10 * rep["initial_cost"]
    assert read_bal(tmp_path / "bal" / "problem.bal").num_observations == 230

    gt = synthetic_problem(6, 120, seed=9, noise_px=0.0)
    write_colmap(reconstruction_from_problem(perturb_problem(gt)), tmp_path / "model")
    assert main(["ba", str(tmp_path / "model"), "-o", str(tmp_path / "out"), "--loss", "huber"]) == 0
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["format"] == "colmap" and rep["converged"]
    assert rep["final_cost"] < 1e-8 * rep["initial_cost"]
    refined = read_colmap(tmp_path / "out")
    np.testing.assert_allclose(refined.cameras[1].params, gt.cameras[0].params, rtol=1e-6)
    assert main(["ba", str(tmp_path / "nothing"), "-o", str(tmp_path / "x")]) == 2


def test_adjust_model_library_recovers_a_perturbed_model(tmp_path):
    """recon.ba.adjust_model (the library of `recon ba`): a perturbed noise-free COLMAP model is
    brought back to the truth; fixed intrinsics stay bit-identical; the typed result agrees with
    the report."""
    import json

    from recon.ba import AdjustModelOptions, adjust_model
    from recon.ba.synthetic import reconstruction_from_problem
    from recon.io import read_colmap, write_colmap

    gt = synthetic_problem(6, 120, seed=9, noise_px=0.0)
    write_colmap(reconstruction_from_problem(perturb_problem(gt)), tmp_path / "model")
    res = adjust_model(tmp_path / "model", tmp_path / "out")
    assert res.format == "colmap" and res.solve.converged and res.final_rms_px < 1e-4 < res.initial_rms_px
    refined = read_colmap(tmp_path / "out")
    np.testing.assert_allclose(refined.cameras[1].params, gt.cameras[0].params, rtol=1e-6)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["final_rms_px"] == res.final_rms_px

    before = read_colmap(tmp_path / "model").cameras[1].params.copy()
    adjust_model(tmp_path / "model", tmp_path / "fixed", AdjustModelOptions(fix_intrinsics=True))
    np.testing.assert_array_equal(read_colmap(tmp_path / "fixed").cameras[1].params, before)
    with pytest.raises(ValueError, match="MODEL"):
        adjust_model(tmp_path / "nothing", tmp_path / "x")
