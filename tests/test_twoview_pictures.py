"""The two-view pictures are drawn at a bounded size (MAX_DRAW_SIZE), whatever the image size."""

from __future__ import annotations

import numpy as np

from recon.twoview.pictures import MAX_DRAW_SIZE, draw_epipolar_lines, draw_matches


def _png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size, np.asarray(im.convert("RGB"))


def test_pictures_of_a_big_pair_are_bounded(tmp_path):
    rng = np.random.default_rng(0)
    w, h = 900, 1400  # portrait: side by side 1800 x 1400, beyond MAX_DRAW_SIZE
    a = np.broadcast_to(np.linspace(0, 60, w, dtype=np.uint8)[None, :, None], (h, w, 3))  # dark: lines stand out
    b = a[:, ::-1]
    uv1 = rng.uniform([0, 0], [w - 1, h - 1], (300, 2))
    uv2 = uv1 + [5.0, 0.0]
    inl = np.arange(300) < 250
    (W, H), img = _png_size(draw_matches(tmp_path / "m.png", a, b, uv1, uv2, inl))
    assert W <= MAX_DRAW_SIZE[0] + 40 and H <= MAX_DRAW_SIZE[1] + 70
    green = (img[..., 1] > 200) & (img[..., 0] < 120) & (img[..., 2] < 120)
    red = (img[..., 0] > 200) & (img[..., 1] < 120) & (img[..., 2] < 120)
    assert green.sum() > 1000 and red.sum() > 100
    # a pure horizontal translation: F = [t]_x with t = (1, 0, 0) (rows line up)
    F = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    (W, H), _ = _png_size(draw_epipolar_lines(tmp_path / "e.png", a, b, F, uv1, uv2, inl))
    assert W <= MAX_DRAW_SIZE[0] + 40 and H <= MAX_DRAW_SIZE[1] + 70


def test_small_pairs_are_drawn_at_full_size(tmp_path):
    a = np.zeros((240, 320), np.uint8)
    (W, H), _ = _png_size(draw_matches(tmp_path / "m.png", a, a, [[10.0, 10.0]], [[20.0, 20.0]]))
    assert (W, H) == (640 + 40, 240 + 70)
