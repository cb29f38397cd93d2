"""The library entry points behind `recon twoview` / `recon stereo` (analyze_pair, stereo_pair:
typed options checked by name, typed results with to_json) and the reliability rule of
two_view_geometry (independent hypotheses must agree) on synthetic pairs with known truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_twoview import make_pair
from test_twoview_cli import scene_files, stereo_files  # noqa: F401  (module fixtures)

from calib import rotation_angle_deg
from recon.stereo import StereoPairOptions, stereo_pair
from recon.twoview import PairOptions, TwoViewConfig, analyze_pair, two_view_geometry


def test_analyze_pair_library(scene_files):  # noqa: F811
    f = scene_files
    res = analyze_pair(f["a"], f["b"], None, PairOptions(calib=f["calib"]))
    assert res.exit_code == 0 and res.verdict == "general" and res.outputs == []
    T = res.geometry.cam2_from_cam1
    assert rotation_angle_deg(T.rotation @ f["T2"].rotation.T) < 0.2
    rep = json.loads(json.dumps(res.to_json(), allow_nan=False))
    assert rep["num_inliers"] == int(res.geometry.inliers.sum()) > 200


@pytest.mark.parametrize("bad, name", [({"ratio": 1.5}, "ratio"), ({"features": "surf"}, "features"),
                                       ({"method": "magic"}, "method"), ({"max_image_size": -1}, "max_image_size"),
                                       ({"focal_px": 0.0}, "focal_px"), ({"threshold_px": -1.0}, "threshold_px")])
def test_pair_options_checked(bad, name):
    with pytest.raises(ValueError, match=name):
        PairOptions(**bad)


@pytest.mark.parametrize("bad, name", [({"mode": "bm"}, "mode"), ({"block_size": 4}, "block_size"),
                                       ({"alpha": 2.0}, "alpha"), ({"max_depth": -1.0}, "max_depth")])
def test_stereo_pair_options_checked(bad, name):
    with pytest.raises(ValueError, match=name):
        StereoPairOptions(**bad)


def test_stereo_pair_uncalibrated(stereo_files, tmp_path):  # noqa: F811
    """Without a calibration the pair is rectified from the one F estimator: disparity only."""
    f = stereo_files
    res = stereo_pair(f["left"], f["right"], tmp_path / "u")
    assert res.exit_code == 0 and res.report["calibrated"] is False and res.report["valid_fraction"] > 0.3
    assert res.output.depth is None and (tmp_path / "u" / "disparity.npy").exists()


def test_stereo_pair_uncalibrated_no_matches_message(tmp_path):
    from recon.io import write_image

    write_image(tmp_path / "g.png", np.full((120, 160, 3), 128, np.uint8))
    res = stereo_pair(tmp_path / "g.png", tmp_path / "g.png", tmp_path / "o")
    assert res.exit_code == 1 and res.verdict == "no_depth"
    assert "{" not in res.report["message"] and "among 0 matches" in res.report["message"]


def test_reliable_never_wrong_on_synthetic():
    """Over general (30 % and 50 % outliers) and pure-plane pairs, 0.5 px noise: every pair
    flagged rotation_reliable is within 0.5 deg of the truth, no pure-plane pair is
    pose_reliable, and the rule does flag some pairs."""
    worst, flagged = 0.0, 0
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        for scene, out in (("general", 0.3), ("planar", 0.2), ("general", 0.5)):
            u1, u2, cam1, cam2, T, _ = make_pair(rng, n=600, scene=scene, noise=0.5, outlier_frac=out)
            geo = two_view_geometry(u1, u2, cam1, cam2, config=TwoViewConfig(threshold_px=3.0, seed=seed))
            d = geo.degeneracy
            if scene == "planar":
                assert not d.pose_reliable
            if d.rotation_reliable:
                flagged += 1
                worst = max(worst, rotation_angle_deg(geo.cam2_from_cam1.rotation @ T.rotation.T))
            assert np.isfinite(d.rotation_sigma_deg) or not d.rotation_reliable
    assert worst <= 0.5, worst
    assert flagged >= 3  # the rule is not "never reliable"


def test_disagreeing_hypotheses_make_a_pair_unreliable(monkeypatch):
    """The flags come from agreement: if an independent re-estimate lands elsewhere, the pair is
    not reliable and the reported sigma includes the spread, whatever the curvature says."""
    import recon.twoview._pipeline as pl

    rng = np.random.default_rng(3)
    u1, u2, cam1, cam2, _T, _ = make_pair(rng, n=800, noise=0.3, outlier_frac=0.1)
    cfg = TwoViewConfig(threshold_px=1.5)
    base = two_view_geometry(u1, u2, cam1, cam2, config=cfg).degeneracy
    assert base.rotation_reliable
    monkeypatch.setattr(pl, "_hypothesis_spread", lambda *a, **k: (3.0, 10.0))
    d = two_view_geometry(u1, u2, cam1, cam2, config=cfg).degeneracy
    assert not d.rotation_reliable and not d.pose_reliable and d.rotation_sigma_deg >= 3.0
