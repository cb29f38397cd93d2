"""render.scaffold: the shared training loop, on a toy trainer whose optimum is known (a
per-scene colour fitted to the images' mean), so every scaffold behaviour is checked exactly."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from calib import Camera, Rigid3
from render.data import SceneData, View
from render.scaffold import (
    Hooks,
    LoopConfig,
    NonFiniteLoss,
    RenderedView,
    ShuffledViews,
    Split,
    ThreadGovernor,
    Trainer,
    TrainingDiverged,
    fit,
    read_checkpoint,
    read_split,
)
from render.scaffold._threads import CpuSample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scene(n=9, w=8, h=6) -> SceneData:
    cam = Camera("PINHOLE", w, h, np.array([8.0, 8.0, 3.5, 2.5]))
    rng = np.random.default_rng(0)
    views = [View(f"v{k:02d}.png", cam, Rigid3(np.eye(3), np.array([0.0, 0.0, k])),
                  (np.full((h, w, 3), 0.2 + 0.05 * k) + 0.01 * rng.standard_normal((h, w, 3))).astype(np.float32))
             for k in range(n)]
    return SceneData(views, source="memory")


class ColourTrainer:
    """Fits one RGB colour to the training images (L2) by SGD with step size 1/(2(t+1)): the
    colour is then exactly the running mean of the views seen, so after whole epochs it is the
    mean colour of the training views."""

    method = "toy"

    def __init__(self, scene, split, *, nan_at=None):
        self.scene, self.views = scene, ShuffledViews(split.train, seed=0)
        self.colour = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        self.opt = torch.optim.SGD([self.colour], lr=0.5)
        self.nan_at, self.seen = nan_at, []

    def step(self, step):
        i = self.views.at(step)
        self.seen.append(i)
        gt = torch.from_numpy(self.scene.views[i].image).double()
        for g in self.opt.param_groups:
            g["lr"] = 1.0 / (2 * (step + 1)) * 3  # d/dc mean((c - gt)^2) = 2 (c - mean gt) / 3
        loss = ((self.colour - gt) ** 2).mean()
        if self.nan_at is not None and step >= self.nan_at:
            loss = loss * float("nan")
        if not torch.isfinite(loss):
            raise NonFiniteLoss(float(loss.detach()))
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()
        return {"loss": loss}

    def render_view(self, camera, cam_from_world):
        rgb = self.colour.detach().clamp(0, 1).numpy()
        return RenderedView(np.broadcast_to(rgb, (camera.height, camera.width, 3)).astype(np.float32))

    def state_dict(self):
        return {"colour": self.colour.detach().clone(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.colour.copy_(state["colour"])
        self.opt.load_state_dict(state["opt"])

    def is_finite(self):
        return bool(torch.isfinite(self.colour).all())

    def export(self, out_dir):
        (out_dir / "colour.json").write_text(json.dumps(self.colour.detach().tolist()))
        return {"colour": self.colour.detach().tolist()}


def test_fit_trains_evaluates_and_records_the_split(tmp_path):
    scene = _scene()
    split = Split.every(scene, test_every=4)
    tr = ColourTrainer(scene, split)
    assert isinstance(tr, Trainer)
    res = fit(tr, scene, split, tmp_path, LoopConfig(steps=6 * 40, checkpoint_every=100, threads=1),
              config={"lr": 0.1}, progress=False, log=lambda m: None, data_path=tmp_path)
    target = np.mean([scene.views[i].image.mean((0, 1)) for i in split.train], axis=0)
    np.testing.assert_allclose(res.report["colour"], target, atol=1e-6)
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["method"] == "toy" and rep["steps"] == 240 and rep["eval_split"] == "test"
    assert rep["split"]["test"] == ["v00.png", "v04.png", "v08.png"] and rep["split"]["test_indices"] == [0, 4, 8]
    # test PSNR against the held-out images, computed by hand
    per_view_mean = np.mean([10 * np.log10(1 / np.mean((np.asarray(res.report["colour"], np.float32)
                                                        - scene.views[i].image) ** 2)) for i in split.test])
    assert rep["psnr_test"] == pytest.approx(per_view_mean, abs=1e-3)
    assert rep["lpips_test"] is None and "LPIPS not computed" in rep["lpips_reason"]  # no weights here
    assert sorted(set(tr.seen)) == list(split.train)  # never trains on a held-out view
    assert len(list((tmp_path / "renders" / "test").glob("*.png"))) == 3
    assert read_split(tmp_path / "report.json") == split
    assert not list(tmp_path.glob("*.tmp"))
    assert json.loads((tmp_path / "config.json").read_text()) == {"lr": 0.1}


def test_resume_continues_exactly(tmp_path):
    scene = _scene()
    split = Split.every(scene)
    full = ColourTrainer(scene, split)
    fit(full, scene, split, tmp_path / "a", LoopConfig(steps=40, threads=1), progress=False, log=lambda m: None)
    half = ColourTrainer(scene, split)
    fit(half, scene, split, tmp_path / "b", LoopConfig(steps=20, threads=1), progress=False, log=lambda m: None)
    ck = read_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert ck["step"] == 20 and ck["method"] == "toy" and ck["split"]["test_indices"] == [0, 8]
    again = ColourTrainer(scene, split)
    res = fit(again, scene, split, tmp_path / "b", LoopConfig(steps=40, threads=1), resume=True,
              progress=False, log=lambda m: None)
    assert res.steps == 40
    # the view order is a function of the step, so resuming mid-epoch gives the same bits
    assert again.seen == full.seen[20:]
    assert torch.equal(again.colour.detach(), full.colour.detach())


def test_nan_guard_keeps_the_last_good_state(tmp_path):
    scene = _scene()
    split = Split.every(scene)
    tr = ColourTrainer(scene, split, nan_at=25)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 26; the last good state \(step 25\)"):
        fit(tr, scene, split, tmp_path, LoopConfig(steps=100, checkpoint_every=10, threads=1),
            progress=False, log=lambda m: None)
    ck = read_checkpoint(tmp_path / "checkpoint.pt")
    assert ck["step"] == 25 and torch.isfinite(ck["state"]["colour"]).all()
    assert not (tmp_path / "report.json").exists()


def test_max_seconds_and_hooks(tmp_path):
    scene = _scene()
    split = Split.every(scene)
    logged, lock = [], threading.Lock()
    res = fit(ColourTrainer(scene, split), scene, split, tmp_path,
              LoopConfig(steps=10_000_000, max_seconds=1.0, threads=1, log_every=5), progress=False,
              log=lambda m: None, hooks=Hooks(on_log=lambda s, m: logged.append((s, m["loss"])),
                                              paused=lambda: False, lock=lock))
    assert 0 < res.steps < 10_000_000 and res.seconds < 1.5 and "time budget" in res.report["stopped"]
    assert [s for s, _ in logged] == list(range(5, res.steps + 1, 5))
    assert all(np.isfinite(v) and v > 0 for _, v in logged)


class _Counters:
    """A fake /proc: cumulative busy and own-tree CPU seconds advanced by ``tick``."""

    def __init__(self):
        self.wall, self.busy, self.own = 0.0, 0.0, 0.0

    def tick(self, dt, *, others, own):
        self.wall += dt
        self.busy += dt * (others + own)
        self.own += dt * own

    def __call__(self):
        return CpuSample(self.wall, self.busy, self.own, 2)


def test_thread_governor_counts_other_processes_and_waits_for_two_checks(monkeypatch):
    import render.scaffold._threads as th

    c = _Counters()
    monkeypatch.setattr(th.time, "monotonic", lambda: c.wall)
    monkeypatch.setattr(th.time, "sleep", lambda s: c.tick(s, others=0.02, own=0.0))
    g = ThreadGovernor(every_s=5.0, sample=c, cores=2)
    assert g.start() == 2  # idle machine
    # this process tree (threads and children) busy on both cores: not "others"
    c.tick(5, others=0.0, own=2.0)
    assert g.maybe_update() == 2
    # one competitor: one check is not enough, the second agreeing one steps down
    c.tick(5, others=0.67, own=1.33)
    assert g.maybe_update() == 2
    c.tick(5, others=0.67, own=1.33)
    assert g.maybe_update() == 1
    c.tick(2, others=1.0, own=1.0)
    assert g.maybe_update() == 1  # before every_s: no check
    # the competitor leaves: back to both cores after two checks
    c.tick(5, others=0.05, own=1.0)
    assert g.maybe_update() == 1
    c.tick(5, others=0.05, own=1.0)
    assert g.maybe_update() == 2
    # a one-check burst does not change anything
    c.tick(5, others=1.5, own=0.5)
    c.tick(5, others=0.0, own=2.0)
    assert g.maybe_update() == 2 and g.maybe_update() == 2
    seq = [h["threads"] for h in g.history]
    assert [x for i, x in enumerate(seq) if i == 0 or seq[i - 1] != x] == [2, 1, 2]
    assert all(set(h) == {"t", "threads", "others", "why"} for h in g.history)
    assert ThreadGovernor(fixed=2, cores=4).start() == 2


def test_thread_governor_start_ignores_load_from_its_own_children():
    """A CPU-bound child process (the previous stage's worker, a compiler it spawned) is this
    process tree's own load: the counters put it in ``own_s``, so ``others`` stays near 0."""
    import subprocess
    import sys
    import time

    from render.scaffold._threads import cpu_sample

    g = ThreadGovernor(cores=2)
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"])
    try:
        time.sleep(0.3)
        a = cpu_sample()
        time.sleep(0.8)
        b = cpu_sample()
    finally:
        child.wait()
    assert b.own_s - a.own_s > 0.4  # the child's CPU counted as ours
    assert g.others(a, b) < (b.busy_s - a.busy_s) / (b.wall - a.wall) - 0.4


def test_split_from_report_matches_by_name():
    scene = _scene(n=12)
    split = Split.every(scene, test_every=3)
    back = Split.from_json(json.loads(json.dumps(split.to_json())))
    assert back == split and back.indices_in(scene, "test") == [0, 3, 6, 9]
    fewer = SceneData(scene.views[:5], source="memory")
    from recon.errors import ReconError

    with pytest.raises(ReconError, match="2 test views recorded in the report are not in the dataset"):
        back.indices_in(fewer, "test")


def test_not_a_trainer_is_refused(tmp_path):
    scene = _scene()
    with pytest.raises(TypeError, match="missing"):
        fit(object(), scene, Split.every(scene), tmp_path, LoopConfig(steps=1))
