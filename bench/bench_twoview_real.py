"""Relative pose on real calibrated pairs: recon.twoview vs OpenCV vs pycolmap, same SIFT matches.

Real pairs: every pair of the 11 Sceaux-castle photos (../shared/data/sceaux-castle) with at
least --min-matches matches. Reference poses and intrinsics come from a full pycolmap
reconstruction of the 11 photos (`recon sfm ... --max-image-size 1600`, 11/11 registered,
cached under --cache). Features: our SIFT (recon.features) on the photos downscaled to
--size (long side); matches: mutual nearest neighbour + ratio 0.8. Every estimator receives the
SAME undistorted pinhole pixels (distortion of the reference camera removed) and the same
inlier threshold (--threshold px):

  recon             two_view_geometry (five-point LO-MSAC, Sampson refinement, H-vs-E, two-view BA)
  opencv RANSAC     cv2.findEssentialMat(RANSAC) + cv2.recoverPose
  opencv MAGSAC     cv2.findEssentialMat(USAC_MAGSAC) + cv2.recoverPose
  opencv ACCURATE   cv2.findEssentialMat(USAC_ACCURATE) + cv2.recoverPose
  pycolmap          estimate_calibrated_two_view_geometry + estimate_two_view_geometry_pose
                    (ransac.max_error = --threshold)

Synthetic pairs (known truth): random 3D points (general), and a dominant plane with 10 % of
the points off it (the real-world "planar" case), 1 px noise, 30 % outliers.

Columns: median rotation error, median translation-direction error, pairs with a rotation error
> 5 deg (no pose counts as a failure), and for recon how many pairs it marked
rotation_reliable and the largest rotation error among them.

Run: PYTHONPATH=. python bench/bench_twoview_real.py [--size 1416] [--threshold 1.0]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "sceaux-castle"


def reference_model(cache: Path):
    """The cached pycolmap reconstruction of the 11 photos (built with `recon sfm` once)."""
    from recon.io import read_colmap

    model = cache / "sceaux" / "sparse" / "0"
    if not model.exists():
        print(f"building the reference model in {cache / 'sceaux'} (recon sfm, ~1 min) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "recon", "sfm", str(DATA), "-o", str(cache / "sceaux"),
                        "--max-image-size", "1600", "-q"], check=True, cwd=REPO)
    return read_colmap(model)


def real_pairs(rec, size: int, min_matches: int, cache: Path):
    """[(name1, name2, p1, p2, pinhole camera, cam2_from_cam1 truth)], points undistorted."""
    import cv2

    from calib import Camera
    from recon.features import detect_features, match_features
    from recon.io import read_image

    images = sorted(rec.images.values(), key=lambda im: im.name)
    cam_full = rec.cameras[images[0].camera_id]
    s = size / max(cam_full.size)
    cam = cam_full.scaled(s)
    f_cache = cache / f"sceaux_sift_{size}.npz"
    feats = {}
    if f_cache.exists():
        z = np.load(f_cache, allow_pickle=True)
        feats = z["feats"].item()
    else:
        for im in images:
            img = read_image(DATA / im.name)
            img = cv2.resize(img, cam.size, interpolation=cv2.INTER_AREA)
            feats[im.name] = detect_features(img)
        np.savez(f_cache, feats=np.array(feats, dtype=object))
    K = cam.K
    pin = Camera("PINHOLE", cam.width, cam.height, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]))
    pairs = []
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            a, b = images[i], images[j]
            m = match_features(feats[a.name], feats[b.name], ratio=0.8, mutual=True)
            if len(m) < min_matches:
                continue
            uv1, uv2 = m.points(feats[a.name], feats[b.name])
            n1, n2 = cam.cam_from_img(uv1), cam.cam_from_img(uv2)
            ok = np.all(np.isfinite(n1), 1) & np.all(np.isfinite(n2), 1)
            p1 = n1[ok] @ K[:2, :2].T + K[:2, 2]
            p2 = n2[ok] @ K[:2, :2].T + K[:2, 2]
            T = b.cam_from_world @ a.cam_from_world.inverse()
            pairs.append((a.name, b.name, p1, p2, pin, T))
    return pairs


def synthetic_pairs(num: int, seed: int = 0):
    from calib import Camera, Rigid3, matrix_from_axis_angle

    rng = np.random.default_rng(seed)
    w, h, f = 800, 600, 420.0
    cam = Camera("PINHOLE", w, h, np.array([f, f, (w - 1) / 2, (h - 1) / 2]))
    out = []
    for k in range(num):
        kind = "general" if k % 2 == 0 else "plane+10%"
        n = 1000
        xy = rng.uniform(-3.5, 3.5, (6 * n, 2))
        z = rng.uniform(2.5, 8.0, 6 * n)
        if kind != "general":
            plane = 6.0 + 0.3 * xy[:, 0] - 0.2 * xy[:, 1]
            z = np.where(rng.random(6 * n) < 0.1, z, plane)
        X = np.c_[xy, z]
        T = Rigid3(matrix_from_axis_angle(rng.normal(size=3) * 0.08), np.array([1.6, 0.4, 1.2]) * 0.5)
        (u1, v1), (u2, v2) = cam.project(X), cam.project(T.apply(X))
        ins = v1 & v2 & np.all((u1 >= 0) & (u1 <= [w - 1, h - 1]), 1) & np.all((u2 >= 0) & (u2 <= [w - 1, h - 1]), 1)
        u1, u2 = u1[ins][:n] + rng.normal(0, 1.0, (n, 2)), u2[ins][:n] + rng.normal(0, 1.0, (n, 2))
        bad = rng.choice(n, int(0.3 * n), replace=False)
        u2[bad] = rng.uniform([0, 0], [w - 1, h - 1], (bad.size, 2))
        out.append((f"synth-{kind}-{k}", "", u1, u2, cam, T))
    return out


def pose_error(R, t, T):
    from calib import rotation_angle_deg

    if R is None:
        return np.inf, np.inf
    t = np.ravel(t)
    tt = T.translation / np.linalg.norm(T.translation)
    nt = np.linalg.norm(t)
    et = float(np.degrees(np.arccos(np.clip(t @ tt / nt, -1, 1)))) if nt > 0 else np.inf
    return float(rotation_angle_deg(R @ T.rotation.T)), et


def run_estimators(p1, p2, cam, thr):
    """{name: (R, t, extra)} for every estimator on the same points."""
    import cv2

    from recon.twoview import TwoViewConfig, two_view_geometry

    out = {}
    t0 = time.perf_counter()
    g = two_view_geometry(p1, p2, cam, cam, config=TwoViewConfig(threshold_px=thr))
    dt = time.perf_counter() - t0
    pose = g.cam2_from_cam1
    out["recon"] = ((pose.rotation, pose.translation) if pose is not None else (None, None),
                    {"verdict": g.degeneracy.verdict, "rot_rel": g.degeneracy.rotation_reliable,
                     "pose_rel": g.degeneracy.pose_reliable, "sigma": g.degeneracy.rotation_sigma_deg}, dt)
    K = cam.K
    for name, flag in (("opencv RANSAC", cv2.RANSAC), ("opencv MAGSAC", cv2.USAC_MAGSAC),
                       ("opencv ACCURATE", cv2.USAC_ACCURATE)):
        t0 = time.perf_counter()
        E, mask = cv2.findEssentialMat(p1, p2, K, flag, 0.999, thr)
        res = (None, None)
        if E is not None and E.shape[0] >= 3:
            _, R, t, _ = cv2.recoverPose(E[:3], p1, p2, K, mask=mask)
            res = (R, t)
        out[name] = (res, {}, time.perf_counter() - t0)
    out["pycolmap"] = _pycolmap(p1, p2, cam, thr)
    return out


def _pycolmap(p1, p2, cam, thr):
    import pycolmap

    K = cam.K
    # COLMAP's pixel (0.5, 0.5) is the centre of the top-left pixel: shift by +0.5 at this edge.
    pc = pycolmap.Camera(model="PINHOLE", width=cam.width, height=cam.height,
                         params=[K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5])
    opts = pycolmap.TwoViewGeometryOptions()
    opts.ransac.max_error = thr
    opts.compute_relative_pose = True
    t0 = time.perf_counter()
    q1, q2 = p1 + 0.5, p2 + 0.5
    idx = np.repeat(np.arange(len(p1), dtype=np.uint32)[:, None], 2, 1)
    g = pycolmap.estimate_calibrated_two_view_geometry(pc, q1, pc, q2, idx, opts)
    cfg = str(g.config)
    res = (None, None)
    if len(g.inlier_matches) >= 5 and pycolmap.estimate_two_view_geometry_pose(pc, q1, pc, q2, g):
        T = g.cam2_from_cam1
        R = T.rotation.matrix()
        t = np.asarray(T.translation)
        if np.linalg.norm(t) > 0:
            res = (R, t)
    return res, {"config": cfg}, time.perf_counter() - t0


def table(title, rows_by_method, extra_recon):
    print(title)
    print(f"{'method':18s} {'pairs':>5s} {'median rot deg':>15s} {'median t deg':>13s} {'> 5 deg':>8s} "
          f"{'no pose':>8s} {'median s':>9s}")
    for name, errs in rows_by_method.items():
        e = np.array([x[0] for x in errs])
        r, t, dt = e[:, 0], e[:, 1], np.array([x[1] for x in errs])
        nopose = int(np.sum(~np.isfinite(r)))
        print(f"{name:18s} {len(r):5d} {np.median(r):15.3f} {np.median(t):13.3f} {int(np.sum(~(r <= 5))):8d} "
              f"{nopose:8d} {np.median(dt):9.3f}")
    ours = np.array([x[0][0] for x in rows_by_method["recon"]])
    for name, errs in rows_by_method.items():
        if name == "recon":
            continue
        other = np.array([x[0][0] for x in errs])
        print(f"  recon vs {name:16s}: recon more accurate on {int(np.sum(ours < other))} pairs, less on "
              f"{int(np.sum(ours > other))}; mean rotation error (capped at 5 deg) {np.mean(np.minimum(ours, 5)):.3f} "
              f"vs {np.mean(np.minimum(other, 5)):.3f}")
    rel = [(e, x) for e, x in extra_recon if x["rot_rel"]]
    prel = [(e, x) for e, x in extra_recon if x["pose_rel"]]
    worst = max((e[0] for e, _ in rel), default=float("nan"))
    worst_t = max((e[1] for e, _ in prel), default=float("nan"))
    print(f"recon rotation_reliable: {len(rel)}/{len(extra_recon)} pairs, worst rotation error among them "
          f"{worst:.3f} deg; pose_reliable: {len(prel)}, worst translation error among them {worst_t:.2f} deg")
    verdicts = {}
    for _, x in extra_recon:
        verdicts[x["verdict"]] = verdicts.get(x["verdict"], 0) + 1
    print(f"recon verdicts: {verdicts}")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1416, help="long side of the images features are detected on")
    ap.add_argument("--threshold", type=float, default=1.0, help="inlier threshold, px at --size")
    ap.add_argument("--min-matches", type=int, default=30)
    ap.add_argument("--synthetic", type=int, default=8, help="synthetic pairs (0 = none)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/twoview_ref"))
    ap.add_argument("--verbose", action="store_true", help="one line per pair")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)

    sets = []
    if DATA.exists():
        rec = reference_model(args.cache)
        title = (f"real: sceaux-castle pairs at {args.size} px, threshold {args.threshold} px, reference = "
                 "pycolmap reconstruction of all 11 photos")
        sets.append((title, real_pairs(rec, args.size, args.min_matches, args.cache), args.threshold))
    else:
        print(f"{DATA} not found: real pairs skipped", file=sys.stderr)
    if args.synthetic:
        title = ("synthetic: 800x600, f 420, 1000 matches, 1 px noise, 30 % outliers (general and "
                 "plane + 10 % off-plane), threshold 3 px")
        sets.append((title, synthetic_pairs(args.synthetic), 3.0))
    for title, pairs, thr in sets:
        rows: dict[str, list] = {}
        extra = []
        for n1, n2, p1, p2, cam, T in pairs:
            res = run_estimators(p1, p2, cam, thr)
            for name, ((R, t), x, dt) in res.items():
                e = pose_error(R, t, T)
                rows.setdefault(name, []).append((e, dt))
                if name == "recon":
                    extra.append((e, x))
            if args.verbose:
                line = " ".join(f"{k.split()[-1][:6]}={pose_error(*v[0], T)[0]:.3f}" for k, v in res.items())
                x = res["recon"][1]
                print(f"{n1} {n2} n={len(p1)} {line} [{x['verdict']} rel={x['rot_rel']} sig={x['sigma']:.3f} "
                      f"colmap={res['pycolmap'][1]['config']}]")
        table(title, rows, extra)


if __name__ == "__main__":
    main()
