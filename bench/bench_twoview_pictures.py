"""Benchmark: what the pictures cost in `recon twoview` on a big pair (two 1080x1920 photos).

    PYTHONPATH=$PWD python bench/bench_twoview_pictures.py [--repeat 3] [--also OTHER_CHECKOUT]

The pair: two sceaux-castle photos (../shared/data) turned to portrait and resized to 1080x1920.
Each contestant is a fresh `recon twoview A B -o OUT` process, run once untimed (warm-up) and then
``--repeat`` times, interleaved; the table shows the medians of the stage timings the command
writes to report.json (``timings``: features, matching, geometry, pictures, total) and the ratio
of the picture time to this checkout's. With ``--also DIR`` the same command of another checkout
(e.g. an export of main: ``git archive main | tar -x -C /tmp/base``) runs in the same loop, so a
before/after comparison sees the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_pair(out: Path) -> tuple[Path, Path]:
    import cv2

    src = sorted((ROOT.parent / "shared" / "data" / "sceaux-castle").glob("*.JPG"))[:2]
    if len(src) < 2:
        raise SystemExit("needs ../shared/data/sceaux-castle")
    paths = []
    for i, f in enumerate(src):
        im = cv2.rotate(cv2.imread(str(f)), cv2.ROTATE_90_CLOCKWISE)
        im = cv2.resize(im, (1080, 1920), interpolation=cv2.INTER_AREA)
        paths.append(out / f"{i}.jpg")
        cv2.imwrite(str(paths[-1]), im, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return paths[0], paths[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--also", default=None, metavar="ROOT", help="another checkout to time in the same loop")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_twoview_pictures_"))
    a, b = make_pair(tmp)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    roots = {"this checkout": ROOT}
    if args.also:
        roots[f"@{Path(args.also).resolve().name}"] = Path(args.also).resolve()
    timings: dict[str, list[dict]] = {k: [] for k in roots}
    for rep in range(args.repeat + 1):
        for name, root in roots.items():
            out = tmp / f"out_{len(timings[name])}_{abs(hash(name))}"
            cmd = [sys.executable, "-m", "recon", "twoview", str(a), str(b), "-o", str(out)]
            r = subprocess.run(cmd, capture_output=True, text=True, env=dict(env, PYTHONPATH=str(root)), cwd=root,
                               check=False)
            if r.returncode != 0:
                raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
            if rep:  # the first round is the warm-up
                timings[name].append(json.loads((out / "report.json").read_text())["timings"])
    keys = ["features_s", "matching_s", "geometry_s", "pictures_s", "total_s"]
    print(f"\nrecon twoview on a 1080x1920 pair; median of {args.repeat} runs, fresh process each; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print(f"{'contestant':<16}" + "".join(f"{k:>12}" for k in keys) + f"{'pictures ratio':>16}")
    base = statistics.median(t["pictures_s"] for t in timings["this checkout"])
    for name, ts in timings.items():
        med = {k: statistics.median(t[k] for t in ts) for k in keys}
        print(f"{name:<16}" + "".join(f"{med[k]:12.2f}" for k in keys) + f"{med['pictures_s'] / base:16.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
