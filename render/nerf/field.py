"""The radiance field F(u, d) -> (sigma, rgb) of Instant-NGP (Müller et al. 2022 sec. 5.4):
hash-grid features of the position -> a one-hidden-layer density MLP whose first output is
log-density (sigma = exp, clamped in the backward pass) and whose outputs are geometry
features; those and the SH encoding of the view direction -> a two-hidden-layer colour MLP
(sigmoid). ``encoding="frequency"`` swaps the hash grid for NeRF's positional encoding (with a
deeper MLP), the textbook variant for comparison.

Positions are in the field's unit cube [0, 1]^3 (see :class:`render.nerf.sampling.SceneBounds`);
directions are unit vectors in the world frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from render.nerf.encoding import FrequencyEncoding, HashGrid, HashGridConfig, sh_encode

__all__ = ["FieldConfig", "NerfField"]


class _TruncExp(torch.autograd.Function):
    """exp with the gradient clamped (torch-ngp's trunc_exp): keeps early steps finite."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(-15, 15))


def _mlp(d_in: int, width: int, depth: int, d_out: int) -> torch.nn.Sequential:
    layers, d = [], d_in
    for _ in range(depth):
        layers += [torch.nn.Linear(d, width), torch.nn.ReLU(inplace=True)]
        d = width
    layers.append(torch.nn.Linear(d, d_out))
    return torch.nn.Sequential(*layers)


@dataclass(frozen=True)
class FieldConfig:
    encoding: str = "hash"  # "hash" or "frequency"
    hash: HashGridConfig = field(default_factory=HashGridConfig)
    num_frequencies: int = 10  # frequency encoding only
    geo_features: int = 15  # density-MLP outputs besides log-density
    hidden: int = 64
    density_layers: int = 1  # hidden layers (frequency encoding: 4)
    color_layers: int = 2
    sh_degree: int = 3
    density_bias: float = -1.0  # initial log-density offset

    def validate(self) -> None:
        if self.encoding not in ("hash", "frequency"):
            raise ValueError(f"encoding: expected 'hash' or 'frequency', got {self.encoding!r}")
        if not 0 <= self.sh_degree <= 3:
            raise ValueError(f"sh_degree: expected 0..3, got {self.sh_degree}")
        if self.hidden < 1 or self.geo_features < 0:
            raise ValueError(f"hidden/geo_features: expected >= 1 / >= 0, got {self.hidden}, {self.geo_features}")
        if self.encoding == "hash":
            self.hash.validate()

    def to_dict(self) -> dict:
        import dataclasses

        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FieldConfig:
        d = dict(d)
        d["hash"] = HashGridConfig(**d["hash"])
        return cls(**d)


class NerfField(torch.nn.Module):
    def __init__(self, config: FieldConfig | None = None):
        super().__init__()
        self.config = cfg = config or FieldConfig()
        cfg.validate()
        if cfg.encoding == "hash":
            self.encoder = HashGrid(cfg.hash)
            depth = cfg.density_layers
        else:
            self.encoder = FrequencyEncoding(3, cfg.num_frequencies)
            depth = max(cfg.density_layers, 4)
        self.density_mlp = _mlp(self.encoder.output_dim, cfg.hidden, depth, 1 + cfg.geo_features)
        self.color_mlp = _mlp(cfg.geo_features + (cfg.sh_degree + 1) ** 2, cfg.hidden, cfg.color_layers, 3)

    def _geometry(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = u if self.config.encoding == "hash" else u * 2.0 - 1.0
        h = self.density_mlp(self.encoder(x))
        sigma = _TruncExp.apply(h[:, 0] + self.config.density_bias)
        return sigma, h[:, 1:]

    def density(self, u: torch.Tensor) -> torch.Tensor:
        """u [N, 3] in [0, 1]^3 -> sigma [N] (per metre of ray when the bounds are in metres)."""
        return self._geometry(u)[0]

    def forward(self, u: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u [N, 3], dirs [N, 3] unit world directions -> (sigma [N], rgb [N, 3] in [0, 1])."""
        if u.ndim != 2 or u.shape[1] != 3 or dirs.shape != u.shape:
            raise ValueError(f"u, dirs: expected [N, 3] each, got {tuple(u.shape)}, {tuple(dirs.shape)}")
        sigma, geo = self._geometry(u)
        rgb = torch.sigmoid(self.color_mlp(torch.cat([geo, sh_encode(dirs, self.config.sh_degree)], -1)))
        return sigma, rgb
