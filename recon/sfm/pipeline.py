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

import itertools
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from recon.sfm.inputs import (
    VIDEO_EXTENSIONS,
    FrameExtraction,
    ImageSet,
    collect_images,
    extract_video_frames,
)
from recon.sfm.matching import Strategy, choose_strategy, find_vocab_tree

__all__ = ["AttemptResult", "BAResult", "FeaturesResult", "InputsResult", "MappingResult", "MatchingResult",
           "Plausibility", "Recipe", "SfMConfig", "SfMReport", "check_plausibility", "choose_recipe",
           "colmap_recipe", "extract_features", "final_bundle_adjustment", "heterogeneous", "leftover_inliers",
           "load_inputs", "map_images", "match_features", "needs_defaults", "retriangulate", "run_sfm"]

CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE",
                 "FULL_OPENCV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")


@dataclass
class SfMConfig:
    """Options of :func:`run_sfm`.

    camera_model:        COLMAP model for estimated cameras (ignored with ``calibration``)
    camera_mode:         "auto" (one camera for a homogeneous set, one per image otherwise:
                         :func:`choose_recipe`), "single", "per_image"
    calibration:         OpenCV YAML (K, D, image size) from `recon calibrate`: intrinsics fixed
    max_image_size:      feature extraction resolution cap (long side, pixels); 0 = full size
    heterogeneous_image_size: SIFT's working long side on a heterogeneous set (several cameras or
                         sizes: internet photos), at most ``max_image_size``; 0 = ``max_image_size``.
                         640 px with COLMAP's 2x upsampling (a 1280 px pyramid base) registered
                         as many photos as 800 px on every heterogeneous set measured and as
                         pycolmap's defaults on het_sceaux and mixed (``bench/bench_sfm.py
                         --sets``), at 0.45-0.6x their extraction + matching time
    heterogeneous_min_images: a heterogeneous set of fewer images is extracted as COLMAP does
                         (``max_image_size``, 8192 features): with so few photos every match
                         counts, and on the 2-5-photo phototourism sets the 640 px attempt made
                         no model or lost a photo, so pycolmap's defaults re-ran after it
                         (1.5-1.8x their time); extracting as they do from the start costs ~1x
    max_num_features:    SIFT features per image; None = auto (:func:`choose_recipe`): 4096
                         (matching cost grows with its square; 2048 was measured too few on a
                         640x480 walk-through)
    first_octave:        SIFT's first octave: -1 doubles the image first (COLMAP's default: many
                         small-scale features, 3-4x the extraction time), 0 does not; None = auto:
                         0 when SIFT's working size is >= ``upsample_below`` px (long side of the
                         smallest image; of the median one on a heterogeneous set), else -1
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
    fallback:            re-run when the first attempt is not good enough (:func:`needs_defaults`):
                         first the same features mapped with the distortion fixed (implausible
                         intrinsics only: cheap), then pycolmap's defaults (then those with the
                         distortion fixed); the best plausible attempt wins
    fallback_max_images: on sets up to this size, pycolmap's defaults also re-run when an image
                         left out of the main model has verified matches to it (``fallback_min_inliers``)
    fallback_min_inliers: verified inlier matches (summed over its pairs with the main model's
                         images) that make a left-out image "connected": COLMAP's own
                         ``min_num_inliers`` (15) for a verified pair. A photo of another landmark
                         has none, so a mixed set does not re-run for it
    focal_range:         plausible focal lengths, x the image's larger side
    max_abs_k1:          plausible |k1| of the radial models
    min_registered_share: a main model with fewer of the usable images is implausible
    num_threads:         threads for pycolmap (-1 = all)
    seed:                random seed for pycolmap and retrieval
    """

    camera_model: str = "SIMPLE_RADIAL"
    camera_mode: str = "auto"
    calibration: str | None = None
    max_image_size: int = 1600
    heterogeneous_image_size: int = 640
    heterogeneous_min_images: int = 6
    max_num_features: int | None = None
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
    fallback: bool = True
    fallback_max_images: int = 30
    fallback_min_inliers: int = 15
    focal_range: tuple[float, float] = (0.3, 5.0)
    max_abs_k1: float = 1.0
    min_registered_share: float = 0.5
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
        if self.max_num_features is not None and self.max_num_features < 1:
            raise ValueError(f"max_num_features: expected >= 1, got {self.max_num_features}")
        if not self.global_ba_ratio > 1.0:
            raise ValueError(f"global_ba_ratio: expected > 1, got {self.global_ba_ratio}")
        if self.first_octave is not None and self.first_octave < -1:
            raise ValueError(f"first_octave: expected None or >= -1, got {self.first_octave}")
        if self.max_image_size < 0:
            raise ValueError(f"max_image_size: expected >= 0, got {self.max_image_size}")
        if self.heterogeneous_image_size < 0:
            raise ValueError(f"heterogeneous_image_size: expected >= 0, got {self.heterogeneous_image_size}")
        if self.heterogeneous_min_images < 0:
            raise ValueError(f"heterogeneous_min_images: expected >= 0, got {self.heterogeneous_min_images}")
        if self.fallback_min_inliers < 1:
            raise ValueError(f"fallback_min_inliers: expected >= 1, got {self.fallback_min_inliers}")
        lo, hi = self.focal_range
        if not 0 < lo < hi:
            raise ValueError(f"focal_range: expected 0 < low < high, got {self.focal_range}")
        if not 0 <= self.min_registered_share <= 1:
            raise ValueError(f"min_registered_share: expected in [0, 1], got {self.min_registered_share}")


@dataclass
class SfMReport:
    """What ``report.json`` holds (``to_json``). Camera parameters in our pixel convention."""

    status: str = "ok"  # "ok" | "partial" | "failed" (exit status 0 / 0 / 1 of `recon sfm`)
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
    recipe: dict = field(default_factory=dict)  # Recipe of the attempt kept
    attempts: list[dict] = field(default_factory=list)  # every attempt: recipe, registered, problems
    plausibility: dict = field(default_factory=dict)  # Plausibility of the model kept
    colmap_defaults: dict = field(default_factory=dict)  # what pycolmap's defaults registered, if run
    video: dict | None = None
    cluster: dict | None = None  # recon.cluster.Cluster.facts() with --workers / --cluster, else None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    config: dict = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        from recon.io.report import write_report

        write_report(path, asdict(self), indent=2)


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
# Recipes: the feature and mapper settings of one attempt, chosen by the image set
# =========================================================================================

COLMAP_FEATURES = 8192  # pycolmap's SiftExtractionOptions.max_num_features
COLMAP_MAX_IMAGE_SIZE = 3200  # pycolmap's FeatureExtractionOptions.max_image_size
COLMAP_GLOBAL_BA_RATIO = 1.1  # pycolmap's IncrementalPipelineOptions.ba_global_frames_ratio


@dataclass(frozen=True)
class Recipe:
    """Feature and mapper settings of one SfM attempt (:func:`choose_recipe`, :func:`colmap_recipe`).

    name:             "fast" (recon's right-sized settings), "colmap" (pycolmap's defaults),
                      "fast-fixed-distortion" (the fast features, distortion held at 0 while
                      mapping) or "fixed-distortion" (COLMAP's features, distortion held at 0)
    max_image_size:   SIFT's working long side (pixels, 0 = full size)
    num_features:     SIFT features per image
    first_octave:     -1 doubles the image first (COLMAP), 0 does not
    camera_mode:      "single" (one camera), "per_image", or "auto" (pycolmap's AUTO)
    global_ba_ratio:  the incremental mapper's global-BA growth ratio
    refine_extra_params: distortion refined by the mapper and the final BA
    reason:           why these settings (recorded in report.json ``recipe``)
    """

    name: str
    max_image_size: int
    num_features: int
    first_octave: int
    camera_mode: str
    global_ba_ratio: float
    refine_extra_params: bool = True
    reason: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def _exif_camera(path: Path) -> tuple | None:
    """(make, model, focal mm) from EXIF, or None when the file has no such tags."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            sub = exif.get_ifd(0x8769)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):  # unreadable EXIF: none
        return None
    ident = (str(exif.get(0x010F, "")).strip(), str(exif.get(0x0110, "")).strip(), str(sub.get(0x920A, "")))
    return ident if any(ident) else None


def heterogeneous(images: ImageSet) -> tuple[bool, str]:
    """Whether the images come from more than one camera: different sizes, or different EXIF
    cameras (make, model, focal length), or EXIF on some and not on others. Video frames and
    same-size images without EXIF (renders, one camera) count as one camera."""
    sizes = {images.sizes[n] for n in images.names}
    if len(sizes) > 1:
        return True, f"{len(sizes)} image sizes"
    if images.ordered:
        return False, "video frames: one camera"
    exif = {_exif_camera(images.image_dir / n) for n in images.names}
    if len(exif) > 1:
        return True, f"{len(exif)} EXIF cameras (make, model, focal)"
    return False, "one image size" + (", one EXIF camera" if exif != {None} else ", no EXIF")


def choose_recipe(config: SfMConfig, images: ImageSet, *, known=None) -> Recipe:
    """The first attempt's settings for this image set (explicit SfMConfig values win):

    * camera mode (``auto``): one camera when the set is homogeneous (:func:`heterogeneous`),
      one per image otherwise (internet collections: every photo its own lens and zoom);
    * working size: ``max_image_size`` on a homogeneous set; on a heterogeneous one at most
      ``heterogeneous_image_size`` (640 px: with the 2x upsampling below, SIFT's pyramid starts
      at 1280 px, where COLMAP's starts at twice the photo's size, ~2000 px);
    * first octave (None): 0 (no 2x upsampling) on a homogeneous set whose smallest image SIFT
      works on at >= ``upsample_below`` px, else COLMAP's -1 (on internet photos of ~1000 px
      the first octave 0 at full size lost most of the set: 0/5 San Marco photos against 3/5);
    * features (None): 4096 (matching cost grows with its square; on the heterogeneous sets
      4096 lost no photo against COLMAP's 8192);
    * a heterogeneous set of fewer than ``heterogeneous_min_images``: COLMAP's extraction (no
      640 px cap, 8192 features), so that pycolmap's defaults need not re-run after it;
    * global BA ratio: ``config.global_ba_ratio`` on a homogeneous set, COLMAP's 1.1 otherwise.

    Measured by ``bench/bench_sfm.py --sets`` (docs/sfm.md)."""
    het, why = heterogeneous(images) if known is None else (False, "known calibration")
    mode = config.camera_mode
    if mode == "auto":
        mode = "per_image" if het else "single"
    elif mode == "single" and len({images.sizes[n] for n in images.names}) > 1:
        mode = "auto"
    longest = sorted(max(images.sizes[n]) for n in images.names) or [0]
    cap = config.max_image_size

    few = het and len(images.names) < config.heterogeneous_min_images
    if het and config.heterogeneous_image_size and not few:
        cap = min(cap, config.heterogeneous_image_size) if cap else config.heterogeneous_image_size

    def working(n: int) -> int:
        return min(n, cap) if cap else n

    ref = working(longest[0])
    octave = config.first_octave
    if octave is None:
        octave = 0 if ref >= config.upsample_below and not het else -1
    feats = config.max_num_features or (COLMAP_FEATURES if few else 4096)
    ratio = COLMAP_GLOBAL_BA_RATIO if het and config.global_ba_ratio == SfMConfig.global_ba_ratio \
        else config.global_ba_ratio
    reason = (f"{'heterogeneous' if het else 'homogeneous'} set ({why}"
              f"{f', {len(images.names)} < {config.heterogeneous_min_images} images: as COLMAP' if few else ''}): "
              f"{mode} camera(s), "
              f"SIFT at {cap or 'full'} px, first octave {octave} (smallest working size {ref} px, "
              f"upsample below {config.upsample_below}), {feats} features, "
              f"global BA ratio {ratio}")
    return Recipe("fast", int(cap), int(feats), int(octave), mode, float(ratio), True, reason)


def colmap_recipe(config: SfMConfig, *, fixed_distortion: bool = False) -> Recipe:
    """pycolmap's default settings (the fallback): SIFT at 3200 px with 2x upsampling and 8192
    features, COLMAP's AUTO camera mode, global BA every 10 % of growth; with
    ``fixed_distortion`` the distortion is held at 0 while mapping and in the final BA."""
    return Recipe("fixed-distortion" if fixed_distortion else "colmap", COLMAP_MAX_IMAGE_SIZE,
                  COLMAP_FEATURES, -1, "auto", COLMAP_GLOBAL_BA_RATIO, not fixed_distortion,
                  "pycolmap's defaults" + (" with the distortion held fixed" if fixed_distortion else ""))


# =========================================================================================
# Typed stage results
# =========================================================================================

@dataclass
class InputsResult:
    """Stage 1: the usable images, the video extraction (video input) and a known camera."""

    images: ImageSet
    video: FrameExtraction | None = None
    known: object | None = None  # calib.Camera from ``SfMConfig.calibration``


@dataclass
class FeaturesResult:
    """Stage 2: what was extracted into the database."""

    database: Path
    recipe: Recipe
    no_features: list[str] = field(default_factory=list)
    gps: bool = False
    focal_priors: dict = field(default_factory=dict)
    note: str = ""
    tasks: dict | None = None  # recon.cluster.sfm.extract_features facts (on a cluster)


@dataclass
class MatchingResult:
    """Stage 3: the strategy (recon.sfm.matching.Strategy), pairs matched and verified."""

    strategy: Strategy
    pairs: int | None = None
    verified_pairs: int = 0
    retrieval: str | None = None
    notes: list[str] = field(default_factory=list)
    blocks: dict | None = None  # recon.cluster.sfm.match_pairs facts (on a cluster)

    def to_json(self) -> dict:
        d = {"strategy": self.strategy.matching, "reason": self.strategy.matching_reason,
             "verified_pairs": self.verified_pairs}
        if self.pairs is not None:
            d["pairs"] = self.pairs
        if self.retrieval:
            d["retrieval"] = self.retrieval
        if self.blocks is not None:
            d["blocks"] = self.blocks
        return d


@dataclass
class MappingResult:
    """Stage 4: the mapper's models (pycolmap.Reconstruction), largest first, and its error."""

    models: list = field(default_factory=list)
    error: str | None = None
    partitioned: dict | None = None  # recon.cluster.sfm.partitioned_mapping facts (on a cluster)


@dataclass
class BAResult:
    """Stage 5: the final bundle adjustment's figures and the refined model."""

    engine: str
    loss: str
    initial_cost: float
    final_cost: float
    iterations: int
    seconds: float
    reconstruction: object = field(default=None, repr=False)  # pycolmap.Reconstruction
    backend: str | None = None
    termination: str | None = None

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "reconstruction" and v is not None}
        return d


@dataclass
class Plausibility:
    """:func:`check_plausibility`: the problems of a model (empty: plausible)."""

    registered: int
    usable: int
    problems: list[str] = field(default_factory=list)
    cameras: dict[int, str] = field(default_factory=dict)  # camera id -> what is wrong with it
    dropped: dict[str, str] = field(default_factory=dict)  # image -> taken out of the model, why
    before: list[str] = field(default_factory=list)  # the problems before images were taken out

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def intrinsics_ok(self) -> bool:
        return not self.cameras

    def to_json(self) -> dict:
        return {"ok": self.ok, "registered": self.registered, "usable": self.usable,
                "problems": list(self.problems), "cameras": {str(k): v for k, v in self.cameras.items()},
                "dropped": dict(self.dropped), "problems_before_dropping": list(self.before)}


@dataclass
class AttemptResult:
    """One pass of features -> matching -> mapping -> refinement with one :class:`Recipe`."""

    recipe: Recipe
    features: FeaturesResult | None = None
    matching: MatchingResult | None = None
    mapping: MappingResult | None = None
    ba: BAResult | None = None
    models: list = field(default_factory=list)  # refined main model first, then the others
    plausibility: Plausibility | None = None
    failure: str | None = None
    seconds: float = 0.0
    stands_for: str | None = None  # a fallback recipe skipped because this attempt equals it
    trigger: str | None = None  # why this re-run happened (None: the first attempt)
    dropped: dict[str, str] = field(default_factory=dict)  # image -> why it was taken out of the model

    @property
    def registered(self) -> int:
        return int(self.models[0].num_reg_images()) if self.models else 0

    def to_json(self) -> dict:
        d = {"recipe": self.recipe.name, "registered": self.registered, "seconds": round(self.seconds, 3),
             "failure": self.failure, "problems": self.plausibility.problems if self.plausibility else []}
        if self.stands_for:
            d["same_as"] = self.stands_for
        if self.trigger:
            d["why"] = self.trigger
        return d


# =========================================================================================
# Plausibility gate
# =========================================================================================

def check_plausibility(prec, usable: int, *, focal_range: tuple[float, float] = (0.3, 5.0),
                       max_abs_k1: float = 1.0, min_share: float = 0.5) -> Plausibility:
    """Problems of ``prec`` (pycolmap.Reconstruction) that no correct model has: a registered
    camera whose focal length is outside ``focal_range`` x its image's larger side (a lens of
    that size cannot have it), a first radial coefficient |k1| > ``max_abs_k1`` (beyond what
    the low-order models express faithfully), a main model holding less than ``min_share`` of
    the ``usable`` images."""
    if usable < 1:
        raise ValueError(f"usable: expected >= 1, got {usable}")
    reg = int(prec.num_reg_images()) if prec is not None else 0
    out = Plausibility(reg, usable)
    if prec is None:
        out.problems.append("no model")
        return out
    used = {prec.image(i).camera_id for i in prec.reg_image_ids()}
    for cid in sorted(used):
        cam = prec.camera(cid)
        side = max(cam.width, cam.height)
        f = float(cam.mean_focal_length())
        bad = []
        if not focal_range[0] * side <= f <= focal_range[1] * side:
            bad.append(f"focal {f:.0f} px = {f / side:.2f} x the {side} px side "
                       f"(outside [{focal_range[0]}, {focal_range[1]}])")
        names = list(cam.params_info.split(", ")) if hasattr(cam, "params_info") else []
        if "k1" in names or "k" in names:
            k1 = float(cam.params[names.index("k1" if "k1" in names else "k")])
            if abs(k1) > max_abs_k1:
                bad.append(f"radial k1 = {k1:+.2f} (|k1| > {max_abs_k1})")
        if bad:
            out.cameras[int(cid)] = "; ".join(bad)
    if out.cameras:
        out.problems.append(f"{len(out.cameras)} camera(s) with implausible intrinsics: "
                            + "; ".join(f"camera {k}: {v}" for k, v in out.cameras.items()))
    if reg < min_share * usable:
        out.problems.append(f"the main model holds {reg} of {usable} images (< {min_share:.0%})")
    return out


# =========================================================================================
# Stages: public functions of (inputs, options) -> typed results
# =========================================================================================

def _colmap_params(camera) -> str:
    """calib.Camera -> COLMAP parameter string (principal point in COLMAP's corner convention)."""
    return ",".join(f"{v:.17g}" for v in camera.corner_params())


def load_inputs(inputs, work_dir, config: SfMConfig, *, progress: bool = True) -> InputsResult:
    """Stage 1: the images of a folder (checked, see recon.sfm.inputs.collect_images) or the
    frames of a video (extracted into ``work_dir/images``), and the known camera of
    ``config.calibration``. ValueError naming ``inputs`` when it is neither."""
    inputs, work_dir = Path(inputs), Path(work_dir)
    video = None
    if inputs.is_file() and inputs.suffix.lower() in VIDEO_EXTENSIONS:
        images, video = extract_video_frames(inputs, work_dir / "images", target_fps=config.video_fps,
                                             max_frames=config.video_max_frames,
                                             blur_ratio=config.blur_ratio, progress=progress)
    elif inputs.is_dir():
        images = collect_images(inputs, progress=progress)
    else:
        raise ValueError(f"inputs: {inputs} is neither a folder of images nor a video "
                         f"({', '.join(sorted(VIDEO_EXTENSIONS))})")
    known = None
    if config.calibration:
        from calib import read_camera

        known = read_camera(config.calibration)
    return InputsResult(images, video, known)


def _known_camera_reader(known, images: ImageSet):
    """(COLMAP model, parameter string) of the known camera resized to the images' size."""
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
    return cam.model, _colmap_params(cam)


def extract_features(images: ImageSet, database, recipe: Recipe, config: SfMConfig, *,
                     known=None, cluster=None) -> FeaturesResult:
    """Stage 2: SIFT of ``images`` into a fresh COLMAP ``database`` with ``recipe``'s settings;
    cameras per ``recipe.camera_mode`` (or the ``known`` calib.Camera, held fixed), focal priors
    from EXIF (recon.io.exif_focal_px). ValueError for a known camera that does not fit.
    ``cluster`` (recon.cluster.Cluster): image shards extracted as tasks (task folders under
    the database's folder, ``tasks/``), copied into ``database`` by this process."""
    import pycolmap

    database = Path(database)
    if database.exists():
        database.unlink()  # a fresh run: stale features/matches would mix with new ones
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = config.camera_model
    modes = {"single": pycolmap.CameraMode.SINGLE, "per_image": pycolmap.CameraMode.PER_IMAGE,
             "auto": pycolmap.CameraMode.AUTO}
    mode, note = modes[recipe.camera_mode], ""
    if config.camera_mode == "single" and recipe.camera_mode != "single":
        sizes = sorted(set(images.sizes.values()))
        note = (f"--camera-mode single ignored: the images have {len(sizes)} different sizes "
                f"{sizes[:4]}; one camera per size used")
    if known is not None:
        reader.camera_model, reader.camera_params = _known_camera_reader(known, images)
        mode = pycolmap.CameraMode.SINGLE
    ext = pycolmap.FeatureExtractionOptions()
    ext.max_image_size = recipe.max_image_size or -1
    ext.sift.max_num_features, ext.sift.first_octave = recipe.num_features, recipe.first_octave
    ext.num_threads = config.num_threads
    tasks = None
    if cluster is not None:
        from recon.cluster import sfm as cluster_sfm

        tasks = cluster_sfm.extract_features(cluster, database, images.image_dir, images.names,
                                             camera_mode=mode, reader=reader, extraction=ext,
                                             root=database.parent / "tasks")
    else:
        pycolmap.extract_features(str(database), str(images.image_dir), images.names, camera_mode=mode,
                                  reader_options=reader, extraction_options=ext)
    db = pycolmap.Database.open(str(database))
    try:
        db_images = {im.name: im for im in db.read_all_images()}
        no_feat = [n for n in images.names
                   if n not in db_images or db.num_keypoints_for_image(db_images[n].image_id) == 0]
        gps = any(p.has_position() and np.all(np.isfinite(p.position)) for p in db.read_all_pose_priors())
        if known is not None:  # mark the prior focal as trusted
            for c in db.read_all_cameras():
                c.has_prior_focal_length = True
                db.update_camera(c)
            priors = {}
        else:
            priors = _exif_focal_priors(db, images)
    finally:
        db.close()
    return FeaturesResult(database, recipe, no_feat, gps, priors, note, tasks)


def match_features(images: ImageSet, database, work_dir, config: SfMConfig, *,
                   gps: bool = False, cluster=None) -> MatchingResult:
    """Stage 3: the matching strategy for this set (recon.sfm.matching.choose_strategy) and the
    matches, geometrically verified, into ``database``; pair lists and logs in ``work_dir``.
    ``cluster``: exhaustive and pair-list matching run as tasks on blocks of pairs
    (``work_dir/tasks``); only this process writes the database."""
    import pycolmap

    database, work_dir = Path(database), Path(work_dir)
    n = len(images.names)
    ordered = images.ordered if config.ordered is None else config.ordered
    if config.ordered is None and not ordered and n > config.exhaustive_max_images:
        ordered = _numbered(images.names)
    plan = choose_strategy(n, ordered=ordered, gps=gps, matching=config.matching, mapper=config.mapper,
                           retrieval=config.retrieval, vocab_tree=find_vocab_tree(config.vocab_tree, n_images=n),
                           exhaustive_max_images=config.exhaustive_max_images,
                           incremental_max_images=config.incremental_max_images,
                           global_max_images=config.global_max_images,
                           sequential_overlap=config.sequential_overlap, leaf_max_images=config.leaf_max_images)
    res = MatchingResult(plan)
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = config.num_threads
    vocab_done = False
    if plan.matching == "retrieval" and plan.retrieval == "vocabtree":
        err = _match_vocabtree(config, database, find_vocab_tree(config.vocab_tree, n_images=n), work_dir)
        if err is None:
            vocab_done, res.retrieval = True, "vocabtree"
        else:
            res.notes.append(f"vocabulary-tree matching failed ({err}): VLAD retrieval instead")
    if vocab_done:
        pass
    elif plan.matching == "exhaustive" and cluster is not None:
        from recon.cluster import sfm as cluster_sfm

        every = [(images.names[i], images.names[j]) for i in range(n) for j in range(i + 1, n)]
        res.blocks = cluster_sfm.match_pairs(cluster, database, every, root=work_dir / "tasks",
                                             seed=config.seed)
        res.pairs = len(every)
    elif plan.matching == "exhaustive":
        pycolmap.match_exhaustive(str(database), mo)
        res.pairs = n * (n - 1) // 2
    elif plan.matching == "spatial":
        pycolmap.match_spatial(str(database), mo)
    else:
        pairs = _pairs(pycolmap, database, images, plan.matching, config)
        pair_file = work_dir / "pairs.txt"
        pair_file.write_text("".join(f"{images.names[i]} {images.names[j]}\n" for i, j in sorted(pairs)))
        if cluster is not None:
            from recon.cluster import sfm as cluster_sfm

            res.blocks = cluster_sfm.match_pairs(
                cluster, database, [(images.names[i], images.names[j]) for i, j in sorted(pairs)],
                root=work_dir / "tasks", seed=config.seed)
        else:
            po = pycolmap.ImportedPairingOptions()
            po.match_list_path = str(pair_file)
            pycolmap.match_image_pairs(str(database), mo, po)
        res.pairs = len(pairs)
        if plan.matching == "retrieval":
            res.retrieval = "vlad"
    db = pycolmap.Database.open(str(database))
    res.verified_pairs = int(db.num_verified_image_pairs())
    db.close()
    return res


def map_images(images: ImageSet, database, models_dir, config: SfMConfig, mapper: str, recipe: Recipe, *,
               fix_intrinsics: bool = False, cluster=None) -> MappingResult:
    """Stage 4: the ``mapper`` ("incremental" | "global" | "hierarchical") on ``database``, in a
    child process unless ``config.isolate_mapper`` is off; models written to ``models_dir/<k>``
    and returned largest first (registered images, then points). ``cluster``: the partitioned
    mapper instead (recon.cluster.sfm.partitioned_mapping: overlapping leaves mapped as tasks,
    merged by Sim(3) on shared images)."""
    import pycolmap

    models_dir = Path(models_dir)
    shutil.rmtree(models_dir, ignore_errors=True)
    models_dir.mkdir(parents=True)
    partitioned = None
    if cluster is not None:
        err, partitioned = _run_partitioned_mapper(cluster, config, Path(database), images, models_dir,
                                                   fix_intrinsics=fix_intrinsics)
    else:
        err = _run_mapper(config, mapper, Path(database), images, models_dir, recipe,
                          fix_intrinsics=fix_intrinsics)
    recs = [pycolmap.Reconstruction(str(d)) for d in sorted(models_dir.iterdir())
            if d.is_dir() and (d / "images.bin").exists()]
    recs.sort(key=lambda r: (-r.num_reg_images(), -r.num_points3D()))
    return MappingResult(recs, err, partitioned)


def retriangulate(prec, images: ImageSet, database, work_dir, config: SfMConfig):
    """Stage 5a: ``prec`` (pycolmap.Reconstruction) retriangulated with all database matches
    (pycolmap.triangulate_points, intrinsics kept). pycolmap's RuntimeError propagates."""
    import pycolmap

    tri_dir = Path(work_dir) / "_retriangulated"
    tri_dir.mkdir(parents=True, exist_ok=True)
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = config.num_threads
    return pycolmap.triangulate_points(prec, str(database), str(images.image_dir), str(tri_dir),
                                       clear_points=False, options=opts, refine_intrinsics=False)


def final_bundle_adjustment(prec, config: SfMConfig, *, fix_intrinsics: bool = False,
                            fix_extra: bool = False) -> BAResult:
    """Stage 5b: the final bundle adjustment of ``prec`` by ``config.final_ba`` ("ours": recon.ba;
    "colmap": pycolmap's Ceres) with ``config.ba_loss``; intrinsics fixed with
    ``fix_intrinsics``, distortion only with ``fix_extra``. The refined model is the result's
    ``reconstruction``."""
    import pycolmap

    if config.final_ba == "colmap":
        opts = pycolmap.BundleAdjustmentOptions()
        opts.print_summary = False
        opts.ceres.loss_function_type = {"trivial": pycolmap.LossFunctionType.TRIVIAL,
                                         "huber": pycolmap.LossFunctionType.HUBER,
                                         "cauchy": pycolmap.LossFunctionType.CAUCHY}[config.ba_loss]
        if fix_intrinsics:
            opts.refine_focal_length = opts.refine_extra_params = False
        if fix_extra:
            opts.refine_extra_params = False
        cfg = pycolmap.BundleAdjustmentConfig()
        for iid in prec.reg_image_ids():
            cfg.add_image(iid)
        cfg.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
        t0 = time.perf_counter()
        summary = pycolmap.create_default_bundle_adjuster(opts, cfg, prec).solve()
        cs = summary.ceres_summary
        if hasattr(prec, "update_point_3d_errors"):
            prec.update_point_3d_errors()
        return BAResult("colmap", config.ba_loss, float(cs.initial_cost), float(cs.final_cost),
                        int(cs.num_successful_steps + cs.num_unsuccessful_steps),
                        round(time.perf_counter() - t0, 3), prec)
    from recon.sfm._ba import adjust_pycolmap

    out, res = adjust_pycolmap(prec, loss=config.ba_loss, refine_focal=not fix_intrinsics,
                               refine_extra=not (fix_intrinsics or fix_extra))
    return BAResult("ours", config.ba_loss, float(res.initial_cost), float(res.final_cost), int(res.iterations),
                    round(res.time_s, 3), out, backend=res.backend, termination=str(res.termination))


# =========================================================================================
# The pipeline
# =========================================================================================

def run_sfm(inputs, out_dir, config: SfMConfig | None = None, *, progress: bool = True,
            cluster=None) -> SfMReport:
    """Run the whole pipeline; returns the report (also written to ``out_dir/report.json``).

    ``cluster``: a :class:`recon.cluster.Cluster` (``recon sfm --workers N / --cluster ADDRESS``):
    feature extraction, matching and mapping then run as Dask tasks (recon.cluster.sfm), with
    their task folders under the attempt's folder (``tasks/``) reused by a re-run; None: all in
    this process.

    ``inputs``: a folder of images or a video file. Raises ValueError for unusable arguments;
    problems with the data (too few images, no overlap, failed mapping, a model with implausible
    intrinsics) are reported in the report's ``status``/``message``/``reasons`` with partial
    results kept on disk. A first attempt with :func:`choose_recipe`'s settings is checked by
    :func:`check_plausibility`; when it fails the gate, or leaves images out of a small set,
    pycolmap's defaults run too (then with the distortion fixed if the intrinsics are still
    implausible) and the best plausible attempt is kept; if none is plausible, status "failed".
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

    with st.run("inputs", str(inputs)):
        inp = load_inputs(inputs, out, config, progress=progress)
        images = inp.images
        report.images_total = images.total
        report.reasons.update(images.rejected)
        report.video = asdict(inp.video) if inp.video is not None else None
    if len(images.names) < 2:
        return _fail(report, out, images, f"need at least 2 usable images, found {len(images.names)}"
                     + (f" ({len(images.rejected)} rejected: see reasons)" if images.rejected else ""))

    recipe = choose_recipe(config, images, known=inp.known)
    try:
        attempts = [_attempt(st, images, out, config, recipe, inp.known, tag="", cluster=cluster)]
    finally:
        if cluster is not None:
            report.cluster = cluster.facts()
    defaults_note = None
    if config.fallback and inp.known is None:
        defaults_note = _fall_back(st, images, out, config, attempts, cluster)
    best = _pick(attempts)
    report.attempts = [a.to_json() for a in attempts]
    if cluster is not None:
        report.cluster = cluster.facts()
    if best.models and best.plausibility is not None and not best.plausibility.intrinsics_ok:
        with st.run("plausibility", "images of implausible cameras taken out"):
            _drop_implausible(best, images, config, fix_intrinsics=inp.known is not None)
    _record_attempt(report, best)
    _record_defaults(report, images, attempts, best, defaults_note)
    if not best.models:
        return _fail(report, out, images, best.failure or "no model")

    with st.run("outputs"):
        _write_outputs(out, images, best.models, report, config, best)
    if config.undistort:
        with st.run("undistortion"):
            und = out / "undistorted"
            shutil.rmtree(und, ignore_errors=True)
            pycolmap.undistort_images(str(und), str(out / "sparse" / "0"), str(images.image_dir))
            report.outputs["undistorted"] = str(und)
    _conclude(report, images, attempts, best)
    report.total_seconds = round(time.perf_counter() - st.t_start, 3)
    report.write(out / "report.json")
    return report


def _same_extraction(a: Recipe, b: Recipe, images: ImageSet) -> bool:
    """Recipes ``a`` and ``b`` extract the same features and cameras from ``images`` (working
    sizes, feature count, octave; pycolmap's AUTO mode gives each size its own camera)."""
    sizes = {images.sizes[n] for n in images.names}

    def key(r: Recipe):
        work = tuple(sorted(min(max(wh), r.max_image_size) if r.max_image_size else max(wh) for wh in sizes))
        mode = "per_image" if r.camera_mode == "auto" and len(sizes) == len(images.names) else r.camera_mode
        return work, r.num_features, r.first_octave, mode, r.global_ba_ratio, r.refine_extra_params

    return key(a) == key(b)


def _attempt(st: _Stages, images: ImageSet, work: Path, config: SfMConfig, recipe: Recipe, known, *, tag: str,
             reuse: AttemptResult | None = None, cluster=None) -> AttemptResult:
    """Features, matching, mapping and refinement with ``recipe`` in ``work`` (features and
    matches of ``reuse`` when given); never raises for data problems (the result's ``failure``
    says what went wrong)."""
    t0 = time.perf_counter()
    res = AttemptResult(recipe)
    work.mkdir(parents=True, exist_ok=True)
    fix = known is not None
    if reuse is not None and reuse.features is not None and reuse.matching is not None:
        res.features, res.matching = reuse.features, reuse.matching
    else:
        with st.run("features" + tag, f"{len(images.names)} images: {recipe.reason}"):
            res.features = extract_features(images, work / "database.db", recipe, config, known=known,
                                            cluster=cluster)
        with st.run("matching" + tag, f"{len(images.names)} images"):
            res.matching = match_features(images, res.features.database, work, config, gps=res.features.gps,
                                          cluster=cluster)
    if res.matching.verified_pairs == 0:
        res.failure = "no image pair has enough geometrically verified matches (no overlap between the images?)"
    else:
        plan = res.matching.strategy
        with st.run("mapping" + tag, f"{plan.mapper}: {plan.mapper_reason}"):
            res.mapping = map_images(images, res.features.database, work / "models", config, plan.mapper, recipe,
                                     fix_intrinsics=fix, cluster=cluster)
        if not res.mapping.models:
            res.failure = ("the mapper registered no model" + (f" ({res.mapping.error})" if res.mapping.error
                                                                else "") + ": the images may not overlap enough")
        else:
            best = res.mapping.models[0]
            if config.retriangulate:
                with st.run("retriangulation" + tag):
                    try:
                        best = retriangulate(best, images, res.features.database, work / "models", config)
                    except RuntimeError as e:  # pycolmap's C++ errors; the mapper's model is kept
                        res.mapping.error = (res.mapping.error + "; " if res.mapping.error else "") + \
                            f"retriangulation failed ({e}), mapper model kept"
            if config.final_ba != "none":
                with st.run("bundle adjustment" + tag, config.final_ba):
                    res.ba = final_bundle_adjustment(best, config, fix_intrinsics=fix,
                                                     fix_extra=not recipe.refine_extra_params)
                    best = res.ba.reconstruction
            res.models = [best] + res.mapping.models[1:]
    res.plausibility = check_plausibility(res.models[0] if res.models else None, len(images.names),
                                          focal_range=config.focal_range, max_abs_k1=config.max_abs_k1,
                                          min_share=config.min_registered_share)
    res.seconds = time.perf_counter() - t0
    if st.progress:
        state = "plausible" if res.plausibility.ok else "; ".join(res.plausibility.problems)
        print(f"[sfm] attempt {recipe.name}: {res.registered}/{len(images.names)} registered, {state}",
              file=sys.stderr, flush=True)
    return res


def leftover_inliers(database, prec, names: list[str]) -> dict[str, int]:
    """For every image of ``names`` not registered in ``prec`` (pycolmap.Reconstruction or
    None), its verified inlier matches in ``database`` summed over its pairs with the images
    ``prec`` registers (0: nothing ties it to that model)."""
    import pycolmap

    reg = {prec.image(i).name for i in prec.reg_image_ids()} if prec is not None else set()
    out = {n: 0 for n in names if n not in reg}
    if not out or not reg:
        return out
    db = pycolmap.Database.open(str(database))
    try:
        by_id = {im.image_id: im.name for im in db.read_all_images()}
        pair_ids, inliers = db.read_two_view_geometry_num_inliers()
    finally:
        db.close()
    for pid, k in zip(pair_ids, inliers):
        a, b = (by_id.get(int(i)) for i in pycolmap.pair_id_to_image_pair(pid))
        for x, y in ((a, b), (b, a)):
            if x in out and y in reg:
                out[x] += int(k)
    return out


def needs_defaults(config: SfMConfig, plausibility: Plausibility | None, leftovers: dict[str, int]) -> str | None:
    """Why pycolmap's defaults must re-run after an attempt with this ``plausibility`` and these
    ``leftovers`` (:func:`leftover_inliers` of its main model), or None when they need not:

    * no model, implausible intrinsics, or a main model under ``min_registered_share`` of the
      usable images (:func:`check_plausibility`): always;
    * on a set of at most ``fallback_max_images`` images, an image left out that has at least
      ``fallback_min_inliers`` verified matches with the main model: the mapper saw it tied to
      the model and could not place it, so denser features may.

    An image with (nearly) no verified match to the main model -- a photo of another landmark
    in a mixed collection -- does not re-run them: their denser features would not tie it to
    a model it does not show."""
    if plausibility is None or not plausibility.ok:
        return "; ".join(plausibility.problems) if plausibility is not None else "no model"
    if plausibility.usable > config.fallback_max_images:
        return None
    tied = sorted(n for n, k in leftovers.items() if k >= config.fallback_min_inliers)
    if tied:
        return (f"{len(tied)} image(s) left out with >= {config.fallback_min_inliers} verified matches to the "
                f"main model ({', '.join(tied[:3])}{', ...' if len(tied) > 3 else ''})")
    return None


def _fall_back(st: _Stages, images: ImageSet, out: Path, config: SfMConfig, attempts: list[AttemptResult],
               cluster) -> str | None:
    """The re-runs after the first attempt (appended to ``attempts``), cheapest first:

    1. its intrinsics implausible: its own features and matches mapped with the distortion fixed;
    2. the best so far not good enough (:func:`needs_defaults`): pycolmap's defaults, unless
       they would extract and match exactly what the first attempt did (it then stands for them);
    3. their intrinsics implausible: their features mapped with the distortion fixed.

    Returns why pycolmap's defaults did not run when images were left out (for the report)."""
    first = attempts[0]

    def again(recipe: Recipe, reuse: AttemptResult | None, why: str) -> AttemptResult:
        a = _attempt(st, images, out / "fallback" / recipe.name, config, recipe, None, tag=f" ({recipe.name})",
                     reuse=reuse, cluster=cluster)
        a.trigger = why
        attempts.append(a)
        return a

    def fixed(a: AttemptResult) -> Recipe:
        if a.recipe.name == "colmap":
            return colmap_recipe(config, fixed_distortion=True)
        return replace(a.recipe, name=f"{a.recipe.name}-fixed-distortion", refine_extra_params=False,
                       reason=f"{a.recipe.reason}; distortion held fixed")

    def implausible_intrinsics(a: AttemptResult) -> bool:
        return bool(a.models) and a.plausibility is not None and not a.plausibility.intrinsics_ok

    if implausible_intrinsics(first):
        again(fixed(first), first, "implausible intrinsics: " + "; ".join(first.plausibility.cameras.values()))
    best = _pick(attempts)
    left = leftover_inliers(best.features.database, best.models[0] if best.models else None, images.names) \
        if best.features is not None else {}
    why = needs_defaults(config, best.plausibility, left)
    if why is None:
        if not left:
            return None
        if len(images.names) > config.fallback_max_images:
            return f"not run: {len(images.names)} images > fallback_max_images {config.fallback_max_images}"
        return (f"not run: the {len(left)} image(s) left out have fewer than {config.fallback_min_inliers} "
                "verified matches with the main model (most likely other scenes)")
    colmap = colmap_recipe(config)
    if _same_extraction(first.recipe, colmap, images):
        first.stands_for = colmap.name  # its distortion-fixed variant, if needed, ran in step 1
        return None
    c = again(colmap, None, why)
    if implausible_intrinsics(c):
        again(fixed(c), c, "implausible intrinsics: " + "; ".join(c.plausibility.cameras.values()))
    return None


def drop_images_of_cameras(prec, camera_ids) -> list[str]:
    """Deregister from ``prec`` (pycolmap.Reconstruction, in place) every image of the cameras
    ``camera_ids``; their observations go with them. Returns the names taken out."""
    names = []
    for iid in sorted(prec.reg_image_ids()):
        im = prec.image(iid)
        if im.camera_id in camera_ids:
            names.append(im.name)
            prec.deregister_frame(im.frame_id)
    return names


def _drop_implausible(a: AttemptResult, images: ImageSet, config: SfMConfig, *, fix_intrinsics: bool) -> None:
    """The last resort of the gate: the images whose camera is still implausible after every
    attempt leave the main model (with the reason), the rest is bundle-adjusted again and
    re-checked."""
    bad = dict(a.plausibility.cameras)
    prec = a.models[0]
    for name in drop_images_of_cameras(prec, set(bad)):
        cid = next(im.camera_id for im in prec.images.values() if im.name == name)
        a.dropped[name] = f"registered with implausible intrinsics ({bad[cid]}): taken out of the model"
    if prec.num_reg_images() < 2:
        a.models, a.failure = [], "every registered camera had implausible intrinsics: " + \
            "; ".join(a.plausibility.problems)
        a.plausibility.dropped, a.plausibility.before = dict(a.dropped), list(a.plausibility.problems)
        return
    if config.final_ba != "none":
        a.ba = final_bundle_adjustment(prec, config, fix_intrinsics=fix_intrinsics,
                                       fix_extra=not a.recipe.refine_extra_params)
        prec = a.ba.reconstruction
    a.models[0] = prec
    before = a.plausibility.problems
    a.plausibility = check_plausibility(prec if prec.num_reg_images() else None, len(images.names),
                                        focal_range=config.focal_range, max_abs_k1=config.max_abs_k1,
                                        min_share=config.min_registered_share)
    a.plausibility.dropped = dict(a.dropped)
    a.plausibility.before = list(before)


def _pick(attempts: list[AttemptResult]) -> AttemptResult:
    """The plausible attempt with most images registered (the earlier on ties: faster), else
    the implausible one with most."""
    return max(attempts, key=lambda a: (bool(a.plausibility and a.plausibility.ok and a.models), a.registered,
                                        -attempts.index(a)))


def _record_attempt(report: SfMReport, a: AttemptResult) -> None:
    """The chosen attempt's figures into the report."""
    report.recipe = a.recipe.to_json()
    if a.features is not None:
        for n in a.features.no_features:
            report.reasons[n] = "no features extracted (unreadable by COLMAP, blank or textureless)"
        report.focal_priors = a.features.focal_priors
        if a.features.note:
            _note(report, a.features.note)
    if a.matching is not None:
        report.strategy = a.matching.strategy.to_json()
        report.strategy["notes"] += a.matching.notes
        report.mapper = a.matching.strategy.mapper
        report.matching = a.matching.to_json()
        for note in a.matching.notes:
            _note(report, note)
    if a.mapping is not None and a.mapping.error:
        _note(report, a.mapping.error)
    if a.mapping is not None and a.mapping.partitioned is not None:
        report.mapper = f"partitioned ({a.mapping.partitioned['leaves']} leaves on the cluster)"
        report.cluster = dict(report.cluster or {}, mapping=a.mapping.partitioned)
    if a.features is not None and a.features.tasks is not None:
        report.matching["features"] = a.features.tasks
    if a.ba is not None:
        report.final_ba = a.ba.to_json()
    if a.plausibility is not None:
        report.plausibility = a.plausibility.to_json()


def _note(report: SfMReport, note: str) -> None:
    report.message = (report.message + "; " if report.message else "") + note


def _record_defaults(report: SfMReport, images: ImageSet, attempts: list[AttemptResult], best: AttemptResult,
                     defaults_note: str | None) -> None:
    """report.colmap_defaults: what pycolmap's defaults registered when they ran (or an attempt
    stood for them), else why they did not run (``defaults_note``) when images were left out."""
    n = len(images.names)
    colmap = next((a for a in attempts if "colmap" in (a.recipe.name, a.stands_for)), None)
    if colmap is not None:
        report.colmap_defaults = {"registered": colmap.registered, "seconds": round(colmap.seconds, 3),
                                  "plausible": bool(colmap.plausibility and colmap.plausibility.ok),
                                  "attempt": colmap.recipe.name}
        if colmap.stands_for:
            report.colmap_defaults["note"] = ("pycolmap's defaults extract and match the same on this set: "
                                              "the first attempt stands for them")
    elif best.registered < n:
        why = ("disabled (SfMConfig.fallback)" if not report.config.get("fallback", True) else
               defaults_note or "not run")
        report.colmap_defaults = {"registered": None, "note": f"pycolmap's defaults {why}"}


def _conclude(report: SfMReport, images: ImageSet, attempts: list[AttemptResult], best: AttemptResult) -> None:
    """Status and message (with what pycolmap's defaults registered when they ran)."""
    n = len(images.names)
    colmap = next((a for a in attempts if "colmap" in (a.recipe.name, a.stands_for)), None)
    if best.plausibility is not None and not best.plausibility.ok and best.plausibility.cameras:
        report.status = "failed"
        report.message = ("implausible result after " + ", ".join(a.recipe.name for a in attempts)
                          + " attempt(s): " + "; ".join(best.plausibility.problems)
                          + (f"; {report.message}" if report.message else ""))
        return
    small = best.plausibility is not None and any("main model holds" in p for p in best.plausibility.problems)
    if small:
        report.status = "failed"
        report.message = ("; ".join(best.plausibility.problems) + " after "
                          + ", ".join(a.recipe.name for a in attempts) + " attempt(s)"
                          + (f"; {report.message}" if report.message else ""))
        return
    if best.dropped:
        _note(report, f"{len(best.dropped)} image(s) registered with implausible intrinsics after every attempt "
                      "taken out of the model (see reasons)")
    report.status = "ok" if report.images_registered == n and not images.rejected else "partial"
    if report.status == "partial":
        tail = f"{report.images_registered} of {report.images_total} images registered; see `reasons`"
        if colmap is not None:
            tail += f" (pycolmap's defaults registered {colmap.registered})"
        report.message = f"{report.message}; {tail}" if report.message else tail


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
        except (OSError, ValueError):  # unreadable file or EXIF (recon's FormatError is a ValueError)
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
    return len(nums) > 2 and all(b > a for a, b in itertools.pairwise(nums))


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


def _run_mapper(config: SfMConfig, mapper: str, db_path: Path, images: ImageSet, models_dir: Path,
                recipe: Recipe, *, fix_intrinsics: bool) -> str | None:
    job = {"mapper": mapper, "database": str(db_path), "image_dir": str(images.image_dir),
           "output": str(models_dir), "num_threads": config.num_threads, "seed": config.seed,
           "fix_intrinsics": fix_intrinsics, "fix_extra": not recipe.refine_extra_params, "min_model_size": 3,
           "global_ba_ratio": recipe.global_ba_ratio, "leaf_max_images": config.leaf_max_images}
    if not config.isolate_mapper:
        from recon.sfm._worker import main as worker_main

        worker_main([json.dumps(job)])
        return None
    err = _run_worker(job, models_dir / "mapper.log")
    return None if err is None else f"the {mapper} mapper crashed ({err}); models written before the crash kept"


def _run_partitioned_mapper(cluster, config: SfMConfig, db_path: Path, images: ImageSet, models_dir: Path,
                            *, fix_intrinsics: bool) -> tuple[str | None, dict | None]:
    """recon.cluster.sfm.partitioned_mapping into models_dir/0: (None, its facts) or (why it
    failed, None). A ClusterError (a task that failed after its retries) propagates."""
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
        return f"the partitioned mapper failed ({e})", None
    return None, res.to_json()


def _match_vocabtree(config: SfMConfig, db_path: Path, tree: Path, out: Path) -> str | None:
    """pycolmap's vocabulary-tree matching, always in a child process (pycolmap aborts the
    process on a tree file it cannot read); None, or why it failed."""
    job = {"task": "match_vocabtree", "database": str(db_path), "vocab_tree": str(tree),
           "num_neighbors": config.retrieval_k, "num_threads": config.num_threads}
    return _run_worker(job, out / "vocabtree.log")


def _write_outputs(out: Path, images: ImageSet, recs: list, report: SfMReport, config: SfMConfig,
                   attempt: AttemptResult) -> None:
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
    report.reasons.update(attempt.dropped)
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
        bad = attempt.plausibility.cameras.get(int(cid)) if attempt.plausibility else None
        if bad:
            report.cameras[-1]["implausible"] = bad
    write_transforms_json(rec, out / "transforms.json", image_dir=images.image_dir, out_dir=out)
    write_points_ply(rec, out / "points.ply")
    report.outputs.update({"sparse": str(sparse / "0"), "transforms": str(out / "transforms.json"),
                           "points": str(out / "points.ply"),
                           "database": str(attempt.features.database)})
