"""Differentiable 3D Gaussian splatting in pure PyTorch (CPU or CUDA); the reference for gsplat.

Method (Kerbl et al. 2023, "3D Gaussian Splatting", sec. 4 and 6; Zwicker et al. 2001, EWA):
1. Project: camera-frame mean t = R x + T; 2D covariance  Sigma' = J W Sigma W^T J^T + eps I with
   the perspective Jacobian J of (x, y, z) -> (fx x/z + cx, fy y/z + cy) evaluated at t (x/z and
   y/z clamped to 1.3x the field of view as in 3DGS/gsplat), eps = 0.3 px^2 (low-pass filter).
2. Colour: real SH up to degree 3 in the direction camera centre -> mean, + 0.5, clamped >= 0.
3. Bin: each Gaussian covers the pixels within the ellipse where its alpha can reach 1/255
   (at most 3.33 sigma, as gsplat); intersections (tile, Gaussian) are sorted by tile, then depth.
4. Composite front to back per tile, in chunks of ``chunk_size`` Gaussians: alpha_i = min(max_alpha,
   o_i exp(-d^T Sigma'^-1 d / 2)), skipped below 1/255; a pixel stops before the Gaussian that would
   bring its transmittance to <= 1e-4 (3DGS/gsplat). Tiles whose pixels have all stopped are dropped
   from later chunks (early termination), so the work follows the visible Gaussians.

Everything is ordinary autograd: ``means2d`` is a node in the graph (retain_grad() it for the
densification statistics). Pixel (0, 0) is the centre of the top-left pixel.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from calib import PIXEL_CORNER_OFFSET
from render.splat.sh import eval_sh, sh_to_rgb_offset

ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4


class TorchRaster(NamedTuple):
    rgb: torch.Tensor  # [H, W, 3]
    depth: torch.Tensor  # [H, W]
    alpha: torch.Tensor  # [H, W]
    radii: torch.Tensor  # [N] int32
    means2d: torch.Tensor  # [N, 2]
    depths: torch.Tensor  # [N]


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """[N, 4] wxyz (any norm) -> [N, 3, 3]."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def _jacobian_bounds(fx, fy, cx, cy, width, height) -> list:
    """(x_neg, x_pos, y_neg, y_pos): x / z is clamped to [-x_neg, x_pos] (and y / z alike) where
    the Jacobian is taken, 1.3x the field of view (3DGS / gsplat); gsplat's bounds, with its
    principal point (cx + 0.5) so both backends agree."""
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    cxg, cyg = cx + PIXEL_CORNER_OFFSET, cy + PIXEL_CORNER_OFFSET  # calib's corner convention (tensors)
    return [cxg / fx + 0.3 * tan_fovx, (width - cxg) / fx + 0.3 * tan_fovx,
            cyg / fy + 0.3 * tan_fovy, (height - cyg) / fy + 0.3 * tan_fovy]


def project_gaussians(means, quats, log_scales, R, t, fx, fy, cx, cy, width, height, eps2d):
    """EWA projection. Returns (means2d [N,2], cov2d [N,2,2], z [N]) in our pixel convention."""
    pc = means @ R.T + t
    x, y, z = pc.unbind(-1)
    zs = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
    # Clamp the point used for the Jacobian to 1.3x the field of view (3DGS / gsplat); the bounds
    # are gsplat's, with its principal point (cx + 0.5) so both backends agree.
    lim_x_neg, lim_x_pos, lim_y_neg, lim_y_pos = _jacobian_bounds(fx, fy, cx, cy, width, height)
    tx = zs * torch.clamp(x / zs, min=-lim_x_neg, max=lim_x_pos)
    ty = zs * torch.clamp(y / zs, min=-lim_y_neg, max=lim_y_pos)
    zeros = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zeros, -fx * tx / (zs * zs),
                     zeros, fy / zs, -fy * ty / (zs * zs)], dim=-1).reshape(-1, 2, 3)
    Rq = quat_to_rotmat(quats)
    M = Rq * torch.exp(log_scales)[:, None, :]  # R S
    cov3d = M @ M.transpose(1, 2)
    T = J @ R[None]  # [N, 2, 3]
    cov2d = T @ cov3d @ T.transpose(1, 2)
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], dim=-1)
    return means2d, cov2d, z


def rasterize_torch(means, quats, log_scales, opacity_logits, sh_coeffs, sh_degree, R, t,
                    fx, fy, cx, cy, width, height, background, *, near=0.01, far=1e10, eps2d=0.3,
                    max_alpha=0.99, tile_size=8, chunk_size=32, fused: bool | None = None) -> TorchRaster:
    """Render; ``fused``: composite with the C++ CPU kernels of :mod:`render.splat._raster_cpu`
    (None: on the CPU whenever they build; False: the PyTorch compositor below, the reference)."""
    device, dtype = means.device, means.dtype
    W, H, s = int(width), int(height), int(tile_size)
    mod = None
    if fused is None or fused:
        from render.splat._raster_cpu import cpu_kernels, cpu_kernels_error

        mod = cpu_kernels() if device.type == "cpu" else None
        if fused and mod is None:
            raise RuntimeError(f"fused CPU rasterizer unavailable ({cpu_kernels_error() or 'not a CPU tensor'})")
    # the C++ projection gives no gradient to the camera: poses / intrinsics under optimisation
    # take the autograd projection
    cam_grad = any(isinstance(v, torch.Tensor) and v.requires_grad for v in (R, t, fx, fy, cx, cy))
    if mod is not None and not cam_grad:
        from render.splat._raster_cpu import ProjectCpp

        lim = [float(v) for v in _jacobian_bounds(fx, fy, cx, cy, W, H)]
        means2d, cov2d, z = ProjectCpp.apply(means, quats, log_scales, (
            R, t, float(fx), float(fy), float(cx), float(cy), lim, float(eps2d), mod))
    else:
        means2d, cov2d, z = project_gaussians(means, quats, log_scales, R, t, fx, fy, cx, cy, W, H, eps2d)
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det = a * c - b * b
    det_safe = torch.where(det > 0, det, torch.ones_like(det))
    conic = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    opacity = torch.sigmoid(opacity_logits)

    with torch.no_grad():
        # Extent where alpha can still reach 1/255: d_mahal^2 <= 2 log(255 o), capped at 3.33.
        extent = torch.sqrt(torch.clamp(2.0 * torch.log(opacity.clamp_min(1e-30) / ALPHA_MIN), min=0.0))
        extent = extent.clamp(max=3.33)
        rx = torch.ceil(extent * torch.sqrt(a.clamp_min(0)))
        ry = torch.ceil(extent * torch.sqrt(c.clamp_min(0)))
        mx, my = means2d[:, 0].detach(), means2d[:, 1].detach()
        visible = ((z > near) & (z < far) & (det > 0) & (opacity >= ALPHA_MIN) & (rx > 0) & (ry > 0)
                   & (mx + rx >= -0.5) & (mx - rx <= W - 0.5) & (my + ry >= -0.5) & (my - ry <= H - 0.5)
                   & torch.isfinite(mx) & torch.isfinite(my))
        radii = torch.where(visible, torch.maximum(rx, ry), torch.zeros_like(rx)).to(torch.int32)

    # Colours (only needed for visible Gaussians, but cheap; keeps indexing simple).
    campos = -R.T @ t
    dirs = means - campos
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    colors = sh_to_rgb_offset(eval_sh(sh_degree, sh_coeffs, dirs))

    ntx, nty = (W + s - 1) // s, (H + s - 1) // s
    num_tiles = ntx * nty
    P = s * s
    if mod is not None:
        from render.splat._raster_cpu import CompositeCpp

        feats = torch.cat([means2d, conic, opacity[:, None], colors, z[:, None]], dim=-1)  # [N, 10]
        with torch.no_grad():
            vis_ids = torch.nonzero(visible).squeeze(1)
            vis_ids = vis_ids[torch.argsort(z[vis_ids], stable=True)]  # front to back
            mxv, myv, rxv, ryv = mx[vis_ids], my[vis_ids], rx[vis_ids], ry[vis_ids]
            x0 = torch.clamp(torch.ceil(mxv - rxv), 0, W - 1).long() // s
            x1 = torch.clamp(torch.floor(mxv + rxv), 0, W - 1).long() // s
            y0 = torch.clamp(torch.ceil(myv - ryv), 0, H - 1).long() // s
            y1 = torch.clamp(torch.floor(myv + ryv), 0, H - 1).long() // s
            # pairs whose tile no pixel of the Gaussian's alpha >= 1/255 ellipse reaches are left out
            start, gauss = mod.bin_tiles_culled(vis_ids, x0, x1, y0, y1, ntx, nty, feats.detach(), W, H, s)
        acc, T_img = CompositeCpp.apply(feats, (start, gauss, W, H, s, float(max_alpha), mod))
        alpha_img = 1.0 - T_img
        rgb = acc[..., :3] + T_img[..., None] * background
        depth = acc[..., 3] / alpha_img.clamp_min(1e-10)
        return TorchRaster(rgb, depth, alpha_img, radii, means2d, z)

    with torch.no_grad():
        vis_ids = torch.nonzero(visible).squeeze(1)
        vis_ids = vis_ids[torch.argsort(z[vis_ids], stable=True)]  # front to back
        # pixel ranges with centres inside [m - r, m + r], then tiles
        x0 = torch.clamp(torch.ceil(mx[vis_ids] - rx[vis_ids]), 0, W - 1).long() // s
        x1 = torch.clamp(torch.floor(mx[vis_ids] + rx[vis_ids]), 0, W - 1).long() // s
        y0 = torch.clamp(torch.ceil(my[vis_ids] - ry[vis_ids]), 0, H - 1).long() // s
        y1 = torch.clamp(torch.floor(my[vis_ids] + ry[vis_ids]), 0, H - 1).long() // s
        wx = x1 - x0 + 1
        counts = wx * (y1 - y0 + 1)
        total = int(counts.sum())
        rep = torch.repeat_interleave(torch.arange(vis_ids.numel(), device=device), counts)
        starts = torch.cumsum(counts, 0) - counts
        k = torch.arange(total, device=device) - starts[rep]
        tile_ids = (y0[rep] + k // wx[rep]) * ntx + (x0[rep] + k % wx[rep])
        order = torch.argsort(tile_ids, stable=True)  # stable: keeps depth order within a tile
        tile_ids, gauss = tile_ids[order], vis_ids[rep[order]]
        per_tile = torch.bincount(tile_ids, minlength=num_tiles)
        max_per_tile = int(per_tile.max()) if total else 0
        tile_start = torch.cumsum(per_tile, 0) - per_tile
        slot = torch.arange(total, device=device) - tile_start[tile_ids]
        table = torch.full((num_tiles, max(max_per_tile, 1)), -1, dtype=torch.long, device=device)
        table[tile_ids, slot] = gauss
        pix = torch.arange(P, device=device)
        off_x, off_y = (pix % s).to(dtype), (pix // s).to(dtype)
        tile_x = (torch.arange(num_tiles, device=device) % ntx).to(dtype) * s
        tile_y = (torch.arange(num_tiles, device=device) // ntx).to(dtype) * s

    feats = torch.cat([means2d, conic, opacity[:, None], colors, z[:, None]], dim=-1)  # [N, 10]
    geometry = (table, per_tile, tile_x, tile_y, off_x, off_y, int(chunk_size), float(max_alpha))
    acc, T_pix = _Composite.apply(feats, geometry)
    rgb_acc, depth_acc = acc[..., :3], acc[..., 3]

    def to_image(x):  # [T, P, ...] -> [H, W, ...]
        rest = x.shape[2:]
        x = x.reshape(nty, ntx, s, s, *rest).transpose(1, 2).reshape(nty * s, ntx * s, *rest)
        return x[:H, :W]

    T_img = to_image(T_pix)
    alpha_img = 1.0 - T_img
    rgb = to_image(rgb_acc) + T_img[..., None] * background
    depth = to_image(depth_acc) / alpha_img.clamp_min(1e-10)
    return TorchRaster(rgb, depth, alpha_img, radii, means2d, z)


def _chunk_alpha(feats, table, tile_x, tile_y, off_x, off_y, active, c0, K, max_alpha, T_prev, done_prev):
    """Alphas of one chunk of Gaussians over the pixels of the active tiles, with the 3DGS rules
    (skip < 1/255, clamp, stop before transmittance <= 1e-4). Shared by forward and backward.
    Masks are applied by multiplying with float masks (much faster than torch.where on CPU)."""
    idx = table[active, c0:c0 + K]  # [Ta, K]
    valid = idx >= 0
    f = feats[idx.clamp_min(0)]  # [Ta, K, 10]
    px = tile_x[active][:, None] + off_x[None, :]  # [Ta, P]
    py = tile_y[active][:, None] + off_y[None, :]
    dx = px[:, None, :] - f[..., 0:1]  # [Ta, K, P]
    dy = py[:, None, :] - f[..., 1:2]
    sigma = 0.5 * (f[..., 2:3] * dx * dx + f[..., 4:5] * dy * dy) + f[..., 3:4] * dx * dy
    e = torch.exp(-sigma)
    raw = f[..., 5:6] * e
    alpha = torch.clamp_max(raw, max_alpha)
    keep = ((sigma >= 0) & (alpha >= ALPHA_MIN) & valid[..., None]).to(alpha.dtype)
    alpha = alpha * keep
    T_next = T_prev[:, None, :] * torch.cumprod(1.0 - alpha, dim=1)
    go = ((T_next > TRANSMITTANCE_MIN) & ~done_prev[:, None, :]).to(alpha.dtype)
    keep = keep * go
    alpha = alpha * go
    one_minus = 1.0 - alpha
    trans = torch.cumprod(one_minus, dim=1)
    trans_excl = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=1)
    T_i = trans_excl * T_prev[:, None, :]  # transmittance in front of each Gaussian
    return _Chunk(idx, valid, f, dx, dy, e, raw, alpha, keep, go, one_minus, trans, T_i)


class _Chunk(NamedTuple):
    idx: torch.Tensor  # [Ta, K] Gaussian ids (-1: padding)
    valid: torch.Tensor  # [Ta, K]
    f: torch.Tensor  # [Ta, K, 10] gathered features
    dx: torch.Tensor  # [Ta, K, P] pixel - mean
    dy: torch.Tensor
    e: torch.Tensor  # exp(-sigma)
    raw: torch.Tensor  # opacity * exp(-sigma), before the clamp
    alpha: torch.Tensor  # final alpha (0 where skipped or after the pixel stopped)
    keep: torch.Tensor  # float mask of contributing (Gaussian, pixel) pairs
    go: torch.Tensor  # float mask: pixel still running
    one_minus: torch.Tensor  # 1 - alpha
    trans: torch.Tensor  # inclusive cumulative product of (1 - alpha) within the chunk
    T_i: torch.Tensor  # transmittance in front of each Gaussian


class _Composite(torch.autograd.Function):
    """Front-to-back alpha compositing of features [r, g, b, z] per tile, chunk by chunk.

    Forward keeps only per-chunk pixel states (transmittance, accumulated features, stop flags);
    backward recomputes each chunk's alphas and applies the 3DGS gradient
    dC/dalpha_i = T_i f_i - (sum_{j>i} w_j f_j) / (1 - alpha_i), dT_final/dalpha_i = -T_final / (1 - alpha_i),
    so memory stays O(pixels x chunks) instead of O(pixels x Gaussians-per-tile)."""

    @staticmethod
    def forward(ctx, feats, geometry):
        table, per_tile, tile_x, tile_y, off_x, off_y, K, max_alpha = geometry
        num_tiles, P = table.shape[0], off_x.shape[0]
        acc = torch.zeros(num_tiles, P, 4, device=feats.device, dtype=feats.dtype)
        T_pix = torch.ones(num_tiles, P, device=feats.device, dtype=feats.dtype)
        done = torch.zeros(num_tiles, P, dtype=torch.bool, device=feats.device)
        chunks = []
        max_per_tile = int(per_tile.max()) if per_tile.numel() else 0
        for c0 in range(0, max_per_tile, K):
            active = torch.nonzero((per_tile > c0) & ~done.all(dim=1)).squeeze(1)
            if active.numel() == 0:
                break
            T_prev, done_prev, acc_prev = T_pix[active], done[active], acc[active]
            ch = _KERNELS["alpha"](feats, table, tile_x, tile_y, off_x, off_y, active, c0, K, max_alpha,
                                   T_prev, done_prev)
            w = ch.alpha * ch.T_i
            acc[active] = acc_prev + torch.bmm(w.transpose(1, 2), ch.f[..., 6:10])
            T_pix[active] = T_prev * ch.trans[:, -1]
            done[active] = done_prev | (ch.go[:, -1] == 0)
            chunks.append((c0, active, T_prev, done_prev, acc_prev))
        ctx.geometry = geometry
        ctx.chunks = chunks
        ctx.save_for_backward(feats, acc, T_pix)
        return acc, T_pix

    @staticmethod
    def backward(ctx, g_acc, g_T):
        feats, acc, T_fin = ctx.saved_tensors
        table, _, tile_x, tile_y, off_x, off_y, K, max_alpha = ctx.geometry
        g_feats = torch.zeros_like(feats)
        if g_acc is None:
            g_acc = torch.zeros_like(acc)
        if g_T is None:
            g_T = torch.zeros_like(T_fin)
        g_dot_final = (acc * g_acc).sum(-1)  # [T, P]  g . F_final
        gT_T = g_T * T_fin  # [T, P]
        for c0, active, T_prev, done_prev, acc_prev in ctx.chunks:
            idx, valid, grads = _KERNELS["grads"](feats, table, tile_x, tile_y, off_x, off_y, active, c0, K,
                                                  max_alpha, T_prev, done_prev, acc_prev, g_acc[active],
                                                  g_dot_final[active], gT_T[active])
            g_feats.index_add_(0, idx[valid], grads[valid])
        return g_feats, None


def _chunk_grads(feats, table, tile_x, tile_y, off_x, off_y, active, c0, K, max_alpha, T_prev, done_prev,
                 acc_prev, g, g_dot_final, gT_T):
    """Gradients of one chunk w.r.t. the gathered features [Ta, K, 10] (see _Composite)."""
    ch = _chunk_alpha(feats, table, tile_x, tile_y, off_x, off_y, active, c0, K, max_alpha, T_prev, done_prev)
    f, dx, dy, alpha = ch.f, ch.dx, ch.dy, ch.alpha
    w = alpha * ch.T_i
    g_f = torch.bmm(f[..., 6:10], g.transpose(1, 2))  # [Ta, K, P]: g . f_k
    behind = (g_dot_final - (acc_prev * g).sum(-1))[:, None, :] - torch.cumsum(w * g_f, dim=1)
    d_alpha = ch.T_i * g_f - (behind + gT_T[:, None, :]) / ch.one_minus
    d_alpha_u = d_alpha * (ch.keep * (ch.raw < max_alpha).to(ch.keep.dtype))  # 0 where skipped/clamped
    d_sigma = -d_alpha_u * alpha
    d_opacity = (d_alpha_u * ch.e).sum(-1)
    a, b, c = f[..., 2:3], f[..., 3:4], f[..., 4:5]
    grads = torch.cat([
        (-d_sigma * (a * dx + b * dy)).sum(-1, keepdim=True),
        (-d_sigma * (c * dy + b * dx)).sum(-1, keepdim=True),
        (0.5 * d_sigma * dx * dx).sum(-1, keepdim=True),
        (d_sigma * dx * dy).sum(-1, keepdim=True),
        (0.5 * d_sigma * dy * dy).sum(-1, keepdim=True),
        d_opacity[..., None],
        torch.bmm(w, g),  # d/d[r, g, b, z]
    ], dim=-1)  # [Ta, K, 10]
    return ch.idx, ch.valid, grads


_EAGER = {"alpha": _chunk_alpha, "grads": _chunk_grads}
_KERNELS = dict(_EAGER)


def use_compiled_kernels(enable: bool = True) -> bool:
    """Fuse the per-chunk element-wise work with ``torch.compile`` (Inductor generates C++ on the
    CPU, Triton on CUDA): about 3-6x faster per chunk, at the price of a one-time compilation
    (tens of seconds to minutes; cached by Inductor across runs). Returns whether it is on; falls
    back to eager PyTorch when torch.compile is unavailable."""
    if not enable:
        _KERNELS.update(_EAGER)
        return False
    try:
        for name, fn in _EAGER.items():
            _KERNELS[name] = _guarded(name, torch.compile(fn, dynamic=True))
    except Exception:  # noqa: BLE001 - torch.compile set-up failures of any kind: eager kernels
        _KERNELS.update(_EAGER)
        return False
    return True


def _guarded(name, compiled):
    """Run the compiled kernel; if compilation fails at the first call (no compiler, unsupported
    op), warn once and use the eager reference from then on."""
    def run(*args):
        try:
            return compiled(*args)
        except Exception as e:  # noqa: BLE001 - warned below, then the eager kernel
            import warnings

            warnings.warn(f"torch.compile of the splat kernel '{name}' failed ({type(e).__name__}: {e}); "
                          "using eager PyTorch", stacklevel=2)
            _KERNELS[name] = _EAGER[name]
            return _EAGER[name](*args)
    return run
