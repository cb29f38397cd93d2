"""Input encodings of the NeRF field: Instant-NGP's multiresolution hash grid (Müller et al. 2022,
sec. 3), the original NeRF frequency (positional) encoding (Mildenhall et al. 2020, eq. 4) and the
spherical-harmonics direction encoding (degree 3, 16 bases; the basis of ``render.splat.sh``).

The hash grid is vectorised over levels: one gather of ``[N, L, 8]`` table rows per call, no
Python loop over levels. Its trilinear interpolation has an analytic backward pass
(:class:`_HashGridFunction`): gradients to the table by one ``index_add_`` and, when the
positions require them, to the positions from the derivative of the trilinear weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "FrequencyEncoding",
    "HashGrid",
    "HashGridConfig",
    "hash_grid_encode",
    "hash_grid_indices",
    "sh_encode",
]

# Instant-NGP's spatial hash primes (Teschner et al. 2003; tcnn uses 1 for the first axis).
_PRIMES = (1, 2654435761, 805459861)
_CORNERS = torch.tensor([[(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=torch.int64)  # [8, 3]


@dataclass(frozen=True)
class HashGridConfig:
    """Hash-grid hyper-parameters (Instant-NGP table 1 names).

    num_levels: L. features_per_level: F. log2_table_size: T = 2**log2_table_size entries per
    level. base_resolution: N_min cells per axis on the coarsest level; max_resolution: N_max on
    the finest; level l has floor(N_min * b**l) cells per axis with b = (N_max/N_min)**(1/(L-1)).
    """

    num_levels: int = 16
    features_per_level: int = 2
    log2_table_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048

    def validate(self) -> None:
        if not 1 <= self.num_levels <= 32:
            raise ValueError(f"num_levels: expected 1..32, got {self.num_levels}")
        if self.features_per_level < 1:
            raise ValueError(f"features_per_level: expected >= 1, got {self.features_per_level}")
        if not 4 <= self.log2_table_size <= 26:
            raise ValueError(f"log2_table_size: expected 4..26, got {self.log2_table_size}")
        if not 1 <= self.base_resolution <= self.max_resolution:
            raise ValueError(f"base_resolution/max_resolution: expected 1 <= base <= max, got "
                             f"{self.base_resolution}, {self.max_resolution}")

    def resolutions(self) -> list[int]:
        """Cells per axis of every level (Instant-NGP eq. 2-3)."""
        if self.num_levels == 1:
            return [self.base_resolution]
        b = math.exp((math.log(self.max_resolution) - math.log(self.base_resolution)) / (self.num_levels - 1))
        return [math.floor(self.base_resolution * b ** level) for level in range(self.num_levels)]

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level


def hash_grid_indices(x: torch.Tensor, resolutions: torch.Tensor, table_size: int):
    """Table rows and trilinear weights of every corner on every level.

    Args:
        x: [N, 3] positions in the unit cube [0, 1]^3 (clamped).
        resolutions: [L] int64 cells per axis of each level.
        table_size: T rows per level; level l owns rows [l*T, (l+1)*T).
    Returns:
        (rows [N, L, 8] int64 into the [L*T, F] table, weights [N, L, 8], frac [N, L, 3],
        corner bits [8, 3]); corner c has offsets ((c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1)
        along (x, y, z). A level whose (res+1)^3 vertices fit in T is indexed densely
        (i + j*(res+1) + k*(res+1)^2), a finer one through the spatial hash
        (i*1 xor j*2654435761 xor k*805459861) mod T in uint32 arithmetic, as in tcnn.
    """
    res = resolutions.to(x.device)
    pos = x.clamp(0.0, 1.0)[:, None, :] * res[None, :, None].to(x.dtype)  # [N, L, 3]
    base = torch.minimum(pos.floor().long(), (res - 1)[None, :, None])  # so that x = 1 stays in the last cell
    frac = pos - base.to(x.dtype)
    # per axis, the two corner coordinates [N, L, 2]; the 8 corners are their combinations
    two = torch.stack([base, base + 1], -1)  # [N, L, 3, 2]
    side = (res + 1)[None, :, None]
    use_dense = ((res + 1) ** 3 <= table_size)[None, :, None, None, None]
    mask32 = 0xFFFFFFFF
    ax, ay, az = two[:, :, 0], two[:, :, 1], two[:, :, 2]
    dense = (ax[:, :, None, None, :] + (ay * side)[:, :, None, :, None]
             + (az * side * side)[:, :, :, None, None])  # [N, L, z, y, x]
    hashed = (((ax * _PRIMES[0]) & mask32)[:, :, None, None, :] ^ ((ay * _PRIMES[1]) & mask32)[:, :, None, :, None]
              ^ ((az * _PRIMES[2]) & mask32)[:, :, :, None, None]) % table_size
    offset = (torch.arange(len(res), device=x.device) * table_size)[None, :, None, None, None]
    rows = (torch.where(use_dense, dense, hashed) + offset).flatten(2)  # corner c = 4 z + 2 y + x
    wx = torch.stack([1.0 - frac[..., 0], frac[..., 0]], -1)
    wy = torch.stack([1.0 - frac[..., 1], frac[..., 1]], -1)
    wz = torch.stack([1.0 - frac[..., 2], frac[..., 2]], -1)
    w = (wz[:, :, :, None, None] * wy[:, :, None, :, None] * wx[:, :, None, None, :]).flatten(2)
    return rows, w, frac, _CORNERS.to(x.device)


class _HashGridFunction(torch.autograd.Function):
    """out[n, l, :] = sum_c w[n, l, c] * table[rows[n, l, c], :] with an analytic backward."""

    @staticmethod
    def forward(ctx, x, table, resolutions, table_size: int):
        rows, w, frac, bits = hash_grid_indices(x.detach(), resolutions, table_size)
        feats = table[rows]  # [N, L, 8, F]
        out = (feats * w[..., None]).sum(2)  # [N, L, F]
        ctx.save_for_backward(x, table, rows, w, frac, resolutions)
        ctx.bits = bits
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, table, rows, w, frac, resolutions = ctx.saved_tensors
        grad_x = grad_table = None
        if ctx.needs_input_grad[1]:
            contrib = (w[..., None] * grad_out[:, :, None, :]).reshape(-1, table.shape[1])
            grad_table = torch.zeros_like(table).index_add_(0, rows.reshape(-1), contrib.to(table.dtype))
        if ctx.needs_input_grad[0]:
            # d w_c / d frac_d = sign_c,d * prod_{e != d} wd_c,e ; d frac / d x = res (inside the cube)
            bits = ctx.bits.bool()[None, None]
            wd = torch.where(bits, frac[:, :, None, :], 1.0 - frac[:, :, None, :])
            sign = torch.where(bits, 1.0, -1.0).to(x.dtype)
            g_feat = (table[rows] * grad_out[:, :, None, :]).sum(-1)  # [N, L, 8]
            res = resolutions.to(x.device, x.dtype)
            grad_x = torch.zeros_like(x)
            for d in range(3):  # the three axes, not the levels
                others = [e for e in range(3) if e != d]
                dw = sign[..., d] * wd[..., others[0]] * wd[..., others[1]]  # [N, L, 8]
                grad_x[:, d] = ((g_feat * dw).sum(2) * res[None]).sum(1)
            inside = (x > 0) & (x < 1)
            grad_x = grad_x * inside
        return grad_x, grad_table, None, None


def hash_grid_encode(x: torch.Tensor, table: torch.Tensor, resolutions: torch.Tensor, table_size: int) -> torch.Tensor:
    """Multiresolution hash encoding. x: [N, 3] in [0, 1]^3; table: [L*T, F]; -> [N, L*F]
    (level-major: features of level 0 first)."""
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x: expected [N, 3], got {tuple(x.shape)}")
    if table.ndim != 2 or table.shape[0] != len(resolutions) * table_size:
        raise ValueError(f"table: expected [{len(resolutions)}*{table_size}, F], got {tuple(table.shape)}")
    out = _HashGridFunction.apply(x, table, resolutions, table_size)
    return out.reshape(x.shape[0], -1)


class HashGrid(torch.nn.Module):
    """Trainable multiresolution hash grid; forward(x [N, 3] in [0, 1]^3) -> [N, L*F]."""

    def __init__(self, config: HashGridConfig | None = None, *, init_scale: float = 1e-4):
        super().__init__()
        self.config = config or HashGridConfig()
        self.config.validate()
        self.table_size = 2 ** self.config.log2_table_size
        self.register_buffer("resolutions", torch.tensor(self.config.resolutions(), dtype=torch.int64),
                             persistent=False)
        n_rows = self.config.num_levels * self.table_size
        # Instant-NGP initialises the table uniformly in [-1e-4, 1e-4].
        self.table = torch.nn.Parameter((torch.rand(n_rows, self.config.features_per_level) * 2 - 1) * init_scale)

    @property
    def output_dim(self) -> int:
        return self.config.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hash_grid_encode(x, self.table, self.resolutions, self.table_size)


class FrequencyEncoding(torch.nn.Module):
    """NeRF positional encoding gamma(p) = (p, sin(2^k pi p), cos(2^k pi p)) for k < num_frequencies,
    applied per coordinate; forward(x [N, D]) -> [N, D * (1 + 2 * num_frequencies)]."""

    def __init__(self, in_dim: int = 3, num_frequencies: int = 10, *, include_input: bool = True):
        super().__init__()
        if num_frequencies < 1:
            raise ValueError(f"num_frequencies: expected >= 1, got {num_frequencies}")
        self.in_dim, self.include_input = in_dim, include_input
        self.num_frequencies = num_frequencies
        self.output_dim = in_dim * (2 * num_frequencies + int(include_input))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        freqs = (2.0 ** torch.arange(self.num_frequencies, dtype=torch.float64) * math.pi).to(x.device, x.dtype)
        xb = x[..., None, :] * freqs[:, None]  # [N, K, D]
        enc = torch.cat([torch.sin(xb), torch.cos(xb)], -2).flatten(-2)
        return torch.cat([x, enc], -1) if self.include_input else enc


def sh_encode(dirs: torch.Tensor, degree: int = 3) -> torch.Tensor:
    """Real spherical-harmonics basis of unit directions [N, 3] -> [N, (degree+1)^2] (the
    constants and signs of ``render.splat.sh``, so an SH-coefficient colour is basis @ coeffs)."""
    from render.splat.sh import sh_basis

    return sh_basis(degree, dirs)
