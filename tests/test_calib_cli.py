"""`recon calibrate` / `recon undistort` end to end on rendered boards and on the real photos."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from calib import Camera
from recon.cli import main

TRUTH = Camera("OPENCV", 480, 360, [330.0, 331.0, 241.2, 178.9, -0.15, 0.06, 0.0004, -0.0002])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    from recon.synth.boards import write_board_dataset

    out = tmp_path_factory.mktemp("boards")
    write_board_dataset(out, kind="chessboard", cols=9, rows=6, square=0.03, num_views=12, camera=TRUTH, seed=1,
                        supersample=3, max_tilt_deg=45)
    return out


def test_calibrate_rendered_chessboard(rendered, tmp_path, capsys):
    import cv2

    imgs = sorted(str(p) for p in (rendered / "images").glob("*.png"))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((TRUTH.height, TRUTH.width), 128, np.uint8))
    out = tmp_path / "out"
    rc = main(["calibrate", *imgs, str(bad), str(blank), "--board", "chessboard:9x6:0.03", "-o", str(out), "--quiet"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "broken.png" in err and "blank.png" in err  # dropped views are printed
    rep = json.loads((out / "report.json").read_text())
    for key in ("rms_px", "model", "params", "param_std", "image_size", "views_used", "views_rejected"):
        assert key in rep
    assert rep["model"] == "OPENCV" and rep["image_size"] == [480, 360]
    assert len(rep["views_used"]) == 12
    reasons = {r["view"]: r["reason"] for r in rep["views_rejected"]}
    assert "unreadable" in reasons[str(bad)] and "no 9x6 chessboard" in reasons[str(blank)]
    assert rep["rms_px"] < 0.3
    est = np.array([rep["params"][n] for n in ("fx", "fy", "cx", "cy")])
    assert np.all(np.abs(est[:2] / TRUTH.params[:2] - 1) < 5e-3)
    assert np.all(np.abs(est[2:] - TRUTH.params[2:4]) < 2.0)
    # YAML readable by OpenCV; COLMAP line shifted by +0.5
    fs = cv2.FileStorage(str(out / "calibration.yaml"), cv2.FILE_STORAGE_READ)
    K, D = fs.getNode("K").mat(), fs.getNode("D").mat()
    fs.release()
    assert np.isclose(K[0, 2], rep["params"]["cx"]) and D.size == 4
    line = next(ln for ln in (out / "cameras.txt").read_text().splitlines() if not ln.startswith("#")).split()
    assert line[1] == "OPENCV" and np.isclose(float(line[6]), rep["params"]["cx"] + 0.5)
    for name in ("residuals.png", "coverage.png", "uncertainty.png", "view_errors.png"):
        assert (out / name).stat().st_size > 10_000

    # undistort: corners of an undistorted image lie on a homography of the board (pinhole)
    und = tmp_path / "und"
    assert main(["undistort", imgs[0], "--calib", str(out / "calibration.yaml"), "-o", str(und), "--quiet"]) == 0
    from calib.boards import BoardSpec, Detection, board_object_points, detect_board
    from calib.files import read_camera as read_calibration

    img = cv2.imread(str(und / "0000.png"), cv2.IMREAD_GRAYSCALE)
    det = detect_board(img, BoardSpec("chessboard", 9, 6, 0.03))
    assert isinstance(det, Detection)
    H, _ = cv2.findHomography(board_object_points(det.board)[:, :2], det.corners)
    proj = cv2.perspectiveTransform(board_object_points(det.board)[None, :, :2], H)[0]
    assert np.sqrt(np.mean(np.sum((proj - det.corners) ** 2, 1))) < 0.15
    pin = read_calibration(und / "cameras.txt")
    assert pin.model == "PINHOLE"


def test_calibrate_bad_input_messages(rendered, tmp_path, capsys):
    imgs = sorted(str(p) for p in (rendered / "images").glob("*.png"))
    # a spec that matches nothing: the message lists the files and suggests the visible size
    rc = main(["calibrate", *imgs[:4], "--board", "chessboard:8x8", "-o", str(tmp_path / "x"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "not found in any of the 4 image(s)" in err and "0000.png" in err and "chessboard:9x6" in err
    # fewer than 3 usable views
    rc = main(["calibrate", *imgs[:2], "--board", "chessboard:9x6", "-o", str(tmp_path / "y"), "--quiet"])
    assert rc == 2
    assert "at least 3" in capsys.readouterr().err
    rc = main(["calibrate", *imgs[:2], str(tmp_path / "missing.png"), "--board", "chessboard:9x6", "-o",
               str(tmp_path / "y2"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "at least 3" in err and "missing.png: unreadable" in err
    # mixed image sizes: the odd one is dropped with the reason
    import cv2

    odd = tmp_path / "odd.png"
    cv2.imwrite(str(odd), cv2.resize(cv2.imread(imgs[0]), (320, 240)))
    rc = main(["calibrate", *imgs[:5], str(odd), "--board", "chessboard:9x6", "-o", str(tmp_path / "z"), "--quiet",
               "--no-plots"])
    assert rc == 0
    rep = json.loads((tmp_path / "z" / "report.json").read_text())
    assert any("differs" in r["reason"] and r["view"] == str(odd) for r in rep["views_rejected"])
    assert main(["calibrate", "--board", "chessboard:9x6", "-o", str(tmp_path / "w")]) == 2


def test_calibrate_stereo_cli(tmp_path):
    """Stereo form on a rendered rig: baseline, rectification quality, YAML keys."""
    import cv2

    from calib import Rigid3
    from calib.boards import BoardSpec
    from calib.transforms import matrix_from_axis_angle
    from recon.synth.boards import random_board_poses, write_board_dataset

    board = BoardSpec("chessboard", 9, 6, 0.03)
    rig = Rigid3(matrix_from_axis_angle([0.0, -0.03, 0.0]), [-0.1, 0.0, 0.0])
    rng = np.random.default_rng(5)
    poses = [p for p in random_board_poses(board, TRUTH, 30, rng, max_tilt_deg=30, fill=(0.4, 0.55))]
    from recon.synth.boards import true_corners

    both = [p for p in poses if true_corners(board, TRUTH, rig @ p)[1].all()][:10]
    assert len(both) >= 8
    write_board_dataset(tmp_path / "L", cols=9, rows=6, square=0.03, camera=TRUTH, cams_from_board=both, supersample=2)
    write_board_dataset(tmp_path / "R", cols=9, rows=6, square=0.03, camera=TRUTH, cams_from_board=[rig @ p for p in both],
                        supersample=2)
    out = tmp_path / "rig"
    rc = main(["calibrate", "--left", str(tmp_path / "L" / "images"), "--right", str(tmp_path / "R" / "images"),
               "--board", "chessboard:9x6:0.03", "-o", str(out), "--quiet", "--no-plots"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert abs(rep["baseline"] - 0.1) < 0.003
    assert rep["rectified_vertical_rms_px"] < 0.3
    fs = cv2.FileStorage(str(out / "calibration.yaml"), cv2.FILE_STORAGE_READ)
    for key in ("K1", "D1", "K2", "D2", "R", "T", "E", "F", "R1", "R2", "P1", "P2", "Q"):
        assert not fs.getNode(key).empty(), key
    fs.release()


def _real_images(shared_data):
    return sorted(str(p) for p in (shared_data / "chessboard-7x7").glob("*.jpg"))


def test_real_chessboard_all_views_used_and_order_independent(shared_data):
    """The 19 real photos of a symmetric 7x7 board: every view used; the calibration does not
    depend on the corner ordering the detector returns (classic vs sector-based detector order,
    plus a random symmetric relabeling per view)."""
    import cv2

    from calib.boards import BoardSpec, board_object_points, canonical_chessboard_order
    from calib.calibrate import CalibrationConfig, Observation, calibrate_camera
    from calib.calibrate_images import detect_images

    paths = _real_images(shared_data)
    assert len(paths) == 19
    run = detect_images(paths, BoardSpec("chessboard", 0, 0), workers=2)
    assert (run.board.cols, run.board.rows) == (7, 7) and not run.failures
    res = calibrate_camera(run.observations, run.image_size, CalibrationConfig(model="OPENCV"))
    assert len(res.views) == 19 and not res.rejected_views
    assert res.rms_px < 1.0
    rng = np.random.default_rng(0)
    perm = []
    P = board_object_points(run.board)
    for o in run.observations:
        g = o.corners.reshape(7, 7, 2)
        k = int(rng.integers(8))
        g = [g, g[::-1, ::-1], g[::-1], g[:, ::-1], g.transpose(1, 0, 2), g.transpose(1, 0, 2)[::-1, ::-1],
             g.transpose(1, 0, 2)[::-1], g.transpose(1, 0, 2)[:, ::-1]][k]
        perm.append(Observation(o.name, canonical_chessboard_order(g.reshape(-1, 2), 7, 7), P, o.ids))
    assert all(np.array_equal(a.corners, b.corners) for a, b in zip(run.observations, perm))
    res2 = calibrate_camera(perm, run.image_size, CalibrationConfig(model="OPENCV"))
    assert np.array_equal(res2.camera.params, res.camera.params)
    # The classic detector returns its own ordering; canonicalised, it labels the same corners.
    for o in run.observations[:5]:
        ok, c = cv2.findChessboardCorners(cv2.imread(o.name, cv2.IMREAD_GRAYSCALE), (7, 7))
        assert ok
        c = canonical_chessboard_order(c.reshape(-1, 2), 7, 7)
        assert np.median(np.linalg.norm(c - o.corners, axis=1)) < 1.0


@pytest.mark.slow
def test_real_chessboard_cli(shared_data, tmp_path):
    out = tmp_path / "real"
    assert main(["calibrate", str(shared_data / "chessboard-7x7"), "--board", "chessboard:auto", "-o", str(out),
                 "--model", "auto", "--quiet"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["views_used"]) == 19 and rep["views_rejected"] == []
    assert rep["model_selection"]["scores"]
    shutil.rmtree(out)


@pytest.mark.slow
def test_calibrate_rendered_fisheye_end_to_end(tmp_path):
    """Detection on rendered fisheye images (blur + noise), OPENCV_FISHEYE fit, undistortion."""
    import cv2

    from calib.boards import BoardSpec, Detection, board_object_points, detect_board
    from calib.calibrate import compare_cameras
    from calib.files import read_camera as read_calibration
    from recon.synth.boards import write_board_dataset

    truth = Camera("OPENCV_FISHEYE", 640, 480, [300.0, 300.5, 318.7, 241.1, 0.05, -0.02, 0.004, -0.001])
    write_board_dataset(tmp_path / "fe", cols=9, rows=6, square=0.03, num_views=16, camera=truth, seed=3,
                        blur_px=0.5, image_noise=1.5, max_tilt_deg=45)
    out = tmp_path / "out"
    assert main(["calibrate", str(tmp_path / "fe" / "images"), "--board", "chessboard:9x6:0.03", "--model",
                 "OPENCV_FISHEYE", "-o", str(out), "--quiet", "--no-plots"]) == 0
    est = read_calibration(out / "calibration.yaml")
    assert est.model == "OPENCV_FISHEYE"
    assert np.all(np.abs(est.focal / truth.focal - 1) < 1e-3)
    assert np.all(np.abs(est.principal_point - truth.principal_point) < 0.5)
    diff = compare_cameras(est, truth, step=16.0, fit_rotation=True)
    assert np.nanmedian(diff) < 0.1  # the image corners (no board seen there) extrapolate
    und = tmp_path / "und"
    assert main(["undistort", str(tmp_path / "fe" / "images" / "0000.png"), "--calib", str(out / "calibration.yaml"),
                 "-o", str(und), "--quiet", "--alpha", "0.5"]) == 0
    det = detect_board(cv2.imread(str(und / "0000.png"), cv2.IMREAD_GRAYSCALE), BoardSpec("chessboard", 9, 6, 0.03))
    assert isinstance(det, Detection)
    H, _ = cv2.findHomography(board_object_points(det.board)[:, :2], det.corners)
    proj = cv2.perspectiveTransform(board_object_points(det.board)[None, :, :2], H)[0]
    assert np.sqrt(np.mean(np.sum((proj - det.corners) ** 2, 1))) < 0.2


def test_calibrate_rendered_charuco_dictionary_found(tmp_path):
    """ChArUco without a dictionary in the spec: the common dictionaries are tried."""
    from recon.synth.boards import write_board_dataset

    cam = Camera("OPENCV", 640, 480, [520.0, 521.0, 322.0, 241.0, -0.1, 0.03, 0.0, 0.0])
    write_board_dataset(tmp_path / "ch", kind="charuco", cols=7, rows=5, square=0.04, marker=0.03,
                        dictionary="DICT_6X6_250", num_views=8, camera=cam, seed=4, supersample=2,
                        max_tilt_deg=35, fill=(0.55, 0.8))
    out = tmp_path / "out"
    assert main(["calibrate", str(tmp_path / "ch" / "images"), "--board", "charuco:7x5:0.04:0.03", "-o", str(out),
                 "--quiet", "--no-plots"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["board"].endswith("6X6_250") and len(rep["views_used"]) == 8
    assert abs(rep["params"]["fx"] / 520.0 - 1) < 0.01 and abs(rep["params"]["cx"] - 322.0) < 3.0


def test_calibrate_spellings_threads_quiet():
    """--threads (--workers only as a hidden alias, the name is kept for a Dask cluster) and
    -q/--quiet, as every verb spells them."""
    from recon import cli

    parser = cli.build_parser()
    args = parser.parse_args(["calibrate", "x.png", "--board", "chessboard:9x6", "-o", "o", "--workers", "3", "-q"])
    assert args.threads == 3 and args.quiet
    args = parser.parse_args(["calibrate", "x.png", "--board", "chessboard:9x6", "-o", "o", "--threads", "2"])
    assert args.threads == 2 and not args.quiet
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices and "calibrate" in a.choices)
    text = sub.choices["calibrate"].format_help()
    assert "--threads" in text and "--workers" not in text and "-q, --quiet" in text
