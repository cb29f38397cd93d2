"""Run the stage benchmarks and print one table: each row is one measurement with the peer tool
measured in the same run (issue 13, item 4).

Every bench/bench_*.py that has a peer runs in its own process (quick sizes by default, the
benchmark's own defaults with ``--full``); its printed table is parsed here into rows of
(bench, case, peer, time ratio ours / peer). All ratios are TIME ratios, lower is better (a
throughput "vs opencv" of 2.0x becomes 0.50). A bench that fails or times out gets a row saying
so, and the others still run.

    PYTHONPATH=. python bench/run_all.py                 # quick sizes (several minutes on 2 cores)
    PYTHONPATH=. python bench/run_all.py --full          # the benchmarks' default sizes
    PYTHONPATH=. python bench/run_all.py --only ba,io --json out/bench.json

Benchmarks without a peer on a CPU (bench_splat: gsplat needs CUDA, see bench/gpu_check.sh;
bench_cli, bench_calib_accuracy, bench_sfm_focal: accuracy or absolute numbers) are not run here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUM = r"(\d+(?:\.\d+)?|nan)"


@dataclass
class Row:
    bench: str
    case: str
    peer: str
    ratio: float | None  # time ours / peer (lower is better); None when not measured
    note: str = ""


def _f(x: str) -> float:
    return float("nan") if x == "nan" else float(x)


def parse_ba(out: str) -> list[Row]:
    rows = []
    for m in re.finditer(rf"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+\S+\s+\d+\s+\d+\s+\d+\s+{NUM}\s+{NUM}\s+{NUM}\s*$",
                         out, flags=re.MULTILINE):
        rows.append(Row("ba", f"{int(m[2]):,} points, {int(m[3]):,} obs", "Ceres (pycolmap)", _f(m[6]),
                        f"{m[4]} s vs {m[5]} s"))
    return rows


def parse_io(out: str) -> list[Row]:
    return [Row("io", m[1].strip(), m[3], _f(m[5]), f"{m[2]} s vs {m[4]} s")
            for m in re.finditer(rf"^(\S.*?)\s{{2,}}{NUM}\s{{2,}}(\S+)\s{{2,}}{NUM}\s{{2,}}{NUM}\s*$", out, flags=re.MULTILINE)
            if m[3] != "-"]  # rows without a peer (ASCII PLY) are not peer rows


def _parse_vs_opencv(bench: str, unit: str):
    def parse(out: str) -> list[Row]:
        rows = []
        for m in re.finditer(rf"^(\S.*?)\s+{NUM}\s+{NUM}x\s", out, flags=re.MULTILINE):
            name, speed, vs = m[1].strip(), _f(m[2]), _f(m[3])
            if name.startswith("opencv"):
                continue
            rows.append(Row(bench, name, "OpenCV", 1.0 / vs if vs > 0 else None, f"{speed:g} {unit}"))
        return rows
    return parse


def parse_sfm(out: str) -> list[Row]:
    m = re.search(rf"time ratio recon sfm / pycolmap default: {NUM}", out)
    return [Row("sfm", "recon sfm vs pycolmap default pipeline", "pycolmap", _f(m[1]))] if m else []


def parse_calibrate(out: str) -> list[Row]:
    m = re.search(rf"recon / opencv-sb: wall-time ratio {NUM}", out)
    return [Row("calibrate", "recon calibrate (with pictures) vs detect + calibrateCamera", "OpenCV", _f(m[1]))] if m else []


def parse_cameras(out: str) -> list[Row]:
    return [Row("cameras", f"{m[1]} {m[2]}", m[4].strip(), _f(m[6]), f"{m[3]} s vs {m[5]} s")
            for m in re.finditer(rf"^(\S+)\s+(project|unproject)\s+{NUM}\s+(\S.*?)\s+{NUM}\s+{NUM}\s", out, flags=re.MULTILINE)]


def parse_viewer(out: str) -> list[Row]:
    return [Row("viewer", f"{m[1].strip()} (server load)", "bare viser", _f(m[4]), f"{m[2]} s vs {m[3]} s")
            for m in re.finditer(rf"^\| ([^|]+?) \| {NUM} \| {NUM} \| {NUM} \|", out, flags=re.MULTILINE)]


def parse_synth(out: str) -> list[Row]:
    return [Row("synth", m[1].strip(), "Open3D RaycastingScene", _f(m[4]), "wall-time ratio")
            for m in re.finditer(rf"^(\S.*?)\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s*$", out, flags=re.MULTILINE)]


@dataclass(frozen=True)
class Bench:
    name: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    parse: object
    timeout_s: float = 900


BENCHES = [
    Bench("ba", ("--sizes", "1000,10000", "--repeat", "1"), ("--sizes", "1000,10000,30000,100000"), parse_ba),
    Bench("io", ("--points", "100000", "--colmap-points", "2000", "--colmap-frames", "10", "--repeat", "1"), (), parse_io),
    Bench("cameras", ("--n", "100000"), (), parse_cameras),
    Bench("twoview", ("--pairs", "3", "--matches", "500"), (), _parse_vs_opencv("twoview", "pairs/s")),
    Bench("stereo", ("--width", "320", "--height", "240", "--repeat", "1"), (), _parse_vs_opencv("stereo", "MP/s")),
    Bench("calibrate", ("--repeat", "1"), (), parse_calibrate),
    Bench("sfm", ("--synth", "orbit", "--views", "8"), (), parse_sfm),
    Bench("synth", ("--views", "4", "--width", "320", "--height", "240"), (), parse_synth),
    Bench("viewer", ("--points", "100000", "--splats", "20000", "--no-browser"), ("--no-browser",), parse_viewer),
]


def run_bench(b: Bench, *, full: bool, log_dir: Path | None) -> tuple[list[Row], float, str]:
    cmd = [sys.executable, str(ROOT / "bench" / f"bench_{b.name}.py"), *(b.full if full else b.quick)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=b.timeout_s)
        last = (p.stderr.strip().splitlines() or [''])[-1][:150]
        out, status = p.stdout, "ok" if p.returncode == 0 else f"exit {p.returncode}: {last}"
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        status = f"timeout after {b.timeout_s:.0f} s"
    secs = time.perf_counter() - t
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"bench_{b.name}.log").write_text(" ".join(cmd) + "\n\n" + out)
    rows = b.parse(out)
    if status == "ok" and not rows:
        status = "ran, but no peer row was found in its output"
    return rows, secs, status


def table(results: list[dict]) -> str:
    lines = ["| bench | case | peer | time ours / peer | note | status | bench s |", "|---|---|---|---|---|---|---|"]
    for r in results:
        rows = r["rows"] or [{"case": "-", "peer": "-", "ratio": None, "note": ""}]
        for x in rows:
            ratio = "-" if x["ratio"] is None or x["ratio"] != x["ratio"] else f"{x['ratio']:.2f}"
            lines.append(f"| {r['bench']} | {x['case']} | {x['peer']} | {ratio} | {x['note']} | {r['status']} | "
                         f"{r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the benchmarks' default (large) sizes")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(b.name for b in BENCHES)}")
    ap.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    ap.add_argument("--logs", type=Path, help="folder for each benchmark's full output")
    args = ap.parse_args(argv)
    chosen = BENCHES
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {b.name for b in BENCHES})
        if unknown:
            ap.error(f"--only: unknown benchmark(s) {', '.join(unknown)}")
        chosen = [b for b in BENCHES if b.name in names]
    load0 = os.getloadavg()
    results = []
    for b in chosen:
        print(f"running bench_{b.name} ...", file=sys.stderr, flush=True)
        rows, secs, status = run_bench(b, full=args.full, log_dir=args.logs)
        results.append({"bench": b.name, "rows": [asdict(r) for r in rows], "seconds": secs, "status": status})
    print(f"\nstage benchmarks ({'full' if args.full else 'quick'} sizes), {os.cpu_count()} CPU cores, load average "
          f"{load0[0]:.1f} -> {os.getloadavg()[0]:.1f}; ratios are time ours / peer from the same run (< 1: faster)\n")
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "full": args.full,
                                         "load_average": [load0, os.getloadavg()], "results": results}, indent=2) + "\n")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
