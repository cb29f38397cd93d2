"""Pictures of two-view geometry (matplotlib, Agg backend: no display needed).

``draw_matches``: both images side by side, inlier matches green, outliers red.
``draw_epipolar_lines``: a sample of inliers with their epipolar lines in both images
(l2 = F x1 in image 2, l1 = F^T x2 in image 1), coloured per match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calib import scale_pixels

__all__ = ["draw_epipolar_lines", "draw_matches"]


def _figure(width_px: int, height_px: int, dpi: int = 100):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    return fig


def _as_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img * 255.0 if img.dtype.kind == "f" else img, 0, 255).astype(np.uint8)
    return img[..., :3]


def _downscale(img: np.ndarray, uv: np.ndarray, s: float):
    """Resize an image by s (< 1) for drawing and map pixel-centre coordinates with it."""
    if s >= 1.0:
        return img, uv
    import cv2

    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return small, scale_pixels(uv, s)


def _side_by_side(img1, img2):
    a, b = _as_rgb(img1), _as_rgb(img2)
    h = max(a.shape[0], b.shape[0])
    canvas = np.zeros((h, a.shape[1] + b.shape[1], 3), np.uint8)
    canvas[: a.shape[0], : a.shape[1]] = a
    canvas[: b.shape[0], a.shape[1]:] = b
    return canvas, a.shape[1]


def draw_matches(path, image1, image2, uv1, uv2, inliers=None, *, title: str = "", max_lines: int = 400,
                 seed: int = 0) -> Path:
    """Save a side-by-side picture of matches (inliers green, outliers red; a random subset of
    at most ``max_lines`` of each is drawn so the picture stays readable)."""
    uv1 = np.asarray(uv1, float).reshape(-1, 2)
    uv2 = np.asarray(uv2, float).reshape(-1, 2)
    inl = np.ones(len(uv1), bool) if inliers is None else np.asarray(inliers, bool)
    a, b = _as_rgb(image1), _as_rgb(image2)
    s = min(1.0, 1800.0 / (a.shape[1] + b.shape[1]))
    a, uv1 = _downscale(a, uv1, s)
    b, uv2 = _downscale(b, uv2, s)
    canvas, off = _side_by_side(a, b)
    h, w = canvas.shape[:2]
    fig = _figure(w + 40, h + 70)
    ax = fig.add_axes([0.01, 0.01, 0.98, 0.90])
    ax.imshow(canvas, interpolation="bilinear")
    rng = np.random.default_rng(seed)
    for mask, color, label in ((inl, "#30ff30", "inliers"), (~inl, "#ff3030", "outliers")):
        idx = np.flatnonzero(mask)
        if idx.size > max_lines:
            idx = rng.choice(idx, max_lines, replace=False)
        if idx.size:
            xs = np.stack([uv1[idx, 0], uv2[idx, 0] + off])
            ys = np.stack([uv1[idx, 1], uv2[idx, 1]])
            ax.plot(xs, ys, color=color, lw=0.6, alpha=0.7)
            ax.plot(uv1[idx, 0], uv1[idx, 1], "o", ms=2, color=color)
            ax.plot(uv2[idx, 0] + off, uv2[idx, 1], "o", ms=2, color=color)
        ax.plot([], [], color=color, label=f"{label}: {int(mask.sum())}")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis("off")
    ax.legend(loc="lower right", fontsize=9, framealpha=0.8)
    fig.suptitle(title or f"{len(uv1)} matches, {int(inl.sum())} inliers", fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _clip_line(l, w, h):
    """Endpoints of the line a u + b v + c = 0 inside [0, w-1] x [0, h-1] (or None)."""
    a, b, c = l
    pts = []
    if abs(b) > 1e-12:
        for u in (0.0, w - 1.0):
            v = -(a * u + c) / b
            if 0 <= v <= h - 1:
                pts.append((u, v))
    if abs(a) > 1e-12:
        for v in (0.0, h - 1.0):
            u = -(b * v + c) / a
            if 0 <= u <= w - 1:
                pts.append((u, v))
    if len(pts) < 2:
        return None
    pts = np.array(pts)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    i, j = np.unravel_index(np.argmax(d), d.shape)
    return pts[i], pts[j]


def draw_epipolar_lines(path, image1, image2, F, uv1, uv2, inliers=None, *, num_lines: int = 24, title: str = "",
                        seed: int = 0) -> Path:
    """Save both images with the epipolar lines of a sample of inliers: in image 2 the line
    F x1 of each point x1, in image 1 the line F^T x2; the matching point is drawn on each line
    (same colour), so misalignment is visible as a dot off its line."""
    from matplotlib import cm

    F = np.asarray(F, float)
    uv1 = np.asarray(uv1, float).reshape(-1, 2)
    uv2 = np.asarray(uv2, float).reshape(-1, 2)
    inl = np.ones(len(uv1), bool) if inliers is None else np.asarray(inliers, bool)
    idx = np.flatnonzero(inl)
    rng = np.random.default_rng(seed)
    if idx.size > num_lines:
        # spread the sample over the image: pick from a shuffled order, farthest-point style
        idx = rng.permutation(idx)
        chosen = [idx[0]]
        for _ in range(num_lines - 1):
            d = np.min(np.linalg.norm(uv1[idx][:, None] - uv1[chosen][None], axis=2), axis=1)
            chosen.append(idx[int(np.argmax(d))])
        idx = np.array(chosen)
    a, b = _as_rgb(image1), _as_rgb(image2)
    s = min(1.0, 1800.0 / (a.shape[1] + b.shape[1]))
    if s < 1.0:  # draw on downscaled images: F for the scaled pixels is S^-T F S^-1
        S = np.array([[s, 0, 0.0], [0, s, 0.0], [0, 0, 1.0]])
        S[:2, 2] = scale_pixels(np.zeros(2), s)  # the image of pixel (0, 0)
        Si = np.linalg.inv(S)
        F = Si.T @ F @ Si
        a, uv1 = _downscale(a, uv1, s)
        b, uv2 = _downscale(b, uv2, s)
    h = max(a.shape[0], b.shape[0])
    wtot = a.shape[1] + b.shape[1]
    fig = _figure(wtot + 40, h + 70)
    ax1 = fig.add_axes([0.005, 0.01, 0.49, 0.88])
    ax2 = fig.add_axes([0.505, 0.01, 0.49, 0.88])
    colors = cm.hsv(np.linspace(0, 0.9, max(len(idx), 1)))
    for ax, img, pts, lines_of in ((ax1, a, uv1, lambda k: F.T @ np.r_[uv2[k], 1.0]),
                                   (ax2, b, uv2, lambda k: F @ np.r_[uv1[k], 1.0])):
        ih, iw = img.shape[:2]
        ax.imshow(img, interpolation="bilinear")
        for c, k in zip(colors, idx):
            seg = _clip_line(lines_of(k), iw, ih)
            if seg is not None:
                ax.plot([seg[0][0], seg[1][0]], [seg[0][1], seg[1][1]], color=c, lw=0.9)
            ax.plot(pts[k, 0], pts[k, 1], "o", ms=4, mfc=c, mec="black", mew=0.6)
        ax.set_xlim(-0.5, iw - 0.5)
        ax.set_ylim(ih - 0.5, -0.5)
        ax.axis("off")
    ax1.set_title("image 1: lines F^T x2", fontsize=9)
    ax2.set_title("image 2: lines F x1", fontsize=9)
    fig.suptitle(title or f"epipolar lines of {len(idx)} inliers", fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
