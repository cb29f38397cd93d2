"""Depth of a stereo image pair, files in and files out: the job behind ``recon stereo``.

Calibrated: the rig file (refused when ``recon calibrate`` marked it failed, unless allowed).
Uncalibrated: SIFT matches and the fundamental matrix of :func:`recon.twoview.estimate_fundamental`
(the one two-view estimator, PoseLib's LO-RANSAC by default) rectify the pair: disparity only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.stereo._disparity import SGBMConfig
from recon.stereo._pipeline import StereoConfig, StereoOutput, stereo_depth

__all__ = ["StereoPairOptions", "StereoPairResult", "stereo_pair", "uncalibrated_matches"]

_MODES = ("sgbm", "3way", "hh")


@dataclass(frozen=True)
class StereoPairOptions:
    """Options of :func:`stereo_pair`.

    calib:              stereo calibration file (None: uncalibrated, disparity only).
    allow_failed_calib: use a rig ``recon calibrate`` marked failed (refused otherwise).
    min_disparity, num_disparities: search range (pixels; num rounded up to a multiple of 16); num None =
                        automatic from sparse matches (min_disparity then only shifts it).
    block_size, mode, wls: SGBM block size (odd), variant ("sgbm", "3way", "hh"), WLS filter.
    alpha:              rectification crop (0 valid pixels only, 1 all source pixels).
    disparity_sigma_px: disparity error for the depth uncertainty map.
    max_depth:          drop points farther than this (units of T; 0 = keep).
    ascii_ply:          write an ASCII PLY instead of binary.
    min_inliers:        uncalibrated: fewer epipolar inliers than this -> no depth.
    """

    calib: str | Path | None = None
    allow_failed_calib: bool = False
    min_disparity: int | None = None
    num_disparities: int | None = None
    block_size: int = 5
    mode: str = "sgbm"
    wls: bool = True
    alpha: float = 0.0
    disparity_sigma_px: float = 1.0
    max_depth: float = 0.0
    ascii_ply: bool = False
    min_inliers: int = 30

    def __post_init__(self):
        if self.mode not in _MODES:
            raise ValueError(f"mode: expected one of {_MODES}, got {self.mode!r}")
        if self.block_size < 1 or self.block_size % 2 == 0:
            raise ValueError(f"block_size: expected a positive odd number, got {self.block_size}")
        if self.num_disparities is not None and self.num_disparities < 1:
            raise ValueError(f"num_disparities: expected >= 1 (rounded up to a multiple of 16), got "
                             f"{self.num_disparities}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha: expected in [0, 1], got {self.alpha}")
        if not self.disparity_sigma_px > 0:
            raise ValueError(f"disparity_sigma_px: expected > 0, got {self.disparity_sigma_px}")
        if self.max_depth < 0:
            raise ValueError(f"max_depth: expected >= 0 (0 = keep all), got {self.max_depth}")

    def config(self) -> StereoConfig:
        sg = SGBMConfig(block_size=self.block_size, mode=self.mode, wls=self.wls)
        auto = self.num_disparities is None
        if not auto:
            sg = SGBMConfig(**{**sg.__dict__, "num_disparities": self.num_disparities,
                               "min_disparity": self.min_disparity or 0})
        elif self.min_disparity is not None:
            sg = SGBMConfig(**{**sg.__dict__, "min_disparity": self.min_disparity})
        return StereoConfig(sgbm=sg, auto_range=auto, alpha=self.alpha,
                            disparity_sigma_px=self.disparity_sigma_px, max_depth=self.max_depth)


@dataclass
class StereoPairResult:
    """Result of :func:`stereo_pair`: report (report.json's content), exit_code (0 ok, 1 no
    depth, 2 bad input), output (the :class:`StereoOutput`, None without depth), outputs (files
    written)."""

    report: dict
    exit_code: int
    output: StereoOutput | None = None
    outputs: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.report.get("verdict", "")

    def to_json(self) -> dict:
        from recon.io.report import jsonable

        return jsonable(self.report)


def uncalibrated_matches(left: np.ndarray, right: np.ndarray, *, threshold_px: float = 1.0):
    """(F [3, 3], x1 [M, 2], x2 [M, 2] epipolar inliers, number of matches) of an uncalibrated
    pair: SIFT matches (recon.features) and :func:`recon.twoview.estimate_fundamental`.
    F is None when no model fits."""
    from recon.features import detect_features, match_features
    from recon.twoview import estimate_fundamental

    fa, fb = detect_features(left), detect_features(right)
    m = match_features(fa, fb)
    x1, x2 = m.points(fa, fb)
    fit = estimate_fundamental(x1, x2, threshold_px=threshold_px)
    if not fit.ok:
        return None, x1[:0], x2[:0], len(m)
    return fit.F, x1[fit.inliers], x2[fit.inliers], len(m)


def stereo_pair(left, right, output, options: StereoPairOptions = StereoPairOptions()) -> StereoPairResult:
    """Rectify, match (SGBM + WLS), depth, uncertainty and a point cloud for image files
    ``left`` / ``right``; writes disparity / depth maps, pictures, points.ply and report.json
    (every case) into ``output``. Unreadable images raise; bad calibration or mismatched
    sizes give verdict "bad_input" (exit_code 2)."""
    from calib import read_rig
    from recon.io import read_image
    from recon.io.report import write_report

    if not isinstance(options, StereoPairOptions):
        raise TypeError(f"options: expected StereoPairOptions, got {type(options).__name__}")
    out = Path(output)
    t0 = time.perf_counter()
    report: dict = {"version": 1, "left": str(left), "right": str(right),
                    "calibration": None if options.calib is None else str(options.calib), "notes": []}
    img_l, img_r = read_image(left), read_image(right)
    report["size_left"], report["size_right"] = [img_l.shape[1], img_l.shape[0]], [img_r.shape[1], img_r.shape[0]]
    cfg = options.config()
    calib = matches = None
    try:
        if options.calib:
            calib = read_rig(options.calib)
            _check_status(options.calib, options.allow_failed_calib, report)
        else:
            if img_l.shape[:2] != img_r.shape[:2]:
                raise ValueError(f"left, right: image sizes differ ({img_l.shape[1]}x{img_l.shape[0]} vs "
                                 f"{img_r.shape[1]}x{img_r.shape[0]})")
            F, x1, x2, n = uncalibrated_matches(img_l, img_r)
            if F is None or len(x1) < options.min_inliers:
                report.update(verdict="no_depth", exit_code=1, message=f"uncalibrated: only {len(x1)} epipolar "
                              f"inliers among {n} matches; cannot rectify")
                write_report(Path(out) / "report.json", report, indent=2)
                return StereoPairResult(report, 1)
            matches = (F, x1, x2)
        t = time.perf_counter()
        res = stereo_depth(img_l, img_r, calib, config=cfg, uncalibrated_matches=matches)
    except ValueError as e:
        report.update(verdict="bad_input", message=str(e), exit_code=2)
        write_report(Path(out) / "report.json", report, indent=2)
        return StereoPairResult(report, 2)
    t_match = time.perf_counter() - t
    outputs = _write_maps(out, res, options, report)
    h, w = res.disparity.disparity.shape
    report["outputs"] = outputs
    report["timings"] = {"stereo_s": t_match, "total_s": time.perf_counter() - t0,
                         "megapixels_per_s": (w * h / 1e6) / max(t_match, 1e-9)}
    ok = report["valid_fraction"] > 0
    report["verdict"] = "ok" if ok else "no_depth"
    if not ok:
        report["message"] = "no pixel passed the left-right check: check the calibration and the image order"
    report["exit_code"] = 0 if ok else 1
    write_report(Path(out) / "report.json", report, indent=2)
    return StereoPairResult(report, report["exit_code"], res, outputs)


def _write_maps(out: Path, res: StereoOutput, options: StereoPairOptions, report: dict) -> list[str]:
    from recon.stereo.pictures import draw_map, draw_rectified_pair

    out.mkdir(parents=True, exist_ok=True)
    rect, disp = res.rectification, res.disparity
    h, w = disp.disparity.shape
    report.update({
        "calibrated": rect.calibrated, "rectified_size": [w, h],
        "focal_px": rect.focal_px if rect.calibrated else None,
        "baseline": abs(rect.baseline) if rect.calibrated else None,
        "disparity_range_px": [disp.min_disparity, disp.min_disparity + disp.num_disparities],
        "sgbm": {**res.config.sgbm.__dict__, "min_disparity": disp.min_disparity,
                 "num_disparities": disp.num_disparities},
        "valid_fraction": float(disp.valid.mean()), "wls_filtered": options.wls,
    })
    report["notes"] += res.notes
    np.save(out / "disparity.npy", disp.disparity)
    draw_map(out / "disparity.png", disp.disparity, title="disparity (WLS)" if options.wls else "disparity",
             unit="disparity [px]", reference=res.left_rect)
    draw_rectified_pair(out / "rectified.png", res.left_rect, res.right_rect)
    outputs = ["disparity.npy", "disparity.png", "rectified.png"]
    if not rect.calibrated:
        return outputs
    z, sig = res.depth, res.depth_sigma
    fin = np.isfinite(z)
    np.save(out / "depth.npy", z)
    np.save(out / "depth_sigma.npy", sig)
    draw_map(out / "depth.png", z, title="depth Z = f B / d", unit="depth [units of T]", cmap="turbo_r",
             reference=res.left_rect)
    draw_map(out / "depth_sigma.png", sig, title=f"depth uncertainty for +-{options.disparity_sigma_px:g} px "
             "disparity", unit="sigma_Z [units of T]", cmap="magma")
    from recon.io import PointCloud, write_ply

    write_ply(out / "points.ply", PointCloud(res.points.astype(np.float32), res.colors),
              binary=not options.ascii_ply, comments=("frame: original left camera (OpenCV axes)",))
    report.update({
        "num_points": int(res.points.shape[0]),
        "depth_percentiles": {f"p{p}": float(np.percentile(z[fin], p)) for p in (5, 50, 95)} if fin.any() else None,
        "median_depth_sigma": float(np.median(sig[fin])) if fin.any() else None,
    })
    return outputs + ["depth.npy", "depth.png", "depth_sigma.npy", "depth_sigma.png", "points.ply"]


def _check_status(path, allow: bool, report: dict) -> None:
    """Refuse a rig that `recon calibrate` marked failed, unless ``allow``."""
    from calib.files import read_status

    st = read_status(path)
    report["calibration_status"] = st.status
    if not st.failed:
        return
    why = f": {st.cause}" if st.cause else ""
    if not allow:
        raise ValueError(f"{path}: this stereo calibration is marked failed by `recon calibrate`{why}; "
                         "recalibrate (the calibration's report says how), or pass --allow-failed-calib to use it anyway")
    report["notes"].append(f"calibration marked failed, used because of --allow-failed-calib{why}")
