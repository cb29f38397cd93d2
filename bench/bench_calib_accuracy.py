"""Accuracy of intrinsic calibration on synthetic captures (the issue's bar: 20 views, 0.2 px
corner noise -> focal < 0.1 %, principal point < 0.5 px, max projection difference over the
whole image < 0.1 px), over several random captures.

    PYTHONPATH=$PWD python bench/bench_calib_accuracy.py [--seeds 5]

Rows: camera (the two of tests/test_calib_calibrate.py), board, capture (``whole``: whole
boards in view, recon.synth.boards.random_board_poses as in the old test; ``coverage``:
coverage_board_poses, boards reaching into every image corner, partially visible). Columns:
worst over the seeds of the focal error (%), principal point error (px), max projection
difference over the whole image (grid every 20 px plus the last row/column) with the implied
rotation fitted (mrcal-style) and raw, then the raw/fitted maxima per seed, the worst-pixel
predicted 1-sigma (uncertainty map at infinity) and the number of corners.

``--charuco``: end to end instead, through rendering and detection: 20 rendered views of a
14x10-square ChArUco board (blur 0.5 px, grey noise 1.0) with each capture, detected by
``calib.calibrate_images.detect_images``, calibrated (OPENCV camera).
"""

from __future__ import annotations

import argparse

import numpy as np

from calib import Camera
from calib.boards import BoardSpec, board_object_points
from calib.calibrate import (
    CalibrationConfig,
    Observation,
    calibrate_camera,
    compare_cameras,
    projection_uncertainty,
)
from recon.synth.boards import coverage_board_poses, random_board_poses, true_corners

CAMERAS = {
    "OPENCV f=350": Camera("OPENCV", 640, 480, [350.0, 351.0, 321.3, 238.2, -0.12, 0.05, 0.0005, -0.0003]),
    "OPENCV_FISHEYE f=300": Camera("OPENCV_FISHEYE", 640, 480, [300.0, 300.5, 318.7, 241.1, 0.05, -0.02, 0.004,
                                                                -0.001]),
}


def views(camera, board, capture, seed, noise=0.2, n=20):
    rng = np.random.default_rng(seed)
    if capture == "whole":
        poses = random_board_poses(board, camera, n, rng, max_tilt_deg=60, fill=(0.5, 0.85))
    else:
        poses = coverage_board_poses(board, camera, n, rng)
    P = board_object_points(board)
    obs = []
    for k, p in enumerate(poses):
        uv, vis = true_corners(board, camera, p)
        noisy = uv + rng.normal(0.0, noise, uv.shape)
        obs.append(Observation(f"view{k:02d}", noisy[vis], P[vis], np.nonzero(vis)[0]))
    return obs


def charuco_end_to_end() -> int:
    import glob
    import tempfile

    from calib.calibrate_images import detect_images
    from recon.synth.boards import write_board_dataset

    cam = CAMERAS["OPENCV f=350"]
    board = BoardSpec("charuco", 14, 10, 0.02, 0.015, "DICT_5X5_100")
    W, H = cam.size
    tmp = tempfile.mkdtemp(prefix="charuco_")
    print(f"{'capture':<9} {'views':>5} {'failed':>6} {'corners':>7} {'rms px':>6} {'focal %':>7} {'pp px':>6} "
          f"{'fit max':>7} {'raw max':>7} {'pred. worst 1-sigma':>19} {'nearest corner to an image corner (px)':>38}")
    for capture in ("whole", "coverage"):
        rng = np.random.default_rng(0)
        if capture == "whole":
            poses = random_board_poses(board, cam, 20, rng, max_tilt_deg=60, fill=(0.5, 0.85))
        else:
            poses = coverage_board_poses(board, cam, 20, rng, fill=(1.0, 1.6))
        out = f"{tmp}/{capture}"
        write_board_dataset(out, kind="charuco", cols=board.cols, rows=board.rows, square=board.square,
                            marker=board.marker, dictionary=board.dictionary, camera=cam, cams_from_board=poses, seed=0,
                            blur_px=0.5, image_noise=1.0)
        run = detect_images(sorted(glob.glob(out + "/images/*.png")), board)
        res = calibrate_camera(run.observations, run.image_size, CalibrationConfig(model=cam.model))
        pts = np.concatenate([v.corners for v in res.views])
        far = max(np.min(np.linalg.norm(pts - c, axis=1)) for c in [(0, 0), (W - 1, 0), (0, H - 1), (W - 1, H - 1)])
        unc = projection_uncertainty(res, grid=(17, 13), distance=1e4)
        print(f"{capture:<9} {len(res.views):5d} {len(run.failures):6d} {len(pts):7d} {res.rms_px:6.3f} "
              f"{100 * np.max(np.abs(res.camera.focal / cam.focal - 1)):7.3f} "
              f"{np.max(np.abs(res.camera.principal_point - cam.principal_point)):6.3f} "
              f"{np.nanmax(compare_cameras(res.camera, cam, step=20.0, fit_rotation=True)):7.3f} "
              f"{np.nanmax(compare_cameras(res.camera, cam, step=20.0)):7.3f} {np.nanmax(unc.std_px):19.3f} {far:38.1f}",
              flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--charuco", action="store_true", help="end to end on rendered ChArUco images")
    args = ap.parse_args()
    if args.charuco:
        return charuco_end_to_end()
    boards = [BoardSpec("chessboard", 20, 14, 0.02), BoardSpec("chessboard", 50, 35, 0.01)]
    print(f"{'camera':<21} {'board':<6} {'capture':<9} {'focal %':>7} {'pp px':>6} {'fit max':>7} {'raw max':>7}"
          f"  per seed raw/fitted max (px)            pred. worst 1-sigma  corners")
    for cname, cam in CAMERAS.items():
        for board in boards:
            for capture in ("whole", "coverage"):
                if capture == "whole" and board.cols > 20:
                    continue
                fe, pe, fit, raw, unc, nc = [], [], [], [], [], []
                for seed in range(args.seeds):
                    obs = views(cam, board, capture, seed)
                    res = calibrate_camera(obs, cam.size, CalibrationConfig(model=cam.model))
                    est = res.camera
                    fe.append(100 * np.max(np.abs(est.focal / cam.focal - 1)))
                    pe.append(np.max(np.abs(est.principal_point - cam.principal_point)))
                    fit.append(np.nanmax(compare_cameras(est, cam, step=20.0, fit_rotation=True)))
                    raw.append(np.nanmax(compare_cameras(est, cam, step=20.0)))
                    unc.append(np.nanmax(projection_uncertainty(res, grid=(17, 13), distance=1e4).std_px))
                    nc.append(sum(len(o.corners) for o in obs))
                per = " ".join(f"{r:.2f}/{f:.2f}" for r, f in zip(raw, fit))
                print(f"{cname:<21} {board.cols}x{board.rows:<3} {capture:<9} {max(fe):7.4f} {max(pe):6.3f} "
                      f"{max(fit):7.3f} {max(raw):7.3f}  {per}  {min(unc):.3f}-{max(unc):.3f}  {int(np.mean(nc))}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
