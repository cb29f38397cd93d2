"""Where the field lives and where rays are sampled.

- :class:`SceneBounds`: the map from world coordinates (metres, the dataset's world frame) to the
  field's unit cube [0, 1]^3. ``kind="box"``: an axis-aligned box (bounded scenes: objects or a
  room seen from inside). ``kind="contract"``: mip-NeRF 360's scene contraction (Barron et al.
  2022 eq. 10, with the L-infinity norm as in nerfstudio so the contracted space is a cube) of a
  cube of half-size ``radius`` around ``centre``: everything out to infinity lands in [0, 1]^3.
  :func:`choose_bounds` picks one from the camera layout and the SfM points.
- :class:`OccupancyGrid`: a binary grid over the unit cube, updated from the field's density
  during training (Instant-NGP sec. 4 / nerfacc): samples in empty cells are skipped.
- :func:`march_rays`: stratified samples along rays (fixed step in a box; Instant-NGP's cone
  stepping, dt proportional to t, in contracted scenes), empty-space skipping through the grid
  and early ray termination (transmittance below ``early_stop_eps``) with a no-grad density pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["OccupancyGrid", "PackedSamples", "SceneBounds", "choose_bounds", "march_rays"]


@dataclass(frozen=True)
class SceneBounds:
    """kind: "box" or "contract". box: ``lo``/``hi`` [3] world corners. contract: ``centre`` [3]
    and ``radius`` (half-size of the uncontracted inner cube, metres). ``near``/``far``: ray
    distance limits (metres)."""

    kind: str
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    near: float
    far: float

    def __post_init__(self):
        for name in ("lo", "hi"):  # plain floats: safe to torch.load(weights_only=True) and to JSON
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "near", float(self.near))
        object.__setattr__(self, "far", float(self.far))
        if self.kind not in ("box", "contract"):
            raise ValueError(f"kind: expected 'box' or 'contract', got {self.kind!r}")
        if not all(h > l for l, h in zip(self.lo, self.hi)):
            raise ValueError(f"lo/hi: expected lo < hi on every axis, got {self.lo}, {self.hi}")
        if not 0 <= self.near < self.far:
            raise ValueError(f"near/far: expected 0 <= near < far, got {self.near}, {self.far}")

    @property
    def centre(self) -> np.ndarray:
        return 0.5 * (np.asarray(self.lo) + np.asarray(self.hi))

    @property
    def half_size(self) -> np.ndarray:
        return 0.5 * (np.asarray(self.hi) - np.asarray(self.lo))

    @property
    def scale(self) -> float:
        """A length (metres) for step sizes: the inner cube's largest half-size."""
        return float(self.half_size.max())

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """World points [..., 3] -> field coordinates in [0, 1]^3 (clamped for the box)."""
        lo = torch.as_tensor(self.lo, dtype=x.dtype, device=x.device)
        hi = torch.as_tensor(self.hi, dtype=x.dtype, device=x.device)
        y = (x - lo) / (hi - lo) * 2.0 - 1.0  # inner cube -> [-1, 1]^3
        if self.kind == "box":
            return ((y + 1.0) * 0.5).clamp(0.0, 1.0)
        n = y.abs().amax(-1, keepdim=True).clamp_min(1e-12)
        y = torch.where(n > 1.0, (2.0 - 1.0 / n) * (y / n), y)  # [-2, 2]^3
        return (y + 2.0) * 0.25

    def to_dict(self) -> dict:
        return {"kind": self.kind, "lo": list(self.lo), "hi": list(self.hi), "near": self.near, "far": self.far}

    @classmethod
    def from_dict(cls, d: dict) -> SceneBounds:
        return cls(d["kind"], tuple(d["lo"]), tuple(d["hi"]), float(d["near"]), float(d["far"]))

    def ray_limits(self, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per ray [R] near/far distances: the box's slab intersection clipped to [near, far]
        (box); [near, far] (contract). Rays missing the box get far <= near."""
        near = torch.full(origins.shape[:1], self.near, dtype=origins.dtype, device=origins.device)
        far = torch.full_like(near, self.far)
        if self.kind == "contract":
            return near, far
        lo = torch.as_tensor(self.lo, dtype=origins.dtype, device=origins.device)
        hi = torch.as_tensor(self.hi, dtype=origins.dtype, device=origins.device)
        inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
        t0, t1 = (lo - origins) * inv, (hi - origins) * inv
        tmin = torch.minimum(t0, t1).amax(-1)
        tmax = torch.maximum(t0, t1).amin(-1)
        return torch.maximum(near, tmin), torch.minimum(far, tmax)


def choose_bounds(cam_centres: np.ndarray, view_dirs: np.ndarray, points: np.ndarray | None = None, *,
                  kind: str = "auto") -> tuple[SceneBounds, str]:
    """Bounds from the camera layout (centres [V, 3], optical axes [V, 3], world) and the SfM
    points [P, 3] if any. -> (bounds, reason).

    Rule for ``kind="auto"``: with points, the robust extent of the points (0.5-99.5 %
    percentiles) is compared with the camera spread around the point the cameras look at; when the
    points stay within 4x the camera distance (an object seen from around it, a room seen from
    inside), the scene is bounded and the box is the percentile box padded by 5 % (cameras may lie
    outside it: their rays start where they enter it); otherwise (far background, forward-facing captures of large scenes) it is
    contracted around a cube holding the cameras and the central points. Without points the
    cameras are assumed to look at an object: a box around the look-at point of half-size 0.6 x
    the mean camera distance (contract: a cube holding the cameras).
    """
    if kind not in ("auto", "box", "contract"):
        raise ValueError(f"kind: expected 'auto', 'box' or 'contract', got {kind!r}")
    c = np.asarray(cam_centres, np.float64).reshape(-1, 3)
    d = np.asarray(view_dirs, np.float64).reshape(-1, 3)
    A, b = np.zeros((3, 3)), np.zeros(3)
    for ci, di in zip(c, d):
        P = np.eye(3) - np.outer(di, di)
        A += P
        b += P @ ci
    try:
        target = np.linalg.solve(A, b) if len(c) > 1 else c[0] + d[0]
    except np.linalg.LinAlgError:
        target = c.mean(0)
    cam_dist = float(np.linalg.norm(c - target, axis=1).mean()) or 1.0
    have_points = points is not None and len(points) >= 20
    if have_points:
        p = np.asarray(points, np.float64)
        plo, phi = np.percentile(p, 0.5, axis=0), np.percentile(p, 99.5, axis=0)
        reach = float(np.linalg.norm(np.maximum(np.abs(plo - target), np.abs(phi - target))))
        bounded = reach <= 4.0 * cam_dist
        why = f"points reach {reach:.3g} from the look-at point, cameras {cam_dist:.3g} away"
    else:
        bounded = True
        why = "no 3D points: cameras assumed to look at an object"
    if kind == "auto":
        kind = "box" if bounded else "contract"
        why = f"auto -> {kind} ({why})"
    else:
        why = f"{kind} (requested)"
    if kind == "box":
        if have_points:
            pad = 0.05 * (phi - plo)
            lo, hi = plo - pad, phi + pad
        else:
            lo, hi = target - 0.6 * cam_dist, target + 0.6 * cam_dist
        far = float(np.linalg.norm(hi - lo)) + float(np.linalg.norm(c - 0.5 * (lo + hi), axis=1).max())
        return SceneBounds("box", tuple(lo), tuple(hi), 0.0, far), why
    pts = [c]
    if have_points:
        pts.append(np.percentile(p, [25, 75], axis=0))
    allp = np.concatenate(pts)
    centre = 0.5 * (allp.min(0) + allp.max(0))
    radius = float(np.abs(allp - centre).max()) * 1.1 or 1.0
    lo, hi = centre - radius, centre + radius
    return SceneBounds("contract", tuple(lo), tuple(hi), 0.02 * radius, 1000.0 * radius), why


class OccupancyGrid(torch.nn.Module):
    """Binary occupancy over the unit cube (``resolution``^3 cells) with an EMA of the density
    (Instant-NGP: decay 0.95, cells occupied where the density exceeds min(threshold, mean))."""

    def __init__(self, resolution: int = 64, *, decay: float = 0.95):
        super().__init__()
        if not 4 <= resolution <= 512:
            raise ValueError(f"resolution: expected 4..512, got {resolution}")
        self.resolution, self.decay = resolution, decay
        n = resolution ** 3
        self.register_buffer("density", torch.zeros(n))  # EMA; every cell counts as occupied until the first update
        self.register_buffer("occupied", torch.ones(n, dtype=torch.bool))
        # cells kept occupied whatever their density (see pin); training-time only
        self.register_buffer("pinned", torch.zeros(n, dtype=torch.bool), persistent=False)

    def cell_index(self, u: torch.Tensor) -> torch.Tensor:
        g = self.resolution
        ijk = (u * g).long().clamp(0, g - 1)
        return ijk[..., 0] + ijk[..., 1] * g + ijk[..., 2] * g * g

    def is_occupied(self, u: torch.Tensor) -> torch.Tensor:
        return self.occupied[self.cell_index(u)]

    def pin(self, u: torch.Tensor) -> int:
        """Keep the cells holding the points ``u [N, 3]`` (unit cube) occupied at every update:
        surfaces the SfM saw are never skipped before the field has learned them (thin structures
        fill a small part of their cells, and a cell re-evaluated at one random point at a time is
        culled before their density grows). Returns the number of pinned cells."""
        if u.ndim != 2 or u.shape[1] != 3:
            raise ValueError(f"u: expected [N, 3] unit-cube points, got {tuple(u.shape)}")
        if len(u):
            inside = ((u >= 0) & (u <= 1)).all(-1)
            self.pinned[self.cell_index(u[inside])] = True
        self.occupied |= self.pinned
        return int(self.pinned.sum())

    def cell_centres(self, index: torch.Tensor, jitter: bool = True) -> torch.Tensor:
        g = self.resolution
        ijk = torch.stack([index % g, (index // g) % g, index // (g * g)], -1).to(torch.float32)
        off = torch.rand_like(ijk) if jitter else torch.full_like(ijk, 0.5)
        return (ijk + off) / g

    @torch.no_grad()
    def update(self, density_fn, *, threshold: float, max_cells: int = 1 << 18, chunk: int = 1 << 16) -> float:
        """Re-evaluate ``density_fn(u [N, 3]) -> sigma [N]`` at jittered points of (a random subset
        of, at most ``max_cells``) the cells; returns the occupied fraction. ``threshold`` is a
        density (per unit of t)."""
        n = self.density.numel()
        idx = torch.arange(n, device=self.density.device) if n <= max_cells else \
            torch.randint(0, n, (max_cells,), device=self.density.device)
        new = torch.cat([density_fn(self.cell_centres(idx[i:i + chunk])).float().reshape(-1)
                         for i in range(0, len(idx), chunk)])
        self.density[idx] = torch.maximum(self.density[idx] * self.decay, new)
        thr = min(threshold, float(self.density.clamp_max(1e4).mean()))
        self.occupied = (self.density > thr) | self.pinned
        return float(self.occupied.float().mean())


@dataclass
class PackedSamples:
    ray_indices: torch.Tensor  # [S] int64, non-decreasing
    t_starts: torch.Tensor  # [S] metres along the (unit) ray direction
    t_ends: torch.Tensor  # [S]
    positions: torch.Tensor  # [S, 3] world, at the interval midpoints
    num_rays: int


def step_sequence(bounds: SceneBounds, num_steps: int, cone_angle: float) -> torch.Tensor:
    """Interval edges t_0 < t_1 < ... shared by all rays: a fixed step ``2 sqrt(3) scale /
    num_steps`` (one box diagonal in num_steps) growing as t * cone_angle once that is larger
    (Instant-NGP's cone stepping), from 0 to ``bounds.far``."""
    dt_min = 2.0 * math.sqrt(3.0) * bounds.scale / num_steps
    if cone_angle <= 0:
        n = math.ceil(bounds.far / dt_min)
        return torch.arange(n + 1, dtype=torch.float64) * dt_min
    ts = [0.0]
    t = 0.0
    while t < bounds.far and len(ts) < 100_000:
        t += max(dt_min, t * cone_angle)
        ts.append(t)
    return torch.tensor(ts, dtype=torch.float64)


def march_rays(origins: torch.Tensor, dirs: torch.Tensor, bounds: SceneBounds, edges: torch.Tensor, *,
               grid: OccupancyGrid | None = None, stratified: bool = False, sigma_fn=None,
               early_stop_eps: float = 1e-4, alpha_thre: float = 0.0) -> PackedSamples:
    """Samples of rays (origins/dirs [R, 3] world, dirs unit) on the shared interval edges
    ``edges [K+1]`` (see :func:`step_sequence`), inside each ray's [near, far], in occupied cells.
    ``stratified``: one uniform offset per ray of up to one step. ``sigma_fn(positions [S, 3]
    world) -> sigma [S]``: when given, samples past transmittance ``early_stop_eps`` and with
    alpha below ``alpha_thre`` are dropped (evaluated without gradients)."""
    from render.nerf.volume import render_weights

    R = origins.shape[0]
    dev, dt = origins.device, origins.dtype
    near, far = bounds.ray_limits(origins, dirs)
    e = edges.to(dev, dt)
    # only the part of the edge sequence any ray can use
    kmin = int(torch.searchsorted(e, near.min().reshape(1)).clamp_min(1).item()) - 1 if R else 0
    kmax = int(torch.searchsorted(e, far.max().reshape(1)).item()) + 1 if R else 0
    e = e[kmin:kmax + 1]
    t0, t1 = e[:-1][None, :], e[1:][None, :]  # [1, K]
    if stratified:
        u = torch.rand(R, 1, device=dev, dtype=dt)
        shift = u * (t1[:, :1] - t0[:, :1])
        t0, t1 = t0 + shift, t1 + shift
    t0, t1 = t0.expand(R, -1), t1.expand(R, -1)
    s0 = torch.maximum(t0, near[:, None])
    s1 = torch.minimum(t1, far[:, None])
    keep = s1 > s0
    ray_idx, k = keep.nonzero(as_tuple=True)
    s0, s1 = s0[ray_idx, k], s1[ray_idx, k]
    pos = origins[ray_idx] + dirs[ray_idx] * (0.5 * (s0 + s1))[:, None]
    if grid is not None and len(pos):
        occ = grid.is_occupied(bounds.to_unit(pos))
        ray_idx, s0, s1, pos = ray_idx[occ], s0[occ], s1[occ], pos[occ]
    if sigma_fn is not None and len(pos):
        with torch.no_grad():
            sig = sigma_fn(pos).reshape(-1).to(dt)
            _, trans, alpha = render_weights(sig, ray_idx, s0, s1, R)
            ok = trans > early_stop_eps
            if alpha_thre > 0:
                ok &= alpha >= alpha_thre
        ray_idx, s0, s1, pos = ray_idx[ok], s0[ok], s1[ok], pos[ok]
    return PackedSamples(ray_idx, s0, s1, pos, R)
