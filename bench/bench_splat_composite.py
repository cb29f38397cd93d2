"""The fused CPU compositor alone on one training view's real inputs (issue 28): forward and
backward time of CompositeCpp's kernels with and without the (Gaussian, tile) cull, against an
older build of render/splat/_raster_cpu.cpp when --old-source is given (outputs compared), plus
pair counts and pixels per pair. Scene set-up as bench/profile_splat_step.py (a COLMAP dataset at
160x118, its SfM points cloned to 40,000 Gaussians, 10 warm-up steps at step 1000).

    PYTHONPATH=. heavy python bench/bench_splat_composite.py DATASET [--old-source OLD.cpp] [--threads 1]
"""
import argparse
import time

import torch
from torch.utils import cpp_extension

import render.splat._raster_cpu as RC
from profile_splat_step import demo_sized_trainer
from render.splat._raster_cpu import CompositeCpp, cpu_kernels

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("dataset")
ap.add_argument("--old-source", help="an older _raster_cpu.cpp to compare with (same bindings)")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--scale", type=float, default=0.0542)
args = ap.parse_args()
torch.set_num_threads(args.threads)
SCALE = args.scale
tr, scene = demo_sized_trainer(args.dataset, SCALE)
# capture the compositor inputs
cap = {}
orig = CompositeCpp.apply


def grab(feats, geom):
    cap["feats"], cap["geom"] = feats.detach().clone(), geom
    return orig(feats, geom)


CompositeCpp.apply = grab
mod = cpu_kernels()


class Wrap:
    def __getattr__(self, k): return getattr(mod, k)
    def bin_tiles_culled(self, *a):
        cap["bin_args"] = a
        return mod.bin_tiles_culled(*a)


RC._KERNELS["mod"] = Wrap()
tr.step(1010)
RC._KERNELS["mod"] = mod
feats = cap["feats"]
start, gauss, W, H, s, ma, _ = cap["geom"]
a = cap["bin_args"]
full = mod.bin_tiles(*a[:7])
print("pairs unculled", full[1].numel(), "culled", gauss.numel(), "tiles", start.numel() - 1, "W H", W, H)


def timeit(m, st, ga, label, reps=5):
    acc, T, last = m.forward(feats, st, ga, W, H, s, ma)
    gA = torch.randn(H, W, 4, generator=torch.Generator().manual_seed(1)) * 1e-3
    gT = torch.randn(H, W, generator=torch.Generator().manual_seed(2)) * 1e-3
    t0 = time.perf_counter()
    for _ in range(reps):
        acc, T, last = m.forward(feats, st, ga, W, H, s, ma)
    t1 = time.perf_counter()
    for _ in range(reps):
        gf = m.backward(feats, st, ga, W, H, s, ma, T, last, gA, gT)
    t2 = time.perf_counter()
    print(f"{label}: fwd {(t1-t0)/reps*1e3:.1f} ms  bwd {(t2-t1)/reps*1e3:.1f} ms ({args.threads} thread(s))")
    return acc, gf


r1 = timeit(mod, *full, "this build, unculled lists")
r2 = timeit(mod, start, gauss, "this build, culled lists")
if args.old_source:
    old = cpp_extension.load(name="recon_splat_raster_cpu_old", sources=[args.old_source], extra_cflags=["-O3"])
    r0 = timeit(old, *full, "old build, unculled lists")
    print("old vs this: max |acc diff|", float((r0[0] - r2[0]).abs().max()),
          "gradient max rel diff", float((r0[1] - r2[1]).abs().max() / r0[1].abs().max()))
# per-pair contributing pixel counts (sample)
f = feats.double()
cnt, rows = [], []
ntx = (W + s - 1) // s
for t in range(start.numel() - 1):
    ids = gauss[start[t]:start[t+1]].long()
    if ids.numel() == 0:
        continue
    tx, ty = t % ntx, t // ntx
    ys, xs = torch.meshgrid(torch.arange(ty * s, min(ty * s + s, H), dtype=torch.float64),
                            torch.arange(tx * s, min(tx * s + s, W), dtype=torch.float64), indexing="ij")
    ff = f[ids]
    dx = xs.reshape(1, -1) - ff[:, 0:1]
    dy = ys.reshape(1, -1) - ff[:, 1:2]
    sig = 0.5 * (ff[:, 2:3]*dx*dx + ff[:, 4:5]*dy*dy) + ff[:, 3:4]*dx*dy
    al = ff[:, 5:6] * torch.exp(-sig)
    ok = al >= 1/255
    cnt.append(ok.sum(1))
    rows.append(ok.reshape(len(ids), ys.shape[0], -1).any(2).sum(1))
cnt = torch.cat(cnt).float()
rows = torch.cat(rows).float()
print("pixels with alpha >= 1/255 per culled pair: mean", float(cnt.mean()), "median", float(cnt.median()),
      "rows touched mean", float(rows.mean()))
