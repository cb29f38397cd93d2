"""A self-contained ground-truth scene for tests and benchmarks: Gaussians on a sphere and a
floor, rendered by our rasterizer from cameras on a ring (no dependency on recon.synth)."""

from __future__ import annotations

import numpy as np
import torch

from calib import Camera, Rigid3, look_at
from render.data import SceneData, View
from render.splat.api import rasterize
from render.splat.gaussians import Gaussians
from render.splat.sh import SH_C0

__all__ = ["look_at", "ring_cameras", "strip_scene", "toy_gaussians", "toy_scene"]


def ring_cameras(n: int, radius: float = 4.0, height: float = 1.5, target=(0.0, 0.0, 0.0)) -> list[Rigid3]:
    out = []
    for k in range(n):
        a = 2 * np.pi * k / n
        h = height * (1.0 + 0.3 * np.sin(3 * a))
        out.append(look_at([radius * np.cos(a), radius * np.sin(a), h], target))
    return out


def toy_gaussians(n: int = 3000, seed: int = 0) -> Gaussians:
    """A colourful sphere (radius 1) standing on a checkered floor (z = -1)."""
    rng = np.random.default_rng(seed)
    n_s = n * 2 // 3
    d = rng.normal(size=(n_s, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    col_s = 0.5 + 0.45 * np.stack([np.sin(3 * d[:, 0]), np.sin(3 * d[:, 1] + 1), np.cos(4 * d[:, 2])], 1)
    n_f = n - n_s
    fx, fy = rng.uniform(-2, 2, size=(2, n_f))
    floor = np.stack([fx, fy, np.full(n_f, -1.0)], 1)
    checker = ((np.floor(fx * 2) + np.floor(fy * 2)) % 2)[:, None]
    col_f = checker * [0.9, 0.85, 0.7] + (1 - checker) * [0.15, 0.2, 0.35]
    xyz = np.concatenate([d, floor])
    col = np.concatenate([col_s, col_f])
    scales = np.concatenate([np.full((n_s, 3), 0.06), np.tile([0.07, 0.07, 0.01], (n_f, 1))])
    scales *= rng.uniform(0.8, 1.2, size=scales.shape)
    return Gaussians(
        means=torch.tensor(xyz, dtype=torch.float32),
        log_scales=torch.tensor(np.log(scales), dtype=torch.float32),
        quats_wxyz=torch.tensor(np.tile([1.0, 0, 0, 0], (n, 1)) + 0.1 * rng.normal(size=(n, 4)), dtype=torch.float32),
        opacity_logits=torch.full((n,), 3.0),
        sh_dc=torch.tensor((col - 0.5) / SH_C0, dtype=torch.float32)[:, None, :],
        sh_rest=torch.zeros(n, 0, 3))


def _as_gaussians(xyz, col, scales, rng) -> Gaussians:
    n = len(xyz)
    return Gaussians(
        means=torch.tensor(xyz, dtype=torch.float32),
        log_scales=torch.tensor(np.log(scales * rng.uniform(0.8, 1.2, size=scales.shape)), dtype=torch.float32),
        quats_wxyz=torch.tensor(np.tile([1.0, 0, 0, 0], (n, 1)) + 0.1 * rng.normal(size=(n, 4)), dtype=torch.float32),
        opacity_logits=torch.full((n,), 3.0),
        sh_dc=torch.tensor((col - 0.5) / SH_C0, dtype=torch.float32)[:, None, :],
        sh_rest=torch.zeros(n, 0, 3))


def strip_gaussians(n: int = 3000, length: float = 8.0, seed: int = 0) -> Gaussians:
    """A long scene: a checkered floor strip (``length`` x 3 m, z = -1) with four coloured
    spheres (radius 0.5) standing along its middle line (x axis)."""
    rng = np.random.default_rng(seed)
    n_s = n // 3
    d = rng.normal(size=(n_s, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    which = rng.integers(0, 4, size=n_s)
    centres = np.stack([(which - 1.5) * length / 4, np.zeros(n_s), np.full(n_s, -0.5)], 1)
    hue = np.array([[0.9, 0.3, 0.2], [0.2, 0.7, 0.3], [0.25, 0.35, 0.9], [0.9, 0.8, 0.2]])[which]
    col_s = np.clip(hue * (0.75 + 0.25 * np.sin(4 * d[:, [2]] + 3 * d[:, [0]])), 0, 1)
    n_f = n - n_s
    fx, fy = rng.uniform(-length / 2, length / 2, n_f), rng.uniform(-1.5, 1.5, n_f)
    checker = ((np.floor(fx * 2) + np.floor(fy * 2)) % 2)[:, None]
    col_f = checker * [0.9, 0.85, 0.7] + (1 - checker) * [0.15, 0.2, 0.35]
    xyz = np.concatenate([centres + 0.5 * d, np.stack([fx, fy, np.full(n_f, -1.0)], 1)])
    scales = np.concatenate([np.full((n_s, 3), 0.06), np.tile([0.09, 0.09, 0.01], (n_f, 1))])
    return _as_gaussians(xyz, np.concatenate([col_s, col_f]), scales, rng)


def strip_cameras(n: int, length: float = 8.0) -> list[Rigid3]:
    """``n`` cameras in two rows (y = -2.5 and +2.5, 1 m above the spheres' centres) walking
    along the strip, each looking down at the middle line just ahead: every view sees a few
    metres of a scene ``length`` metres long (a street / drone capture)."""
    out = []
    for k in range(n):
        side = 1.0 if k % 2 else -1.0
        x = -length / 2 + length * (k // 2) / max((n - 1) // 2, 1)
        out.append(look_at([x, 2.5 * side, 0.5], [x + 0.3, 0.0, -1.0]))
    return out


def strip_scene(num_views: int = 40, width: int = 64, height: int = 48, *, n_gaussians: int = 3000,
                n_points: int = 1000, seed: int = 0, background=(0.0, 0.0, 0.0)) -> SceneData:
    """Posed GT images of :func:`strip_gaussians` from :func:`strip_cameras` and a noisy subset
    of their centres as 'SfM points': a scene to cut into chunks (render.splat.chunks)."""
    g = strip_gaussians(n_gaussians, seed=seed)
    return _render_scene(g, strip_cameras(num_views), width, height, n_points, seed, background)


def _render_scene(g: Gaussians, poses, width, height, n_points, seed, background) -> SceneData:
    f = 0.9 * width
    cam = Camera("PINHOLE", width, height, [f, f, (width - 1) / 2, (height - 1) / 2])
    views = []
    with torch.no_grad():
        for k, pose in enumerate(poses):
            img = rasterize(g, cam, pose, background=background).rgb.clamp(0, 1).numpy()
            views.append(View(f"view_{k:03d}.png", cam, pose, img.astype(np.float32)))
    rng = np.random.default_rng(seed + 1)
    pick = rng.choice(len(g), size=min(n_points, len(g)), replace=False)
    xyz = g.means.numpy()[pick] + rng.normal(scale=0.02, size=(len(pick), 3))
    rgb = (np.clip(0.5 + SH_C0 * g.sh_dc[pick, 0].numpy(), 0, 1) * 255).astype(np.uint8)
    return SceneData(views, xyz, rgb, source="toy")


def toy_scene(num_views: int = 30, width: int = 160, height: int = 120, *, n_gaussians: int = 3000,
              n_points: int = 1000, seed: int = 0, background=(0.0, 0.0, 0.0)) -> SceneData:
    """Posed GT images of :func:`toy_gaussians` and a noisy subset of their centres as 'SfM points'."""
    g = toy_gaussians(n_gaussians, seed)
    return _render_scene(g, ring_cameras(num_views), width, height, n_points, seed, background)
