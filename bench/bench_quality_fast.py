"""`recon reconstruct --quality fast` on a CPU: which training size the 300 s budget affords best
(issue 28, deliverable 4). Trains `recon train splat --preset cpu --steps 3000 --max-seconds 300`
(the fast preset's CPU training) on the undistorted Sceaux photos that bench_splat_cpu.py
prepares, at each --sizes long side, and scores every PLY on the held-out views (every 8th) at
one common size (--eval-size) and at its own size.

    PYTHONPATH=. /work/bin/heavy -x python bench/bench_quality_fast.py [--sizes 320 480] [--work DIR]

Take it on an idle machine (heavy -x): the budget is wall-clock, so load changes the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_splat_cpu import _long_side, _uptime, evaluate, prepare, run_recon  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "sceaux-castle")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "recon-bench" / "splat_cpu")
    ap.add_argument("--sizes", type=int, nargs="*", default=[320, 480])
    ap.add_argument("--eval-size", type=int, default=480)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    args = ap.parse_args()
    print(f"load before: {_uptime()}", flush=True)
    full, _, test_names = prepare(args.images, args.work)
    long_side = _long_side(full)
    print(f"data: {full} ({long_side} px), held out {test_names}", flush=True)
    rows = []
    for size in args.sizes:
        out = args.work / f"fast_{size}"
        wall = run_recon(full, out, scale=size / long_side, steps=args.steps, max_seconds=args.max_seconds)
        rep = json.loads((out / "report.json").read_text())
        own = evaluate(out / "splat.ply", full, size / long_side)
        common = evaluate(out / "splat.ply", full, args.eval_size / long_side)
        rows.append((size, rep["steps"], round(wall, 1), rep["num_gaussians"], own["psnr"], own["ssim"],
                     common["psnr"], common["ssim"]))
        print(f"size {size}: steps {rep['steps']}, wall {wall:.1f} s, {rep['num_gaussians']} Gaussians, "
              f"held-out at {size} px {own['psnr']:.2f} dB / {own['ssim']:.3f}, at {args.eval_size} px "
              f"{common['psnr']:.2f} dB / {common['ssim']:.3f}", flush=True)
    print(f"load after: {_uptime()}")
    print(f"\n| train long side | steps | wall s | Gaussians | PSNR own size | SSIM | PSNR at {args.eval_size} | SSIM |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.2f} | {r[5]:.3f} | {r[6]:.2f} | {r[7]:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
