"""Procedural surface textures baked into texel arrays (private).

Every surface patch of the scene has a 2D parametrisation ``(u, v)`` in metres (see
``recon.synth.scene``). Its texture is baked once into a ``[rows, cols, 3]`` uint8 array at a
fixed texel size, so colour depends on the surface point only (view-consistent, which SfM,
splatting and photo-consistency tests need), and rendering is a cheap bilinear lookup.

Content, chosen for SIFT (blobs and corners at several scales, nothing periodic):

1. multi-octave value noise (random lattices up-sampled with bicubic interpolation, so
   nothing tiles) blending two palette colours, plus a weaker per-channel noise;
2. coloured patches: random ellipses and convex polygons, 1.5-25 cm across;
3. text-like marks: random strings of random glyphs at random sizes, angles and colours.

A light Gaussian blur (0.7 texel) band-limits the sharp edges so that supersampled renders
do not alias.
"""

from __future__ import annotations

import numpy as np

_GLYPHS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789#%&@"


def bake_texture(width_m: float, height_m: float, texel_size: float, seed: int,
                 palette: np.ndarray, *, detail: float = 1.0) -> np.ndarray:
    """Bake one patch of ``width_m x height_m`` metres into ``[rows, cols, 3]`` uint8 (RGB).

    ``palette``: [K >= 3, 3] float colours in [0, 1]; ``detail`` scales the number of patches and
    marks per square metre. Deterministic in ``seed``.
    """
    import cv2

    rng = np.random.default_rng(seed)
    cols = max(2, int(np.ceil(width_m / texel_size)) + 1)
    rows = max(2, int(np.ceil(height_m / texel_size)) + 1)
    palette = np.asarray(palette, dtype=np.float32)

    def noise(wavelength_m: float, channels: int = 1) -> np.ndarray:
        # Random lattice with spacing ~wavelength/2, bicubically up-sampled: value noise.
        gx = max(2, int(np.ceil(width_m / (wavelength_m / 2))) + 3)
        gy = max(2, int(np.ceil(height_m / (wavelength_m / 2))) + 3)
        lattice = rng.standard_normal((gy, gx, channels)).astype(np.float32)
        up = cv2.resize(lattice, (cols, rows), interpolation=cv2.INTER_CUBIC)
        return up.reshape(rows, cols, channels)

    # 1. value noise at several octaves (wavelengths 0.8 m .. 2.5 cm)
    n = np.zeros((rows, cols, 1), np.float32)
    amp = 1.0
    for wl in (0.8, 0.4, 0.2, 0.1, 0.05, 0.025):
        n += amp * noise(wl)
        amp *= 0.75
    s = float(np.std(n)) or 1.0
    n = 1.0 / (1.0 + np.exp(-1.6 * n / s))
    c0, c1 = palette[0], palette[1]
    img = c0[None, None] * (1 - n) + c1[None, None] * n
    img += 0.10 * noise(0.06, 3) + 0.06 * noise(0.3, 3)
    img = np.clip(img, 0.0, 1.0)
    img8 = np.ascontiguousarray((img * 255).astype(np.uint8)[..., ::-1])  # BGR for cv2 drawing

    area = width_m * height_m
    px = 1.0 / texel_size  # texels per metre
    shift = 4  # sub-texel precision for cv2 drawing
    S = float(1 << shift)

    def colour():
        if rng.random() < 0.5:
            c = palette[rng.integers(len(palette))] * rng.uniform(0.5, 1.2)
        else:
            c = rng.uniform(0.0, 1.0, 3)
        c = np.clip(c, 0, 1) * 255
        return (int(c[2]), int(c[1]), int(c[0]))

    # 2. coloured patches
    n_patches = int(rng.poisson(60 * detail * area)) + 1
    for _ in range(n_patches):
        cx, cy = rng.uniform(0, cols), rng.uniform(0, rows)
        size = np.exp(rng.uniform(np.log(0.015), np.log(0.25))) * px / 2
        if size < 1.5:
            continue
        if rng.random() < 0.5:
            axes = (int(size * S), int(size * rng.uniform(0.3, 1.0) * S))
            cv2.ellipse(img8, (int(cx * S), int(cy * S)), axes, float(rng.uniform(0, 180)), 0, 360,
                        colour(), -1, cv2.LINE_AA, shift)
        else:
            k = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = size * rng.uniform(0.5, 1.0, k)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
            cv2.fillPoly(img8, [np.round(pts * S).astype(np.int32)], colour(), cv2.LINE_AA, shift)

    # 3. text-like marks
    n_text = int(rng.poisson(25 * detail * area)) + 1
    fonts = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
             cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN)
    for _ in range(n_text):
        height_px = np.exp(rng.uniform(np.log(0.012), np.log(0.08))) * px
        if height_px < 5:
            continue
        text = "".join(rng.choice(list(_GLYPHS), int(rng.integers(2, 7))))
        font = fonts[int(rng.integers(len(fonts)))]
        scale = height_px / 22.0
        thick = max(1, round(height_px / rng.uniform(6, 12)))
        (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        tile = np.zeros((th + base + 4 * thick + 2, tw + 4 * thick + 2), np.uint8)
        cv2.putText(tile, text, (2 * thick, th + 2 * thick), font, scale, 255, thick, cv2.LINE_AA)
        angle = float(rng.uniform(-180, 180))
        cx, cy = rng.uniform(0, cols), rng.uniform(0, rows)
        M = cv2.getRotationMatrix2D((tile.shape[1] / 2, tile.shape[0] / 2), angle, 1.0)
        M[:, 2] += (cx - tile.shape[1] / 2, cy - tile.shape[0] / 2)
        x0, y0 = int(max(0, cx - tile.shape[1])), int(max(0, cy - tile.shape[1]))
        x1, y1 = int(min(cols, cx + tile.shape[1])), int(min(rows, cy + tile.shape[1]))
        if x1 <= x0 or y1 <= y0:
            continue
        M[:, 2] -= (x0, y0)
        alpha = cv2.warpAffine(tile, M, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR).astype(np.float32) / 255
        region = img8[y0:y1, x0:x1].astype(np.float32)
        col = np.array(colour(), np.float32) * (0.35 if rng.random() < 0.7 else 1.0)
        img8[y0:y1, x0:x1] = (region * (1 - alpha[..., None]) + col * alpha[..., None]).astype(np.uint8)

    img8 = cv2.GaussianBlur(img8, (0, 0), 0.7)
    return np.ascontiguousarray(img8[..., ::-1])
