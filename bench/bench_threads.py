"""CPU splat training speed beside competing CPU-bound processes, and the thread choices made.

The same training job (the demo's scene size: 30 views at 160x120, the CPU preset, ``--steps``
steps) runs idle and beside 1 and 2 CPU-bound processes (``while True: pass``, started outside
this process tree, as another user's job would be), once with ``threads="auto"`` (the
scaffold's :class:`render.scaffold.ThreadGovernor`) and once with torch's thread count fixed at
the core count (torch's default; the governor off). Prints steps/s, the time relative to the
idle run of the same mode, and the governor's choices over time (t s: threads, cores busy
elsewhere). Bar (issue 27): with 2 competitors the auto run takes at most 3.5x its idle time.

    PYTHONPATH=. python bench/bench_threads.py [--steps 300] [--modes auto,fixed] [--competitors 0,1,2]

Take it with the machine otherwise idle (``/work/bin/heavy -x`` here); the load is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def start_competitors(n: int) -> list[int]:
    """``n`` CPU-bound processes re-parented away from this process tree (double fork), so the
    governor sees them as other users' work. Returns their pids."""
    pids = []
    for _ in range(n):
        out = subprocess.run(["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True).stdout
        pids.append(int(out.strip()))
    return pids


def stop(pids: list[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass


def choices(report: dict) -> str:
    th = report.get("threads") or {}
    hist = th.get("history") or []
    out, last = [], None
    for h in hist:
        if h["threads"] != last or h is hist[-1]:
            o = "-" if h["others"] is None else f"{h['others']:.2f}"
            out.append(f"{h['t']:.0f}s:{h['threads']} ({o})")
            last = h["threads"]
    others = [h["others"] for h in hist if h["others"] is not None]
    mean = f"; mean busy elsewhere {sum(others) / len(others):.2f}" if others else ""
    return ", ".join(out) + mean


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300, help="training steps per run (same work in each run)")
    ap.add_argument("--modes", default="auto,fixed", help="comma list of auto, fixed")
    ap.add_argument("--competitors", default="0,1,2", help="comma list of competing process counts")
    ap.add_argument("--data", type=Path, help="dataset folder (default: generate the synth scene)")
    args = ap.parse_args()

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_splat import make_dataset

    from render.data import load_scene
    from render.splat.trainer import TrainConfig, train

    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cores} cores, load average {os.getloadavg()} at start, torch {torch.__version__}, "
          f"torch default threads {torch.get_num_threads()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_threads_"))
    data = args.data or make_dataset(tmp / "synth30")
    scene = load_scene(data)
    cfg = TrainConfig.preset("cpu", steps=args.steps, device="cpu")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    comps = [int(c) for c in args.competitors.split(",") if c.strip()]
    rows = []
    for mode in modes:
        idle = None
        for n in comps:
            pids = start_competitors(n)
            try:
                time.sleep(1.0)
                threads = "auto" if mode == "auto" else cores
                t = time.perf_counter()
                res = train(scene, tmp / f"run_{mode}_{n}", dataclasses.replace(cfg), progress=False,
                            log=lambda m: None, threads=threads)
                wall = time.perf_counter() - t
            finally:
                stop(pids)
            train_s = res.report["seconds"]
            if n == 0:
                idle = train_s
            rel = f"{train_s / idle:.2f}x" if idle else "-"
            rows.append((mode, n, res.report["steps"] / train_s, train_s, rel, wall, choices(res.report)))
            print(f"  {mode} {n} competitors: {res.report['steps'] / train_s:.2f} steps/s, {train_s:.1f} s "
                  f"({rel} idle)", file=sys.stderr, flush=True)
            time.sleep(2.0)
    print()
    print(f"| threads | competitors | steps/s | training s ({args.steps} steps) | vs idle | wall s "
          "| thread choices (t: threads (cores busy elsewhere)) |")
    print("|---|---|---|---|---|---|---|")
    for mode, n, sps, s, rel, wall, ch in rows:
        label = "auto (governor)" if mode == "auto" else f"fixed {cores}"
        print(f"| {label} | {n} | {sps:.2f} | {s:.1f} | {rel} | {wall:.1f} | {ch} |")
    auto2 = [r for r in rows if r[0] == "auto" and r[1] == 2]
    auto0 = [r for r in rows if r[0] == "auto" and r[1] == 0]
    if auto2 and auto0:
        ratio = auto2[0][3] / auto0[0][3]
        print(f"\nbar: auto with 2 competitors <= 3.5x idle: {ratio:.2f}x, {'met' if ratio <= 3.5 else 'NOT met'}")
    print(f"load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
