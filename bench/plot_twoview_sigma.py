"""Reported rotation sigma vs measured rotation error of recon.twoview, per pair set.

Input: the --dump JSON of bench/bench_twoview_real.py. Output: a log-log scatter (PNG) with the
pairs marked rotation_reliable filled, the 0.5 deg bound and the sigma = error line.

Run: PYTHONPATH=. python bench/plot_twoview_sigma.py /tmp/twoview_dump.json docs/twoview_sigma.png
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(src: str, dst: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(src) as fh:
        rows = json.load(fh)
    fig, ax = plt.subplots(figsize=(6.4, 5.0), dpi=120)
    lo, hi = 3e-3, 200.0
    for k, name in enumerate(sorted({r["set"] for r in rows})):
        sel = [r for r in rows if r["set"] == name]
        s = np.array([r["sigma"] if r["sigma"] is not None else np.nan for r in sel], float)
        e = np.array([r["rot_err"] if r["rot_err"] is not None else np.nan for r in sel], float)
        rel = np.array([bool(r["rot_rel"]) for r in sel])
        s = np.clip(np.nan_to_num(s, nan=hi, posinf=hi), lo, hi)
        e = np.clip(np.nan_to_num(e, nan=hi, posinf=hi), lo, hi)
        c = f"C{k}"
        ax.scatter(s[rel], e[rel], c=c, s=22, label=f"{name}: reliable ({rel.sum()})")
        ax.scatter(s[~rel], e[~rel], facecolors="none", edgecolors=c, s=22,
                   label=f"{name}: not reliable ({(~rel).sum()})")
    ax.plot([lo, hi], [lo, hi], "k:", lw=0.8, label="error = sigma")
    ax.axhline(0.5, color="r", lw=0.8, ls="--", label="0.5 deg bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("reported rotation 1-sigma, deg (curvature and hypothesis spread; no pose: top)")
    ax.set_ylabel("measured rotation error, deg")
    ax.set_title("recon.twoview: reported sigma vs error (bench_twoview_real.py)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
