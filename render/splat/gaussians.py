"""Trainable Gaussians as torch tensors, and conversion to/from :class:`recon.io.GaussianCloud`
(the NumPy type that the PLY reader/writer and the viewer use)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recon.io.gaussians import GaussianCloud

__all__ = ["Gaussians"]


@dataclass(eq=False)
class Gaussians:
    """N Gaussians in their raw (pre-activation) parameterisation, as 3DGS optimises them.

    means [N, 3] world; log_scales [N, 3]; quats_wxyz [N, 4] (normalised when used);
    opacity_logits [N]; sh_dc [N, 1, 3]; sh_rest [N, K, 3] (K = 0, 3, 8, 15).
    """

    means: torch.Tensor
    log_scales: torch.Tensor
    quats_wxyz: torch.Tensor
    opacity_logits: torch.Tensor
    sh_dc: torch.Tensor
    sh_rest: torch.Tensor

    NAMES = ("means", "log_scales", "quats_wxyz", "opacity_logits", "sh_dc", "sh_rest")

    def __post_init__(self):
        n = self.means.shape[0] if isinstance(self.means, torch.Tensor) else None
        expect = {"means": (3,), "log_scales": (3,), "quats_wxyz": (4,), "opacity_logits": (),
                  "sh_dc": (1, 3)}
        for name in self.NAMES:
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
            if t.shape[:1] != (n,):
                raise ValueError(f"{name}: expected {n} rows (as means), got shape {tuple(t.shape)}")
            if name in expect and tuple(t.shape[1:]) != expect[name]:
                raise ValueError(f"{name}: expected shape [N, {', '.join(map(str, expect[name]))}], "
                                 f"got {tuple(t.shape)}")
        if self.sh_rest.ndim != 3 or self.sh_rest.shape[2] != 3 or self.sh_rest.shape[1] not in (0, 3, 8, 15):
            raise ValueError(f"sh_rest: expected [N, K in (0, 3, 8, 15), 3], got {tuple(self.sh_rest.shape)}")

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def max_sh_degree(self) -> int:
        return {0: 0, 3: 1, 8: 2, 15: 3}[self.sh_rest.shape[1]]

    @property
    def device(self) -> torch.device:
        return self.means.device

    def sh_coeffs(self) -> torch.Tensor:
        """[N, 1 + K, 3] all SH coefficients, DC first."""
        return torch.cat([self.sh_dc, self.sh_rest], dim=1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.NAMES}

    def to(self, device=None, dtype=None) -> Gaussians:
        return Gaussians(**{k: v.to(device=device, dtype=dtype) for k, v in self.tensors().items()})

    def detach(self) -> Gaussians:
        return Gaussians(**{k: v.detach() for k, v in self.tensors().items()})

    # ---- conversion ------------------------------------------------------------------
    @classmethod
    def from_cloud(cls, cloud: GaussianCloud, *, device="cpu", dtype=torch.float32) -> Gaussians:
        if not isinstance(cloud, GaussianCloud):
            raise TypeError(f"cloud: expected recon.io.GaussianCloud, got {type(cloud).__name__}")

        def t(a):
            return torch.as_tensor(np.ascontiguousarray(a), device=device).to(dtype)

        return cls(t(cloud.means), t(cloud.log_scales), t(cloud.quats_wxyz), t(cloud.opacity_logits),
                   t(cloud.sh_dc)[:, None, :], t(cloud.sh_rest))

    def to_cloud(self) -> GaussianCloud:
        def a(x):
            return x.detach().to("cpu", torch.float32).numpy()

        return GaussianCloud(a(self.means), a(self.log_scales), a(self.quats_wxyz),
                             a(self.opacity_logits), a(self.sh_dc[:, 0, :]), a(self.sh_rest))

