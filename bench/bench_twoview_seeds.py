"""Relative pose over many synthetic seeds: the current recon.twoview against an older version of
itself (default: the seven-point era, commit 34f3c4c), OpenCV USAC_ACCURATE and pycolmap, every
estimator on the same matches, errors measured against the truth AND against the
maximum-likelihood (ML) pose.

Pairs: ``make_pair`` of tests/test_twoview.py (the generator of
``test_pose_accuracy_noise_and_outliers``): 1500 matches of random 3D points, 800x600, f 420 px,
seed s -> ``make_pair(np.random.default_rng(s), noise=..., outlier_frac=...)``; seed s of the
1 px / 30 % setting is the test's seed s. ML pose: least-squares two-view bundle adjustment on
the TRUE inliers started at the truth (``refine_two_view(..., loss="linear")``), the estimation
limit; "to ML" is the angle between an estimate and that pose, which removes the part of the
error that the noise of the seed forces on every estimator.

  now        recon.twoview.two_view_geometry of this checkout
  REV        the same call on the code of --base REV (git archive of REV into a temporary
             folder, run in a subprocess with its own PYTHONPATH so the two versions never mix)
  ACCURATE   cv2.findEssentialMat(USAC_ACCURATE) + cv2.recoverPose
  pycolmap   estimate_calibrated_two_view_geometry + estimate_two_view_geometry_pose

Per setting: mean / median / 90th percentile of the rotation error (deg) and of the
translation-direction error (deg) to truth and to ML, pairs > 5 deg off (or without a pose);
then paired: on how many seeds "now" is closer than each other estimator, and the paired mean
difference (now - other) with a 95 % bootstrap interval over seeds (negative = now better).

Run: OMP_NUM_THREADS=1 nice -n 5 env PYTHONPATH=. python bench/bench_twoview_seeds.py
       [--seeds 100] [--settings 1.0:0.3 0.5:0.3 1.0:0.5] [--base 34f3c4c] [--no-peers]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# worker: runs two_view_geometry of whatever recon is first on PYTHONPATH (this checkout or the
# --base archive); it imports only what every version has (calib.Camera, recon.twoview).
# ---------------------------------------------------------------------------------------------
def _worker(pairs_file: Path, out_file: Path) -> None:
    from calib import Camera
    from recon.twoview import TwoViewConfig, two_view_geometry

    z = np.load(pairs_file)
    n, thr = int(z["num"]), float(z["threshold"])
    R = np.full((n, 3, 3), np.nan)
    t = np.full((n, 3), np.nan)
    verdict, dt, ninl = [], np.zeros(n), np.zeros(n, int)
    for i in range(n):
        cam = Camera("PINHOLE", int(z["size"][0]), int(z["size"][1]), z["params"])
        t0 = time.perf_counter()
        g = two_view_geometry(z[f"uv1_{i}"], z[f"uv2_{i}"], cam, cam, config=TwoViewConfig(threshold_px=thr))
        dt[i] = time.perf_counter() - t0
        verdict.append(g.degeneracy.verdict)
        ninl[i] = int(np.sum(g.inliers)) if g.inliers is not None else 0
        if g.cam2_from_cam1 is not None:
            R[i], t[i] = g.cam2_from_cam1.rotation, g.cam2_from_cam1.translation
    np.savez(out_file, R=R, t=t, verdict=np.array(verdict), time=dt, inliers=ninl)


def _run_version(root: Path, pairs_file: Path, out_file: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root))
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(pairs_file), str(out_file)],
                   check=True, cwd=root, env=env)
    z = np.load(out_file)
    return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------------------------
# pairs, ML pose, peers
# ---------------------------------------------------------------------------------------------
def make_pairs(seeds: int, noise: float, outlier_frac: float):
    """[(uv1, uv2, cam, truth cam2_from_cam1, is_inlier)] from the test's generator, seed s = rng(s)."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_twoview import make_pair

    out = []
    for s in range(seeds):
        uv1, uv2, cam, _, T, truth = make_pair(np.random.default_rng(s), noise=noise, outlier_frac=outlier_frac)
        out.append((uv1, uv2, cam, T, truth))
    return out


def ml_pose(uv1, uv2, cam, T, truth):
    """(R, t) of the ML pose: tests/test_twoview.py's ml_pose (least-squares BA on the true inliers)."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_twoview import ml_pose as ml

    P = ml(uv1, uv2, cam, cam, T, truth)
    return P.rotation, P.translation


def opencv_accurate(uv1, uv2, cam, thr):
    import cv2

    E, mask = cv2.findEssentialMat(uv1, uv2, cam.K, cv2.USAC_ACCURATE, 0.999, thr)
    if E is None or E.shape[0] < 3:
        return None, None
    _, R, t, _ = cv2.recoverPose(E[:3], uv1, uv2, cam.K, mask=mask)
    return R, np.ravel(t)


def angles(R, t, R_ref, t_ref):
    """(rotation angle deg, translation-direction angle deg) between (R, t) and (R_ref, t_ref)."""
    from calib import rotation_angle_deg

    if R is None or not np.all(np.isfinite(R)) or not np.linalg.norm(t) > 0:
        return np.inf, np.inf
    a, b = np.ravel(t) / np.linalg.norm(t), np.ravel(t_ref) / np.linalg.norm(t_ref)
    return float(rotation_angle_deg(R @ R_ref.T)), float(np.degrees(np.arccos(np.clip(a @ b, -1, 1))))


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------
def bootstrap_mean_ci(d: np.ndarray, reps: int = 10000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, (reps, d.size))
    m = d[idx].mean(1)
    return float(np.percentile(m, 2.5)), float(np.percentile(m, 97.5))


def print_setting(title: str, errs: dict[str, np.ndarray], extra: dict[str, dict]):
    """errs[name]: [seeds, 4] = rotation to truth, t to truth, rotation to ML, t to ML (deg)."""
    print(title)
    cols = ("rot to truth", "t to truth", "rot to ML", "t to ML")
    print(f"{'estimator':10s} | " + " | ".join(f"{c + ' mean/med/p90':>26s}" for c in cols) + " | > 5 deg | s/pair")
    for name, e in errs.items():
        cells = []
        for k in range(4):
            v = np.minimum(e[:, k], 5.0)  # a failure counts at 5 deg in the mean
            cells.append(f"{v.mean():8.4f} {np.median(v):8.4f} {np.percentile(v, 90):8.4f}")
        gross = int(np.sum(~(e[:, 0] <= 5)))
        print(f"{name:10s} | " + " | ".join(f"{c:>26s}" for c in cells) + f" | {gross:7d} | {extra[name]['time']:.3f}")
    print("paired, now - other (negative = now closer; failures capped at 5 deg):")
    now = np.minimum(errs["now"], 5.0)
    for name, e in errs.items():
        if name == "now":
            continue
        o = np.minimum(e, 5.0)
        cells = []
        for k in (0, 2, 1, 3):
            d = now[:, k] - o[:, k]
            lo, hi = bootstrap_mean_ci(d)
            cells.append(f"{cols[k]}: now closer on {int(np.sum(d < 0))}/{d.size}, "
                         f"mean {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}], median {np.median(d):+.4f}")
        print(f"  vs {name}:\n    " + "\n    ".join(cells))
    for name, x in extra.items():
        if "verdicts" in x:
            print(f"  {name} verdicts: {x['verdicts']}; mean inliers {x['inliers']:.0f}")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=100, help="pairs per setting (seeds 0 .. N-1)")
    ap.add_argument("--settings", nargs="+", default=["1.0:0.3", "0.5:0.3", "1.0:0.5"],
                    help="NOISE_PX:OUTLIER_FRACTION pairs (default: the test's 1 px / 30 %%, then 0.5 px, 50 %%)")
    ap.add_argument("--threshold", type=float, default=3.0, help="inlier threshold, px (the test's 3 px)")
    ap.add_argument("--base", default="34f3c4c", help="git revision to compare with ('' = none)")
    ap.add_argument("--no-peers", action="store_true", help="leave out OpenCV and pycolmap")
    ap.add_argument("--save", type=Path, help="write every error array to this .npz")
    ap.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(*args.worker)
        return

    sys.path.insert(0, str(REPO / "bench"))
    from bench_twoview_real import _pycolmap

    saved = {}
    with tempfile.TemporaryDirectory(prefix="bench_tv_seeds_") as tmp:
        tmp = Path(tmp)
        versions = {"now": REPO}
        if args.base:
            base_root = tmp / "base"
            base_root.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.base], check=True, capture_output=True)
            subprocess.run(["tar", "-x", "-C", str(base_root)], input=archive.stdout, check=True)
            versions[args.base] = base_root
        for setting in args.settings:
            noise, frac = (float(x) for x in setting.split(":"))
            pairs = make_pairs(args.seeds, noise, frac)
            cam = pairs[0][2]
            pairs_file = tmp / "pairs.npz"
            arrays = {f"uv1_{i}": p[0] for i, p in enumerate(pairs)} | {f"uv2_{i}": p[1] for i, p in enumerate(pairs)}
            np.savez(pairs_file, num=len(pairs), threshold=args.threshold, size=np.array(cam.size),
                     params=cam.params, **arrays)
            truth = [(p[3].rotation, p[3].translation) for p in pairs]
            ml = [ml_pose(*p) for p in pairs]
            ests: dict[str, list] = {}
            extra: dict[str, dict] = {}
            for name, root in versions.items():
                out = _run_version(root, pairs_file, tmp / f"out_{len(ests)}.npz")
                ests[name] = list(zip(out["R"], out["t"]))
                v, c = np.unique(out["verdict"], return_counts=True)
                extra[name] = {"time": float(np.median(out["time"])), "verdicts": dict(zip(v.tolist(), c.tolist())),
                               "inliers": float(out["inliers"].mean())}
            if not args.no_peers:
                for name, fn in (("ACCURATE", lambda p: opencv_accurate(p[0], p[1], p[2], args.threshold)),
                                 ("pycolmap", lambda p: _pycolmap(p[0], p[1], p[2], args.threshold)[0])):
                    t0 = time.perf_counter()
                    ests[name] = [fn(p) for p in pairs]
                    extra[name] = {"time": (time.perf_counter() - t0) / len(pairs)}
            ml_self = np.array([angles(*m, *tr) for m, tr in zip(ml, truth)])
            errs = {name: np.array([angles(*e, *tr) + angles(*e, *m) for e, tr, m in zip(es, truth, ml)])
                    for name, es in ests.items()}
            errs["ML"] = np.c_[ml_self, np.zeros_like(ml_self)]
            extra["ML"] = {"time": float("nan")}
            title = (f"setting: {noise:g} px noise, {100 * frac:g} % outliers, 1500 matches, 800x600, f 420, "
                     f"threshold {args.threshold:g} px, seeds 0-{args.seeds - 1}")
            print_setting(title, errs, extra)
            sys.stdout.flush()
            saved |= {f"{setting}/{k}": v for k, v in errs.items()}
    if args.save:
        np.savez(args.save, **saved)


if __name__ == "__main__":
    main()
