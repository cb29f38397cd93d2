"""Calibration from photos, as library calls: one camera (:func:`calibrate_from_images`) and a
stereo rig (:func:`calibrate_rig`), each with typed options and a typed result whose
``to_json()`` is the report; :func:`write_camera_files` / :func:`write_rig_files` write
``calibration.yaml``, ``cameras.txt`` and ``report.json`` (through :mod:`calib.files`).

The rig: each camera is calibrated alone, the pairs are matched by position
(:func:`pair_runs`), the rig recipe and the chessboard corner set are chosen by
:func:`calib.stereo_select.choose_rig`, and :func:`calib.stereo_select.rig_quality` is the gate. The rule and
its measurements are in
docs/calibration.md (``bench/bench_stereo_calib.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calib.boards import BoardSpec
from calib.calibrate import (
    CalibrationConfig,
    CalibrationError,
    CalibrationResult,
    Observation,
    Rejection,
)
from calib.calibrate_images import DetectionRun
from calib.stereo import StereoResult
from calib.stereo_select import LeftOutScore, RigChoice, RigQuality

__all__ = [
    "CORNER_SETS",
    "CameraCalibration",
    "RigCalibration",
    "RigOptions",
    "RigPairs",
    "calibrate_from_images",
    "calibrate_rig",
    "focal_warnings",
    "pair_runs",
    "write_camera_files",
    "write_rig_files",
]

CORNER_SETS = ("auto", "subpix", "sb")


@dataclass
class CameraCalibration:
    """One camera calibrated from its photos: the detection run, the calibration, its
    projection-uncertainty map and coverage, and the left-out reprojection RMS (``leftout``:
    None with fewer than 4 views)."""

    paths: list[str]
    run: DetectionRun
    result: CalibrationResult
    uncertainty: object  # calib.calibrate.ProjectionUncertainty
    coverage: object  # calib.calibrate.Coverage
    leftout: dict | None

    @property
    def failures(self) -> list[Rejection]:
        """Every image not used: detection failures, then calibration outliers."""
        return list(self.run.failures) + list(self.result.rejected_views)

    def to_json(self) -> dict:
        from calib.files import report_dict

        return report_dict(self.result, detection_failures=self.run.failures, uncertainty=self.uncertainty,
                           coverage=self.coverage, board=str(self.run.board),
                           extra={"leftout": self.leftout} if self.leftout else None)


def _check_paths(paths, name: str) -> list[str]:
    if isinstance(paths, (str, Path)):
        raise TypeError(f"{name}: expected a list of image paths, got one path {str(paths)!r}")
    out = [str(p) for p in paths]
    if not out:
        raise ValueError(f"{name}: no images given")
    return out


def calibrate_from_images(paths, board: BoardSpec, config: CalibrationConfig | None = None, *,
                          threads: int | None = None, progress: bool = False,
                          refine: bool = True) -> CameraCalibration:
    """Detect ``board`` in ``paths`` (list of image files) and calibrate one camera.

    ``refine``: re-refine chessboard corners with ``cornerSubPix`` (False: OpenCV's sector-based
    corners alone). ``threads``: detection threads (None: up to 4). Raises
    :class:`calib.calibrate.CalibrationError` (listing every image not used) when the photos
    cannot be calibrated."""
    from calib.calibrate_images import detect_images

    paths = _check_paths(paths, "paths")
    if not isinstance(board, BoardSpec):
        raise TypeError(f"board: expected a calib.boards.BoardSpec, got {type(board).__name__}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads: expected >= 1, got {threads}")
    run = detect_images(paths, board, progress=progress, workers=threads, refine=refine)
    return calibrate_detections(paths, run, config)


def calibrate_detections(paths, run: DetectionRun, config: CalibrationConfig | None = None) -> CameraCalibration:
    """Calibrate one camera from a detection run of ``paths`` (see :func:`calibrate_from_images`)."""
    from calib.calibrate import calibrate_camera, coverage_map, projection_uncertainty

    config = config or CalibrationConfig()
    try:
        res = calibrate_camera(run.observations, run.image_size, config)
    except CalibrationError as e:
        if not run.failures:
            raise
        lines = "\n".join(f"  {r.name}: {r.reason}" for r in run.failures)
        raise CalibrationError(f"{e}\nimages not used:\n{lines}") from None
    unc = projection_uncertainty(res)
    cov = coverage_map(res, uncertainty=unc)
    return CameraCalibration(list(paths), run, res, unc, cov,
                             _mono_leftout(run.observations, run.image_size, res, config))


def _mono_leftout(observations, image_size, res, config) -> dict | None:
    """Left-out reprojection RMS of the chosen model (views held out in folds, their poses
    re-fitted with intrinsics from the other views); None with fewer than 4 views."""
    from calib.calibrate import select_model

    if res.model_scores:  # --model auto already cross-validated every candidate
        s = next((s for s in res.model_scores if s.model == res.camera.model), None)
    elif len(observations) >= 4:
        s = select_model(list(observations), image_size, (res.camera.model,), folds=config.cv_folds,
                         extra_flags=config.extra_flags)[0]
    else:
        return None
    if s is None:
        return None
    ok = not s.failed and math.isfinite(s.cv_rms_px)
    return {"method": "reprojection RMS over held-out views (intrinsics from the other views, pose re-fitted)",
            "folds": max(2, min(config.cv_folds, len(observations))), "rms_px": s.cv_rms_px if ok else None,
            **({"failed": s.failed} if s.failed else {})}


def write_camera_files(out_dir, cal: CameraCalibration) -> dict:
    """``out_dir``/report.json, calibration.yaml and cameras.txt of one camera; returns the report."""
    from calib.files import write_cameras_txt, write_opencv_yaml, write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = cal.to_json()
    write_report(out_dir / "report.json", report)
    write_opencv_yaml(out_dir / "calibration.yaml", cal.result.camera, rms_px=cal.result.rms_px)
    write_cameras_txt(out_dir / "cameras.txt", [cal.result.camera])
    return report


# =========================================================================================
# stereo rig
# =========================================================================================

@dataclass
class RigPairs:
    """Paired, label-aligned observations: view k of ``left`` and of ``right`` show the board at
    the same moment with the same corner ids; ``rejected``: every pair not used, with the reason."""

    left: list[Observation]
    right: list[Observation]
    rejected: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.left)


def pair_runs(left_paths, right_paths, left_run: DetectionRun, right_run: DetectionRun, left_camera,
              right_camera) -> RigPairs:
    """Pair by position (pair k = ``left_paths[k]``, ``right_paths[k]``; used when both images
    show the board), make a symmetric chessboard's labels agree
    (:func:`calib.stereo.align_symmetric_labels`, with the per-camera ``left_camera`` /
    ``right_camera``), keep the corners seen in both. ValueError when no pair remains."""
    from calib.stereo import align_symmetric_labels, pair_observations

    left_paths, right_paths = [str(p) for p in left_paths], [str(p) for p in right_paths]
    if len(left_paths) != len(right_paths):
        raise ValueError(f"left_paths/right_paths: {len(left_paths)} left and {len(right_paths)} right images; "
                         "pairs need equal counts")
    obsL = {o.name: o for o in left_run.observations}
    obsR = {o.name: o for o in right_run.observations}
    PL, PR, rejected = [], [], []
    for a, b in zip(left_paths, right_paths):
        if a in obsL and b in obsR:
            PL.append(obsL[a])
            PR.append(obsR[b])
        else:
            why = [f"{n}: no board" for n, o in ((a, obsL), (b, obsR)) if n not in o]
            rejected.append(Rejection(f"{a} | {b}", "; ".join(why)))
    if left_run.board.kind == "chessboard" and PL:
        PR, _ = align_symmetric_labels(PL, PR, left_camera, right_camera, left_run.board.cols, left_run.board.rows)
    PL, PR, rej = pair_observations(PL, PR)
    if not PL:
        raise ValueError("no stereo pair shows the board in both images:\n"
                         + "\n".join(f"  {r.name}: {r.reason}" for r in rejected + rej))
    return RigPairs(PL, PR, rejected + rej)


@dataclass
class RigOptions:
    """Options of :func:`calibrate_rig`.

    recipe: "auto" (the rule of :func:`calib.stereo_select.choose_rig`) or a recipe name of
        :mod:`calib.stereo_select` (``recon``, ``opencv``, ``joint``, ...).
    corners: chessboard corners of the rig: "auto" (the rule of
        :func:`calib.stereo_select.choose_rig`), "subpix" (re-refined with
        ``cornerSubPix``) or "sb" (OpenCV's sector-based corners alone).
    folds: interleaved folds of the left-out evaluation (>= 2).
    max_vertical_px: quality gate floor (pixels), see :func:`calib.stereo_select.rig_quality`.
    alpha: rectification, 0 keeps only valid pixels, 1 every source pixel.
    threads: detection threads (None: up to 4).
    """

    recipe: str = "auto"
    corners: str = "auto"
    folds: int = 5
    max_vertical_px: float = 1.0
    alpha: float = 0.0
    threads: int | None = None

    def __post_init__(self):
        from calib.stereo_select import recipe

        if self.recipe != "auto":
            try:
                recipe(self.recipe)
            except ValueError as e:
                raise ValueError(f"recipe: {str(e).split(': ', 1)[1]}") from None
        if self.corners not in CORNER_SETS:
            raise ValueError(f"corners: expected one of {', '.join(CORNER_SETS)}, got {self.corners!r}")
        if self.folds < 2:
            raise ValueError(f"folds: expected >= 2, got {self.folds}")
        if not self.max_vertical_px > 0:
            raise ValueError(f"max_vertical_px: expected > 0, got {self.max_vertical_px}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha: expected 0..1, got {self.alpha}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads: expected >= 1, got {self.threads}")


@dataclass
class RigCalibration:
    """A calibrated rig with its evidence.

    stereo: the rig (cameras, ``right_from_left``, rectification) fitted on every pair.
    left / right: each camera's own calibration (``left/`` and ``right/`` of the outputs).
    recipe / corners_used: the recipe and the corner set ("subpix", "sb") of the rig;
    choice: the rule's scores (:class:`calib.stereo_select.RigChoice`); leftout: the used
    recipe's left-out score (None with fewer than 4 pairs); quality: the gate.
    """

    stereo: StereoResult
    left: CameraCalibration
    right: CameraCalibration
    recipe: str
    corners_used: str
    choice: RigChoice
    leftout: LeftOutScore | None
    quality: RigQuality
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.quality.ok

    @property
    def per_camera_intrinsics(self) -> bool:
        """True when the rig's cameras are the per-camera calibrations of ``left`` / ``right``."""
        return self.stereo.left is self.left.result.camera and self.stereo.right is self.right.result.camera

    def to_json(self) -> dict:
        from calib.files import stereo_report_dict

        rep = stereo_report_dict(self.stereo, left_report=self.left.to_json(), right_report=self.right.to_json())
        rep["status"] = "ok" if self.quality.ok else "failed"
        rep["quality_gate"] = self.quality.to_json()
        rep["rig_recipe"] = self.recipe
        rep["corners"] = {"used": self.corners_used, "rule": self.choice.rule}
        if self.warnings:
            rep["warnings"] = list(self.warnings)
        if not self.per_camera_intrinsics:  # the rig's cameras are not left/'s and right/'s
            rep["params"] = {n: float(v) for n, v in zip(self.stereo.left.spec.param_names, self.stereo.left.params)}
            rep.pop("param_std", None)
        if self.leftout is not None:
            rep["leftout"] = {"method": "rectified vertical disparity of the corners of pairs left out of the "
                                        "calibration (both cameras and the rig fitted on the other pairs)",
                              **self.leftout.to_json()}
            rep["leftout_vertical_rms_px"] = rep["leftout"]["leftout_vertical_rms_px"]
        rep["rig_selection"] = self.choice.to_json()
        return rep


def focal_warnings(left: CalibrationResult, right: CalibrationResult, rel: float = 0.05) -> list[str]:
    """Warnings for a focal length the photos do not constrain (1-sigma above ``rel`` of the
    value in either camera's own calibration): a rig can still rectify consistently (one shared
    focal error), but metric depth Z = f B / d scales with that error."""
    out = []
    for side, res in (("left", left), ("right", right)):
        names = res.camera.spec.param_names
        k = names.index("fx") if "fx" in names else names.index("f")
        f, sd = float(res.camera.params[k]), float(res.param_std[k])
        if f > 0 and sd > rel * f:
            out.append(f"the {side} camera's focal length is not constrained by these photos ({f:.1f} +- {sd:.1f} px "
                       "alone): the rig can rectify consistently, but metric depth scales with the focal error; "
                       "tilt the board 20-45 degrees in some pairs")
    return out


def calibrate_rig(left_paths, right_paths, board: BoardSpec, config: CalibrationConfig | None = None,
                  options: RigOptions | None = None, *, progress: bool = False, on_camera=None) -> RigCalibration:
    """Calibrate a stereo rig from paired photos (pair k = ``left_paths[k]``, ``right_paths[k]``).

    The board is detected once per image (a chessboard: OpenCV's sector-based corners, then
    re-refined with ``cornerSubPix``: two corner sets); each camera is calibrated alone
    (``left/`` and ``right/`` of the outputs; ``on_camera(side, cal)`` is called with
    "left"/"right" as soon as each is done), the pairs are matched (:func:`pair_runs`), the
    recipe and the corner set are chosen (:func:`calib.stereo_select.choose_rig`), the rig is
    fitted on every pair and judged by the gate (:func:`calib.stereo_select.rig_quality`). A
    failed gate is a result (``ok`` False), not an exception; ValueError /
    :class:`calib.calibrate.CalibrationError` for input that cannot make a rig."""
    from calib.calibrate_images import detect_images, refine_run
    from calib.stereo_select import choose_rig, fit_rig, recipe, rig_quality

    left_paths, right_paths = _check_paths(left_paths, "left_paths"), _check_paths(right_paths, "right_paths")
    if len(left_paths) != len(right_paths):
        raise ValueError(f"left_paths/right_paths: {len(left_paths)} left and {len(right_paths)} right images; "
                         "pairs need equal counts")
    if not isinstance(board, BoardSpec):
        raise TypeError(f"board: expected a calib.boards.BoardSpec, got {type(board).__name__}")
    config = config or CalibrationConfig()
    options = options or RigOptions()
    two_sets = board.kind == "chessboard"
    runs, cams = {}, {}
    for side, paths in (("left", left_paths), ("right", right_paths)):
        run = detect_images(paths, board, progress=progress, workers=options.threads, refine=not two_sets)
        runs[side] = {"sb": run, "subpix": refine_run(run)} if two_sets else {"subpix": run}
        own = runs[side]["sb" if options.corners == "sb" else "subpix"]
        cams[side] = calibrate_detections(paths, own, config)
        if on_camera is not None:
            on_camera(side, cams[side])
    L, R = cams["left"], cams["right"]
    if L.run.image_size != R.run.image_size:
        raise ValueError(f"left_paths/right_paths: image sizes differ ({L.run.image_size} vs {R.run.image_size})")
    pairs = {c: pair_runs(left_paths, right_paths, runs["left"][c], runs["right"][c], L.result.camera,
                          R.result.camera) for c in runs["left"]}
    if len({len(p) for p in pairs.values()}) > 1:  # a pair lost in one set only: score the common pairs
        pairs = {"subpix": pairs["subpix"]} if options.corners != "sb" else {"sb": pairs["sb"]}
    expected = float(np.hypot(L.result.sigma_px, R.result.sigma_px))
    threshold = max(options.max_vertical_px, 3.0 * expected)
    choice = choose_rig({c: (p.left, p.right) for c, p in pairs.items()}, L.run.image_size, recipe=options.recipe,
                        corners=options.corners if options.corners in pairs else "auto", folds=options.folds,
                        config=config, threshold_px=threshold)
    rec, used = recipe(choice.recipe), pairs[choice.corners]
    base = rec.per_camera == "recon" and rec.constraint_flags() == 0 and not rec.joint
    cl, cr = L.result.camera, R.result.camera
    if base and choice.corners != ("sb" if options.corners == "sb" else "subpix"):
        cl, cr = (_camera_of(runs[s][choice.corners], config) for s in ("left", "right"))
    st = fit_rig(used.left, used.right, L.run.image_size, rec, config=config, alpha=options.alpha,
                 left_camera=cl if base else None, right_camera=cr if base else None)
    st.pairs_rejected = used.rejected + st.pairs_rejected
    leftout = choice.score
    # the gate judges the median held-out pair, the statistic that triggers the rescue: one fold
    # whose training pairs cannot pin the rig is not the rig of all pairs
    quality = rig_quality(st.rectified_vertical_rms_px, leftout.median_pair_px if leftout is not None else float("nan"),
                          (L.result.sigma_px, R.result.sigma_px), max_px=options.max_vertical_px,
                          advice=[a for c in (L, R) for a in c.coverage.advice])
    return RigCalibration(st, L, R, choice.recipe, choice.corners, choice, leftout, quality,
                          focal_warnings(L.result, R.result))


def _camera_of(run: DetectionRun, config):
    from calib.calibrate import calibrate_camera

    return calibrate_camera(run.observations, run.image_size, config).camera


def write_rig_files(out_dir, rig: RigCalibration) -> dict:
    """``out_dir``/report.json, calibration.yaml (marked failed when the gate failed) and
    cameras.txt of the rig, and each camera's files in ``left/`` and ``right/``; returns the
    rig's report."""
    from calib.files import write_cameras_txt, write_opencv_yaml, write_report

    out_dir = Path(out_dir)
    write_camera_files(out_dir / "left", rig.left)
    write_camera_files(out_dir / "right", rig.right)
    rep = rig.to_json()
    write_report(out_dir / "report.json", rep)
    write_opencv_yaml(out_dir / "calibration.yaml", rig=rig.stereo, status="ok" if rig.ok else "failed",
                      failure=rig.quality.cause)
    write_cameras_txt(out_dir / "cameras.txt", [rig.stereo.left, rig.stereo.right])
    return rep

