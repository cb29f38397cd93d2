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
    "hash_grid_encode_cpp",
    "hash_grid_encode_fast",
    "cpu_kernels",
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


def hash_grid_indices(x: torch.Tensor, resolutions: torch.Tensor, table_size: int, first_level: int = 0):
    """Table rows and trilinear weights of every corner on every level.

    Args:
        x: [N, 3] positions in the unit cube [0, 1]^3 (clamped).
        resolutions: [L] int64 cells per axis of each level.
        table_size: T rows per level; level l owns rows [l*T, (l+1)*T).
        first_level: index of the first of ``resolutions``' levels in the table (a subset of the
            levels, e.g. the hashed ones, is indexed at its own rows).
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
    offset = ((torch.arange(len(res), device=x.device) + first_level) * table_size)[None, :, None, None, None]
    rows = (torch.where(use_dense, dense, hashed) + offset).flatten(2)  # corner c = 4 z + 2 y + x
    wx = torch.stack([1.0 - frac[..., 0], frac[..., 0]], -1)
    wy = torch.stack([1.0 - frac[..., 1], frac[..., 1]], -1)
    wz = torch.stack([1.0 - frac[..., 2], frac[..., 2]], -1)
    w = (wz[:, :, :, None, None] * wy[:, :, None, :, None] * wx[:, :, None, None, :]).flatten(2)
    return rows, w, frac, _CORNERS.to(x.device)


class _HashGridFunction(torch.autograd.Function):
    """out[n, l, :] = sum_c w[n, l, c] * table[rows[n, l, c], :] with an analytic backward."""

    @staticmethod
    def forward(ctx, x, table, resolutions, table_size: int, first_level: int = 0):
        rows, w, frac, bits = hash_grid_indices(x.detach(), resolutions, table_size, first_level)
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
        return grad_x, grad_table, None, None, None


class _DenseVolumes(torch.autograd.Function):
    """The dense levels' table rows laid out as one zero-padded volume batch [Ld, F, D, D, D]
    (z, y, x order, as ``grid_sample`` reads it): ``vol.view(-1, F)[dst] = table[src]``; the
    backward gathers the rows back (the map is one-to-one, so no accumulation)."""

    @staticmethod
    def forward(ctx, table, src, dst, shape):
        vol = table.new_zeros(shape[0] * shape[2] * shape[3] * shape[4], shape[1])
        vol[dst] = table[src]
        ctx.save_for_backward(src, dst)
        ctx.n_rows = table.shape[0]
        return vol.view(shape[0], shape[2], shape[3], shape[4], shape[1]).permute(0, 4, 1, 2, 3)

    @staticmethod
    def backward(ctx, grad_vol):
        src, dst = ctx.saved_tensors
        g = grad_vol.permute(0, 2, 3, 4, 1).reshape(-1, grad_vol.shape[1])
        grad_table = g.new_zeros(ctx.n_rows, g.shape[1])
        grad_table[src] = g[dst]
        return grad_table, None, None, None


def _dense_volume_map(resolutions: list[int], table_size: int, device=None):
    """Rows of the dense levels (those whose (res+1)^3 vertices fit in T) -> positions in the
    padded volume batch of :class:`_DenseVolumes`. -> (num_dense_levels, D, src, dst)."""
    dense = [r for r in resolutions if (r + 1) ** 3 <= table_size]
    if not dense:
        return 0, 0, None, None
    d = max(dense) + 1
    src, dst = [], []
    for lvl, r in enumerate(dense):  # once, at construction: not the hot path
        n = r + 1
        i = torch.arange(n ** 3)
        x, y, z = i % n, (i // n) % n, i // (n * n)
        src.append(lvl * table_size + i)
        dst.append(((lvl * d + z) * d + y) * d + x)
    return len(dense), d, torch.cat(src).to(device), torch.cat(dst).to(device)


def hash_grid_encode_fast(x: torch.Tensor, table: torch.Tensor, resolutions: list[int], table_size: int,
                          dense_map=None) -> torch.Tensor:
    """The same encoding as :func:`hash_grid_encode` (values and gradients), faster: the dense
    (coarse) levels are sampled in one batched trilinear ``grid_sample`` over a padded volume per
    level, the hashed (fine) levels by the gather of :func:`hash_grid_encode`. Dense levels come
    first (resolutions increase), so the level-major output order is unchanged.
    ``dense_map``: the precomputed :func:`_dense_volume_map` (else computed here)."""
    n_dense, d, src, dst = dense_map if dense_map is not None else \
        _dense_volume_map(list(resolutions), table_size, table.device)
    outs = []
    if n_dense:
        f = table.shape[1]
        vol = _DenseVolumes.apply(table, src, dst, (n_dense, f, d, d, d))
        res = torch.tensor(list(resolutions)[:n_dense], dtype=x.dtype, device=x.device)
        # align_corners=True: normalised -1..1 spans vertex 0..D-1; level l's vertices 0..res_l
        # no gradient on the cube's faces and outside it, as in the reference's backward
        xc = torch.where((x > 0) & (x < 1), x, x.detach().clamp(0.0, 1.0)) if x.requires_grad else x.clamp(0.0, 1.0)
        g = xc[None] * (res * (2.0 / (d - 1)))[:, None, None] - 1.0  # [Ld, N, 3] (x, y, z)
        out = torch.nn.functional.grid_sample(vol, g.view(n_dense, -1, 1, 1, 3), mode="bilinear",
                                              padding_mode="border", align_corners=True)  # [Ld, F, N, 1, 1]
        outs.append(out.view(n_dense, f, -1).permute(2, 0, 1).reshape(x.shape[0], n_dense * f))
    if n_dense < len(resolutions):
        res_h = torch.as_tensor(list(resolutions)[n_dense:], dtype=torch.int64)
        outs.append(_HashGridFunction.apply(x, table, res_h, table_size, n_dense).flatten(1))
    return outs[0] if len(outs) == 1 else torch.cat(outs, -1)


_KERNELS: dict = {}


def cpu_kernels(*, log=None):
    """The fused C++ hash-grid kernels (``_hashgrid_cpu.cpp``), built on first use with torch's
    C++ extension loader (a C++ compiler and ninja; about a minute once, then cached in
    ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``); None where they cannot be built
    (the caller falls back to PyTorch ops) or ``RECON_NO_CPP_KERNELS=1``. The reason of a failure
    is in ``cpu_kernels_error()``."""
    from pathlib import Path

    from render._cpp import load_cpu_extension

    return load_cpu_extension(_KERNELS, "recon_hashgrid_cpu", Path(__file__).with_name("_hashgrid_cpu.cpp"),
                              "fused CPU hash-grid kernels", log=log, openmp=True)


def cpu_kernels_error() -> str | None:
    return _KERNELS.get("error")


class _HashGridCpp(torch.autograd.Function):
    """The fused CPU kernels as an autograd function (same values and gradients as
    :class:`_HashGridFunction`)."""

    @staticmethod
    def forward(ctx, x, table, resolutions, table_size: int, kernels):
        out = kernels.hash_forward(x.detach(), table.detach(), resolutions, table_size, 0)
        ctx.save_for_backward(x, table, resolutions)
        ctx.table_size, ctx.kernels = table_size, kernels
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, table, resolutions = ctx.saved_tensors
        gt, gx = ctx.kernels.hash_backward(grad_out, x.detach(), table.detach(), resolutions, ctx.table_size, 0,
                                           bool(ctx.needs_input_grad[1]), bool(ctx.needs_input_grad[0]))
        return (gx if ctx.needs_input_grad[0] else None), (gt if ctx.needs_input_grad[1] else None), None, None, None


def hash_grid_encode_cpp(x: torch.Tensor, table: torch.Tensor, resolutions: torch.Tensor, table_size: int,
                         kernels=None) -> torch.Tensor:
    """:func:`hash_grid_encode` through the fused CPU kernels (CPU tensors; float32 or float64)."""
    kernels = kernels or cpu_kernels()
    if kernels is None:
        raise RuntimeError(f"fused CPU hash-grid kernels unavailable ({cpu_kernels_error()})")
    out = _HashGridCpp.apply(x, table, resolutions.cpu(), table_size, kernels)
    return out.flatten(1)


def hash_grid_encode(x: torch.Tensor, table: torch.Tensor, resolutions: torch.Tensor, table_size: int) -> torch.Tensor:
    """Multiresolution hash encoding. x: [N, 3] in [0, 1]^3; table: [L*T, F]; -> [N, L*F]
    (level-major: features of level 0 first)."""
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x: expected [N, 3], got {tuple(x.shape)}")
    if table.ndim != 2 or table.shape[0] != len(resolutions) * table_size:
        raise ValueError(f"table: expected [{len(resolutions)}*{table_size}, F], got {tuple(table.shape)}")
    out = _HashGridFunction.apply(x, table, resolutions, table_size)
    return out.flatten(1)


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
        # backend: "cpp" (fused CPU kernels, hash_grid_encode_cpp), "grid_sample" (dense levels
        # through one batched grid_sample, hash_grid_encode_fast), "reference" (the pure gather,
        # hash_grid_encode) or "auto" (cpp on a CPU when it builds, else grid_sample). All give the
        # same values and gradients (tests/test_nerf_core.py).
        self.backend = "auto"

    @property
    def output_dim(self) -> int:
        return self.config.output_dim

    def _dense_map(self):
        key = (self.table.device,)
        if getattr(self, "_map_key", None) != key:
            self._map = _dense_volume_map(self.config.resolutions(), self.table_size, self.table.device)
            self._map_key = key
        return self._map

    def resolved_backend(self) -> str:
        """The implementation :meth:`forward` uses: ``backend`` with "auto" resolved ("cpp" on a CPU
        where the fused kernels build, else "grid_sample")."""
        if self.backend != "auto":
            return self.backend
        if self.table.device.type == "cpu" and cpu_kernels() is not None:
            return "cpp"
        return "grid_sample"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.resolved_backend()
        if backend == "cpp":
            return hash_grid_encode_cpp(x, self.table, self.resolutions, self.table_size)
        if backend == "grid_sample":
            return hash_grid_encode_fast(x, self.table, self.config.resolutions(), self.table_size, self._dense_map())
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
