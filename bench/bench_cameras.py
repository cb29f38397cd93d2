"""calib.Camera project / unproject throughput against OpenCV and pycolmap (same points, same run).

Run: PYTHONPATH=$PWD python bench/bench_cameras.py [--n 1000000]
Times are the best of 3; ratio = ours / peer (below 1: we are faster). Max |difference| in pixels
(project) or undistorted pixels (unproject) is printed to show the peers computed the same thing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from calib import Camera

W, H = 1280, 960
CAMERAS = {
    "OPENCV": [800.0, 805.0, 640.0, 480.0, -0.3, 0.08, 0.002, -0.0015],
    "FULL_OPENCV": [800.0, 805.0, 640.0, 480.0, -0.2, 0.09, 0.001, -0.0015, 0.01, 0.1, 0.01, 0.002],
    "OPENCV_FISHEYE": [500.0, 505.0, 639.5, 479.5, 0.05, -0.01, 0.002, -0.0005],
}


def best(fn, repeat=3):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="points / pixels per call")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    uv = rng.uniform([-0.5, -0.5], [W - 0.5, H - 0.5], (args.n, 2))
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)
    print(f"{'model':<15} {'op':<10} {'ours s':>8} {'peer':<24} {'peer s':>8} {'ratio':>6} {'max diff px':>12}")
    for model, params in CAMERAS.items():
        bench_model(model, params, uv, crit)
    print(f"\n{args.n} pixels per unproject call ({W}x{H} image), best of 3; project on the valid rays.")
    return 0


def bench_model(model, params, uv, crit) -> None:
    import cv2
    import pycolmap

    cam = Camera(model, W, H, params)
    fisheye = cam.is_fisheye
    p = cam.params.copy()
    p[2:4] += 0.5
    pc = pycolmap.Camera(model=model, width=W, height=H, params=p)
    rays, valid = cam.unproject(uv)
    X = rays[valid & (rays[:, 2] > 0.05)]
    X = X / X[:, 2:]  # z = 1 for the peers that divide by z
    t_ours, (ours, _) = best(lambda: cam.project(X))
    if fisheye:
        t_cv, ref = best(lambda: cv2.fisheye.projectPoints(X[:, None], np.zeros(3), np.zeros(3), cam.K,
                                                           cam.opencv_dist())[0].reshape(-1, 2))
        cv_name = "cv2.fisheye.projectPoints"
    else:
        t_cv, ref = best(lambda: cv2.projectPoints(X, np.zeros(3), np.zeros(3), cam.K,
                                                   cam.opencv_dist())[0].reshape(-1, 2))
        cv_name = "cv2.projectPoints"
    t_pc, ref_pc = best(lambda: pc.img_from_cam(X) - 0.5)
    for peer, t_peer, r in ((cv_name, t_cv, ref), ("pycolmap img_from_cam", t_pc, ref_pc)):
        print(f"{model:<15} {'project':<10} {t_ours:8.3f} {peer:<24} {t_peer:8.3f} {t_ours / t_peer:6.2f} "
              f"{np.max(np.abs(ours - r)):12.2e}")
    t_ours, ours = best(lambda: cam.cam_from_img(uv))
    if fisheye:
        # cv2.fisheye clamps theta_d to pi/2: compare where it does not.
        t_cv, ref = best(lambda: cv2.fisheye.undistortPoints(uv[:, None], cam.K, cam.opencv_dist(),
                                                             criteria=crit).reshape(-1, 2))
        cv_name = "cv2.fisheye.undistortPts"
    else:
        t_cv, ref = best(lambda: cv2.undistortPointsIter(uv[:, None], cam.K, cam.opencv_dist(), None, None,
                                                         crit).reshape(-1, 2))
        cv_name = "cv2.undistortPointsIter"
    t_pc, ref_pc = best(lambda: pc.cam_from_img(uv + 0.5))
    f = cam.focal
    ok = np.all(np.isfinite(ours), axis=1)
    if fisheye:
        ok &= np.linalg.norm((uv - cam.principal_point) / f, axis=1) < np.pi / 2 - 1e-3
    for peer, t_peer, r in ((cv_name, t_cv, ref), ("pycolmap cam_from_img", t_pc, ref_pc)):
        print(f"{model:<15} {'unproject':<10} {t_ours:8.3f} {peer:<24} {t_peer:8.3f} {t_ours / t_peer:6.2f} "
              f"{np.max(np.abs((ours[ok] - r[ok]) * f)):12.2e}")


if __name__ == "__main__":
    raise SystemExit(main())
