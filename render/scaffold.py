"""The training scaffold shared by every trainer (splat, NeRF): the loop with its progress bar,
periodic atomic checkpoints and resume, the NaN guard, the held-out split recorded in the
report, PSNR / SSIM / LPIPS evaluation, the time budget, a torch thread count that follows the
machine's load, and a live-view callback (render never imports viewer).

A method implements the small :class:`Trainer` protocol; :func:`fit` does the rest::

    from render.data import load_scene
    from render.scaffold import LoopConfig, Split, fit, RenderedView, ShuffledViews

    class MyTrainer:                      # no base class: a Protocol
        method = "nerf"                   # recorded in report.json (recon.io.detect reads it)
        def __init__(self, scene, split):
            self.scene, self.views = scene, ShuffledViews(split.train, seed=0)
            ...
        def step(self, step):             # one optimisation step; step = 0, 1, 2, ...
            view = self.scene.views[self.views.at(step)]
            loss = ...
            if not torch.isfinite(loss):  # never apply a non-finite update
                raise NonFiniteLoss(float(loss.detach()))
            loss.backward(); self.opt.step(); self.opt.zero_grad()
            return {"loss": loss}         # floats or 0-d tensors (read every log_every steps)
        def render_view(self, camera, cam_from_world):
            return RenderedView(rgb=..., depth=...)   # [H, W, 3] in [0, 1]; [H, W] metres or None
        def state_dict(self): return {...}            # tensors / plain data (torch.save)
        def load_state_dict(self, state): ...
        def is_finite(self): return all(torch.isfinite(p).all() for p in self.params)
        def export(self, out_dir): return {"num_samples": ...}   # writes files; report fields

    scene = load_scene("out/sfm")
    split = Split.every(scene, test_every=8)
    result = fit(MyTrainer(scene, split), scene, split, "out/nerf",
                 LoopConfig(steps=5000, max_seconds=600), config={"lr": 1e-2})
    result.report["psnr_test"]

``fit`` writes into ``out_dir``: ``checkpoint.pt`` (``{"version", "method", "step", "seconds",
"config", "split", "state", "torch_rng"}``, written to a temporary file and renamed, every
``checkpoint_every`` steps and at the end), ``config.json``, ``renders/<split>/*.png`` and
``report.json`` (``method``, ``psnr_test``, ``ssim_test``, ``lpips_test`` (null with
``lpips_reason`` when LPIPS cannot run), ``eval_split``, ``split`` (the view names and
indices, which ``recon render --cameras test`` reads), ``steps``, ``seconds``, ``threads``,
``data_path``, plus what ``export`` returns).

Resume: :func:`read_checkpoint` gives the saved config (build the trainer from it), then
``fit(..., resume=True)`` restores the trainer state, step, elapsed time and torch RNG.

NaN guard: a :class:`NonFiniteLoss` from ``step`` (or a non-finite logged loss) stops the run
with :class:`TrainingDiverged`; the state is checkpointed first when ``is_finite()`` says it is
still good, else the last good checkpoint is kept (a checkpoint is never written from a
non-finite state).

Threads: ``LoopConfig.threads="auto"`` lets :class:`ThreadGovernor` choose torch's CPU thread
count from the cores left free by other processes, re-checked every ``threads_every_s`` seconds
during the run (not only at the start).

Live view: ``Hooks(on_log=..., paused=..., lock=...)``. ``on_log(step, metrics)`` receives the
logged floats; while ``paused()`` is true the loop waits; ``lock`` is held around each step so
a viewer thread rendering through ``trainer.render_view`` never reads a half-updated model.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recon.errors import ReconError
from recon.io.files import atomic_write, atomic_write_text

__all__ = [
    "CHECKPOINT_VERSION",
    "EvalResult",
    "FitResult",
    "Hooks",
    "LoopConfig",
    "NonFiniteLoss",
    "RenderedView",
    "ShuffledViews",
    "Split",
    "ThreadGovernor",
    "Trainer",
    "TrainingDiverged",
    "config_from_dict",
    "config_preset",
    "config_to_dict",
    "evaluate",
    "fit",
    "read_checkpoint",
    "read_split",
]

CHECKPOINT_VERSION = 1


class TrainingDiverged(ReconError):
    """The loss (or the model) became NaN/Inf. The last good state is in the checkpoint."""


class NonFiniteLoss(Exception):
    """Raised by ``Trainer.step`` instead of applying an update from a NaN/Inf loss."""

    def __init__(self, value: float):
        self.value = float(value)
        super().__init__(f"loss is {self.value}")


@dataclass
class RenderedView:
    rgb: np.ndarray  # [H, W, 3] float32 in [0, 1]
    depth: np.ndarray | None = None  # [H, W] float32, z along the optical axis (scene units); None if n/a


@runtime_checkable
class Trainer(Protocol):
    """What a method implements (see the module docstring for an example)."""

    method: str

    def step(self, step: int) -> Mapping[str, Any]: ...

    def render_view(self, camera, cam_from_world) -> RenderedView: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def is_finite(self) -> bool: ...

    def export(self, out_dir: Path) -> dict: ...


@dataclass
class LoopConfig:
    """The scaffold's options (the method's own hyper-parameters stay in its config)."""

    steps: int
    checkpoint_every: int = 1_000  # 0: only at the end
    max_seconds: float | None = None  # stop before a step that would end past this wall time
    log_every: int = 10  # read losses, update the bar, call Hooks.on_log
    threads: int | str | None = None  # torch CPU threads: N, "auto" (follow the load), None (leave as is)
    threads_every_s: float = 15.0
    desc: str = "train"

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps: expected >= 1, got {self.steps}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every: expected >= 0, got {self.checkpoint_every}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds: expected > 0, got {self.max_seconds}")
        if self.threads is not None and self.threads != "auto" and not (isinstance(self.threads, int)
                                                                        and self.threads >= 1):
            raise ValueError(f"threads: expected an integer >= 1, 'auto' or None, got {self.threads!r}")
        if self.log_every < 1:
            raise ValueError(f"log_every: expected >= 1, got {self.log_every}")


@dataclass
class Hooks:
    """Callbacks for a live viewer (or anything else); all optional."""

    on_log: Callable[[int, dict[str, float]], None] | None = None
    paused: Callable[[], bool] | None = None
    lock: Any = None  # a context manager (threading.Lock) held around each step


# =========================================================================================
# Held-out split
# =========================================================================================

@dataclass(frozen=True)
class Split:
    """Which views train and which are held out, by index into ``SceneData.views`` (sorted by
    name) and by name, so a later reader finds the same views even if the dataset changes."""

    train: tuple[int, ...]
    test: tuple[int, ...]
    names: tuple[str, ...]  # every view's name, in index order
    test_every: int = 8
    max_views: int | None = None

    @classmethod
    def every(cls, scene, *, test_every: int = 8, max_views: int | None = None) -> Split:
        """The 3DGS / Mip-NeRF 360 protocol: views i with i % test_every == 0 are held out."""
        from render.data import split_train_test

        train, test = split_train_test(len(scene.views), test_every=test_every)
        return cls(tuple(train), tuple(test), tuple(v.name for v in scene.views), test_every, max_views)

    def to_json(self) -> dict:
        return {"protocol": f"every {self.test_every}th view held out" if self.test_every > 0 else "none held out",
                "test_every": self.test_every, "max_views": self.max_views,
                "train": [self.names[i] for i in self.train], "test": [self.names[i] for i in self.test],
                "train_indices": list(self.train), "test_indices": list(self.test)}

    @classmethod
    def from_json(cls, d: Mapping, *, where="report.json") -> Split:
        try:
            train, test = [str(n) for n in d["train"]], [str(n) for n in d["test"]]
            ti, si = [int(i) for i in d["train_indices"]], [int(i) for i in d["test_indices"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ReconError(f"{where}: 'split' is incomplete ({type(e).__name__}: {e})") from None
        n = max([*ti, *si], default=-1) + 1
        names = [""] * n
        for i, name in zip([*ti, *si], [*train, *test], strict=True):
            names[i] = name
        return cls(tuple(ti), tuple(si), tuple(names), int(d.get("test_every", 8)), d.get("max_views"))

    def indices_in(self, scene, which: str) -> list[int]:
        """Indices into ``scene.views`` of the ``which`` ('train' / 'test') views, matched by name.
        ReconError naming the missing views when the scene lacks some."""
        wanted = [self.names[i] for i in (self.test if which == "test" else self.train)]
        by_name = {v.name: k for k, v in enumerate(scene.views)}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise ReconError(f"{len(missing)} {which} views recorded in the report are not in the dataset "
                             f"(first: {missing[:3]})")
        return [by_name[n] for n in wanted]


def read_split(report_path) -> Split | None:
    """The split recorded in a run's report.json (None for reports written before it was)."""
    report_path = Path(report_path)
    try:
        doc = json.loads(report_path.read_text())
    except (OSError, ValueError) as e:
        raise ReconError(f"{report_path}: cannot read ({e})") from None
    sp = doc.get("split") if isinstance(doc, dict) else None
    return Split.from_json(sp, where=report_path) if isinstance(sp, dict) else None


class ShuffledViews:
    """Training-view order: epoch ``e`` visits ``train`` in the permutation drawn by
    ``numpy.random.default_rng((seed, e))``. A function of the step alone, so a resumed run
    sees exactly the views the uninterrupted run would have seen."""

    def __init__(self, train, *, seed: int = 0):
        self.train = list(train)
        if not self.train:
            raise ReconError("no training views (need at least 2 views with test_every > 0)")
        self.seed = seed
        self._epoch, self._perm = -1, None

    def at(self, step: int) -> int:
        epoch, pos = divmod(int(step), len(self.train))
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng((self.seed, epoch)).permutation(self.train)
        return int(self._perm[pos])


# =========================================================================================
# Threads
# =========================================================================================

def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ThreadGovernor:
    """torch CPU threads = the cores other processes leave free, re-read during the run.

    Others' load = the 1-minute load average minus the CPU this process used since the last
    check (its own threads are in the load average too); threads = cores - others, at least 1.
    Oversubscribed OpenMP threads spin and make a step 10-100x slower; too few leave cores idle.
    """

    def __init__(self, *, fixed: int | None = None, every_s: float = 15.0, log=None,
                 loadavg: Callable[[], float] | None = None, cores: int | None = None):
        self.fixed, self.every_s, self.log = fixed, every_s, log or (lambda m: None)
        self.cores = cores or _cores()
        self._loadavg = loadavg or (lambda: os.getloadavg()[0])
        self._last_wall = None
        self._last_cpu = None
        self.threads = 0
        self.history: list[int] = []

    def choose(self, own_cpu_rate: float) -> int:
        try:
            load = float(self._loadavg())
        except OSError:
            return self.cores
        others = max(0.0, load - own_cpu_rate)
        return int(min(self.cores, max(1, math.floor(self.cores - others + 0.5))))

    def start(self) -> int:
        import torch

        n = self.fixed if self.fixed is not None else self.choose(0.0)
        self._apply(torch, n, "start")
        self._last_wall, self._last_cpu = time.perf_counter(), time.process_time()
        return n

    def maybe_update(self) -> int:
        if self.fixed is not None or self._last_wall is None:
            return self.threads
        now = time.perf_counter()
        if now - self._last_wall < self.every_s:
            return self.threads
        import torch

        cpu = time.process_time()
        rate = (cpu - self._last_cpu) / max(now - self._last_wall, 1e-9)
        self._last_wall, self._last_cpu = now, cpu
        n = self.choose(rate)
        if n != self.threads:
            self._apply(torch, n, f"load {self._loadavg():.1f} on {self.cores} cores")
        return self.threads

    def _apply(self, torch, n: int, why: str) -> None:
        if n != self.threads:
            torch.set_num_threads(n)
            if self.threads:
                self.log(f"torch threads {self.threads} -> {n} ({why})")
            self.threads = n
            self.history.append(n)


# =========================================================================================
# Checkpoints
# =========================================================================================

def read_checkpoint(path) -> dict:
    """The checkpoint dict (see the module docstring); ReconError naming the file when unreadable."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: nothing to resume from")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ReconError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(ck, dict) and "state" not in ck and "params" in ck:  # splat checkpoints before the scaffold
        ck = {**ck, "method": "splat", "state": {k: ck.pop(k) for k in ("params", "optimizer", "strategy_state")}}
    if not isinstance(ck, dict) or "state" not in ck or "step" not in ck:
        raise ReconError(f"{path}: not a recon training checkpoint (no 'state' / 'step')")
    return ck


def _save_checkpoint(path: Path, trainer: Trainer, step: int, seconds: float, config: dict, split: Split) -> None:
    import torch

    doc = {"version": CHECKPOINT_VERSION, "method": trainer.method, "step": step, "seconds": seconds,
           "config": config, "split": split.to_json(), "state": trainer.state_dict(),
           "torch_rng": torch.get_rng_state()}

    def write(tmp: Path) -> None:
        # through a Python file object, so a full disk surfaces as its OSError (torch's own
        # path writer reports only "unexpected pos")
        with open(tmp, "wb") as f:
            torch.save(doc, f)

    atomic_write(path, write)


# =========================================================================================
# Evaluation
# =========================================================================================

@dataclass
class EvalResult:
    split: str  # "test", or "train" when nothing is held out
    views: int
    psnr: float | None
    ssim: float | None
    lpips: float | None
    lpips_reason: str | None
    per_view: list[dict] = field(default_factory=list)


def _save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image as PILImage

    path.parent.mkdir(parents=True, exist_ok=True)
    img = PILImage.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    atomic_write(path, lambda p: img.save(p))


def evaluate(trainer: Trainer, scene, split: Split, out_dir=None) -> EvalResult:
    """PSNR / SSIM / LPIPS of ``trainer.render_view`` against the held-out views (the training
    views when none are held out); renders saved under ``out_dir/renders/<split>/``."""
    import torch

    from render.metrics import lpips, lpips_status, psnr, ssim

    idx, name = (split.test, "test") if split.test else (split.train, "train")
    ps, ss, lp, per = [], [], [], []
    lp_ok, lp_reason = lpips_status()
    with torch.no_grad():
        for i in idx:
            v = scene.views[i]
            pred = np.asarray(trainer.render_view(v.camera, v.cam_from_world).rgb, dtype=np.float32)
            pred = np.clip(pred, 0.0, 1.0)
            p, s = psnr(pred, v.image), ssim(pred, v.image)
            lv = lpips(pred, v.image) if lp_ok else None
            ps.append(p), ss.append(s), lp.append(lv)
            per.append({"index": int(i), "name": v.name, "psnr": p, "ssim": s, "lpips": lv})
            if out_dir is not None:
                stem = Path(v.name).with_suffix("").as_posix().replace("/", "_")
                _save_png(Path(out_dir) / "renders" / name / f"{i:04d}_{stem}.png", pred)
    have_lp = lp_ok and bool(lp)
    return EvalResult(name, len(idx), float(np.mean(ps)) if ps else None, float(np.mean(ss)) if ss else None,
                      float(np.mean(lp)) if have_lp else None, None if have_lp else lp_reason, per)


# =========================================================================================
# The loop
# =========================================================================================

@dataclass
class FitResult:
    out_dir: Path
    report: dict
    steps: int
    seconds: float
    eval: EvalResult | None


def _as_float(v) -> float:
    return float(v.detach()) if hasattr(v, "detach") else float(v)


def _diverged(trainer: Trainer, ck: Path, step: int, loss: float, save=None) -> TrainingDiverged:
    """The error to raise; ``save`` (when given and the model is still finite) checkpoints the
    state before the failed step first."""
    if save is not None and trainer.is_finite():
        save()
        kept = f"the last good state (step {step}) is in {ck}"
    elif ck.is_file():
        kept = f"the last good checkpoint is kept in {ck}"
    else:
        kept = "no good checkpoint was written yet"
    return TrainingDiverged(f"{trainer.method}: loss became {loss} at step {step + 1}; {kept}. Lower the "
                            "learning rates or check the input images and poses.")


def fit(trainer: Trainer, scene, split: Split, out_dir, loop: LoopConfig, *, config: dict | None = None,
        resume: bool = False, progress: bool = True, hooks: Hooks | None = None, log=None,
        data_path=None, evaluate_at_end: bool = True, report_extra: dict | None = None) -> FitResult:
    """Run ``trainer`` for ``loop.steps`` steps (in total, counting a resumed run's), then
    export, evaluate and write report.json. See the module docstring.

    Args:
        trainer: implements :class:`Trainer`.
        scene: the :class:`render.data.SceneData` it trains on (for evaluation).
        split: the held-out split (recorded in the checkpoint and report).
        config: the method's config as plain JSON data (config.json, checkpoint).
        resume: continue from ``out_dir/checkpoint.pt``.
        hooks: live-view callbacks.
        report_extra: more report fields (dataset facts); ``export``'s return value is merged too.
    Raises:
        TrainingDiverged: NaN/Inf loss or model. ReconError: bad input.
    """
    import torch
    from tqdm import tqdm

    if not isinstance(trainer, Trainer):
        missing = [m for m in ("method", "step", "render_view", "state_dict", "load_state_dict", "is_finite",
                               "export") if not hasattr(trainer, m)]
        raise TypeError(f"trainer: {type(trainer).__name__} does not implement render.scaffold.Trainer "
                        f"(missing {missing})")
    loop.validate()
    log = log or (lambda msg: print(f"[{trainer.method}] {msg}", file=sys.stderr))
    hooks = hooks or Hooks()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / "checkpoint.pt"
    config = dict(config or {})
    step, seconds = 0, 0.0
    if resume:
        ck = read_checkpoint(ck_path)
        if ck.get("method", trainer.method) != trainer.method:
            raise ReconError(f"{ck_path}: a {ck.get('method')} checkpoint, not {trainer.method}")
        trainer.load_state_dict(ck["state"])
        step, seconds = int(ck["step"]), float(ck.get("seconds", 0.0))
        if "torch_rng" in ck:
            torch.set_rng_state(ck["torch_rng"])
        log(f"resumed from {ck_path} at step {step}")
    atomic_write_text(out / "config.json", json.dumps(config, indent=2))

    # The training curve (every logged step's losses): history.json, kept with the checkpoint.
    hist_path = out / "history.json"
    history: dict = {"step": []}
    if resume and hist_path.is_file():
        try:
            history = json.loads(hist_path.read_text())
            keep = sum(1 for s_ in history.get("step", []) if s_ <= step)
            history = {k: v[:keep] for k, v in history.items()}
        except (ValueError, AttributeError, TypeError):
            history = {"step": []}

    def save():
        _save_checkpoint(ck_path, trainer, step, seconds, config, split)
        atomic_write_text(hist_path, json.dumps(history))

    governor = ThreadGovernor(fixed=None if loop.threads == "auto" else loop.threads,
                              every_s=loop.threads_every_s, log=log)
    # threads matter on the CPU only; ``device`` is an optional attribute of the trainer
    on_cpu = loop.threads is not None and str(getattr(trainer, "device", "cpu")).startswith("cpu")
    if on_cpu:
        threads = governor.start()
        log(f"torch threads: {threads}" + (f" (of {governor.cores} cores, following the load)"
                                           if loop.threads == "auto" else ""))
    lock = hooks.lock or contextlib.nullcontext()
    bar = tqdm(total=loop.steps, initial=step, disable=not progress, file=sys.stderr, desc=loop.desc,
               dynamic_ncols=True, mininterval=0.5)
    t_start = time.perf_counter() - seconds
    cpu0 = time.process_time()
    stopped = None
    try:
        while step < loop.steps:
            while hooks.paused is not None and hooks.paused():
                time.sleep(0.1)
            if on_cpu:
                governor.maybe_update()
            try:
                with lock:
                    losses = trainer.step(step)
            except NonFiniteLoss as e:
                raise _diverged(trainer, ck_path, step, e.value, save) from None
            step += 1
            bar.update(1)
            if step % loop.log_every == 0 or step == loop.steps:
                metrics = {k: _as_float(v) for k, v in losses.items()}
                if not all(math.isfinite(v) for v in metrics.values()):
                    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
                    step -= 1
                    raise _diverged(trainer, ck_path, step, next(iter(bad.values())))
                bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)
                history["step"].append(step)
                for k, v in metrics.items():
                    history.setdefault(k, []).append(v)
                if hooks.on_log is not None:
                    hooks.on_log(step, metrics)
            step_seconds = time.perf_counter() - t_start - seconds
            seconds = time.perf_counter() - t_start
            if loop.checkpoint_every and step % loop.checkpoint_every == 0:
                if not trainer.is_finite():
                    raise _diverged(trainer, ck_path, step - 1, float("nan"))
                save()
            # Stop before a step that would end past the budget, so the budget is kept.
            if loop.max_seconds is not None and seconds + step_seconds > loop.max_seconds:
                stopped = f"time budget of {loop.max_seconds:g} s reached at step {step}"
                log(stopped)
                break
    finally:
        bar.close()
    seconds = time.perf_counter() - t_start
    if not trainer.is_finite():
        raise _diverged(trainer, ck_path, step - 1, float("nan"))
    save()
    exported = trainer.export(out) or {}
    ev = evaluate(trainer, scene, split, out) if evaluate_at_end else None
    report = {
        "method": trainer.method,
        "psnr_test": ev.psnr if ev and ev.split == "test" else None,
        "ssim_test": ev.ssim if ev and ev.split == "test" else None,
        "lpips_test": ev.lpips if ev and ev.split == "test" else None,
        "lpips_reason": ev.lpips_reason if ev else None,
        "eval_split": ev.split if ev else None,
        "eval_views": ev.views if ev else 0,
        "psnr": ev.psnr if ev else None, "ssim": ev.ssim if ev else None,
        "steps": step,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(time.process_time() - cpu0, 2),
        "stopped": stopped or "steps done",
        "threads": governor.history or None,
        "train_views": len(split.train), "test_views": len(split.test),
        "split": split.to_json(),
        "data_path": str(Path(data_path).resolve()) if data_path is not None else None,
        **(report_extra or {}),
        **exported,
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str))
    return FitResult(out, report, step, seconds, ev)


# ---- method configs: plain, versioned JSON (both trainers' TrainConfig / NerfConfig) --------
def config_to_dict(cfg, version: int) -> dict:
    """A config dataclass as plain JSON data with its ``version`` (tuples become lists)."""
    import dataclasses

    d = dataclasses.asdict(cfg)
    for k, v in d.items():
        if isinstance(v, tuple):
            d[k] = list(v)
    d["version"] = version
    return d


def config_from_dict(cls, d: dict, nested: dict | None = None):
    """``cls(**d)`` from :func:`config_to_dict`'s output: unknown fields are an error naming them;
    ``nested`` maps a field to the callable that rebuilds it from its dict; list fields whose
    default is a tuple become tuples again."""
    import dataclasses

    d = dict(d)
    d.pop("version", None)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"config: unknown fields {sorted(unknown)}")
    for k, build in (nested or {}).items():
        if k in d and isinstance(d[k], dict):
            d[k] = build(d[k])
    for k, v in d.items():
        if isinstance(v, list) and isinstance(fields[k].default, tuple):
            d[k] = tuple(v)
    return cls(**d)


def config_preset(presets: dict, name: str, overrides: dict):
    """``presets[name]()`` with ``overrides`` replaced; an unknown name is an error listing them."""
    import dataclasses

    if name not in presets:
        raise ValueError(f"preset: expected one of {sorted(presets)}, got {name!r}")
    return dataclasses.replace(presets[name](), **overrides)
