"""Stereo speed (megapixels/s) and accuracy (bad-2): recon.stereo vs OpenCV SGBM alone.

A synthetic rectified pair with exact disparity is built by warping a random multi-scale
texture: a slanted background plane plus a fronto-parallel box in front of it (occlusions).
Both paths use the same SGBM parameters; bad-2 is the share of non-occluded pixels whose
disparity error exceeds 2 px (pixels left of the first full search window excluded).

  opencv SGBM        cv2.StereoSGBM.compute only (no LR check, no WLS)
  ours raw + LR      recon.stereo.compute_disparity without WLS (SGBM + right matcher + LR check)
  ours + WLS         compute_disparity with the WLS filter (the default)
  ours full          stereo_depth: rectification remap + auto range + SGBM + LR + WLS + depth +
                     sigma + point cloud (calibrated rig, identity rectification)

Run: PYTHONPATH=. python bench/bench_stereo.py [--width 640 --height 480] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def make_rectified_pair(w, h, f, baseline, seed=0):
    """Left/right images [H, W, 3] uint8, GT disparity of the left view and the non-occluded mask."""
    import cv2

    rng = np.random.default_rng(seed)
    tex_w, tex_h = 2 * w, h
    tex = np.zeros((tex_h, tex_w, 3), np.float32)
    for k, s in enumerate((8, 32, 128, 512)):
        n = rng.random((max(2, s * tex_h // tex_w), s, 3)).astype(np.float32)
        tex += cv2.resize(n, (tex_w, tex_h), interpolation=cv2.INTER_CUBIC) * 0.7 ** k
    tex = (255 * (tex - tex.min()) / (tex.max() - tex.min())).astype(np.uint8)
    fg = np.ascontiguousarray(tex[:, ::-1])  # a different texture for the box
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    # background: Z = 6 + 0.002 (u - w/2) m-ish via disparity; box: constant disparity, in front
    d_bg = (f * baseline / (6.0 + 0.004 * (u - w / 2))).astype(np.float32)
    d_box = np.float32(f * baseline / 2.5)
    x0, x1, y0, y1 = int(0.35 * w), int(0.6 * w), int(0.3 * h), int(0.7 * h)

    def render(shift_sign):
        # A view at horizontal offset: a surface point at left column x appears at x - d in the
        # right view. Render the right view by inverse mapping (per-surface, then composite).
        if shift_sign == 0:
            img = cv2.remap(tex, u + 200, v, cv2.INTER_LINEAR)
            box = cv2.remap(fg, u + 50, v, cv2.INTER_LINEAR)
            m = (u >= x0) & (u < x1) & (v >= y0) & (v < y1)
            img[m] = box[m]
            return img, np.where(m, d_box, d_bg)
        # right view: background column ur comes from left column x with x - d_bg(x) = ur.
        # d_bg varies slowly: solve by fixed-point iteration.
        x = u.copy()
        for _ in range(8):
            x = u + f * baseline / (6.0 + 0.004 * (x - w / 2))
        img = cv2.remap(tex, x + 200, v, cv2.INTER_LINEAR)
        xb = u + d_box
        box = cv2.remap(fg, xb + 50, v, cv2.INTER_LINEAR)
        m = (xb >= x0) & (xb < x1) & (v >= y0) & (v < y1)
        img[m] = box[m]
        return img, None

    L, gt = render(0)
    R, _ = render(1)
    # occluded: left background pixels hidden by the box in the right view
    xr = np.rint(u - gt).astype(int)
    box_r = (u + d_box >= x0) & (u + d_box < x1) & (v >= y0) & (v < y1)
    in_box_l = (u >= x0) & (u < x1) & (v >= y0) & (v < y1)
    hidden = ~in_box_l & box_r[np.arange(h)[:, None], np.clip(xr, 0, w - 1)]
    nonocc = (xr >= 0) & ~hidden
    return L, R, gt.astype(np.float32), nonocc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()


    from calib import Camera, Rigid3, StereoRig
    from recon.stereo import SGBMConfig, compute_disparity, stereo_depth
    from recon.stereo._disparity import _matcher

    w, h = args.width, args.height
    f, baseline = 0.8 * w, 0.2
    L, R, gt, nonocc = make_rectified_pair(w, h, f, baseline)
    nd = int(np.ceil((np.nanmax(gt) * 1.15 + 2) / 16) * 16)
    cfg = SGBMConfig(num_disparities=nd)
    ev = nonocc.copy()
    ev[:, :nd] = False
    mp = w * h / 1e6
    cam = Camera("PINHOLE", w, h, np.array([f, f, (w - 1) / 2, (h - 1) / 2]))
    rig = StereoRig(cam, cam, Rigid3(np.eye(3), np.array([-baseline, 0.0, 0.0])))

    def bad2(d):
        e = np.abs(d - gt)
        return float(np.mean(~(e[ev] <= 2.0)))

    def opencv():
        m, _ = _matcher(cfg, 3)
        return m.compute(L, R).astype(np.float32) / 16.0

    rows = []
    for name, fn in (("opencv SGBM", lambda: opencv()),
                     ("ours raw + LR", lambda: compute_disparity(L, R, SGBMConfig(num_disparities=nd, wls=False)).raw),
                     ("ours + WLS", lambda: compute_disparity(L, R, cfg).disparity),
                     ("ours full (stereo_depth)", lambda: stereo_depth(L, R, rig).disparity.disparity)):
        fn()  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            d = fn()
        dt = (time.perf_counter() - t0) / args.repeat
        d = np.where(d < 0, np.nan, d)
        rows.append((name, mp / dt, bad2(d), float(np.mean(np.isfinite(d[ev])))))
    peer = rows[0][1]
    print(f"stereo {w}x{h}, disparities {nd}, block 5, mode sgbm; bad-2 on non-occluded pixels")
    print(f"{'method':26s} {'MP/s':>7s} {'vs opencv':>10s} {'bad-2 %':>8s} {'density %':>10s}")
    for name, mps, b2, dens in rows:
        print(f"{name:26s} {mps:7.3f} {mps / peer:9.2f}x {100 * b2:8.2f} {100 * dens:10.1f}")


if __name__ == "__main__":
    main()
