"""The training loop (:func:`fit`) and its options; see :mod:`render.scaffold`."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recon.errors import ReconError
from recon.io.files import atomic_write_text
from recon.io.report import REPORT_VERSION, write_report

from ._checkpoint import _save_checkpoint, read_checkpoint
from ._eval import EvalResult, evaluate
from ._split import Split
from ._threads import ThreadGovernor
from ._types import NonFiniteLoss, Trainer, TrainingDiverged

__all__ = ["FitResult", "Hooks", "LoopConfig", "fit"]


@dataclass
class LoopConfig:
    """The scaffold's options (the method's own hyper-parameters stay in its config)."""

    steps: int
    checkpoint_every: int = 1_000  # 0: only at the end
    max_seconds: float | None = None  # stop before a step that would end past this wall time
    log_every: int = 10  # read losses, update the bar, call Hooks.on_log
    threads: int | str | None = None  # torch CPU threads: N, "auto" (follow the load), None (leave as is)
    threads_every_s: float = 5.0  # between the governor's checks (two agreeing checks change it)
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
        log(f"torch threads: {threads}" + (f" (of {governor.cores} cores, following the other "
                                           "processes' CPU use)" if loop.threads == "auto" else ""))
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
        "version": REPORT_VERSION,  # as written (recon.io.report), so the result equals report.json
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
        "threads": ({"mode": "auto" if loop.threads == "auto" else "fixed", "cores": governor.cores,
                     "history": governor.history} if on_cpu else None),
        "train_views": len(split.train), "test_views": len(split.test),
        "split": split.to_json(),
        "data_path": str(Path(data_path).resolve()) if data_path is not None else None,
        **(report_extra or {}),
        **exported,
    }
    write_report(out / "report.json", report, indent=2)
    return FitResult(out, report, step, seconds, ev)
