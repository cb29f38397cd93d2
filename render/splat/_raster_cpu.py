"""The fused C++ CPU splat rasterizer (``_raster_cpu.cpp``): tile binning and front-to-back
compositing with a hand-written backward, as one autograd function.

Same values and gradients as :class:`render.splat._torch_raster._Composite` and
:func:`render.splat._torch_raster.project_gaussians` (tests/test_splat_raster_cpp.py: float64
relative error < 1e-4). The EWA projection is one C++ pass per Gaussian each way
(:class:`ProjectCpp`): in autograd it is ~40 small ops and four batched 3x3 matmuls forward and
twice that backward, the largest cost of a training step at 160x120 with 40k Gaussians. SH
colours and the conic stay in PyTorch autograd. Built on first use with torch's C++ extension
loader (a C++ compiler and ninja; cached in ``$TORCH_EXTENSIONS_DIR`` or
``~/.cache/torch_extensions``); where it cannot be built :func:`cpu_kernels` returns None after
one warning and the PyTorch projection and compositor are used.
``RECON_NO_CPP_KERNELS=1`` turns it off.
"""

from __future__ import annotations

import torch

_KERNELS: dict = {}


def cpu_kernels(*, log=None):
    """The built extension module, or None (reason in :func:`cpu_kernels_error`)."""
    from pathlib import Path

    from render._cpp import load_cpu_extension

    return load_cpu_extension(_KERNELS, "recon_splat_raster_cpu", Path(__file__).with_name("_raster_cpu.cpp"),
                              "fused CPU splat rasterizer", log=log,
                              warn_fallback="using the slower PyTorch compositor", openmp=True)


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


class ProjectCpp(torch.autograd.Function):
    """(means [N, 3], quats [N, 4], log_scales [N, 3]) -> (means2d [N, 2], cov2d [N, 2, 2],
    z [N]), as :func:`render.splat._torch_raster.project_gaussians`. ``camera`` = (R [3, 3],
    t [3], fx, fy, cx, cy, lim = (x_neg, x_pos, y_neg, y_pos) bounds of x / z, y / z for the
    Jacobian, eps2d, module). No gradient to the camera."""

    @staticmethod
    def forward(ctx, means, quats, log_scales, camera):
        R, t, fx, fy, cx, cy, lim, eps2d, mod = camera
        m, q, s = means.detach(), quats.detach(), log_scales.detach()
        m2, cov, z = mod.project_forward(m, q, s, R.detach(), t.detach(), fx, fy, cx, cy, lim,
                                         eps2d)
        ctx.camera = camera
        ctx.save_for_backward(m, q, s)
        return m2, cov, z

    @staticmethod
    def backward(ctx, g_m2, g_cov, g_z):
        m, q, s = ctx.saved_tensors
        R, t, fx, fy, cx, cy, lim, eps2d, mod = ctx.camera
        n, dt = m.shape[0], m.dtype
        g_m2 = torch.zeros(n, 2, dtype=dt) if g_m2 is None else g_m2.to(dt)
        g_cov = torch.zeros(n, 2, 2, dtype=dt) if g_cov is None else g_cov.to(dt)
        g_z = torch.zeros(n, dtype=dt) if g_z is None else g_z.to(dt)
        gm, gq, gs = mod.project_backward(m, q, s, R.detach(), t.detach(), fx, fy, lim, g_m2,
                                          g_cov, g_z)
        return gm, gq, gs, None
