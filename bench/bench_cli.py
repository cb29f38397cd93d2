"""Start-up cost of the `recon` CLI: `recon --help`, `import calib`, `import recon`, against a
bare interpreter and the heavy libraries they must not import (measured in the same run).

Run: PYTHONPATH=$PWD python bench/bench_cli.py [--repeat N]
Each row is the median wall time of N fresh interpreters (subprocess start included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    ("python -c pass (interpreter start)", ["-c", "pass"]),
    ("python -c 'import numpy'", ["-c", "import numpy"]),
    ("python -c 'import calib'", ["-c", "import calib"]),
    ("python -c 'import recon'", ["-c", "import recon"]),
    ("recon --help (python -m recon --help)", ["-m", "recon", "--help"]),
    ("python -c 'import cv2'  (must not be imported)", ["-c", "import cv2"]),
    ("python -c 'import pycolmap'  (must not be imported)", ["-c", "import pycolmap"]),
    ("python -c 'import torch'  (must not be imported)", ["-c", "import torch"]),
]


def time_once(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7, help="fresh interpreters per row (median reported)")
    args = ap.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    rows = []
    for name, cmd in CASES:
        time_once(cmd, env)  # warm the file cache
        times = [time_once(cmd, env) for _ in range(args.repeat)]
        rows.append((name, statistics.median(times), min(times)))
    base = rows[0][1]
    help_t = next(t for n, t, _ in rows if n.startswith("recon --help"))
    print(f"{'command':<52} {'median s':>9} {'min s':>7} {'minus start':>12} {'vs recon --help':>16}")
    for name, med, mn in rows:
        print(f"{name:<52} {med:9.3f} {mn:7.3f} {med - base:12.3f} {med / help_t:15.2f}x")
    print(f"\n{args.repeat} runs per row, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs (shared)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
