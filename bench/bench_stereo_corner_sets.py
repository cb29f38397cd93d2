"""Stereo rigs: which corner set to fit on, with the noise of the comparison.

    PYTHONPATH=. python bench/bench_stereo_corner_sets.py [--data ../shared/data] [--cache FILE] [--seed 0]

Same rigs, folds and score as ``bench/bench_stereo_calib.py`` (OpenCV's 13 sample pairs with
5 folds, 6 random 9-pair subsets, the 5 rendered rigs): every held-out pair is rectified with
rigs fitted on the training pairs only. Rows compare, on each evaluation corner set, OpenCV's
recipe fitted on THAT set (its home advantage) with: recon's current rule (``choose_rig``), the
former corner rule (re-refined corners unless SB's own left-out score is below 0.9 x theirs, no
rescue), the
``joint`` recipe fitted on corners w * SB + (1 - w) * re-refined (w = 1, 0.5, 0), and an adaptive
w = inverse-variance weight from each set's inner left-out score. Cells: RMS ratio to OpenCV and
its 90 % bootstrap interval over the held-out pairs (resampled together for both rigs).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def all_sets(cache: Path | None, data_root: Path, seed: int = 0):
    """Every rig: (name, corner sets, image size, held-out groups). ``seed`` 0: the rigs of
    ``bench/bench_stereo_calib.py``; another seed: other random subsets of the real pairs and the
    rendered rigs with other board poses, noise and blur draws (rigs the rule was not chosen on)."""
    import bench_stereo_calib as S

    from calib.boards import BoardSpec
    from calib.stereo_select import _folds

    if cache is not None and cache.exists():
        return pickle.loads(cache.read_bytes())
    out = []
    data = data_root / "opencv-stereo-9x6"
    lp = sorted(str(p) for p in data.glob("left*.jpg"))
    rp = sorted(str(p) for p in data.glob("right*.jpg"))
    sets, size = S.detect_sets(lp, rp, BoardSpec("chessboard", 9, 6, 1.0))
    n = len(sets["sb"][0])
    out.append(("real full", sets, size, _folds(n, 5)))
    rng = np.random.default_rng(seed)  # seed 0: the subsets of bench_stereo_calib.py
    for k in range(6):
        train = sorted(rng.choice(n, 9, replace=False).tolist())
        test = [i for i in range(n) if i not in train]
        sub = {c: ([L[i] for i in train + test], [R[i] for i in train + test]) for c, (L, R) in sets.items()}
        out.append((f"real subset {k}", sub, size, [list(range(9, n))]))
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in S.rigs().items():
            d = S.render(name, spec, Path(tmp) / f"rig{len(out)}", seed=7 + seed)
            lp = sorted(str(p) for p in (d / "left").glob("*.png"))
            rp = sorted(str(p) for p in (d / "right").glob("*.png"))
            sets, size = S.detect_sets(lp, rp, spec[0])
            sets["true"] = S.true_set(sets, d / "gt.json")
            out.append((name, sets, size, _folds(len(sets["sb"][0]), 5)))
    if cache is not None:
        cache.write_bytes(pickle.dumps(out))
    return out


def blend(a, b, w):
    """(left, right) observations with corners w * a + (1 - w) * b (common ids)."""
    from calib.calibrate import Observation

    out = []
    for va, vb in zip(a, b):
        views = []
        for oa, ob in zip(va, vb):
            common, ia, ib = np.intersect1d(oa.ids, ob.ids, return_indices=True)
            mix = w * oa.corners[ia] + (1 - w) * ob.corners[ib]
            views.append(Observation(oa.name, mix, oa.object_points[ia], common))
        out.append(views)
    return tuple(out)


def main() -> int:
    from calib.stereo_select import (
        FOLD_CRITERIA,
        choose_rig,
        fit_rig,
        pair_vertical_disparity,
        recipe,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="the shared data folder (holds opencv-stereo-9x6)")
    ap.add_argument("--seed", type=int, default=0, help="0: the rigs of bench_stereo_calib.py; other: new draws")
    ap.add_argument("--cache", type=Path, default=None, help="pickle of the detected corner sets")
    ap.add_argument("--rule-only", action="store_true",
                    help="only recon's rule and the former corner rule (no fixed blends; faster)")
    args = ap.parse_args()
    methods = ["recon (current rule)", "former corner rule", "joint w=1 (SB)", "joint w=0.5",
               "joint w=0 (re-refined)", "joint adaptive w"]
    if args.rule_only:
        methods = methods[:2]
    rng = np.random.default_rng(0)
    print("| rig | eval corners | OpenCV fitted on them (px) | " + " | ".join(methods) + " |")
    print("|---|---|---|" + "---|" * len(methods))
    met = dict.fromkeys(methods, 0)
    cells = 0
    for name, sets, size, groups in all_sets(args.cache, args.data, args.seed):
        n = len(sets["sb"][0])
        dv: dict = {}
        for test in groups:
            train = [i for i in range(n) if i not in test]
            sub = {c: ([L[i] for i in train], [R[i] for i in train]) for c, (L, R) in sets.items() if c != "true"}
            rigs = {f"opencv/{c}": fit_rig(*sub[c], size, recipe("opencv"), criteria=FOLD_CRITERIA)
                    for c in ("sb", "subpix")}
            ch = choose_rig(sub, size, folds=5, threshold_px=1.0)
            rigs[methods[0]] = fit_rig(*sub[ch.corners], size, recipe(ch.recipe))
            # the rule before issue 26's change: re-refined corners unless SB's own score is below
            # 0.9 x theirs (each set scored on its own corners; no rescue)
            own = {c: ch.scores[c]["joint"].rms_px for c in ("sb", "subpix")}
            former = "sb" if own["sb"] < 0.9 * own["subpix"] else "subpix"
            rigs[methods[1]] = fit_rig(*sub[former], size, recipe("joint"))
            if not args.rule_only:
                for w, m in ((1.0, methods[2]), (0.5, methods[3]), (0.0, methods[4])):
                    rigs[m] = fit_rig(*blend(sub["sb"], sub["subpix"], w), size, recipe("joint"))
                wa = own["subpix"] ** 2 / (own["sb"] ** 2 + own["subpix"] ** 2)
                rigs[methods[5]] = fit_rig(*blend(sub["sb"], sub["subpix"], wa), size, recipe("joint"))
            print(f"  {name}: rule {ch.recipe}/{ch.corners}{' (rescued)' if ch.rescued else ''}, former {former}",
                  file=sys.stderr, flush=True)
            for m, rig in rigs.items():
                for e, (L, R) in sets.items():
                    dv.setdefault((m, e), []).extend(pair_vertical_disparity(rig, L[i], R[i]) for i in test)
        for e in [x for x in ("sb", "subpix", "true") if x in sets]:
            ref = "opencv/subpix" if e == "subpix" else "opencv/sb"
            ss_ref = np.array([np.sum(x ** 2) for x in dv[(ref, e)]])
            cnt = sum(len(x) for x in dv[(ref, e)])
            idx = rng.integers(0, len(ss_ref), (2000, len(ss_ref)))
            row = []
            for m in methods:
                ss = np.array([np.sum(x ** 2) for x in dv[(m, e)]])
                r = float(np.sqrt(ss.sum() / ss_ref.sum()))
                lo, hi = np.percentile(np.sqrt(ss[idx].sum(1) / ss_ref[idx].sum(1)), [5, 95])
                row.append(f"{r:.3f} [{lo:.2f}-{hi:.2f}]")
                met[m] += e != "true" and r <= 1.0
            cells += e != "true"
            print(f"| {name} | {e} | {np.sqrt(ss_ref.sum() / cnt):.4f} | " + " | ".join(row) + " |", flush=True)
    print("cells at or below OpenCV (SB and re-refined evaluations): "
          + ", ".join(f"{m} {v}/{cells}" for m, v in met.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
