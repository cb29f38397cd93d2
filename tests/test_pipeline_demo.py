"""The demo pipeline: its accuracy metric against known transforms, and (slow) the whole run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calib import Rigid3, Sim3, matrix_from_axis_angle
from recon.pipeline.demo import DemoConfig, camera_accuracy, run_demo


def _poses(n=12, seed=0):
    from recon.synth import orbit

    return {f"{i:04d}.png": p for i, p in enumerate(orbit(n, radius=3.0))}


def test_camera_accuracy_is_zero_for_a_similar_copy():
    gt = _poses()
    # The same cameras expressed in another world frame: est_world = Sim3(s, R, t) @ gt_world.
    est_from_gt = Sim3(2.5, matrix_from_axis_angle([0.3, -0.2, 0.9]), np.array([1.0, -4.0, 0.5]))
    est = {n: est_from_gt.transform_pose(T) for n, T in gt.items()}
    acc = camera_accuracy(gt, est)
    assert acc["images_compared"] == len(gt)
    assert acc["rotation_error_deg_max"] < 1e-9
    assert acc["centre_error_rel_max"] < 1e-12
    assert acc["sim3_scale"] == pytest.approx(1 / 2.5, rel=1e-12)


def test_camera_accuracy_measures_a_known_rotation_error():
    gt = _poses()
    name = "0003.png"
    T = gt[name]
    est = dict(gt)
    est[name] = Rigid3(matrix_from_axis_angle([0.0, np.radians(0.5), 0.0]) @ T.rotation, T.translation)
    acc = camera_accuracy(gt, est)
    # The centre moves too (t is kept while R turns), so only the rotation error is exact.
    assert acc["rotation_error_deg_max"] == pytest.approx(0.5, abs=0.05)


def test_camera_accuracy_needs_three_common_images():
    gt = _poses()
    with pytest.raises(ValueError, match="est_cams_from_world"):
        camera_accuracy(gt, {"0000.png": gt["0000.png"]})


def test_demo_config_refuses_bad_options():
    with pytest.raises(ValueError, match="views"):
        DemoConfig(views=3).validate()
    with pytest.raises(ValueError, match="train_scale"):
        DemoConfig(train_scale=0).validate()


@pytest.mark.slow
def test_demo_end_to_end_recovers_the_truth(tmp_path):
    """`recon demo` on the built-in scene: every view registered, cameras close to the truth,
    splatting clearly above an untrained model, and the outputs other tools read."""
    result = run_demo(tmp_path, DemoConfig(views=24, width=320, height=240, train_steps=300), progress=False)
    r = json.loads((tmp_path / "report.json").read_text())
    assert r["status"] == "ok", r
    assert r["sfm"]["images_registered"] == 24
    assert r["sfm_accuracy"]["rotation_error_deg_max"] < 0.2
    assert r["sfm_accuracy"]["centre_error_rel_max"] < 0.005
    assert r["sfm_accuracy"]["focal_error_rel"] < 0.01
    assert r["splat"]["psnr_test"] > 17.0
    for rel in ("sfm/sparse/0/cameras.bin", "sfm/transforms.json", "splat/splat.ply", "summary.png"):
        assert (tmp_path / rel).is_file(), rel
    assert result.report["status"] == "ok"
