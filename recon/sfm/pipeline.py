"""``recon sfm``: photos or a video in; intrinsics, poses and a sparse point cloud out.

Stages (each timed and reported; everything is written to disk as it is produced, so a failure
in a later stage keeps the earlier results):

1. inputs      images found and checked (corrupt files, exact duplicates rejected with the reason)
               or video frames extracted (frame-rate thinning, blur rejection)
2. features    pycolmap SIFT at a right-sized resolution (``max_image_size``), EXIF focal prior
               (pycolmap reads EXIF), or a known calibration (OpenCV YAML) held fixed
3. matching    automatic strategy (recon.sfm.matching): exhaustive / sequential + loop closure /
               spatial (GPS) / retrieval, never the vocabulary tree
4. mapping     pycolmap incremental mapper or GLOMAP global mapper, run in a child process so a
               C++ abort cannot take the pipeline (and the user's work) down
5. refine      retriangulation with the database matches (pycolmap.triangulate_points) and a
               final bundle adjustment (ours, or pycolmap's Ceres)
6. outputs     sparse/0 (COLMAP binary; further disconnected models in sparse/1, ...),
               transforms.json, points.ply, report.json, optionally undistorted images
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recon.sfm.inputs import (
    VIDEO_EXTENSIONS,
    ImageSet,
    collect_images,
    extract_video_frames,
    read_opencv_calibration,
)
from recon.sfm.matching import choose_strategy, find_vocab_tree

__all__ = ["SfMConfig", "SfMReport", "run_sfm"]

CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE",
                 "FULL_OPENCV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")


@dataclass
class SfMConfig:
    """Options of :func:`run_sfm`.

    camera_model:        COLMAP model for estimated cameras (ignored with ``calibration``)
    camera_mode:         "auto" (one camera per distinct size/EXIF camera), "single", "per_image"
    calibration:         OpenCV YAML (K, D, image size) from `recon calibrate`: intrinsics fixed
    max_image_size:      feature extraction resolution cap (long side, pixels); 0 = full size
    max_num_features:    SIFT features per image (4096: matching cost grows with its square;
                         enough for 1600-pixel images; 2048 was measured too few on a 640x480
                         walk-through: 0.12 deg rotation error instead of 0.03)
    first_octave:        SIFT's first octave: -1 doubles the image first (COLMAP's default: many
                         small-scale features, 3-4x the extraction time), 0 does not; None = auto:
                         0 when SIFT runs on images >= ``upsample_below`` px (long side), else -1
    upsample_below:      see ``first_octave``
    matching:            "auto", "exhaustive", "sequential", "spatial", "retrieval"
    exhaustive_max_images: auto uses exhaustive matching up to this many images
    ordered:             the images are a sequence (video frames): None = auto (video input, or
                         more than exhaustive_max_images numbered names such as frame_0001.jpg)
    sequential_overlap:  successors matched per frame in sequential mode
    loop_closure:        add retrieval pairs to sequential matching (loop closure)
    retrieval_k:         neighbours per image for retrieval / loop closure pairs
    retrieval:           retrieval matching by "vocabtree" (COLMAP's, needs its file), "vlad" (ours,
                         no download) or "auto" (vocabtree when its file is found, else vlad)
    vocab_tree:          COLMAP vocabulary-tree file (None: $RECON_VOCAB_TREE or recon's cache)
    mapper:              "auto" (by image count, recon.sfm.matching.choose_strategy), "incremental"
                         (COLMAP), "global" (GLOMAP) or "hierarchical" (clusters, merged)
    incremental_max_images: auto uses the incremental mapper up to this many images, then global
    global_max_images:   ... and the hierarchical mapper past this many
    leaf_max_images:     hierarchical mapper: images per cluster
    global_ba_ratio:     the incremental mapper runs a global BA each time the model has grown
                         by this factor in images or points (COLMAP: 1.1). 1.3: mapping 22-32 %
                         faster at the same accuracy (orbit 30, walk 60 measured); the final BA
                         below refines the whole model anyway
    retriangulate:       retriangulate with all database matches after mapping
    final_ba:            "ours" (recon.ba), "colmap" (pycolmap Ceres) or "none"
    ba_loss:             loss of the final BA (Huber at 1 px by default, robust to stray matches)
    undistort:           also write undistorted images + PINHOLE model to OUT/undistorted
    video_fps:           target frame rate extracted from a video
    video_max_frames:    cap on extracted frames (None: no cap)
    blur_ratio:          reject frames sharper than less than this times the median sharpness
    isolate_mapper:      run the mapper in a child process (a C++ abort cannot lose work)
    num_threads:         threads for pycolmap (-1 = all)
    seed:                random seed for pycolmap and retrieval
    """

    camera_model: str = "SIMPLE_RADIAL"
    camera_mode: str = "auto"
    calibration: str | None = None
    max_image_size: int = 1600
    max_num_features: int = 4096
    first_octave: int | None = None
    upsample_below: int = 1000
    matching: str = "auto"
    exhaustive_max_images: int = 30
    ordered: bool | None = None
    sequential_overlap: int = 10
    loop_closure: bool = True
    retrieval_k: int = 10
    retrieval: str = "auto"
    vocab_tree: str | None = None
    mapper: str = "auto"
    incremental_max_images: int = 300
    global_max_images: int = 2000
    leaf_max_images: int = 500
    global_ba_ratio: float = 1.3
    retriangulate: bool = True
    final_ba: str = "ours"
    ba_loss: str = "huber"
    undistort: bool = False
    video_fps: float = 2.0
    video_max_frames: int | None = None
    blur_ratio: float = 0.35
    isolate_mapper: bool = True
    num_threads: int = -1
    seed: int = 0

    def __post_init__(self):
        if self.camera_model not in CAMERA_MODELS:
            raise ValueError(f"camera_model: expected one of {CAMERA_MODELS}, got {self.camera_model!r}")
        checks = {"camera_mode": ("auto", "single", "per_image"),
                  "matching": ("auto", "exhaustive", "sequential", "spatial", "retrieval"),
                  "mapper": ("auto", "incremental", "global", "hierarchical"),
                  "retrieval": ("auto", "vocabtree", "vlad"), "final_ba": ("ours", "colmap", "none")}
        for k, allowed in checks.items():
            if getattr(self, k) not in allowed:
                raise ValueError(f"{k}: expected one of {allowed}, got {getattr(self, k)!r}")
        if self.max_num_features < 1:
            raise ValueError(f"max_num_features: expected >= 1, got {self.max_num_features}")
        if not self.global_ba_ratio > 1.0:
            raise ValueError(f"global_ba_ratio: expected > 1, got {self.global_ba_ratio}")
        if self.first_octave is not None and self.first_octave < -1:
            raise ValueError(f"first_octave: expected None or >= -1, got {self.first_octave}")
        if self.max_image_size < 0:
            raise ValueError(f"max_image_size: expected >= 0, got {self.max_image_size}")


@dataclass
class SfMReport:
    """What ``report.json`` holds (``to_json``). Camera parameters in our pixel convention."""

    status: str = "ok"  # "ok" | "partial" | "failed"
    message: str = ""
    input: str = ""
    images_total: int = 0
    images_registered: int = 0
    unregistered: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # image name -> why it is not in sparse/0
    models: list[dict] = field(default_factory=list)
    points3D: int = 0
    observations: int = 0
    mean_reprojection_error_px: float | None = None
    mean_track_length: float | None = None
    cameras: list[dict] = field(default_factory=list)
    matching: dict = field(default_factory=dict)
    focal_priors: dict = field(default_factory=dict)
    mapper: str = ""
    strategy: dict = field(default_factory=dict)  # recon.sfm.matching.Strategy: choices and reasons
    final_ba: dict = field(default_factory=dict)
    video: dict | None = None
    cluster: dict | None = None  # recon.cluster.Cluster.facts() with --workers / --cluster, else None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    config: dict = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


class _Stages:
    """Prints 'stage ... done (s)' lines to stderr and records the seconds per stage."""

    def __init__(self, report: SfMReport, out: Path, progress: bool):
        self.report, self.out, self.progress = report, out, progress
        self.t_start = time.perf_counter()

    def run(self, name: str, detail: str = ""):
        stages = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()
                if stages.progress:
                    print(f"[sfm] {name}{': ' + detail if detail else ''} ...", file=sys.stderr, flush=True)
                return self

            def __exit__(self, et, ev, tb):
                dt = time.perf_counter() - self.t0
                stages.report.stage_seconds[name] = round(stages.report.stage_seconds.get(name, 0.0) + dt, 3)
                stages.report.total_seconds = round(time.perf_counter() - stages.t_start, 3)
                if et is not None and not issubclass(et, KeyboardInterrupt):
                    stages.report.status = "failed"
                    stages.report.message = f"stage {name!r} failed: {ev}"
                if stages.progress:
                    state = "failed" if et else "done"
                    print(f"[sfm] {name} {state} in {dt:.1f} s (elapsed {stages.report.total_seconds:.1f} s)",
                          file=sys.stderr, flush=True)
                stages.report.write(stages.out / "report.json")  # keep the report current
                return False

        return _Ctx()


# =========================================================================================
# pycolmap option builders
# =========================================================================================

def _colmap_params(camera) -> str:
    """calib.Camera -> COLMAP parameter string (principal point in COLMAP's corner convention)."""
    return ",".join(f"{v:.17g}" for v in camera.corner_params())


def _sift_size(config: SfMConfig, images) -> tuple[int, int]:
    """(max_num_features, first_octave) for these images (see SfMConfig): right-sized to the
    resolution SIFT works at (the smallest image's long side after ``max_image_size``)."""
    longest = [max(wh) for wh in images.sizes.values()] or [0]
    working = min(min(n, config.max_image_size) if config.max_image_size else n for n in longest)
    large = working >= config.upsample_below
    octave = config.first_octave if config.first_octave is not None else (0 if large else -1)
    return int(config.max_num_features), int(octave)


def _camera_mode(pycolmap, config: SfMConfig, images: ImageSet):
    sizes = set(images.sizes.values())
    if config.camera_mode == "per_image":
        return pycolmap.CameraMode.PER_IMAGE, None
    if config.camera_mode == "single":
        if len(sizes) > 1:
            return pycolmap.CameraMode.AUTO, (f"--camera-mode single ignored: the images have {len(sizes)} "
                                              f"different sizes {sorted(sizes)[:4]}; one camera per size used")
        return pycolmap.CameraMode.SINGLE, None
    # auto: one camera when every image has the same size (the usual single-camera capture);
    # otherwise COLMAP's AUTO groups images by size and EXIF camera.
    return (pycolmap.CameraMode.SINGLE if len(sizes) == 1 else pycolmap.CameraMode.AUTO), None


# =========================================================================================
# The pipeline
# =========================================================================================

def run_sfm(inputs, out_dir, config: SfMConfig | None = None, *, progress: bool = True,
            cluster=None) -> SfMReport:
    """Run the whole pipeline; returns the report (also written to ``out_dir/report.json``).

    ``cluster``: a :class:`recon.cluster.Cluster` (``recon sfm --workers N / --cluster ADDRESS``):
    feature extraction, matching and mapping then run as Dask tasks (recon.cluster.sfm), with
    their task folders under ``out_dir/tasks`` reused by a re-run; None: all in this process.

    ``inputs``: a folder of images or a video file. Raises ValueError for unusable arguments;
    problems with the data (too few images, no overlap, failed mapping) are reported in the
    report's ``status``/``message``/``reasons`` with partial results kept on disk.
    """
    import pycolmap

    config = config or SfMConfig()
    inputs, out = Path(inputs), Path(out_dir)
    if not inputs.exists():
        raise ValueError(f"inputs: {inputs} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    report = SfMReport(input=str(inputs), mapper=config.mapper, config=asdict(config))
    st = _Stages(report, out, progress)
    if cluster is not None:
        cluster.new_run()
        report.cluster = cluster.facts()
    pycolmap.logging.minloglevel = 2 if not os.environ.get("RECON_SFM_VERBOSE") else 0

    # ---- 1. inputs --------------------------------------------------------------------
    with st.run("inputs", str(inputs)):
        if inputs.is_file() and inputs.suffix.lower() in VIDEO_EXTENSIONS:
            images, fx = extract_video_frames(inputs, out / "images", target_fps=config.video_fps,
                                              max_frames=config.video_max_frames,
                                              blur_ratio=config.blur_ratio, progress=progress)
            report.video = asdict(fx)
        elif inputs.is_dir():
            images = collect_images(inputs, progress=progress)
        else:
            raise ValueError(f"inputs: {inputs} is neither a folder of images nor a video "
                             f"({', '.join(sorted(VIDEO_EXTENSIONS))})")
        report.images_total = images.total
        report.reasons.update(images.rejected)
        known = read_opencv_calibration(config.calibration) if config.calibration else None
    if len(images.names) < 2:
        return _fail(report, out, images, f"need at least 2 usable images, found {len(images.names)}"
                     + (f" ({len(images.rejected)} rejected: see reasons)" if images.rejected else ""))

    db_path = out / "database.db"
    if db_path.exists():
        db_path.unlink()  # a fresh run: stale features/matches would mix with new ones

    # ---- 2. features ------------------------------------------------------------------
    num_features, first_octave = _sift_size(config, images)
    with st.run("features", f"{len(images.names)} images, max_image_size {config.max_image_size or 'full'}, "
                            f"{num_features} features, first octave {first_octave}"):
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = config.camera_model
        mode, note = _camera_mode(pycolmap, config, images)
        if note:
            report.message = note
        if known is not None:
            sizes = set(images.sizes.values())
            if len(sizes) != 1:
                raise ValueError(f"calibration: one known camera given but the images have {len(sizes)} sizes")
            (w, h), = sizes
            cam = known
            if (cam.width, cam.height) != (w, h):
                if abs(cam.width / cam.height - w / h) > 1e-3:
                    raise ValueError(f"calibration: made for {cam.width}x{cam.height}, images are {w}x{h} "
                                     "(different aspect ratio)")
                cam = cam.resized(w, h)
            reader.camera_model = cam.model
            reader.camera_params = _colmap_params(cam)
            mode = pycolmap.CameraMode.SINGLE
        ext = pycolmap.FeatureExtractionOptions()
        ext.max_image_size = int(config.max_image_size) if config.max_image_size else -1
        ext.sift.max_num_features, ext.sift.first_octave = num_features, first_octave
        ext.num_threads = config.num_threads
        if cluster is not None:
            from recon.cluster import sfm as cluster_sfm

            report.matching["features"] = cluster_sfm.extract_features(
                cluster, db_path, images.image_dir, images.names, camera_mode=mode, reader=reader,
                extraction=ext, root=out / "tasks")
            report.cluster = cluster.facts()
        else:
            pycolmap.extract_features(str(db_path), str(images.image_dir), images.names, camera_mode=mode,
                                      reader_options=reader, extraction_options=ext)
        db = pycolmap.Database.open(str(db_path))
        db_images = {im.name: im for im in db.read_all_images()}
        no_feat = [n for n in images.names if n not in db_images or db.num_keypoints_for_image(db_images[n].image_id) == 0]
        for n in no_feat:
            report.reasons[n] = "no features extracted (unreadable by COLMAP, blank or textureless)"
        gps = any(p.has_position() and np.all(np.isfinite(p.position)) for p in db.read_all_pose_priors())
        if known is not None:  # mark the prior focal as trusted
            for c in db.read_all_cameras():
                c.has_prior_focal_length = True
                db.update_camera(c)
        else:
            report.focal_priors = _exif_focal_priors(db, images)
        db.close()

    # ---- 3. matching -------------------------------------------------------------------
    n = len(images.names)
    strategy = config.matching
    ordered = images.ordered if config.ordered is None else config.ordered
    if config.ordered is None and not ordered and n > config.exhaustive_max_images:
        ordered = _numbered(images.names)
    plan = choose_strategy(n, ordered=ordered, gps=gps, matching=strategy, mapper=config.mapper,
                           retrieval=config.retrieval, vocab_tree=find_vocab_tree(config.vocab_tree, n_images=n),
                           exhaustive_max_images=config.exhaustive_max_images,
                           incremental_max_images=config.incremental_max_images,
                           global_max_images=config.global_max_images,
                           sequential_overlap=config.sequential_overlap, leaf_max_images=config.leaf_max_images)
    strategy = plan.matching
    report.strategy = plan.to_json()
    report.mapper = plan.mapper
    with st.run("matching", f"{strategy} ({n} images): {plan.matching_reason}"):
        mo = pycolmap.FeatureMatchingOptions()
        mo.num_threads = config.num_threads
        report.matching = {"strategy": strategy, "reason": plan.matching_reason,
                           **({"features": report.matching["features"]} if "features" in report.matching else {})}
        vocab_done = False
        if strategy == "retrieval" and plan.retrieval == "vocabtree":
            err = _match_vocabtree(config, db_path, find_vocab_tree(config.vocab_tree, n_images=n), out)
            if err is None:
                vocab_done = True
                report.matching["retrieval"] = "vocabtree"
            else:
                note = f"vocabulary-tree matching failed ({err}): VLAD retrieval instead"
                report.strategy["notes"].append(note)
                report.message = (report.message + "; " if report.message else "") + note
        if vocab_done:
            pass
        elif strategy == "exhaustive" and cluster is not None:
            from recon.cluster import sfm as cluster_sfm

            every = [(images.names[i], images.names[j]) for i in range(n) for j in range(i + 1, n)]
            report.matching["blocks"] = cluster_sfm.match_pairs(cluster, db_path, every, root=out / "tasks",
                                                                seed=config.seed)
            report.matching["pairs"] = len(every)
            report.cluster = cluster.facts()
        elif strategy == "exhaustive":
            pycolmap.match_exhaustive(str(db_path), mo)
            report.matching["pairs"] = n * (n - 1) // 2
        elif strategy == "spatial":
            pycolmap.match_spatial(str(db_path), mo)
        else:
            pairs = _pairs(pycolmap, db_path, images, strategy, config)
            pair_file = out / "pairs.txt"
            pair_file.write_text("".join(f"{images.names[i]} {images.names[j]}\n" for i, j in sorted(pairs)))
            if cluster is not None:
                from recon.cluster import sfm as cluster_sfm

                report.matching["blocks"] = cluster_sfm.match_pairs(
                    cluster, db_path, [(images.names[i], images.names[j]) for i, j in pairs],
                    root=out / "tasks", seed=config.seed)
                report.cluster = cluster.facts()
            else:
                po = pycolmap.ImportedPairingOptions()
                po.match_list_path = str(pair_file)
                pycolmap.match_image_pairs(str(db_path), mo, po)
            report.matching["pairs"] = len(pairs)
            if strategy == "retrieval":
                report.matching["retrieval"] = "vlad"
        db = pycolmap.Database.open(str(db_path))
        report.matching["verified_pairs"] = int(db.num_verified_image_pairs())
        db.close()
    if report.matching["verified_pairs"] == 0:
        return _fail(report, out, images, "no image pair has enough geometrically verified matches "
                     "(no overlap between the images?)")

    # ---- 4. mapping --------------------------------------------------------------------
    models_dir = out / "models"
    shutil.rmtree(models_dir, ignore_errors=True)
    models_dir.mkdir()
    with st.run("mapping", f"{plan.mapper}: {plan.mapper_reason}"):
        if cluster is not None:
            err = _run_partitioned_mapper(cluster, config, db_path, images, models_dir, report,
                                          fix_intrinsics=known is not None)
        else:
            err = _run_mapper(config, plan.mapper, db_path, images, models_dir, fix_intrinsics=known is not None)
        recs = {}
        for d in sorted(models_dir.iterdir()):
            if d.is_dir() and (d / "images.bin").exists():
                recs[int(d.name)] = pycolmap.Reconstruction(str(d))
    if not recs:
        return _fail(report, out, images, "the mapper registered no model" + (f" ({err})" if err else "")
                     + ": the images may not overlap enough")
    if err:
        report.message = (report.message + "; " if report.message else "") + err
    order = sorted(recs, key=lambda k: (-recs[k].num_reg_images(), -recs[k].num_points3D()))
    recs = [recs[k] for k in order]
    best = recs[0]

    # ---- 5. refine ---------------------------------------------------------------------
    if config.retriangulate:
        with st.run("retriangulation"):
            tri_dir = out / "models" / "_retriangulated"
            tri_dir.mkdir(parents=True, exist_ok=True)
            opts = pycolmap.IncrementalPipelineOptions()
            opts.num_threads = config.num_threads
            try:
                best = pycolmap.triangulate_points(best, str(db_path), str(images.image_dir), str(tri_dir),
                                                   clear_points=False, options=opts, refine_intrinsics=False)
            except Exception as e:
                report.message += f"; retriangulation failed ({e}), mapper model kept"
    if config.final_ba != "none":
        with st.run("bundle adjustment", config.final_ba):
            report.final_ba = _final_ba(best, config, fix_intrinsics=known is not None)
            best = report.final_ba.pop("_reconstruction")

    # ---- 6. outputs --------------------------------------------------------------------
    with st.run("outputs"):
        _write_outputs(out, images, [best] + recs[1:], report, config)
    if config.undistort:
        with st.run("undistortion"):
            und = out / "undistorted"
            shutil.rmtree(und, ignore_errors=True)
            pycolmap.undistort_images(str(und), str(out / "sparse" / "0"), str(images.image_dir))
            report.outputs["undistorted"] = str(und)
    report.status = "ok" if report.images_registered == len(images.names) and not images.rejected else "partial"
    if report.status == "partial" and not report.message:
        report.message = (f"{report.images_registered} of {report.images_total} images registered; "
                          "see `reasons`")
    report.total_seconds = round(time.perf_counter() - st.t_start, 3)
    report.write(out / "report.json")
    return report


def _exif_focal_priors(db, images: ImageSet) -> dict:
    """Replace pycolmap's EXIF focal guess by recon.io.exif_focal_px (a larger sensor table)
    where it has one: the median over each camera's images, marked as a prior."""
    try:
        from recon.io import exif_focal_px
    except ImportError:
        return {}
    by_cam: dict[int, list[float]] = {}
    for im in db.read_all_images():
        try:
            f = exif_focal_px(images.image_dir / im.name)
        except Exception:
            f = None
        if f:
            by_cam.setdefault(im.camera_id, []).append(float(f))
    out = {}
    for cam in db.read_all_cameras():
        fs = by_cam.get(cam.camera_id)
        if not fs:
            out[cam.camera_id] = {"source": "pycolmap" if cam.has_prior_focal_length else "default (1.2 x max size)",
                                  "focal_px": float(cam.mean_focal_length())}
            continue
        f = float(np.median(fs))
        params = np.array(cam.params, dtype=float)
        for i in cam.focal_length_idxs():
            params[i] = f
        cam.params = params
        cam.has_prior_focal_length = True
        db.update_camera(cam)
        out[cam.camera_id] = {"source": "exif (recon.io.exif_focal_px)", "focal_px": f}
    return out


def _fail(report: SfMReport, out: Path, images: ImageSet, message: str) -> SfMReport:
    report.status = "failed"
    report.message = message
    report.unregistered = sorted(set(images.names) | set(images.rejected))
    for n in images.names:
        report.reasons.setdefault(n, message)
    report.write(out / "report.json")
    return report


def _numbered(names: list[str]) -> bool:
    """True when (sorted) names carry increasing frame numbers: frame_0001.jpg, IMG_1234.JPG."""
    import re

    nums = []
    for n in names:
        m = re.findall(r"(\d+)", Path(n).stem)
        if not m:
            return False
        nums.append(int(m[-1]))
    return len(nums) > 2 and all(b > a for a, b in zip(nums, nums[1:]))


def _pairs(pycolmap, db_path: Path, images: ImageSet, strategy: str, config: SfMConfig) -> set:
    from recon.sfm.matching import retrieval_pairs, sequential_pairs, vlad_descriptors

    n = len(images.names)
    pairs = set()
    if strategy == "sequential":
        pairs |= sequential_pairs(n, config.sequential_overlap)
    need_retrieval = strategy == "retrieval" or (strategy == "sequential" and config.loop_closure)
    if need_retrieval and n > 2:
        db = pycolmap.Database.open(str(db_path))
        by_name = {im.name: im.image_id for im in db.read_all_images()}
        desc = [np.asarray(db.read_descriptors(by_name[nm]).data) if nm in by_name else np.zeros((0, 128), np.uint8)
                for nm in images.names]
        db.close()
        vlad = vlad_descriptors(desc, seed=config.seed)
        k = config.retrieval_k if strategy == "retrieval" else max(3, config.retrieval_k // 2)
        mind = config.sequential_overlap + 1 if strategy == "sequential" else 0
        pairs |= retrieval_pairs(vlad, min(k, n - 1), min_index_distance=mind)
    return pairs


def _run_worker(job: dict, log_path: Path) -> str | None:
    """Run recon.sfm._worker on ``job`` in a child process; None, or why it failed."""
    from recon.sfm._worker import run_isolated

    return run_isolated(job, log_path)


def _run_mapper(config: SfMConfig, mapper: str, db_path: Path, images: ImageSet, models_dir: Path, *,
                fix_intrinsics: bool) -> str | None:
    job = {"mapper": mapper, "database": str(db_path), "image_dir": str(images.image_dir),
           "output": str(models_dir), "num_threads": config.num_threads, "seed": config.seed,
           "fix_intrinsics": fix_intrinsics, "min_model_size": 3, "global_ba_ratio": config.global_ba_ratio,
           "leaf_max_images": config.leaf_max_images}
    if not config.isolate_mapper:
        from recon.sfm._worker import main as worker_main

        worker_main([json.dumps(job)])
        return None
    err = _run_worker(job, models_dir / "mapper.log")
    return None if err is None else f"the {mapper} mapper crashed ({err}); models written before the crash kept"


def _run_partitioned_mapper(cluster, config: SfMConfig, db_path: Path, images: ImageSet, models_dir: Path,
                            report: SfMReport, *, fix_intrinsics: bool) -> str | None:
    """recon.cluster.sfm.partitioned_mapping into models_dir/0; None, or why it failed."""
    from recon.cluster import ClusterError
    from recon.cluster import sfm as cluster_sfm

    try:
        res = cluster_sfm.partitioned_mapping(
            cluster, db_path, images.image_dir, models_dir / "0", root=models_dir.parent / "tasks",
            leaf_max_images=config.leaf_max_images, seed=config.seed, fix_intrinsics=fix_intrinsics,
            global_ba_ratio=config.global_ba_ratio)
    except ClusterError:
        raise
    except (RuntimeError, ValueError) as e:
        return f"the partitioned mapper failed ({e})"
    finally:
        report.cluster = cluster.facts()
    report.mapper = f"partitioned ({res.leaves} leaves on the cluster)"
    report.cluster["mapping"] = res.to_json()
    return None


def _match_vocabtree(config: SfMConfig, db_path: Path, tree: Path, out: Path) -> str | None:
    """pycolmap's vocabulary-tree matching, always in a child process (pycolmap aborts the
    process on a tree file it cannot read); None, or why it failed."""
    job = {"task": "match_vocabtree", "database": str(db_path), "vocab_tree": str(tree),
           "num_neighbors": config.retrieval_k, "num_threads": config.num_threads}
    return _run_worker(job, out / "vocabtree.log")


def _final_ba(prec, config: SfMConfig, *, fix_intrinsics: bool) -> dict:
    import pycolmap

    from recon.sfm._pycolmap import from_pycolmap, to_pycolmap

    if config.final_ba == "colmap":
        opts = pycolmap.BundleAdjustmentOptions()
        opts.print_summary = False
        opts.ceres.loss_function_type = {"trivial": pycolmap.LossFunctionType.TRIVIAL,
                                         "huber": pycolmap.LossFunctionType.HUBER,
                                         "cauchy": pycolmap.LossFunctionType.CAUCHY}[config.ba_loss]
        if fix_intrinsics:
            opts.refine_focal_length = opts.refine_extra_params = False
        cfg = pycolmap.BundleAdjustmentConfig()
        for iid in prec.reg_image_ids():
            cfg.add_image(iid)
        cfg.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
        t0 = time.perf_counter()
        summary = pycolmap.create_default_bundle_adjuster(opts, cfg, prec).solve()
        cs = summary.ceres_summary
        prec.update_point_3d_errors() if hasattr(prec, "update_point_3d_errors") else None
        return {"engine": "colmap", "loss": config.ba_loss, "initial_cost": cs.initial_cost,
                "final_cost": cs.final_cost, "iterations": cs.num_successful_steps + cs.num_unsuccessful_steps,
                "seconds": round(time.perf_counter() - t0, 3), "_reconstruction": prec}
    from recon.ba import (
        BAOptions,
        bundle_adjust,
        problem_from_reconstruction,
        update_reconstruction,
    )

    rec = from_pycolmap(prec)
    problem, index = problem_from_reconstruction(rec, refine_focal=not fix_intrinsics,
                                                 refine_extra=not fix_intrinsics)
    # the mapper ended with a global BA: this is a polish, stopped at Ceres' default relative
    # function tolerance (1e-6) rather than crawling along the weak directions of the problem
    res = bundle_adjust(problem, BAOptions(loss=config.ba_loss, max_iterations=25,
                                           function_tolerance=1e-6))
    update_reconstruction(rec, res.problem, index)
    out = to_pycolmap(rec)
    # keep colours and the per-image metadata of the mapper's model
    for pid, p in prec.points3D.items():
        if out.exists_point3D(pid):
            out.point3D(pid).color = p.color
    return {"engine": "ours", "loss": config.ba_loss, "backend": res.backend,
            "initial_cost": res.initial_cost, "final_cost": res.final_cost, "iterations": res.iterations,
            "termination": res.termination, "seconds": round(res.time_s, 3), "_reconstruction": out}


def _write_outputs(out: Path, images: ImageSet, recs: list, report: SfMReport, config: SfMConfig) -> None:
    from recon.sfm._pycolmap import from_pycolmap
    from recon.sfm.export import write_points_ply, write_transforms_json

    sparse = out / "sparse"
    shutil.rmtree(sparse, ignore_errors=True)
    report.models = []
    for k, prec in enumerate(recs):
        d = sparse / str(k)
        d.mkdir(parents=True)
        prec.write_binary(str(d))
        names = sorted(prec.image(i).name for i in prec.reg_image_ids())
        report.models.append({"id": k, "path": str(d), "images_registered": len(names),
                              "points3D": int(prec.num_points3D()), "images": names})
    best = recs[0]
    rec = from_pycolmap(best)
    registered = {im.name for im in rec.registered_images}
    report.images_registered = len(registered)
    report.unregistered = sorted((set(images.names) | set(images.rejected)) - registered)
    for k, m in enumerate(report.models[1:], start=1):
        for nm in m["images"]:
            if nm not in registered:
                report.reasons[nm] = (f"registered only in disconnected model {k} (sparse/{k}): "
                                      "no overlap found with the main model")
    for nm in report.unregistered:
        report.reasons.setdefault(nm, "not registered: too few verified matches with the registered images")
    report.reasons = {k: v for k, v in sorted(report.reasons.items()) if k not in registered}
    report.points3D = int(best.num_points3D())
    report.observations = int(best.compute_num_observations())
    report.mean_reprojection_error_px = float(best.compute_mean_reprojection_error())
    report.mean_track_length = float(best.compute_mean_track_length())
    report.cameras = []
    for cid, cam in sorted(rec.cameras.items()):
        report.cameras.append({"camera_id": cid, "model": cam.model, "width": cam.width, "height": cam.height,
                               "params": dict(zip(cam.spec.param_names, map(float, cam.params))),
                               "focal_px": float(np.mean(cam.focal)),
                               "images": sum(1 for im in rec.registered_images if im.camera_id == cid)})
    write_transforms_json(rec, out / "transforms.json", image_dir=images.image_dir, out_dir=out)
    write_points_ply(rec, out / "points.ply")
    report.outputs.update({"sparse": str(sparse / "0"), "transforms": str(out / "transforms.json"),
                           "points": str(out / "points.ply"), "database": str(out / "database.db")})
