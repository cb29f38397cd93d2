"""The PyTorch rasterizer against a brute-force per-pixel reference, finite differences, the
projection of calib.Camera, and (on CUDA) gsplat."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib import Camera, Rigid3
from recon.io.gaussians import read_splat_ply, write_splat_ply
from render.splat import Gaussians, rasterize
from render.splat._torch_raster import project_gaussians
from render.splat.sh import eval_sh

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scene(n=40, seed=0, dtype=torch.float64, sh_k=15):
    gen = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=torch.randn(n, 3, generator=gen, dtype=dtype) * 0.4,
        log_scales=torch.randn(n, 3, generator=gen, dtype=dtype) * 0.3 - 2.3,
        quats_wxyz=torch.randn(n, 4, generator=gen, dtype=dtype),
        opacity_logits=torch.randn(n, generator=gen, dtype=dtype),
        sh_dc=torch.randn(n, 1, 3, generator=gen, dtype=dtype),
        sh_rest=torch.randn(n, sh_k, 3, generator=gen, dtype=dtype) * 0.2)


CAM = Camera("PINHOLE", 40, 30, [42.0, 40.0, 19.3, 14.6])
POSE = Rigid3.from_axis_angle([0.1, -0.2, 0.05], [0.1, -0.05, 3.0])


def _brute_force(g: Gaussians, cam: Camera, pose: Rigid3, sh_degree: int, bg, max_alpha=0.99):
    """Every pixel against every Gaussian, depth order, the 3DGS rules, no tiles."""
    dt = g.means.dtype
    R = torch.as_tensor(pose.rotation, dtype=dt)
    t = torch.as_tensor(pose.translation, dtype=dt)
    (fx, fy), (cx, cy) = cam.focal, cam.principal_point
    m2, cov, z = project_gaussians(g.means, g.quats_wxyz, g.log_scales, R, t, fx, fy, cx, cy,
                                   cam.width, cam.height, 0.3)
    conic = torch.linalg.inv(cov)
    op = torch.sigmoid(g.opacity_logits)
    d = g.means + (R.T @ t)
    col = torch.clamp_min(eval_sh(sh_degree, g.sh_coeffs(), d / d.norm(dim=-1, keepdim=True)) + 0.5, 0)
    uv = torch.as_tensor(cam.pixel_grid().reshape(-1, 2), dtype=dt)
    T = torch.ones(uv.shape[0], dtype=dt)
    done = torch.zeros(uv.shape[0], dtype=torch.bool)
    rgb = torch.zeros(uv.shape[0], 3, dtype=dt)
    for i in torch.argsort(z).tolist():
        if z[i] <= 0.01:
            continue
        dd = uv - m2[i]
        sig = 0.5 * torch.einsum("pi,ij,pj->p", dd, conic[i], dd)
        alpha = torch.clamp_max(op[i] * torch.exp(-sig), max_alpha)
        use = (alpha >= 1 / 255) & ~done
        Tn = T * (1 - alpha)
        stop = use & (Tn <= 1e-4)
        done = done | stop
        use = use & ~stop
        rgb = rgb + torch.where(use, alpha * T, 0)[:, None] * col[i]
        T = torch.where(use, Tn, T)
    rgb = rgb + T[:, None] * torch.as_tensor(bg, dtype=dt)
    return rgb.reshape(cam.height, cam.width, 3), (1 - T).reshape(cam.height, cam.width)


@pytest.mark.parametrize("sh_degree,tile,chunk", [(0, 8, 64), (3, 4, 5), (2, 16, 7)])
def test_matches_brute_force(sh_degree, tile, chunk):
    g = _scene(60)
    bg = [0.2, 0.5, 0.9]
    out = rasterize(g, CAM, POSE, sh_degree=sh_degree, background=bg, tile_size=tile, chunk_size=chunk)
    ref_rgb, ref_alpha = _brute_force(g, CAM, POSE, sh_degree, bg)
    assert out.rgb.shape == (30, 40, 3) and out.alpha.shape == (30, 40) and out.depth.shape == (30, 40)
    assert ref_alpha.max() > 0.5  # the scene covers the view
    torch.testing.assert_close(out.rgb, ref_rgb, atol=1e-10, rtol=0)
    torch.testing.assert_close(out.alpha, ref_alpha, atol=1e-10, rtol=0)


def test_early_termination_opaque_wall():
    """A stack of opaque Gaussians: pixels stop; what is behind is invisible; alpha ~ 1."""
    n = 30
    g = Gaussians(torch.stack([torch.zeros(n), torch.zeros(n), torch.linspace(0, 2, n)], 1).double(),
                  torch.full((n, 3), 1.5, dtype=torch.float64), torch.tensor([[1.0, 0, 0, 0]] * n).double(),
                  torch.full((n,), 8.0, dtype=torch.float64),
                  torch.cat([torch.full((1, 1, 3), 2.0), torch.full((n - 1, 1, 3), -2.0)]).double(),
                  torch.zeros(n, 0, 3, dtype=torch.float64))
    out = rasterize(g, CAM, Rigid3(np.eye(3), [0, 0, 3.0]), background=[0, 0, 1])
    ref, _ = _brute_force(g, CAM, Rigid3(np.eye(3), [0, 0, 3.0]), 0, [0, 0, 1])
    torch.testing.assert_close(out.rgb, ref, atol=1e-10, rtol=0)
    assert float(out.alpha.min()) > 0.99
    # the front Gaussian dominates: colour 0.5 + C0 * 2 (SH colours are clamped below only)
    assert torch.allclose(out.rgb[15, 20], torch.full((3,), 0.5 + 0.28209479177387814 * 2.0, dtype=torch.float64),
                          atol=2e-2)


def test_projection_matches_calib_camera():
    g = _scene(50)
    out = rasterize(g, CAM, POSE)
    X = POSE.apply(g.means.numpy())
    uv, valid = CAM.project(X)
    np.testing.assert_allclose(out.means2d.detach().numpy()[valid], uv[valid], atol=1e-9)
    np.testing.assert_allclose(out.depths.detach().numpy(), X[:, 2], atol=1e-12)
    vis = out.visible.numpy()
    inside = valid & (uv[:, 0] > 0) & (uv[:, 0] < 39) & (uv[:, 1] > 0) & (uv[:, 1] < 29)
    assert np.all(vis[inside])  # every centre inside the image is rendered


def test_depth_of_a_plane():
    """Flat wide Gaussians on the plane z = 2 (camera frame): expected depth is 2 where alpha > 0.5."""
    xs, ys = np.meshgrid(np.linspace(-1.2, 1.2, 12), np.linspace(-1, 1, 10))
    n = xs.size
    means = torch.tensor(np.stack([xs.ravel(), ys.ravel(), np.full(n, 2.0)], 1))
    ls = torch.log(torch.tensor([[0.15, 0.15, 0.001]] * n, dtype=torch.float64))
    g = Gaussians(means, ls, torch.tensor([[1.0, 0, 0, 0]] * n).double(), torch.full((n,), 3.0).double(),
                  torch.zeros(n, 1, 3).double(), torch.zeros(n, 0, 3).double())
    out = rasterize(g, CAM, Rigid3.identity())
    m = out.alpha > 0.5
    assert m.float().mean() > 0.9
    torch.testing.assert_close(out.depth[m], torch.full_like(out.depth[m], 2.0), atol=1e-3, rtol=0)


def test_gradients_match_finite_differences():
    g = _scene(12, seed=3, sh_k=3)
    cam = Camera("PINHOLE", 24, 18, [25.0, 24.0, 11.5, 8.5])
    pose = Rigid3.from_axis_angle([0.05, 0.1, 0.0], [0.0, 0.0, 2.5])
    weights = torch.rand(18, 24, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    wd = torch.rand(18, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def loss_fn(**params):
        gg = Gaussians(**{**g.tensors(), **params})
        o = rasterize(gg, cam, pose, background=[0.3, 0.3, 0.3], tile_size=8, chunk_size=4)
        return (o.rgb * weights).sum() + 0.1 * (o.depth * o.alpha * wd).sum() + (o.alpha * wd).sum()

    params = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
    loss_fn(**params).backward()
    eps = 1e-6
    gen = np.random.default_rng(0)
    checked = 0
    for name, p in params.items():
        flat = p.detach().reshape(-1)
        for j in gen.choice(flat.numel(), size=min(8, flat.numel()), replace=False):
            plus, minus = flat.clone(), flat.clone()
            plus[j] += eps
            minus[j] -= eps
            with torch.no_grad():
                fd = (loss_fn(**{name: plus.reshape(p.shape)}) - loss_fn(**{name: minus.reshape(p.shape)})) / (2 * eps)
            an = p.grad.reshape(-1)[j]
            assert abs(float(an) - float(fd)) <= 1e-5 + 1e-4 * abs(float(fd)), (name, j, float(an), float(fd))
            checked += 1
    assert checked >= 40


def test_ply_round_trip_renders_identically(tmp_path):
    g = _scene(80, dtype=torch.float32)
    path = write_splat_ply(tmp_path / "s.ply", g.to_cloud())
    h = Gaussians.from_cloud(read_splat_ply(path))
    for k in Gaussians.NAMES:
        assert torch.equal(getattr(g, k), getattr(h, k)), k
    a = rasterize(g, CAM, POSE, background=[1, 1, 1])
    b = rasterize(h, CAM, POSE, background=[1, 1, 1])
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.depth, b.depth)


def test_bad_inputs():
    g = _scene(5)
    with pytest.raises(ValueError, match="undistorted pinhole"):
        rasterize(g, Camera("OPENCV", 40, 30, [40, 40, 20, 15, 0.1, 0, 0, 0]), POSE)
    with pytest.raises(TypeError, match="cam_from_world"):
        rasterize(g, CAM, "pose")
    with pytest.raises(ValueError, match="sh_degree"):
        rasterize(_scene(5, sh_k=3), CAM, POSE, sh_degree=3)
    with pytest.raises(ValueError, match="backend"):
        rasterize(g, CAM, POSE, backend="vulkan")
    with pytest.raises(ValueError, match="background"):
        rasterize(g, CAM, POSE, background=[1, 1])
    with pytest.raises(ValueError, match="CUDA"):
        rasterize(g, CAM, POSE, backend="gsplat") if not torch.cuda.is_available() else (_ for _ in ()).throw(ValueError("CUDA"))
    empty = Gaussians(*(torch.zeros((0,) + s, dtype=torch.float64) for s in [(3,), (3,), (4,), (), (1, 3), (0, 3)]))
    out = rasterize(empty, CAM, POSE, background=[0.1, 0.2, 0.3])
    assert torch.allclose(out.rgb, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).expand(30, 40, 3))


@pytest.mark.gpu
def test_gsplat_matches_torch_reference():
    """gsplat (CUDA) vs our rasterizer: forward within 1e-4, gradients within 1e-3 relative.
    gsplat's kernels clamp alpha at 0.999, so the reference uses max_alpha=0.999 here."""
    g = _scene(300, dtype=torch.float32).to("cuda")
    cam = Camera("PINHOLE", 64, 48, [60.0, 58.0, 31.5, 23.5])
    params = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
    outs, grads = [], []
    for backend in ("gsplat", "torch"):
        for p in params.values():
            p.grad = None
        o = rasterize(Gaussians(**params), cam, POSE, background=[0.1, 0.2, 0.3], backend=backend, max_alpha=0.999)
        w = torch.linspace(0, 1, 64 * 48 * 3, device="cuda").reshape(48, 64, 3)
        ((o.rgb * w).sum() + o.alpha.sum()).backward()
        outs.append(o)
        grads.append({k: p.grad.clone() for k, p in params.items()})
    assert outs[0].backend == "gsplat" and outs[1].backend == "torch"
    torch.testing.assert_close(outs[0].rgb, outs[1].rgb, atol=1e-4, rtol=0)
    torch.testing.assert_close(outs[0].alpha, outs[1].alpha, atol=1e-4, rtol=0)
    torch.testing.assert_close(outs[0].means2d, outs[1].means2d, atol=1e-3, rtol=0)
    for k in grads[0]:
        a, b = grads[0][k], grads[1][k]
        rel = (a - b).norm() / b.norm().clamp_min(1e-12)
        assert rel < 1e-3, (k, float(rel))
