"""Board rendering (recon.synth.boards) and detection (calib.boards) against exact corners."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calib import Camera
from calib.boards import (
    BoardSpec,
    Detection,
    DetectionFailure,
    detect_board,
    detect_chessboard_size,
    parse_board_spec,
)
from recon.synth.boards import (
    _RayCache,
    random_board_poses,
    render_board,
    true_corners,
    write_board_dataset,
)

SMALL = Camera("OPENCV", 480, 360, [380.0, 380.0, 239.5, 179.5, -0.1, 0.03, 0.0, 0.0])


def test_ray_cache_interpolation_is_exact_enough():
    fisheye = Camera("OPENCV_FISHEYE", 320, 240, [120.0, 120.0, 159.5, 119.5, 0.05, -0.02, 0.004, -0.001])
    for cam, step in [(SMALL, 2), (fisheye, 1)]:
        c = _RayCache(cam, 2, step)
        idx = np.random.default_rng(0).integers(0, c.valid.size, 3000)
        iy, ix = np.unravel_index(idx, c.valid.shape)
        offs = (np.arange(2) + 0.5) / 2 - 0.5
        expect = np.stack([ix // 2 + offs[ix % 2], iy // 2 + offs[iy % 2]], 1)
        uv, ok = cam.project(c.rays[iy, ix])
        assert np.all(ok & c.valid[iy, ix])
        assert np.abs(uv - expect).max() < 0.01


@pytest.mark.parametrize("spec", ["chessboard:9x6:0.03", "charuco:7x5:0.04:0.03:5X5_100", "circles:4x11:0.02"])
def test_rendered_boards_are_detected_at_the_true_corners(spec):
    board = parse_board_spec(spec)
    rng = np.random.default_rng(1)
    # (findCirclesGrid's grid finder fails beyond ~35 degrees of perspective: keep the tilt mild)
    cam = Camera("OPENCV", 640, 480, [500.0, 500.0, 319.5, 239.5, -0.1, 0.03, 0.0, 0.0])
    poses = random_board_poses(board, cam, 3, rng, max_tilt_deg=25, fill=(0.6, 0.8))
    cache = _RayCache(cam, 3)
    for pose in poses:
        img = render_board(board, cam, pose, _rays=cache)
        assert img.shape == (cam.height, cam.width) and img.dtype == np.uint8
        det = detect_board(img, board)
        assert isinstance(det, Detection), det
        truth, _ = true_corners(board, cam, pose)
        err = np.linalg.norm(det.corners - truth[det.ids], axis=1)
        assert len(det.ids) >= 0.75 * board.num_points
        # The canonical order matches the renderer's labeling (board seen from the front, small roll).
        assert np.median(err) < 0.2 and err.max() < 0.8, (spec, np.median(err), err.max())


def test_symmetric_chessboard_canonical_order_on_rendered_rolls():
    """A 7x7 board rolled by 0/90/180/270 degrees: after canonicalisation the first corner is the
    top-left one in the image and rows run left to right, whatever the detector returned."""
    board = BoardSpec("chessboard", 7, 7, 0.03)
    rng = np.random.default_rng(3)
    pose = random_board_poses(board, SMALL, 1, rng, max_tilt_deg=10, max_roll_deg=5)[0]
    cache = _RayCache(SMALL, 2)
    from calib import Rigid3
    from calib.transforms import matrix_from_axis_angle

    centre = np.array([3 * 0.03, 3 * 0.03, 0.0])
    for k in range(4):
        Rz = matrix_from_axis_angle([0, 0, k * np.pi / 2])
        # roll the board about its centre
        p = Rigid3(pose.rotation @ Rz, pose.translation + pose.rotation @ (centre - Rz @ centre))
        det = detect_board(render_board(board, SMALL, p, supersample=2, _rays=cache), board)
        assert isinstance(det, Detection)
        g = det.corners.reshape(7, 7, 2)
        assert g[0, 0, 0] < g[0, -1, 0] and g[0, 0, 1] < g[-1, 0, 1]  # first corner top-left
        truth, _ = true_corners(board, SMALL, p)
        # the same physical corner set
        d = np.linalg.norm(det.corners[:, None] - truth[None], axis=2).min(axis=1)
        assert d.max() < 0.8


def test_detect_chessboard_size_and_failures():
    board = BoardSpec("chessboard", 8, 5, 0.03)
    pose = random_board_poses(board, SMALL, 1, np.random.default_rng(4), max_tilt_deg=20)[0]
    img = render_board(board, SMALL, pose, supersample=2)
    assert detect_chessboard_size(img) == (8, 5)
    auto = detect_board(img, parse_board_spec("chessboard:auto"))
    assert isinstance(auto, Detection) and (auto.board.cols, auto.board.rows) == (8, 5)
    wrong = detect_board(img, BoardSpec("chessboard", 9, 6))
    assert isinstance(wrong, DetectionFailure)
    assert "8x5" in wrong.hint
    blank = np.full((240, 320), 128, np.uint8)
    assert isinstance(detect_board(blank, BoardSpec("chessboard", 8, 5)), DetectionFailure)
    assert detect_chessboard_size(blank) is None


def test_write_board_dataset(tmp_path):
    cam = Camera("PINHOLE", 320, 240, [260.0, 260.0, 159.5, 119.5])
    out = write_board_dataset(tmp_path / "ds", kind="chessboard", cols=6, rows=4, square=0.04, num_views=3,
                              camera=cam, seed=2, noise_px=0.2, supersample=2)
    gt = json.loads((out / "gt.json").read_text())
    assert gt["camera"]["model"] == "PINHOLE" and len(gt["views"]) == 3
    v = gt["views"][0]
    assert (out / v["image"]).is_file()
    corners, noisy = np.array(v["corners"]), np.array(v["corners_noisy"])
    assert corners.shape == (24, 2)
    assert 0.05 < np.std(noisy - corners) < 0.4
    from calib import Rigid3
    from calib.boards import board_object_points

    pose = Rigid3(np.array(v["cam_from_board"]["rotation"]), np.array(v["cam_from_board"]["translation"]))
    uv, _ = cam.project(pose.apply(board_object_points(parse_board_spec(gt["board"]))))
    np.testing.assert_allclose(uv, corners, atol=1e-9)
