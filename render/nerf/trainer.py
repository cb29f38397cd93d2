"""NeRF trainer on the shared training scaffold (``render.scaffold.fit``).

``train(data, out_dir, config)`` fits an Instant-NGP-style field (:mod:`render.nerf.field`) to
posed images through rays cast by the calib camera models, and writes into ``out_dir`` (on top of
the scaffold's ``checkpoint.pt``, ``config.json``, ``renders/<split>/*.png``, ``report.json``)::

    model.pt             field weights + field config + bounds + occupancy grid + background
                         (what ``recon render`` and :func:`load_model` read)
    points.ply           the depth maps below back-projected into the world, with the rendered
                         colours (at most 400k points; what `recon view` shows)
    depth/<name>.npy     per view (train and test), float32 [H, W]: z-depth in metres (dataset
                         units) along the OpenCV camera's optical axis, the expected depth of the
                         ray divided by its opacity; 0 where the opacity is below 0.5 (invalid, as
                         Open3D's TSDF integration expects). Cameras: the dataset's, by view name.
    density_grid.npz     for marching cubes: ``density`` float32 [N, N, N] volume density
                         (1/metre) at voxel centres, indexed [i, j, k] along world x, y, z;
                         ``bbox_min``/``bbox_max`` [3] world corners of the grid (the box, or the
                         uncontracted inner cube of a contracted scene); ``voxel_size`` [3];
                         ``world_frame`` = the dataset's world frame (the input cameras'
                         cam_from_world); ``iso_hint`` = ln(2)/voxel, the density at which one
                         voxel of path has opacity 1/2.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from calib import Camera, Rigid3
from recon.errors import ReconError

# device choice, out-of-memory detection and peak memory: one home for both trainers
from render._device import is_oom as _is_oom
from render._device import peak_memory_mb as _peak_memory_mb
from render._device import pick_device as _pick_device
from render.data import SceneData, load_scene
from render.nerf.encoding import HashGridConfig
from render.nerf.field import FieldConfig, NerfField
from render.nerf.rays import camera_frame_directions
from render.nerf.sampling import (
    OccupancyGrid,
    SceneBounds,
    choose_bounds,
    march_rays,
    step_sequence,
)
from render.nerf.volume import composite, distortion_loss, render_weights
from render.scaffold import (
    Hooks,
    LoopConfig,
    NonFiniteLoss,
    RenderedView,
    Split,
    config_from_dict,
    config_preset,
    config_to_dict,
    fit,
    read_checkpoint,
)

__all__ = ["PRESETS", "NerfConfig", "NerfModel", "NerfTrainer", "load_model", "train"]

CONFIG_VERSION = 1


@dataclass
class NerfConfig:
    """NeRF hyper-parameters (Instant-NGP / nerfacc defaults unless noted)."""

    steps: int = 20_000
    rays_per_batch: int = 4096
    field: FieldConfig = field(default_factory=FieldConfig)
    bounds: str = "auto"  # "auto" (from the camera layout and SfM points), "box", "contract"
    march_steps: int = 1024  # ray-marching steps per inner-box diagonal (Instant-NGP: 1024 per sqrt(3))
    cone_angle: float | None = None  # None: 0 in a box, 1/256 in a contracted scene (Instant-NGP)
    grid_resolution: int = 128
    grid_update_every: int = 16
    grid_decay: float = 0.95  # EMA decay of the grid's density per update (Instant-NGP)
    grid_warmup_steps: int = 256  # every cell re-evaluated before this step, then a quarter per update
    grid_alpha_threshold: float = 0.01  # a cell is occupied where one step of it has this opacity
    # cells holding SfM points seen by a training view stay occupied (OccupancyGrid.pin)
    grid_pin_points: bool = False
    early_stop_eps: float = 1e-4  # transmittance below which a ray stops
    lr: float = 1e-2
    lr_final_factor: float = 0.03  # learning rate at the end = lr * this (exponential decay)
    weight_decay: float = 1e-6  # on the MLPs only
    lambda_distortion: float = 1e-3
    # Sparse depth supervision from the SfM points (DS-NeRF, Deng et al. 2022, in a line-of-sight
    # form): rays from a training camera through the points its track says it saw; the weight
    # missing near the point is penalised (and, with depth_free_weight > 0, the ray's weight in front
    # of it). 0: off.
    lambda_depth: float = 0.0
    depth_rays_per_batch: int = 256
    depth_margin: float = 0.02  # near-surface band: +- this fraction of the point's distance (>= 2 steps)
    # Weight of the explicit free-space term. 0: the near-surface term alone, which already needs the
    # transmittance to reach the point. The free-space term eroded thin structures (chair backs and
    # legs) that SfM rays pass next to: synthetic room, 300 s, one thread, 24.70 dB test with 0
    # against 23.66 with 1 (the same run beside it).
    depth_free_weight: float = 0.0
    lambda_depth_final: float | None = None  # lambda_depth at the end (log-linear in the progress); None: constant
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    resolution_scale: float = 1.0
    test_every: int = 8
    max_views: int | None = None
    checkpoint_every: int = 1_000
    max_seconds: float | None = None
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast of the MLPs on CUDA
    seed: int = 0
    render_chunk: int = 8192  # rays per chunk when rendering whole images
    density_grid_resolution: int = 128
    write_depth: bool = True

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps: expected >= 1, got {self.steps}")
        if self.rays_per_batch < 1:
            raise ValueError(f"rays_per_batch: expected >= 1, got {self.rays_per_batch}")
        if self.bounds not in ("auto", "box", "contract"):
            raise ValueError(f"bounds: expected 'auto', 'box' or 'contract', got {self.bounds!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if not 0 < self.resolution_scale <= 1:
            raise ValueError(f"resolution_scale: expected a value in (0, 1], got {self.resolution_scale}")
        if not self.lambda_depth >= 0:
            raise ValueError(f"lambda_depth: expected >= 0, got {self.lambda_depth}")
        if self.depth_rays_per_batch < 1:
            raise ValueError(f"depth_rays_per_batch: expected >= 1, got {self.depth_rays_per_batch}")
        if not self.depth_margin > 0:
            raise ValueError(f"depth_margin: expected > 0, got {self.depth_margin}")
        if not self.depth_free_weight >= 0:
            raise ValueError(f"depth_free_weight: expected >= 0, got {self.depth_free_weight}")
        if self.lambda_depth_final is not None and not (self.lambda_depth_final > 0 and self.lambda_depth > 0):
            raise ValueError(f"lambda_depth_final: expected > 0 with lambda_depth > 0 (or None), got "
                             f"{self.lambda_depth_final} with lambda_depth {self.lambda_depth}")
        if self.march_steps < 8:
            raise ValueError(f"march_steps: expected >= 8, got {self.march_steps}")
        self.field.validate()

    def depth_weight(self, progress: float) -> float:
        """The depth-supervision weight at ``progress`` in [0, 1] of the run: lambda_depth, decayed
        log-linearly to lambda_depth_final when that is set."""
        if self.lambda_depth_final is None or self.lambda_depth <= 0:
            return self.lambda_depth
        return self.lambda_depth * (self.lambda_depth_final / self.lambda_depth) ** min(max(progress, 0.0), 1.0)

    def to_dict(self) -> dict:
        return config_to_dict(self, CONFIG_VERSION)

    @classmethod
    def from_dict(cls, d: dict) -> NerfConfig:
        return config_from_dict(cls, d, {"field": FieldConfig.from_dict})

    @classmethod
    def preset(cls, name: str, **overrides) -> NerfConfig:
        return config_preset(PRESETS, name, overrides)


def _preset_cpu() -> NerfConfig:
    """Small images on a CPU: a smaller table and fewer levels, coarser marching, 64^3 grid."""
    # SH degree 1 for the view direction: 22.98 vs 22.65 dB test after 3000 steps on the
    # synthetic room (few views: a less view-dependent colour generalises better)
    f = FieldConfig(hash=HashGridConfig(num_levels=10, log2_table_size=16, base_resolution=16,
                                        max_resolution=512), sh_degree=1)
    # Short runs: the grid forgets faster (0.8 per update: empty space is skipped after ~100
    # steps instead of ~500 with Instant-NGP's 0.95 every 16 steps).
    # Depth supervision from the SfM tracks: on the synthetic room (24 views at 160x120, 800 steps,
    # one thread) 18.93 dB test PSNR instead of 17.34 and 7 samples per ray instead of 80 (it carves
    # the free space the cameras saw through), so each step is about 2x cheaper. Strong early (0.3),
    # then decayed to 0.001 so that the photometric loss can grow back the thin structures the
    # carving eroded; cells holding SfM points stay occupied meanwhile (grid_pin_points). 300 s,
    # one thread, two runs side by side: 25.45 dB test vs 24.87 at a constant 0.1 (both pinned).
    return NerfConfig(steps=5_000, rays_per_batch=1024, field=f, march_steps=256, grid_resolution=48, lambda_depth=0.3,
                      lambda_depth_final=0.001, grid_pin_points=True,
                      grid_update_every=8, grid_decay=0.8, grid_warmup_steps=64, render_chunk=4096,
                      density_grid_resolution=96)


PRESETS = {
    "default": lambda: NerfConfig(),  # Instant-NGP-sized, for CUDA
    "cpu": _preset_cpu,
    "frequency": lambda: dataclasses.replace(_preset_cpu(), field=FieldConfig(encoding="frequency", hidden=128,
                                                                              density_layers=4)),
}


def _oom_message(cfg: NerfConfig, device) -> str:
    return (f"out of memory on {device} with {cfg.rays_per_batch} rays per batch and a 2^"
            f"{cfg.field.hash.log2_table_size}-row hash table; lower --rays-per-batch (e.g. "
            f"{max(256, cfg.rays_per_batch // 2)}) or --resolution-scale; the last checkpoint is kept")


class NerfModel(torch.nn.Module):
    """Field + bounds + occupancy grid: everything needed to render a trained NeRF."""

    def __init__(self, field_config: FieldConfig, bounds: SceneBounds, grid_resolution: int, *,
                 march_steps: int, cone_angle: float | None, background=(0.0, 0.0, 0.0),
                 early_stop_eps: float = 1e-4):
        super().__init__()
        self.field = NerfField(field_config)
        self.grid = OccupancyGrid(grid_resolution)
        self.bounds = bounds
        self.march_steps = march_steps
        self.cone_angle = (0.0 if bounds.kind == "box" else 1.0 / 256) if cone_angle is None else cone_angle
        self.register_buffer("edges", step_sequence(bounds, march_steps, self.cone_angle), persistent=False)
        self.register_buffer("background", torch.tensor(background, dtype=torch.float32), persistent=False)
        self.early_stop_eps = early_stop_eps
        self.amp = False

    @property
    def dt_min(self) -> float:
        return float(self.edges[1] - self.edges[0])

    def _autocast(self, device):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.amp and device.type == "cuda")

    def sigma_world(self, positions: torch.Tensor) -> torch.Tensor:
        with self._autocast(positions.device):
            return self.field.density(self.bounds.to_unit(positions)).float()

    def render_rays(self, origins: torch.Tensor, dirs: torch.Tensor, *, stratified: bool = False,
                    background: torch.Tensor | None = None):
        """-> (RenderedRays, PackedSamples). origins/dirs [R, 3] world, dirs unit."""
        samples = march_rays(origins, dirs, self.bounds, self.edges, grid=self.grid, stratified=stratified,
                             sigma_fn=self.sigma_world if self.early_stop_eps > 0 else None,
                             early_stop_eps=self.early_stop_eps)
        with self._autocast(origins.device):
            sigma, rgb = self.field(self.bounds.to_unit(samples.positions), dirs[samples.ray_indices])
        out = composite(sigma.float(), rgb.float(), samples.ray_indices, samples.t_starts, samples.t_ends,
                        samples.num_rays, self.background if background is None else background)
        return out, samples

    @torch.no_grad()
    def render_image(self, camera: Camera, cam_from_world: Rigid3, *, chunk: int = 8192) -> RenderedView:
        """rgb [H, W, 3] float32 and z-depth [H, W] (metres; 0 where opacity < 0.5)."""
        dev = self.edges.device
        d_cam, valid = camera_frame_directions(camera)
        world_from_cam = cam_from_world.inverse()
        dirs = torch.from_numpy((d_cam @ world_from_cam.rotation.T).reshape(-1, 3)).float().to(dev)
        origin = torch.from_numpy(world_from_cam.translation).float().to(dev)
        n = dirs.shape[0]
        rgb = torch.empty(n, 3, device=dev)
        t = torch.empty(n, device=dev)
        acc = torch.empty(n, device=dev)
        for i in range(0, n, chunk):
            d = dirs[i:i + chunk]
            out, _ = self.render_rays(origin.expand_as(d), d)
            rgb[i:i + chunk], t[i:i + chunk], acc[i:i + chunk] = out.rgb, out.depth, out.opacity
        h, w = camera.height, camera.width
        z = t.cpu().numpy().reshape(h, w) * d_cam[..., 2]
        ok = (acc.cpu().numpy().reshape(h, w) >= 0.5) & valid
        rgb_np = rgb.cpu().numpy().reshape(h, w, 3)
        rgb_np[~valid] = self.background.cpu().numpy()
        return RenderedView(rgb=rgb_np.astype(np.float32), depth=np.where(ok, z, 0.0).astype(np.float32))

    def save(self, path: Path) -> None:
        from recon.io.files import atomic_write

        doc = {"version": CONFIG_VERSION, "field_config": self.field.config.to_dict(),
               "bounds": self.bounds.to_dict(), "grid_resolution": self.grid.resolution,
               "march_steps": self.march_steps, "cone_angle": self.cone_angle,
               "background": self.background.cpu().tolist(), "early_stop_eps": self.early_stop_eps,
               "state": {k: v.detach().cpu() for k, v in self.state_dict().items()}}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a full disk surfaces as its OSError (see render.scaffold)
                torch.save(doc, f)

        atomic_write(path, write)


def load_model(path, *, device="cpu") -> NerfModel:
    """Read ``model.pt`` (or a run folder holding it) written by :func:`train`."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no NeRF model here (train with `recon train nerf DATA -o OUT`)")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        m = NerfModel(FieldConfig.from_dict(d["field_config"]), SceneBounds.from_dict(d["bounds"]),
                      int(d["grid_resolution"]), march_steps=int(d["march_steps"]),
                      cone_angle=float(d["cone_angle"]), background=tuple(d["background"]),
                      early_stop_eps=float(d["early_stop_eps"]))
        m.load_state_dict(d["state"])
    except (KeyError, RuntimeError, ValueError, TypeError, pickle.UnpicklingError) as e:
        raise ReconError(f"{path}: not a readable NeRF model ({type(e).__name__}: {e})") from None
    return m.to(device).eval()


class NerfTrainer:
    """Implements ``render.scaffold.Trainer`` for the NeRF field."""

    method = "nerf"

    def __init__(self, scene: SceneData, split: Split, cfg: NerfConfig, *, log=None):
        self.scene, self.split, self.cfg = scene, split, cfg
        self.log = log or (lambda m: None)
        self.device = _pick_device(cfg.device)
        dev = self.device
        views = scene.views
        centres = np.array([v.cam_from_world.dst_origin_in_src() for v in views])
        axes = np.array([v.cam_from_world.rotation[2] for v in views])
        bounds, why = choose_bounds(centres, axes, scene.points_xyz if len(scene.points_xyz) else None,
                                    kind=cfg.bounds)
        self.bounds_reason = why
        self.log(f"bounds: {why}; lo {np.round(bounds.lo, 3).tolist()} hi {np.round(bounds.hi, 3).tolist()}")
        torch.manual_seed(cfg.seed)
        self.model = NerfModel(cfg.field, bounds, cfg.grid_resolution, march_steps=cfg.march_steps,
                               cone_angle=cfg.cone_angle, background=cfg.background,
                               early_stop_eps=cfg.early_stop_eps).to(dev)
        self.model.amp = cfg.amp
        self.model.grid.decay = cfg.grid_decay
        self.hash_backend = None
        if cfg.field.encoding == "hash":
            if dev.type == "cpu":
                from render.nerf.encoding import cpu_kernels, cpu_kernels_error

                if cpu_kernels(log=self.log) is None:  # built here, before the training clock starts
                    self.log(f"fused CPU hash-grid kernels unavailable ({cpu_kernels_error()}); using PyTorch ops")
            self.hash_backend = self.model.field.encoder.resolved_backend()
        # Rays: one camera-frame direction grid per distinct camera, rotated per view at sampling time.
        cam_keys, cam_grids, cam_valid, self.cam_of = {}, [], [], []
        for v in views:
            key = (v.camera.model, v.camera.width, v.camera.height, v.camera.params.tobytes())
            if key not in cam_keys:
                cam_keys[key] = len(cam_keys)
                d, ok = camera_frame_directions(v.camera)
                cam_grids.append(d)
                cam_valid.append(ok)
            self.cam_of.append(cam_keys[key])
        hmax = max(v.camera.height for v in views)
        wmax = max(v.camera.width for v in views)

        def pad(a, fill=0.0):
            out = np.full((hmax, wmax) + a.shape[2:], fill, dtype=a.dtype)
            out[:a.shape[0], :a.shape[1]] = a
            return out

        self.dirs_cam = torch.from_numpy(np.stack([pad(d) for d in cam_grids])).float().to(dev)
        self.valid_cam = torch.from_numpy(np.stack([pad(m, False) for m in cam_valid])).to(dev)
        self.images = torch.from_numpy(np.stack([pad(v.image) for v in views])).to(dev)
        self.cam_of_t = torch.tensor(self.cam_of, device=dev)
        wfc = [v.cam_from_world.inverse() for v in views]
        self.rot_wc = torch.tensor(np.stack([p.rotation for p in wfc]), dtype=torch.float32, device=dev)
        self.origins = torch.tensor(np.stack([p.translation for p in wfc]), dtype=torch.float32, device=dev)
        self.sizes = torch.tensor([[v.camera.width, v.camera.height] for v in views], device=dev)
        self.train_idx = torch.tensor(split.train, device=dev)
        mlp_params = [p for n, p in self.model.field.named_parameters() if not n.startswith("encoder")]
        enc_params = [p for n, p in self.model.field.named_parameters() if n.startswith("encoder")]
        self.opt = torch.optim.Adam([{"params": enc_params, "weight_decay": 0.0},
                                     {"params": mlp_params, "weight_decay": cfg.weight_decay}],
                                    lr=cfg.lr, betas=(0.9, 0.99), eps=1e-15)
        self._setup_depth_rays(scene, split)
        if cfg.grid_pin_points and len(scene.points_xyz):
            self._pin_points(scene, split)
        self.elapsed = 0.0
        self._t_last = None
        self._cache: dict = {}

    # ---- scaffold protocol ----
    def _progress(self, step: int) -> float:
        p = step / max(self.cfg.steps, 1)
        if self.cfg.max_seconds:
            p = max(p, self.elapsed / self.cfg.max_seconds)
        return min(p, 1.0)

    def _update_grid(self, step: int) -> float:
        m = self.model
        thr = -math.log(1.0 - self.cfg.grid_alpha_threshold) / m.dt_min
        n = m.grid.density.numel()
        cells = n if step < self.cfg.grid_warmup_steps else max(n // 4, 1)
        return m.grid.update(lambda u: m.field.density(u), threshold=thr, max_cells=cells)

    def _setup_depth_rays(self, scene: SceneData, split: Split) -> None:
        """Rays of the SfM observations in the TRAINING views (never the test views): origin the
        camera centre, unit direction to the point, target distance ||X - C||."""
        self.depth_rays = None
        if self.cfg.lambda_depth <= 0:
            return
        pv = _training_observations(scene, split)
        if len(pv) == 0:
            return
        centres = np.array([v.cam_from_world.dst_origin_in_src() for v in scene.views])
        d = scene.points_xyz[pv[:, 0]] - centres[pv[:, 1]]
        dist = np.linalg.norm(d, axis=1)
        ok = dist > 1e-9
        dev = self.device
        self.depth_rays = (torch.tensor(centres[pv[ok, 1]], dtype=torch.float32, device=dev),
                           torch.tensor(d[ok] / dist[ok, None], dtype=torch.float32, device=dev),
                           torch.tensor(dist[ok], dtype=torch.float32, device=dev))
        self.log(f"depth supervision: {int(ok.sum())} SfM observations in {len(split.train)} training views "
                 f"(lambda {self.cfg.lambda_depth:g})")

    def _pin_points(self, scene: SceneData, split: Split) -> None:
        """Pin the occupancy cells of the SfM points a training view saw (all points where the
        dataset has no tracks)."""
        xyz = scene.points_xyz[np.unique(_training_observations(scene, split)[:, 0])] \
            if len(scene.point_views) else scene.points_xyz
        u = self.model.bounds.to_unit(torch.tensor(xyz, dtype=torch.float32, device=self.device))
        n = self.model.grid.pin(u)
        self.log(f"occupancy grid: {n} cells of {len(xyz)} SfM points kept occupied")

    def _depth_weights(self, origins: torch.Tensor, dirs: torch.Tensor):
        """-> (weights [S], PackedSamples) of depth-supervision rays: density only (their colour is
        not supervised). The gradient reaches the samples in front of the point through the
        transmittance: that is what carves the free space (with the transmittance detached the
        grid stayed fully occupied and the test PSNR fell to 14.8 dB)."""
        m = self.model
        s = march_rays(origins, dirs, m.bounds, m.edges, grid=m.grid, stratified=True,
                       sigma_fn=m.sigma_world if m.early_stop_eps > 0 else None, early_stop_eps=m.early_stop_eps)
        w, _, _ = render_weights(m.sigma_world(s.positions), s.ray_indices, s.t_starts, s.t_ends, s.num_rays)
        return w, s

    def depth_loss(self) -> torch.Tensor:
        """Mean over a batch of SfM-observation rays of (1 - weight within the near-surface band)
        + depth_free_weight x (weight in front of the point)."""
        o, d, target = self.depth_rays
        idx = torch.randint(0, len(target), (self.cfg.depth_rays_per_batch,), device=self.device)
        o, d, target = o[idx], d[idx], target[idx]
        w, s = self._depth_weights(o, d)
        if len(s.ray_indices) == 0:  # every ray in skipped space: nothing to learn from (constant 1)
            return torch.ones((), device=self.device)
        mid = 0.5 * (s.t_starts + s.t_ends)
        tgt = target[s.ray_indices]
        band = torch.clamp_min(self.cfg.depth_margin * tgt, 2.0 * self.model.dt_min)
        free = torch.zeros_like(target).index_add(0, s.ray_indices, w * (mid < tgt - band))
        near = torch.zeros_like(target).index_add(0, s.ray_indices, w * ((mid - tgt).abs() <= band))
        return (self.cfg.depth_free_weight * free + (1.0 - near)).mean()

    def sample_rays(self, n: int):
        """-> origins [n, 3], dirs [n, 3], target rgb [n, 3] of random pixels of training views."""
        dev = self.device
        v = self.train_idx[torch.randint(0, len(self.train_idx), (n,), device=dev)]
        wh = self.sizes[v]
        x = (torch.rand(n, device=dev) * wh[:, 0]).long().clamp_max(wh[:, 0] - 1)
        y = (torch.rand(n, device=dev) * wh[:, 1]).long().clamp_max(wh[:, 1] - 1)
        c = self.cam_of_t[v]
        keep = self.valid_cam[c, y, x]
        v, x, y, c = v[keep], x[keep], y[keep], c[keep]
        d = torch.einsum("nij,nj->ni", self.rot_wc[v], self.dirs_cam[c, y, x])
        return self.origins[v], torch.nn.functional.normalize(d, dim=-1), self.images[v, y, x]

    def step(self, step: int) -> dict:
        t0 = time.perf_counter()
        cfg, m = self.cfg, self.model
        if step % cfg.grid_update_every == 0:
            self.occupancy = self._update_grid(step)
        lr = cfg.lr * cfg.lr_final_factor ** self._progress(step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        try:
            o, d, target = self.sample_rays(cfg.rays_per_batch)
            out, s = m.render_rays(o, d, stratified=True)
            mse = torch.mean((out.rgb - target) ** 2)
            loss = mse
            if cfg.lambda_distortion > 0 and len(s.ray_indices):
                scale = m.bounds.scale
                norm = (lambda t: t / scale) if m.bounds.kind == "box" else \
                    (lambda t: torch.where(t < scale, t / scale, 2.0 - scale / t.clamp_min(1e-9)))
                dist = distortion_loss(out.weights, s.ray_indices, s.t_starts, s.t_ends, s.num_rays, normalize=norm)
                loss = loss + cfg.lambda_distortion * dist.mean()
            dloss = None
            if self.depth_rays is not None:
                dloss = self.depth_loss()
                loss = loss + cfg.depth_weight(self._progress(step)) * dloss
            if not torch.isfinite(loss):
                raise NonFiniteLoss(float(loss.detach()))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        except RuntimeError as e:
            if _is_oom(e):
                raise ReconError(_oom_message(cfg, self.device)) from None
            raise
        self.elapsed += time.perf_counter() - t0
        self._cache.clear()
        stats = {"loss": loss.detach(), "psnr": -10.0 * torch.log10(mse.detach().clamp_min(1e-10)),
                 "samples": float(len(s.ray_indices)) / max(len(o), 1)}
        if dloss is not None:
            stats["depth"] = dloss.detach()
        return stats

    def render_view(self, camera, cam_from_world) -> RenderedView:
        key = (camera.model, camera.width, camera.height, camera.params.tobytes(),
               cam_from_world.matrix().tobytes())
        if key not in self._cache:
            self.model.eval()
            try:
                self._cache[key] = self.model.render_image(camera, cam_from_world, chunk=self.cfg.render_chunk)
            finally:
                self.model.train()
        return self._cache[key]

    def state_dict(self) -> dict:
        return {"model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.opt.state_dict(), "elapsed": self.elapsed}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.elapsed = float(state.get("elapsed", 0.0))

    def is_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def export(self, out_dir: Path) -> dict:
        from tqdm import tqdm

        out_dir = Path(out_dir)
        self.model.save(out_dir / "model.pt")
        if self.cfg.write_depth:
            (out_dir / "depth").mkdir(exist_ok=True)
            clouds = []
            for v in tqdm(self.scene.views, desc="depth maps", file=sys.stderr, leave=False):
                r = self.render_view(v.camera, v.cam_from_world)
                stem = Path(v.name).with_suffix("").as_posix().replace("/", "_")
                np.save(out_dir / "depth" / f"{stem}.npy", r.depth)
                clouds.append(_depth_points(v.camera, v.cam_from_world, r))
            write_depth_points(clouds, out_dir / "points.ply")
        write_density_grid(self.model, out_dir / "density_grid.npz", self.cfg.density_grid_resolution)
        b = self.model.bounds
        v0 = self.scene.views[0]
        return {"num_gaussians": None, "num_parameters": int(sum(p.numel() for p in self.model.parameters())),
                "rasterizer": None, "renderer": "nerf volume rendering (PyTorch)", "hash_backend": self.hash_backend,
                "device": str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})"
                                              if self.device.type == "cuda" else ""),
                "peak_memory_mb": round(_peak_memory_mb(self.device), 1),
                "peak_memory_kind": "cuda max_memory_allocated" if self.device.type == "cuda" else "process peak RSS",
                "strategy": None, "encoding": self.cfg.field.encoding,
                "bounds": {**b.to_dict(), "reason": self.bounds_reason},
                "occupancy": round(float(self.model.grid.occupied.float().mean()), 4),
                "resolution": [v0.camera.width, v0.camera.height],
                "mixed_sizes": len({v.camera.size for v in self.scene.views}) > 1,
                "camera_models": sorted({v.camera.model for v in self.scene.views}),
                "source": self.scene.source, "resolution_scale": self.cfg.resolution_scale,
                "background": list(self.cfg.background),
                "outputs": {"model": "model.pt", "depth": "depth/<view>.npy" if self.cfg.write_depth else None,
                            "density_grid": "density_grid.npz"}}


def _training_observations(scene: SceneData, split: Split) -> np.ndarray:
    """The SfM observations [M, 2] (point, view) of ``scene.point_views`` made by TRAINING views
    (the depth supervision and the pinned occupancy cells never see a test view's tracks)."""
    train = np.zeros(len(scene.views), bool)
    train[list(split.train)] = True
    pv = scene.point_views
    return pv[train[pv[:, 1]]]


def _depth_points(camera: Camera, cam_from_world: Rigid3, r: RenderedView) -> tuple[np.ndarray, np.ndarray]:
    """World points [M, 3] and rendered colours [M, 3] uint8 of the pixels with a valid depth
    (the one depth back-projection, ``recon.export.depth.backproject``)."""
    from recon.export.depth import DepthView, backproject

    rgb = (np.clip(r.rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    xyz, rgb, _ = backproject(DepthView(camera, cam_from_world, r.depth, rgb))
    return xyz, rgb


def write_depth_points(clouds: list, path: Path, max_points: int = 400_000, seed: int = 0) -> int:
    """``points.ply``: the rendered depth maps back-projected into the world with the rendered
    colours (what `recon view` shows for a NeRF output), at most ``max_points`` (a uniform random
    subset). Returns the point count (0: nothing written)."""
    from recon.io import PointCloud, write_ply

    if not clouds:
        return 0
    xyz = np.concatenate([c[0] for c in clouds])
    rgb = np.concatenate([c[1] for c in clouds])
    if len(xyz) == 0:
        return 0
    if len(xyz) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(xyz), max_points, replace=False))
        xyz, rgb = xyz[keep], rgb[keep]
    from recon.io.files import atomic_write

    cloud = PointCloud(xyz.astype(np.float32), rgb)
    atomic_write(path, lambda p: write_ply(p, cloud, comments=(
        "recon train nerf: rendered depth maps of the dataset views, back-projected",)))
    return len(xyz)


@torch.no_grad()
def write_density_grid(model: NerfModel, path: Path, resolution: int) -> None:
    """The density on a regular grid over the box (or the inner cube); format in the module docstring."""
    b = model.bounds
    lo, hi = np.asarray(b.lo), np.asarray(b.hi)
    voxel = (hi - lo) / resolution
    axes = [lo[d] + (np.arange(resolution) + 0.5) * voxel[d] for d in range(3)]
    X, Y, Z = np.meshgrid(*axes, indexing="ij")
    pts = torch.from_numpy(np.stack([X, Y, Z], -1).reshape(-1, 3)).float().to(model.edges.device)
    model.eval()
    sig = torch.cat([model.sigma_world(pts[i:i + 65536]) for i in range(0, len(pts), 65536)])
    model.train()
    np.savez_compressed(path, density=sig.cpu().numpy().reshape(resolution, resolution, resolution).astype(np.float32),
                        bbox_min=lo, bbox_max=hi, voxel_size=voxel, indexing="ij (x, y, z)",
                        world_frame="dataset world frame (the input cameras' cam_from_world)",
                        iso_hint=float(math.log(2.0) / voxel.min()))


def train(data, out_dir, config: NerfConfig | None = None, *, resume: bool = False, progress: bool = True,
          log=None, data_path=None, threads: int | str | None = None, hooks: Hooks | None = None):
    """Train a NeRF on ``data`` (a :class:`render.data.SceneData` or a dataset path: a COLMAP model
    with images, ``recon sfm`` output, a transforms.json folder, a ``recon synth`` dataset) and
    write the outputs of the module docstring. Returns the scaffold's ``FitResult``.

    resume: continue from ``out_dir/checkpoint.pt`` with its saved config (``steps``,
    ``max_seconds`` and ``device`` from ``config``).
    Raises: TrainingDiverged (NaN), ReconError (bad input, out of memory), FileNotFoundError.
    """
    cfg = config or NerfConfig()
    log = log or (lambda msg: print(f"[nerf] {msg}", file=sys.stderr))
    out_dir = Path(out_dir)
    if resume:
        ck = read_checkpoint(out_dir / "checkpoint.pt")
        saved = NerfConfig.from_dict(ck["config"])
        cfg = dataclasses.replace(saved, steps=cfg.steps, max_seconds=cfg.max_seconds, device=cfg.device)
    cfg.validate()
    if not isinstance(data, SceneData):
        data_path = data if data_path is None else data_path
        data = load_scene(data, resolution_scale=cfg.resolution_scale, background=cfg.background,
                          max_views=cfg.max_views, allow_distortion=True, require_poses=True)
    split = Split.every(data, test_every=cfg.test_every, max_views=cfg.max_views)
    tr = NerfTrainer(data, split, cfg, log=log)
    sizes = sorted({v.camera.size for v in data.views})
    log(f"{len(split.train)} train / {len(split.test)} test views, "
        f"{'mixed sizes ' + str(sizes) if len(sizes) > 1 else f'{sizes[0][0]}x{sizes[0][1]}'}, cameras "
        f"{sorted({v.camera.model for v in data.views})}, device {tr.device}, {cfg.field.encoding} encoding")
    if tr.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(tr.device)
    loop = LoopConfig(steps=cfg.steps, checkpoint_every=cfg.checkpoint_every, max_seconds=cfg.max_seconds,
                      threads=threads, desc="nerf")
    try:
        result = fit(tr, data, split, out_dir, loop, config=cfg.to_dict(), resume=resume, progress=progress,
                     hooks=hooks, log=log, data_path=data_path)
    except RuntimeError as e:
        if _is_oom(e):
            raise ReconError(_oom_message(cfg, tr.device)) from None
        raise
    r = result.report
    log(f"done: {r['steps']} steps in {r['seconds']:.1f} s; {r['eval_split']} PSNR {r['psnr']:.2f} dB, "
        f"SSIM {r['ssim']:.4f} -> {out_dir}")
    return result
