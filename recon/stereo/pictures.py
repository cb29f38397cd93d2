"""Pictures of stereo results (matplotlib, Agg backend): disparity, depth and depth
uncertainty maps with colour bars (unknown pixels shown grey), and a rectified-pair check with
horizontal lines (matching points must lie on the same line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["draw_map", "draw_rectified_pair"]


def _fig(w_px, h_px, dpi=100):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(w_px / dpi, h_px / dpi), dpi=dpi)


def draw_map(path, values: np.ndarray, *, title: str, unit: str, cmap: str = "turbo",
             percentiles: tuple[float, float] = (1.0, 99.0), reference: np.ndarray | None = None) -> Path:
    """Save a scalar map [H, W] with a colour bar in ``unit``; NaN pixels are grey. The colour
    range spans the given percentiles of the finite values (robust to outliers). With
    ``reference`` (an RGB image [H, W, 3]) it is shown at the left for orientation."""
    import matplotlib.pyplot as plt  # noqa: F401 - registers colormaps

    v = np.asarray(values, np.float64)
    h, w = v.shape
    finite = np.isfinite(v)
    lo, hi = (np.percentile(v[finite], percentiles) if finite.any() else (0.0, 1.0))
    if hi <= lo:
        hi = lo + 1e-6
    panels = 2 if reference is not None else 1
    scale = min(1.0, 1600.0 / (w * panels))
    fig = _fig(int(w * panels * scale) + 140, int(h * scale) + 60)
    import matplotlib as mpl

    cm = mpl.colormaps[cmap].with_extremes(bad=(0.5, 0.5, 0.5))
    if reference is not None:
        ax0 = fig.add_axes([0.01, 0.02, 0.42, 0.86])
        ax0.imshow(np.asarray(reference)[..., :3])
        ax0.set_title("rectified left", fontsize=9)
        ax0.axis("off")
        ax = fig.add_axes([0.45, 0.02, 0.42, 0.86])
        cax = fig.add_axes([0.89, 0.06, 0.02, 0.78])
    else:
        ax = fig.add_axes([0.01, 0.02, 0.80, 0.86])
        cax = fig.add_axes([0.84, 0.06, 0.03, 0.78])
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cm, vmin=lo, vmax=hi, interpolation="nearest")
    ax.axis("off")
    cb = fig.colorbar(im, cax=cax)
    cb.set_label(unit)
    known = 100.0 * finite.mean()
    ax.set_title(f"{title}  ({known:.0f}% of pixels known; grey = unknown)", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def draw_rectified_pair(path, left_rect: np.ndarray, right_rect: np.ndarray, *, num_lines: int = 16) -> Path:
    """Save the rectified pair side by side with horizontal lines every H / num_lines rows."""
    a, b = np.asarray(left_rect), np.asarray(right_rect)
    if a.ndim == 2:
        a, b = np.repeat(a[..., None], 3, 2), np.repeat(b[..., None], 3, 2)
    canvas = np.concatenate([a[..., :3], b[..., :3]], axis=1)
    h, w = canvas.shape[:2]
    scale = min(1.0, 1800.0 / w)
    fig = _fig(int(w * scale) + 20, int(h * scale) + 50)
    ax = fig.add_axes([0.005, 0.01, 0.99, 0.90])
    ax.imshow(canvas)
    for y in np.linspace(0, h - 1, num_lines + 2)[1:-1]:
        ax.axhline(y, color="#00ff00", lw=0.6, alpha=0.8)
    ax.axis("off")
    ax.set_title("rectified pair: matching points must lie on the same horizontal line", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
