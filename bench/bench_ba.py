"""Benchmark: our bundle adjuster (recon.ba) vs Ceres through pycolmap on the same problems.

Synthetic problems (recon.ba.synthetic: ring of cameras, one SIMPLE_RADIAL camera, tracks of
2-6 views, 0.5 px noise, perturbed start) from 1k to 100k points; both solvers minimise the same
objective (trivial loss, focal + k refined, principal point fixed, TWO_CAMS gauge) to the same
tolerances. Prints the final costs, iterations, times and the time ratio ours / Ceres.

Times: ours = the whole ``bundle_adjust`` call (setup included); Ceres = its solve (pycolmap's
problem setup excluded). Each size runs ``--repeat`` times, ours and Ceres alternating, and the
medians are reported (default: more runs for the small, fast sizes, whose single timings are
noisy on a shared machine). The load average is printed before and after.

    PYTHONPATH=. python bench/bench_ba.py [--sizes 1000,10000,100000] [--backend numpy|torch] [--json FILE]

``--json FILE`` also writes the rows (and the machine and load) as JSON: bench/results/ba_cpu.json
is such a file, the CPU/Ceres reference that bench/gpu_check.py compares the CUDA solver with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def make_problem(n_pts: int):
    """The benchmark problem with ``n_pts`` points (seed 0): -> (BAProblem, Reconstruction).
    Needs no pycolmap, so bench/gpu_check.py builds the same problems on the GPU machine."""
    from recon.ba import problem_from_reconstruction
    from recon.ba.synthetic import perturb_problem, reconstruction_from_problem, synthetic_problem

    n_img = int(np.clip(n_pts // 500, 10, 200))
    rec = reconstruction_from_problem(perturb_problem(synthetic_problem(n_img, n_pts, seed=0)))
    prob, _ = problem_from_reconstruction(rec)
    return prob, rec


TOLERANCES = dict(function_tolerance=1e-10, gradient_tolerance=1e-10, parameter_tolerance=1e-10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000", help="comma-separated point counts")
    ap.add_argument("--backend", default="numpy", choices=("numpy", "torch"))
    ap.add_argument("--device", default=None, help="torch device (default cuda when available)")
    ap.add_argument("--max-iterations", type=int, default=50)
    ap.add_argument("--threads", type=int, default=-1, help="Ceres threads (-1 = all cores)")
    ap.add_argument("--repeat", type=int, default=0,
                    help="runs per size (0 = auto: 9 below 5k points, 3 below 20k, else 1)")
    ap.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = ap.parse_args()

    from recon.ba import BAOptions, bundle_adjust
    from recon.ba.reference import ceres_bundle_adjust
    from recon.ba.synthetic import perturb_problem, reconstruction_from_problem, synthetic_problem

    load_before = os.getloadavg()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}", flush=True)
    # warm-up: imports (scipy.sparse, pycolmap, torch) and first-call costs are not timed
    warm = perturb_problem(synthetic_problem(5, 100, seed=1))
    bundle_adjust(warm, BAOptions(backend=args.backend, device=args.device))
    ceres_bundle_adjust(reconstruction_from_problem(warm))
    rows = []
    for n_pts in (int(s) for s in args.sizes.split(",")):
        prob, rec = make_problem(n_pts)
        n_img = prob.num_images
        tol = TOLERANCES
        reps = args.repeat or (9 if n_pts < 5000 else 3 if n_pts < 20000 else 1)
        t_ours, t_ceres = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            ours = bundle_adjust(prob, BAOptions(backend=args.backend, device=args.device,
                                                 max_iterations=args.max_iterations, **tol))
            t_ours.append(time.perf_counter() - t0)
            ceres = ceres_bundle_adjust(rec, max_iterations=args.max_iterations, num_threads=args.threads, **tol)
            t_ceres.append(ceres.time_s)
        to, tc = float(np.median(t_ours)), float(np.median(t_ceres))
        rel = (ours.final_cost - ceres.final_cost) / ceres.final_cost
        rows.append((n_img, n_pts, prob.num_observations, ours.final_cost, ceres.final_cost, rel,
                     ours.iterations, ceres.iterations, reps, to, tc, to / tc))
        print(f"done {n_pts} points ({reps} runs)", flush=True)
    print(f"\nrecon.ba ({args.backend}) vs Ceres (pycolmap {__import__('pycolmap').__version__}); "
          f"cost = 1/2 sum |r|^2, same objective and tolerances; times are medians of 'runs'")
    print(f"{'images':>6} {'points':>7} {'obs':>8} {'cost ours':>14} {'cost ceres':>14} {'rel diff':>9} "
          f"{'it ours':>7} {'it ceres':>8} {'runs':>4} {'t ours s':>8} {'t ceres s':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r[0]:>6} {r[1]:>7} {r[2]:>8} {r[3]:>14.6f} {r[4]:>14.6f} {r[5]:>9.1e} {r[6]:>7} {r[7]:>8} "
              f"{r[8]:>4} {r[9]:>8.3f} {r[10]:>9.3f} {r[11]:>6.2f}")
    load_after = os.getloadavg()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in load_after)}")
    if args.json:
        keys = ("images", "points", "observations", "cost_ours", "cost_ceres", "rel_cost_diff",
                "iterations_ours", "iterations_ceres", "runs", "seconds_ours", "seconds_ceres", "ratio_ours_ceres")
        doc = {"bench": "bench/bench_ba.py", "backend": args.backend, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "ceres_threads": args.threads,
               "pycolmap": __import__("pycolmap").__version__, "load_average_before": list(load_before),
               "load_average_after": list(load_after), "max_iterations": args.max_iterations,
               "command": "PYTHONPATH=. python bench/bench_ba.py --sizes " + args.sizes + f" --json {args.json}",
               "rows": [dict(zip(keys, (float(v) if isinstance(v, (float, np.floating)) else int(v) for v in r)))
                        for r in rows]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
