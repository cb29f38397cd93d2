"""Hash-grid encoding speed on the CPU: the pure-PyTorch gather (the test reference), the
grid_sample path (dense levels in one batched grid_sample) and the fused C++ kernels
(render/nerf/_hashgrid_cpu.cpp), forward and backward, at the `cpu` and `default` NeRF presets.

    python bench/bench_hashgrid.py                  # 100k points, 2 threads
    python bench/bench_hashgrid.py --points 200000 --threads 1

No CPU peer exists (tcnn and nerfacc's hash encodings are CUDA-only); the ratio column is
against our own reference in the same run. Values and gradients of all three agree
(tests/test_nerf_core.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import torch

    from render.nerf.encoding import HashGrid, cpu_kernels, cpu_kernels_error
    from render.nerf.trainer import NerfConfig

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    k = cpu_kernels()
    print(f"fused kernels: {'loaded' if k else 'unavailable: ' + str(cpu_kernels_error())} "
          f"({time.perf_counter() - t:.1f} s, a first build takes ~30-60 s)")
    rows = []
    for preset in ("cpu", "default"):
        cfg = NerfConfig.preset(preset).field.hash
        grid = HashGrid(cfg)
        x = torch.rand(args.points, 3, generator=torch.Generator().manual_seed(0))
        base = None
        for backend in ("reference", "grid_sample", "cpp"):
            if backend == "cpp" and k is None:
                continue
            grid.backend = backend
            fw, bw = [], []
            for _ in range(args.repeat):
                grid.table.grad = None
                t0 = time.perf_counter()
                y = grid(x)
                t1 = time.perf_counter()
                y.sum().backward()
                t2 = time.perf_counter()
                fw.append(t1 - t0)
                bw.append(t2 - t1)
            f, b = sorted(fw)[len(fw) // 2], sorted(bw)[len(bw) // 2]
            base = base or (f, b)
            rows.append((preset, f"{cfg.num_levels} x 2^{cfg.log2_table_size}", backend, f, b,
                         base[0] / f, base[1] / b))
    print(f"\n{args.points:,} points, {args.threads} thread(s), median of {args.repeat}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| preset | levels x table | backend | forward ms | backward ms | forward speed-up | backward speed-up |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {1e3 * r[3]:.0f} | {1e3 * r[4]:.0f} | {r[5]:.1f}x | {r[6]:.1f}x |")


if __name__ == "__main__":
    main()
