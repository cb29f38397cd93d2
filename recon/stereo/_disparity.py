"""Disparity by semi-global matching (OpenCV SGBM, Hirschmuller 2008), the WLS filter
(opencv-contrib ximgproc, Min et al. 2014), a left-right consistency check, and
disparity -> depth with its uncertainty and the coloured point cloud."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib import Camera

__all__ = [
    "DisparityResult",
    "SGBMConfig",
    "compute_disparity",
    "depth_from_disparity",
    "depth_sigma",
    "disparity_range_from_matches",
    "points_from_depth",
]


@dataclass(frozen=True)
class SGBMConfig:
    """Semi-global block matching + WLS options (defaults tuned on textured synthetic and
    real 640x480 - 1280x960 pairs).

    min_disparity:   smallest disparity searched (pixels; may be negative).
    num_disparities: size of the search range (pixels, rounded up to a multiple of 16).
    block_size:      matching window (odd, 3-11; 5 is a good default at VGA).
    p1_scale, p2_scale: smoothness penalties P1 = p1_scale * channels * block_size^2 (small
                     disparity changes) and P2 = p2_scale * ... (jumps); P2 > P1.
    uniqueness:      margin (%) by which the best cost must beat the second best.
    speckle_window:  largest connected blob (pixels) treated as noise and removed (0 = off).
    speckle_range:   max disparity variation inside a blob (pixels).
    mode:            "sgbm" (5 directions), "3way" (fast) or "hh" (8 directions, full).
    lr_max_diff:     left-right check: |d_left(x) - d_right(x - d_left(x))| <= lr_max_diff px.
    wls:             apply the WLS edge-aware filter (fills holes, sub-pixel smooth).
    wls_lambda, wls_sigma_color: WLS smoothness strength and edge sensitivity.
    """

    min_disparity: int = 0
    num_disparities: int = 128
    block_size: int = 5
    p1_scale: int = 8
    p2_scale: int = 32
    uniqueness: int = 10
    speckle_window: int = 100
    speckle_range: int = 2
    mode: str = "sgbm"
    lr_max_diff: float = 1.0
    wls: bool = True
    wls_lambda: float = 8000.0
    wls_sigma_color: float = 1.5


@dataclass(frozen=True, eq=False)
class DisparityResult:
    """Disparity maps of the rectified left view (pixels, d = u_left - u_right).

    disparity:  [H, W] float32: the WLS-filtered disparity (dense) when ``wls``, else the raw
                SGBM disparity; NaN where nothing is known.
    raw:        [H, W] float32: SGBM before filtering; NaN where SGBM gave no match.
    valid:      [H, W] bool: raw match exists AND passes the left-right check (occlusions and
                mismatches fail it): use this mask for depth / point clouds.
    confidence: [H, W] float32 in [0, 1]: WLS confidence (1 - the LR inconsistency near
                edges); 1 everywhere valid when WLS is off.
    """

    disparity: np.ndarray
    raw: np.ndarray
    valid: np.ndarray
    confidence: np.ndarray
    min_disparity: int
    num_disparities: int


_MODES = {"sgbm": 0, "hh": 1, "3way": 2}


def _matcher(cfg: SGBMConfig, channels: int):
    import cv2

    if cfg.mode not in _MODES:
        raise ValueError(f"mode: expected one of {sorted(_MODES)}, got {cfg.mode!r}")
    if cfg.block_size % 2 == 0 or not 1 <= cfg.block_size <= 25:
        raise ValueError(f"block_size: expected an odd number in [1, 25], got {cfg.block_size}")
    nd = int(np.ceil(max(cfg.num_disparities, 16) / 16.0) * 16)
    bs = cfg.block_size
    mode = {0: cv2.STEREO_SGBM_MODE_SGBM, 1: cv2.STEREO_SGBM_MODE_HH, 2: cv2.STEREO_SGBM_MODE_SGBM_3WAY}[_MODES[cfg.mode]]
    return cv2.StereoSGBM_create(
        minDisparity=int(cfg.min_disparity), numDisparities=nd, blockSize=bs,
        P1=cfg.p1_scale * channels * bs * bs, P2=cfg.p2_scale * channels * bs * bs,
        disp12MaxDiff=-1,  # we run our own (sub-pixel) left-right check
        preFilterCap=63, uniquenessRatio=cfg.uniqueness, speckleWindowSize=cfg.speckle_window,
        speckleRange=cfg.speckle_range, mode=mode), nd


def compute_disparity(left_rect: np.ndarray, right_rect: np.ndarray, config: SGBMConfig = SGBMConfig()
                      ) -> DisparityResult:
    """Disparity of a rectified pair.

    left_rect, right_rect: [H, W] or [H, W, 3] uint8 (RGB), same shape, rectified (rows match).
    """
    import cv2

    L = np.ascontiguousarray(left_rect)
    R = np.ascontiguousarray(right_rect)
    if L.shape != R.shape:
        raise ValueError(f"left_rect, right_rect: shapes differ ({L.shape} vs {R.shape})")
    if L.dtype != np.uint8:
        raise TypeError(f"left_rect: expected uint8 images, got {L.dtype}")
    if L.ndim not in (2, 3):
        raise ValueError(f"left_rect: expected [H, W] or [H, W, 3], got {L.shape}")
    ch = 1 if L.ndim == 2 else L.shape[2]
    left_m, nd = _matcher(config, ch)
    right_m = cv2.ximgproc.createRightMatcher(left_m)
    dl16 = left_m.compute(L, R)
    dr16 = right_m.compute(R, L)
    invalid_l = dl16 <= (config.min_disparity - 1) * 16
    dl = dl16.astype(np.float32) / 16.0
    raw = np.where(invalid_l, np.nan, dl).astype(np.float32)
    # Right matcher disparities are negative (d_right = u_right - u_left); invalid values are
    # outside the range.
    dr = -dr16.astype(np.float32) / 16.0
    invalid_r = dr16 <= -(config.min_disparity + nd) * 16
    h, w = dl.shape
    u = np.arange(w, dtype=np.float32)[None, :]
    xr = np.rint(u - dl).astype(np.int64)
    inside = (xr >= 0) & (xr < w) & ~invalid_l
    xr_c = np.clip(xr, 0, w - 1)
    rows = np.arange(h)[:, None]
    d_back = dr[rows, xr_c]
    lr_ok = inside & ~invalid_r[rows, xr_c] & (np.abs(dl - d_back) <= config.lr_max_diff)
    if config.wls:
        wls = cv2.ximgproc.createDisparityWLSFilter(left_m)
        wls.setLambda(float(config.wls_lambda))
        wls.setSigmaColor(float(config.wls_sigma_color))
        wls.setLRCthresh(24)
        filt16 = wls.filter(dl16, L, disparity_map_right=dr16)
        conf = wls.getConfidenceMap().astype(np.float32) / 255.0
        disp = filt16.astype(np.float32) / 16.0
        disp[filt16 <= (config.min_disparity - 1) * 16] = np.nan
        # the filter has no information left of the search window: keep it NaN there
        disp[:, : max(0, config.min_disparity + nd - 1)] = np.where(
            np.isnan(raw[:, : max(0, config.min_disparity + nd - 1)]), np.nan,
            disp[:, : max(0, config.min_disparity + nd - 1)])
    else:
        disp = raw.copy()
        conf = lr_ok.astype(np.float32)
    return DisparityResult(disp.astype(np.float32), raw, lr_ok, conf, int(config.min_disparity), nd)


def disparity_range_from_matches(left_rect: np.ndarray, right_rect: np.ndarray, *, margin: float = 0.15,
                                 max_row_error_px: float = 2.0, default: tuple[int, int] = (0, 128)
                                 ) -> tuple[int, int, int]:
    """Search range (min_disparity, num_disparities) from sparse SIFT matches between the
    rectified images: the 0.5-99.5 % range of their disparities widened by ``margin``.
    Returns (min_disparity, num_disparities, number of matches used); ``default`` when fewer
    than 20 matches agree with the rectification (|dv| <= max_row_error_px)."""
    import cv2

    from recon.features import detect_features, match_features

    h, w = np.asarray(left_rect).shape[:2]
    s = min(1.0, 640.0 / w)  # detect at <= 640 px wide: the range needs no full-resolution accuracy
    if s < 1.0:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        left_rect = cv2.resize(left_rect, size, interpolation=cv2.INTER_AREA)
        right_rect = cv2.resize(right_rect, size, interpolation=cv2.INTER_AREA)
    f1 = detect_features(left_rect, method="sift", max_features=2000)
    f2 = detect_features(right_rect, method="sift", max_features=2000)
    m = match_features(f1, f2, ratio=0.8, mutual=True)
    x1, x2 = m.points(f1, f2)
    ok = np.abs(x1[:, 1] - x2[:, 1]) <= max_row_error_px * s
    d = (x1[ok, 0] - x2[ok, 0]) / s
    if d.size < 20:
        return default[0], default[1], int(d.size)
    lo, hi = np.percentile(d, [0.5, 99.5])
    span = max(hi - lo, 16.0)
    lo -= margin * span + 2
    hi += margin * span + 2
    mind = int(np.floor(lo))
    if mind > 0 and lo < 0.6 * hi:  # near objects are sparse in matches: include 0 when cheap
        mind = 0
    num = int(np.ceil((hi - mind) / 16.0) * 16)
    return mind, max(num, 16), int(d.size)


def depth_from_disparity(disparity: np.ndarray, focal_px: float, baseline: float, *, doffs: float = 0.0
                         ) -> np.ndarray:
    """Z = f B / (d - doffs) (rectified left frame; units of B). NaN where d - doffs <= 0 or NaN.
    disparity: [H, W] pixels; focal_px: rectified focal length; baseline: > 0."""
    if not (np.isfinite(focal_px) and focal_px > 0 and np.isfinite(baseline) and baseline > 0):
        raise ValueError(f"focal_px, baseline: expected positive finite values, got {focal_px}, {baseline}")
    d = np.asarray(disparity, np.float64) - doffs
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(d > 0, focal_px * baseline / d, np.nan)
    return z.astype(np.float32)


def depth_sigma(depth: np.ndarray, focal_px: float, baseline: float, *, disparity_sigma_px: float = 1.0
                ) -> np.ndarray:
    """First-order depth uncertainty for a disparity error of ``disparity_sigma_px``:
    dZ/dd = -f B / d^2 = -Z^2 / (f B), so sigma_Z = Z^2 / (f B) * sigma_d (units of B)."""
    z = np.asarray(depth, np.float64)
    return (z * z / (focal_px * baseline) * disparity_sigma_px).astype(np.float32)


def points_from_depth(depth: np.ndarray, camera: Camera, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Back-project a z-depth map [H, W] of a PINHOLE camera: returns (points [N, 3] in that
    camera's frame, flat pixel indices [N] into the image) for finite depths inside ``mask``."""
    z = np.asarray(depth, np.float64)
    keep = np.isfinite(z) & (z > 0)
    if mask is not None:
        keep &= np.asarray(mask, bool)
    idx = np.flatnonzero(keep)
    v, u = np.divmod(idx, z.shape[1])
    (fx, fy), (cx, cy) = camera.focal, camera.principal_point
    zz = z.ravel()[idx]
    pts = np.stack([(u - cx) / fx * zz, (v - cy) / fy * zz, zz], axis=1)
    return pts, idx
