"""Stereo rigs that stay consistent whatever the capture: left-out rectification error,
recipe selection by it, and a quality gate.

The error that matters for a rig is the vertical disparity of the same physical point after
rectification: after ``stereoRectify`` a point seen at row v in the left image must be at row v
in the right one, whatever its depth. For board corners it does not depend on the board pose, so
it can be measured on pairs LEFT OUT of the calibration: the pairs are split into ``folds``
interleaved groups; each group is held out in turn, the rig is fitted on the others, and the
held-out pairs' corners are rectified with that rig (:func:`leftout_vertical_disparity`). Per
fold and per pair RMS are kept.

When the photos cannot constrain a parameter (the focal length from nearly fronto-parallel
boards, distortion where no corners were seen, the principal point), an unconstrained fit lets
it run off, and two independently fitted cameras then disagree on the board's pose so much that
the rig is wrong by many pixels. :data:`RECIPES` are ways to fit a rig (recon's per-camera
calibration, OpenCV's textbook recipe, joint refinement, one shared focal length, ...);
:func:`select_rig` scores several by their left-out vertical disparity. ``recon calibrate``
uses :func:`choose_rig`: a fixed recipe, the corner set chosen by a margin, the rescue recipes
only when the rig fails the gate (the rule and ``bench/bench_stereo_calib.py`` are in
docs/calibration.md).

:func:`rig_quality` is the gate: a rig whose in-sample or left-out vertical disparity is beyond
what the corner noise explains (``max(max_px, noise_factor x expected)``, expected =
sqrt(sigma_left^2 + sigma_right^2), the per-axis corner noise of the two images) is marked
failed, with the cause and the advice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calib.calibrate import (
    CalibrationConfig,
    CalibrationError,
    Observation,
    _deterministic_opencv,
    calibrate_camera,
)
from calib.cameras import Camera
from calib.stereo import (
    StereoResult,
    stereo_calibrate,
)

__all__ = [
    "CORNER_MARGIN",
    "DEFAULT_CORNERS",
    "DEFAULT_RECIPE",
    "EXTRA_RECIPES",
    "RECIPES",
    "RESCUE_RECIPES",
    "LeftOutScore",
    "RigChoice",
    "RigQuality",
    "RigRecipe",
    "RigSelection",
    "choose_corner_set",
    "choose_rig",
    "fit_rig",
    "leftout_vertical_disparity",
    "pair_vertical_disparity",
    "recipe",
    "recipes_for",
    "rig_quality",
    "select_rig",
]


@dataclass(frozen=True)
class RigRecipe:
    """How a rig is fitted from paired board observations.

    name: short identifier (reports, ``--rig-recipe``).
    per_camera: "recon" (:func:`calib.calibrate.calibrate_camera`: outlier rejection, ``model``)
        or "opencv" (plain ``cv2.calibrateCamera`` with OpenCV's default flags: k1 k2 p1 p2 k3,
        stored as FULL_OPENCV with k4..k6 = 0; OpenCV's textbook recipe).
    model: COLMAP model of the "recon" per-camera fit; None: the ``config``'s (``--model``;
        "auto" cross-validates per fold), OPENCV without a config.
    fix_principal_point: hold cx, cy at the image centre ((W - 1) / 2, (H - 1) / 2).
    fix_aspect: fx = fy.
    radial_terms: number of free radial terms (k1, k2, k3), None for the model's own.
    zero_tangent: p1 = p2 = 0.
    joint: after the per-camera fits, refine both cameras' intrinsics together with the rig
        (``cv2.stereoCalibrate`` with the intrinsics as a guess, the same constraints): the two
        cameras must then agree on each board pose, which pins what one camera alone cannot.
    same_focal: (joint only) one focal length for both cameras (``CALIB_SAME_FOCAL_LENGTH``),
        started from the geometric mean of the two per-camera fits: when neither camera alone
        constrains its focal length, two independent guesses disagree and the rig absorbs the
        disagreement in a spurious forward baseline component.
    """

    name: str
    description: str
    per_camera: str = "recon"
    model: str | None = None
    fix_principal_point: bool = False
    fix_aspect: bool = False
    radial_terms: int | None = None
    zero_tangent: bool = False
    joint: bool = False
    same_focal: bool = False

    def __post_init__(self):
        if self.per_camera not in ("recon", "opencv"):
            raise ValueError(f"per_camera: expected 'recon' or 'opencv', got {self.per_camera!r}")
        if self.radial_terms is not None and not 0 <= self.radial_terms <= 3:
            raise ValueError(f"radial_terms: expected 0..3 or None, got {self.radial_terms}")
        if self.same_focal and not self.joint:
            raise ValueError("same_focal: only meaningful with joint=True")

    def constraint_flags(self) -> int:
        """OpenCV flags of the constraints (OR-ed into the model's own)."""
        import cv2

        f = 0
        if self.fix_principal_point:
            f |= cv2.CALIB_FIX_PRINCIPAL_POINT
        if self.fix_aspect:
            f |= cv2.CALIB_FIX_ASPECT_RATIO
        if self.zero_tangent:
            f |= cv2.CALIB_ZERO_TANGENT_DIST
        if self.radial_terms is not None:
            for k, flag in ((1, cv2.CALIB_FIX_K1), (2, cv2.CALIB_FIX_K2), (3, cv2.CALIB_FIX_K3)):
                if k > self.radial_terms:
                    f |= flag
        return f


RECIPES: tuple[RigRecipe, ...] = (
    RigRecipe("recon", "each camera by recon's calibration (outlier rejection), rig with fixed intrinsics"),
    RigRecipe("opencv", "OpenCV's textbook recipe: calibrateCamera per camera (default flags), "
              "stereoCalibrate with fixed intrinsics", per_camera="opencv"),
    RigRecipe("joint", "each camera by recon's calibration, then both refined jointly with the rig", joint=True),
    RigRecipe("joint-same-focal", "one focal length for both cameras, principal point at the centre, fx = fy, "
              "k1 only, refined jointly with the rig (for captures that cannot constrain the focal length)",
              fix_principal_point=True, fix_aspect=True, radial_terms=1, zero_tangent=True, joint=True,
              same_focal=True),
)
"""Recipes scored by :func:`select_rig`, in order of preference (standard first). Measured on
a poorly conditioned capture (``bench/bench_stereo_calib.py``), recipes that only constrain one
camera at a time (principal point held, k1 only, fixed intrinsics in the rig) were worse than
the ones kept here and are not scored by default: pass ``recipes=`` to score others."""
EXTRA_RECIPES: tuple[RigRecipe, ...] = (
    RigRecipe("joint-centred-k1", "principal point at the image centre, fx = fy, k1 only, no tangential terms; "
              "both cameras refined jointly with the rig",
              fix_principal_point=True, fix_aspect=True, radial_terms=1, zero_tangent=True, joint=True),
    RigRecipe("pinhole-same-focal", "one focal length for both cameras, principal point at the centre, fx = fy, "
              "no distortion, refined jointly with the rig",
              fix_principal_point=True, fix_aspect=True, radial_terms=0, zero_tangent=True, joint=True,
              same_focal=True),
    RigRecipe("joint-centred", "joint refinement, principal point at the image centre, fx = fy",
              fix_principal_point=True, fix_aspect=True, joint=True),
    RigRecipe("centred-k1", "principal point at the centre, fx = fy, k1 only, no tangential terms; rig with "
              "fixed intrinsics", fix_principal_point=True, fix_aspect=True, radial_terms=1, zero_tangent=True),
)
_RECIPE_BY_NAME = {r.name: r for r in RECIPES + EXTRA_RECIPES}


def recipes_for(model: str) -> tuple[RigRecipe, ...]:
    """The default recipes that apply to a per-camera ``model`` (fisheye: recon and joint)."""
    if model == "OPENCV_FISHEYE":
        return tuple(r for r in RECIPES if r.per_camera == "recon" and r.constraint_flags() == 0)
    return RECIPES


def _camera_key(recipe: RigRecipe) -> tuple:
    """Recipes with equal keys fit each camera identically (the rig step differs)."""
    return (recipe.per_camera, recipe.model, recipe.constraint_flags())


def _fit_camera(obs: list[Observation], size: tuple[int, int], recipe: RigRecipe,
                config: CalibrationConfig | None, cache: dict | None = None) -> Camera:
    if cache is None:
        return _fit_camera_uncached(obs, size, recipe, config)
    key = (_camera_key(recipe), tuple(o.name for o in obs))
    if key not in cache:
        try:
            cache[key] = _fit_camera_uncached(obs, size, recipe, config)
        except CalibrationError as e:
            cache[key] = e
    if isinstance(cache[key], Exception):
        raise cache[key]
    return cache[key]


def _fit_camera_uncached(obs: list[Observation], size: tuple[int, int], recipe: RigRecipe,
                         config: CalibrationConfig | None) -> Camera:
    import cv2

    if recipe.per_camera == "opencv":
        from calib.calibrate import _camera_from_opencv

        if config is not None and config.model == "OPENCV_FISHEYE":
            raise CalibrationError("recipe opencv: OpenCV's perspective recipe does not apply to OPENCV_FISHEYE")
        obj = [np.ascontiguousarray(o.object_points, dtype=np.float32).reshape(-1, 1, 3) for o in obs]
        img = [np.ascontiguousarray(o.corners, dtype=np.float32).reshape(-1, 1, 2) for o in obs]
        if len(obs) < 3:
            raise CalibrationError(f"need at least 3 views to calibrate, got {len(obs)}")
        try:
            with _deterministic_opencv():
                _, K, D, _, _ = cv2.calibrateCamera(obj, img, tuple(size), None, None,
                                                    flags=recipe.constraint_flags())
        except cv2.error as e:
            raise CalibrationError(f"OpenCV calibration failed: {e.err or e}") from None
        return _camera_from_opencv("FULL_OPENCV", tuple(size), K, D)
    base = config or CalibrationConfig(model=recipe.model or "OPENCV")
    flags = recipe.constraint_flags()
    model = recipe.model or base.model
    if flags and model == "OPENCV_FISHEYE":
        raise CalibrationError(f"recipe {recipe.name}: its constraints are for perspective models, not OPENCV_FISHEYE")
    cfg = CalibrationConfig(model=model, reject_outliers=base.reject_outliers, corner_k=base.corner_k,
                            view_k=base.view_k, min_outlier_px=base.min_outlier_px, max_rounds=base.max_rounds,
                            min_views=base.min_views, min_corners=base.min_corners,
                            extra_flags=base.extra_flags | flags, cv_folds=base.cv_folds,
                            auto_candidates=base.auto_candidates, auto_tolerance=base.auto_tolerance)
    return calibrate_camera(list(obs), size, cfg).camera


def fit_rig(left_obs: list[Observation], right_obs: list[Observation], size: tuple[int, int], recipe: RigRecipe, *,
            config: CalibrationConfig | None = None, left_camera: Camera | None = None,
            right_camera: Camera | None = None, alpha: float = 0.0, criteria: tuple[int, float] = (100, 1e-10),
            _cache: dict | None = None) -> StereoResult:
    """Fit a rig with ``recipe`` on paired observations (already paired and label-aligned:
    view k of each list shows the board at the same moment, same corner ids).

    ``left_camera``/``right_camera``: per-camera intrinsics already fitted by the recipe (e.g. on
    all of that camera's views, pairs or not); otherwise they are fitted on the pairs.
    ``config``: the per-camera calibration options (outlier rejection) of "recon" recipes.
    ``criteria``: (iterations, epsilon) of the rig solve (:func:`calib.stereo.stereo_calibrate`)."""
    if len(left_obs) != len(right_obs):
        raise ValueError(f"left_obs/right_obs: expected as many left as right views, got {len(left_obs)} and "
                         f"{len(right_obs)}")
    cl = left_camera if left_camera is not None else _fit_camera(left_obs, size, recipe, config, _cache)
    cr = right_camera if right_camera is not None else _fit_camera(right_obs, size, recipe, config, _cache)
    if recipe.joint and cl.model != cr.model:
        raise CalibrationError(f"joint refinement needs one model for both cameras, got {cl.model} and {cr.model}")
    flags = recipe.constraint_flags() if recipe.joint else 0
    if recipe.same_focal:
        import cv2

        f0 = float(np.sqrt(np.prod([np.mean(c.focal) for c in (cl, cr)])))
        cl, cr = (_with_focal(c, f0) for c in (cl, cr))
        flags |= cv2.CALIB_SAME_FOCAL_LENGTH
    return stereo_calibrate(list(left_obs), list(right_obs), cl, cr, fix_intrinsics=not recipe.joint, alpha=alpha,
                            extra_flags=flags, criteria=criteria)


def _with_focal(cam: Camera, f: float) -> Camera:
    """``cam`` with its focal length(s) set to ``f`` pixels."""
    p = np.array(cam.params, dtype=np.float64)
    names = cam.spec.param_names
    for k, n in enumerate(names):
        if n in ("f", "fx", "fy"):
            p[k] = f
    return cam.with_params(p)


def _rms(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else float("nan")


@dataclass
class LeftOutScore:
    """Left-out rectified vertical disparity of one recipe (pixels, RMS over corners)."""

    recipe: str
    rms_px: float  # over every held-out corner of every fold
    fold_rms_px: list[float]  # per fold
    pair_rms_px: dict[str, float]  # per held-out pair ("left | right" names)
    in_sample_rms_px: float = float("nan")  # the rig fitted on all pairs, on all pairs
    failed: str = ""  # why the recipe could not be fitted, if it could not
    rms_on_px: dict[str, float] = field(default_factory=dict)  # the same fold rigs on other corner sets

    @property
    def median_pair_px(self) -> float:
        """Median over the held-out pairs of their RMS (pixels): robust to one fold whose
        training pairs cannot pin the rig (it runs off while the rig of all pairs does not)."""
        v = [x for x in self.pair_rms_px.values() if np.isfinite(x)]
        return float(np.median(v)) if v and not self.failed else float("inf")

    def to_json(self) -> dict:
        def r(x):
            return None if not np.isfinite(x) else round(float(x), 4)

        d = {"recipe": self.recipe, "leftout_vertical_rms_px": r(self.rms_px),
             "in_sample_vertical_rms_px": r(self.in_sample_rms_px),
             "fold_vertical_rms_px": [r(x) for x in self.fold_rms_px],
             "pair_vertical_rms_px": {k: r(v) for k, v in self.pair_rms_px.items()}}
        if self.rms_on_px:
            d["leftout_vertical_rms_px_on"] = {k: r(v) for k, v in self.rms_on_px.items()}
        if self.failed:
            d["failed"] = self.failed
        return d


FOLD_CRITERIA = (30, 1e-6)
"""Rig-solve criteria of the fold fits: OpenCV's default. An ill-conditioned recipe otherwise runs
the final fit's 100 iterations in every fold (measured: 1.7 s per solve on a loaded 2-core
machine for a 14-pair 7x5 capture); the final rig is solved with the tighter default."""


def _folds(n: int, folds: int) -> list[list[int]]:
    folds = max(2, min(folds, n))
    # Interleaved: pairs are often taken in sweeps, so neighbours are alike.
    return [list(range(k, n, folds)) for k in range(folds)]


def leftout_vertical_disparity(left_obs: list[Observation], right_obs: list[Observation], size: tuple[int, int],
                               recipe: RigRecipe, *, folds: int = 5,
                               config: CalibrationConfig | None = None,
                               also_on: dict[str, tuple[list[Observation], list[Observation]]] | None = None,
                               _cache: dict | None = None) -> LeftOutScore:
    """Rectified vertical disparity on pairs left out of the calibration (module docstring).

    ``left_obs``/``right_obs``: paired, label-aligned observations (see :func:`fit_rig`); each
    fold's rig is fitted on the other pairs only (both cameras' intrinsics included; the rig
    solve with :data:`FOLD_CRITERIA`). A fold
    whose training set cannot be fitted makes the recipe fail (``failed`` says why).
    ``also_on``: other corner sets of the SAME pairs (name -> (left, right) observations, same
    order); each fold's rig is also measured on their held-out pairs (``rms_on_px[name]``, pooled
    RMS), so that rigs fitted on different corner sets can be compared on common ground."""
    n = len(left_obs)
    if n != len(right_obs):
        raise ValueError(f"left_obs/right_obs: expected as many left as right views, got {n} and {len(right_obs)}")
    if n < 4:
        raise ValueError(f"left_obs: a left-out evaluation needs at least 4 pairs, got {n}")
    also_on = dict(also_on or {})
    for k, (a, b) in also_on.items():
        if len(a) != n or len(b) != n:
            raise ValueError(f"also_on[{k!r}]: expected {n} left and right views (the same pairs), got {len(a)} "
                             f"and {len(b)}")
    fold_rms, pair_rms, pooled = [], {}, []
    pooled_on = {k: [] for k in also_on}
    try:
        for g in _folds(n, folds):
            train = [i for i in range(n) if i not in g]
            rig = fit_rig([left_obs[i] for i in train], [right_obs[i] for i in train], size, recipe, config=config,
                          criteria=FOLD_CRITERIA, _cache=_cache)
            dv_fold = []
            for i in g:
                dv = pair_vertical_disparity(rig, left_obs[i], right_obs[i])
                pair_rms[f"{left_obs[i].name} | {right_obs[i].name}"] = _rms(dv)
                dv_fold.append(dv)
            dv_fold = np.concatenate(dv_fold)
            if not np.all(np.isfinite(dv_fold)):
                raise CalibrationError("held-out corners cannot be rectified (non-finite)")
            fold_rms.append(_rms(dv_fold))
            pooled.append(dv_fold)
            for k, (a, b) in also_on.items():
                pooled_on[k].extend(pair_vertical_disparity(rig, a[i], b[i]) for i in g)
    except (CalibrationError, ValueError) as e:
        return LeftOutScore(recipe.name, float("inf"), fold_rms, pair_rms, failed=str(e).splitlines()[0])
    on = {k: _rms(np.concatenate(v)) for k, v in pooled_on.items()}
    return LeftOutScore(recipe.name, _rms(np.concatenate(pooled)), fold_rms, pair_rms,
                        rms_on_px={k: (v if np.isfinite(v) else float("inf")) for k, v in on.items()})


def pair_vertical_disparity(rig: StereoResult, a: Observation, b: Observation) -> np.ndarray:
    """v_left - v_right [N] (pixels) of the corners of one pair seen in both images (common
    ids), rectified with ``rig``'s cameras and rectification."""
    from calib.stereo import _rectify_points

    common, ia, ib = np.intersect1d(a.ids, b.ids, return_indices=True)
    if not len(common):
        return np.zeros(0)
    ua = _rectify_points(rig.left, a.corners[ia], rig.rectification.R1, rig.rectification.P1)
    ub = _rectify_points(rig.right, b.corners[ib], rig.rectification.R2, rig.rectification.P2)
    return ua[:, 1] - ub[:, 1]


@dataclass
class RigSelection:
    """The recipe chosen by :func:`select_rig` and every recipe's score."""

    chosen: str
    scores: list[LeftOutScore]
    folds: int
    tolerance: float

    def score(self, name: str) -> LeftOutScore:
        for s in self.scores:
            if s.recipe == name:
                return s
        raise KeyError(name)

    def to_json(self) -> dict:
        return {"chosen": self.chosen, "folds": self.folds, "tolerance": self.tolerance,
                "rule": "lowest left-out rectified vertical disparity; the first listed recipe within "
                        "tolerance x the best is kept",
                "recipes": {r.name: r.description for r in RECIPES + EXTRA_RECIPES
                            if any(s.recipe == r.name for s in self.scores)},
                "scores": [s.to_json() for s in self.scores]}


def recipe(name: str) -> RigRecipe:
    """The recipe of :data:`RECIPES` called ``name``."""
    if name not in _RECIPE_BY_NAME:
        raise ValueError(f"recipe: expected one of {', '.join(_RECIPE_BY_NAME)}, got {name!r}")
    return _RECIPE_BY_NAME[name]


def select_rig(left_obs: list[Observation], right_obs: list[Observation], size: tuple[int, int], *,
               recipes: tuple[RigRecipe, ...] = RECIPES, folds: int = 5, tolerance: float = 1.0,
               config: CalibrationConfig | None = None) -> RigSelection:
    """Score ``recipes`` by :func:`leftout_vertical_disparity` and choose: the first recipe (in
    the given order, simplest and most standard first) whose left-out RMS is within
    ``tolerance`` x the best. Raises :class:`CalibrationError` when no recipe can be fitted."""
    if tolerance < 1:
        raise ValueError(f"tolerance: expected >= 1, got {tolerance}")
    cache: dict = {}  # per-camera fits shared by recipes that fit the cameras alike, per fold
    scores = [leftout_vertical_disparity(left_obs, right_obs, size, r, folds=folds, config=config, _cache=cache)
              for r in recipes]
    ok = [s for s in scores if not s.failed and np.isfinite(s.rms_px)]
    if not ok:
        raise CalibrationError("no rig recipe could be fitted on the left-out folds: "
                               + "; ".join(f"{s.recipe}: {s.failed}" for s in scores))
    best = min(s.rms_px for s in ok)
    chosen = next(s for s in ok if s.rms_px <= best * tolerance)
    return RigSelection(chosen.recipe, scores, max(2, min(folds, len(left_obs))), tolerance)


@dataclass
class RigQuality:
    """Verdict of :func:`rig_quality`."""

    ok: bool
    in_sample_px: float  # rectified vertical RMS of the rig on its own pairs
    leftout_px: float  # ... on left-out pairs (NaN: not evaluated)
    expected_px: float  # what the corner noise explains: sqrt(sigma_l^2 + sigma_r^2)
    threshold_px: float
    cause: str = ""
    advice: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        def r(x):
            return None if not np.isfinite(x) else round(float(x), 4)

        return {"status": "ok" if self.ok else "failed", "in_sample_vertical_rms_px": r(self.in_sample_px),
                "leftout_vertical_rms_px": r(self.leftout_px), "expected_from_corner_noise_px": r(self.expected_px),
                "threshold_px": r(self.threshold_px), "cause": self.cause, "advice": list(self.advice)}


def rig_quality(in_sample_px: float, leftout_px: float, corner_sigma_px: tuple[float, float], *,
                max_px: float = 1.0, noise_factor: float = 3.0, advice: list[str] = ()) -> RigQuality:
    """The quality gate. ``corner_sigma_px``: per-axis corner noise (pixels) of the left and
    right camera (e.g. ``CalibrationResult.sigma_px``). The rig fails when its in-sample
    rectified vertical RMS or ``leftout_px`` (:func:`calib.rig_calibration.calibrate_rig` passes
    the median held-out pair's RMS, :attr:`LeftOutScore.median_pair_px`, the statistic of the
    rescue) exceeds ``max(max_px, noise_factor * expected)``; ``advice``
    (the coverage advice of the two cameras) is passed on with the failure."""
    if max_px <= 0 or noise_factor <= 0:
        raise ValueError(f"max_px/noise_factor: expected > 0, got {max_px} and {noise_factor}")
    sl, sr = (float(s) for s in corner_sigma_px)
    expected = float(np.hypot(sl, sr))
    thr = max(float(max_px), noise_factor * expected)
    bad = []
    if not np.isfinite(in_sample_px) or in_sample_px > thr:
        bad.append(f"in-sample {in_sample_px:.3f} px")
    if np.isfinite(leftout_px) and leftout_px > thr:
        bad.append(f"left-out {leftout_px:.3f} px")
    if not bad:
        return RigQuality(True, in_sample_px, leftout_px, expected, thr)
    cause = (f"rectified vertical disparity ({', '.join(bad)}) is beyond what the corner noise explains "
             f"({expected:.3f} px expected, threshold {thr:.3f} px): the two cameras' calibrations do not agree "
             "with each other, usually because the photos cannot constrain the focal length or the distortion")
    adv = list(dict.fromkeys(advice)) or ["tilt the board 20-45 degrees in some pairs and cover the image corners"]
    return RigQuality(False, in_sample_px, leftout_px, expected, thr, cause, adv)


DEFAULT_RECIPE = "joint"
"""The recipe of ``--rig-recipe auto`` (:func:`choose_rig`): fixed, because the recipes differ by
less than the left-out score's own noise on captures of 8-25 pairs (docs/calibration.md,
``bench/bench_stereo_calib.py``), so choosing among them by that score fits the noise."""
RESCUE_RECIPES = ("joint-same-focal",)
"""Scored only when the default fails the quality threshold on most held-out pairs (a capture
that cannot constrain each camera's focal length: the default's rig is off by pixels, far beyond
the score's noise)."""
DEFAULT_CORNERS = "sb"
"""OpenCV's sector-based corners: the rig is fitted on them unless another set wins clearly on
every set (:data:`CORNER_MARGIN`)."""
CORNER_MARGIN = 0.95
"""Another corner set replaces :data:`DEFAULT_CORNERS` only when the rigs fitted on it rectify
the held-out pairs below this fraction of the default's rigs' error measured on EVERY corner
set's held-out corners (its own and the default's). A rig measured on the corners it was fitted
on has a home advantage of 1-4 % (docs/calibration.md), so a win on one set alone, or by less,
is not evidence that its rig is better."""


@dataclass
class RigChoice:
    """What :func:`choose_rig` chose and the scores it saw: ``scores[corner set][recipe]``."""

    recipe: str
    corners: str
    scores: dict[str, dict[str, LeftOutScore]]
    folds: int
    rule: str
    rescued: bool = False

    @property
    def score(self) -> LeftOutScore | None:
        return self.scores.get(self.corners, {}).get(self.recipe)

    def to_json(self) -> dict:
        return {"recipe": self.recipe, "corners": self.corners, "folds": self.folds, "rule": self.rule,
                "rescued": self.rescued,
                "scores": {c: [s.to_json() for s in by.values()] for c, by in self.scores.items()}}


def choose_corner_set(leftout_on: dict[str, dict[str, float]], default: str, *,
                      margin: float = CORNER_MARGIN) -> str:
    """The corner set of :func:`choose_rig` from the left-out scores of its rigs.

    ``leftout_on[fitted][measured]``: left-out rectified vertical RMS (pixels) of the rigs
    fitted on corner set ``fitted``, measured on the held-out pairs' corners of set
    ``measured`` (every set given for every set). ``default`` is kept unless another set scores
    below ``margin`` x the default's on EVERY measured set; of several such sets, the one with
    the lowest worst-case ratio to the default wins."""
    if default not in leftout_on:
        raise ValueError(f"default: expected one of {', '.join(leftout_on)}, got {default!r}")
    if not 0 < margin <= 1:
        raise ValueError(f"margin: expected 0 < margin <= 1, got {margin}")
    measured = list(leftout_on)

    def ratio(c, e):
        a, b = leftout_on[c].get(e, float("inf")), leftout_on[default].get(e, float("inf"))
        if not np.isfinite(a):
            return float("inf")
        return a / b if np.isfinite(b) and b > 0 else 0.0

    wins = [c for c in measured if c != default and all(ratio(c, e) < margin for e in measured)]
    return min(wins, key=lambda c: max(ratio(c, e) for e in measured)) if wins else default


def choose_rig(sets: dict[str, tuple[list[Observation], list[Observation]]], size: tuple[int, int], *,
               recipe: str = "auto", corners: str = "auto", folds: int = 5,
               config: CalibrationConfig | None = None, threshold_px: float = float("inf")) -> RigChoice:
    """The rig recipe and corner set (the rule of ``recon calibrate --rig-recipe auto
    --corners auto``).

    ``sets``: corner set name ("subpix", "sb") -> paired, label-aligned (left, right)
    observations of the SAME pairs. ``recipe`` / ``corners``: "auto" or a name to force.
    ``threshold_px``: the quality gate's threshold (pixels), which triggers the rescue.

    Rule: the recipe is :data:`DEFAULT_RECIPE` (fixed; see its note). It is scored by the
    left-out rectified vertical disparity on every corner set given, each set's fold rigs
    measured on the held-out corners of every set; :data:`DEFAULT_CORNERS` is kept unless
    another set's rigs score below :data:`CORNER_MARGIN` x the default's on every set
    (:func:`choose_corner_set`). Only when the chosen rigs' median held-out pair exceeds
    ``threshold_px`` (most pairs, not one fold whose training pairs happen to be degenerate)
    are the :data:`RESCUE_RECIPES` scored too, and the lowest score of all wins. With fewer
    than 4 pairs nothing is scored and the defaults are used."""
    if not sets:
        raise ValueError("sets: expected at least one corner set")
    if recipe != "auto" and recipe not in _RECIPE_BY_NAME:
        raise ValueError(f"recipe: expected 'auto' or one of {', '.join(_RECIPE_BY_NAME)}, got {recipe!r}")
    if corners != "auto" and corners not in sets:
        raise ValueError(f"corners: expected 'auto' or one of {', '.join(sets)}, got {corners!r}")
    names = list(sets) if corners == "auto" else [corners]
    n = {len(sets[c][0]) for c in names}
    if len(n) != 1 or any(len(sets[c][0]) != len(sets[c][1]) for c in names):
        raise ValueError("sets: every corner set must hold the same pairs (as many left as right views)")
    model = config.model if config is not None else "OPENCV"
    default = DEFAULT_RECIPE if recipe == "auto" else recipe
    if recipe == "auto" and model == "OPENCV_FISHEYE":
        default = "joint"
    first = DEFAULT_CORNERS if DEFAULT_CORNERS in names else names[0]
    folds = max(2, min(folds, n.pop()))
    rule = (f"recipe {default} (fixed); corners {first} unless another set's rigs score below {CORNER_MARGIN} x "
            "its rigs' left-out vertical disparity measured on every set's held-out corners")
    if len(sets[first][0]) < 4:
        return RigChoice(default, first, {}, folds, rule + "; fewer than 4 pairs: nothing left out, defaults used")
    caches = {c: {} for c in names}

    def score(c, r):
        return leftout_vertical_disparity(*sets[c], size, _RECIPE_BY_NAME[r], folds=folds, config=config,
                                          also_on={e: sets[e] for e in names if e != c}, _cache=caches[c])

    scores = {c: {default: score(c, default)} for c in names}
    on = {c: {e: (s.rms_px if e == c else s.rms_on_px.get(e, float("inf"))) for e in names}
          for c, s in ((c, scores[c][default]) for c in names)}
    chosen = choose_corner_set(on, first)
    best = scores[chosen][default]
    if recipe != "auto" or (np.isfinite(best.rms_px) and best.median_pair_px <= threshold_px):
        if not np.isfinite(best.rms_px):
            raise CalibrationError(f"rig recipe {default} could not be fitted on the left-out folds: {best.failed}")
        return RigChoice(default, chosen, scores, folds, rule)
    rescue = [r.name for r in recipes_for(model) if r.name in RESCUE_RECIPES]
    for c in names:
        for r in rescue:
            scores[c][r] = score(c, r)
    ok = [(s.rms_px, c, r) for c, by in scores.items() for r, s in by.items() if not s.failed and np.isfinite(s.rms_px)]
    if not ok:
        raise CalibrationError("no rig recipe could be fitted on the left-out folds: " + "; ".join(
            f"{c}/{r}: {s.failed}" for c, by in scores.items() for r, s in by.items()))
    _, c, r = min(ok)
    return RigChoice(r, c, scores, folds, rule + f"; {default} on {chosen} corners: median held-out pair "
                     f"{best.median_pair_px:.3f} px, above the quality threshold {threshold_px:.3f} px: "
                     f"{', '.join(rescue)} scored too, the lowest kept", rescued=True)
