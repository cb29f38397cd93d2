"""``recon reconstruct``: photos or a video in; cameras, a radiance field, points, a mesh, a splat
PLY and a report out, in one resumable command.

Stages (each recorded in ``OUT/pipeline.json`` with what it ran with; see
:mod:`recon.pipeline.stages`)::

    sfm      recon.sfm on the photos / video                       -> OUT/sfm/
    orient   upright and centred copy of the model (z up, floor at z = 0; the similarity
             ``oriented_from_sfm`` is recorded)                     -> OUT/scene/
    train    Gaussian splatting (or NeRF) on OUT/scene; distorted cameras are undistorted on load
             by the trainer; resumes from its checkpoint after an interruption -> OUT/splat/ | OUT/nerf/
    export   points (cleaned SfM points), a mesh (TSDF of the trained model's depth), the splat
             PLY                                                    -> OUT/export/
    labels   optional: 2D labels lifted onto the points             -> OUT/labels/
    report   OUT/report.html (self-contained, pictures inlined) and OUT/report.json

Re-running the same command reuses every finished stage whose inputs and options are unchanged
and resumes an interrupted training run from its last checkpoint; ``from_stage`` redoes a stage
and everything after it.

Each stage calls the library function of its job (recon.sfm.run_sfm, render.splat.train,
recon.export.export_artifact, recon.semantic.label_scene) and keeps its typed result; this module
may import ``render`` (lazily, inside the stages that train and render depth): it is a pipeline
(docs/conventions.md, layering). It never imports the CLI verbs.
"""

from __future__ import annotations

import errno
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recon.errors import DiskFullError, ReconError, disk_full_cause, free_bytes
from recon.pipeline.stages import StageFailed, StageRunner, file_fingerprint

__all__ = ["QUALITY", "STAGES", "ReconstructConfig", "reconstruct"]

STAGES = ("sfm", "orient", "train", "export", "labels", "report")

# A stage that fails for an unrecognised reason while the output disk has less than this free
# gets a note that the disk is the likely cause (a C++ writer, e.g. pycolmap's, may not say so).
LOW_SPACE_BYTES = 1 << 20

# Per quality preset and device: SfM feature size, training resolution (long side, px), steps
# and wall-time budget, mesh voxel count across the scene. "fast" on a 2-core CPU is sized for
# a 50-photo set in about 15 minutes. Its CPU training size: 480 px since the C++ rasterizer and
# the budget-following schedule (bench/bench_quality_fast.py on Sceaux, 300 s each: 480 px 14.43 dB
# held out at 480 px vs 13.80 dB for 320 px, SSIM 0.739 vs 0.698; one scene).
QUALITY = {
    "fast": {"sfm_max_image_size": 1000, "train_long_side": {"cpu": 480, "cuda": 1000},
             "steps": {"cpu": 3000, "cuda": 7000}, "max_seconds": {"cpu": 300, "cuda": 600},
             "mesh_faces": 200_000},
    "default": {"sfm_max_image_size": 1600, "train_long_side": {"cpu": 480, "cuda": 1600},
                "steps": {"cpu": 7000, "cuda": 30000}, "max_seconds": {"cpu": 1200, "cuda": 1800},
                "mesh_faces": 500_000},
    "best": {"sfm_max_image_size": 3200, "train_long_side": {"cpu": 800, "cuda": 3200},
             "steps": {"cpu": 15000, "cuda": 30000}, "max_seconds": {"cpu": 3600, "cuda": 3600},
             "mesh_faces": 1_000_000},
}


@dataclass
class ReconstructConfig:
    """Options of :func:`reconstruct`.

    quality:      "fast" | "default" | "best" (see QUALITY)
    method:       "splat" (Gaussian splatting) or "nerf"
    calib:        an OpenCV YAML / recon calibration file: intrinsics held fixed in SfM
    labels:       a labelling backend for `recon label` ("gt", "masks", "darknet", ...) or None
    labels_options: extra options of the labelling backend (e.g. {"masks": DIR, "model": PATH})
    device:       "auto" | "cpu" | "cuda"
    max_seconds:  training budget override (None: the preset's)
    steps:        training steps override (None: the preset's)
    orient:       put the scene upright and centred (recorded transform)
    seed:         random seed
    chunks:       train Gaussian splatting as this many ground-plane chunks merged into one PLY
                  (render.splat.chunks; on the cluster when one is given); None: one run
    """

    quality: str = "fast"
    method: str = "splat"
    calib: str | None = None
    labels: str | None = None
    labels_options: dict = field(default_factory=dict)
    device: str = "auto"
    max_seconds: float | None = None
    steps: int | None = None
    orient: bool = True
    seed: int = 0
    chunks: int | None = None

    def validate(self) -> None:
        if self.quality not in QUALITY:
            raise ValueError(f"quality: expected one of {sorted(QUALITY)}, got {self.quality!r}")
        if self.method not in ("splat", "nerf"):
            raise ValueError(f"method: expected 'splat' or 'nerf', got {self.method!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device: expected auto, cpu or cuda, got {self.device!r}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds: expected > 0, got {self.max_seconds}")
        if self.chunks is not None and (self.chunks < 1 or self.method != "splat"):
            raise ValueError(f"chunks: expected a positive number with method 'splat', got {self.chunks} "
                             f"with {self.method!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps: expected >= 1, got {self.steps}")


def _device_kind(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def reconstruct(inputs, out_dir, config: ReconstructConfig | None = None, *, from_stage: str | None = None,
                progress: bool = True, log=None, cluster=None) -> dict:
    """Run the pipeline into ``out_dir``; returns the final report dict (also OUT/report.json).

    ``cluster``: a :class:`recon.cluster.Cluster` on which the SfM stage (and ``chunks``) runs its tasks
    (``--workers`` / ``--cluster``; docs/cluster.md); None: one process.

    Raises ReconError (with earlier stages' outputs kept) when a stage cannot go on; the
    failed stage and its message are in OUT/pipeline.json and OUT/report.json.
    """
    cfg = config or ReconstructConfig()
    cfg.validate()
    log = log or _log_default
    inputs, out = Path(inputs), Path(out_dir)
    if not inputs.exists():
        raise FileNotFoundError(f"{inputs}: no such file or folder")
    if from_stage is not None and from_stage not in STAGES:
        raise ValueError(f"from_stage: expected one of {', '.join(STAGES)}, got {from_stage!r}")
    if inputs.is_dir() and out.resolve().is_relative_to(inputs.resolve()):
        raise ValueError(f"output: {out} is inside the photo folder {inputs}; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    device = _device_kind(cfg.device)
    q = QUALITY[cfg.quality]
    runner = StageRunner(out, from_stage=from_stage, log=log)
    t_all = time.perf_counter()
    report: dict = {"status": "running", "input": str(inputs.resolve()), "config": asdict(cfg),
                    "device": device, "stages": {}}

    def finish(status: str, message: str = "") -> dict:
        report["status"] = status
        if message:
            report["message"] = message
        report["total_seconds"] = round(time.perf_counter() - t_all, 1)
        report["stages"] = {n: {"status": r.status, "how": r.how, "seconds": r.seconds, **(
            {"error": r.error} if r.error else {})} for n, r in runner.records.items()}
        from recon.io.report import write_report

        try:
            write_report(out / "report.json", report, indent=2)
        except OSError as e:
            if status == "ok":
                raise
            log(f"[report] report.json of the failed run could not be written: {e}")
        return report

    try:
        # ---- 1. SfM ------------------------------------------------------------------
        sfm_opts = {"photos": file_fingerprint(inputs), "calib": file_fingerprint(cfg.calib) if cfg.calib else None,
                    "max_image_size": q["sfm_max_image_size"], "seed": cfg.seed}
        tree = _vocab_tree()
        if tree is not None:  # a tree fetched since the last run changes the retrieval matching
            sfm_opts["vocab_tree"] = file_fingerprint(tree)
        report["sfm"] = runner.run("sfm", sfm_opts, lambda ctx: _stage_sfm(inputs, out, cfg, q, progress, cluster),
                                   outputs=[out / "sfm" / "sparse" / "0"], index="1/6")
        # ---- 2. orient ---------------------------------------------------------------
        report["orient"] = runner.run("orient", {"orient": cfg.orient}, lambda ctx: _stage_orient(out, cfg),
                                      outputs=[out / "scene" / "sparse" / "0"], index="2/6")
        # ---- 3. train ------------------------------------------------------------------
        steps = cfg.steps or q["steps"][device]
        budget = cfg.max_seconds or q["max_seconds"][device]
        train_opts = {"method": cfg.method, "steps": steps, "max_seconds": budget, "device": device,
                      "long_side": q["train_long_side"][device], "seed": cfg.seed}
        if cfg.chunks is not None:
            train_opts["chunks"] = cfg.chunks
        report["train"] = runner.run(
            "train", train_opts, lambda ctx: _stage_train(out, cfg, device, steps, budget,
                                                          q["train_long_side"][device], ctx, progress,
                                                          cluster),
            outputs=[out / cfg.method / "report.json"], index="3/6")
        # ---- 4. export -----------------------------------------------------------------
        report["export"] = runner.run("export", {"mesh_faces": q["mesh_faces"]},
                                      lambda ctx: _stage_export(out, cfg, q, progress),
                                      outputs=[out / "export"], index="4/6")
        # ---- 5. labels -----------------------------------------------------------------
        if cfg.labels:
            report["labels"] = runner.run("labels", {"backend": cfg.labels, "options": cfg.labels_options},
                                          lambda ctx: _stage_labels(out, cfg), outputs=[out / "labels"],
                                          index="5/6")
        else:
            runner.skip("labels", "no --labels backend given")
        # ---- 6. report -----------------------------------------------------------------
        finish("ok")
        runner.run("report", {"t": time.time()}, lambda ctx: _stage_report(out, report),
                   outputs=[out / "report.html"], index="6/6")
        return finish("ok")
    except StageFailed as e:
        finish("failed", str(e))
        try:
            _stage_report(out, report)
        except Exception as e2:  # noqa: BLE001 - the report of a failed run is best effort
            log(f"[report] report.html of the failed run could not be written: {type(e2).__name__}: {e2}")
        cause = e.__cause__
        kept = [n for n, r in runner.records.items() if r.status == "done"]
        kept_text = (f"the finished stages ({', '.join(kept)}) are kept in {out}" if kept
                     else f"earlier stages' outputs are kept in {out}")
        full = disk_full_cause(cause)
        if full is not None:
            err = cause if isinstance(cause, DiskFullError) else DiskFullError(full.filename or out, full)
            what = {errno.EFBIG: "a file-size limit was reached", errno.EDQUOT: "the disk quota is used up"}.get(
                full.errno, "the disk is full")
            raise DiskFullError(err.path, full, detail=(
                f"{e.stage}: {what}: {err}; {kept_text}; free some space (or use another -o) "
                "and run the same command again to continue from there")) from cause
        if isinstance(cause, (ReconError, ValueError, OSError, TypeError)):
            free = free_bytes(out)
            hint = (f"; only {free // 1024} KB are free on the disk holding {out}: a full disk is the likely cause"
                    if free is not None and free < LOW_SPACE_BYTES else "")
            raise ReconError(f"{e.stage}: {cause} ({kept_text}{hint})") from cause
        raise


def _vocab_tree():
    from recon.sfm.matching import find_vocab_tree

    return find_vocab_tree()


# ---- stages ------------------------------------------------------------------------------
def _stage_sfm(inputs: Path, out: Path, cfg: ReconstructConfig, q: dict, progress: bool, cluster=None) -> dict:
    from recon.sfm.pipeline import SfMConfig, run_sfm

    sfm_cfg = SfMConfig(max_image_size=q["sfm_max_image_size"], seed=cfg.seed,
                        **({"calibration": str(cfg.calib)} if cfg.calib else {}))
    rep = run_sfm(inputs, out / "sfm", sfm_cfg, progress=progress, cluster=cluster)
    summary = {k: getattr(rep, k) for k in ("status", "message", "images_total", "images_registered",
                                            "points3D", "mean_reprojection_error_px", "mean_track_length",
                                            "mapper", "total_seconds")}
    summary["unregistered"] = rep.unregistered[:20]
    summary["matching"] = rep.matching
    # the strategy chosen by the set's size and kind, flat so the report's table shows it
    plan = rep.strategy or {}
    summary["matching_strategy"] = rep.matching.get("strategy", plan.get("matching"))
    if rep.matching.get("retrieval"):
        summary["matching_strategy"] += f" ({rep.matching['retrieval']})"
    summary["matching_reason"] = plan.get("matching_reason", "")
    summary["mapper_reason"] = plan.get("mapper_reason", "")
    if plan.get("notes"):
        summary["strategy_notes"] = "; ".join(plan["notes"])
    if rep.cluster:  # flat, so the HTML report's table shows it (the whole record: sfm/report.json)
        st = rep.cluster["stages"]
        summary["cluster"] = f"{rep.cluster['kind']} Dask cluster, {rep.cluster['workers']} workers"
        summary["cluster_stage_seconds"] = ", ".join(f"{k} {v['wall_s']:.1f}" for k, v in st.items())
        summary["cluster_task_seconds_sum"] = rep.cluster["task_seconds_sum"]
        summary["cluster_retries"] = sum(v["retries"] for v in st.values())
        summary["cluster_failures"] = sum(v["failures"] for v in st.values())
    if rep.status == "failed" or not (out / "sfm" / "sparse" / "0").is_dir():
        raise ReconError(f"structure from motion failed: {rep.message or 'no model'} "
                         f"(see {out / 'sfm' / 'report.json'})")
    if rep.images_registered < 3:
        raise ReconError(f"only {rep.images_registered} of {rep.images_total} photos could be placed: too few "
                         "overlapping photos (take more, with about 60 % overlap between neighbours)")
    return summary


def _stage_orient(out: Path, cfg: ReconstructConfig) -> dict:
    from calib import Sim3
    from recon.io import read_colmap, write_colmap
    from recon.io.files import atomic_write_text
    from recon.io.model import find_image_dir
    from recon.pipeline.orient import auto_orient

    rec = read_colmap(out / "sfm" / "sparse" / "0")
    oriented_from_sfm = auto_orient(rec) if cfg.orient else Sim3.identity()
    scene = out / "scene"
    shutil.rmtree(scene / "sparse", ignore_errors=True)
    write_colmap(rec.transformed(oriented_from_sfm), scene / "sparse" / "0")
    image_dir = find_image_dir(out / "sfm" / "sparse" / "0", dataset_dir=out / "sfm")
    if image_dir is None:
        raise ReconError(f"cannot find the photos of {out / 'sfm'} to train on")
    link = scene / "images"
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() else shutil.rmtree(link)
    link.symlink_to(Path(image_dir).resolve(), target_is_directory=True)
    doc = {"oriented_from_sfm": oriented_from_sfm.matrix().tolist(),
           "note": "X_scene = oriented_from_sfm @ X_sfm (homogeneous; z up, floor at z = 0)"}
    atomic_write_text(scene / "orientation.json", json.dumps(doc, indent=2) + "\n")
    return {"oriented_from_sfm": doc["oriented_from_sfm"], "images": str(image_dir)}


def _stage_train(out: Path, cfg: ReconstructConfig, device: str, steps: int, budget: float,
                 long_side: int, ctx, progress: bool, cluster=None) -> dict:
    from recon.io.colmap import read_cameras

    size = max(max(c.width, c.height) for c in read_cameras(out / "scene" / "sparse" / "0").values())
    scale = min(1.0, long_side / size)
    dst = out / cfg.method
    resume = ctx.resume and (dst / "checkpoint.pt").is_file()
    if not ctx.resume and dst.exists():
        shutil.rmtree(dst)  # options changed: an old checkpoint must not be continued
    if cfg.method == "splat":
        from render.splat import TrainConfig, train

        tcfg = TrainConfig.preset("cpu" if device == "cpu" else "default", steps=steps,
                                  resolution_scale=scale, device=device, max_seconds=budget, seed=cfg.seed,
                                  checkpoint_every=250 if device == "cpu" else 1000)
        if cfg.chunks is not None:  # finished chunks are reused by their done-markers
            from render.splat.chunks import ChunkOptions, train_chunked

            rep = train_chunked(out / "scene", dst, tcfg, ChunkOptions(chunks=cfg.chunks), cluster=cluster,
                                threads="auto").report
        else:
            rep = train(out / "scene", dst, tcfg, resume=resume, progress=progress, threads="auto").report
    else:
        from render.nerf import NerfConfig
        from render.nerf import train as train_nerf

        ncfg = NerfConfig.preset("cpu" if device == "cpu" else "default", steps=steps,
                                 resolution_scale=scale, device=device, max_seconds=budget, seed=cfg.seed,
                                 checkpoint_every=250 if device == "cpu" else 1000)
        rep = train_nerf(out / "scene", dst, ncfg, resume=resume, progress=progress,
                         threads="auto").report
    keys = ("psnr_test", "ssim_test", "lpips_test", "steps", "seconds", "num_gaussians", "device",
            "train_views", "test_views", "resolution")
    extra = {}
    if rep.get("chunks"):  # flat, for the HTML report's table (the whole record: OUT/splat/report.json)
        extra["chunks"] = len(rep["chunks"]["plan"]["chunks"])
        extra["chunk_own_cell_gaussians"] = rep["chunks"]["own_cell_gaussians"]
    if rep.get("cluster"):
        st = rep["cluster"]["stages"].get("chunks", {})
        extra["cluster"] = f"{rep['cluster']['kind']} Dask cluster, {rep['cluster']['workers']} workers"
        extra["cluster_task_seconds_sum"] = st.get("task_seconds_sum")
        extra["cluster_retries"], extra["cluster_failures"] = st.get("retries"), st.get("failures")
    return {"resumed_from_checkpoint": resume, "resolution_scale": scale,
            **{k: rep.get(k) for k in keys if k in rep}, **extra}


def _stage_export(out: Path, cfg: ReconstructConfig, q: dict, progress: bool) -> dict:
    from recon.export import ExportOptions, export_artifact
    from render.splat import render_depth_views

    dst = out / "export"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    jobs = [("points", out / "scene", ExportOptions(what="points", progress=progress)),
            ("mesh", out / cfg.method, ExportOptions(what="mesh", faces=q["mesh_faces"], progress=progress))]
    if cfg.method == "splat":
        jobs.append(("splat", out / "splat", ExportOptions(what="splat", min_opacity=0.005, progress=progress)))
    files, errors, results = {}, {}, {}
    for what, src, opts in jobs:
        try:
            r = export_artifact(src, dst / f"{what}.ply", opts, depth_renderer=render_depth_views)
        except (ReconError, ValueError, OSError) as e:
            if disk_full_cause(e) is not None:
                raise  # a full disk stops the stage: the next export would fail the same way
            errors[what] = str(e)
            continue
        files[what] = str(r.output)
        results[what] = {"vertices": r.vertices, "faces": r.faces, "method": r.method, "seconds": r.seconds}
    if not files:
        raise ReconError("export: nothing could be exported: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    return {"files": files, "errors": errors, **results}


def _stage_labels(out: Path, cfg: ReconstructConfig) -> dict:
    from recon.semantic import LabelSceneOptions, label_scene

    known = {"masks", "instances", "names", "void", "model", "score", "text", "min_agreement", "plain_vote"}
    extra = {k.replace("-", "_"): v for k, v in cfg.labels_options.items()}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ValueError(f"labels_options: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    result = label_scene(out / "scene", out / "labels", LabelSceneOptions(backend=cfg.labels, progress=False,
                                                                         **extra))
    doc = result.to_json()
    return {k: v for k, v in doc.items() if not isinstance(v, (dict, list))}


def _stage_report(out: Path, report: dict) -> dict:
    from recon.pipeline.report_html import write_report_html

    path = write_report_html(out, report)
    return {"html": str(path)}
