"""Left + right image (+ calibration) -> rectified pair, disparity, depth, uncertainty, points."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from calib import StereoRig
from recon.stereo._disparity import (
    DisparityResult,
    SGBMConfig,
    compute_disparity,
    depth_from_disparity,
    depth_sigma,
    disparity_range_from_matches,
    points_from_depth,
)
from recon.stereo._rectify import (
    StereoRectification,
    rectify_calibrated,
    rectify_images,
    rectify_uncalibrated,
)

__all__ = ["StereoConfig", "StereoOutput", "fit_calibration_to_images", "stereo_depth"]


@dataclass(frozen=True)
class StereoConfig:
    """Options of :func:`stereo_depth`.

    sgbm:            matcher options; ``num_disparities`` / ``min_disparity`` are replaced by an
                     automatic range when ``auto_range`` is True.
    auto_range:      choose the disparity search range from sparse SIFT matches of the rectified
                     pair (falls back to ``sgbm``'s range when too few matches).
    alpha:           rectification crop (0: valid pixels only, 1: keep all source pixels).
    disparity_sigma_px: disparity error used for the depth uncertainty map (1 px: the classic
                     +-1 px rule; sub-pixel matchers reach ~0.25 px on good texture).
    max_depth:       points farther than this (units of the baseline's unit) are dropped from
                     the point cloud (0 = keep all).
    """

    sgbm: SGBMConfig = field(default_factory=SGBMConfig)
    auto_range: bool = True
    alpha: float = 0.0
    disparity_sigma_px: float = 1.0
    max_depth: float = 0.0


@dataclass(frozen=True, eq=False)
class StereoOutput:
    """What :func:`stereo_depth` computed.

    rectification: the rectification used (``rectification.calibrated`` False: no metric depth).
    left_rect, right_rect: [H, W, C] rectified images.
    disparity:     :class:`DisparityResult` of the rectified left view.
    depth:         [H, W] float32 z in the rectified left frame (units of T), NaN where
                   unknown or not ``disparity.valid``; None when uncalibrated.
    depth_sigma:   [H, W] float32 sigma_Z = Z^2 / (f B) * disparity_sigma_px; None uncalibrated.
    points:        [N, 3] float64 points in the ORIGINAL LEFT CAMERA frame (rect_from_left^T
                   applied), from valid pixels; None when uncalibrated.
    colors:        [N, 3] uint8 RGB of the points (rectified left image).
    pixel_index:   [N] flat index of each point's pixel in the rectified left image.
    notes:         human-readable notes (e.g. the intrinsics were scaled to the image size).
    """

    rectification: StereoRectification
    left_rect: np.ndarray
    right_rect: np.ndarray
    disparity: DisparityResult
    depth: np.ndarray | None
    depth_sigma: np.ndarray | None
    points: np.ndarray | None
    colors: np.ndarray | None
    pixel_index: np.ndarray | None
    config: StereoConfig
    notes: list[str] = field(default_factory=list)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if img.dtype.kind == "f":
        return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    raise TypeError(f"images: unsupported dtype {img.dtype} (expected uint8, uint16 or float in [0, 1])")


def fit_calibration_to_images(calibration: StereoRig, size_left: tuple[int, int],
                              size_right: tuple[int, int]) -> tuple[StereoRig, list[str]]:
    """Check image sizes against the calibration. Equal sizes pass; images that are a uniform
    rescale of the calibrated size (same aspect ratio, e.g. half resolution) get scaled
    intrinsics (with a note); anything else raises ValueError with the sizes."""
    if tuple(size_left) != tuple(size_right):
        raise ValueError(f"left, right: image sizes differ ({size_left[0]}x{size_left[1]} vs "
                         f"{size_right[0]}x{size_right[1]}); a stereo pair needs equal sizes")
    cw, ch = calibration.size
    w, h = size_left
    if (w, h) == (cw, ch):
        return calibration, []
    sx, sy = w / cw, h / ch
    if abs(sx - sy) > 2.0 / min(cw, ch):  # beyond the rounding of a resize
        raise ValueError(f"images are {w}x{h} but the calibration is for {cw}x{ch} (different aspect ratio): "
                         "recalibrate, or crop/resize the images to the calibrated size")
    note = (f"images are {w}x{h}, the calibration is for {cw}x{ch}: intrinsics scaled by {sx:.4g} "
            "(assumes a plain resize, not a crop)")
    return StereoRig(calibration.left.resized(w, h), calibration.right.resized(w, h),
                             calibration.right_from_left), [note]


def stereo_depth(left: np.ndarray, right: np.ndarray, calibration: StereoRig | None = None, *,
                 config: StereoConfig = StereoConfig(), uncalibrated_matches: tuple | None = None) -> StereoOutput:
    """Dense depth from a stereo pair.

    left, right: [H, W, 3] uint8 RGB (or [H, W] grey) original (unrectified) images.
    calibration: the rig (:func:`calib.read_rig`); images must match its size (or be
                 a uniform rescale of it). Without it, pass ``uncalibrated_matches=(F, x1, x2)``
                 (an estimated F and its inlier matches): disparity only, no metric depth.
    """
    notes: list[str] = []
    left, right = np.asarray(left), np.asarray(right)
    if left.dtype != np.uint8 or right.dtype != np.uint8:  # SGBM needs 8 bits
        left, right = _to_uint8(left), _to_uint8(right)
        notes.append("images converted to 8 bits for matching (uint16: >> 8; float: x 255)")
    size_l = (left.shape[1], left.shape[0])
    size_r = (right.shape[1], right.shape[0])
    if calibration is not None:
        calibration, notes = fit_calibration_to_images(calibration, size_l, size_r)
        rect = rectify_calibrated(calibration, alpha=config.alpha)
    else:
        if uncalibrated_matches is None:
            raise ValueError("calibration: give a stereo calibration, or uncalibrated_matches=(F, x1, x2)")
        if size_l != size_r:
            raise ValueError(f"left, right: image sizes differ ({size_l} vs {size_r})")
        F, x1, x2 = uncalibrated_matches
        rect = rectify_uncalibrated(F, x1, x2, size_l)
        notes.append("uncalibrated: projective rectification from F; disparity only (no metric depth)")
    L, R = rectify_images(rect, left, right)
    sgbm = config.sgbm
    if config.auto_range:
        mind, num, nmatch = disparity_range_from_matches(L, R, default=(sgbm.min_disparity, sgbm.num_disparities))
        sgbm = replace(sgbm, min_disparity=mind, num_disparities=num)
        notes.append(f"disparity range [{mind}, {mind + num}) px from {nmatch} sparse matches")
    disp = compute_disparity(L, R, sgbm)
    if not rect.calibrated:
        return StereoOutput(rect, L, R, disp, None, None, None, None, None, config, notes)
    z = depth_from_disparity(disp.disparity, rect.focal_px, abs(rect.baseline), doffs=rect.doffs)
    if rect.baseline < 0:  # right camera on the left of the left camera: disparities are negative
        z = depth_from_disparity(-disp.disparity, rect.focal_px, -rect.baseline, doffs=-rect.doffs)
    z = np.where(disp.valid, z, np.nan).astype(np.float32)
    if config.max_depth > 0:
        z = np.where(z <= config.max_depth, z, np.nan).astype(np.float32)
    sig = depth_sigma(z, rect.focal_px, abs(rect.baseline), disparity_sigma_px=config.disparity_sigma_px)
    pts_rect, idx = points_from_depth(z, rect.camera)
    pts = pts_rect @ rect.rect_from_left  # X_left = R1^T X_rect (row vectors: X @ R1)
    img = L if L.ndim == 3 else np.repeat(L[..., None], 3, axis=2)
    colors = img.reshape(-1, img.shape[-1])[idx, :3].astype(np.uint8)
    return StereoOutput(rect, L, R, disp, z, sig, pts, colors, idx, config, notes)
