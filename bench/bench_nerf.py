"""NeRF vs our splat trainer on the same synthetic scene and time budget (the issue-12 CPU bar).

    python bench/bench_nerf.py                      # 24 views at 160x120, 300 s each
    python bench/bench_nerf.py --budget 120 --views 12

Renders the scene with `recon synth` (once, into --work), then runs `recon train nerf` and
`recon train splat` one after the other with the same --max-seconds, and prints a table of test
PSNR / SSIM, steps and seconds from their report.json, the Chamfer distance of the mesh `recon
export` makes from each output (TSDF of its depth maps) to the true surface, plus the load average (the 2-core machine
is often shared: numbers under load are lower bounds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _recon(*args) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; from recon.cli import run_cli; sys.exit(run_cli())",
                    *map(str, args)], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t


def _mesh_chamfer(run: Path, data: Path, mesh: Path) -> float:
    """`recon export RUN -o MESH --what mesh` (TSDF of the run's depth maps), then the symmetric
    Chamfer distance to the true visible surface (the dataset's true depth maps back-projected;
    the synthetic dataset is in the true frame), relative to the truth's bounding-box diagonal."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from recon.export import backproject, chamfer_distance, load_depth_views, read_mesh, sample_surface

    _recon("export", run, "-o", mesh, "--what", "mesh", "-q")
    truth = np.concatenate([backproject(v)[0] for v in load_depth_views(data)])
    return float(chamfer_distance(sample_surface(read_mesh(mesh), 200_000), truth).relative)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=300.0, help="--max-seconds of each trainer (default 300)")
    ap.add_argument("--views", type=int, default=24)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--work", default="/tmp/bench_nerf", help="work folder (default /tmp/bench_nerf)")
    ap.add_argument("--only", choices=["nerf", "splat"], help="run one trainer only")
    ap.add_argument("--threads", type=int, help="torch threads for both (default: follow the load)")
    ap.add_argument("--no-mesh", action="store_true", help="skip the TSDF mesh export and its Chamfer distance")
    args = ap.parse_args()
    work = Path(args.work)
    data = work / f"synth_{args.views}_{args.width}x{args.height}"
    if not (data / "transforms.json").is_file():
        _recon("synth", "-o", data, "--kind", "scene", "--views", args.views, "--width", args.width,
               "--height", args.height, "-q")
    rows = []
    load0 = os.getloadavg()[0]
    extra = ["--threads", args.threads] if args.threads else []
    for name in ("nerf", "splat"):
        if args.only and name != args.only:
            continue
        out = work / name
        wall = _recon("train", name, data, "-o", out, "--max-seconds", args.budget, "--quiet", *extra)
        rep = json.loads((out / "report.json").read_text())
        chamfer = _mesh_chamfer(out, data, work / f"{name}_mesh.ply") if not args.no_mesh else None
        rows.append((name, rep["psnr_test"], rep["ssim_test"], rep["steps"], rep["seconds"], wall, chamfer))
    print(f"\nsynthetic scene, {args.views} views at {args.width}x{args.height}, budget {args.budget:g} s, "
          f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| trainer | test PSNR (dB) | SSIM | steps | train s | wall s | mesh Chamfer (% of diagonal) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ch = "-" if r[6] is None else f"{100 * r[6]:.2f}"
        print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.3f} | {r[3]} | {r[4]:.0f} | {r[5]:.0f} | {ch} |")
    if len(rows) == 2:
        print(f"\nNeRF - splat: {rows[0][1] - rows[1][1]:+.2f} dB")


if __name__ == "__main__":
    main()
