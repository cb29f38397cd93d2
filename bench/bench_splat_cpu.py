"""CPU Gaussian splatting: recon against OpenSplat (issue 28) on the same undistorted photos.

Data: `recon sfm --undistort` on ../shared/data/sceaux-castle (or --images), pinhole images and
the SfM points. Every 8th view (sorted by name) is held out; OpenSplat gets a copy of the model
without the held-out views (it holds out nothing itself), both train at the same size.

1. Steps per second at 160, 475 and 960 px long side with the initial SfM Gaussians (no
   densification in either run: equal Gaussian count): each tool runs --speed-steps and 10 steps,
   and the difference of the wall times is divided by the difference of the steps, so start-up
   (image loading, the first-use build) is left out.
2. Quality at wall-clock budgets (default 300 s) at --size px: recon `train splat` with
   --max-seconds; OpenSplat with -n set from its measured speed so that it ends at the budget, at
   its default schedule and with --num-downscales 0. Both PLYs are rendered by our rasterizer at
   the held-out cameras: PSNR and SSIM (render.metrics).

    PYTHONPATH=. /work/bin/heavy -x python bench/bench_splat_cpu.py --opensplat PATH [--budgets 300 900]

OpenSplat (AGPL-3.0) is built by ../shared/peers/build_opensplat.sh; it runs with
OMP_NUM_THREADS=1 (its CPU rasterizer is single-threaded), recon with torch's 2 threads. Take
timings on an idle machine (/work/bin/heavy -x); the load is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "uptime: n/a"


def prepare(images: Path, work: Path) -> tuple[Path, Path, list[str]]:
    """-> (full dataset for recon, train-only dataset for OpenSplat, held-out names)."""
    import pycolmap

    from render.data import load_scene
    from render.scaffold import Split

    sfm = work / "sfm"
    und = sfm / "undistorted"
    if not (und / "sparse").is_dir():
        subprocess.run([sys.executable, "-m", "recon", "sfm", str(images), "-o", str(sfm), "--undistort", "-q"],
                       check=True, cwd=REPO)
    full = work / "full"
    if not (full / "sparse" / "0").is_dir():
        shutil.rmtree(full, ignore_errors=True)
        (full / "sparse").mkdir(parents=True)
        shutil.copytree(und / "images", full / "images")
        src = und / "sparse" / "0" if (und / "sparse" / "0").is_dir() else und / "sparse"
        shutil.copytree(src, full / "sparse" / "0", ignore=shutil.ignore_patterns("*.txt", "*.ini"))
    scene = load_scene(full)
    split = Split.every(scene, test_every=8)
    test_names = [scene.views[i].name for i in split.test]
    train_only = work / "train_only"
    if not (train_only / "sparse" / "0").is_dir():
        shutil.rmtree(train_only, ignore_errors=True)
        rec = pycolmap.Reconstruction(str(full / "sparse" / "0"))
        for image in list(rec.images.values()):
            if Path(image.name).name in {Path(n).name for n in test_names}:
                rec.deregister_frame(image.frame_id)
        (train_only / "sparse" / "0").mkdir(parents=True)
        rec.write(str(train_only / "sparse" / "0"))
        (train_only / "images").mkdir()
        for p in (full / "images").iterdir():
            if p.name not in {Path(n).name for n in test_names}:
                shutil.copy(p, train_only / "images" / p.name)
    return full, train_only, test_names


def _long_side(full: Path) -> int:
    from render.data import load_scene

    cam = load_scene(full, max_views=1).views[0].camera
    return max(cam.width, cam.height)


def run_recon(full: Path, out: Path, *, scale: float, steps: int, max_seconds: float | None = None,
              extra=()) -> float:
    """Wall seconds of `recon train splat` (process start to end)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "recon", "train", "splat", str(full), "-o", str(out), "--preset", "cpu",
           "--resolution-scale", f"{scale:.6f}", "--steps", str(steps), "--threads", "2", "--quiet", *extra]
    if max_seconds:
        cmd += ["--max-seconds", str(max_seconds)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def run_opensplat(exe: Path, data: Path, out: Path, *, factor: float, steps: int, downscales: int | None) -> float:
    out.mkdir(parents=True, exist_ok=True)
    ply = out / "splat.ply"
    ply.unlink(missing_ok=True)
    cmd = [str(exe), str(data), "-o", str(ply), "--cpu", "--keep-crs", "-n", str(steps), "-d", f"{factor:.6f}"]
    if downscales is not None:
        cmd += ["--num-downscales", str(downscales)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dt = time.perf_counter() - t
    if not ply.is_file():
        raise RuntimeError(f"{ply}: OpenSplat wrote no PLY")
    return dt


def evaluate(ply: Path, full: Path, scale: float) -> dict:
    """Held-out PSNR / SSIM of a 3DGS PLY rendered by our rasterizer."""
    import numpy as np
    import torch

    from recon.io.gaussians import read_splat_ply
    from render.data import load_scene
    from render.metrics import psnr, ssim
    from render.scaffold import Split
    from render.splat import rasterize

    scene = load_scene(full, resolution_scale=scale)
    split = Split.every(scene, test_every=8)
    cloud = read_splat_ply(ply)
    ps, ss = [], []
    with torch.no_grad():
        for i in split.test:
            v = scene.views[i]
            out = rasterize(cloud, v.camera, v.cam_from_world)
            img = out.rgb.clamp(0, 1).numpy().astype(np.float32)
            ps.append(psnr(img, v.image))
            ss.append(ssim(img, v.image))
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "num_gaussians": len(cloud.means),
            "size": [scene.views[0].camera.width, scene.views[0].camera.height]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "sceaux-castle")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "recon-bench" / "splat_cpu")
    ap.add_argument("--opensplat", type=Path, default=Path.home() / ".cache" / "recon-peers" / "opensplat" / "opensplat")
    ap.add_argument("--sizes", type=int, nargs="*", default=[160, 475, 960], help="long sides for steps/s")
    ap.add_argument("--speed-steps", type=int, default=40)
    ap.add_argument("--size", type=int, default=475, help="long side of the quality runs")
    ap.add_argument("--budgets", type=float, nargs="*", default=[300.0])
    ap.add_argument("--skip-opensplat-default", action="store_true", help="only --num-downscales 0")
    args = ap.parse_args()
    have_os = args.opensplat.is_file()
    print(f"load before: {_uptime()}", flush=True)
    from render.splat._raster_cpu import cpu_kernels, cpu_kernels_error

    if cpu_kernels() is None:
        raise SystemExit(f"the fused CPU rasterizer did not build ({cpu_kernels_error()}): not benchmarking")
    full, train_only, test_names = prepare(args.images, args.work)
    long_side = _long_side(full)
    print(f"data: {full} ({long_side} px long side), held out: {test_names}; OpenSplat: "
          f"{args.opensplat if have_os else 'not found (' + str(args.opensplat) + ')'}", flush=True)
    res: dict = {"speed": {}, "quality": {}}
    n0 = 10
    for size in args.sizes:
        scale = size / long_side
        t1 = run_recon(full, args.work / "speed_recon", scale=scale, steps=n0, extra=["--test-every", "8"])
        t2 = run_recon(full, args.work / "speed_recon", scale=scale, steps=args.speed_steps)
        r = json.loads((args.work / "speed_recon" / "report.json").read_text())
        row = {"recon_steps_per_s": (args.speed_steps - n0) / max(t2 - t1, 1e-9),
               "num_gaussians": r["num_gaussians"], "size": r.get("resolution")}
        if have_os:
            o1 = run_opensplat(args.opensplat, train_only, args.work / "speed_os", factor=1 / scale, steps=n0,
                               downscales=0)
            o2 = run_opensplat(args.opensplat, train_only, args.work / "speed_os", factor=1 / scale,
                               steps=args.speed_steps, downscales=0)
            row["opensplat_steps_per_s"] = (args.speed_steps - n0) / max(o2 - o1, 1e-9)
            row["ratio"] = row["recon_steps_per_s"] / row["opensplat_steps_per_s"]
        res["speed"][size] = row
        print(f"speed {size} px: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in row.items()), flush=True)
    scale = args.size / long_side
    os_rate = res["speed"].get(args.size, {}).get("opensplat_steps_per_s")
    for budget in args.budgets:
        out = args.work / f"q_recon_{int(budget)}"
        run_recon(full, out, scale=scale, steps=100_000, max_seconds=budget)
        rep = json.loads((out / "report.json").read_text())
        q = {"recon": {**evaluate(out / "splat.ply", full, scale), "steps": rep["steps"],
                       "report_psnr": rep.get("psnr_test")}}
        print(f"budget {budget:.0f} s recon: {q['recon']}", flush=True)
        if have_os:
            variants = [("opensplat_downscales0", 0)] + ([] if args.skip_opensplat_default else
                                                          [("opensplat_default", None)])
            for name, ds in variants:
                # its steps are cheaper at 1/4 and 1/2 size early in the default schedule; the
                # equal-size rate is a lower bound there, so the default run may end early
                n = max(50, int(budget * (os_rate or 1.0) * (1.0 if ds == 0 else 1.5)))
                o = args.work / f"q_{name}_{int(budget)}"
                wall = run_opensplat(args.opensplat, train_only, o, factor=1 / scale, steps=n, downscales=ds)
                q[name] = {**evaluate(o / "splat.ply", full, scale), "steps": n, "wall_s": round(wall, 1)}
                print(f"budget {budget:.0f} s {name}: {q[name]}", flush=True)
        res["quality"][budget] = q
    print(f"load after: {_uptime()}", flush=True)
    print(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
