"""calib.files: every camera model through every writer, back through the one reader, exactly."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from calib import MODELS, CalibFileError, Camera, Rigid3, StereoRig, matrix_from_axis_angle
from calib.files import (
    camera_json,
    colmap_camera_line,
    parse_colmap_camera_line,
    read_camera,
    read_camera_pair,
    read_rig,
    rig_json,
    write_opencv_yaml,
)

# One camera per COLMAP model, every distortion parameter non-zero (so a reader that drops or
# re-orders one fails), principal points off-centre with fractional parts.
EXAMPLES = {
    "SIMPLE_PINHOLE": [410.0, 319.3, 241.7],
    "PINHOLE": [410.0, 412.5, 319.3, 241.7],
    "SIMPLE_RADIAL": [410.0, 319.3, 241.7, -0.071],
    "RADIAL": [410.0, 319.3, 241.7, -0.071, 0.013],
    "OPENCV": [410.0, 412.5, 319.3, 241.7, -0.071, 0.013, 4e-4, -3e-4],
    "OPENCV_FISHEYE": [300.0, 300.5, 318.7, 241.1, 0.05, -0.02, 0.004, -0.001],
    "FULL_OPENCV": [410.0, 412.5, 319.3, 241.7, 0.1, -0.05, 1e-3, -2e-3, 0.01, 0.2, 0.01, 0.001],
    "FOV": [410.0, 412.5, 319.3, 241.7, 0.9],
    "SIMPLE_RADIAL_FISHEYE": [300.0, 318.7, 241.1, 0.04],
    "RADIAL_FISHEYE": [300.0, 318.7, 241.1, 0.04, -0.01],
    "THIN_PRISM_FISHEYE": [300.0, 300.5, 318.7, 241.1, 0.05, -0.02, 1e-3, -1e-3, 0.004, -0.001, 1e-4, 2e-4],
    "RAD_TAN_THIN_PRISM_FISHEYE": [300.0, 300.5, 318.7, 241.1] + [0.01 * (i + 1) for i in range(12)],
}
CAMERAS = {m: Camera(m, 640, 480, p) for m, p in EXAMPLES.items()}
# OpenCV's K + D can express these (the others have no OpenCV distortion vector)
OPENCV_MODELS = ["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE",
                 "FULL_OPENCV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"]
RIGHT_FROM_LEFT = Rigid3(matrix_from_axis_angle(np.radians([0.4, -1.2, 0.3])), np.array([-0.12, 0.003, 0.001]))


def test_examples_cover_every_model():
    assert set(EXAMPLES) == set(MODELS)


def _same(a: Camera, b: Camera) -> bool:
    return a.model == b.model and a.size == b.size and np.allclose(a.params, b.params, rtol=1e-14, atol=1e-12)


@pytest.mark.parametrize("model", list(MODELS))
def test_colmap_line_round_trip(model, tmp_path):
    cam = CAMERAS[model]
    line = colmap_camera_line(cam, 3)
    tok = line.split()
    assert tok[:4] == ["3", model, "640", "480"]
    i = 5 if cam.spec.single_focal else 6  # COLMAP's corner convention: cx + 0.5
    assert float(tok[i]) == cam.principal_point[0] + 0.5
    cid, back = parse_colmap_camera_line(line)
    assert cid == 3 and _same(back, cam)
    (tmp_path / "cameras.txt").write_text("# a comment\n\n" + line + "\n" + colmap_camera_line(CAMERAS["PINHOLE"], 4))
    assert _same(read_camera(tmp_path / "cameras.txt"), cam)
    assert _same(read_camera(tmp_path / "cameras.txt", which="right"), CAMERAS["PINHOLE"])
    a, b = read_camera_pair(tmp_path / "cameras.txt")
    assert _same(a, cam) and _same(b, cam)


@pytest.mark.parametrize("model", list(MODELS))
def test_report_json_round_trip(model, tmp_path):
    cam = CAMERAS[model]
    (tmp_path / "mono.json").write_text(json.dumps({"version": 1, "camera": camera_json(cam)}))
    assert _same(read_camera(tmp_path / "mono.json"), cam)
    rig = StereoRig(cam, CAMERAS["OPENCV"], RIGHT_FROM_LEFT)
    (tmp_path / "stereo.json").write_text(json.dumps({"version": 1, "kind": "stereo", **rig_json(rig)}))
    back = read_rig(tmp_path / "stereo.json")
    assert _same(back.left, cam) and _same(back.right, rig.right)
    assert np.allclose(back.right_from_left.matrix(), RIGHT_FROM_LEFT.matrix(), atol=1e-15)
    assert _same(read_camera(tmp_path / "stereo.json", which="right"), rig.right)


@pytest.mark.parametrize("model", OPENCV_MODELS)
def test_opencv_yaml_mono_round_trip(model, tmp_path):
    import cv2

    cam = CAMERAS[model]
    path = write_opencv_yaml(tmp_path / "calibration.yaml", cam, rms_px=0.1)
    back = read_camera(path)
    assert _same(back, cam), (back, cam)  # the declared model, not the smallest OpenCV equivalent
    # what other tools read: K and D project like our camera
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    K, D = fs.getNode("K").mat(), fs.getNode("D").mat()
    fs.release()
    X = np.array([[0.3, -0.2, 2.0], [-0.5, 0.4, 3.0], [0.05, 0.1, 1.0]])
    if cam.is_fisheye:
        uv, _ = cv2.fisheye.projectPoints(X.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, D)
    else:
        uv, _ = cv2.projectPoints(X, np.zeros(3), np.zeros(3), K, D)
    np.testing.assert_allclose(cam.project(X).uv, uv.reshape(-1, 2), atol=1e-9)


@pytest.mark.parametrize("model", OPENCV_MODELS)
def test_opencv_yaml_stereo_round_trip(model, tmp_path):
    left = CAMERAS[model]
    right = left.with_params(np.asarray(left.params) * 1.001)
    rig = StereoRig(left, right, RIGHT_FROM_LEFT)
    path = write_opencv_yaml(tmp_path / "rig.yaml", rig=rig)
    back = read_rig(path)
    assert _same(back.left, left) and _same(back.right, right)
    assert np.allclose(back.right_from_left.matrix(), RIGHT_FROM_LEFT.matrix(), atol=1e-15)
    assert _same(read_camera(path), left) and _same(read_camera(path, which="right"), right)
    a, b = read_camera_pair(path)
    assert _same(a, left) and _same(b, right)


def test_opencv_files_of_other_tools(tmp_path):
    """Files cv2 users write: camera_matrix / distortion_coefficients, no model name (smallest
    model), and fisheye marked by distortion_model."""
    import cv2

    K = np.array([[500.0, 0, 319.5], [0, 502.0, 241.0], [0, 0, 1]])
    fs = cv2.FileStorage(str(tmp_path / "a.yaml"), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", 640)
    fs.write("image_height", 480)
    fs.write("camera_matrix", K)
    fs.write("distortion_coefficients", np.array([[-0.1, 0.02, 0.001, -0.0005, 0.0]]))
    fs.release()
    cam = read_camera(tmp_path / "a.yaml")
    assert cam.model == "OPENCV" and np.allclose(cam.K, K) and np.allclose(cam.extra, [-0.1, 0.02, 0.001, -0.0005])
    fs = cv2.FileStorage(str(tmp_path / "b.yaml"), cv2.FILE_STORAGE_WRITE)
    fs.write("width", 640)
    fs.write("height", 480)
    fs.write("K", K)
    fs.write("D", np.array([[0.05, -0.02, 0.004, -0.001]]))
    fs.write("distortion_model", "fisheye")
    fs.release()
    cam = read_camera(tmp_path / "b.yaml")
    assert cam.model == "OPENCV_FISHEYE" and np.allclose(cam.extra, [0.05, -0.02, 0.004, -0.001])


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        read_camera(tmp_path / "nope.yaml")
    mono = write_opencv_yaml(tmp_path / "mono.yaml", CAMERAS["OPENCV"])
    with pytest.raises(ValueError, match="mono.yaml: a mono calibration"):
        read_rig(mono)
    (tmp_path / "cameras.txt").write_text("1 OPENCV 640 480 1 2 3\n")
    with pytest.raises(ValueError, match=r"cameras.txt: line 1: OPENCV takes 8 params"):
        read_camera(tmp_path / "cameras.txt")
    (tmp_path / "x.yaml").write_text("%YAML:1.0\n---\nimage_width: 640\nimage_height: 480\n")
    with pytest.raises(ValueError, match="x.yaml: no camera matrix"):
        read_camera(tmp_path / "x.yaml")
    # a declared model that cannot hold the coefficients is an error, not a silent change
    import cv2

    fs = cv2.FileStorage(str(tmp_path / "bad.yaml"), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", 640)
    fs.write("image_height", 480)
    fs.write("camera_model", "SIMPLE_RADIAL")
    fs.write("K", CAMERAS["OPENCV"].K)
    fs.write("D", np.array([[-0.1, 0.02, 0.0, 0.0]]))
    fs.release()
    with pytest.raises(ValueError, match="bad.yaml: .*SIMPLE_RADIAL"):
        read_camera(tmp_path / "bad.yaml")


def test_file_errors_carry_the_path(tmp_path):
    """One calibration error type (calib.CalibFileError, a ValueError): ``path`` names the file
    for every reader, so callers need no converting shim; argument errors stay plain."""
    from calib import CalibFileError
    from calib.files import read_camera_pair, read_status

    (tmp_path / "x.yaml").write_text("%YAML:1.0\n---\nimage_width: 640\nimage_height: 480\n")
    (tmp_path / "cameras.txt").write_text("1 OPENCV 640 480 1 2 3\n")
    mono = write_opencv_yaml(tmp_path / "mono.yaml", CAMERAS["OPENCV"])
    for read, path in ((read_camera, tmp_path / "x.yaml"), (read_camera_pair, tmp_path / "cameras.txt"),
                       (read_rig, mono), (read_status, tmp_path / "x.json")):
        if path.suffix == ".json":
            path.write_text("[1, 2]")
        with pytest.raises(CalibFileError) as e:
            read(path)
        assert e.value.path == str(path) and str(e.value) == f"{path}: {e.value.detail}" and e.value.detail
    with pytest.raises(ValueError, match="which") as e:
        read_camera(mono, which="middle")
    assert not isinstance(e.value, CalibFileError)


def test_recon_readers_agree(tmp_path):
    """recon sfm, twoview and stereo read a fisheye calibration through calib.files itself (no
    per-verb shims): the fisheye k3, k4 stay fisheye (the bug: sfm read them as OPENCV p1, p2),
    and a malformed file is named the same way by every caller (CalibFileError; twoview's and
    stereo's bad_input verdicts carry its message)."""
    from recon.sfm.pipeline import SfMConfig, load_inputs
    from recon.stereo import StereoPairOptions, stereo_pair
    from recon.twoview import PairOptions, analyze_pair

    fish = CAMERAS["OPENCV_FISHEYE"]
    path = write_opencv_yaml(tmp_path / "calibration.yaml", fish, rms_px=0.2)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.png"), np.full((fish.height, fish.width, 3), 90 + 40 * i, np.uint8))
    assert _same(load_inputs(images, tmp_path / "work", SfMConfig(calibration=path), progress=False).known, fish)
    bad = tmp_path / "bad.yaml"
    bad.write_text("%YAML:1.0\n---\nimage_width: 10\n")
    with pytest.raises(CalibFileError, match="bad.yaml"):
        load_inputs(images, tmp_path / "work", SfMConfig(calibration=bad), progress=False)
    res = analyze_pair(images / "0.png", images / "1.png", options=PairOptions(calib=bad))  # a verdict, not a raise
    assert res.exit_code == 2 and res.report["message"].startswith(str(bad))
    res = stereo_pair(images / "0.png", images / "1.png", tmp_path / "st", StereoPairOptions(calib=bad))
    assert res.exit_code == 2 and res.report["message"].startswith(str(bad))
