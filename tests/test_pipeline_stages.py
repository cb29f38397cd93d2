"""The resumable stage runner of `recon reconstruct` and the auto-orientation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calib import Rigid3, Sim3, matrix_from_axis_angle
from recon.pipeline.orient import auto_orient, camera_up
from recon.pipeline.stages import StageFailed, StageRunner, file_fingerprint
from recon.scene import Image, Point3D, Reconstruction


def _chain(out, calls, opts_a=1, opts_b=2, from_stage=None, fail_b=False):
    r = StageRunner(out, from_stage=from_stage, log=lambda m: None)

    def a(ctx):
        calls.append(("a", ctx.resume))
        (out / "a.txt").write_text("a")
        return {"v": opts_a}

    def b(ctx):
        calls.append(("b", ctx.resume))
        if fail_b:
            raise ValueError("b broke")
        (out / "b.txt").write_text("b")
        return {"v": opts_b}

    ra = r.run("a", {"x": opts_a}, a, outputs=[out / "a.txt"])
    rb = r.run("b", {"y": opts_b}, b, outputs=[out / "b.txt"])
    return r, ra, rb


def test_reuse_invalidation_and_from_stage(tmp_path):
    calls = []
    _chain(tmp_path, calls)
    assert calls == [("a", False), ("b", False)]
    calls.clear()
    r, ra, rb = _chain(tmp_path, calls)  # nothing changed: both reused
    assert calls == [] and ra == {"v": 1} and rb == {"v": 2}
    assert [r.records[n].how for n in ("a", "b")] == ["reused", "reused"]
    calls.clear()
    _chain(tmp_path, calls, opts_b=3)  # only b's options changed: a reused, b runs
    assert calls == [("b", False)]
    calls.clear()
    _chain(tmp_path, calls, opts_a=5, opts_b=3)  # a changed: b runs too (upstream fingerprint)
    assert calls == [("a", False), ("b", False)]
    calls.clear()
    _chain(tmp_path, calls, opts_a=5, opts_b=3, from_stage="b")
    assert calls == [("b", False)]
    calls.clear()
    (tmp_path / "b.txt").unlink()  # an output vanished: the stage runs again
    _chain(tmp_path, calls, opts_a=5, opts_b=3)
    assert calls == [("b", False)]
    doc = json.loads((tmp_path / "pipeline.json").read_text())
    assert [s["name"] for s in doc["stages"]] == ["a", "b"] and doc["stages"][1]["status"] == "done"


def test_failed_stage_is_recorded_and_resumed(tmp_path):
    calls = []
    with pytest.raises(StageFailed, match="b broke") as ei:
        _chain(tmp_path, calls, fail_b=True)
    assert isinstance(ei.value.__cause__, ValueError) and ei.value.stage == "b"
    doc = json.loads((tmp_path / "pipeline.json").read_text())
    assert doc["stages"][1]["status"] == "failed" and "b broke" in doc["stages"][1]["error"]
    assert (tmp_path / "a.txt").is_file()  # earlier output kept
    calls.clear()
    r, _, _ = _chain(tmp_path, calls)  # same options: a reused, b continues (resume=True)
    assert calls == [("b", True)] and r.records["b"].how == "resumed"


def test_file_fingerprint_changes_with_content(tmp_path):
    (tmp_path / "p").mkdir()
    f = tmp_path / "p" / "x.jpg"
    f.write_bytes(b"1")
    fp1 = file_fingerprint(tmp_path / "p")
    f.write_bytes(b"22")
    assert file_fingerprint(tmp_path / "p") != fp1
    (tmp_path / "p" / "y.jpg").write_bytes(b"3")
    assert len(file_fingerprint(tmp_path / "p")) == 2


def _tilted_scene(seed=0):
    """A floor (z = 0 in the truth frame) with an object, cameras level around it, then the whole
    world moved by a random similarity as SfM would leave it."""
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(-2, 2, (400, 2)), np.zeros(400)]
    box = rng.uniform([-0.5, -0.5, 0], [0.5, 0.5, 1.0], (200, 3))
    pts = np.r_[floor, box]
    images = {}
    for k in range(12):
        a = 2 * np.pi * k / 12
        c = np.array([3 * np.cos(a), 3 * np.sin(a), 1.5])
        fwd = -c / np.linalg.norm(c)
        right = np.cross(fwd, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        R = np.stack([right, down, fwd])  # rows: camera axes in the world
        images[k + 1] = Image(k + 1, f"{k}.png", 1, Rigid3(R, -R @ c))
    rec = Reconstruction({}, images, {i + 1: Point3D(p) for i, p in enumerate(pts)})
    moved = Sim3(0.7, matrix_from_axis_angle(rng.normal(size=3)), rng.normal(size=3) * 3)
    return rec.transformed(moved), moved


def test_auto_orient_recovers_up_and_floor():
    rec, moved = _tilted_scene()
    up = camera_up(rec)
    assert np.degrees(np.arccos(np.clip(up @ (moved.rotation @ [0, 0, 1.0]), -1, 1))) < 1e-6
    T = auto_orient(rec)
    oriented = rec.transformed(T)
    xyz = oriented.points_xyz()
    assert abs(np.percentile(xyz[:, 2], 2)) < 1e-9  # floor at z = 0
    floor_pts = xyz[:400]
    assert np.abs(floor_pts[:, 2]).max() < 1e-6  # the true floor is flat at z = 0
    assert np.abs(np.median(xyz[:, :2], axis=0)).max() < 1e-9
    # cameras still see the same points at the same pixels: poses are consistent with the points
    im = rec.images[1]
    im2 = oriented.images[1]
    p = rec.points3D[450].xyz
    p2 = oriented.points3D[450].xyz
    a, b = im.cam_from_world.apply(p), im2.cam_from_world.apply(p2)
    assert np.allclose(a / a[2], b / b[2], atol=1e-9)


# ---- a full disk ----------------------------------------------------------------------------
def test_atomic_write_keeps_the_old_file_and_names_a_full_disk(tmp_path, monkeypatch):
    import errno

    from recon.errors import DiskFullError
    from recon.io.files import atomic_write, atomic_write_text

    target = tmp_path / "report.json"
    atomic_write_text(target, "old")

    def fills_up(p):
        p.write_text("half a fi")  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(p))

    with pytest.raises(DiskFullError) as ei:
        atomic_write(target, fills_up)
    msg = str(ei.value)
    assert str(target) in msg and "no space left on device" in msg and "free on its file system" in msg
    assert ei.value.errno == errno.ENOSPC
    assert target.read_text() == "old"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary left
    with pytest.raises(ZeroDivisionError):  # other errors pass unchanged (and clean up too)
        atomic_write(target, lambda p: (p.write_text("x"), 1 / 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    # a temporary of a killed process (pid not running) is removed by the next write
    stale = tmp_path / ".report.tmp999999999.json"
    stale.write_text("left by SIGKILL")
    atomic_write_text(target, "new")
    assert not stale.exists() and target.read_text() == "new"


_CHILD = r"""
import json, sys
from pathlib import Path
import torch
from recon.errors import DiskFullError
from recon.io.files import atomic_write_bytes
from render.scaffold import Split, _save_checkpoint
d = Path(sys.argv[1])
out = {}
try:
    atomic_write_bytes(d / "big.bin", b"x" * 200_000)
except DiskFullError as e:
    out["bytes"] = [e.errno, str(e)]
class T:
    method = "toy"
    def state_dict(self):
        return {"w": torch.zeros(100_000)}
try:
    _save_checkpoint(d / "checkpoint.pt", T(), 10, 1.0, {}, Split([0], [], ["a.png"]))
except DiskFullError as e:
    out["checkpoint"] = [e.errno, str(e)]
print(json.dumps(out))
"""


def test_file_size_limit_in_a_child_gives_disk_full_errors(tmp_path):
    """RLIMIT_FSIZE with SIGXFSZ ignored (works without root): writes past the limit fail with
    EFBIG, through Python's file writes and through torch.save's C++ writer."""
    import errno
    import os
    import resource
    import signal
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "big.bin").write_bytes(b"old")
    (tmp_path / "checkpoint.pt").write_bytes(b"previous checkpoint")

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], preexec_fn=limit, env=env, check=False,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    for what, name in (("bytes", "big.bin"), ("checkpoint", "checkpoint.pt")):
        code, msg = got[what]
        assert code == errno.EFBIG and "file-size limit" in msg and name in msg, (what, msg)
    assert (tmp_path / "big.bin").read_bytes() == b"old"
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin", "checkpoint.pt"]


def test_runner_survives_a_record_it_cannot_write(tmp_path, monkeypatch):
    """The disk fills during a stage, so even the failure cannot be recorded: the stage still
    fails as itself, and pipeline.json keeps its last complete version (stage 'running')."""
    import errno

    from recon.errors import DiskFullError
    from recon.io import files

    calls = []
    _chain(tmp_path, calls)  # a and b done
    r = StageRunner(tmp_path, from_stage="b", log=lambda m: None)
    r.run("a", {"x": 1}, lambda ctx: {"v": 1}, outputs=[tmp_path / "a.txt"])
    real = files.atomic_write_text
    state = {"full": False}

    def record(path, text):
        if state["full"]:
            raise DiskFullError(path, OSError(errno.ENOSPC, "No space left on device"))
        return real(path, text)

    monkeypatch.setattr(files, "atomic_write_text", record)

    def b(ctx):
        state["full"] = True
        raise DiskFullError(tmp_path / "b.txt", OSError(errno.ENOSPC, "No space left on device"))

    with pytest.raises(StageFailed) as ei:
        r.run("b", {"y": 2}, b, outputs=[tmp_path / "b.txt"])
    assert ei.value.stage == "b" and isinstance(ei.value.__cause__, DiskFullError)
    doc = json.loads((tmp_path / "pipeline.json").read_text())
    assert {s["name"]: s["status"] for s in doc["stages"]} == {"a": "done", "b": "running"}
    # ... and a stage whose "done" cannot be recorded is not reported as done
    state["full"] = False
    r2 = StageRunner(tmp_path, log=lambda m: None)
    r2.run("a", {"x": 1}, lambda ctx: {"v": 1}, outputs=[tmp_path / "a.txt"])

    def fills(ctx):
        state["full"] = True
        return {"v": 2}

    with pytest.raises(StageFailed, match="cannot record"):
        r2.run("b", {"y": 2}, fills, outputs=[tmp_path / "b.txt"])
    assert r2.records["b"].status == "failed"
