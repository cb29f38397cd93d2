"""Image-quality metrics: PSNR, SSIM (differentiable, torch) and LPIPS where its weights exist.

SSIM follows the Inria 3DGS code (``utils/loss_utils.py``): an 11x11 Gaussian window, sigma 1.5,
C1 = 0.01^2, C2 = 0.03^2, zero padding ("same" size), mean over pixels and channels. It is the
SSIM that 3DGS and gsplat report and train with. Inputs are images in [0, 1].
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["lpips", "lpips_status", "psnr", "ssim"]


def _as_hwc_tensor(x, name: str):
    import torch

    if isinstance(x, np.ndarray):
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected an image array or tensor, got {type(x).__name__}")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"{name}: expected [H, W] or [H, W, C], got shape {tuple(x.shape)}")
    return x


def psnr(pred, target, *, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB between two images ([H, W, C], float in [0, 1] or uint8)."""
    p, t = _as_hwc_tensor(pred, "pred"), _as_hwc_tensor(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred, target: shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    mse = float(((p.double() - t.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(max_value ** 2 / mse)


def _gaussian_window_1d(size: int, sigma: float, like):
    import torch

    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(pred, target, *, window_size: int = 11, sigma: float = 1.5):
    """Structural similarity (3DGS flavour). Differentiable when given torch tensors.

    Accepts [H, W, C] (or a batch [B, H, W, C]) tensors/arrays in [0, 1]. Returns a 0-d tensor
    when ``pred`` is a tensor, else a float.
    """
    import torch
    import torch.nn.functional as F

    return_float = not isinstance(pred, torch.Tensor)
    p = pred if isinstance(pred, torch.Tensor) and pred.ndim == 4 else _as_hwc_tensor(pred, "pred")[None]
    t = target if isinstance(target, torch.Tensor) and target.ndim == 4 else _as_hwc_tensor(target, "target")[None]
    t = t.to(device=p.device, dtype=p.dtype)
    if p.shape != t.shape:
        raise ValueError(f"pred, target: shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    p, t = p.permute(0, 3, 1, 2), t.permute(0, 3, 1, 2)
    c = p.shape[1]
    # The Gaussian window is separable: one horizontal and one vertical 1D pass over the five
    # maps stacked as channels (equal to the 2D window up to rounding, ~5x fewer operations).
    g = _gaussian_window_1d(window_size, sigma, p)
    pad = window_size // 2
    stack = torch.cat([p, t, p * p, t * t, p * t], dim=1)
    k = stack.shape[1]
    blur = F.conv2d(stack, g.view(1, 1, 1, -1).expand(k, 1, 1, window_size), padding=(0, pad), groups=k)
    blur = F.conv2d(blur, g.view(1, 1, -1, 1).expand(k, 1, window_size, 1), padding=(pad, 0), groups=k)
    mu1, mu2, e11, e22, e12 = blur.split(c, dim=1)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1, s2, s12 = e11 - mu1_sq, e22 - mu2_sq, e12 - mu12
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    val = m.mean()
    return float(val) if return_float else val


_ALEX_WEIGHTS = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet, which lpips loads as its backbone


def lpips_status() -> tuple[bool, str]:
    """(available, reason). LPIPS needs the ``lpips`` package (which imports torchvision) AND
    its AlexNet backbone weights on disk (``torch.hub.get_dir()/checkpoints/`` + the file name
    torchvision uses); we never download them. The torchvision wheels that install next to this
    project's CPU torch fail at import (see DEPENDENCIES.md), so here the reason says so."""
    try:
        import lpips as _lpips  # noqa: F401
    except Exception as e:  # noqa: BLE001  ImportError, or torchvision's RuntimeError on a mismatched torch
        first = str(e).splitlines()[0] if str(e) else ""
        return False, f"LPIPS not computed: the 'lpips' package is not importable ({type(e).__name__}: {first})"
    import torch

    weights = Path(torch.hub.get_dir()) / "checkpoints" / _ALEX_WEIGHTS
    if not weights.is_file():
        return False, f"LPIPS not computed: its AlexNet weights are not on disk ({weights}; never downloaded)"
    return True, f"lpips with AlexNet weights {weights}"


_LPIPS_NET = {}


def lpips(pred, target) -> float | None:
    """LPIPS (AlexNet) between two [H, W, 3] images in [0, 1]; None only when LPIPS is
    unavailable (see :func:`lpips_status`). Errors while computing it are raised, not hidden."""
    ok, _ = lpips_status()
    if not ok:
        return None
    import lpips as _lpips
    import torch

    if "alex" not in _LPIPS_NET:
        _LPIPS_NET["alex"] = _lpips.LPIPS(net="alex", verbose=False)
    net = _LPIPS_NET["alex"]
    p = _as_hwc_tensor(pred, "pred").permute(2, 0, 1)[None].float() * 2 - 1
    t = _as_hwc_tensor(target, "target").permute(2, 0, 1)[None].float() * 2 - 1
    if p.shape != t.shape:
        raise ValueError(f"pred, target: shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    with torch.no_grad():
        return float(net(p, t))
