"""Gaussian-splatting trainer (3DGS recipe; gsplat ``simple_trainer`` defaults and names).

``train(scene_or_path, out_dir, config)`` optimises Gaussians against posed images. The loop,
checkpoints, resume, NaN guard, split, evaluation and report are :mod:`render.scaffold`'s;
:class:`SplatTrainer` is the splat method on it. It writes::

    out_dir/splat.ply          standard 3DGS PLY (SuperSplat / gsplat / Inria viewers read it)
    out_dir/checkpoint.pt      scaffold checkpoint; state = params + Adam state + strategy state
    out_dir/renders/test/*.png renders of the held-out views (every 8th image)
    out_dir/report.json        method "splat", psnr_test, ssim_test, lpips_test (or null + reason),
                               split (view names), steps, seconds, num_gaussians, device, ...
    out_dir/config.json        the TrainConfig used (versioned, plain JSON)
    out_dir/undistorted/       undistorted images, when the dataset's cameras have distortion
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from recon.errors import ReconError
from render._device import is_oom as _is_oom
from render._device import peak_memory_mb as _peak_memory_mb
from render._device import pick_device as _pick_device
from render.data import SceneData, View, load_scene
from render.metrics import ssim
from render.scaffold import (
    Hooks,
    LoopConfig,
    NonFiniteLoss,
    RenderedView,
    ShuffledViews,
    Split,
    TrainingDiverged,
    config_from_dict,
    config_preset,
    config_to_dict,
    fit,
    read_checkpoint,
)
from render.splat.api import RenderOutput, rasterize
from render.splat.gaussians import Gaussians
from render.splat.strategy import DefaultStrategy, MCMCStrategy

__all__ = ["PRESETS", "SplatTrainer", "TrainConfig", "TrainResult", "TrainingDiverged", "init_gaussians", "train"]

CONFIG_VERSION = 1


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
    # the scene extent that scales lr_means and the densification sizes; None: 3DGS's, from the
    # training cameras (render.data.scene_extent). A chunk of a larger scene takes the whole one's.
    extent: float | None = None
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
    compile: bool = False  # torch.compile the PyTorch compositor (only used where the C++ one cannot build)
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
        if self.extent is not None and not (math.isfinite(self.extent) and self.extent > 0):
            raise ValueError(f"extent: expected a positive scene size or None, got {self.extent}")

    def to_dict(self) -> dict:
        return config_to_dict(self, CONFIG_VERSION)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return config_from_dict(cls, d, {"densify": lambda x: DefaultStrategy(**x),
                                         "mcmc": lambda x: MCMCStrategy(**x)})

    @classmethod
    def preset(cls, name: str, **overrides) -> TrainConfig:
        return config_preset(PRESETS, name, overrides)

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


def _fit_sh(g: Gaussians, degree: int) -> Gaussians:
    """``g`` with its higher SH bands cut or zero-padded to ``degree``."""
    k = (degree + 1) ** 2 - 1
    rest = g.sh_rest[:, :k]
    if rest.shape[1] < k:
        rest = torch.cat([rest, rest.new_zeros(len(g), k - rest.shape[1], 3)], dim=1)
    return dataclasses.replace(g, sh_rest=rest.contiguous())


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

def _make_optimizer(params: dict, cfg: TrainConfig, extent: float) -> torch.optim.Adam:
    lrs = {"means": cfg.lr_means * extent, "log_scales": cfg.lr_log_scales, "quats_wxyz": cfg.lr_quats,
           "opacity_logits": cfg.lr_opacity, "sh_dc": cfg.lr_sh_dc, "sh_rest": cfg.lr_sh_rest}
    # fused: one kernel per parameter for the whole update (CPU and CUDA), instead of ~10 ops
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params.values())
    return torch.optim.Adam([{"params": [params[k]], "lr": lrs[k], "name": k} for k in Gaussians.NAMES],
                            eps=1e-15, fused=fused)


def _means_lr(cfg: TrainConfig, extent: float, step: int, progress: float | None = None) -> float:
    """lr of the means at ``step`` (or at the run's ``progress`` in [0, 1] when given)."""
    t = min(max(step / max(cfg.steps, 1) if progress is None else progress, 0.0), 1.0)
    return float(np.exp((1 - t) * np.log(cfg.lr_means) + t * np.log(cfg.lr_means_final))) * extent


# With a time budget the run ends at whichever comes first, the steps or the budget; its
# schedules (the means' lr decay, the end of densification) follow whichever is further along,
# so a run stopped by the budget has finished them instead of stopping at a high learning rate.
REFINE_STOP_PROGRESS = {"default": 0.7, "mcmc": 0.8}  # as scaled_schedule


def _oom_message(n: int, device) -> str:
    return (f"out of memory on {device} with {n} Gaussians. Try --resolution-scale 0.5, fewer steps of "
            f"densification (a higher grow_grad2d), or --strategy mcmc with a smaller cap (mcmc.cap_max); "
            f"the last checkpoint is kept")


class SplatTrainer:
    """Gaussian splatting on the :mod:`render.scaffold` (implements ``render.scaffold.Trainer``)."""

    method = "splat"

    def __init__(self, scene: SceneData, split: Split, cfg: TrainConfig, *, log):
        self.scene, self.cfg, self.log = scene, cfg, log
        self.device = _pick_device(cfg.device)
        self.extent = float(cfg.extent) if cfg.extent is not None else scene.extent
        self.bg = torch.tensor(cfg.background, dtype=torch.float32, device=self.device)
        self.views = ShuffledViews(split.train, seed=cfg.seed)
        self.images = [torch.from_numpy(v.image).to(self.device) for v in scene.views]
        self.strategy = cfg.mcmc if cfg.strategy == "mcmc" else cfg.densify
        self.step_done = 0
        self.params: dict = {}
        self.optimizer = None
        self.state: dict = {}
        self.psnr_ema = None
        self.init_facts = None  # how init_fresh started (None when resumed)
        self.seconds_before = 0.0  # training wall time of earlier processes (resume)
        self._t0 = None  # perf_counter at this process's first step

    # ---- state ----
    def init_fresh(self, rng, init: Gaussians | None = None):
        if init is None:
            g, how = init_gaussians(self.scene, self.cfg, rng)
        else:
            g, how = _fit_sh(init.detach().to("cpu", torch.float32), self.cfg.sh_degree), f"{len(init)} given Gaussians"
        self.init_facts = {"from": how, "gaussians": len(g)}
        self.log(f"init: {how}; scene extent {self.extent:.3g}")
        self._set_params(g)
        self.optimizer = _make_optimizer(self.params, self.cfg, self.extent)
        self.state = self.strategy.init_state(len(g), self.device)

    def _set_params(self, g: Gaussians):
        self.params = {k: torch.nn.Parameter(v.to(self.device).contiguous()) for k, v in g.tensors().items()}

    def gaussians(self) -> Gaussians:
        return Gaussians(**self.params)

    def state_dict(self) -> dict:
        # step_done sets the SH degree of render_view: a run resumed from its final checkpoint
        # (killed before the report) must evaluate at the final degree, not at degree 0
        return {"params": {k: v.detach().cpu() for k, v in self.params.items()},
                "optimizer": self.optimizer.state_dict(),
                "strategy_state": {k: v.cpu() for k, v in self.state.items()},
                "step_done": self.step_done, "psnr_ema": self.psnr_ema,
                "seconds_trained": self.seconds_before + (time.perf_counter() - self._t0 if self._t0 else 0.0),
                "refine_stop": self.strategy.refine_stop}

    def load_state_dict(self, state: dict) -> None:
        self._set_params(Gaussians(**state["params"]))
        self.optimizer = _make_optimizer(self.params, self.cfg, self.extent)
        self.optimizer.load_state_dict(state["optimizer"])
        self.state = {k: v.to(self.device) for k, v in state["strategy_state"].items()}
        self.step_done = int(state.get("step_done", 0))
        self.psnr_ema = state.get("psnr_ema")
        self.seconds_before = float(state.get("seconds_trained", 0.0))
        if state.get("refine_stop") is not None and state["refine_stop"] < self.strategy.refine_stop:
            self.strategy = dataclasses.replace(self.strategy, refine_stop=int(state["refine_stop"]))
        self.log(f"{len(self.params['means'])} Gaussians in the checkpoint")

    def is_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.params.values())

    # ---- rendering ----
    def render(self, view: View, sh_degree: int) -> RenderOutput:
        return rasterize(self.gaussians(), view.camera, view.cam_from_world, sh_degree=sh_degree,
                         background=self.bg, backend=self.cfg.backend, tile_size=self.cfg.tile_size,
                         chunk_size=self.cfg.chunk_size)

    def render_view(self, camera, cam_from_world) -> RenderedView:
        with torch.no_grad():
            out = rasterize(self.gaussians().detach(), camera, cam_from_world, background=self.bg,
                            sh_degree=self.sh_degree_at(self.step_done), backend=self.cfg.backend,
                            tile_size=self.cfg.tile_size, chunk_size=self.cfg.chunk_size)
        return RenderedView(out.rgb.clamp(0, 1).cpu().numpy(), out.depth.cpu().numpy())

    def progress(self, step: int) -> float:
        """How far along the run is, in [0, 1]: ``step / steps``, or with ``max_seconds`` the
        larger of that and the share of the time budget spent (schedules follow it)."""
        t = step / max(self.cfg.steps, 1)
        if self.cfg.max_seconds:
            spent = self.seconds_before + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)
            t = max(t, spent / self.cfg.max_seconds)
        return min(t, 1.0)

    def sh_degree_at(self, step: int) -> int:
        return min(self.cfg.sh_degree, step // max(self.cfg.sh_degree_interval, 1))

    # ---- one step ----
    def step(self, step: int) -> dict:
        cfg = self.cfg
        i = self.views.at(step)
        view, gt = self.scene.views[i], self.images[i]
        if self._t0 is None:
            self._t0 = time.perf_counter()
        frac = self.progress(step) if cfg.max_seconds else None
        if frac is not None and frac >= REFINE_STOP_PROGRESS[cfg.strategy] and step + 1 < self.strategy.refine_stop:
            self.strategy = dataclasses.replace(self.strategy, refine_stop=step + 1)  # the budget's densification end
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = _means_lr(cfg, self.extent, step, frac)
        try:
            out = self.render(view, self.sh_degree_at(step))
            out.means2d_graph.retain_grad()
            l1 = (out.rgb - gt).abs().mean()
            loss = (1 - cfg.lambda_dssim) * l1 + cfg.lambda_dssim * (1 - ssim(out.rgb, gt))
            if cfg.strategy == "mcmc":
                loss = loss + self.strategy.regularization(self.params)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(float(loss.detach()))
            loss.backward()
            self._post_backward(out, step, view)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if cfg.strategy == "mcmc":
                self.strategy.step_post_optimizer(self.params, _means_lr(cfg, self.extent, step + 1, frac))
        except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
            if _is_oom(e):
                raise ReconError(_oom_message(len(self.params["means"]), self.device)) from None
            raise
        self.step_done = step + 1
        with torch.no_grad():
            mse = float(((out.rgb.detach() - gt) ** 2).mean())
        p = 10 * math.log10(1 / max(mse, 1e-12))
        self.psnr_ema = p if self.psnr_ema is None else 0.9 * self.psnr_ema + 0.1 * p
        return {"loss": loss.detach(), "psnr": self.psnr_ema, "num_gaussians": len(self.params["means"])}

    def _post_backward(self, out: RenderOutput, step: int, view: View) -> None:
        """Densification statistics and refinement after backward (the distributed trainer
        hands the strategy its shard's statistics over every process's view instead)."""
        self.strategy.step_post_backward(self.params, self.optimizer, self.state, step + 1, out, self.extent,
                                         view.camera.width, view.camera.height)

    def export(self, out_dir: Path) -> dict:
        from recon.io.files import atomic_write
        from recon.io.gaussians import write_splat_ply

        g = self.gaussians().detach()
        cloud = g.to_cloud()
        atomic_write(Path(out_dir) / "splat.ply", lambda p: write_splat_ply(p, cloud))
        backend = "gsplat" if (self.device.type == "cuda" and self.cfg.backend in ("auto", "gsplat")
                               and _gsplat_used()) else "torch"
        dev = self.device
        return {"num_gaussians": len(g),
                "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
                "rasterizer": backend,
                "peak_memory_mb": round(_peak_memory_mb(dev), 1),
                "peak_memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS"}


def _hooks(viewer) -> Hooks:
    """Hooks from an object with the viewer.live.TrainingViewer interface (log, paused, lock)."""
    if viewer is None:
        return Hooks()
    return Hooks(on_log=viewer.log, paused=lambda: bool(getattr(viewer, "paused", False)),
                 lock=getattr(viewer, "lock", None))


def train(scene, out_dir, config: TrainConfig | None = None, *, resume: bool = False,
          progress: bool = True, viewer=None, live=None, log=None, data_path=None,
          threads: int | str | None = None, init=None, trainer_factory=None,
          report_extra: dict | None = None) -> TrainResult:
    """Train Gaussians on ``scene`` (a :class:`render.data.SceneData` or a dataset path) and write
    the outputs listed in the module docstring to ``out_dir``, through :func:`render.scaffold.fit`.

    Args:
        config: hyper-parameters (default ``TrainConfig()``); ``steps`` is the total, so a resumed
            run continues up to it.
        resume: continue from ``out_dir/checkpoint.pt`` (its saved config is reused, except
            ``steps``, ``device``, ``backend``, ``compile`` and ``max_seconds`` from ``config``).
        viewer: an object with the ``viewer.live.TrainingViewer`` interface (``log``, ``paused``,
            ``lock``), or None.
        live: a factory ``live(render_fn) -> viewer`` (e.g. ``viewer.live.TrainingViewer``, which
            the CLI hands in: render never imports viewer); its viewer is closed at the end.
            ``render_fn(camera, cam_from_world) -> [H, W, 3] uint8``.
        threads: torch CPU threads: N, "auto" (follow the machine's load during the run), or
            None (leave torch's setting as it is).
        init: start from these Gaussians (:class:`Gaussians` or :class:`recon.io.GaussianCloud`,
            e.g. a coarse model to refine) instead of the scene's points; their SH bands are
            cut or zero-padded to ``sh_degree``. Ignored on resume.
        trainer_factory: ``(scene, split, config, log=) -> SplatTrainer`` instead of
            :class:`SplatTrainer` (render.splat.distributed's sharded trainer).
        report_extra: more report.json fields.
    Raises:
        TrainingDiverged on NaN/Inf loss; ReconError for bad input and out-of-memory.
    """
    cfg = config or TrainConfig()
    log = log or (lambda msg: print(f"[splat] {msg}", file=sys.stderr))
    out_dir = Path(out_dir)
    ck_path = out_dir / "checkpoint.pt"
    if resume:
        saved = TrainConfig.from_dict(read_checkpoint(ck_path)["config"])
        cfg = dataclasses.replace(saved, steps=cfg.steps, device=cfg.device, backend=cfg.backend,
                                  compile=cfg.compile, max_seconds=cfg.max_seconds)
    cfg.validate()
    if not isinstance(scene, SceneData):
        data_path = scene if data_path is None else data_path
        scene = load_scene(scene, resolution_scale=cfg.resolution_scale, background=cfg.background,
                           max_views=cfg.max_views, cache_dir=out_dir / "undistorted")
    cfg = cfg.scaled_schedule()
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.compile:
        from render.splat._torch_raster import use_compiled_kernels

        on = use_compiled_kernels(True)
        log("torch.compile kernels: " + ("on (the first steps include the build)" if on else "unavailable, eager"))
    torch.manual_seed(cfg.seed)
    split = Split.every(scene, test_every=cfg.test_every, max_views=cfg.max_views)
    tr = (trainer_factory or SplatTrainer)(scene, split, cfg, log=log)
    if not resume:
        if init is not None and not isinstance(init, Gaussians):
            init = Gaussians.from_cloud(init)
        tr.init_fresh(np.random.default_rng(cfg.seed), init)
    own = None
    if live is not None and viewer is None:
        viewer = own = live(lambda camera, cam_from_world: (tr.render_view(camera, cam_from_world).rgb * 255
                                                            + 0.5).astype(np.uint8))
        if own is not None:
            log(f"live viewer on {getattr(own, 'url', '?')} (pause training from the browser)")
    log(f"{len(split.train)} train / {len(split.test)} test views, "
        f"{scene.views[0].camera.width}x{scene.views[0].camera.height}, device {tr.device}, "
        f"strategy {cfg.strategy}, {cfg.steps} steps")
    if tr.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(tr.device)
    loop = LoopConfig(steps=cfg.steps, checkpoint_every=cfg.checkpoint_every, max_seconds=cfg.max_seconds,
                      threads=threads, desc="train splat")
    extra = {"strategy": cfg.strategy,
             "resolution": [scene.views[0].camera.width, scene.views[0].camera.height],
             "source": scene.source, "resolution_scale": cfg.resolution_scale,
             "background": list(cfg.background), "init": tr.init_facts, **(report_extra or {})}
    try:
        res = fit(tr, scene, split, out_dir, loop, config=cfg.to_dict(), resume=resume, progress=progress,
                  hooks=_hooks(viewer), log=log, data_path=data_path, report_extra=extra)
    finally:
        if own is not None:
            own.close()
    r = res.report
    log(f"done: {r['steps']} steps in {r['seconds']:.1f} s, {r['num_gaussians']} Gaussians, "
        f"{r['eval_split']} PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f} -> {out_dir}")
    return TrainResult(out_dir, r, tr.gaussians().detach())


def _gsplat_used() -> bool:
    from render.splat.api import gsplat_available

    return gsplat_available()[0]
