"""Volume rendering of packed (ragged) rays: NeRF's quadrature (Max 1995; Mildenhall et al. 2020
eq. 3) and mip-NeRF 360's distortion loss (Barron et al. 2022 eq. 15), for samples stored flat.

Samples of all rays lie in one flat array, sorted by ray and, within a ray, by distance:
``ray_indices [S]`` (non-decreasing), ``t_starts [S]`` and ``t_ends [S]`` (interval ends along the
ray, in the units of the ray parameter: metres when directions are unit vectors). A ray may have
no sample at all.

    delta_i = t_end_i - t_start_i,  alpha_i = 1 - exp(-sigma_i delta_i)
    T_i     = exp(-sum_{j<i, same ray} sigma_j delta_j)      (transmittance)
    w_i     = T_i alpha_i
    C       = sum_i w_i c_i + (1 - sum_i w_i) * background
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RenderedRays", "composite", "distortion_loss", "exclusive_cumsum_packed", "render_weights"]


def _check_packed(ray_indices, t_starts, t_ends, num_rays):
    if ray_indices.ndim != 1 or t_starts.shape != ray_indices.shape or t_ends.shape != ray_indices.shape:
        raise ValueError(f"ray_indices, t_starts, t_ends: expected equal [S] shapes, got "
                         f"{tuple(ray_indices.shape)}, {tuple(t_starts.shape)}, {tuple(t_ends.shape)}")
    if num_rays < 0:
        raise ValueError(f"num_rays: expected >= 0, got {num_rays}")


def exclusive_cumsum_packed(values: torch.Tensor, ray_indices: torch.Tensor, num_rays: int) -> torch.Tensor:
    """Per-ray exclusive prefix sum of ``values [S]`` (accumulated in float64, so long packed
    arrays lose no precision): out_i = sum_{j < i, ray_j == ray_i} values_j."""
    v64 = values.double()
    incl = torch.cumsum(v64, 0)
    excl = incl - v64
    if values.numel() == 0:
        return values.clone()
    # value of the exclusive global sum at the first sample of each ray
    first = torch.full((num_rays,), values.numel(), dtype=torch.long, device=values.device)
    first.scatter_reduce_(0, ray_indices, torch.arange(values.numel(), device=values.device), reduce="amin")
    base = excl[first.clamp_max(values.numel() - 1)]
    return (excl - base[ray_indices]).to(values.dtype)


def render_weights(sigmas: torch.Tensor, ray_indices: torch.Tensor, t_starts: torch.Tensor,
                   t_ends: torch.Tensor, num_rays: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (weights [S], transmittance T_i [S], alpha [S]) for densities ``sigmas [S]`` (>= 0, per
    unit of t)."""
    _check_packed(ray_indices, t_starts, t_ends, num_rays)
    if sigmas.shape != ray_indices.shape:
        raise ValueError(f"sigmas: expected [{ray_indices.numel()}], got {tuple(sigmas.shape)}")
    sd = sigmas * (t_ends - t_starts)
    trans = torch.exp(-exclusive_cumsum_packed(sd, ray_indices, num_rays))
    alpha = 1.0 - torch.exp(-sd)
    return trans * alpha, trans, alpha


@dataclass
class RenderedRays:
    rgb: torch.Tensor  # [R, 3] composited on the background
    opacity: torch.Tensor  # [R] accumulated opacity sum_i w_i
    depth: torch.Tensor  # [R] expected ray distance sum_i w_i t_i / opacity (t_i: interval midpoint); 0 where empty
    weights: torch.Tensor  # [S]


def composite(sigmas: torch.Tensor, rgbs: torch.Tensor, ray_indices: torch.Tensor, t_starts: torch.Tensor,
              t_ends: torch.Tensor, num_rays: int, background: torch.Tensor | None = None) -> RenderedRays:
    """Composite samples into ray colours. rgbs [S, 3] in [0, 1]; background [3] or [R, 3]
    (default black)."""
    if rgbs.shape != (sigmas.shape[0], 3):
        raise ValueError(f"rgbs: expected [{sigmas.shape[0]}, 3], got {tuple(rgbs.shape)}")
    w, _, _ = render_weights(sigmas, ray_indices, t_starts, t_ends, num_rays)
    z = rgbs.new_zeros(num_rays)
    opacity = z.index_add(0, ray_indices, w)
    rgb = rgbs.new_zeros(num_rays, 3).index_add(0, ray_indices, w[:, None] * rgbs)
    mid = 0.5 * (t_starts + t_ends)
    depth_sum = z.index_add(0, ray_indices, w * mid)
    depth = depth_sum / opacity.clamp_min(1e-10)
    if background is not None:
        rgb = rgb + (1.0 - opacity)[:, None] * background.to(rgb.dtype)
    return RenderedRays(rgb, opacity, depth, w)


def distortion_loss(weights: torch.Tensor, ray_indices: torch.Tensor, t_starts: torch.Tensor,
                    t_ends: torch.Tensor, num_rays: int, *, normalize=None) -> torch.Tensor:
    """mip-NeRF 360 distortion loss per ray [R]:
    sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (t_end_i - t_start_i), m = interval midpoints,
    in O(S) with per-ray prefix sums (the midpoints of a ray are sorted). ``normalize``: optional
    callable mapping t to a normalised distance (mip-NeRF 360 uses s-space) applied first."""
    _check_packed(ray_indices, t_starts, t_ends, num_rays)
    if normalize is not None:
        t_starts, t_ends = normalize(t_starts), normalize(t_ends)
    mid = 0.5 * (t_starts + t_ends)
    w_excl = exclusive_cumsum_packed(weights, ray_indices, num_rays)
    wm_excl = exclusive_cumsum_packed(weights * mid, ray_indices, num_rays)
    # sum_{i != j} = 2 sum_i w_i sum_{j<i} w_j (m_i - m_j)
    inter = 2.0 * weights * (mid * w_excl - wm_excl)
    intra = weights ** 2 * (t_ends - t_starts) / 3.0
    z = weights.new_zeros(num_rays)
    return z.index_add(0, ray_indices, inter + intra)
