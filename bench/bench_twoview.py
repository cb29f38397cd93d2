"""Two-view geometry speed and accuracy: recon.twoview vs OpenCV alone, on the same matches.

Synthetic pairs (random 3D points, two known calibrated cameras, 1 px Gaussian noise, 30 %
outliers); every method sees the same matches. Reports pairs/s and the median pose errors.

  ours E        estimate_essential(method="ours") + recover_pose (LO-MSAC, Sampson polish)
  ours full     two_view_geometry: E + H + model selection + triangulation + two-view BA
  opencv E      cv2.findEssentialMat(USAC_MAGSAC) + cv2.recoverPose (the five-point solver)
  ours F        estimate_fundamental(method="ours")
  opencv F      cv2.findFundamentalMat(USAC_MAGSAC)

A second table times the whole image pipeline on a rendered 800x600 pair (the ray-caster of
tests/_twoview_scenes.py): SIFT + matching + geometry, ours (recon twoview's code path, without
pictures) vs OpenCV alone (SIFT, BFMatcher + ratio test, findEssentialMat, recoverPose).

Run: PYTHONPATH=. python bench/bench_twoview.py [--pairs 10] [--matches 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def make_pair(rng, n, noise=1.0, outlier_frac=0.3, w=800, h=600, f=420.0):
    from calib import Camera, Rigid3, matrix_from_axis_angle

    cam = Camera("PINHOLE", w, h, np.array([f, f, (w - 1) / 2, (h - 1) / 2]))
    X = np.c_[rng.uniform(-3.5, 3.5, (6 * n, 2)), rng.uniform(2.5, 8.0, 6 * n)]
    T = Rigid3(matrix_from_axis_angle(rng.normal(size=3) * 0.08), np.array([1.6, 0.4, 1.2]))
    (u1, v1), (u2, v2) = cam.project(X), cam.project(T.apply(X))
    ins = v1 & v2 & np.all((u1 >= 0) & (u1 <= [w - 1, h - 1]), 1) & np.all((u2 >= 0) & (u2 <= [w - 1, h - 1]), 1)
    u1, u2 = u1[ins][:n] + rng.normal(0, noise, (n, 2)), u2[ins][:n] + rng.normal(0, noise, (n, 2))
    k = int(outlier_frac * n)
    bad = rng.choice(n, k, replace=False)
    u2[bad] = rng.uniform([0, 0], [w - 1, h - 1], (k, 2))
    return u1, u2, cam, T


def errors(R, t, T):
    from calib import rotation_angle_deg

    tt = T.translation / np.linalg.norm(T.translation)
    t = np.ravel(t) / np.linalg.norm(t)
    return float(rotation_angle_deg(R @ T.rotation.T)), float(np.degrees(np.arccos(np.clip(t @ tt, -1, 1))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--matches", type=int, default=1000)
    ap.add_argument("--threshold", type=float, default=3.0, help="inlier threshold px (3 sigma for 1 px noise)")
    args = ap.parse_args()

    import cv2

    from recon.twoview import (
        TwoViewConfig,
        estimate_essential,
        estimate_fundamental,
        recover_pose,
        two_view_geometry,
    )

    rng = np.random.default_rng(0)
    pairs = [make_pair(rng, args.matches) for _ in range(args.pairs)]
    # warm-up (imports, scipy, OpenCV's first-call costs)
    u1, u2, cam, T = pairs[0]
    two_view_geometry(u1, u2, cam, cam, config=TwoViewConfig(threshold_px=args.threshold))
    cv2.findEssentialMat(u1, u2, cam.K, cv2.USAC_MAGSAC, 0.999, args.threshold)

    def ours_e(u1, u2, cam):
        fit = estimate_essential(u1, u2, cam, cam, threshold_px=args.threshold)
        p = recover_pose(fit.E, cam.cam_from_img(u1), cam.cam_from_img(u2), mask=fit.inliers).cam2_from_cam1
        return p.rotation, p.translation

    def ours_full(u1, u2, cam):
        g = two_view_geometry(u1, u2, cam, cam, config=TwoViewConfig(threshold_px=args.threshold))
        return g.cam2_from_cam1.rotation, g.cam2_from_cam1.translation

    def cv_e(u1, u2, cam):
        E, mask = cv2.findEssentialMat(u1, u2, cam.K, cv2.USAC_MAGSAC, 0.999, args.threshold)
        _, R, t, _ = cv2.recoverPose(E[:3], u1, u2, cam.K, mask=mask)
        return R, t

    def ours_f(u1, u2, cam):
        estimate_fundamental(u1, u2, threshold_px=args.threshold)

    def cv_f(u1, u2, cam):
        cv2.findFundamentalMat(u1, u2, cv2.USAC_MAGSAC, args.threshold, 0.999)

    rows = []
    for name, fn, has_pose in (("ours E + pose", ours_e, True), ("ours full (E,H,GRIC,BA)", ours_full, True),
                               ("opencv E + recoverPose", cv_e, True), ("ours F", ours_f, False),
                               ("opencv F", cv_f, False)):
        errs = []
        t0 = time.perf_counter()
        for u1, u2, cam, T in pairs:
            out = fn(u1, u2, cam)
            if has_pose:
                errs.append(errors(out[0], out[1], T))
        dt = time.perf_counter() - t0
        e = np.median(errs, axis=0) if errs else (np.nan, np.nan)
        rows.append((name, len(pairs) / dt, e[0], e[1]))
    ref = {r[0]: r[1] for r in rows}
    print(f"two-view geometry, {args.pairs} synthetic pairs x {args.matches} matches (1 px noise, 30 % outliers)")
    print(f"{'method':28s} {'pairs/s':>9s} {'vs opencv':>10s} {'rot err deg':>12s} {'t err deg':>10s}")
    for name, pps, er, et in rows:
        peer = ref["opencv E + recoverPose"] if "E" in name or "full" in name else ref["opencv F"]
        print(f"{name:28s} {pps:9.2f} {pps / peer:9.2f}x {er:12.4f} {et:10.4f}")


def image_pipeline(repeat: int = 3):
    import sys
    from pathlib import Path

    import cv2

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _twoview_scenes import PlaneBoxScene, pinhole

    from calib import Rigid3, matrix_from_axis_angle
    from recon.features import detect_features, match_features
    from recon.twoview import TwoViewConfig, two_view_geometry

    cam = pinhole(800, 600, 560.0)
    T = Rigid3(matrix_from_axis_angle(np.radians([0.5, -4.0, 1.0])), np.array([-0.6, 0.05, 0.1]))
    scene = PlaneBoxScene(seed=5, slope=0.4)
    a = scene.render(cam, Rigid3.identity())[0]
    b = scene.render(cam, T)[0]

    def ours():
        f1, f2 = detect_features(a), detect_features(b)
        m = match_features(f1, f2)
        uv1, uv2 = m.points(f1, f2)
        g = two_view_geometry(uv1, uv2, cam, cam, config=TwoViewConfig(threshold_px=1.0))
        return g.cam2_from_cam1.rotation, g.cam2_from_cam1.translation

    def opencv():
        sift = cv2.SIFT_create(8000, contrastThreshold=0.02)
        ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
        k1, d1 = sift.detectAndCompute(ga, None)
        k2, d2 = sift.detectAndCompute(gb, None)
        knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2)
        good = [p[0] for p in knn if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
        x1 = np.float64([k1[g.queryIdx].pt for g in good])
        x2 = np.float64([k2[g.trainIdx].pt for g in good])
        E, mask = cv2.findEssentialMat(x1, x2, cam.K, cv2.USAC_MAGSAC, 0.999, 1.0)
        _, R, t, _ = cv2.recoverPose(E[:3], x1, x2, cam.K, mask=mask)
        return R, t

    rows = []
    for name, fn in (("ours (recon twoview path)", ours), ("opencv alone", opencv)):
        fn()
        t0 = time.perf_counter()
        for _ in range(repeat):
            R, t = fn()
        dt = (time.perf_counter() - t0) / repeat
        rows.append((name, 1.0 / dt, *errors(R, t, T)))
    print()
    print("image pipeline, rendered 800x600 pair (SIFT + matching + geometry; no pictures)")
    print(f"{'method':28s} {'pairs/s':>9s} {'vs opencv':>10s} {'rot err deg':>12s} {'t err deg':>10s}")
    for name, pps, er, et in rows:
        print(f"{name:28s} {pps:9.2f} {pps / rows[1][1]:9.2f}x {er:12.4f} {et:10.4f}")


if __name__ == "__main__":
    main()
    image_pipeline()
