"""`recon reconstruct` end to end on a small synthetic scene: every stage's output, the reuse of
finished stages, SIGKILL during training then a resumed run, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recon.cli import main


def _recon(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "recon", *map(str, args)], env=env, **kw)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from recon import synth

    root = tmp_path_factory.mktemp("recon_scene")
    synth.write_dataset(root, synth.make_scene(seed=0), synth.make_camera("PINHOLE", 240, 180, fov_deg=60),
                        synth.orbit(16, radius=3.2), options=synth.DatasetOptions(progress=False))
    return root / "images"


def test_bad_input_names_the_cause(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["reconstruct", str(empty), "-o", str(tmp_path / "o1"), "-q"]) == 2
    assert "image" in capsys.readouterr().err.lower()
    junk = tmp_path / "junk"
    junk.mkdir()
    for k in range(3):
        (junk / f"{k}.jpg").write_bytes(b"not an image")
    assert main(["reconstruct", str(junk), "-o", str(tmp_path / "o2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "sfm" in err and "kept" in err
    assert main(["reconstruct", str(tmp_path / "missing"), "-o", str(tmp_path / "o3")]) == 2
    assert "no such file" in capsys.readouterr().err
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00" * 100)
    assert main(["reconstruct", str(video), "-o", str(tmp_path / "o4"), "-q"]) == 2
    assert "video" in capsys.readouterr().err.lower()


@pytest.mark.slow
def test_reconstruct_end_to_end_then_reuse(photos, tmp_path):
    out = tmp_path / "out"
    assert main(["reconstruct", str(photos), "-o", str(out), "--steps", "150", "--max-seconds", "240", "-q"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["status"] == "ok"
    assert rep["sfm"]["images_registered"] == 16
    assert rep["train"]["psnr_test"] > 14  # untrained is ~10 dB on this scene
    for f in ("export/points.ply", "export/mesh.ply", "export/splat.ply", "report.html", "scene/orientation.json"):
        assert (out / f).is_file(), f
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4  # SfM, residuals, curve, renders (+ mesh)
    # the matching / mapper choice and its reason: in pipeline.json, report.json and the page
    sfm = {s["name"]: s for s in json.loads((out / "pipeline.json").read_text())["stages"]}["sfm"]["result"]
    assert sfm["matching_strategy"] == "exhaustive" and sfm["mapper"] == "incremental"
    assert sfm["mapper_reason"].startswith("16 images (<= 300)") and rep["sfm"]["matching_reason"].startswith("16 images")
    assert "mapper_reason" in html and "120 pairs" in html
    # upright: the oriented cameras' mean image-down axis points along -z
    from recon.io import read_colmap

    rec = read_colmap(out / "scene" / "sparse" / "0")
    down = np.mean([im.cam_from_world.rotation[1] for im in rec.registered_images], axis=0)
    assert down[2] / np.linalg.norm(down) < -0.99
    # a second run reuses every stage
    assert main(["reconstruct", str(photos), "-o", str(out), "--steps", "150", "--max-seconds", "240", "-q"]) == 0
    rep2 = json.loads((out / "report.json").read_text())
    assert {n: s["how"] for n, s in rep2["stages"].items() if n != "report"} == {
        "sfm": "reused", "orient": "reused", "train": "reused", "export": "reused", "labels": "skipped"}
    # a changed option invalidates that stage and what follows, not what precedes
    assert main(["reconstruct", str(photos), "-o", str(out), "--steps", "160", "--max-seconds", "240", "-q"]) == 0
    rep3 = json.loads((out / "report.json").read_text())
    assert rep3["stages"]["sfm"]["how"] == "reused" and rep3["stages"]["train"]["how"] == "ran"
    assert rep3["stages"]["export"]["how"] == "ran"


@pytest.mark.slow
def test_sigkill_during_training_resumes_from_checkpoint(photos, tmp_path):
    out = tmp_path / "out"
    # a step budget (the time budget far away): the resumed run and the reference train 300 steps;
    # the first checkpoint is at 250 (every 250 steps on a CPU)
    args = ["reconstruct", photos, "-o", out, "--steps", "300", "--max-seconds", "3600", "-q"]
    p = _recon(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = out / "splat" / "checkpoint.pt"
    t0 = time.time()
    while not ck.is_file() and p.poll() is None and time.time() - t0 < 900:
        time.sleep(0.5)
    assert p.poll() is None, "the run ended before its first checkpoint"
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    doc = json.loads((out / "pipeline.json").read_text())
    assert {s["name"]: s["status"] for s in doc["stages"]}["train"] == "running"
    # the uninterrupted reference: the same command on the same SfM (a copy of this folder
    # without the training), training from scratch
    import shutil

    ref = tmp_path / "ref"
    shutil.copytree(out, ref, symlinks=True, ignore=shutil.ignore_patterns("splat"))
    assert main([str(a) for a in args]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["stages"]["train"]["how"] == "resumed" and rep["train"]["resumed_from_checkpoint"] is True
    assert rep["stages"]["sfm"]["how"] == "reused"
    assert rep["train"]["steps"] == 300 and rep["train"]["psnr_test"] > 14
    ref_args = [str(a) for a in args]
    ref_args[ref_args.index(str(out))] = str(ref)
    assert main([*ref_args, "--from-stage", "train"]) == 0
    rep_ref = json.loads((ref / "report.json").read_text())
    assert rep_ref["stages"]["train"]["how"] == "ran" and rep_ref["train"]["steps"] == 300
    a, b = rep["train"]["psnr_test"], rep_ref["train"]["psnr_test"]
    same = (out / "splat" / "splat.ply").read_bytes() == (ref / "splat" / "splat.ply").read_bytes()
    print(f"test PSNR: resumed {a:.4f} dB, uninterrupted {b:.4f} dB; splat.ply identical: {same}")
    assert abs(a - b) <= 0.3  # the bar


class _FillingDisk:
    """The disk under a running ``recon reconstruct`` fills up, by one of two means:

    * ``tmpfs``: OUT lives on a small tmpfs (needs `mount -t tmpfs`, i.e. root) that ``fill()``
      fills with a file, leaving ``leave`` bytes: writes then fail with ENOSPC;
    * ``rlimit``: ``fill()`` lowers the running child's RLIMIT_FSIZE to ``leave`` bytes (prlimit;
      works without root; the child ignores SIGXFSZ, so writes fail with EFBIG).
    """

    def __init__(self, mode: str, root: Path, leave: int = 64 * 1024):
        self.mode, self.leave, self.root, self.mounted, self.filler = mode, leave, root / "disk", False, None
        self.root.mkdir()
        if mode == "tmpfs":
            try:
                r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(self.root)],
                                   capture_output=True, text=True, check=False)
            except OSError as e:
                pytest.skip(f"tmpfs: cannot run mount ({e}); the rlimit variant covers this machine")
            if r.returncode != 0:
                pytest.skip(f"tmpfs: `mount -t tmpfs` failed ({r.stderr.strip()[:120]}); not root? "
                            "the rlimit variant covers this machine")
            self.mounted = True

    @staticmethod
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited across exec: EFBIG, not a kill

    def fill(self, pid: int) -> None:
        if self.mode == "rlimit":
            import resource

            resource.prlimit(pid, resource.RLIMIT_FSIZE, (self.leave, self.leave))
            return
        st = os.statvfs(self.root)
        self.filler = self.root / "filler.bin"
        with open(self.filler, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - self.leave)

    def free(self) -> None:
        if self.filler is not None:
            self.filler.unlink()

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.root)], capture_output=True, check=False)


def _digest(folder: Path) -> dict:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["tmpfs", "rlimit"])
def test_disk_full_during_training_keeps_sfm_and_the_rerun_reuses_it(photos, tmp_path, mode):
    disk = _FillingDisk(mode, tmp_path)
    try:
        out = disk.root / "out"
        args = ["reconstruct", photos, "-o", out, "--steps", "60", "--max-seconds", "600", "-q"]
        p = _recon(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=disk.preexec)
        record, t0, sfm_files = out / "pipeline.json", time.time(), None
        while p.poll() is None and time.time() - t0 < 600:
            try:
                st = {s["name"]: s["status"] for s in json.loads(record.read_text())["stages"]}
            except (OSError, ValueError, KeyError):
                st = {}
            if st.get("train") == "running":
                disk.fill(p.pid)  # the disk is full from the start of training on
                sfm_files = _digest(out / "sfm" / "sparse" / "0")
                break
            time.sleep(0.2)
        assert sfm_files is not None, f"training never started: {p.communicate()[1][-2000:]}"
        _, err = p.communicate(timeout=600)
        assert p.returncode == 2, err[-2000:]
        last = err.strip().splitlines()[-1]
        print(last)
        what, why = (("the disk is full", "no space left on device") if mode == "tmpfs"
                     else ("a file-size limit was reached", "file-size limit (ulimit -f)"))
        assert last.startswith(f"recon reconstruct: error: train: {what}: cannot write "), last
        assert why in last and "free on its file system" in last and "run the same command again" in last, last
        assert "sfm, orient" in last and str(out) in last, last
        # the finished stages are intact and recorded; training is not taken for done
        doc = json.loads(record.read_text())
        st = {s["name"]: s["status"] for s in doc["stages"]}
        assert st["sfm"] == "done" and st["orient"] == "done" and st["train"] in ("failed", "running"), st
        assert _digest(out / "sfm" / "sparse" / "0") == sfm_files
        assert not list((out / "splat").glob(".*.tmp*")), "a temporary file was left behind"
        assert not (out / "splat" / "report.json").exists()
        # space again: the same command reuses SfM and finishes
        disk.free()
        assert main([str(a) for a in args]) == 0
        rep = json.loads((out / "report.json").read_text())
        assert rep["status"] == "ok"
        assert rep["stages"]["sfm"]["how"] == "reused" and rep["stages"]["orient"]["how"] == "reused"
        assert rep["stages"]["train"]["how"] in ("resumed", "ran") and rep["train"]["steps"] == 60
        assert (out / "export" / "splat.ply").is_file() and (out / "report.html").is_file()
    finally:
        disk.close()


def test_export_and_label_stages_call_the_library(tmp_path):
    """The pipeline's export and labels stages call recon.export / recon.semantic directly and
    keep their typed results (no verb, no argv, no side file read back)."""
    from recon import synth
    from recon.pipeline.reconstruct import QUALITY, ReconstructConfig, _stage_export, _stage_labels

    out = tmp_path / "out"
    synth.write_dataset(out / "scene", synth.make_scene(seed=0), synth.make_camera("PINHOLE", 80, 60, fov_deg=60),
                        synth.orbit(8, radius=3.2), options=synth.DatasetOptions(progress=False, num_points=800))
    cfg = ReconstructConfig(method="nerf", labels="gt")  # no out/nerf: the mesh fails, the points do not
    summary = _stage_export(out, cfg, QUALITY["fast"], progress=False)
    assert set(summary["files"]) == {"points"} and "mesh" in summary["errors"]
    cloud_report = json.loads((out / "export" / "points.ply.report.json").read_text())
    assert summary["points"]["vertices"] == cloud_report["vertices"] > 100
    labels = _stage_labels(out, cfg)
    assert labels["points_labelled"] > 0.9 * labels["points_seen"] and labels["backend"] == "gt"
    with pytest.raises(ValueError, match="labels_options"):
        _stage_labels(out, ReconstructConfig(labels="gt", labels_options={"colour": "red"}))
