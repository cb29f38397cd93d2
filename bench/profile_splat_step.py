"""Per-step profile of the CPU splat trainer at the demo's size and Gaussian count (issue 28).

Loads a COLMAP dataset at --scale, initialises the trainer from its SfM points, clones them (with
jitter, at half the scale) to 40,000 Gaussians, runs 10 warm-up steps at step 1000 (SH degree 2),
times N steps (densification off, its statistics kept) and prints torch.profiler's table of 10
more steps, sorted by self CPU time.

    PYTHONPATH=. /work/bin/heavy -x python bench/profile_splat_step.py DATASET [N [p [SCALE]]]
    e.g. DATASET = the Sceaux data of bench_splat_cpu.py, SCALE 0.0542 (160x118)
"""
import sys
import time
import math
import numpy as np
import torch
from render.data import load_scene
from render.scaffold import Split
from render.splat.trainer import TrainConfig, SplatTrainer, _make_optimizer
from render.splat.gaussians import Gaussians

def demo_sized_trainer(dataset, scale: float, n: int = 40000, step0: int = 1000):
    """A trainer on ``dataset`` at ``scale`` whose SfM-initialised Gaussians are cloned (with
    jitter at half the scale) to ``n`` like the demo's, densification events off (statistics
    kept), after 10 warm-up steps from ``step0`` (the SH degree 2..3 region). -> (trainer, scene)."""
    cfg = TrainConfig.preset("cpu", steps=1500, resolution_scale=scale).scaled_schedule()
    scene = load_scene(dataset, resolution_scale=scale)
    split = Split.every(scene, test_every=cfg.test_every)
    tr = SplatTrainer(scene, split, cfg, log=lambda m: None)
    tr.init_fresh(np.random.default_rng(0))
    g = tr.gaussians().detach()
    rep = int(math.ceil(n / len(g.means)))
    gen = torch.Generator().manual_seed(0)
    sc = torch.exp(g.log_scales).mean(1, keepdim=True)
    means = torch.cat([g.means + torch.randn(g.means.shape, generator=gen) * sc for _ in range(rep)])[:n]

    def cat(x):
        return torch.cat([x] * rep)[:n]

    sh_rest = cat(g.sh_rest) + 0.05 * torch.randn(cat(g.sh_rest).shape, generator=gen)
    g2 = Gaussians(means=means, log_scales=cat(g.log_scales) - 0.7,
                   quats_wxyz=cat(g.quats_wxyz) + 0.1 * torch.randn(n, 4, generator=gen),
                   opacity_logits=cat(g.opacity_logits), sh_dc=cat(g.sh_dc), sh_rest=sh_rest)
    tr._set_params(g2)
    tr.optimizer = _make_optimizer(tr.params, cfg, tr.extent)
    tr.state = tr.strategy.init_state(n, tr.device)
    tr.strategy.refine_start = 10**9  # no densification events inside the profile (stats still kept)
    for s in range(step0, step0 + 10):
        tr.step(s)
    return tr, scene


if __name__ == "__main__":
    torch.set_num_threads(2)
    SCALE = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
    step0 = 1000
    tr, scene = demo_sized_trainer(sys.argv[1], SCALE, step0=step0)
    N = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    t = time.perf_counter()
    for s in range(step0 + 10, step0 + 10 + N):
        tr.step(s)
    dt = (time.perf_counter() - t) / N
    print(f"{len(tr.params['means'])} Gaussians, {scene.views[0].camera.width}x{scene.views[0].camera.height}, "
          f"sh degree {tr.sh_degree_at(step0)}, {dt*1000:.1f} ms/step")
    if len(sys.argv) > 3:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for s in range(step0 + 100, step0 + 110):
                tr.step(s)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=35))
