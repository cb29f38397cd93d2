"""Real spherical harmonics up to degree 3, with the constants and sign convention of the Inria
3DGS code (``utils/sh_utils.py``) and gsplat, so coefficients in a splat PLY mean the same here."""

from __future__ import annotations

import torch

__all__ = ["SH_C0", "eval_sh", "num_sh_bases", "sh_basis", "sh_to_rgb_offset"]

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
         0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def eval_sh(degree: int, coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Evaluate SH. coeffs [..., K, 3] with K >= (degree+1)^2 (DC first); dirs [..., 3] unit
    vectors (world frame, from the camera centre towards the Gaussian). Returns [..., 3]
    (before the +0.5 offset and clamp that turn it into a colour)."""
    if not 0 <= degree <= 3:
        raise ValueError(f"degree: expected 0..3, got {degree}")
    if coeffs.shape[-2] < num_sh_bases(degree):
        raise ValueError(f"coeffs: degree {degree} needs {num_sh_bases(degree)} bases, got {coeffs.shape[-2]}")
    if degree == 0:
        return SH_C0 * coeffs[..., 0, :]
    # one basis tensor and one weighted sum: in autograd this is a handful of kernels over
    # [..., K, 3], where a term per basis function (a slice of coeffs each) costs a full-size
    # zero-filled gradient per slice in backward
    k = num_sh_bases(degree)
    return (sh_basis(degree, dirs)[..., None] * coeffs[..., :k, :]).sum(-2)


def sh_to_rgb_offset(sh: torch.Tensor) -> torch.Tensor:
    """Colour from an evaluated SH value as 3DGS/gsplat do: clamp_min(value + 0.5, 0)."""
    return torch.clamp_min(sh + 0.5, 0.0)


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """The basis functions themselves: dirs [..., 3] unit vectors -> [..., (degree+1)^2], so that
    ``eval_sh(degree, coeffs, dirs) == (sh_basis(degree, dirs)[..., None] * coeffs).sum(-2)``.
    Used as the NeRF direction encoding (Instant-NGP's SH encoding, here with these constants)."""
    if not 0 <= degree <= 3:
        raise ValueError(f"degree: expected 0..3, got {degree}")
    if dirs.shape[-1] != 3:
        raise ValueError(f"dirs: expected [..., 3], got {tuple(dirs.shape)}")
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2.0 * zz - xx - yy), SH_C2[3] * x * z,
                SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, -1)
