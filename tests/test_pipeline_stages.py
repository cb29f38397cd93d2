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
