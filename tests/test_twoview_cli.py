"""`recon twoview` and `recon stereo` end to end on rendered images with known geometry,
including the bad-input verdicts and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _twoview_scenes import PlaneBoxScene, pinhole

from calib import Rigid3, matrix_from_axis_angle, rotation_angle_deg
from recon.cli import main


def _write(path, img):
    from recon.io import write_image

    write_image(path, img)
    return str(path)


def _mono_yaml(path, cam):
    import cv2

    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", cam.width)
    fs.write("image_height", cam.height)
    fs.write("camera_model", cam.model)
    fs.write("K", cam.K)
    fs.write("D", np.zeros((1, 4)))
    fs.release()
    return str(path)


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tv")
    cam = pinhole()
    scene = PlaneBoxScene(seed=5, slope=0.4)
    T2 = Rigid3(matrix_from_axis_angle(np.radians([0.5, -4.0, 1.0])), np.array([-0.6, 0.05, 0.1]))
    a, _, _ = scene.render(cam, Rigid3.identity())
    b, _, _ = scene.render(cam, T2)
    return {"dir": d, "cam": cam, "T2": T2, "a": _write(d / "a.png", a), "b": _write(d / "b.png", b),
            "calib": _mono_yaml(d / "cam.yaml", cam), "img_a": a}


def test_twoview_cli_general(scene_files, tmp_path):
    f = scene_files
    rc = main(["twoview", f["a"], f["b"], "--calib", f["calib"], "-o", str(tmp_path / "out")])
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rc == 0 and rep["verdict"] == "general" and rep["pose_reliable"]
    R = np.array(rep["cam2_from_cam1"]["R"])
    t = np.array(rep["cam2_from_cam1"]["t_direction"])
    T2 = f["T2"]
    assert rotation_angle_deg(R @ T2.rotation.T) < 0.2
    t_true = T2.translation / np.linalg.norm(T2.translation)
    assert np.degrees(np.arccos(np.clip(t @ t_true, -1, 1))) < 2.0
    assert rep["num_inliers"] > 200 and rep["triangulated_points"] > 200
    assert rep["median_sampson_px"] < 0.5
    for name in ("matches.png", "epipolar.png", "points.ply"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    from recon.io import read_ply

    cloud = read_ply(tmp_path / "out" / "points.ply")
    assert cloud.xyz.shape[0] == rep["triangulated_points"] and cloud.rgb is not None


def test_twoview_cli_identical_and_textureless(scene_files, tmp_path):
    f = scene_files
    rc = main(["twoview", f["a"], f["a"], "-o", str(tmp_path / "same")])
    rep = json.loads((tmp_path / "same" / "report.json").read_text())
    assert rc == 1 and rep["verdict"] == "identical" and "cam2_from_cam1" not in rep
    blank = _write(tmp_path / "blank.png", np.full((120, 160, 3), 128, np.uint8))
    rc = main(["twoview", blank, blank, "-o", str(tmp_path / "blank")])
    rep = json.loads((tmp_path / "blank" / "report.json").read_text())
    assert rc == 1 and rep["verdict"] == "too_few_matches"


def test_twoview_cli_size_mismatch(scene_files, tmp_path):
    f = scene_files
    cropped = _write(tmp_path / "crop.png", f["img_a"][:, :400])
    rc = main(["twoview", cropped, f["b"], "--calib", f["calib"], "-o", str(tmp_path / "bad")])
    rep = json.loads((tmp_path / "bad" / "report.json").read_text())
    assert rc == 2 and rep["verdict"] == "bad_input" and "calibration expects" in rep["message"]


@pytest.fixture(scope="module")
def stereo_files(tmp_path_factory):
    from calib import StereoRig, write_opencv_yaml

    d = tmp_path_factory.mktemp("st")
    cam = pinhole()
    right_from_left = Rigid3(matrix_from_axis_angle(np.radians([0.2, -1.0, 0.3])), np.array([-0.2, 0.0, 0.0]))
    scene = PlaneBoxScene(seed=7)
    L, zl, _ = scene.render(cam, Rigid3.identity())
    R, _, _ = scene.render(cam, right_from_left)
    calib = write_opencv_yaml(d / "stereo.yaml", rig=StereoRig(cam, cam, right_from_left))
    return {"left": _write(d / "l.png", L), "right": _write(d / "r.png", R), "calib": str(calib), "zl": zl,
            "L": L}


def test_stereo_cli(stereo_files, tmp_path):
    f = stereo_files
    out = tmp_path / "depth"
    rc = main(["stereo", f["left"], f["right"], "--calib", f["calib"], "-o", str(out)])
    rep = json.loads((out / "report.json").read_text())
    assert rc == 0 and rep["verdict"] == "ok" and rep["valid_fraction"] > 0.7
    assert abs(rep["baseline"] - 0.2) < 1e-6
    z = np.load(out / "depth.npy")
    assert z.shape == (360, 480)
    truth = rep["depth_percentiles"]["p50"]
    assert 3.0 < truth < 8.0  # the scene spans 3 m (box) to ~7 m (slanted wall)
    from recon.io import read_ply

    cloud = read_ply(out / "points.ply")
    assert cloud.xyz.shape[0] == rep["num_points"] and cloud.rgb.shape == (rep["num_points"], 3)
    for name in ("disparity.png", "depth.png", "depth_sigma.png", "rectified.png"):
        assert (out / name).stat().st_size > 1000


def test_stereo_cli_bad_sizes(stereo_files, tmp_path):
    f = stereo_files
    small = _write(tmp_path / "small.png", f["L"][:300])
    rc = main(["stereo", small, f["right"], "--calib", f["calib"], "-o", str(tmp_path / "bad")])
    rep = json.loads((tmp_path / "bad" / "report.json").read_text())
    assert rc == 2 and rep["verdict"] == "bad_input" and "differ" in rep["message"]


def test_help_is_light():
    import subprocess
    import sys

    code = ("import sys; from recon.cli import build_parser; build_parser(); "
            "print(','.join(m for m in ('cv2', 'scipy', 'torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"heavy modules imported by the CLI parser: {out}"
