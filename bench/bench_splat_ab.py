"""Before/after benchmark of the splat trainer: the same training run (CPU preset, fixed steps,
one torch thread each) with two source trees at the same time, so both see the same machine
load. Prints test PSNR / SSIM, Gaussians, wall and CPU seconds, and the after/before ratios.

    PYTHONPATH=. python bench/bench_splat_ab.py --before /tmp/splat_before [--steps 600] [--views 30]

``--before`` is a checkout of the older tree (e.g. ``git archive COMMIT | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import dataclasses, json, sys, time
import torch
torch.set_num_threads(1)
from render.splat.trainer import TrainConfig, train
cfg = TrainConfig.preset("cpu", steps=int(sys.argv[3]), device="cpu")
cfg = dataclasses.replace(cfg, densify=dataclasses.replace(cfg.densify, max_gaussians=20_000))
t, c = time.perf_counter(), time.process_time()
res = train(sys.argv[1], sys.argv[2], cfg, progress=False, log=lambda m: None)
r = res.report
print(json.dumps({"psnr_test": r["psnr_test"], "ssim_test": r["ssim_test"], "num_gaussians": r["num_gaussians"],
                  "steps": r["steps"], "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="the older source tree")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--views", type=int, default=30)
    ap.add_argument("--data", type=Path, help="dataset (default: a synth scene, --views views at 160x120)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="bench_splat_ab_"))
    data = args.data
    if data is None:
        from recon import synth

        data = tmp / "synth"
        synth.write_dataset(data, synth.make_scene(seed=0), synth.make_camera("PINHOLE", 160, 120, fov_deg=60),
                            synth.orbit(args.views, radius=3.2),
                            options=synth.DatasetOptions(progress=False, write_normals=False, write_labels=False))
    load0 = os.getloadavg()[0]
    procs = {}
    for name, tree in (("before", args.before.resolve()), ("after", ROOT)):
        env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
        procs[name] = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(tmp / name), str(args.steps)],
                                       cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    res = {}
    for name, p in procs.items():
        out, err = p.communicate()
        if p.returncode != 0:
            print(f"{name} failed:\n{err[-3000:]}", file=sys.stderr)
            return 1
        res[name] = json.loads(out.strip().splitlines()[-1])
    load1 = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load0:.1f} at start, {load1:.1f} at end; "
          f"both runs at the same time, 1 torch thread each; {args.steps} steps, {args.views} views 160x120")
    print("| | before | after | after / before |")
    print("|---|---|---|---|")
    for k in ("psnr_test", "ssim_test", "num_gaussians", "steps", "wall_s", "cpu_s"):
        b, a = res["before"][k], res["after"][k]
        print(f"| {k} | {b:.4g} | {a:.4g} | {a / b:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
