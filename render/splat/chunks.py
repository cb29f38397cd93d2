"""Chunked Gaussian splatting for scenes one training run cannot hold (``recon train splat
--chunks N``; docs/cluster.md).

The rule (VastGaussian, Lin et al. 2024; CityGaussian, Liu et al. 2024):

1. **Ground plane.** The plane of the camera centres (its normal is the least-variance axis of
   the centres, when they span a plane; else the cameras' mean up vector) gives 2D ground
   coordinates ``uv`` for every 3D point.
2. **Cells.** The SfM points' ``uv`` are cut into ``chunks`` cells by recursive median splits of
   the cell holding most points, along its wider axis (robust 2-98 % span). The cells tile the
   whole plane (outer sides are open), so every Gaussian lies in exactly one cell.
3. **Expanded borders.** Each cell grows by ``border`` times its points' span on every closed
   side; the chunk is initialised from the points in the expanded cell.
4. **Cameras by visibility.** A training view trains a chunk when at least ``min_visible`` of
   the expanded cell's points are seen by it (the SfM tracks when the scene has them, else the
   points projected in front of the camera and inside its image).
5. **Coarse model.** One coarse model of the whole scene (``coarse_steps``, by default half a
   chunk's steps) is trained first on all training views (CityGaussian, Liu et al. 2024); each
   chunk starts from its Gaussians in the expanded cell instead of the SfM points.
6. **Training.** Each chunk is one :func:`render.splat.train` run on its views (nothing held
   out inside a chunk), run as a task of :mod:`recon.cluster` (``resources={"GPU": 1}`` when
   training on CUDA) or one after another in this process without a cluster. A chunk keeps the
   whole scene's extent (``TrainConfig.extent``): with its own, smaller camera spread the means'
   learning rate and the split / prune sizes of densification shrink (measured: -0.6 dB).
7. **Merge.** Each chunk keeps only the Gaussians whose centre lies in its own (unexpanded) cell;
   the union is one standard 3DGS PLY (``out_dir/splat.ply``), evaluated on the scene's held-out
   views (every ``test_every``-th, as a single run) and described in ``out_dir/report.json``
   like any ``recon train splat`` output, so ``recon view / render / export`` read it.

``config.steps`` is the number of steps of each chunk (a chunk is a smaller scene trained with
the usual schedule); the total is ``coarse_steps + chunks * steps``. tests/test_splat_chunks.py compares the
merged model with one model trained for the same total steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import ReconError

__all__ = ["Cell", "ChunkOptions", "ChunkPlan", "ChunkedResult", "plan_chunks", "train_chunked"]


@dataclass(frozen=True)
class ChunkOptions:
    """How a scene is cut into chunks.

    chunks:      number of cells (>= 1)
    border:      growth of each cell on every closed side, as a fraction of its points' span
    min_visible: fraction of the expanded cell's points a training view must see to train it
    coarse_steps: steps of one coarse model of the whole scene trained first (CityGaussian); each
                 chunk then starts from its Gaussians in the expanded cell instead of the SfM
                 points. None: half the steps of a chunk; 0: no coarse model.
    """

    chunks: int = 2
    border: float = 0.25
    min_visible: float = 0.1
    coarse_steps: int | None = None

    def __post_init__(self):
        if isinstance(self.chunks, bool) or int(self.chunks) < 1:
            raise ValueError(f"chunks: expected a positive number of chunks, got {self.chunks!r}")
        if not 0 <= self.border <= 2:
            raise ValueError(f"border: expected a fraction in [0, 2], got {self.border}")
        if not 0 < self.min_visible <= 1:
            raise ValueError(f"min_visible: expected a fraction in (0, 1], got {self.min_visible}")
        if self.coarse_steps is not None and (isinstance(self.coarse_steps, bool) or int(self.coarse_steps) < 0):
            raise ValueError(f"coarse_steps: expected a number of steps >= 0, got {self.coarse_steps!r}")


@dataclass(frozen=True)
class Cell:
    """An axis-aligned box in ground coordinates (u, v); sides may be open (+-inf)."""

    lo: tuple[float, float]
    hi: tuple[float, float]

    def contains(self, uv: np.ndarray) -> np.ndarray:
        """[N] bool for [N, 2] ground coordinates: lo <= uv < hi on both axes (half-open, so
        neighbouring cells never share a point)."""
        uv = np.asarray(uv)
        return np.all((uv >= np.asarray(self.lo)) & (uv < np.asarray(self.hi)), axis=1)


@dataclass
class ChunkPlan:
    """The cut of one scene: ground frame, cells, expanded cells, views and points per chunk."""

    origin: np.ndarray  # [3] world point of ground coordinates (0, 0)
    axes: np.ndarray  # [2, 3] world directions of the u and v ground axes (unit, orthogonal)
    cells: list[Cell]
    expanded: list[Cell]
    views: list[list[int]]  # per chunk: indices into scene.views (training views only)
    points: list[np.ndarray]  # per chunk: indices into scene.points_xyz (in the expanded cell)

    def ground(self, xyz: np.ndarray) -> np.ndarray:
        """[N, 2] ground coordinates of [N, 3] world points."""
        return (np.asarray(xyz, np.float64) - self.origin) @ self.axes.T

    def to_json(self) -> dict:
        return {"origin": self.origin.tolist(), "axes": self.axes.tolist(),
                "chunks": [{"cell": [list(c.lo), list(c.hi)], "expanded": [list(e.lo), list(e.hi)],
                            "views": len(v), "points": int(len(p))}
                           for c, e, v, p in zip(self.cells, self.expanded, self.views, self.points, strict=True)]}


@dataclass
class ChunkedResult:
    out_dir: Path
    report: dict
    plan: ChunkPlan


def _ground_frame(scene) -> tuple[np.ndarray, np.ndarray]:
    """(origin [3], axes [2, 3]) of the plane of the camera centres."""
    centres = np.array([v.cam_from_world.dst_origin_in_src() for v in scene.views])
    ups = np.array([-v.cam_from_world.rotation[1] for v in scene.views])  # OpenCV y points down
    origin = centres.mean(0)
    up = ups.mean(0)
    if len(centres) >= 3:
        _, s, vt = np.linalg.svd(centres - origin, full_matrices=False)
        if s[1] > 0 and s[2] < 0.5 * s[1]:  # the centres span a plane: its normal is up
            up = vt[2] * (1.0 if vt[2] @ up >= 0 else -1.0)
    n = np.linalg.norm(up)
    up = up / n if n > 1e-9 else np.array([0.0, 0.0, 1.0])
    a = np.eye(3)[int(np.argmin(np.abs(up)))]
    u = a - (a @ up) * up
    u /= np.linalg.norm(u)
    v = np.cross(up, u)
    return origin, np.stack([u, v])


def _span(uv: np.ndarray) -> np.ndarray:
    """[2] robust extent (2-98 % quantiles) of ground coordinates, at least 1e-6."""
    if len(uv) < 2:
        return np.full(2, 1e-6)
    lo, hi = np.quantile(uv, [0.02, 0.98], axis=0)
    return np.maximum(hi - lo, 1e-6)


def _cut(uv: np.ndarray, n: int) -> list[Cell]:
    """Recursive median splits of the cell with most points, along its wider axis."""
    inf = float("inf")
    cells = [(Cell((-inf, -inf), (inf, inf)), np.arange(len(uv)))]
    while len(cells) < n:
        k = max(range(len(cells)), key=lambda i: len(cells[i][1]))
        cell, idx = cells.pop(k)
        if len(idx) < 2:
            raise ReconError(f"chunks: cannot cut the scene into {n} cells: a cell holds {len(idx)} "
                             "SfM points (too few points for that many chunks)")
        axis = int(np.argmax(_span(uv[idx])))
        cut = float(np.median(uv[idx, axis]))
        lo_hi, hi_lo = list(cell.hi), list(cell.lo)
        lo_hi[axis], hi_lo[axis] = cut, cut
        below = Cell(cell.lo, tuple(lo_hi))
        above = Cell(tuple(hi_lo), cell.hi)
        cells.insert(k, (above, idx[above.contains(uv[idx])]))
        cells.insert(k, (below, idx[below.contains(uv[idx])]))
    return [c for c, _ in cells]


def _expand(cell: Cell, uv: np.ndarray, border: float) -> Cell:
    margin = border * _span(uv[cell.contains(uv)])
    lo = tuple(float(x - m) if np.isfinite(x) else float(x) for x, m in zip(cell.lo, margin, strict=True))
    hi = tuple(float(x + m) if np.isfinite(x) else float(x) for x, m in zip(cell.hi, margin, strict=True))
    return Cell(lo, hi)


def _seen_counts(scene, view_idx: list[int], point_sets: list[np.ndarray]) -> np.ndarray:
    """[chunks, len(view_idx)] number of each chunk's points each view sees."""
    counts = np.zeros((len(point_sets), len(view_idx)), np.int64)
    member = np.zeros((len(point_sets), len(scene.points_xyz)), bool)
    for c, p in enumerate(point_sets):
        member[c, p] = True
    if len(scene.point_views):
        pos = {v: j for j, v in enumerate(view_idx)}
        pv = scene.point_views
        keep = np.array([v in pos for v in pv[:, 1]], bool)
        col = np.array([pos[v] for v in pv[keep, 1]], np.int64)
        pts = pv[keep, 0]
        for c in range(len(point_sets)):
            counts[c] = np.bincount(col[member[c, pts]], minlength=len(view_idx))
        return counts
    xyz = np.asarray(scene.points_xyz, np.float64)
    for j, i in enumerate(view_idx):
        v = scene.views[i]
        pc = xyz @ v.cam_from_world.rotation.T + v.cam_from_world.translation
        front = pc[:, 2] > 1e-6
        (fx, fy), (cx, cy) = v.camera.focal, v.camera.principal_point
        z = np.where(front, pc[:, 2], 1.0)
        x, y = fx * pc[:, 0] / z + cx, fy * pc[:, 1] / z + cy
        inside = front & (x > -0.5) & (x < v.camera.width - 0.5) & (y > -0.5) & (y < v.camera.height - 0.5)
        counts[:, j] = (member & inside[None]).sum(1)
    return counts


def plan_chunks(scene, train_views, options: ChunkOptions) -> ChunkPlan:
    """Cut ``scene`` (a :class:`render.data.SceneData` with SfM points) into chunks by the rule in
    the module docstring; ``train_views`` are the indices of the views that may train.
    ReconError when the scene has no points or a chunk gets fewer than 2 views."""
    if len(scene.points_xyz) == 0:
        raise ReconError(f"{scene.source or 'scene'}: chunked training needs the model's 3D points "
                         "(the cells are cut from them); this scene has none")
    train_views = [int(i) for i in train_views]
    origin, axes = _ground_frame(scene)
    plan = ChunkPlan(origin, axes, [], [], [], [])
    uv = plan.ground(scene.points_xyz)
    plan.cells = _cut(uv, int(options.chunks))
    plan.expanded = [_expand(c, uv, options.border) for c in plan.cells]
    plan.points = [np.flatnonzero(e.contains(uv)) for e in plan.expanded]
    counts = _seen_counts(scene, train_views, plan.points)
    for c, pts in enumerate(plan.points):
        need = max(1, int(np.ceil(options.min_visible * len(pts))))
        chosen = [train_views[j] for j in np.flatnonzero(counts[c] >= need)]
        if len(chosen) < 2:
            raise ReconError(f"chunk {c}: only {len(chosen)} training views see {options.min_visible:.0%} of "
                             f"its {len(pts)} points; use fewer chunks or a lower min_visible")
        plan.views.append(chosen)
    return plan


def _digest(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, np.float64).tobytes()).hexdigest()[:16]


def _view_digest(scene, idx: list[int]) -> str:
    h = hashlib.sha256()
    for i in idx:
        v = scene.views[i]
        h.update(v.name.encode())
        h.update(np.ascontiguousarray(v.cam_from_world.matrix(), np.float64).tobytes())
        h.update(np.ascontiguousarray(v.image[::4, ::4]).tobytes())
    return h.hexdigest()[:16]


def _train_chunk(folder: Path, scene, config_dict: dict, threads, init=None) -> dict:
    """A cluster task: train one chunk into ``folder`` (from the Gaussians ``init`` when given);
    returns small report facts."""
    from render.splat.trainer import TrainConfig, train

    cfg = TrainConfig.from_dict(config_dict)
    res = train(scene, folder, cfg, progress=False, log=lambda m: None, threads=threads, init=init)
    r = res.report
    return {"num_gaussians": r["num_gaussians"], "train_psnr": r["psnr"], "steps": r["steps"],
            "seconds": r["seconds"], "views": len(scene.views), "device": r["device"]}


class _MergedRenderer:
    """``render_view`` of the merged Gaussians for :func:`render.scaffold.evaluate`."""

    def __init__(self, gaussians, cfg):
        self.g, self.cfg = gaussians, cfg

    def render_view(self, camera, cam_from_world):
        import torch

        from render.scaffold import RenderedView
        from render.splat.api import rasterize

        with torch.no_grad():
            out = rasterize(self.g, camera, cam_from_world, background=self.cfg.background,
                            backend=self.cfg.backend, tile_size=self.cfg.tile_size,
                            chunk_size=self.cfg.chunk_size)
        return RenderedView(out.rgb.clamp(0, 1).cpu().numpy(), out.depth.cpu().numpy())


def train_chunked(scene, out_dir, config=None, options: ChunkOptions | None = None, *, cluster=None,
                  log=None, data_path=None, threads: int | str | None = "auto") -> ChunkedResult:
    """Train ``scene`` (a :class:`render.data.SceneData` or a dataset path) as chunks and write
    the merged model to ``out_dir`` (``splat.ply``, ``report.json``, ``renders/test/``,
    ``chunks/<k>/`` with each chunk's own training output).

    Args:
        config: :class:`render.splat.TrainConfig`; ``steps`` is per chunk.
        options: :class:`ChunkOptions`.
        cluster: a :class:`recon.cluster.Cluster` to run the chunks on (one task each), or None
            (one after another here). A finished chunk (same inputs) is reused on a re-run.
        threads: torch CPU threads of an in-process chunk (a cluster task uses the cluster's
            threads per task).
    Raises:
        ReconError for a scene that cannot be cut; recon.cluster.ClusterError when a chunk task
        fails for good.
    """
    import torch

    from recon.cluster.engine import Task, run_tasks
    from recon.io.files import atomic_write, atomic_write_text
    from recon.io.report import REPORT_VERSION, write_report
    from recon.io.gaussians import GaussianCloud, read_splat_ply, write_splat_ply
    from render.data import SceneData, load_scene, scene_extent
    from render.scaffold import Split, evaluate
    from render.splat.gaussians import Gaussians
    from render.splat.trainer import TrainConfig

    cfg = config or TrainConfig()
    options = options or ChunkOptions()
    cfg.validate()
    log = log or (lambda msg: print(f"[splat] {msg}", file=sys.stderr))
    out = Path(out_dir)
    if not isinstance(scene, SceneData):
        data_path = scene if data_path is None else data_path
        scene = load_scene(scene, resolution_scale=cfg.resolution_scale, background=cfg.background,
                           max_views=cfg.max_views, cache_dir=out / "undistorted")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    split = Split.every(scene, test_every=cfg.test_every, max_views=cfg.max_views)
    plan = plan_chunks(scene, split.train, options)
    gpu = cfg.device == "cuda" or (cfg.device == "auto" and (
        cluster.worker_gpus > 0 if cluster is not None else torch.cuda.is_available()))
    # a chunk keeps the whole scene's extent: it scales the means' learning rate and the sizes at
    # which Gaussians are split or pruned, which a chunk's own smaller camera spread would shrink
    extent = cfg.extent or scene_extent([scene.views[i].cam_from_world for i in split.train])
    chunk_cfg = dataclasses.replace(cfg, test_every=0, max_views=None, resolution_scale=1.0,
                                    device="cuda" if gpu else "cpu", extent=float(extent))
    task_threads = threads if cluster is None else (cluster.threads_per_task if cluster.threads_per_task > 0
                                                    else "auto")
    resources = {"GPU": 1} if gpu and cluster is not None else None
    coarse, coarse_result = None, None
    coarse_steps = cfg.steps // 2 if options.coarse_steps is None else int(options.coarse_steps)
    if coarse_steps > 0:
        coarse_cfg = dataclasses.replace(chunk_cfg, steps=coarse_steps)
        whole = SceneData([scene.views[i] for i in split.train], scene.points_xyz, scene.points_rgb,
                          source=f"{scene.source} coarse")
        inputs = {"views": _view_digest(scene, split.train), "points": _digest(scene.points_xyz),
                  "config": coarse_cfg.to_dict()}
        log(f"coarse model: {len(split.train)} views, {coarse_cfg.steps} steps")
        coarse_result = run_tasks(cluster, "coarse", [Task("000", _train_chunk, (
            whole, coarse_cfg.to_dict(), task_threads), inputs, resources=resources)], out)[0]
        coarse = read_splat_ply(out / "coarse" / "000" / "splat.ply")
    tasks = []
    for k, (views, pts) in enumerate(zip(plan.views, plan.points, strict=True)):
        k_cfg = chunk_cfg
        sub = SceneData([scene.views[i] for i in views], scene.points_xyz[pts], scene.points_rgb[pts],
                        source=f"{scene.source} chunk {k}")
        init = None
        if coarse is not None:  # the coarse Gaussians in the grown cell
            init = coarse.subset(plan.expanded[k].contains(plan.ground(coarse.means)))
        inputs = {"views": _view_digest(scene, views), "points": _digest(scene.points_xyz[pts]),
                  "config": k_cfg.to_dict(), "init": None if init is None else _digest(init.means)}
        tasks.append(Task(f"{k:03d}", _train_chunk, (sub, k_cfg.to_dict(), task_threads, init), inputs,
                          resources=resources))
        log(f"chunk {k}: {len(views)} views, {len(pts)} points, cell u {plan.cells[k].lo[0]:.3g}.."
            f"{plan.cells[k].hi[0]:.3g}, v {plan.cells[k].lo[1]:.3g}..{plan.cells[k].hi[1]:.3g}")
    results = run_tasks(cluster, "chunks", tasks, out)
    train_s = time.perf_counter() - t0

    parts, own_counts = [], []
    for k, cell in enumerate(plan.cells):
        cloud = read_splat_ply(out / "chunks" / f"{k:03d}" / "splat.ply")
        keep = cell.contains(plan.ground(cloud.means))
        own_counts.append(int(keep.sum()))
        parts.append(cloud.subset(keep))
    merged = GaussianCloud(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                             ("means", "log_scales", "quats_wxyz", "opacity_logits", "sh_dc", "sh_rest")))
    atomic_write(out / "splat.ply", lambda p: write_splat_ply(p, merged))
    device = "cuda" if gpu and torch.cuda.is_available() else "cpu"
    g = Gaussians.from_cloud(merged, device=device)
    ev = evaluate(_MergedRenderer(g, cfg), scene, split, out)
    report = {
        "version": REPORT_VERSION,
        "method": "splat",
        "psnr_test": ev.psnr if ev.split == "test" else None,
        "ssim_test": ev.ssim if ev.split == "test" else None,
        "lpips_test": ev.lpips if ev.split == "test" else None,
        "lpips_reason": ev.lpips_reason, "eval_split": ev.split, "eval_views": ev.views,
        "psnr": ev.psnr, "ssim": ev.ssim,
        "steps": int(sum(r["steps"] for r in results)) + (coarse_result["steps"] if coarse_result else 0),
        "seconds": round(time.perf_counter() - t0, 2), "train_seconds": round(train_s, 2),
        "num_gaussians": len(merged.means), "device": device,
        "train_views": len(split.train), "test_views": len(split.test), "split": split.to_json(),
        "data_path": str(Path(data_path).resolve()) if data_path is not None else None,
        "source": scene.source, "resolution": [scene.views[0].camera.width, scene.views[0].camera.height],
        "resolution_scale": cfg.resolution_scale, "background": list(cfg.background),
        "chunks": {"options": dataclasses.asdict(options), "plan": plan.to_json(),
                   "own_cell_gaussians": own_counts, "results": results, "coarse": coarse_result,
                   "steps_per_chunk": cfg.steps},
        "cluster": cluster.facts() if cluster is not None else None,
    }
    write_report(out / "report.json", report, indent=2)
    atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2))
    log(f"merged {len(plan.cells)} chunks: {len(merged.means)} Gaussians (own cells {own_counts}), "
        f"{ev.split} PSNR {ev.psnr:.2f} dB -> {out / 'splat.ply'}")
    return ChunkedResult(out, report, plan)
