"""CPU Gaussian splatting: recon against OpenSplat (issue 28) on the same undistorted photos.

Data: `recon sfm --undistort` on ../shared/data/sceaux-castle (or --images), pinhole images and
the SfM points. Every 8th view (sorted by name) is held out; OpenSplat gets a copy of the model
without the held-out views (it holds out nothing itself), both train at the same size.

1. Steps per second at 160, 475 and 960 px long side with the initial SfM Gaussians (no
   densification in either run: equal Gaussian count): each tool runs --speed-steps and 10 steps,
   and the difference of the wall times is divided by the difference of the steps, so start-up
   (image loading, the first-use build) is left out.
2. Quality at wall-clock budgets (default 300 s) at --size px: recon `train splat` with
   --max-seconds; OpenSplat with -n sized from its measured speed, at its default schedule and
   with --num-downscales 0, stopped at the budget (its last PLY saved every 50 steps). Held-out
   PSNR and SSIM (render.metrics) of each PLY rendered by our rasterizer in true depth order
   (psnr, ssim); OpenSplat's PLYs also as its own CPU forward pass renders them (psnr_own,
   ssim_own: its CPU rasterizer composites in a scrambled order and trains the splats for it, see
   render_like_opensplat; emulation checked against its own --val-render output first).

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


# OpenSplat trains with this background (nerfstudio's default), not black
OPENSPLAT_BACKGROUND = (0.6130, 0.0101, 0.3984)


def render_like_opensplat(cloud, camera, cam_from_world):
    """[H, W, 3] image of a splat PLY as OpenSplat 1.1.5's CPU forward pass computes it, written
    from its documented behaviour for evaluation only (no code taken from it).

    Its CPU rasterizer orders the Gaussians by reading the NDC-depth column of the [N, 3] projected
    points as if it were contiguous (``camDepths`` is a strided view passed by ``data_ptr``), so
    the sort key of Gaussian i is the (i + 2)-th float of the flattened (x, y, z) NDC array, not its
    depth. Its training fits the splats to that order: the same PLY rendered in true depth order
    (any 3DGS viewer, our rasterizer) shows the Gaussians it placed "behind" as a haze in front
    (7 dB instead of 17 on a train view at 160 px). Also as it does: principal point at the image
    centre, 2D blur 0.3, Jacobian clamp 1.3 x the half field of view, box of 3 sigma + 2 px per
    Gaussian, alpha clamp 0.999, skip below 1/255, a pixel stops at T <= 1e-4, its background.
    Checked against its own render of a held-out camera (--val-render): see ``check_emulation``.
    """
    import numpy as np
    import torch

    from render.splat.api import camera_intrinsics

    fx, fy, _, _ = camera_intrinsics(camera)
    W, H = camera.width, camera.height
    M = torch.tensor(np.asarray(cam_from_world.matrix()), dtype=torch.float64)
    R, t = M[:3, :3], M[:3, 3]
    means = torch.tensor(cloud.means, dtype=torch.float64)
    q = torch.tensor(cloud.quats_wxyz, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    Rq = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                      2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                      2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)
    Ms = Rq * torch.exp(torch.tensor(cloud.log_scales, dtype=torch.float64))[:, None, :]
    cov3 = Ms @ Ms.transpose(1, 2)
    pv = means @ R.T + t
    lx, ly = 1.3 * 0.5 * W / fx, 1.3 * 0.5 * H / fy
    tx = pv[:, 2] * torch.clamp(pv[:, 0] / pv[:, 2], -lx, lx)
    ty = pv[:, 2] * torch.clamp(pv[:, 1] / pv[:, 2], -ly, ly)
    rz = 1 / pv[:, 2]
    J = torch.zeros(len(means), 2, 3, dtype=torch.float64)
    J[:, 0, 0], J[:, 0, 2] = fx * rz, -fx * tx * rz ** 2
    J[:, 1, 1], J[:, 1, 2] = fy * rz, -fy * ty * rz ** 2
    T = J @ R
    cov2 = T @ cov3 @ T.transpose(1, 2)
    cov2[:, 0, 0] += 0.3
    cov2[:, 1, 1] += 0.3
    det = (cov2[:, 0, 0] * cov2[:, 1, 1] - cov2[:, 0, 1] ** 2).clamp_min(1e-6)
    A, B, C = cov2[:, 1, 1] / det, -cov2[:, 0, 1] / det, cov2[:, 0, 0] / det
    wz = pv[:, 2].clamp_min(1e-6)
    xn, yn = (2 * fx / W) * pv[:, 0] / wz, (2 * fy / H) * pv[:, 1] / wz
    near, far = 0.001, 1000.0
    zn = ((far + near) / (far - near) * pv[:, 2] - far * near / (far - near)) / wz
    u, v = 0.5 * ((xn + 1) * W - 1), 0.5 * ((yn + 1) * H - 1)
    key = torch.stack([xn, yn, zn], -1).reshape(-1)[2:2 + len(means)].float().numpy()
    op = torch.sigmoid(torch.tensor(cloud.opacity_logits, dtype=torch.float64))
    col = (0.28209479177387814 * torch.tensor(cloud.sh_dc, dtype=torch.float64) + 0.5).clamp_min(0)
    # (its PLYs at these budgets are below its first SH degree step, so DC is all it renders)
    jj, ii = torch.meshgrid(torch.arange(W, dtype=torch.float64), torch.arange(H, dtype=torch.float64),
                            indexing="xy")
    img = torch.zeros(H, W, 3, dtype=torch.float64)
    Tr = torch.ones(H, W, dtype=torch.float64)
    done = torch.zeros(H, W, dtype=torch.bool)
    sx, sy = 3 * cov2[:, 0, 0].sqrt(), 3 * cov2[:, 1, 1].sqrt()
    for g in np.argsort(key, kind="stable").tolist():
        if not (abs(float(u[g])) < 1e9 and abs(float(v[g])) < 1e9 and float(sx[g]) < 1e9 and float(sy[g]) < 1e9):
            continue
        i0, i1 = max(0, int(np.floor(float(v[g] - sy[g]))) - 2), min(H, int(np.ceil(float(v[g] + sy[g]))) + 2)
        j0, j1 = max(0, int(np.floor(float(u[g] - sx[g]))) - 2), min(W, int(np.ceil(float(u[g] + sx[g]))) + 2)
        if i0 >= i1 or j0 >= j1:
            continue
        dx, dy = u[g] - jj[i0:i1, j0:j1], v[g] - ii[i0:i1, j0:j1]
        sig = 0.5 * (A[g] * dx * dx + C[g] * dy * dy) + B[g] * dx * dy
        a = torch.clamp(op[g] * torch.exp(-sig), max=0.999)
        T0, d0 = Tr[i0:i1, j0:j1], done[i0:i1, j0:j1]
        ok = (sig >= 0) & (a >= 1 / 255) & ~d0
        newly = ok & (T0 * (1 - a) <= 1e-4)
        d0 |= newly
        a = torch.where(ok & ~newly, a, torch.zeros_like(a))
        img[i0:i1, j0:j1] += (a * T0)[..., None] * col[g]
        Tr[i0:i1, j0:j1] = T0 * (1 - a)
    img = img + Tr[..., None] * torch.tensor(OPENSPLAT_BACKGROUND, dtype=torch.float64)
    return img.clamp(0, 1).float().numpy()


def run_opensplat_budget(exe: Path, data: Path, out: Path, *, factor: float, steps: int, downscales: int | None,
                         budget: float, save_every: int = 50) -> tuple[Path, int, float]:
    """OpenSplat with -n ``steps`` (its schedules are fitted to -n), saving every ``save_every``
    steps, stopped at ``budget`` wall seconds (image loading included) -> (the last PLY it wrote,
    its step, wall seconds)."""
    import re
    import signal

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ply = out / "splat.ply"
    cmd = [str(exe), str(data), "-o", str(ply), "--cpu", "--keep-crs", "-n", str(steps), "-d", f"{factor:.6f}",
           "-s", str(save_every)]
    if downscales is not None:
        cmd += ["--num-downscales", str(downscales)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    wall = time.perf_counter() - t
    if proc.returncode == 0 and ply.is_file():
        return ply, steps, wall
    saved = sorted(((int(m.group(1)), p) for p in out.glob("splat_*.ply")
                    if (m := re.fullmatch(r"splat_(\d+)\.ply", p.name))), key=lambda x: x[0])
    if not saved:
        raise RuntimeError(f"{out}: OpenSplat saved no PLY within {budget:.0f} s")
    # the newest may be half-written at the kill: take the one before it when there is one
    step, path = saved[-2] if len(saved) > 1 else saved[-1]
    return path, step, wall


def evaluate(ply: Path, full: Path, scale: float, *, like_opensplat: bool = False) -> dict:
    """Held-out PSNR / SSIM of a 3DGS PLY rendered by our rasterizer (true depth order), and with
    ``like_opensplat`` also as OpenSplat's own CPU forward renders it (``*_own`` keys)."""
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
    ps, ss, po, so = [], [], [], []
    with torch.no_grad():
        for i in split.test:
            v = scene.views[i]
            out = rasterize(cloud, v.camera, v.cam_from_world)
            img = out.rgb.clamp(0, 1).numpy().astype(np.float32)
            ps.append(psnr(img, v.image))
            ss.append(ssim(img, v.image))
            if like_opensplat:
                own = render_like_opensplat(cloud, v.camera, v.cam_from_world)
                po.append(psnr(own, v.image))
                so.append(ssim(own, v.image))
    res = {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "num_gaussians": len(cloud.means),
           "size": [scene.views[0].camera.width, scene.views[0].camera.height]}
    if like_opensplat:
        res.update(psnr_own=float(np.mean(po)), ssim_own=float(np.mean(so)))
    return res


def check_emulation(exe: Path, train_only: Path, full: Path, work: Path, long_side: int) -> dict:
    """OpenSplat's own render of a camera it held out (--val-render, after its last step) against
    :func:`render_like_opensplat` of the PLY it wrote: PSNR between the two images (8-bit PNG)."""
    import numpy as np
    from PIL import Image

    from recon.io.gaussians import read_splat_ply
    from render.data import load_scene
    from render.metrics import psnr

    size, steps = 160, 60
    scene = load_scene(full, resolution_scale=size / long_side)
    name = scene.views[len(scene.views) // 2].name
    out = work / "emul_check"
    shutil.rmtree(out, ignore_errors=True)
    (out / "val").mkdir(parents=True)
    cmd = [str(exe), str(train_only), "-o", str(out / "splat.ply"), "--cpu", "--keep-crs", "-n", str(steps),
           "-d", f"{long_side / size:.6f}", "--num-downscales", "0", "--val-image", Path(name).name,
           "--val-render", str(out / "val")]
    subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    own = np.asarray(Image.open(out / "val" / f"{steps}.png").convert("RGB"), dtype=np.float32) / 255
    v = next(v for v in scene.views if v.name == name)
    cloud = read_splat_ply(out / "splat.ply")
    emu = render_like_opensplat(cloud, v.camera, v.cam_from_world)
    from render.splat import rasterize

    ours = rasterize(cloud, v.camera, v.cam_from_world).rgb.clamp(0, 1).detach().numpy()
    return {"view": name, "size": list(own.shape[1::-1]), "steps": steps,
            "psnr_emulation_vs_its_render": psnr(emu, own), "psnr_depth_sorted_vs_its_render": psnr(ours, own),
            "psnr_its_render_vs_truth": psnr(own, v.image)}


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
    if have_os:
        res["emulation_check"] = check_emulation(args.opensplat, train_only, full, args.work, long_side)
        print(f"OpenSplat's own render vs our emulation of it: {res['emulation_check']}", flush=True)
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
                # -n sized to the budget from its equal-size rate; the default schedule's first
                # 3000 steps are at 1/4 size (~6x cheaper here), so it gets 6x the steps; either
                # run is stopped at the budget and its last saved PLY evaluated
                n = max(50, int(budget * (os_rate or 1.0) * (1.0 if ds == 0 else 6.0)))
                o = args.work / f"q_{name}_{int(budget)}"
                ply, done, wall = run_opensplat_budget(args.opensplat, train_only, o, factor=1 / scale, steps=n,
                                                       downscales=ds, budget=budget)
                q[name] = {**evaluate(ply, full, scale, like_opensplat=True), "steps": done, "n": n,
                           "wall_s": round(wall, 1)}
                print(f"budget {budget:.0f} s {name}: {q[name]}", flush=True)
        res["quality"][budget] = q
    print(f"load after: {_uptime()}", flush=True)
    print(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
