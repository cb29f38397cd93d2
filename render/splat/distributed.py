"""One splat model trained by several processes (``recon train splat --distributed`` under torchrun).

Model parallel over the Gaussians and data parallel over the views, as Grendel (Zhao et al.
2024) and gsplat's distributed mode: process ``r`` of ``W`` owns a shard of the Gaussians (every
W-th of the initial ones, then what its own densification adds) with its optimizer and
densification state, and renders its own training view each step with ALL the Gaussians. Its
loss gradient reaches every owner; each owner steps its own shard. Nothing is replicated but the
images, so W processes hold about W times the Gaussians one can.

How the Gaussians meet the views (``exchange``):

* ``"gsplat"`` (CUDA + NCCL + gsplat, one GPU per process): ``gsplat.rasterization(...,
  distributed=True)``: each process projects its shard into every process's camera and gsplat's
  all-to-all sends each camera only the Gaussians it sees. Its means2d / radii are [W, N_own]:
  the densification statistics of the own shard over every process's view.
* ``"gather"`` (anywhere; the only path on CPU, with the gloo backend): the shards are
  all-gathered (padded to the largest with invisible Gaussians), the own view is rendered by
  our rasterizer, the backward sums every process's gradient of the gathered tensors and keeps
  the own slice (an all-reduce), and the per-Gaussian screen-gradient norms and radii of every
  process's view are all-gathered so that each owner sees the same [W, N_own] statistics.
  Same data flow as gsplat's, more traffic (every Gaussian, not only the visible ones); it is
  what the tests run on 2 CPU processes.

Every process runs the same loop in lock step (collectives at every render), evaluates the
same held-out views with the gathered model, and process 0 writes OUT (splat.ply of the whole
model, report.json); the others write their shard's checkpoint to OUT/ranks/<r>/. A time budget
(--max-seconds) and the live viewer are refused: either would let one process stop or render
alone and hang the others. Resume needs the same number of processes.

Launch (one process per GPU; CPU processes use gloo):

    torchrun --standalone --nproc-per-node 4 -m recon train splat DATA -o OUT --distributed
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist

from recon.errors import ReconError
from render.splat.gaussians import Gaussians
from render.splat.trainer import SplatTrainer, TrainConfig, _make_optimizer

__all__ = ["DistributedContext", "ShardedSplatTrainer", "distributed_context", "train_distributed"]

TORCHRUN_HINT = ("launch it under torchrun, one process per GPU (or CPU process): torchrun --standalone "
                 "--nproc-per-node N -m recon train splat DATA -o OUT --distributed")


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str  # "nccl" or "gloo"
    device: str  # "cuda:<local_rank>" or "cpu"


def distributed_context(device: str = "auto") -> DistributedContext:
    """Join the torchrun process group (env:// rendezvous): NCCL with one GPU per process when
    CUDA is there and ``device`` allows it, else gloo on the CPU. Raises ReconError outside
    torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ReconError("--distributed: not started by torchrun (no RANK / WORLD_SIZE); " + TORCHRUN_HINT)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ReconError("--distributed --device cuda: CUDA is not available in this process")
    if cuda:
        if local >= torch.cuda.device_count():
            raise ReconError(f"--distributed: local rank {local} but only {torch.cuda.device_count()} GPU(s): "
                             "one process per GPU (NCCL does not share a GPU between processes)")
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistributedContext(rank, world, local, backend, f"cuda:{local}" if cuda else "cpu")


class _GatherShards(torch.autograd.Function):
    """[n_own, ...] -> [W * n_max, ...]: every process's shard, padded to ``n_max`` rows with
    copies of ``pad`` (one row). Backward: the gradient of the gathered tensor summed over the
    processes (an all-reduce), the own rows kept."""

    @staticmethod
    def forward(ctx, x, n_max: int, pad):
        rank, world = dist.get_rank(), dist.get_world_size()
        padded = pad.to(x).expand(n_max, *x.shape[1:]).clone()
        padded[: len(x)] = x
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        ctx.rank, ctx.n, ctx.n_max = rank, len(x), n_max
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = ctx.rank * ctx.n_max
        return grad[start:start + ctx.n], None, None


def _pad_row(name: str, like: torch.Tensor) -> torch.Tensor:
    """One padding Gaussian: tiny, transparent, unit quaternion (never composited: alpha ~ 1e-17)."""
    row = torch.zeros(like.shape[1:], dtype=like.dtype, device=like.device)
    if name == "log_scales":
        row.fill_(-20.0)
    elif name == "opacity_logits":
        row.fill_(-40.0)
    elif name == "quats_wxyz":
        row[0] = 1.0
    return row


def gather_gaussians(g: Gaussians, *, differentiable: bool) -> tuple[Gaussians, list[int], int]:
    """Every process's shard -> (the gathered Gaussians, each shard's size, the padded size).
    Rows ``r * n_max .. r * n_max + sizes[r]`` are process r's Gaussians, the rest padding; with
    ``differentiable`` the gradient of each process's render reaches every owner's shard. All
    fields travel as one [n, D] tensor: one all-gather forward, one all-reduce backward."""
    n = torch.tensor([len(g)], dtype=torch.int64, device=g.means.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    n_max = max(sizes)
    fields = g.tensors()
    flat = torch.cat([v.reshape(len(v), -1) for v in fields.values()], dim=1)
    pad = torch.cat([_pad_row(k, v).reshape(-1) for k, v in fields.items()])
    if differentiable:
        both = _GatherShards.apply(flat, n_max, pad)
    else:
        with torch.no_grad():
            both = _GatherShards.apply(flat.detach(), n_max, pad)
    out, at = {}, 0
    for k, v in fields.items():
        width = int(np.prod(v.shape[1:], dtype=np.int64))
        out[k] = both[:, at:at + width].reshape(len(both), *v.shape[1:])
        at += width
    return Gaussians(**out), sizes, n_max


def _own_rows(sizes: list[int], n_max: int, rank: int) -> slice:
    return slice(rank * n_max, rank * n_max + sizes[rank])


class ShardedSplatTrainer(SplatTrainer):
    """:class:`render.splat.trainer.SplatTrainer` over a shard of the Gaussians (see the module
    docstring). ``gaussians()`` is the whole gathered model (a collective: every process calls
    it in the same order), so the inherited ``render_view`` and ``export`` see the whole model."""

    def __init__(self, scene, split, cfg: TrainConfig, *, log, ctx: DistributedContext, exchange: str):
        super().__init__(scene, split, dataclasses.replace(cfg, device=ctx.device), log=log)
        from render.scaffold import ShuffledViews

        self.ctx, self.exchange = ctx, exchange
        self._gather = None
        self.views = ShuffledViews(split.train, seed=cfg.seed + 7919 * ctx.rank)  # a view of its own per step

    def init_fresh(self, rng, init: Gaussians | None = None):
        super().init_fresh(rng, init)  # the same initial model on every process (same seed) ...
        full = self.gaussians_local()
        keep = torch.arange(self.ctx.rank, len(full), self.ctx.world_size, device=full.means.device)
        self._set_params(Gaussians(**{k: v.detach()[keep] for k, v in full.tensors().items()}))  # ... its shard
        self.optimizer = _make_optimizer(self.params, self.cfg, self.extent)
        self.state = self.strategy.init_state(len(keep), self.device)
        self.log(f"rank {self.ctx.rank}/{self.ctx.world_size}: {len(keep)} of {len(full)} Gaussians")

    def gaussians_local(self) -> Gaussians:
        """This process's shard (differentiable)."""
        return super().gaussians()

    def gaussians(self) -> Gaussians:
        g, sizes, n_max = gather_gaussians(self.gaussians_local(), differentiable=False)
        keep = torch.cat([torch.arange(r * n_max, r * n_max + s) for r, s in enumerate(sizes)]).to(g.means.device)
        return Gaussians(**{k: v[keep] for k, v in g.tensors().items()})

    def render(self, view, sh_degree: int):
        if self.exchange == "gsplat":
            return self._render_gsplat(view, sh_degree)
        from render.splat.api import rasterize

        g, sizes, n_max = gather_gaussians(self.gaussians_local(), differentiable=True)
        self._gather = (sizes, n_max)
        return rasterize(g, view.camera, view.cam_from_world, sh_degree=sh_degree, background=self.bg,
                         backend=self.cfg.backend, tile_size=self.cfg.tile_size, chunk_size=self.cfg.chunk_size)

    def _render_gsplat(self, view, sh_degree: int):
        from render.splat.api import rasterize

        return rasterize(self.gaussians_local(), view.camera, view.cam_from_world, sh_degree=sh_degree,
                         background=self.bg, backend="gsplat", distributed=True)

    def _stats(self, out) -> SimpleNamespace:
        """The densification statistics of the own shard over every process's view this step:
        means2d gradient [W, n_own, 2] and radii [W, n_own] (``strategy.step_post_backward``)."""
        if self.exchange == "gsplat":
            return out
        sizes, n_max = self._gather
        grad = out.means2d_graph.grad
        grad = torch.zeros(len(out.radii), 2, device=self.device) if grad is None else grad.detach().reshape(-1, 2)
        both = torch.cat([grad.float(), out.radii.float()[:, None]], dim=1).contiguous()
        parts = [torch.empty_like(both) for _ in range(self.ctx.world_size)]
        dist.all_gather(parts, both)
        own = _own_rows(sizes, n_max, self.ctx.rank)
        mine = torch.stack([p[own] for p in parts])  # [W, n_own, 3]
        return SimpleNamespace(means2d_graph=SimpleNamespace(grad=mine[..., :2].contiguous()),
                               radii=mine[..., 2].round().to(torch.int32))

    def step(self, step: int) -> dict:
        res = super().step(step)
        res["num_gaussians"] = self._total(len(self.params["means"]))
        return res

    def _post_backward(self, out, step: int, view):
        self.strategy.step_post_backward(self.params, self.optimizer, self.state, step + 1, self._stats(out),
                                         self.extent, view.camera.width, view.camera.height)

    def _total(self, n: int) -> int:
        t = torch.tensor([n], dtype=torch.int64, device=self.device)
        dist.all_reduce(t)
        return int(t)

    def is_finite(self) -> bool:
        ok = torch.tensor([1 if super().is_finite() else 0], device=self.device)
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(int(ok))

    def state_dict(self) -> dict:
        d = super().state_dict()
        d["rank"], d["world_size"] = self.ctx.rank, self.ctx.world_size
        return d

    def load_state_dict(self, state: dict) -> None:
        if state.get("world_size") != self.ctx.world_size or state.get("rank") != self.ctx.rank:
            raise ReconError(f"--resume --distributed: the checkpoint is rank {state.get('rank')} of "
                             f"{state.get('world_size')}, this process rank {self.ctx.rank} of {self.ctx.world_size}: "
                             "resume with the same number of processes")
        super().load_state_dict(state)


def train_distributed(scene, out_dir, config: TrainConfig | None = None, *, resume: bool = False,
                      progress: bool = True, log=None, data_path=None, exchange: str = "auto"):
    """:func:`render.splat.trainer.train` as one process of a torchrun group (see the module
    docstring). Returns the :class:`TrainResult` (process 0: of OUT; the others: of
    OUT/ranks/<r>, whose report holds the same figures)."""
    import sys

    from render.splat import trainer as tmod

    if exchange not in ("auto", "gsplat", "gather"):
        raise ValueError(f"exchange: expected 'auto', 'gsplat' or 'gather', got {exchange!r}")
    cfg = config or TrainConfig()
    if cfg.max_seconds is not None:
        raise ReconError("--distributed: --max-seconds is not supported (each process would stop at its own "
                         "step and leave the others waiting); give --steps")
    ctx = distributed_context(cfg.device)
    if exchange == "auto":
        exchange = "gsplat" if ctx.backend == "nccl" and tmod._gsplat_used() else "gather"
    if exchange == "gsplat" and ctx.backend != "nccl":
        raise ReconError("--distributed: gsplat's exchange needs CUDA + NCCL (one GPU per process)")
    out = Path(out_dir) if ctx.rank == 0 else Path(out_dir) / "ranks" / str(ctx.rank)
    base = log or (lambda msg: print(f"[splat] {msg}", file=sys.stderr))

    def rank_log(msg):
        if ctx.rank == 0:
            base(msg)

    cfg = dataclasses.replace(cfg, device=ctx.device)
    rank_log(f"distributed: {ctx.world_size} processes, {ctx.backend}, exchange {exchange}")
    try:
        res = tmod.train(scene, out, cfg, resume=resume, progress=progress and ctx.rank == 0, log=rank_log,
                         data_path=data_path,
                         trainer_factory=lambda scene_, split, c, log: ShardedSplatTrainer(
                             scene_, split, c, log=log, ctx=ctx, exchange=exchange),
                         report_extra={"distributed": {"world_size": ctx.world_size, "backend": ctx.backend,
                                                       "exchange": exchange}})
    finally:
        dist.barrier()
    return res
