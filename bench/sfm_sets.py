"""Heterogeneous photo sets for SfM benches and tests, built from the real photos in
../shared/data at run time (never committed): every photo becomes a different "camera" by a
crop (a zoom: a narrower field of view), a rescale to a 700-1100 px long side and dropped EXIF,
as in an unordered internet collection.

    make_heterogeneous_set(sources, out_dir, seed=0) -> list of written paths
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["make_heterogeneous_set", "phototourism_subset"]

_EXT = (".jpg", ".jpeg", ".png")


def make_heterogeneous_set(sources: list[Path], out_dir: Path, *, seed: int = 0,
                           long_side: tuple[int, int] = (700, 1100), zoom: tuple[float, float] = (1.0, 1.6),
                           every: int = 1) -> list[Path]:
    """Every ``every``-th photo of each folder in ``sources`` written to ``out_dir`` cropped about
    its centre (zoom in ``zoom``: the crop keeps 1/zoom of each side, shifted by up to a quarter
    of the margin), resized to a long side drawn in ``long_side`` and saved as JPEG without EXIF
    (so no focal prior); names keep the source folder as a prefix. Deterministic in ``seed``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sources:
        files = sorted(p for p in Path(src).iterdir() if p.suffix.lower() in _EXT)[::every]
        for p in files:
            z = float(rng.uniform(*zoom))
            n = int(rng.integers(long_side[0], long_side[1] + 1))
            with Image.open(p) as im:
                im = im.convert("RGB")
                w, h = im.size
                cw, ch = w / z, h / z
                cx = w / 2 + rng.uniform(-0.25, 0.25) * (w - cw)
                cy = h / 2 + rng.uniform(-0.25, 0.25) * (h - ch)
                box = (int(cx - cw / 2), int(cy - ch / 2), int(cx + cw / 2), int(cy + ch / 2))
                im = im.crop(box)
                s = n / max(im.size)
                im = im.resize((max(16, round(im.size[0] * s)), max(16, round(im.size[1] * s))),
                               Image.Resampling.LANCZOS)
                dst = out_dir / f"{Path(src).name}_{p.stem}.jpg"
                im.save(dst, quality=92)
            written.append(dst)
    return written


def phototourism_subset(src: Path, out_dir: Path, prefix: str | None) -> list[Path]:
    """Links to the photos of ``src`` (phototourism-sample) whose name starts with ``prefix``
    (all with None) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for p in sorted(Path(src).iterdir()):
        if p.suffix.lower() in _EXT and (prefix is None or p.name.startswith(prefix)):
            (out_dir / p.name).symlink_to(p.resolve())
            done.append(out_dir / p.name)
    return done
