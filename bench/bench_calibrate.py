"""Benchmark: the whole `recon calibrate` against plain OpenCV (detect + calibrateCamera).

    PYTHONPATH=$PWD python bench/bench_calibrate.py [--images DIR] [--board chessboard:7x7] [--repeat 3]
                                                   [--also OTHER_CHECKOUT]

Each contestant runs as a fresh Python process (interpreter start and imports included), on the
same images, once untimed (warm-up: bytecode caches, page cache) and then `--repeat` times,
interleaved; the table shows the median wall time and the ratio to OpenCV:

* opencv-sb:      findChessboardCornersSB (normalize + accuracy) per image, then calibrateCamera
* opencv-classic: findChessboardCorners + cornerSubPix per image, then calibrateCamera
* recon:          `recon calibrate` with the default outputs (detection, outlier rejection,
                  covariance, uncertainty + coverage maps, YAML/JSON/COLMAP, 4 PNG pictures)
* recon --no-plots: the same without the pictures
* recon pictures-here: the same, with the 4 pictures drawn in this process one after the other
                  (calib.pictures.PictureProcess disabled): measures what the forked picture
                  process saves
* recon@NAME [--no-plots]: with ``--also DIR``, the same from another checkout (e.g. an export
                  of main: ``git archive main | tar -x -C /tmp/base``), to compare before/after
                  under the same load

CPU time is user + sys of the contestant and the children it waited for (the picture processes).

Default images: ../shared/data/chessboard-7x7 (19 real 640x480 photos); without them, 19 views
rendered with recon.synth.boards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OPENCV_SCRIPT = r"""
import sys, glob, cv2, numpy as np
files = sorted(glob.glob(sys.argv[1] + '/*'))
cols, rows = int(sys.argv[2]), int(sys.argv[3])
mode = sys.argv[4]
objp = np.zeros((cols * rows, 3), np.float32)
objp[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2)
obj, img, size = [], [], None
for f in files:
    g = cv2.imread(f, cv2.IMREAD_GRAYSCALE)
    if g is None:
        continue
    size = g.shape[::-1]
    if mode == 'sb':
        ok, c = cv2.findChessboardCornersSB(g, (cols, rows), cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_ACCURACY)
    else:
        ok, c = cv2.findChessboardCorners(g, (cols, rows), cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
        if ok:
            c = cv2.cornerSubPix(g, c, (5, 5), (-1, -1), (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-3))
    if ok:
        obj.append(objp); img.append(c)
rms, K, D, r, t = cv2.calibrateCamera(obj, img, size, None, None)
print(len(obj), rms)
"""


# `recon calibrate` with the picture process switched off (close() then draws every picture here)
PICTURES_HERE_SCRIPT = r"""
import sys
import calib.pictures as pictures

def _inactive(self):
    self.active, self._jobs, self._pid = False, [], None

pictures.PictureProcess.__init__ = _inactive
from recon.cli import main
sys.exit(main(["calibrate", *sys.argv[1:]]))
"""


def timed(cmd, env, cwd=ROOT) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child (user + sys), last stdout line)."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stdout}\n{out.stderr}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return dt, cpu, out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default=None, help="folder of board images")
    ap.add_argument("--board", default="chessboard:7x7", help="chessboard:COLSxROWS")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--also", default=None, metavar="ROOT",
                    help="also time `recon calibrate` of another checkout (e.g. an export of main), "
                         "interleaved with the others: contestants 'recon@ROOT' and 'recon@ROOT --no-plots'")
    args = ap.parse_args()
    # As installed code runs: with bytecode caches (PYTHONDONTWRITEBYTECODE, set on some CI
    # machines, would make every fresh process recompile any module edited since its .pyc).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    tmp = Path(tempfile.mkdtemp(prefix="bench_calib_"))
    images = Path(args.images) if args.images else ROOT.parent / "shared" / "data" / "chessboard-7x7"
    board = args.board
    if not images.is_dir():
        from calib import Camera
        from recon.synth.boards import write_board_dataset

        cam = Camera("OPENCV", 640, 480, [520.0, 520.0, 319.5, 239.5, -0.12, 0.05, 0.0, 0.0])
        write_board_dataset(tmp / "synth", cols=9, rows=6, square=0.03, num_views=19, camera=cam, seed=0,
                            blur_px=0.6, image_noise=2.0)
        images, board = tmp / "synth" / "images", "chessboard:9x6:0.03"
    cols, rows = (int(v) for v in board.split(":")[1].split("x"))
    n_img = len([p for p in images.iterdir() if p.is_file()])
    contestants = {
        "opencv-sb": [sys.executable, "-c", OPENCV_SCRIPT, str(images), str(cols), str(rows), "sb"],
        "opencv-classic": [sys.executable, "-c", OPENCV_SCRIPT, str(images), str(cols), str(rows), "classic"],
        "recon": [sys.executable, "-m", "recon", "calibrate", str(images), "--board", board, "-o",
                  str(tmp / "out"), "--quiet"],
        "recon --no-plots": [sys.executable, "-m", "recon", "calibrate", str(images), "--board", board, "-o",
                             str(tmp / "out2"), "--quiet", "--no-plots"],
        "recon pictures-here": [sys.executable, "-c", PICTURES_HERE_SCRIPT, str(images), "--board", board, "-o",
                                str(tmp / "out3"), "--quiet"],
    }
    envs = {k: env for k in contestants}
    if args.also:
        other = Path(args.also).resolve()
        for k in ("recon", "recon --no-plots"):
            name = k.replace("recon", f"recon@{other.name}")
            contestants[name] = [a.replace(str(tmp / "out"), str(tmp / "other_out")) for a in contestants[k]]
            envs[name] = dict(env, PYTHONPATH=str(other), PYTHONDONTWRITEBYTECODE="1")
    times = {k: [] for k in contestants}
    cpus = {k: [] for k in contestants}
    last = {}
    for name, cmd in contestants.items():  # warm-up, not timed: bytecode caches, page cache
        timed(cmd, envs[name], envs[name]["PYTHONPATH"])
    for _ in range(args.repeat):  # interleaved, so machine load affects all alike
        for name, cmd in contestants.items():
            dt, cpu, line = timed(cmd, envs[name], envs[name]["PYTHONPATH"])
            times[name].append(dt)
            cpus[name].append(cpu)
            last[name] = line
    import json

    rep = json.loads((tmp / "out" / "report.json").read_text())
    base = statistics.median(times["opencv-sb"])
    base_cpu = statistics.median(cpus["opencv-sb"])
    print(f"\n{n_img} images from {images} ({board}); median of {args.repeat} runs, fresh process each; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    width = max(18, *(len(k) for k in times))
    print(f"{'contestant':<{width}} {'wall s':>7} {'min s':>6} {'wall ratio':>10} {'CPU s':>6} {'CPU ratio':>9}  result")
    for name, ts in times.items():
        med, cpu = statistics.median(ts), statistics.median(cpus[name])
        res = {"opencv-sb": f"views, rms = {last[name]}", "opencv-classic": f"views, rms = {last[name]}"}.get(
            name, f"{rep['num_views_used']} views, rms = {rep['rms_px']:.4f} ({rep['model']})")
        print(f"{name:<{width}} {med:7.2f} {min(ts):6.2f} {med / base:10.2f} {cpu:6.2f} {cpu / base_cpu:9.2f}  {res}")
    print(f"\nrecon / opencv-sb: wall-time ratio {statistics.median(times['recon']) / base:.2f}, CPU-time ratio "
          f"{statistics.median(cpus['recon']) / base_cpu:.2f} (target <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
