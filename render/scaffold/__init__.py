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
indices, which ``recon render --cameras test`` reads), ``steps``, ``seconds``, ``threads`` (the governor's history),
``data_path``, plus what ``export`` returns).

Resume: :func:`read_checkpoint` gives the saved config (build the trainer from it), then
``fit(..., resume=True)`` restores the trainer state, step, elapsed time and torch RNG.

NaN guard: a :class:`NonFiniteLoss` from ``step`` (or a non-finite logged loss) stops the run
with :class:`TrainingDiverged`; the state is checkpointed first when ``is_finite()`` says it is
still good, else the last good checkpoint is kept (a checkpoint is never written from a
non-finite state).

Threads: ``LoopConfig.threads="auto"`` lets :class:`ThreadGovernor` choose torch's CPU thread
count from the cores left free by processes outside this process tree (``/proc/stat`` busy time
minus the tree's own CPU time), re-checked every ``threads_every_s`` seconds; report.json's
``threads`` holds every check (time, threads, cores busy elsewhere).

Modules, one concern each: ``_loop`` (:func:`fit`, :class:`LoopConfig`, :class:`Hooks`),
``_types`` (the :class:`Trainer` protocol and the loop's errors), ``_split`` (held-out split,
view order), ``_checkpoint`` (checkpoint IO), ``_eval`` (metrics on held-out views),
``_threads`` (:class:`ThreadGovernor`), ``_config`` (config dataclasses as versioned JSON).

Live view: ``Hooks(on_log=..., paused=..., lock=...)``. ``on_log(step, metrics)`` receives the
logged floats; while ``paused()`` is true the loop waits; ``lock`` is held around each step so
a viewer thread rendering through ``trainer.render_view`` never reads a half-updated model.
"""

from __future__ import annotations

from ._checkpoint import CHECKPOINT_VERSION, _save_checkpoint, read_checkpoint
from ._config import config_from_dict, config_preset, config_to_dict
from ._eval import EvalResult, evaluate
from ._loop import FitResult, Hooks, LoopConfig, fit
from ._split import ShuffledViews, Split, read_split
from ._threads import ThreadGovernor
from ._types import NonFiniteLoss, RenderedView, Trainer, TrainingDiverged

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
    "_save_checkpoint",
    "config_from_dict",
    "config_preset",
    "config_to_dict",
    "evaluate",
    "fit",
    "read_checkpoint",
    "read_split",
]
