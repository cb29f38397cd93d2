"""The demo reconstruction on the built-in sample scene (``recon demo`` / ``make demo``).

Runs the whole front-to-back journey on a scene whose truth is known, so every stage reports
an error against ground truth rather than "it ran":

1. ``recon.synth``: render an orbit of a procedural room (table, chairs, vase, shelf) with known
   intrinsics, poses, depth and labels;
2. ``recon.sfm``: structure from motion on the images alone (pycolmap engine + our BA);
3. accuracy of the recovered cameras after a similarity alignment to the truth;
4. ``render.splat``: Gaussian splatting trained on the SfM output (our PyTorch rasterizer on a
   CPU, gsplat on CUDA), test-view PSNR/SSIM on held-out views;
5. ``summary.png`` (truth vs render, cameras) and ``report.json``.

This module is the one place in ``recon`` besides the CLI that uses ``render``; it imports it
inside its splatting stage (layering, docs/conventions.md).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from calib import Sim3, rotation_angle_deg

__all__ = ["DemoConfig", "DemoResult", "camera_accuracy", "run_demo"]


@dataclass
class DemoConfig:
    """Options of :func:`run_demo`.

    views:          number of orbit views rendered
    width, height:  rendered image size in pixels
    seed:           scene and trajectory seed
    train_steps:    Gaussian-splatting steps (0 skips training)
    train_scale:    image scale used for training (0.5 halves width and height)
    device:         "auto" (CUDA when available), "cpu" or "cuda"
    mesh:           export a mesh from the splats and measure its Chamfer distance to the truth
    labels:         lift the true class maps onto the SfM points and measure the 3D label accuracy
    """

    views: int = 30
    width: int = 320
    height: int = 240
    seed: int = 0
    train_steps: int = 2500
    train_scale: float = 0.5
    device: str = "auto"
    mesh: bool = True
    labels: bool = True

    def validate(self) -> None:
        if self.views < 8:
            raise ValueError(f"views: expected >= 8 (an orbit needs overlap), got {self.views}")
        if self.width < 64 or self.height < 48:
            raise ValueError(f"width, height: expected at least 64x48, got {self.width}x{self.height}")
        if self.train_steps < 0:
            raise ValueError(f"train_steps: expected >= 0, got {self.train_steps}")
        if not 0 < self.train_scale <= 1:
            raise ValueError(f"train_scale: expected a value in (0, 1], got {self.train_scale}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device: expected auto, cpu or cuda, got {self.device!r}")


@dataclass
class DemoResult:
    out_dir: Path
    report: dict = field(default_factory=dict)


def camera_accuracy(gt_cams_from_world: dict, est_cams_from_world: dict) -> dict:
    """Compare estimated ``cam_from_world`` poses with the truth after a similarity alignment.

    gt_cams_from_world, est_cams_from_world: image name -> ``calib.Rigid3`` cam_from_world. Only
    names present in both are used.
    Returns rotation errors (degrees), camera-centre errors as a fraction of the extent of the
    true camera centres, and the alignment scale.
    """
    names, c_gt, c_est, gt_from_est = _align_centres(gt_cams_from_world, est_cams_from_world)
    rot_err, centre_err = [], []
    for n, cg, ce in zip(names, c_gt, c_est):
        aligned = gt_from_est.transform_pose(est_cams_from_world[n])  # cam_from_gtworld (scaled frame)
        rot_err.append(float(rotation_angle_deg(aligned.rotation @ gt_cams_from_world[n].rotation.T)))
        centre_err.append(float(np.linalg.norm(gt_from_est.apply(ce) - cg)))
    extent = float(np.linalg.norm(c_gt.max(0) - c_gt.min(0)))
    return {
        "images_compared": len(names),
        "rotation_error_deg_mean": float(np.mean(rot_err)),
        "rotation_error_deg_max": float(np.max(rot_err)),
        "centre_error_rel_mean": float(np.mean(centre_err) / extent),
        "centre_error_rel_max": float(np.max(centre_err) / extent),
        "scene_extent_m": extent,
        "sim3_scale": float(gt_from_est.scale),
    }


def _align_centres(gt_cams_from_world: dict, est_cams_from_world: dict):
    """Common names, true and estimated camera centres [N, 3], and the Sim3 ``gt_from_est``."""
    names = sorted(set(gt_cams_from_world) & set(est_cams_from_world))
    if len(names) < 3:
        raise ValueError(f"est_cams_from_world: need at least 3 images in common with the truth, "
                         f"got {len(names)}")
    c_gt = np.array([gt_cams_from_world[n].dst_origin_in_src() for n in names])
    c_est = np.array([est_cams_from_world[n].dst_origin_in_src() for n in names])
    return names, c_gt, c_est, Sim3.align(c_est, c_gt)


def _stage(name: str, log):
    log(f"== {name}")
    return time.perf_counter()


def _guarded(report: dict, key: str, log, work) -> None:
    """``report[key] = work()``; a failure is recorded there (status, message) and logged, so the
    later stages still run."""
    try:
        report[key] = work()
    except Exception as e:  # noqa: BLE001 - recorded in the report; the later stages still run
        report[key] = {"status": "failed", "message": f"{type(e).__name__}: {e}"}
        log(f"   {key} failed: {e}")


def run_demo(out_dir, config: DemoConfig | None = None, *, progress: bool = True, log=None) -> DemoResult:
    """Run the demo into ``out_dir`` (created). Each stage writes its own sub-folder:
    ``scene/`` (ground truth), ``sfm/``, ``splat/``; then ``summary.png`` and ``report.json``.
    A failed stage is recorded in report.json (status, message) and the earlier outputs stay."""
    from recon.io import read_colmap
    from recon.io.report import write_report

    cfg = config or DemoConfig()
    cfg.validate()
    log = log or (lambda msg: print(f"[demo] {msg}", file=sys.stderr, flush=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"status": "running", "config": asdict(cfg), "stage_seconds": {}}
    seconds = report["stage_seconds"]

    def save():
        write_report(out / "report.json", report, indent=2)

    t0 = _stage(f"1/6 synthetic scene: {cfg.views} views, {cfg.width}x{cfg.height}", log)
    dataset, camera = _ground_truth(out, cfg)
    seconds["synth"] = round(time.perf_counter() - t0, 2)
    save()

    t0 = _stage("2/6 structure from motion (pycolmap SIFT + incremental mapper + our BA)", log)
    sfm_report = _structure_from_motion(out, cfg, progress)
    seconds["sfm"] = round(time.perf_counter() - t0, 2)
    report["sfm"] = {k: getattr(sfm_report, k) for k in (
        "status", "images_total", "images_registered", "unregistered", "points3D",
        "mean_reprojection_error_px", "mean_track_length")}
    if sfm_report.status == "failed" or not (out / "sfm" / "sparse" / "0").is_dir():
        report.update(status="failed", message=f"sfm failed: {sfm_report.message}")
        save()
        return DemoResult(out, report)

    rec = read_colmap(out / "sfm" / "sparse" / "0")
    gt = {v.name: v.cam_from_world for v in dataset.views}
    est = {im.name: im.cam_from_world for im in rec.registered_images}
    acc = report["sfm_accuracy"] = _sfm_accuracy(gt, est, rec, camera)
    log(f"   {sfm_report.images_registered}/{sfm_report.images_total} registered, rotation error "
        f"{acc['rotation_error_deg_mean']:.3f} deg mean, centre error "
        f"{100 * acc['centre_error_rel_mean']:.3f}% of extent, focal error {100 * acc['focal_error_rel']:.2f}%")
    save()

    if cfg.train_steps > 0:
        t0 = _stage(f"3/6 Gaussian splatting: {cfg.train_steps} steps at scale {cfg.train_scale}", log)
        report["splat"] = _gaussian_splatting(out, cfg, progress)
        seconds["splat"] = round(time.perf_counter() - t0, 2)
        save()

    if cfg.train_steps > 0 and cfg.mesh:
        t0 = _stage("4/6 mesh: TSDF of depth rendered from the splats (recon export), Chamfer vs truth", log)
        _guarded(report, "mesh", log, lambda: _mesh_accuracy(out, dataset, gt, est, progress))
        if "faces" in report["mesh"]:
            m = report["mesh"]
            log(f"   {m['faces']} faces, Chamfer {100 * m['chamfer_rel']:.3f}% of the scene diagonal "
                f"({1000 * m['chamfer_m']:.1f} mm)")
        seconds["mesh"] = round(time.perf_counter() - t0, 2)
        save()

    if cfg.labels:
        t0 = _stage("5/6 labels: the true 2D class maps lifted onto the SfM points (recon label), accuracy", log)
        _guarded(report, "labels", log, lambda: _label_accuracy(out, rec))
        if "class_accuracy" in report["labels"]:
            lab = report["labels"]
            log(f"   {100 * lab['class_accuracy']:.2f}% of labelled points right, {100 * lab['labelled_fraction']:.1f}% "
                f"of seen points labelled, instances {100 * lab['instance_accuracy']:.1f}% right")
        seconds["labels"] = round(time.perf_counter() - t0, 2)
        save()

    _stage("6/6 summary picture", log)
    try:
        _summary_picture(out, dataset, rec, est, gt)
        report["summary_png"] = str(out / "summary.png")
    except Exception as e:  # noqa: BLE001 - a picture that cannot be drawn is recorded, not fatal
        report["summary_png"] = None
        report["summary_error"] = f"{type(e).__name__}: {e}"
    report["status"] = "ok" if sfm_report.status == "ok" else sfm_report.status
    save()
    return DemoResult(out, report)


def _ground_truth(out: Path, cfg: DemoConfig):
    """Stage 1: the room, its camera and an orbit of ``cfg.views`` rendered into ``out/scene``."""
    from recon import synth

    scene = synth.make_scene(seed=cfg.seed)
    camera = synth.make_camera("PINHOLE", cfg.width, cfg.height, fov_deg=60)
    cams_from_world = synth.orbit(cfg.views, radius=3.2)
    return synth.write_dataset(out / "scene", scene, camera, cams_from_world, seed=cfg.seed), camera


def _structure_from_motion(out: Path, cfg: DemoConfig, progress: bool):
    """Stage 2: recon sfm on the images alone. The renders have no lens distortion, so the
    pinhole model is the right one to estimate (and the splat trainer takes pinhole cameras)."""
    from recon.sfm.pipeline import SfMConfig, run_sfm

    return run_sfm(out / "scene" / "images", out / "sfm",
                   SfMConfig(camera_model="SIMPLE_PINHOLE", camera_mode="single", seed=cfg.seed), progress=progress)


def _sfm_accuracy(gt: dict, est: dict, rec, camera) -> dict:
    """Stage 3: the recovered cameras against the truth after a similarity alignment, and the
    focal length of the one shared camera."""
    acc = camera_accuracy(gt, est)
    cam_est = next(iter(rec.cameras.values()))
    acc["focal_px_true"] = float(camera.focal[0])
    acc["focal_px_estimated"] = float(cam_est.focal[0])
    acc["focal_error_rel"] = float(abs(cam_est.focal[0] - camera.focal[0]) / camera.focal[0])
    return acc


def _gaussian_splatting(out: Path, cfg: DemoConfig, progress: bool) -> dict:
    """Stage 4: Gaussian splatting on the SfM output (render is imported here only, layering)."""
    from render.splat import TrainConfig, train

    tcfg = TrainConfig.preset("cpu", steps=cfg.train_steps, resolution_scale=cfg.train_scale, device=cfg.device)
    result = train(out / "sfm", out / "splat", tcfg, progress=progress, threads="auto")
    return {k: result.report.get(k) for k in (
        "psnr_test", "ssim_test", "lpips_test", "steps", "seconds", "num_gaussians", "device", "threads")}


def _mesh_accuracy(out: Path, dataset, gt: dict, est: dict, progress: bool) -> dict:
    """recon.export.export_artifact(OUT/splat -> OUT/export/mesh.ply), then the symmetric Chamfer distance between
    the mesh (moved into the true frame by the camera-centre similarity) and the true visible
    surface (every pixel of the true depth maps, back-projected)."""
    from recon.export import (
        ExportOptions,
        backproject,
        chamfer_distance,
        export_artifact,
        load_depth_views,
        read_mesh,
        sample_surface,
    )
    from render.splat import render_depth_views

    mesh_path = out / "export" / "mesh.ply"
    export_artifact(out / "splat", mesh_path, ExportOptions(what="mesh", progress=progress),
                    depth_renderer=render_depth_views)
    mesh = read_mesh(mesh_path)
    _, _, _, gt_from_est = _align_centres(gt, est)
    pts = gt_from_est.apply(sample_surface(mesh, 200_000))
    truth = np.concatenate([backproject(v)[0] for v in load_depth_views(dataset.root)])
    c = chamfer_distance(pts, truth)
    return {"path": str(mesh_path), "vertices": len(mesh.vertices), "faces": len(mesh.faces),
            "chamfer_m": float(c.mean), "chamfer_rel": float(c.relative),
            "note": "symmetric mean Chamfer to the back-projected true depth, relative to the truth's "
                    "bounding-box diagonal, after the camera-centre Sim3"}


def _label_accuracy(out: Path, rec) -> dict:
    """recon.semantic.label_scene(OUT/sfm, backend gt): the lifting, judged by projecting the labelled points
    into the true views (recon.semantic.evaluate)."""
    from recon.io.ply import read_ply
    from recon.semantic import LabelSceneOptions, label_scene
    from recon.semantic.evaluate import score_labels, true_point_labels
    from recon.synth import load_dataset

    result = label_scene(out / "sfm", out / "labels", LabelSceneOptions(backend="gt", progress=False))
    code = 0 if result.labelled_anything else 1  # `recon label`'s exit status
    cloud = read_ply(out / "labels" / "labels.ply")
    attrs = cloud.attributes
    ds = load_dataset(out / "scene")
    true_cls, true_ins = true_point_labels(cloud.xyz, rec, ds)
    s = score_labels(attrs["class_id"], true_cls,  # every SfM point is seen by views that all have labels
                     pred_instance=attrs["instance_id"], true_instance=true_ins)
    return {"exit_status": code, "points": len(cloud.xyz), "class_accuracy": s.class_accuracy,
            "labelled_fraction": s.labelled_fraction, "instance_accuracy": s.instance_accuracy,
            "judged": s.judged, "labelled": s.labelled,
            "note": "labels lifted from the scene's true 2D class/instance maps: this measures SfM + lifting, "
                    "not a 2D segmenter"}


def _summary_picture(out: Path, dataset, rec, est: dict, gt: dict) -> None:
    """summary.png: a held-out test view (truth | splat render) and a top view of the cameras."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.io import read_image

    renders = sorted((out / "splat" / "renders" / "test").glob("*.png")) if (out / "splat").is_dir() else []
    ncols = 3 if renders else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 4.2), squeeze=False)
    axes = axes[0]
    if renders:
        render_path = renders[0]
        stem = render_path.stem.split("_", 1)[-1]  # the trainer names renders INDEX_STEM.png
        matches = sorted((dataset.root / "images").glob(f"{stem}.*"))
        if not matches:
            raise FileNotFoundError(f"no ground-truth image for render {render_path.name}")
        truth_path = matches[0]
        axes[0].imshow(read_image(truth_path))
        axes[0].set_title(f"ground truth ({truth_path.name}, held out)")
        axes[1].imshow(read_image(render_path))
        rep = json.loads((out / "splat" / "report.json").read_text())
        axes[1].set_title(f"Gaussian splatting render, test PSNR {rep.get('psnr_test', float('nan')):.2f} dB")
        for a in axes[:2]:
            a.axis("off")
    ax = axes[-1]
    xyz = rec.points_xyz()
    _, c_gt, c_est, gt_from_est = _align_centres(gt, est)
    if len(xyz):
        p = gt_from_est.apply(xyz)
        sel = np.random.default_rng(0).permutation(len(p))[:4000]
        ax.scatter(p[sel, 0], p[sel, 1], s=0.5, c=rec.points_rgb()[sel] / 255.0)
    ax.plot(c_gt[:, 0], c_gt[:, 1], "o", mfc="none", mec="k", label="true cameras")
    ca = gt_from_est.apply(c_est)
    ax.plot(ca[:, 0], ca[:, 1], "x", c="tab:red", label="SfM cameras (aligned)")
    ax.set_aspect("equal")
    ax.set_title(f"top view: {len(est)}/{len(gt)} cameras registered, {len(xyz)} points")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "summary.png", dpi=110)
    plt.close(fig)
