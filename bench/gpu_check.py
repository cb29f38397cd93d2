"""The prepared GPU check (issue 14): every CUDA path of recon, run and measured in one command.

Run through ``bench/gpu_check.sh`` (it installs the carried gsplat wheel and sets the build
variables); on a lent GPU machine, inside about 9 minutes, this script

1. JIT-compiles gsplat's CUDA kernels once (``TORCH_CUDA_ARCH_LIST=9.0``) in a subprocess,
   timed on its own, while it renders the synthetic scenes (the build uses MAX_JOBS cores);
2. runs ``pytest -m gpu`` on the test files that hold GPU tests (gsplat vs our rasterizer,
   values and gradients; torch BA on CUDA vs NumPy);
3. runs the CUDA bundle adjuster and the NumPy solver on the problems of bench/bench_ba.py
   (10k, 30k, 100k points) and divides by the Ceres-on-CPU times measured with that bench on
   the CPU machine (read from bench/results/ba_cpu.json, not from this file);
4. trains splats with gsplat on a recon.synth scene (800x800, fixed steps): PSNR, SSIM, seconds,
   peak memory, Gaussians; the first steps again with our PyTorch rasterizer on CUDA for the
   speed ratio; and the CPU preset at the step count of bench/results/splat_cpu.json for the
   PSNR at equal steps;
5. trains NeRF on CUDA when ``render.nerf`` exists (skipped cleanly otherwise);

and writes ``gpu_check.json`` and ``gpu_check.md`` under ``--out`` after every stage (so a stage
that fails or runs out of time leaves the others' results), then prints the table. Each stage
has its own time budget, enforced with SIGALRM, and its own try/except.

``--dry-run`` runs the same stages on a CPU with tiny sizes (gsplat stages: "skipped: no
CUDA"; the torch paths run on the CPU); tests/test_gpu_check.py runs it so the script cannot rot.
``--cpu-reference`` trains the equal-steps configuration on this CPU with our rasterizer and
writes bench/results/splat_cpu.json.

    bash bench/gpu_check.sh                  # on the lent machine ($OUT receives the results)
    bash bench/gpu_check.sh --dry-run        # here, about 20 s
    PYTHONPATH=. python bench/gpu_check.py --cpu-reference   # the CPU reference (minutes)

Nothing here may import pycolmap, open3d, viser, trimesh or plyfile: the GPU machine has none.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RESULTS = ROOT / "bench" / "results"
BA_CPU_JSON = RESULTS / "ba_cpu.json"
SPLAT_CPU_JSON = RESULTS / "splat_cpu.json"


@dataclass(frozen=True)
class Sizes:
    """Problem sizes and per-stage time budgets (seconds) of one check."""

    splat_size: tuple[int, int]  # (width, height) of the main synthetic scene
    splat_views: int
    splat_steps: int  # gsplat training steps on the main scene
    ratio_steps: int  # steps run with both rasterizers for the speed ratio (before densification)
    match_size: tuple[int, int]  # the equal-steps scene (bench_splat's 30 views at 160x120)
    match_views: int
    match_steps: int | None  # None: the step count of bench/results/splat_cpu.json
    ba_points: tuple[int, ...]
    nerf_steps: int
    synth_workers: int
    budgets: dict
    texel_size: float = 0.004  # recon.synth texture resolution (m per texel; the default)


FULL = Sizes(splat_size=(800, 800), splat_views=24, splat_steps=3000, ratio_steps=300,
             match_size=(160, 120), match_views=30, match_steps=None,
             ba_points=(10_000, 30_000, 100_000), nerf_steps=2000, synth_workers=4,
             budgets={"gsplat_build": 330, "synth": 120, "pytest_gpu": 120, "bundle_adjust": 90,
                      "splat_gsplat": 120, "splat_ratio": 75, "splat_equal_steps": 60, "nerf": 60})
DRY = Sizes(splat_size=(64, 48), splat_views=6, splat_steps=12, ratio_steps=6,
            match_size=(40, 30), match_views=6, match_steps=8, ba_points=(300, 600), nerf_steps=10,
            synth_workers=1, texel_size=0.04,  # coarse textures: the bake is ~100x cheaper
            budgets={"gsplat_build": 10, "synth": 120, "pytest_gpu": 150, "bundle_adjust": 90,
                     "splat_gsplat": 60, "splat_ratio": 90, "splat_equal_steps": 60, "nerf": 60})


class StageTimeout(BaseException):
    """Raised by SIGALRM when a stage runs past its budget (BaseException: no `except Exception`
    inside the stage swallows it)."""


class StageFailed(Exception):
    """A stage that ran and measured, but whose outcome is a failure (e.g. a GPU test failed):
    recorded as an error that keeps its result."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


class Skip(Exception):
    """A stage that cannot run here (no CUDA, module absent): recorded as skipped with the reason."""


@contextlib.contextmanager
def alarm(seconds: float):
    def handler(signum, frame):
        raise StageTimeout(f"ran past its budget of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


class Check:
    """Runs stages under budgets and keeps the results on disk after each one."""

    def __init__(self, out: Path, sizes: Sizes, *, dry_run: bool, deadline_s: float):
        self.out, self.sizes, self.dry_run = out, sizes, dry_run
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + deadline_s
        self.results: dict = {"meta": {}, "stages": {}}
        out.mkdir(parents=True, exist_ok=True)

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def stage(self, name: str, fn, *, budget: float | None = None, reserve: float = 5.0):
        """Run ``fn(budget_s)``; record {status, seconds, result | reason | error}."""
        budget = min(self.sizes.budgets.get(name, 60) if budget is None else budget, self.remaining() - reserve)
        rec: dict = {"budget_s": round(budget, 1)}
        t = time.perf_counter()
        print(f"\n== {name} (budget {budget:.0f} s, {self.remaining():.0f} s left)", flush=True)
        if budget < 3:
            rec.update(status="skipped", reason="no time left in the check's deadline")
        else:
            try:
                with alarm(budget):
                    rec["result"] = fn(budget)
                rec["status"] = "ok"
            except Skip as e:
                rec.update(status="skipped", reason=str(e))
            except StageFailed as e:
                rec.update(status="error", error=str(e), result=e.result)
            except StageTimeout as e:
                rec.update(status="timeout", reason=str(e))
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001 - one stage's failure must not lose the others
                rec.update(status="error", error=f"{type(e).__name__}: {e}",
                           traceback=traceback.format_exc(limit=8)[-3000:])
        rec["seconds"] = round(time.perf_counter() - t, 2)
        self.results["stages"][name] = rec
        print(f"== {name}: {rec['status']} in {rec['seconds']:.1f} s"
              + (f" ({rec.get('reason') or rec.get('error')})" if rec["status"] != "ok" else ""), flush=True)
        self.write()
        return rec.get("result")

    def write(self) -> None:
        self.results["meta"]["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        (self.out / "gpu_check.json").write_text(json.dumps(self.results, indent=2, default=_json_default) + "\n")
        (self.out / "gpu_check.md").write_text(markdown(self.results) + "\n")


# =========================================================================================
# Stages
# =========================================================================================

def has_module(name: str) -> bool:
    """importlib.util.find_spec that treats a module whose lookup raises as absent."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def meta(dry_run: bool) -> dict:
    import torch

    m = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry_run": dry_run,
         "python": platform.python_version(), "torch": torch.__version__,
         "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
         "cpu_cores": os.cpu_count(), "machine": platform.machine(),
         "load_average": list(os.getloadavg()),
         "env": {k: os.environ.get(k) for k in ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS", "TORCH_EXTENSIONS_DIR")}}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        m["device"] = f"{p.name}, {p.total_memory / 2 ** 30:.0f} GiB, compute capability {p.major}.{p.minor}"
    else:
        m["device"] = f"CPU only ({os.cpu_count()} cores)"
    try:
        v = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, timeout=20).stdout
        m["nvcc"] = (re.findall(r"release [^\n]*", v) or [v.strip()[-80:]])[0]
    except (OSError, subprocess.SubprocessError):
        m["nvcc"] = None
    try:
        m["git_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                         text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        m["git_commit"] = None
    m["gsplat"] = None
    if has_module("gsplat"):
        with contextlib.suppress(Exception):
            m["gsplat"] = importlib.import_module("gsplat").__version__
    return m


_BUILD_SCRIPT = """
import time, sys
t = time.perf_counter()
from gsplat.cuda._backend import _C
if _C is None:
    sys.exit("gsplat: no CUDA extension (no CUDA toolkit found?)")
print(f"GSPLAT_BUILD_SECONDS {time.perf_counter() - t:.2f}", flush=True)
"""


class GsplatBuild:
    """gsplat's JIT build in a subprocess, so the scenes render meanwhile and a hung or failed
    build cannot take the check down with it."""

    def __init__(self, out: Path):
        self.log = out / "gsplat_build.log"
        self.proc = None
        self.t0 = None

    def start(self) -> dict:
        if not cuda_available():
            raise Skip("no CUDA")
        if not has_module("gsplat"):
            raise Skip("gsplat is not installed (carry its wheel in .whl/; see docs/gpu.md)")
        self.t0 = time.perf_counter()
        self.fh = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", _BUILD_SCRIPT], stdout=self.fh,
                                     stderr=subprocess.STDOUT, env=dict(os.environ))
        return {"started": True, "build_dir": _build_dir()}

    def wait(self, budget: float) -> dict:
        if self.proc is None:
            raise Skip("build not started (see gsplat_build_start)")
        try:
            rc = self.proc.wait(timeout=max(budget - 1.0, 1.0))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise StageTimeout(f"gsplat build still running {time.perf_counter() - self.t0:.0f} s after its "
                               "start; killed") from None
        finally:
            self.fh.close()
        wall = time.perf_counter() - self.t0
        text = self.log.read_text(errors="replace")
        if rc != 0:
            raise RuntimeError(f"gsplat build failed (exit {rc}); last lines: {text[-1500:]}")
        m = re.search(r"GSPLAT_BUILD_SECONDS ([0-9.]+)", text)
        res = {"seconds_wall": round(wall, 1), "seconds_import": float(m.group(1)) if m else None,
               "arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST"), "max_jobs": os.environ.get("MAX_JOBS"),
               "reused_carried_build": "has been set up" not in text,
               "note": "ran while the synthetic scenes rendered (1-4 other cores busy)"}
        res.update(_keep_build(Path(res.pop("build_dir", None) or _build_dir()), self.log.parent))
        return res


def _build_dir() -> str:
    from torch.utils.cpp_extension import _get_build_directory

    return _get_build_directory("gsplat_cuda", verbose=False)


def _keep_build(build_dir: Path, out: Path, limit_mb: float = 15.5) -> dict:
    """Tar the build folder into $OUT when it fits the device tool's 16 MB per-file limit, so a
    later call can carry it back as .whl/gsplat_build.tar.gz instead of rebuilding."""
    import tarfile

    if not build_dir.is_dir():
        return {"kept": False, "why": f"{build_dir} not found"}
    size = sum(p.stat().st_size for p in build_dir.rglob("*") if p.is_file())
    so = list(build_dir.glob("*.so"))
    info = {"build_dir_mb": round(size / 2 ** 20, 1), "so_mb": round(so[0].stat().st_size / 2 ** 20, 1) if so else None}
    tar = out / "gsplat_build.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(build_dir, arcname=build_dir.name)
    mb = tar.stat().st_size / 2 ** 20
    if mb > limit_mb:
        tar.unlink()
        info.update(kept=False, why=f"tar.gz is {mb:.1f} MB, over the {limit_mb} MB that comes back")
    else:
        info.update(kept=True, tar_mb=round(mb, 1))
    return info


def make_synth(folder: Path, size: tuple[int, int], views: int, workers: int, scene=None) -> Path:
    """A recon.synth orbit dataset (the scene of bench/bench_splat.py) at ``size`` (W, H)."""
    from recon import synth

    if (folder / "gt.json").is_file():
        return folder
    scene = scene or synth.make_scene(seed=0)
    scene.atlas  # bake the textures once, before write_dataset forks its workers
    cam = synth.make_camera("PINHOLE", size[0], size[1], fov_deg=60)
    opts = synth.DatasetOptions(progress=False, write_normals=False, write_labels=False, workers=workers)
    synth.write_dataset(folder, scene, cam, synth.orbit(views, radius=3.2), options=opts)
    return folder


def stage_synth(work: Path, sizes: Sizes) -> dict:
    from recon import synth

    res = {}
    scene = synth.make_scene(seed=0, config=synth.SceneConfig(texel_size=sizes.texel_size))
    for key, size, views in (("main", sizes.splat_size, sizes.splat_views),
                             ("equal_steps", sizes.match_size, sizes.match_views)):
        t = time.perf_counter()
        make_synth(work / f"synth_{key}", size, views, sizes.synth_workers, scene)
        res[key] = {"size": list(size), "views": views, "seconds": round(time.perf_counter() - t, 1)}
    return res


def gpu_test_files() -> list[str]:
    """The test files that hold `@pytest.mark.gpu` tests. Only these are collected there, and
    each must import without pycolmap / open3d / viser (tests/test_gpu_check.py checks it)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if "pytest.mark.gpu" in p.read_text(errors="replace"))


def stage_pytest(out: Path, budget: float) -> dict:
    files = gpu_test_files()
    if not files:
        raise RuntimeError("no test file holds @pytest.mark.gpu tests")
    log = out / "pytest_gpu.log"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rA", "-p", "no:cacheprovider", *files]
    if GSPLAT_BUILD["ok"] is False:  # the gsplat tests would start the build again
        cmd[5:5] = ["-k", "not gsplat"]
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(budget - 2, 1))
    except subprocess.TimeoutExpired as e:
        log.write_text((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""))
        raise StageTimeout(f"pytest ran past {budget:.0f} s") from None
    log.write_text(p.stdout + p.stderr)
    summary = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)}
    outcome = re.findall(r"^(PASSED|FAILED|SKIPPED|ERROR) (\S+)", p.stdout, flags=re.MULTILINE)
    res = {"files": files, "returncode": p.returncode, "summary": summary, "counts": counts,
           "tests": [f"{o} {t}" for o, t in outcome]}
    if p.returncode not in (0, 5):
        raise StageFailed(f"pytest -m gpu: {summary} (see pytest_gpu.log)", res)
    return res


def _ba_ceres_reference() -> dict:
    if not BA_CPU_JSON.is_file():
        return {}
    doc = json.loads(BA_CPU_JSON.read_text())
    return {int(r["points"]): r for r in doc["rows"]}


def stage_ba(sizes: Sizes, dry_run: bool, budget: float) -> dict:
    """CUDA (torch backend) vs NumPy solver on bench_ba's problems; Ceres from the CPU JSON."""
    import torch
    from bench_ba import TOLERANCES, make_problem

    from recon.ba import BAOptions, bundle_adjust
    from recon.ba.synthetic import perturb_problem, synthetic_problem

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not dry_run:
        raise Skip("no CUDA")
    ceres = _ba_ceres_reference()
    t_end = time.perf_counter() + budget
    warm = perturb_problem(synthetic_problem(5, 100, seed=1))  # first-call costs (CUDA context, kernels)
    bundle_adjust(warm, BAOptions(backend="torch", device=device))
    bundle_adjust(warm, BAOptions(backend="numpy"))
    rows, last_total = [], 0.0
    for n_pts in sizes.ba_points:
        left = t_end - time.perf_counter()
        if rows and left < 3.5 * last_total * n_pts / rows[-1]["points"]:
            rows.append({"points": n_pts, "skipped": f"not enough budget left ({left:.0f} s)"})
            continue
        prob, _ = make_problem(n_pts)
        t = time.perf_counter()
        gpu = bundle_adjust(prob, BAOptions(backend="torch", device=device, max_iterations=50, **TOLERANCES))
        if device == "cuda":
            torch.cuda.synchronize()
        t_gpu = time.perf_counter() - t
        t = time.perf_counter()
        cpu = bundle_adjust(prob, BAOptions(backend="numpy", max_iterations=50, **TOLERANCES))
        t_np = time.perf_counter() - t
        last_total = t_gpu + t_np
        row = {"points": n_pts, "images": prob.num_images, "observations": prob.num_observations,
               "device": device, "seconds_torch": round(t_gpu, 3), "seconds_numpy": round(t_np, 3),
               "iterations_torch": gpu.iterations, "iterations_numpy": cpu.iterations,
               "cost_torch": gpu.final_cost, "cost_numpy": cpu.final_cost,
               "rel_cost_diff": (gpu.final_cost - cpu.final_cost) / cpu.final_cost,
               "speedup_vs_numpy_here": round(t_np / t_gpu, 2)}
        ref = ceres.get(n_pts)
        if ref:
            row.update(seconds_ceres_cpu=ref["seconds_ceres"], seconds_numpy_cpu=ref["seconds_ours"],
                       speedup_vs_ceres_cpu=round(ref["seconds_ceres"] / t_gpu, 2))
        rows.append(row)
        print(f"  BA {n_pts} points: torch/{device} {t_gpu:.2f} s, numpy {t_np:.2f} s", flush=True)
    return {"rows": rows, "ceres_reference": str(BA_CPU_JSON.relative_to(ROOT)) if ceres else None,
            "bar": ">= 5x faster than Ceres on CPU from 10k points"}


def _train(data: Path, out: Path, *, preset: str, steps: int, device: str, backend: str, max_seconds: float,
           max_gaussians: int | None = None) -> dict:
    from render.splat.trainer import TrainConfig, train

    cfg = TrainConfig.preset(preset, steps=steps, device=device, backend=backend, max_seconds=max_seconds,
                             checkpoint_every=0)
    if max_gaussians is not None:
        cfg = dataclasses.replace(cfg, densify=dataclasses.replace(cfg.densify, max_gaussians=max_gaussians))
    res = train(data, out, cfg, progress=False, log=lambda m: print(f"  [{backend}] {m}", flush=True))
    r = res.report
    keys = ("psnr_test", "ssim_test", "steps", "seconds", "num_gaussians", "peak_memory_mb",
            "peak_memory_kind", "device", "rasterizer", "resolution", "train_views", "test_views")
    d = {k: r.get(k) for k in keys}
    d.update(preset=preset, steps_planned=steps, seconds_per_step=round(r["seconds"] / max(r["steps"], 1), 5))
    return d


# False once the gsplat build failed or timed out: the gsplat stages then skip instead of
# starting the JIT build again in this process (minutes, under the stage's alarm).
GSPLAT_BUILD = {"ok": None, "why": ""}


def _need_gsplat():
    from render.splat.api import gsplat_available

    if GSPLAT_BUILD["ok"] is False:
        raise Skip(f"the gsplat build did not succeed ({GSPLAT_BUILD['why']})")
    ok, why = gsplat_available()
    if not ok:
        raise Skip("no CUDA" if "CUDA" in why and "no CUDA" in why else why)
    return why


def stage_splat_gsplat(work: Path, sizes: Sizes, budget: float) -> dict:
    _need_gsplat()
    return _train(work / "synth_main", work / "splat_gsplat", preset="default", steps=sizes.splat_steps,
                  device="cuda", backend="gsplat", max_seconds=budget - 25)


def stage_splat_ratio(work: Path, sizes: Sizes, dry_run: bool, budget: float) -> dict:
    """The first ``ratio_steps`` (no densification yet, so both render the same Gaussians) with
    gsplat and with our PyTorch rasterizer, both on CUDA: the speed ratio per step."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not dry_run:
        raise Skip("no CUDA")
    res: dict = {}
    try:
        _need_gsplat()
        res["gsplat"] = _train(work / "synth_main", work / "ratio_gsplat", preset="default",
                               steps=sizes.ratio_steps, device="cuda", backend="gsplat", max_seconds=budget / 4)
    except Skip as e:
        res["gsplat"] = {"skipped": str(e)}
    left = budget - sum(v.get("seconds", 0) or 0 for v in res.values()) - 20
    res["torch"] = _train(work / "synth_main", work / "ratio_torch", preset="default", steps=sizes.ratio_steps,
                          device=device, backend="torch", max_seconds=max(left * 0.75, 2))
    if "seconds_per_step" in res["gsplat"]:
        res["speedup_gsplat_vs_torch"] = round(res["torch"]["seconds_per_step"] / res["gsplat"]["seconds_per_step"], 1)
    return res


def stage_equal_steps(work: Path, sizes: Sizes, budget: float) -> dict:
    """bench_splat's CPU configuration (preset cpu, 20k Gaussians cap, 30 views at 160x120) with
    gsplat, at the step count of the CPU reference run: PSNR at equal steps."""
    _need_gsplat()
    ref = json.loads(SPLAT_CPU_JSON.read_text()) if SPLAT_CPU_JSON.is_file() else None
    steps = sizes.match_steps or (ref["steps"] if ref else 1000)
    r = _train(work / "synth_equal_steps", work / "splat_equal_steps", preset="cpu", steps=steps, device="cuda",
               backend="gsplat", max_seconds=budget - 15, max_gaussians=20_000)
    if ref:
        r["cpu_reference"] = {k: ref.get(k) for k in ("psnr_test", "ssim_test", "steps", "seconds", "date", "load_average")}
        r["psnr_gain_vs_cpu_db"] = round(r["psnr_test"] - ref["psnr_test"], 2)
    return r


def stage_nerf(work: Path, sizes: Sizes, dry_run: bool, budget: float) -> dict:
    """NeRF on CUDA when render.nerf exists (built on another branch): steps/s and PSNR at a fixed
    step budget. Expects render.nerf's trainer to mirror the splat one: TrainConfig + train()."""
    if not has_module("render.nerf"):
        raise Skip("render.nerf is absent on this branch")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not dry_run:
        raise Skip("no CUDA")
    mod = importlib.import_module("render.nerf")
    TrainConfig, train = getattr(mod, "TrainConfig", None), getattr(mod, "train", None)
    if TrainConfig is None or train is None:
        raise Skip("render.nerf has no TrainConfig / train() (API not recognised)")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: v for k, v in {"steps": sizes.nerf_steps, "device": device, "max_seconds": budget - 15,
                            "checkpoint_every": 0}.items() if k in fields}
    res = train(work / "synth_equal_steps", work / "nerf", TrainConfig(**kw), progress=False,
                log=lambda m: print(f"  [nerf] {m}", flush=True))
    r = getattr(res, "report", res) if not isinstance(res, dict) else res
    steps, secs = r.get("steps"), r.get("seconds")
    return {"psnr_test": r.get("psnr_test"), "ssim_test": r.get("ssim_test"), "steps": steps, "seconds": secs,
            "steps_per_second": round(steps / secs, 1) if steps and secs else None, "device": device,
            "peak_memory_mb": r.get("peak_memory_mb")}


# =========================================================================================
# Report
# =========================================================================================

def _f(x, fmt="{:.3g}"):
    if x is None:
        return "-"
    if isinstance(x, float):
        return fmt.format(x)
    return str(x)


def markdown(results: dict) -> str:
    m, st = results.get("meta", {}), results.get("stages", {})
    lines = [f"# recon GPU check{' (DRY RUN: CPU, tiny sizes)' if m.get('dry_run') else ''}", "",
             f"{m.get('date', '?')}; {m.get('device', '?')}; torch {m.get('torch')} (CUDA {m.get('torch_cuda')}); "
             f"nvcc {m.get('nvcc')}; gsplat {m.get('gsplat')}; Python {m.get('python')}; "
             f"{m.get('cpu_cores')} CPU cores; commit {str(m.get('git_commit'))[:10]}; "
             f"{m.get('elapsed_s', '?')} s in all", "",
             "| stage | status | result | s |", "|---|---|---|---|"]
    for name, rec in st.items():
        status = rec.get("status", "?")
        if status == "ok":
            summary = _summary(name, rec.get("result") or {})
        else:
            summary = (rec.get("reason") or rec.get("error") or "").replace("|", "/").replace("\n", " ")[:200]
        lines.append(f"| {name} | {status} | {summary} | {rec.get('seconds', '-')} |")
    ba = (st.get("bundle_adjust") or {}).get("result")
    if ba and ba.get("rows"):
        lines += ["", "Bundle adjustment (bench/bench_ba.py problems; Ceres: CPU machine, "
                  f"{ba.get('ceres_reference') or 'no reference JSON'})", "",
                  "| points | obs | device | torch s | numpy s | Ceres CPU s | vs numpy | vs Ceres | rel cost diff | iters |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in ba["rows"]:
            if "skipped" in r:
                lines.append(f"| {r['points']} | skipped: {r['skipped']} |||||||||")
                continue
            lines.append(f"| {r['points']} | {r['observations']} | {r['device']} | {r['seconds_torch']:.3f} | "
                         f"{r['seconds_numpy']:.3f} | {_f(r.get('seconds_ceres_cpu'))} | "
                         f"{r['speedup_vs_numpy_here']:.2f}x | {_f(r.get('speedup_vs_ceres_cpu'))}x | "
                         f"{r['rel_cost_diff']:.1e} | {r['iterations_torch']}/{r['iterations_numpy']} |")
    rows = []
    for name, key in (("splat_gsplat", None), ("splat_ratio", "gsplat"), ("splat_ratio", "torch"),
                      ("splat_equal_steps", None)):
        res = (st.get(name) or {}).get("result")
        r = res.get(key) if (res and key) else res
        if r and "psnr_test" in r:
            rows.append(f"| {name}{'/' + key if key else ''} | {r.get('rasterizer')} on {r.get('device')} | "
                        f"{r.get('resolution')} | {r.get('steps')}/{r.get('steps_planned')} | "
                        f"{_f(r.get('psnr_test'), '{:.2f}')} | "
                        f"{_f(r.get('ssim_test'), '{:.3f}')} | {_f(r.get('seconds'), '{:.1f}')} | "
                        f"{_f(r.get('seconds_per_step'), '{:.4f}')} | {_f(r.get('peak_memory_mb'), '{:.0f}')} | "
                        f"{r.get('num_gaussians')} |")
    if rows:
        lines += ["", "Gaussian splatting (recon.synth orbit scene; PSNR/SSIM on held-out views)", "",
                  "| run | rasterizer | W x H | steps done/planned | PSNR dB | SSIM | s | s/step | peak MB | Gaussians |",
                  "|---|---|---|---|---|---|---|---|---|---|", *rows]
    return "\n".join(lines)


def _summary(name: str, r: dict) -> str:
    if name == "gsplat_build":
        return (f"{_f(r.get('seconds_wall'), '{:.0f}')} s wall (arch {r.get('arch_list')}, MAX_JOBS {r.get('max_jobs')}); "
                f"build dir {r.get('build_dir_mb')} MB, kept in $OUT: {r.get('kept')}")
    if name == "pytest_gpu":
        return f"{r.get('summary')}"
    if name == "synth":
        return "; ".join(f"{k} {v['size'][0]}x{v['size'][1]} x {v['views']} views {v['seconds']} s" for k, v in r.items())
    if name == "bundle_adjust":
        return "; ".join(f"{x['points']:,}: " + (f"{x['seconds_torch']:.2f} s {x['device']}, "
                         f"{x['speedup_vs_numpy_here']:.1f}x numpy, {_f(x.get('speedup_vs_ceres_cpu'))}x Ceres-CPU"
                         if "skipped" not in x else "skipped") for x in r.get("rows", []))
    if name == "splat_ratio":
        return (f"per step: gsplat {_f((r.get('gsplat') or {}).get('seconds_per_step'))} s, torch "
                f"{_f((r.get('torch') or {}).get('seconds_per_step'))} s on {(r.get('torch') or {}).get('device')}; "
                f"gsplat {_f(r.get('speedup_gsplat_vs_torch'))}x faster")
    if name == "splat_equal_steps":
        ref = r.get("cpu_reference") or {}
        return (f"{r.get('steps')} steps: {_f(r.get('psnr_test'), '{:.2f}')} dB in {_f(r.get('seconds'), '{:.1f}')} s; "
                f"CPU reference {_f(ref.get('psnr_test'), '{:.2f}')} dB in {_f(ref.get('seconds'), '{:.0f}')} s "
                f"({_f(r.get('psnr_gain_vs_cpu_db'))} dB)")
    if "psnr_test" in r:
        return (f"{r.get('steps')} steps, {_f(r.get('psnr_test'), '{:.2f}')} dB, SSIM {_f(r.get('ssim_test'), '{:.3f}')}, "
                f"{_f(r.get('seconds'), '{:.1f}')} s, {_f(r.get('peak_memory_mb'), '{:.0f}')} MB, "
                f"{r.get('num_gaussians', '-')} Gaussians"
                + (f", {r['steps_per_second']} steps/s" if r.get("steps_per_second") else ""))
    return json.dumps(r, default=_json_default)[:200].replace("|", "/")


# =========================================================================================

def cpu_reference(out_json: Path, steps: int, work: Path) -> int:
    """Train the equal-steps configuration on this CPU with our rasterizer -> splat_cpu.json."""
    data = make_synth(work / "synth_equal_steps", FULL.match_size, FULL.match_views, 1)
    load = os.getloadavg()
    r = _train(data, work / "splat_cpu", preset="cpu", steps=steps, device="cpu", backend="torch",
               max_seconds=1e9, max_gaussians=20_000)
    r.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_average=[list(load), list(os.getloadavg())],
             machine=f"{platform.machine()}, {os.cpu_count()} CPU cores",
             command=f"PYTHONPATH=. python bench/gpu_check.py --cpu-reference --steps {steps}")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(r, indent=2, default=_json_default) + "\n")
    print(json.dumps(r, indent=2, default=_json_default))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "out" / "gpu_check"),
                    help="results folder (default $OUT, else out/gpu_check)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (CI)")
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds for the whole check (default 540; dry run 400)")
    ap.add_argument("--budget-scale", type=float, default=1.0,
                    help="multiply every stage budget and the deadline (a loaded CPU in CI: 4)")
    ap.add_argument("--only", default=None, help="comma-separated stage names to run (default: all)")
    ap.add_argument("--cpu-reference", action="store_true",
                    help="write bench/results/splat_cpu.json (CPU, our rasterizer) and exit")
    ap.add_argument("--steps", type=int, default=1000, help="steps of --cpu-reference")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    if args.cpu_reference:
        return cpu_reference(SPLAT_CPU_JSON, args.steps, work)
    sizes = DRY if args.dry_run else FULL
    if args.budget_scale != 1.0:
        sizes = dataclasses.replace(sizes, budgets={k: v * args.budget_scale for k, v in sizes.budgets.items()})
    if args.dry_run:  # tiny tensors: one thread (OpenMP spinning on a loaded CPU is 10-100x slower)
        import torch

        torch.set_num_threads(1)
    check = Check(args.out, sizes, dry_run=args.dry_run,
                  deadline_s=args.deadline or (400.0 if args.dry_run else 540.0) * args.budget_scale)
    only = set(args.only.split(",")) if args.only else None
    run = (lambda name: only is None or name in only)
    check.results["meta"] = meta(args.dry_run)
    check.results["meta"].update(sizes=dataclasses.asdict(sizes), work_dir=str(work))
    check.write()
    build = GsplatBuild(args.out)
    if run("gsplat_build"):
        check.stage("gsplat_build_start", lambda b: build.start(), budget=30)
    check.stage("synth", lambda b: stage_synth(work, sizes))
    if run("gsplat_build"):
        # the build's budget counts from its start, the scenes' rendering included
        since_start = time.perf_counter() - build.t0 if build.t0 else 0.0
        check.stage("gsplat_build", build.wait, budget=max(sizes.budgets["gsplat_build"] - since_start, 3))
        rec = check.results["stages"]["gsplat_build"]
        if rec["status"] in ("error", "timeout"):
            GSPLAT_BUILD.update(ok=False, why=f"{rec['status']}: {(rec.get('reason') or rec.get('error'))[:120]}")
        if build.proc is not None and build.proc.poll() is None:
            build.proc.kill()
    if run("pytest_gpu"):
        check.stage("pytest_gpu", lambda b: stage_pytest(args.out, b))
    if run("bundle_adjust"):
        check.stage("bundle_adjust", lambda b: stage_ba(sizes, args.dry_run, b))
    if run("splat_gsplat"):
        check.stage("splat_gsplat", lambda b: stage_splat_gsplat(work, sizes, b))
    if run("splat_ratio"):
        check.stage("splat_ratio", lambda b: stage_splat_ratio(work, sizes, args.dry_run, b))
    if run("splat_equal_steps"):
        check.stage("splat_equal_steps", lambda b: stage_equal_steps(work, sizes, b))
    if run("nerf"):
        check.stage("nerf", lambda b: stage_nerf(work, sizes, args.dry_run, b))
    check.write()
    print("\n" + markdown(check.results))
    print(f"\nresults: {args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'}")
    bad = [n for n, r in check.results["stages"].items() if r["status"] in ("error", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
