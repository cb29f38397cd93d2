"""A generic LO-MSAC robust loop (batched hypotheses, adaptive iteration count).

Scoring is MSAC (Torr & Zisserman 2000): cost = sum_i min(r_i^2, T^2) with r the model's
geometric residual (pixels) and T the inlier threshold. Each time a new best model appears, a
local optimisation (Chum, Matas & Kittler 2003, "LO-RANSAC"; the iterative least-squares variant
of Lebeda et al. 2012) refits it on its inliers with a shrinking threshold (2T -> T), with
residual-based (Sampson / IRLS) weights. The iteration count adapts to the best inlier ratio w:
k = log(1 - confidence) / log(1 - w^s) for a minimal sample of size s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Solver = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # sample idx [B, s] -> models [M,3,3], ok [M]
Residuals = Callable[[np.ndarray], np.ndarray]  # models [M, 3, 3] -> residuals [M, N]
Refit = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (inlier mask [N], weights [N], model) -> model


@dataclass
class LoopResult:
    model: np.ndarray | None
    inliers: np.ndarray
    residuals: np.ndarray
    cost: float
    num_iterations: int


def required_iterations(inlier_ratio: float, sample_size: int, confidence: float) -> float:
    w = float(np.clip(inlier_ratio, 0.0, 1.0)) ** sample_size
    if w <= 0:
        return np.inf
    if w >= 1:
        return 0
    return np.log(1.0 - confidence) / np.log1p(-w)


def _msac(r: np.ndarray, thr: float) -> np.ndarray:
    return np.sum(np.minimum(r * r, thr * thr), axis=-1)


def robust_loop(num_points: int, sample_size: int, solve: Solver, residuals: Residuals, refit: Refit, *,
                threshold: float, confidence: float, max_iterations: int, min_iterations: int,
                rng: np.random.Generator, batch: int = 32, lo_steps: int = 4,
                subset_residuals: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                preview: int = 64, top_k: int = 4) -> LoopResult:
    """Run LO-MSAC; see the module docstring. Returns the best model after a final refit.

    ``subset_residuals(models, idx)`` (residuals of the points ``idx`` only) enables the preview
    step: each batch is ranked on ``preview`` random points and only the ``top_k`` best
    hypotheses are scored on all points (as in preemptive RANSAC, Nister 2003)."""
    n = num_points
    best = LoopResult(None, np.zeros(n, bool), np.full(n, np.inf), np.inf, 0)
    if n < sample_size:
        return best
    needed = float(max_iterations)
    it = 0

    def score_one(model):
        r = residuals(model[None])[0]
        return r, float(_msac(r, threshold))

    def local_opt(model, r, cost):
        for k in range(lo_steps, 0, -1):
            t = threshold * (1.0 + (k - 1) / max(lo_steps - 1, 1))  # 2T ... T
            inl = r < t
            if inl.sum() < sample_size + 1:
                break
            cand = refit(inl, _irls_weights(r, inl, t), model)
            if cand is None or not np.all(np.isfinite(cand)):
                break
            r2, c2 = score_one(cand)
            if c2 <= cost:
                model, r, cost = cand, r2, c2
        return model, r, cost

    while it < min(max(needed, min_iterations), max_iterations):
        b = int(min(batch, max_iterations - it))
        idx = np.argpartition(rng.random((b, n)), sample_size - 1, axis=1)[:, :sample_size]
        models, ok = solve(idx)
        it += b
        if not np.any(ok):
            continue
        models = models[ok]
        if subset_residuals is not None and n > 4 * preview:
            # Preview: score every hypothesis on a random subset of the points, then score only
            # the few most promising on all of them (a bad hypothesis is obvious on 64 points).
            sub = rng.choice(n, preview, replace=False)
            rs = subset_residuals(models, sub)
            keep = np.argsort(_msac(np.where(np.isfinite(rs), rs, np.inf), threshold))[:top_k]
            models = models[keep]
        r = residuals(models)
        r = np.where(np.isfinite(r), r, np.inf)
        cost = _msac(r, threshold)
        j = int(np.argmin(cost))
        if cost[j] < best.cost:
            model, rj, cj = local_opt(models[j], r[j], float(cost[j]))
            best = LoopResult(model, rj < threshold, rj, cj, it)
            needed = required_iterations(best.inliers.mean(), sample_size, confidence)
    best.num_iterations = it
    if best.model is None:
        return best
    # Final polish: least squares on all inliers, repeated while it improves the MSAC cost.
    for _ in range(3):
        inl = best.residuals < threshold
        if inl.sum() < sample_size + 1:
            break
        cand = refit(inl, _irls_weights(best.residuals, inl, threshold), best.model)
        if cand is None or not np.all(np.isfinite(cand)):
            break
        r2, c2 = score_one(cand)
        if c2 > best.cost * (1 - 1e-9):
            break
        best = LoopResult(cand, r2 < threshold, r2, c2, it)
    best.inliers = best.residuals < threshold
    return best


def _irls_weights(r: np.ndarray, inl: np.ndarray, t: float) -> np.ndarray:
    """Weights for the inlier refit: a smooth (Tukey-like) down-weighting of points near the
    threshold so the fit is not dragged by borderline outliers."""
    w = np.zeros_like(r)
    x = np.clip(r[inl] / t, 0.0, 1.0)
    w[inl] = (1.0 - x * x) ** 2 + 0.05
    return w
