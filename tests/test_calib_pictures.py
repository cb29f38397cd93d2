"""The calibration pictures: drawn in a forked process (calib.pictures.PictureProcess) or here,
complete when close() returns, identical either way."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from calib import Camera
from calib.boards import BoardSpec, board_object_points
from calib.calibrate import (
    Observation,
    Rejection,
    calibrate_camera,
    coverage_map,
    projection_uncertainty,
)
from calib.pictures import PICTURES, PictureProcess, save_pictures
from recon.synth.boards import random_board_poses, true_corners

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


@pytest.fixture(scope="module")
def solved():
    cam = Camera("OPENCV", 640, 480, [500.0, 500.0, 319.5, 239.5, -0.1, 0.02, 0.0, 0.0])
    board = BoardSpec("chessboard", 9, 6, 0.03)
    rng = np.random.default_rng(0)
    obs = []
    for k, p in enumerate(random_board_poses(board, cam, 8, rng)):
        uv, _ = true_corners(board, cam, p)
        obs.append(Observation(f"v{k}", uv + rng.normal(0, 0.2, uv.shape), board_object_points(board), np.arange(54)))
    res = calibrate_camera(obs, cam.size)
    unc = projection_uncertainty(res, grid=(16, 12))
    return res, unc, coverage_map(res, uncertainty=unc)


def _pixels(path):
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape[0] > 300
    return img


def _run_alone(fn):
    """Run fn with no other thread alive (PictureProcess only forks then). Progress bars of
    earlier tests leave tqdm's monitor thread running: stop it."""
    try:
        from tqdm import tqdm

        if tqdm.monitor is not None:
            tqdm.monitor.exit()
            tqdm.monitor = None
    except ImportError:
        pass
    if threading.active_count() > 1:
        pytest.skip(f"other threads are running ({[t.name for t in threading.enumerate()]}); PictureProcess would not fork")
    return fn()


def test_forked_pictures_equal_in_process_ones(solved, tmp_path):
    res, unc, cov = solved
    rejected = [Rejection("bad.png", "no board")]
    here = save_pictures(res, tmp_path / "here", uncertainty=unc, coverage=cov, rejected=rejected, parallel=False)

    def forked():
        pp = PictureProcess()
        assert pp.active
        pp.submit(res, tmp_path / "a", uncertainty=unc, coverage=cov, rejected=rejected)
        pp.submit(res, tmp_path / "b", uncertainty=unc, rejected=rejected, prefix="x_")  # no coverage
        return pp.close()

    paths = _run_alone(forked)
    assert [p.name for p in paths[:4]] == [f"{w}.png" for w in PICTURES]
    assert [p.name for p in paths[4:]] == ["x_residuals.png", "x_uncertainty.png", "x_view_errors.png"]
    assert not (tmp_path / "b" / "x_coverage.png").exists()
    for h, p in zip(here, paths[:4]):
        assert np.array_equal(_pixels(h), _pixels(p)), p.name


def test_pictures_drawn_here_when_the_child_fails(solved, tmp_path, monkeypatch):
    from calib import pictures as report

    res, unc, cov = solved
    monkeypatch.setattr(report, "_picture_child", lambda r, w: os._exit(3))  # dies at once

    def run():
        with PictureProcess() as pp:
            assert pp.active
            pp.submit(res, tmp_path, uncertainty=unc, coverage=cov)
        return pp

    _run_alone(run)
    for w in PICTURES:
        _pixels(tmp_path / f"{w}.png")


def test_no_fork_with_threads(solved, tmp_path):
    res, unc, cov = solved
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        pp = PictureProcess()
        assert not pp.active  # forking a multi-threaded process could deadlock the child
        pp.submit(res, tmp_path, uncertainty=unc, coverage=cov)
        paths = pp.close()
    finally:
        stop.set()
        t.join()
    assert len(paths) == 4 and all(p.stat().st_size > 10_000 for p in paths)
