"""Stereo rigs: replay corner-set / recipe selection rules offline on the same folds (issue 26).

    PYTHONPATH=. python bench/study_stereo_corner_rules.py collect 0 1 2 ... --out DIR [--data ../shared/data]
    PYTHONPATH=. python bench/study_stereo_corner_rules.py replay --out DIR

``collect``: for each rig of ``bench/bench_stereo_corner_sets.py`` (by index: 0 OpenCV's 13 pairs,
1-6 the 9-pair subsets, 7-11 the renders) and each outer held-out group, every candidate of
:data:`CANDIDATES` (recipe / corner set it is fitted on) is fitted on the training pairs and
measured on the held-out pairs (outer), and scored by 5 interleaved inner folds of the training
pairs (inner), both on every corner set's corners; per-pair sums of squares go to
``DIR/study_<rig>.pkl``. ``replay`` prints each fixed candidate's outer ratios to OpenCV's recipe
(fitted on the set measured) and how many of the 24 cells each selection rule puts at or below
OpenCV: rules see only the inner scores, as ``choose_rig`` would inside each training set.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CANDIDATES = [("opencv", "sb"), ("opencv", "subpix"), ("recon", "sb"), ("recon", "subpix"),
              ("joint", "sb"), ("joint", "subpix"), ("joint", "mean"), ("opencv", "mean"),
              ("joint-same-focal", "sb"), ("joint-same-focal", "subpix"), ("opencv-joint", "sb")]
SETS = ("sb", "subpix")


def _recipe(name):
    from calib.stereo_select import RigRecipe, recipe

    if name == "opencv-joint":
        return RigRecipe("opencv-joint", "OpenCV's per-camera fits, then joint", per_camera="opencv", joint=True)
    return recipe(name)


def collect(indices, out: Path, data: Path) -> None:
    from bench_stereo_corner_sets import all_sets, blend

    from calib.stereo_select import FOLD_CRITERIA, _folds, fit_rig, pair_vertical_disparity

    def obs(sub, c):
        return blend(sub["sb"], sub["subpix"], 0.5) if c == "mean" else sub[c]

    def measure(rig, sets, idx):
        return {e: [(float(np.sum(d ** 2)), len(d)) for d in (pair_vertical_disparity(rig, sets[e][0][i], sets[e][1][i])
                                                              for i in idx)] for e in sets}

    rigs = all_sets(out / "sets.pkl", data)
    for ri in indices:
        name, sets, size, groups = rigs[ri]
        n, res, t0 = len(sets["sb"][0]), {}, time.time()
        for gi, test in enumerate(groups):
            train = [i for i in range(n) if i not in test]
            sub = {c: ([L[i] for i in train], [R[i] for i in train]) for c, (L, R) in sets.items()}
            for r, c in CANDIDATES:
                crit = FOLD_CRITERIA if r == "opencv" else (100, 1e-10)
                try:
                    outer = measure(fit_rig(*obs(sub, c), size, _recipe(r), criteria=crit), sets, test)
                except Exception as e:  # noqa: BLE001 - a candidate that cannot be fitted is recorded, not fatal
                    outer = None
                    print(f"  outer {name} {r}/{c} failed: {e}")
                inner: dict | None = {}
                for g in _folds(len(train), 5):
                    tr = [i for i in range(len(train)) if i not in g]
                    s2 = {k: ([L[i] for i in tr], [R[i] for i in tr]) for k, (L, R) in sub.items()}
                    try:
                        rig = fit_rig(*obs(s2, c), size, _recipe(r), criteria=FOLD_CRITERIA)
                        for e, v in measure(rig, sub, g).items():
                            inner.setdefault(e, []).extend(v)
                    except Exception as e:  # noqa: BLE001
                        inner = None
                        print(f"  inner {name} {r}/{c} failed: {e}")
                        break
                res[(gi, r, c)] = (outer, inner)
            print(f"{name} group {gi}: {time.time() - t0:.1f} s", flush=True)
        (out / f"study_{ri}.pkl").write_bytes(pickle.dumps((name, res)))


def _rms(v, e):
    if v is None:
        return float("inf")
    ss, n = sum(a for a, _ in v[e]), sum(b for _, b in v[e])
    return float(np.sqrt(ss / n))


def replay(out: Path) -> None:
    studies = sorted((int(p.stem.split("_")[1]), pickle.loads(p.read_bytes())) for p in out.glob("study_*.pkl"))

    def inner(res, gi, m, e):
        return _rms(res[(gi, *m)][1], e)

    def outer_ratio(res, choice, e):
        ss = sum(sum(a for a, _ in res[(g, *choice[g])][0][e]) for g in choice)
        ref = sum(sum(a for a, _ in res[(g, "opencv", e)][0][e]) for g in choice)
        return float(np.sqrt(ss / ref))

    def worst_ratio(res, gi, m):  # the bar's own criterion, on the inner scores
        return max(inner(res, gi, m, e) / inner(res, gi, ("opencv", e), e) for e in SETS)

    def minmax(cands, default, margin):
        def rule(res, gi):
            best = min(cands, key=lambda m: worst_ratio(res, gi, m))
            return best if worst_ratio(res, gi, best) < margin * worst_ratio(res, gi, default) else default
        return rule

    def both(default, other, margin):
        def rule(res, gi):
            return other if all(inner(res, gi, other, e) < margin * inner(res, gi, default, e) for e in SETS) \
                else default
        return rule

    def former(res, gi):
        s = {c: inner(res, gi, ("joint", c), c) for c in SETS}
        return ("joint", "sb") if s["sb"] < 0.9 * s["subpix"] else ("joint", "subpix")

    print("fixed candidates: outer ratio to OpenCV on SB / on re-refined corners (* both at or below)")
    for _, (name, res) in studies:
        groups = sorted({k[0] for k in res})
        cells = []
        for m in CANDIDATES:
            try:
                a, b = (outer_ratio(res, dict.fromkeys(groups, m), e) for e in SETS)
                cells.append(f"{m[0]}/{m[1]} {a:.3f}/{b:.3f}{'*' if max(a, b) <= 1 else ''}")
            except TypeError:
                cells.append(f"{m[0]}/{m[1]} failed")
        print(f"  {name}: " + "; ".join(cells))
    two = [("joint", "sb"), ("joint", "subpix")]
    rules = {"former (re-refined unless SB < 0.9x, no rescue)": former}
    for margin in (1.0, 0.97, 0.95, 0.9):
        rules[f"both sets, SB kept unless re-refined < {margin}x on each"] = both(two[0], two[1], margin)
        rules[f"worst ratio to OpenCV, joint SB/re-refined, margin {margin}"] = minmax(two, two[0], margin)
        rules[f"worst ratio to OpenCV, all 11 candidates, margin {margin}"] = minmax(CANDIDATES, ("opencv", "sb"),
                                                                                      margin)
    print("\nselection rules: cells at or below OpenCV, worst ratio")
    for label, rule in rules.items():
        ok, worst = 0, 0.0
        for _, (_name, res) in studies:
            choice = {g: rule(res, g) for g in sorted({k[0] for k in res})}
            rs = [outer_ratio(res, choice, e) for e in SETS]
            ok += sum(r <= 1 for r in rs)
            worst = max(worst, *rs)
        print(f"  {label}: {ok}/{2 * len(studies)}, worst {worst:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("collect", "replay"))
    ap.add_argument("rigs", nargs="*", type=int, help="collect: rig indices")
    ap.add_argument("--out", type=Path, required=True, help="folder of the per-rig pickles")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "collect":
        collect(args.rigs, args.out, args.data)
    else:
        replay(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
