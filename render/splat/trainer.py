"""Gaussian-splatting trainer (3DGS recipe; gsplat ``simple_trainer`` defaults and names).

``train(scene_or_path, out_dir, config)`` optimises Gaussians against posed images and writes::

    out_dir/splat.ply          standard 3DGS PLY (SuperSplat / gsplat / Inria viewers read it)
    out_dir/checkpoint.pt      params + Adam state + strategy state + step (``resume=True``)
    out_dir/renders/test/*.png renders of the held-out views (every 8th image)
    out_dir/report.json        psnr_test, ssim_test, lpips_test (or null + reason), steps, seconds,
                               num_gaussians, device, peak_memory_mb, ...
    out_dir/config.json        the TrainConfig used (versioned, plain JSON)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from recon.errors import ReconError
from render.data import SceneData, View, load_scene, split_train_test
from render.metrics import lpips, lpips_status, psnr, ssim
from render.splat.api import RenderOutput, rasterize
from render.splat.gaussians import Gaussians
from render.splat.strategy import DefaultStrategy, MCMCStrategy

__all__ = ["PRESETS", "TrainConfig", "TrainResult", "TrainingDiverged", "init_gaussians", "train"]

CONFIG_VERSION = 1


class TrainingDiverged(ReconError):
    """The loss became NaN/Inf. The last good state is in the checkpoint."""


@dataclass
class TrainConfig:
    """Training hyper-parameters (3DGS / gsplat defaults unless noted). Learning rates are per
    parameter for Adam; ``lr_means`` is multiplied by the scene extent and decays exponentially
    to ``lr_means_final`` over the run, as in 3DGS."""

    steps: int = 7_000
    resolution_scale: float = 1.0  # resize images (and intrinsics) by this factor
    strategy: str = "default"  # "default" (3DGS clone/split/prune) or "mcmc"
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda"
    backend: str = "auto"  # rasterizer: "auto" (gsplat on CUDA when importable), "torch", "gsplat"
    seed: int = 0
    # initialisation
    init: str = "auto"  # "sfm" (the model's 3D points), "random" (in a box), "auto" (sfm if any)
    init_num_random: int = 20_000
    init_opacity: float = 0.1
    init_scale: float = 1.0  # multiplier on the mean distance to the 3 nearest neighbours
    # appearance
    sh_degree: int = 3
    sh_degree_interval: int = 1_000  # one more SH band every N steps
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # loss
    lambda_dssim: float = 0.2
    # learning rates
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_log_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 5e-2
    lr_sh_dc: float = 2.5e-3
    lr_sh_rest: float = 2.5e-3 / 20
    # densification
    densify: DefaultStrategy = field(default_factory=DefaultStrategy)
    mcmc: MCMCStrategy = field(default_factory=MCMCStrategy)
    # evaluation, output
    test_every: int = 8  # every 8th view is held out (0: train on all, evaluate on train views)
    checkpoint_every: int = 1_000
    max_seconds: float | None = None  # stop early (then evaluate and export) after this wall time
    compile: bool = False  # fuse the torch rasterizer's chunk kernels with torch.compile (3-6x, one-time build)
    max_views: int | None = None
    tile_size: int = 8  # torch rasterizer work partition
    chunk_size: int = 32

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps: expected >= 1, got {self.steps}")
        if self.strategy not in ("default", "mcmc"):
            raise ValueError(f"strategy: expected 'default' or 'mcmc', got {self.strategy!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.init not in ("auto", "sfm", "random"):
            raise ValueError(f"init: expected 'auto', 'sfm' or 'random', got {self.init!r}")
        if not 0 <= self.sh_degree <= 3:
            raise ValueError(f"sh_degree: expected 0..3, got {self.sh_degree}")
        if not 0 < self.resolution_scale <= 1:
            raise ValueError(f"resolution_scale: expected a value in (0, 1], got {self.resolution_scale}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["background"] = list(self.background)
        d["version"] = CONFIG_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d.pop("version", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"config: unknown fields {sorted(unknown)}")
        if "densify" in d:
            d["densify"] = DefaultStrategy(**d["densify"])
        if "mcmc" in d:
            d["mcmc"] = MCMCStrategy(**d["mcmc"])
        if "background" in d:
            d["background"] = tuple(d["background"])
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides) -> TrainConfig:
        if name not in PRESETS:
            raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
        cfg = PRESETS[name]()
        return dataclasses.replace(cfg, **overrides)

    def scaled_schedule(self) -> TrainConfig:
        """Densification / SH schedules fitted to ``steps`` when it is shorter than the 30k-step
        3DGS schedule: refinement stops at 70% of the run (3DGS: 15k of 30k, but short runs need
        the growth), resets only when there is room."""
        if self.steps >= 30_000:
            return self
        d = dataclasses.replace(self.densify, refine_stop=min(self.densify.refine_stop, max(1, int(0.7 * self.steps))))
        m = dataclasses.replace(self.mcmc, refine_stop=min(self.mcmc.refine_stop, int(0.8 * self.steps)))
        return dataclasses.replace(self, densify=d, mcmc=m)


def _preset_cpu() -> TrainConfig:
    """Small scenes on a CPU (e.g. 160x120): 3k steps, capped growth, faster schedules."""
    return TrainConfig(steps=3_000, init_num_random=5_000, sh_degree_interval=500,
                       densify=DefaultStrategy(refine_start=200, refine_every=100, reset_every=100_000,
                                               max_gaussians=40_000),
                       mcmc=MCMCStrategy(cap_max=20_000, refine_start=200))


PRESETS = {
    "default": lambda: TrainConfig(),  # gsplat's 7k-step schedule
    "long": lambda: TrainConfig(steps=30_000),  # the 3DGS paper's 30k schedule
    "cpu": _preset_cpu,
}


@dataclass
class TrainResult:
    out_dir: Path
    report: dict
    gaussians: Gaussians


# =========================================================================================
# Initialisation
# =========================================================================================

def _knn_scale(xyz: np.ndarray) -> np.ndarray:
    """sqrt of the mean squared distance to the 3 nearest neighbours (3DGS ``simple_knn``)."""
    from scipy.spatial import cKDTree

    k = min(4, len(xyz))
    if k < 2:
        return np.full(len(xyz), 0.01)
    d, _ = cKDTree(xyz).query(xyz, k=k)
    return np.sqrt(np.maximum(np.mean(d[:, 1:] ** 2, axis=1), 1e-14))


def _look_at_centre(views: list[View]) -> tuple[np.ndarray, float]:
    """Least-squares point closest to every optical axis, and the mean camera distance to it."""
    A, b = np.zeros((3, 3)), np.zeros(3)
    centres = []
    for v in views:
        c = v.cam_from_world.dst_origin_in_src()
        d = v.cam_from_world.rotation[2]  # optical axis in world
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ c
        centres.append(c)
    centres = np.array(centres)
    try:
        p = np.linalg.solve(A, b) if len(views) > 1 else centres[0] + views[0].cam_from_world.rotation[2]
    except np.linalg.LinAlgError:
        p = centres.mean(0)
    dist = float(np.linalg.norm(centres - p, axis=1).mean())
    return p, max(dist, 1e-3)


def init_gaussians(scene: SceneData, cfg: TrainConfig, rng: np.random.Generator) -> tuple[Gaussians, str]:
    """-> (Gaussians on CPU float32, description)."""
    n_pts = len(scene.points_xyz)
    mode = cfg.init
    if mode == "auto":
        mode = "sfm" if n_pts > 0 else "random"
    if mode == "sfm":
        if n_pts == 0:
            raise ReconError(f"{scene.source}: the point cloud is empty, so there is nothing to initialise "
                             "from; use --init random (Gaussians in a box around what the cameras see)")
        xyz = scene.points_xyz.astype(np.float64)
        rgb = scene.points_rgb.astype(np.float64) / 255.0
        how = f"{n_pts} SfM points"
    else:
        centre, dist = _look_at_centre(scene.views)
        half = 0.6 * dist
        xyz = centre + rng.uniform(-half, half, size=(cfg.init_num_random, 3))
        rgb = rng.uniform(0.0, 1.0, size=(cfg.init_num_random, 3))
        how = f"{cfg.init_num_random} random points in a {2 * half:.3g}-wide box at {np.round(centre, 3).tolist()}"
    if not np.all(np.isfinite(xyz)):
        raise ReconError(f"{scene.source}: initial points contain NaN/Inf")
    n = len(xyz)
    scale = _knn_scale(xyz) * cfg.init_scale
    opacity = 0.5 if cfg.strategy == "mcmc" else cfg.init_opacity
    k = (cfg.sh_degree + 1) ** 2 - 1
    from render.splat.sh import SH_C0

    g = Gaussians(
        means=torch.tensor(xyz, dtype=torch.float32),
        log_scales=torch.tensor(np.log(scale), dtype=torch.float32)[:, None].repeat(1, 3),
        quats_wxyz=torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float32) if cfg.strategy == "mcmc"
        else torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        opacity_logits=torch.full((n,), math.log(opacity / (1 - opacity))),
        sh_dc=torch.tensor((rgb - 0.5) / SH_C0, dtype=torch.float32)[:, None, :],
        sh_rest=torch.zeros(n, k, 3))
    return g, how


# =========================================================================================
# Training
# =========================================================================================

def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ReconError("--device cuda: torch.cuda.is_available() is False (CPU-only torch build or no GPU)")
    return torch.device(name)


def _make_optimizer(params: dict, cfg: TrainConfig, extent: float) -> torch.optim.Adam:
    lrs = {"means": cfg.lr_means * extent, "log_scales": cfg.lr_log_scales, "quats_wxyz": cfg.lr_quats,
           "opacity_logits": cfg.lr_opacity, "sh_dc": cfg.lr_sh_dc, "sh_rest": cfg.lr_sh_rest}
    return torch.optim.Adam([{"params": [params[k]], "lr": lrs[k], "name": k} for k in Gaussians.NAMES],
                            eps=1e-15)


def _means_lr(cfg: TrainConfig, extent: float, step: int) -> float:
    t = min(max(step / max(cfg.steps, 1), 0.0), 1.0)
    return float(np.exp((1 - t) * np.log(cfg.lr_means) + t * np.log(cfg.lr_means_final))) * extent


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB -> MiB (process RSS)


def _save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image as PILImage

    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def _oom_message(n: int, device) -> str:
    return (f"out of memory on {device} with {n} Gaussians. Try --resolution-scale 0.5, fewer steps of "
            f"densification (a higher grow_grad2d), or --strategy mcmc with a smaller cap (mcmc.cap_max); "
            f"the last checkpoint is kept")


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


class _Trainer:
    def __init__(self, scene: SceneData, out_dir: Path, cfg: TrainConfig, *, progress: bool,
                 viewer, log):
        self.scene, self.out, self.cfg, self.progress, self.log = scene, out_dir, cfg, progress, log
        self.device = _pick_device(cfg.device)
        self.extent = scene.extent
        self.bg = torch.tensor(cfg.background, dtype=torch.float32, device=self.device)
        self.train_idx, self.test_idx = split_train_test(len(scene.views), test_every=cfg.test_every)
        self.images = [torch.from_numpy(v.image).to(self.device) for v in scene.views]
        self.strategy = cfg.mcmc if cfg.strategy == "mcmc" else cfg.densify
        self.viewer = viewer
        self.step = 0
        self.seconds = 0.0
        self.params: dict = {}
        self.optimizer = None
        self.state: dict = {}

    # ---- state ----
    def init_fresh(self, rng):
        g, how = init_gaussians(self.scene, self.cfg, rng)
        self.log(f"init: {how}; scene extent {self.extent:.3g}")
        self._set_params(g)
        self.optimizer = _make_optimizer(self.params, self.cfg, self.extent)
        self.state = self.strategy.init_state(len(g), self.device)

    def _set_params(self, g: Gaussians):
        self.params = {k: torch.nn.Parameter(v.to(self.device).contiguous()) for k, v in g.tensors().items()}

    def gaussians(self) -> Gaussians:
        return Gaussians(**self.params)

    def save_checkpoint(self, path: Path | None = None):
        path = path or self.out / "checkpoint.pt"
        tmp = path.with_suffix(".pt.tmp")
        torch.save({"version": CONFIG_VERSION, "step": self.step, "seconds": self.seconds,
                    "config": self.cfg.to_dict(),
                    "params": {k: v.detach().cpu() for k, v in self.params.items()},
                    "optimizer": self.optimizer.state_dict(),
                    "strategy_state": {k: v.cpu() for k, v in self.state.items()},
                    "torch_rng": torch.get_rng_state()}, tmp)
        tmp.replace(path)

    def load_checkpoint(self, path: Path):
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ReconError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None
        self._set_params(Gaussians(**ck["params"]))
        self.optimizer = _make_optimizer(self.params, self.cfg, self.extent)
        self.optimizer.load_state_dict(ck["optimizer"])
        self.state = {k: v.to(self.device) for k, v in ck["strategy_state"].items()}
        self.step = int(ck["step"])
        self.seconds = float(ck.get("seconds", 0.0))
        torch.set_rng_state(ck["torch_rng"])
        self.log(f"resumed from {path} at step {self.step} ({len(self.params['means'])} Gaussians)")

    # ---- rendering ----
    def render(self, view: View, sh_degree: int) -> RenderOutput:
        return rasterize(self.gaussians(), view.camera, view.cam_from_world, sh_degree=sh_degree,
                         background=self.bg, backend=self.cfg.backend, tile_size=self.cfg.tile_size,
                         chunk_size=self.cfg.chunk_size)

    def sh_degree_at(self, step: int) -> int:
        return min(self.cfg.sh_degree, step // max(self.cfg.sh_degree_interval, 1))

    # ---- loop ----
    def run(self):
        from tqdm import tqdm

        cfg = self.cfg
        if not self.train_idx:
            raise ReconError("no training views (need at least 2 views with test_every > 0)")
        rng = np.random.default_rng(cfg.seed + self.step)
        order: list[int] = []
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, file=sys.stderr,
                   desc="train splat", dynamic_ncols=True, mininterval=0.5)
        psnr_ema = None
        t_start = time.perf_counter() - self.seconds
        try:
            while self.step < cfg.steps:
                while self.viewer is not None and getattr(self.viewer, "paused", False):
                    time.sleep(0.1)
                if not order:
                    order = list(rng.permutation(self.train_idx))
                i = int(order.pop())
                view, gt = self.scene.views[i], self.images[i]
                for group in self.optimizer.param_groups:
                    if group["name"] == "means":
                        group["lr"] = _means_lr(cfg, self.extent, self.step)
                try:
                    out = self.render(view, self.sh_degree_at(self.step))
                    out.means2d_graph.retain_grad()
                    l1 = (out.rgb - gt).abs().mean()
                    loss = (1 - cfg.lambda_dssim) * l1 + cfg.lambda_dssim * (1 - ssim(out.rgb, gt))
                    if cfg.strategy == "mcmc":
                        loss = loss + self.strategy.regularization(self.params)
                    if not torch.isfinite(loss):
                        self._diverged(loss)
                    loss.backward()
                    self.step += 1
                    # the live viewer renders from another thread: no reads mid-update
                    with getattr(self.viewer, "lock", None) or contextlib.nullcontext():
                        self.strategy.step_post_backward(
                            self.params, self.optimizer, self.state, self.step, out, self.extent,
                            view.camera.width, view.camera.height)
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                        if cfg.strategy == "mcmc":
                            self.strategy.step_post_optimizer(self.params, _means_lr(cfg, self.extent, self.step))
                except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
                    if _is_oom(e):
                        raise ReconError(_oom_message(len(self.params["means"]), self.device)) from None
                    raise
                with torch.no_grad():
                    mse = float(((out.rgb.detach() - gt) ** 2).mean())
                p = 10 * math.log10(1 / max(mse, 1e-12))
                psnr_ema = p if psnr_ema is None else 0.9 * psnr_ema + 0.1 * p
                n = len(self.params["means"])
                bar.update(1)
                if self.step % 10 == 0 or self.step == cfg.steps:
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}", psnr=f"{psnr_ema:.2f}", n=n, refresh=False)
                    if self.viewer is not None:
                        self.viewer.log(self.step, {"loss": float(loss.detach()), "psnr": psnr_ema,
                                                    "num_gaussians": float(n)})
                step_seconds = time.perf_counter() - t_start - self.seconds
                self.seconds = time.perf_counter() - t_start
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                # Stop before a step that would end past the budget, so the budget is kept.
                if cfg.max_seconds is not None and self.seconds + step_seconds > cfg.max_seconds:
                    self.log(f"time budget of {cfg.max_seconds:.0f} s reached at step {self.step}")
                    break
        finally:
            bar.close()
        self.seconds = time.perf_counter() - t_start

    def _diverged(self, loss):
        finite = all(bool(torch.isfinite(p).all()) for p in self.params.values())
        where = self.out / "checkpoint.pt"
        if finite:
            self.save_checkpoint()  # parameters before this step are still good
            kept = f"the last good state (step {self.step}) is in {where}"
        elif where.is_file():
            kept = f"the last good checkpoint is kept in {where}"
        else:
            kept = "no good checkpoint was written yet"
        raise TrainingDiverged(f"loss became {float(loss.detach())} at step {self.step + 1} "
                               f"({len(self.params['means'])} Gaussians); {kept}. Lower the learning "
                               "rates or check the input images/poses.")

    # ---- evaluation ----
    @torch.no_grad()
    def evaluate(self) -> dict:
        idx, split = (self.test_idx, "test") if self.test_idx else (self.train_idx, "train")
        ps, ss, lp = [], [], []
        for i in idx:
            v = self.scene.views[i]
            out = self.render(v, self.sh_degree_at(self.step))
            pred = out.rgb.clamp(0, 1).cpu().numpy()
            gt = v.image
            ps.append(psnr(pred, gt))
            ss.append(ssim(pred, gt))
            lp.append(lpips(pred, gt))
            stem = Path(v.name).with_suffix("").as_posix().replace("/", "_")
            _save_png(self.out / "renders" / split / f"{i:04d}_{stem}.png", pred)
        lp_ok = bool(lp) and all(x is not None for x in lp)
        return {"split": split, "views": len(idx), "psnr": float(np.mean(ps)) if ps else None,
                "ssim": float(np.mean(ss)) if ss else None,
                "lpips": float(np.mean(lp)) if lp_ok else None,
                "lpips_reason": None if lp_ok else lpips_status()[1]}


def train(scene, out_dir, config: TrainConfig | None = None, *, resume: bool = False,
          progress: bool = True, viewer=None, log=None, data_path=None) -> TrainResult:
    """Train Gaussians on ``scene`` (a :class:`render.data.SceneData` or a dataset path) and write
    the outputs listed in the module docstring to ``out_dir``.

    Args:
        config: hyper-parameters (default ``TrainConfig()``); ``steps`` is the total, so a resumed
            run continues up to it.
        resume: continue from ``out_dir/checkpoint.pt`` (its saved config is reused, except
            ``steps``, ``device`` and ``backend`` from ``config``).
        viewer: True to open ``viewer.live.TrainingViewer`` (localhost:8080), or an object with
            its interface (``log``, ``paused``, ``close``); None for none.
    Raises:
        TrainingDiverged on NaN/Inf loss; ReconError for bad input and out-of-memory.
    """
    cfg = config or TrainConfig()
    log = log or (lambda msg: print(f"[splat] {msg}", file=sys.stderr))
    out_dir = Path(out_dir)
    ck_path = out_dir / "checkpoint.pt"
    if resume:
        if not ck_path.is_file():
            raise FileNotFoundError(f"{ck_path}: nothing to resume from")
        saved = TrainConfig.from_dict(torch.load(ck_path, map_location="cpu", weights_only=True)["config"])
        cfg = dataclasses.replace(saved, steps=cfg.steps, device=cfg.device, backend=cfg.backend,
                                  compile=cfg.compile, max_seconds=cfg.max_seconds)
    cfg.validate()
    if not isinstance(scene, SceneData):
        data_path = scene if data_path is None else data_path
        scene = load_scene(scene, resolution_scale=cfg.resolution_scale, background=cfg.background,
                           max_views=cfg.max_views)
    cfg = cfg.scaled_schedule()
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.compile:
        from render.splat._torch_raster import use_compiled_kernels

        on = use_compiled_kernels(True)
        log("torch.compile kernels: " + ("on (the first steps include the build)" if on else "unavailable, eager"))
    torch.manual_seed(cfg.seed)
    own_viewer, holder = False, {}
    if viewer is True:
        viewer, holder = _open_viewer(cfg, log)
        own_viewer = viewer is not None
    tr = _Trainer(scene, out_dir, cfg, progress=progress, viewer=viewer, log=log)
    holder["trainer"] = tr
    if resume:
        tr.load_checkpoint(ck_path)
    else:
        tr.init_fresh(np.random.default_rng(cfg.seed))
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    log(f"{len(tr.train_idx)} train / {len(tr.test_idx)} test views, "
        f"{scene.views[0].camera.width}x{scene.views[0].camera.height}, device {tr.device}, "
        f"strategy {cfg.strategy}, {cfg.steps} steps")
    if tr.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(tr.device)
    cpu0 = time.process_time()
    try:
        tr.run()
    finally:
        if own_viewer:
            viewer.close()
    tr.save_checkpoint()
    g = tr.gaussians().detach()
    from recon.io.gaussians import write_splat_ply

    write_splat_ply(out_dir / "splat.ply", g.to_cloud())
    ev = tr.evaluate()
    backend = "gsplat" if (tr.device.type == "cuda" and cfg.backend in ("auto", "gsplat")
                           and _gsplat_used()) else "torch"
    report = {
        "psnr_test": ev["psnr"] if ev["split"] == "test" else None,
        "ssim_test": ev["ssim"] if ev["split"] == "test" else None,
        "lpips_test": ev["lpips"] if ev["split"] == "test" else None,
        "lpips_reason": ev["lpips_reason"],
        "eval_split": ev["split"],
        "eval_views": ev["views"],
        "psnr": ev["psnr"], "ssim": ev["ssim"],
        "steps": tr.step,
        "cpu_seconds": round(time.process_time() - cpu0, 2),
        "seconds": round(tr.seconds, 2),
        "num_gaussians": len(g),
        "device": str(tr.device) + (f" ({torch.cuda.get_device_name(tr.device)})" if tr.device.type == "cuda" else ""),
        "rasterizer": backend,
        "peak_memory_mb": round(_peak_memory_mb(tr.device), 1),
        "peak_memory_kind": "cuda max_memory_allocated" if tr.device.type == "cuda" else "process peak RSS",
        "strategy": cfg.strategy,
        "train_views": len(tr.train_idx), "test_views": len(tr.test_idx),
        "resolution": [scene.views[0].camera.width, scene.views[0].camera.height],
        "source": scene.source,
        "data_path": str(Path(data_path).resolve()) if data_path is not None else None,
        "resolution_scale": cfg.resolution_scale,
        "background": list(cfg.background),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    log(f"done: {tr.step} steps in {tr.seconds:.1f} s, {len(g)} Gaussians, "
        f"{ev['split']} PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f} -> {out_dir}")
    return TrainResult(out_dir, report, g)


def _gsplat_used() -> bool:
    from render.splat.api import gsplat_available

    return gsplat_available()[0]


def _open_viewer(cfg: TrainConfig, log):
    """-> (viewer.live.TrainingViewer or None, holder dict that receives the trainer)."""
    try:
        from viewer.live import TrainingViewer
    except ImportError as e:
        log(f"live viewer unavailable ({e}); training without it")
        return None, {}
    holder: dict = {}

    def render_fn(camera, cam_from_world):
        tr = holder.get("trainer")
        if tr is None or not tr.params:
            return np.zeros((camera.height, camera.width, 3), np.uint8)
        with torch.no_grad():
            out = rasterize(tr.gaussians().detach(), camera, cam_from_world, background=tr.bg,
                            sh_degree=tr.sh_degree_at(tr.step), backend=cfg.backend)
        return (out.rgb.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)

    v = TrainingViewer(render_fn)
    log(f"live viewer on {v.url} (pause training from the browser)")
    return v, holder
