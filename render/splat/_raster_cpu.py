"""The fused C++ CPU splat rasterizer (``_raster_cpu.cpp``): tile binning and front-to-back
compositing with a hand-written backward, as one autograd function.

Same values and gradients as :class:`render.splat._torch_raster._Composite` (tests/
test_splat_raster_cpp.py: float64 relative error < 1e-4); projection, SH colours and the conic
stay in PyTorch autograd. Built on first use with torch's C++ extension loader (a C++ compiler and
ninja; cached in ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``); where it cannot be
built :func:`cpu_kernels` returns None after one warning and the PyTorch compositor is used.
``RECON_NO_CPP_KERNELS=1`` turns it off.
"""

from __future__ import annotations

import torch

_KERNELS: dict = {}


def cpu_kernels(*, log=None):
    """The built extension module, or None (reason in :func:`cpu_kernels_error`)."""
    from pathlib import Path

    from render._cpp import load_cpu_extension

    return load_cpu_extension(_KERNELS, "recon_splat_raster_cpu_v1", Path(__file__).with_name("_raster_cpu.cpp"),
                              "fused CPU splat rasterizer", log=log,
                              warn_fallback="using the slower PyTorch compositor")


def cpu_kernels_error() -> str | None:
    return _KERNELS.get("error")


class CompositeCpp(torch.autograd.Function):
    """feats [N, 10] (mean x, y, conic a, b, c, opacity, r, g, b, z) -> (acc [H, W, 4], T [H, W]):
    premultiplied colour and depth, final transmittance. ``geometry`` = (tile start [T + 1],
    Gaussian ids [I] int32, W, H, tile size, max_alpha, module)."""

    @staticmethod
    def forward(ctx, feats, geometry):
        start, gauss, W, H, s, max_alpha, mod = geometry
        f = feats.detach().contiguous()
        acc, T, last = mod.forward(f, start, gauss, W, H, s, max_alpha)
        ctx.geometry = geometry
        ctx.save_for_backward(f, T, last)
        return acc, T

    @staticmethod
    def backward(ctx, g_acc, g_T):
        f, T, last = ctx.saved_tensors
        start, gauss, W, H, s, max_alpha, mod = ctx.geometry
        if g_acc is None:
            g_acc = torch.zeros(H, W, 4, dtype=f.dtype)
        if g_T is None:
            g_T = torch.zeros(H, W, dtype=f.dtype)
        g = mod.backward(f, start, gauss, W, H, s, max_alpha, T, last, g_acc.to(f.dtype).contiguous(),
                         g_T.to(f.dtype).contiguous())
        return g, None
