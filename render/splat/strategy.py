"""Densification strategies: adaptive density control from 3DGS (clone / split / prune, opacity
reset) and 3DGS-MCMC (relocate dead Gaussians, add in proportion to opacity, position noise).

Both keep the Adam moments consistent when Gaussians are added or removed: new Gaussians start
with zero moments, removed ones drop theirs. Parameters live in a dict name -> nn.Parameter and
one ``torch.optim.Adam`` with one param group per name (``group["name"]``).

References: Kerbl et al. 2023 (3DGS) sec. 5.2 and ``train.py``/``gaussian_model.py``;
Kheradmand et al. 2024 ("3D Gaussian Splatting as Markov Chain Monte Carlo") eq. 9 and
gsplat's ``strategy/default.py``, ``strategy/mcmc.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["DefaultStrategy", "MCMCStrategy", "update_params"]


# =========================================================================================
# Parameter surgery that keeps the optimizer consistent
# =========================================================================================

def update_params(params: dict, optimizer: torch.optim.Optimizer, param_fn, moment_fn) -> None:
    """Replace every parameter p by ``param_fn(name, p)`` and each Adam moment m by
    ``moment_fn(name, m)`` (both detached tensors with the new first dimension)."""
    for group in optimizer.param_groups:
        name = group["name"]
        old = params[name]
        new = torch.nn.Parameter(param_fn(name, old.detach()), requires_grad=old.requires_grad)
        state = optimizer.state.pop(old, None)
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key] = moment_fn(name, state[key])
            optimizer.state[new] = state
        group["params"] = [new]
        params[name] = new


def _append(params, optimizer, new_values: dict) -> None:
    """Append rows ``new_values[name]`` to every parameter, zero moments for them."""
    update_params(params, optimizer,
                  lambda name, p: torch.cat([p, new_values[name].to(p)]),
                  lambda name, m: torch.cat([m, torch.zeros_like(new_values[name]).to(m)]))


def _keep(params, optimizer, keep: torch.Tensor) -> None:
    update_params(params, optimizer, lambda name, p: p[keep], lambda name, m: m[keep])


def _quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    from render.splat._torch_raster import quat_to_rotmat

    return quat_to_rotmat(q)


# =========================================================================================
# 3DGS adaptive density control
# =========================================================================================

@dataclass
class DefaultStrategy:
    """Clone small / split large Gaussians whose mean screen-space gradient is high; prune
    transparent and huge ones; reset opacities periodically (3DGS defaults, gsplat's names).

    Scales are relative to the scene extent; gradients are taken in NDC units (pixels x W/2)."""

    grow_grad2d: float = 0.0002  # mean |d loss / d means2d| (NDC) above which a Gaussian grows
    grow_scale3d: float = 0.01  # largest axis <= this x extent: clone, else split
    prune_opa: float = 0.005  # prune below this opacity
    prune_scale3d: float = 0.1  # after the first reset: prune axes > this x extent
    prune_scale2d: float = 0.15  # ... and screen radii > this x max(W, H)
    refine_start: int = 500
    refine_stop: int = 15_000
    refine_every: int = 100
    reset_every: int = 3_000
    max_gaussians: int | None = None  # cap on N (CPU budgets); growth takes the highest gradients

    def init_state(self, n: int, device) -> dict:
        return {"grad2d": torch.zeros(n, device=device), "count": torch.zeros(n, device=device),
                "radii": torch.zeros(n, device=device)}

    def step_post_backward(self, params, optimizer, state, step: int, render, extent: float,
                           width: int, height: int) -> dict:
        """Call after backward() and before optimizer.step(). Returns counts of what happened."""
        info = {}
        if step >= self.refine_stop:
            return info
        grad = render.means2d_graph.grad
        if grad is not None:
            # [N, 2] for one view; [V, N, 2] / radii [V, N] for V views of the same Gaussians
            # (render.splat.distributed: every process's view of this process's shard)
            n = state["grad2d"].shape[0]
            g = grad.detach().reshape(-1, n, 2).clone()
            g[..., 0] *= width / 2.0
            g[..., 1] *= height / 2.0
            radii = render.radii.reshape(-1, n)
            vis = radii > 0
            state["grad2d"] += torch.where(vis, g.norm(dim=-1), 0.0).sum(0).to(state["grad2d"])
            state["count"] += vis.sum(0).to(state["count"])
            state["radii"] = torch.maximum(state["radii"], (radii * vis).max(0).values.to(state["radii"])
                                           / float(max(width, height)))
        if step > self.refine_start and step % self.refine_every == 0:
            info.update(self._grow(params, optimizer, state, extent))
            info.update(self._prune(params, optimizer, state, step, extent))
            n = params["means"].shape[0]
            state.update(self.init_state(n, params["means"].device))
        if step > 0 and step % self.reset_every == 0:
            self.reset_opacity(params, optimizer, value=2.0 * self.prune_opa)
            info["reset"] = True
        return info

    def _grow(self, params, optimizer, state, extent) -> dict:
        avg = state["grad2d"] / state["count"].clamp_min(1)
        high = avg > self.grow_grad2d
        n = params["means"].shape[0]
        if self.max_gaussians is not None:
            room = max(0, self.max_gaussians - n)
            if int(high.sum()) > room:
                # each grown Gaussian adds one: keep the `room` highest gradients
                chosen = torch.zeros_like(high)
                if room > 0:
                    score = torch.where(high, avg, torch.full_like(avg, -1.0))
                    chosen[torch.topk(score, room).indices] = True
                high = chosen
        small = torch.exp(params["log_scales"].detach()).max(dim=-1).values <= self.grow_scale3d * extent
        clone, split = high & small, high & ~small
        n_clone, n_split = int(clone.sum()), int(split.sum())
        if n_clone:
            _append(params, optimizer, {k: v.detach()[clone] for k, v in params.items()})
            pad = torch.zeros(n_clone, dtype=torch.bool, device=split.device)
            split = torch.cat([split, pad])
            for key in state:
                state[key] = torch.cat([state[key], state[key][clone]])
        if n_split:
            self._split(params, optimizer, state, split)
        return {"cloned": n_clone, "split": n_split}

    @staticmethod
    def _split(params, optimizer, state, mask) -> None:
        """Each selected Gaussian becomes two, sampled from itself, scales / 1.6 (3DGS)."""
        p = {k: v.detach() for k, v in params.items()}
        scales = torch.exp(p["log_scales"][mask])
        rot = _quat_to_rotmat(p["quats_wxyz"][mask])
        samples = torch.randn(2, scales.shape[0], 3, device=scales.device, dtype=scales.dtype) * scales
        new_means = (rot[None] @ samples[..., None])[..., 0] + p["means"][mask][None]
        new = {k: torch.cat([v[mask]] * 2) for k, v in p.items()}
        new["means"] = new_means.reshape(-1, 3)
        new["log_scales"] = torch.log(scales / 1.6).repeat(2, 1)
        keep = ~mask
        _keep(params, optimizer, keep)
        _append(params, optimizer, new)
        for key in state:
            state[key] = torch.cat([state[key][keep], state[key][mask].repeat(2)])

    def _prune(self, params, optimizer, state, step, extent) -> dict:
        prune = torch.sigmoid(params["opacity_logits"].detach()) < self.prune_opa
        if step > self.reset_every:
            too_big = torch.exp(params["log_scales"].detach()).max(dim=-1).values > self.prune_scale3d * extent
            too_big |= state["radii"] > self.prune_scale2d
            prune |= too_big
        n = int(prune.sum())
        if n:
            _keep(params, optimizer, ~prune)
            for key in state:
                state[key] = state[key][~prune]
        return {"pruned": n}

    @staticmethod
    def reset_opacity(params, optimizer, value: float) -> None:
        """opacity <- min(opacity, value); the opacity's Adam moments are zeroed (3DGS)."""
        cap = math.log(value / (1 - value))
        update_params(params, optimizer,
                      lambda name, p: torch.clamp_max(p, cap) if name == "opacity_logits" else p,
                      lambda name, m: torch.zeros_like(m) if name == "opacity_logits" else m)


# =========================================================================================
# 3DGS-MCMC
# =========================================================================================

def _relocation(opacities: torch.Tensor, scales: torch.Tensor, ratios: torch.Tensor, n_max: int = 51):
    """New opacity and scale when one Gaussian is replaced by ``ratios`` copies so the rendered
    result is preserved (Kheradmand et al. 2024, eq. 9; gsplat's ``relocation`` kernel)."""
    ratios = ratios.clamp(1, n_max).to(opacities.dtype)
    new_opa = 1.0 - (1.0 - opacities).clamp_min(0) ** (1.0 / ratios)
    binom = torch.zeros(n_max, n_max, dtype=opacities.dtype, device=opacities.device)
    for i in range(n_max):
        for k in range(i + 1):
            binom[i, k] = math.comb(i, k)
    denom = torch.zeros_like(opacities)
    for i in range(1, n_max + 1):
        active = ratios >= i
        if not bool(active.any()):
            break
        ks = torch.arange(i, dtype=opacities.dtype, device=opacities.device)
        terms = (binom[i - 1, :i] * (-1.0) ** ks / torch.sqrt(ks + 1))[None] * new_opa[:, None] ** (ks + 1)[None]
        denom = denom + torch.where(active, terms.sum(-1), torch.zeros_like(denom))
    coeff = opacities / denom.clamp_min(1e-12)
    return new_opa, coeff[:, None] * scales


@dataclass
class MCMCStrategy:
    """3DGS-MCMC: a fixed budget ``cap_max`` of Gaussians; dead ones (opacity <= min_opacity)
    are moved onto live ones sampled by opacity; N grows by 5% per refinement up to the cap;
    positions get noise scaled by the Gaussian's covariance (large for transparent ones)."""

    cap_max: int = 100_000
    noise_lr: float = 5e5
    refine_start: int = 500
    refine_stop: int = 25_000
    refine_every: int = 100
    min_opacity: float = 0.005
    opacity_reg: float = 0.01
    scale_reg: float = 0.01

    def init_state(self, n: int, device) -> dict:
        return {}

    def regularization(self, params) -> torch.Tensor:
        return (self.opacity_reg * torch.sigmoid(params["opacity_logits"]).mean()
                + self.scale_reg * torch.exp(params["log_scales"]).mean())

    def step_post_backward(self, params, optimizer, state, step: int, render, extent: float,
                           width: int, height: int, means_lr: float = 0.0) -> dict:
        info = {}
        if self.refine_start < step < self.refine_stop and step % self.refine_every == 0:
            info["relocated"] = self._relocate(params, optimizer)
            info["added"] = self._add(params, optimizer)
        return info

    def step_post_optimizer(self, params, means_lr: float) -> None:
        """Add covariance-shaped noise to the means (after optimizer.step())."""
        with torch.no_grad():
            opa = torch.sigmoid(params["opacity_logits"])
            scales = torch.exp(params["log_scales"])
            R = _quat_to_rotmat(params["quats_wxyz"])
            M = R * scales[:, None, :]
            cov = M @ M.transpose(1, 2)
            gate = 1.0 / (1.0 + torch.exp(-100.0 * ((1.0 - opa) - 0.995)))
            noise = torch.randn_like(params["means"]) * gate[:, None] * (self.noise_lr * means_lr)
            params["means"].add_((cov @ noise[..., None])[..., 0])

    def _sample_and_copy(self, params, optimizer, src_idx: torch.Tensor, dst_idx: torch.Tensor | None):
        """Shared by relocate (dst = dead rows overwritten) and add (dst None: append)."""
        p = {k: v.detach() for k, v in params.items()}
        opa = torch.sigmoid(p["opacity_logits"])
        counts = torch.bincount(src_idx, minlength=opa.shape[0])[src_idx] + 1
        new_opa, new_scales = _relocation(opa[src_idx], torch.exp(p["log_scales"][src_idx]), counts)
        new_opa = new_opa.clamp(self.min_opacity, 1 - 1e-7)
        new_logit = torch.log(new_opa / (1 - new_opa))
        new_log_scales = torch.log(new_scales.clamp_min(1e-12))

        def param_fn(name, t):
            t = t.clone()
            if name == "opacity_logits":
                t[src_idx] = new_logit
            elif name == "log_scales":
                t[src_idx] = new_log_scales
            if dst_idx is not None:
                t[dst_idx] = t[src_idx]
                return t
            return torch.cat([t, t[src_idx]])

        def moment_fn(name, m):
            m = m.clone()
            m[src_idx] = 0
            if dst_idx is not None:
                m[dst_idx] = 0
                return m
            return torch.cat([m, torch.zeros_like(m[src_idx])])

        update_params(params, optimizer, param_fn, moment_fn)

    def _relocate(self, params, optimizer) -> int:
        opa = torch.sigmoid(params["opacity_logits"].detach())
        dead = opa <= self.min_opacity
        n_dead = int(dead.sum())
        if n_dead == 0 or n_dead == opa.numel():
            return 0
        alive_idx = torch.nonzero(~dead).squeeze(1)
        probs = opa[alive_idx]
        src = alive_idx[torch.multinomial(probs / probs.sum(), n_dead, replacement=True)]
        self._sample_and_copy(params, optimizer, src, torch.nonzero(dead).squeeze(1))
        return n_dead

    def _add(self, params, optimizer) -> int:
        n = params["means"].shape[0]
        n_new = max(0, min(self.cap_max, int(1.05 * n)) - n)
        if n_new == 0:
            return 0
        opa = torch.sigmoid(params["opacity_logits"].detach())
        src = torch.multinomial(opa / opa.sum(), n_new, replacement=True)
        self._sample_and_copy(params, optimizer, src, None)
        return n_new
