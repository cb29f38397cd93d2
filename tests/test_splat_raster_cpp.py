"""The fused C++ CPU rasterizer (render/splat/_raster_cpu.cpp) against the PyTorch compositor
(the reference): values and gradients of every input in float64 on random scenes with culled
Gaussians, Gaussians across the image edges, empty tiles, one Gaussian and many overlapping ones;
torch.autograd.gradcheck on a tiny scene."""

from __future__ import annotations

import pytest
import torch

from calib import Camera, Rigid3
from render.splat import Gaussians
from render.splat._raster_cpu import cpu_kernels, cpu_kernels_error
from render.splat._torch_raster import rasterize_torch

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(cpu_kernels() is None,
                                 reason=f"fused CPU rasterizer not built: {cpu_kernels_error()}")]

CAM = Camera("PINHOLE", 37, 29, [40.0, 38.0, 18.1, 13.6])  # not a multiple of the tile size
POSE = Rigid3.from_axis_angle([0.1, -0.2, 0.05], [0.1, -0.05, 3.0])
NAMES = ("means", "quats_wxyz", "log_scales", "opacity_logits", "sh_coeffs")


def _params(n, seed, spread=0.4, log_scale=-2.3, opacity_shift=0.0, z_shift=0.0):
    gen = torch.Generator().manual_seed(seed)
    dt = torch.float64
    means = torch.randn(n, 3, generator=gen, dtype=dt) * spread
    means[:, 2] += z_shift
    return {"means": means,
            "quats_wxyz": torch.randn(n, 4, generator=gen, dtype=dt),
            "log_scales": torch.randn(n, 3, generator=gen, dtype=dt) * 0.3 + log_scale,
            "opacity_logits": torch.randn(n, generator=gen, dtype=dt) + opacity_shift,
            "sh_coeffs": torch.randn(n, 16, 3, generator=gen, dtype=dt) * 0.3}


def _render(p, fused, *, sh_degree=3, bg=(0.2, 0.5, 0.9), tile=8, max_alpha=0.99, cam=CAM, pose=POSE):
    R = torch.as_tensor(pose.rotation, dtype=torch.float64)
    t = torch.as_tensor(pose.translation, dtype=torch.float64)
    (fx, fy), (cx, cy) = cam.focal, cam.principal_point
    return rasterize_torch(p["means"], p["quats_wxyz"], p["log_scales"], p["opacity_logits"], p["sh_coeffs"],
                           sh_degree, R, t, fx, fy, cx, cy, cam.width, cam.height,
                           torch.tensor(bg, dtype=torch.float64), max_alpha=max_alpha, tile_size=tile,
                           chunk_size=5, fused=fused)


def _loss_weights(h, w, seed=7):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(h, w, 3, generator=gen, dtype=torch.float64),
            torch.randn(h, w, generator=gen, dtype=torch.float64),
            torch.randn(h, w, generator=gen, dtype=torch.float64))


def _run(p0, fused, **kw):
    p = {k: v.clone().requires_grad_(True) for k, v in p0.items()}
    out = _render(p, fused, **kw)
    out.means2d.retain_grad()
    wr, wd, wa = _loss_weights(*out.alpha.shape)
    loss = (out.rgb * wr).sum() + (out.depth * wd).sum() + (out.alpha * wa).sum()
    loss.backward()
    grads = {k: p[k].grad for k in NAMES}
    grads["means2d"] = out.means2d.grad
    return out, grads


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


SCENES = {
    "random": {"n": 60, "seed": 0},
    "many_overlapping": {"n": 400, "seed": 1, "spread": 0.15, "log_scale": -2.0, "opacity_shift": 2.0},
    "one": {"n": 1, "seed": 2, "spread": 0.0, "log_scale": -1.5},
    "edges_and_culled": {"n": 120, "seed": 3, "spread": 1.2},  # off-image, behind the camera, on edges
    "sparse_empty_tiles": {"n": 6, "seed": 4, "spread": 0.5, "log_scale": -3.0},
}


@pytest.mark.parametrize("name", list(SCENES))
@pytest.mark.parametrize("tile", [8, 16, 5])
def test_values_and_gradients_match_reference(name, tile):
    p0 = _params(**SCENES[name])
    if name == "edges_and_culled":
        p0["means"][:10, 2] = -3.5  # behind the camera: culled
    ref, g_ref = _run(p0, False, tile=tile)
    out, g = _run(p0, True, tile=tile)
    # the scene is what its name says
    vis = ref.radii > 0
    if name == "edges_and_culled":
        assert (~vis).sum() >= 10 and vis.sum() >= 10
        m = ref.means2d.detach()
        r = ref.radii.to(torch.float64)
        on_edge = vis & ((m[:, 0] - r < -0.5) | (m[:, 0] + r > CAM.width - 0.5)
                         | (m[:, 1] - r < -0.5) | (m[:, 1] + r > CAM.height - 0.5))
        assert on_edge.sum() >= 3
    if name == "sparse_empty_tiles":
        assert (ref.alpha < 1e-12).float().mean() > 0.3
    if name == "many_overlapping":
        assert (ref.alpha > 0.999).float().mean() > 0.1  # pixels stop early
    assert torch.equal(out.radii, ref.radii)
    for k in ("rgb", "depth", "alpha"):
        torch.testing.assert_close(getattr(out, k), getattr(ref, k), atol=1e-12, rtol=1e-10)
    for k, v in g_ref.items():
        assert v.abs().max() > 0 or name == "one", k
        assert _rel(g[k], v) < 1e-4, (k, _rel(g[k], v))


def test_clamped_alpha_and_max_alpha_one():
    """Opaque Gaussians reach the alpha clamp (no gradient through it) in both paths."""
    p0 = _params(n=50, seed=5, spread=0.2, log_scale=-1.8, opacity_shift=4.0)
    for max_alpha in (0.99, 0.999):
        ref, g_ref = _run(p0, False, max_alpha=max_alpha)
        out, g = _run(p0, True, max_alpha=max_alpha)
        torch.testing.assert_close(out.rgb, ref.rgb, atol=1e-12, rtol=1e-10)
        for k, v in g_ref.items():
            assert _rel(g[k], v) < 1e-4, (k, max_alpha)


def test_no_visible_gaussian():
    p0 = _params(n=5, seed=6)
    p0["means"][:, 2] = -10.0  # all behind the camera
    out, g = _run(p0, True)
    assert (out.radii == 0).all()
    torch.testing.assert_close(out.rgb, torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64).expand(29, 37, 3))
    assert all(float(v.abs().max()) == 0 for v in g.values())


def test_gradcheck_tiny():
    from render.splat._raster_cpu import CompositeCpp

    mod = cpu_kernels()
    gen = torch.Generator().manual_seed(8)
    n, W, H, s = 4, 11, 9, 8
    feats = torch.zeros(n, 10, dtype=torch.float64)
    feats[:, 0] = torch.rand(n, generator=gen, dtype=torch.float64) * W
    feats[:, 1] = torch.rand(n, generator=gen, dtype=torch.float64) * H
    feats[:, 2] = 0.3 + 0.2 * torch.rand(n, generator=gen, dtype=torch.float64)
    feats[:, 3] = 0.05 * torch.randn(n, generator=gen, dtype=torch.float64)
    feats[:, 4] = 0.3 + 0.2 * torch.rand(n, generator=gen, dtype=torch.float64)
    feats[:, 5] = 0.3 + 0.5 * torch.rand(n, generator=gen, dtype=torch.float64)
    feats[:, 6:10] = torch.rand(n, 4, generator=gen, dtype=torch.float64)
    ids = torch.arange(n)
    ntx, nty = 2, 2
    z = torch.zeros(n, dtype=torch.int64)
    start, gauss = mod.bin_tiles(ids, z, z + ntx - 1, z, z + nty - 1, ntx, nty)  # every tile
    feats.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: CompositeCpp.apply(f, (start, gauss, W, H, s, 0.99, mod)),
                                    (feats,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_trainer_path_is_fused_and_float32_close():
    """rasterize() on the CPU takes the fused path by default; float32 matches the float64 reference."""
    from render.splat import rasterize

    p0 = _params(n=200, seed=9, spread=0.3)
    g32 = Gaussians(means=p0["means"].float(), log_scales=p0["log_scales"].float(),
                    quats_wxyz=p0["quats_wxyz"].float(), opacity_logits=p0["opacity_logits"].float(),
                    sh_dc=p0["sh_coeffs"][:, :1].float(), sh_rest=p0["sh_coeffs"][:, 1:].float())
    out = rasterize(g32, CAM, POSE, background=[0.2, 0.5, 0.9])
    ref = _render(p0, False)
    torch.testing.assert_close(out.rgb.double(), ref.rgb.detach(), atol=2e-5, rtol=0)


def test_camera_gradient_kept_when_the_pose_is_optimised():
    """The C++ projection has no camera gradient: a pose that requires grad takes the autograd
    projection, and its gradient equals the reference's."""
    p0 = _params(60, 0)
    grads = []
    for fused in (None, False):
        R = torch.as_tensor(POSE.rotation, dtype=torch.float64).clone().requires_grad_(True)
        t = torch.as_tensor(POSE.translation, dtype=torch.float64).clone().requires_grad_(True)
        (fx, fy), (cx, cy) = CAM.focal, CAM.principal_point
        out = rasterize_torch(p0["means"], p0["quats_wxyz"], p0["log_scales"], p0["opacity_logits"],
                              p0["sh_coeffs"], 3, R, t, fx, fy, cx, cy, CAM.width, CAM.height,
                              torch.zeros(3, dtype=torch.float64), fused=fused)
        wr, _, _ = _loss_weights(*out.alpha.shape)
        (out.rgb * wr).sum().backward()
        grads.append((R.grad, t.grad))
    assert grads[0][0] is not None and float(grads[0][1].abs().max()) > 0
    assert _rel(grads[0][0], grads[1][0]) < 1e-4 and _rel(grads[0][1], grads[1][1]) < 1e-4


def test_kernels_run_on_torch_threads_and_are_deterministic():
    """The extension is built with OpenMP, so at::parallel_for uses torch's threads (without it
    every "parallel" loop ran on one thread); 1 and 2 threads give bit-identical values and
    gradients (dynamic tile schedule, fixed-order gradient sums)."""
    mod = cpu_kernels()
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert mod.parallel_threads() == 2
        torch.set_num_threads(1)
        assert mod.parallel_threads() == 1
        p0 = _params(n=300, seed=11, spread=0.3)
        runs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out, g = _run({k: v.float() for k, v in p0.items()}, True)
            runs.append((out.rgb, out.alpha, *g.values()))
    finally:
        torch.set_num_threads(n)
    for u, v in zip(*runs):
        assert torch.equal(u, v)


def _feats_scene(seed, n=300, W=45, H=37):
    """feats [n, 10] of random ellipses, many thin and rotated (bounding boxes much larger than
    the ellipses), some centred outside the image, with tile ranges of their 3.33-sigma boxes."""
    gen = torch.Generator().manual_seed(seed)
    dt = torch.float64
    mx = torch.rand(n, generator=gen, dtype=dt) * (W + 20) - 10
    my = torch.rand(n, generator=gen, dtype=dt) * (H + 20) - 10
    ang = torch.rand(n, generator=gen, dtype=dt) * 3.14159
    s1 = torch.exp(torch.randn(n, generator=gen, dtype=dt) * 0.6 + 1.2)
    s2 = s1 * torch.exp(-torch.rand(n, generator=gen, dtype=dt) * 3.0)  # up to 20:1 elongation
    c, s = torch.cos(ang), torch.sin(ang)
    a = c * c * s1 * s1 + s * s * s2 * s2 + 0.3
    b = c * s * (s1 * s1 - s2 * s2)
    d = s * s * s1 * s1 + c * c * s2 * s2 + 0.3
    det = a * d - b * b
    op = torch.rand(n, generator=gen, dtype=dt) * 0.985 + 0.01
    feats = torch.stack([mx, my, d / det, -b / det, a / det, op], dim=-1)
    feats = torch.cat([feats, torch.rand(n, 4, generator=gen, dtype=dt)], dim=-1)
    return feats, (a, d)


@pytest.mark.parametrize("tile", [8, 5])
def test_tile_culling_keeps_every_contributing_pair_and_the_result(tile):
    """bin_tiles_culled drops only (Gaussian, tile) pairs with no pixel at alpha >= 1/255
    (brute force over the tile's pixels), drops many of a thin rotated ellipse's box, and the
    composite and its gradients are bit-identical to the unculled lists."""
    from render.splat._raster_cpu import CompositeCpp

    mod = cpu_kernels()
    W, H = 45, 37
    feats, (a, d) = _feats_scene(3, W=W, H=H)
    n = feats.shape[0]
    ext = torch.sqrt(torch.clamp(2.0 * torch.log(feats[:, 5] * 255.0), min=0.0)).clamp(max=3.33)
    rx, ry = torch.ceil(ext * a.sqrt()), torch.ceil(ext * d.sqrt())
    vis = ((feats[:, 0] + rx >= -0.5) & (feats[:, 0] - rx <= W - 0.5)
           & (feats[:, 1] + ry >= -0.5) & (feats[:, 1] - ry <= H - 0.5))
    ids = torch.nonzero(vis).squeeze(1)
    mxv, myv, rxv, ryv = feats[ids, 0], feats[ids, 1], rx[ids], ry[ids]
    x0 = torch.clamp(torch.ceil(mxv - rxv), 0, W - 1).long() // tile
    x1 = torch.clamp(torch.floor(mxv + rxv), 0, W - 1).long() // tile
    y0 = torch.clamp(torch.ceil(myv - ryv), 0, H - 1).long() // tile
    y1 = torch.clamp(torch.floor(myv + ryv), 0, H - 1).long() // tile
    ntx, nty = (W + tile - 1) // tile, (H + tile - 1) // tile
    full = mod.bin_tiles(ids, x0, x1, y0, y1, ntx, nty)
    culled = mod.bin_tiles_culled(ids, x0, x1, y0, y1, ntx, nty, feats, W, H, tile)
    n_full, n_culled = full[1].numel(), culled[1].numel()
    assert n_culled < 0.8 * n_full, (n_culled, n_full)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                            indexing="ij")
    for t in range(ntx * nty):
        kept = set(culled[1][culled[0][t]:culled[0][t + 1]].tolist())
        lst = full[1][full[0][t]:full[0][t + 1]].tolist()
        assert [i for i in lst if i in kept] == culled[1][culled[0][t]:culled[0][t + 1]].tolist()  # order kept
        tx, ty = t % ntx, t // ntx
        px = xs[ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile]
        py = ys[ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile]
        for i in set(lst) - kept:
            f = feats[i]
            dx, dy = px - f[0], py - f[1]
            alpha = f[5] * torch.exp(-(0.5 * (f[2] * dx * dx + f[4] * dy * dy) + f[3] * dx * dy))
            assert float(alpha.max()) < 1.0 / 255.0, (t, i)
    wa = torch.randn(H, W, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    wt = torch.randn(H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    outs = []
    for start, gauss in (full, culled):
        f = feats.clone().requires_grad_(True)
        acc, T = CompositeCpp.apply(f, (start, gauss, W, H, tile, 0.99, mod))
        ((acc * wa).sum() + (T * wt).sum()).backward()
        outs.append((acc.detach(), T.detach(), f.grad))
    assert float(outs[0][1].min()) < 0.5 and n > 0  # the scene covers the image
    for u, v in zip(outs[0], outs[1]):
        assert torch.equal(u, v)


def test_float32_gradients_close_to_float64_reference():
    """The trainer's dtype: float32 values and gradients of the fused path (vectorised float32
    exp included) against the float64 PyTorch reference on a dense random scene."""
    p0 = _params(n=300, seed=10, spread=0.3, opacity_shift=1.0)
    ref, g_ref = _run(p0, False)
    p32 = {k: v.float() for k, v in p0.items()}
    out, g = _run(p32, True)
    assert (ref.alpha > 0.9).float().mean() > 0.2
    torch.testing.assert_close(out.rgb.double(), ref.rgb.detach(), atol=2e-5, rtol=0)
    for k, v in g_ref.items():
        assert _rel(g[k].double(), v) < 2e-3, (k, _rel(g[k].double(), v))
