"""PSNR / SSIM against closed forms and scikit-image-free identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from render.metrics import lpips, lpips_status, psnr, ssim


def test_psnr_closed_form(rng):
    a = rng.random((20, 30, 3)).astype(np.float32)
    b = np.clip(a + 0.1 * np.sign(rng.random(a.shape) - 0.5), -10, 10).astype(np.float32)
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / mse), abs=1e-6)
    assert psnr(a, a) == float("inf")
    assert psnr((a * 255).astype(np.uint8), (a * 255).astype(np.uint8)) == float("inf")
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, b[:-1])


def test_ssim_properties(rng):
    a = rng.random((32, 40, 3)).astype(np.float32)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    s_noisy = ssim(a, noisy)
    assert 0.0 < s_noisy < 0.9
    # a constant brightness offset keeps structure: SSIM stays high, PSNR drops
    shifted = np.clip(a * 0.8 + 0.1, 0, 1).astype(np.float32)
    assert ssim(a, shifted) > s_noisy
    # inverted image: negative correlation
    assert ssim(a, 1 - a) < 0.0


def test_ssim_matches_scipy_reference(rng):
    """Independent implementation: scipy Gaussian filters (11 taps, sigma 1.5, zero padding)."""
    from scipy.ndimage import gaussian_filter

    x = rng.random((24, 28, 3))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)

    def filt(im):
        return np.stack([gaussian_filter(im[..., c], 1.5, mode="constant", truncate=5 / 1.5)
                         for c in range(im.shape[-1])], -1)

    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ref = np.mean((2 * mx * my + c1) * (2 * sxy + c2) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2)))
    assert ssim(x, y) == pytest.approx(ref, abs=1e-9)


def test_ssim_is_differentiable():
    x = torch.rand(16, 16, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(16, 16, 3, dtype=torch.float64)
    torch.autograd.gradcheck(lambda t: ssim(t, y), (x,), eps=1e-6, atol=1e-6)


def _fake_lpips(monkeypatch, tmp_path, *, weights: bool, fail: bool = False):
    """A stand-in ``lpips`` package (the real one cannot import torchvision here) whose network
    is a known function, and a torch hub folder with or without the AlexNet weights file."""
    import sys
    import types

    import render.metrics as m

    calls = []

    class Net:
        def __call__(self, p, t):
            assert p.shape[:2] == (1, 3) and float(p.min()) >= -1 and float(p.max()) <= 1  # NCHW in [-1, 1]
            if fail:
                raise RuntimeError("backbone exploded")
            return ((p - t) ** 2).mean()

    def LPIPS(net, verbose):
        calls.append(net)
        return Net()

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=LPIPS))
    monkeypatch.setattr(m, "_LPIPS_NET", {})
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    if weights:
        (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
        (tmp_path / "hub" / "checkpoints" / m._ALEX_WEIGHTS).write_bytes(b"weights")
    return calls


def test_lpips_is_null_without_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips -> ImportError
    ok, reason = lpips_status()
    a = np.zeros((8, 8, 3), np.float32)
    assert not ok and reason.startswith("LPIPS not computed: the 'lpips' package is not importable")
    assert lpips(a, a) is None


def test_lpips_is_null_without_weights_and_never_builds_the_net(monkeypatch, tmp_path):
    calls = _fake_lpips(monkeypatch, tmp_path, weights=False)
    ok, reason = lpips_status()
    a = np.zeros((8, 8, 3), np.float32)
    assert not ok and "AlexNet weights are not on disk" in reason
    assert lpips(a, a) is None and calls == []  # building the net would download the weights


def test_lpips_value_and_errors_when_available(monkeypatch, tmp_path, rng):
    calls = _fake_lpips(monkeypatch, tmp_path, weights=True)
    a, b = rng.random((8, 6, 3)).astype(np.float32), rng.random((8, 6, 3)).astype(np.float32)
    assert lpips_status()[0]
    assert lpips(a, b) == pytest.approx(float(np.mean((2 * a - 2 * b) ** 2)), rel=1e-5)
    assert lpips(a, a) == 0.0 and calls == ["alex"]  # built once
    with pytest.raises(ValueError, match="shapes differ"):
        lpips(a, b[:, :5])
    _fake_lpips(monkeypatch, tmp_path / "again", weights=True, fail=True)
    with pytest.raises(RuntimeError, match="backbone exploded"):  # not swallowed into None
        lpips(a, b)