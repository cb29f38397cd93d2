"""Relative pose on real calibrated pairs: recon.twoview vs PoseLib, OpenCV and pycolmap, same matches.

Pair sets (every estimator receives the SAME undistorted pinhole pixels and the same Sampson
threshold --threshold px):
  sceaux     every pair of the 11 Sceaux-castle photos (../shared/data/sceaux-castle) with at
             least --min-matches matches; reference poses and intrinsics from a pycolmap
             reconstruction of the 11 photos (`recon sfm ... --max-image-size 1600`, cached under
             --cache); our SIFT at --size (long side), mutual nearest neighbour + ratio 0.8.
  scannet    the 15 ScanNet pairs of ../shared/data/scannet-pairs (ground-truth K and
             T_0to1 = cam1_from_cam0), our SIFT at full size, same matching.
  synthetic  random 3D points (general) and a dominant plane with 10 % of the points off it,
             1 px noise, 30 % outliers, 3 px threshold.

Estimators:
  recon             two_view_geometry (default config: PoseLib hypotheses, our verdicts,
                    hypothesis-spread reliability); --variants adds +BA, method=ours, 0 hypotheses
  poselib           poselib.estimate_relative_pose (its defaults but the threshold)
  opencv RANSAC / MAGSAC / ACCURATE   cv2.findEssentialMat + cv2.recoverPose
  pycolmap          estimate_calibrated_two_view_geometry + estimate_two_view_geometry_pose

Columns: median rotation / translation-direction error (deg), pose AUC at 5/10/20 deg (the
SuperGlue protocol: error = max(rotation, translation angle), no pose = infinite), pairs with a
rotation error > 5 deg, pairs with a pose error > 5 deg, pairs without a pose, mean time per
pair; for recon, how many pairs it marked rotation_reliable / pose_reliable and the largest error
among them. --dump writes recon's per-pair sigma, spread, flags and errors (input of
bench/plot_twoview_sigma.py).

Run: PYTHONPATH=. python bench/bench_twoview_real.py [--variants] [--dump FILE] [--verbose]
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


def real_pairs(rec, size: int, min_matches: int, cache: Path, features: str = "sift"):
    """[(name1, name2, p1, p2, pinhole camera, cam2_from_cam1 truth)], points undistorted."""
    import cv2

    from calib import Camera
    from recon.features import detect_features, match_features
    from recon.io import read_image

    images = sorted(rec.images.values(), key=lambda im: im.name)
    cam_full = rec.cameras[images[0].camera_id]
    s = size / max(cam_full.size)
    cam = cam_full.scaled(s)
    f_cache = cache / f"sceaux_{features}_{size}.npz"
    feats = {}
    if f_cache.exists():
        z = np.load(f_cache, allow_pickle=True)
        feats = z["feats"].item()
    else:
        for im in images:
            img = read_image(DATA / im.name)
            img = cv2.resize(img, cam.size, interpolation=cv2.INTER_AREA)
            feats[im.name] = detect_features(img, method=features)
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
            pairs.append((a.name, b.name, p1, p2, pin, pin, T))
    return pairs


SCANNET = REPO.parent / "shared" / "data" / "scannet-pairs"


def scannet_pairs(size: int, cache: Path, features: str = "sift"):
    """[(name1, name2, p1, p2, pinhole camera 1, camera 2, cam2_from_cam1 truth)] for the 15 ScanNet
    pairs (SuperGlue's indoor sample; pairs_with_gt.txt: name0 name1 rot0 rot1 K0 K1 T_0to1, with
    T_0to1 = cam1_from_cam0); features at ``size`` long side (1296 = full size; K scaled with the
    image), same matching as Sceaux."""
    import cv2

    from calib import Camera, Rigid3, project_to_so3
    from recon.features import detect_features, match_features
    from recon.io import read_image

    f_cache = cache / f"scannet_{features}_{size}.npz"
    feats = np.load(f_cache, allow_pickle=True)["feats"].item() if f_cache.exists() else {}
    pairs = []
    for line in (SCANNET / "pairs_with_gt.txt").read_text().split("\n"):
        tok = line.split()
        if len(tok) < 38:
            continue
        v = np.array(tok[4:], float)
        K0, K1, T = v[:9].reshape(3, 3), v[9:18].reshape(3, 3), v[18:34].reshape(4, 4)
        cams = []
        for nm, K in ((tok[0], K0), (tok[1], K1)):
            if nm not in feats:
                img = read_image(SCANNET / "images" / nm)
                s = size / max(img.shape[:2])
                if s != 1:
                    img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)),
                                     interpolation=cv2.INTER_AREA)
                feats[nm] = detect_features(img, method=features)
            w, h = feats[nm].image_size
            s = max(w, h) / 1296.0  # pixel centres: (x + 0.5) * s - 0.5
            cx, cy = (K[0, 2] + 0.5) * s - 0.5, (K[1, 2] + 0.5) * s - 0.5
            cams.append(Camera("PINHOLE", w, h, np.array([K[0, 0] * s, K[1, 1] * s, cx, cy])))
        m = match_features(feats[tok[0]], feats[tok[1]], ratio=0.8, mutual=True)
        uv1, uv2 = m.points(feats[tok[0]], feats[tok[1]])
        pairs.append((tok[0], tok[1], uv1, uv2, cams[0], cams[1],
                      Rigid3(project_to_so3(T[:3, :3]), T[:3, 3])))
    np.savez(f_cache, feats=np.array(feats, dtype=object))
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
        out.append((f"synth-{kind}-{k}", "", u1, u2, cam, cam, T))
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


def _camdict(cam):
    K = cam.K
    return {"model": "PINHOLE", "width": cam.width, "height": cam.height,
            "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}


def run_estimators(p1, p2, cam1, cam2, thr, variants=()):
    """{name: ((R, t), extra, seconds)} for every estimator on the same points; ``variants``:
    extra recon rows, (name, TwoViewConfig keyword dict)."""
    import cv2
    import poselib

    from recon.twoview import TwoViewConfig, two_view_geometry

    out = {}
    for vname, kw in variants:
        t0 = time.perf_counter()
        g = two_view_geometry(p1, p2, cam1, cam2, config=TwoViewConfig(threshold_px=thr, **kw))
        pose = g.cam2_from_cam1
        out[vname] = ((pose.rotation, pose.translation) if pose is not None else (None, None), {},
                      time.perf_counter() - t0)
    t0 = time.perf_counter()
    g = two_view_geometry(p1, p2, cam1, cam2, config=TwoViewConfig(threshold_px=thr))
    dt = time.perf_counter() - t0
    pose = g.cam2_from_cam1
    out["recon"] = ((pose.rotation, pose.translation) if pose is not None else (None, None),
                    {"verdict": g.degeneracy.verdict, "rot_rel": g.degeneracy.rotation_reliable,
                     "pose_rel": g.degeneracy.pose_reliable, "sigma": g.degeneracy.rotation_sigma_deg,
                     "t_sigma": g.degeneracy.translation_sigma_deg, "spread": g.degeneracy.rotation_spread_deg,
                     "t_spread": g.degeneracy.translation_spread_deg, "ambiguous": g.degeneracy.pose_ambiguous,
                     "matches_inl": int(g.inliers.sum())}, dt)
    t0 = time.perf_counter()
    pp, _info = poselib.estimate_relative_pose(p1, p2, _camdict(cam1), _camdict(cam2),
                                               {"max_epipolar_error": thr}, {})
    out["poselib"] = ((pp.R, pp.t), {}, time.perf_counter() - t0)
    # OpenCV takes one K: normalise both views' pixels by their own K, then use K = I and a
    # threshold in normalised units (thr / mean focal).
    n1, n2 = cam1.cam_from_img(p1), cam2.cam_from_img(p2)
    f = 0.25 * (cam1.K[0, 0] + cam1.K[1, 1] + cam2.K[0, 0] + cam2.K[1, 1])
    for name, flag in (("opencv RANSAC", cv2.RANSAC), ("opencv MAGSAC", cv2.USAC_MAGSAC),
                       ("opencv ACCURATE", cv2.USAC_ACCURATE)):
        t0 = time.perf_counter()
        res, E = (None, None), None
        if len(n1) >= 5:  # OpenCV's USAC asserts on fewer points than a minimal sample
            E, mask = cv2.findEssentialMat(n1, n2, np.eye(3), flag, 0.999, thr / f)
        if E is not None and E.shape[0] >= 3:
            _, R, t, _ = cv2.recoverPose(E[:3], n1, n2, np.eye(3), mask=mask)
            res = (R, t)
        out[name] = (res, {}, time.perf_counter() - t0)
    out["pycolmap"] = _pycolmap(p1, p2, cam1, cam2, thr)
    return out


def _pycolmap(p1, p2, cam1, cam2, thr):
    import pycolmap

    # COLMAP's pixel (0.5, 0.5) is the centre of the top-left pixel: shift by +0.5 at this edge.
    pcs = []
    for cam in (cam1, cam2):
        K = cam.K
        pcs.append(pycolmap.Camera(model="PINHOLE", width=cam.width, height=cam.height,
                                   params=[K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]))
    opts = pycolmap.TwoViewGeometryOptions()
    opts.ransac.max_error = thr
    opts.compute_relative_pose = True
    t0 = time.perf_counter()
    q1, q2 = p1 + 0.5, p2 + 0.5
    idx = np.repeat(np.arange(len(p1), dtype=np.uint32)[:, None], 2, 1)
    g = pycolmap.estimate_calibrated_two_view_geometry(pcs[0], q1, pcs[1], q2, idx, opts)
    cfg = str(g.config)
    res = (None, None)
    if len(g.inlier_matches) >= 5 and pycolmap.estimate_two_view_geometry_pose(pcs[0], q1, pcs[1], q2, g):
        T = g.cam2_from_cam1
        R = T.rotation.matrix()
        t = np.asarray(T.translation)
        if np.linalg.norm(t) > 0:
            res = (R, t)
    return res, {"config": cfg}, time.perf_counter() - t0


def pose_auc(errors, thresholds=(5.0, 10.0, 20.0)):
    """Area under the recall-vs-error curve up to each threshold, in percent (SuperGlue's
    evaluation: error = max(rotation, translation-direction angle), no pose = infinite)."""
    e = np.sort(np.asarray(errors, float))
    rec = (np.arange(len(e)) + 1) / len(e)
    e, rec = np.r_[0.0, e], np.r_[0.0, rec]
    out = []
    for th in thresholds:
        i = np.searchsorted(e, th)
        x, y = np.r_[e[:i], th], np.r_[rec[:i], rec[i - 1]]
        out.append(100.0 * np.trapezoid(y, x) / th)
    return out


def table(title, rows_by_method, extra_recon):
    print(title)
    print(f"{'method':16s} {'pairs':>5s} {'med rot':>8s} {'med t':>7s} {'AUC@5':>6s} {'AUC@10':>6s} "
          f"{'AUC@20':>6s} {'rot>5':>5s} {'pose>5':>6s} {'no pose':>7s} {'ms/pair':>8s}")
    for name, errs in rows_by_method.items():
        e = np.array([x[0] for x in errs])
        r, t, dt = e[:, 0], e[:, 1], np.array([x[1] for x in errs])
        a5, a10, a20 = pose_auc(np.maximum(r, t))
        nopose = int(np.sum(~np.isfinite(r)))
        print(f"{name:16s} {len(r):5d} {np.median(r):8.3f} {np.median(t):7.2f} {a5:6.1f} {a10:6.1f} {a20:6.1f} "
              f"{int(np.sum(~(r <= 5))):5d} {int(np.sum(~(np.maximum(r, t) <= 5))):6d} {nopose:7d} "
              f"{1000 * np.mean(dt):8.1f}")
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
    ap.add_argument("--scannet-size", type=int, default=1296,
                    help="long side of the ScanNet images features are detected on (1296 = full size)")
    ap.add_argument("--features", default="sift", choices=("sift", "rootsift", "asift"),
                    help="recon.features.detect_features method of every real set")
    ap.add_argument("--threshold", type=float, default=1.0, help="inlier threshold, px at --size")
    ap.add_argument("--min-matches", type=int, default=30)
    ap.add_argument("--synthetic", type=int, default=8, help="synthetic pairs (0 = none)")
    ap.add_argument("--sets", default="sceaux,scannet,synthetic", help="comma-separated pair sets to run")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/twoview_ref"))
    ap.add_argument("--dump", type=Path, default=None,
                    help="write recon's per-pair sigma / error / flags as JSON (docs/twoview_sigma.png input)")
    ap.add_argument("--verbose", action="store_true", help="one line per pair")
    ap.add_argument("--variants", action="store_true",
                    help="also recon with the two-view BA, with our LO-MSAC (+ BA), without hypotheses")
    args = ap.parse_args()
    variants = ([("recon +BA", {"refine": True}), ("recon ours", {"method": "ours"}),
                 ("recon 0-hyp", {"num_hypotheses": 0})] if args.variants else [])
    args.cache.mkdir(parents=True, exist_ok=True)
    want = set(args.sets.split(","))

    sets = []
    if "sceaux" in want and DATA.exists():
        rec = reference_model(args.cache)
        title = (f"real: sceaux-castle pairs, {args.features} at {args.size} px, threshold "
                 f"{args.threshold} px, reference = pycolmap reconstruction of all 11 photos")
        pairs = real_pairs(rec, args.size, args.min_matches, args.cache, args.features)
        sets.append(("sceaux", title, pairs, args.threshold))
    if "scannet" in want and SCANNET.exists():
        title = (f"real: scannet-pairs (15 indoor pairs, ground truth), {args.features} at "
                 f"{args.scannet_size} px, threshold {args.threshold} px")
        pairs = scannet_pairs(args.scannet_size, args.cache, args.features)
        sets.append(("scannet", title, pairs, args.threshold))
    if "synthetic" in want and args.synthetic:
        title = ("synthetic: 800x600, f 420, 1000 matches, 1 px noise, 30 % outliers (general and "
                 "plane + 10 % off-plane), threshold 3 px")
        sets.append(("synthetic", title, synthetic_pairs(args.synthetic), 3.0))
    dump = []
    for set_name, title, pairs, thr in sets:
        rows: dict[str, list] = {}
        extra = []
        for n1, n2, p1, p2, cam1, cam2, T in pairs:
            res = run_estimators(p1, p2, cam1, cam2, thr, variants)
            for name, ((R, t), x, dt) in res.items():
                e = pose_error(R, t, T)
                rows.setdefault(name, []).append((e, dt))
                if name == "recon":
                    extra.append((e, x))
                    dump.append({"set": set_name, "pair": f"{n1} {n2}", "rot_err": e[0], "t_err": e[1],
                                 "matches": len(p1), **{k: (v.item() if hasattr(v, "item") else v)
                                                        for k, v in x.items()}})
            if args.verbose:
                line = " ".join(f"{k.split()[-1][:6]}={pose_error(*v[0], T)[0]:.3f}" for k, v in res.items())
                x = res["recon"][1]
                print(f"{n1} {n2} n={len(p1)} {line} [{x['verdict']} rel={x['rot_rel']} sig={x['sigma']:.3f} "
                      f"colmap={res['pycolmap'][1]['config']}]", flush=True)
        table(title, rows, extra)
    if args.dump:
        import json

        args.dump.write_text(json.dumps(dump, indent=1, default=float))


if __name__ == "__main__":
    main()
