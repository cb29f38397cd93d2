"""NeRF core against slow literal references: hash encoding (values, gradients), SH basis,
packed volume rendering and distortion loss (values, gradients, ragged rays), sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from render.nerf.encoding import FrequencyEncoding, HashGrid, HashGridConfig, hash_grid_encode
from render.nerf.sampling import (
    OccupancyGrid,
    SceneBounds,
    choose_bounds,
    march_rays,
    step_sequence,
)
from render.nerf.volume import composite, distortion_loss


def _naive_hash_encode(x, table, resolutions, T):
    """Per level, per corner, per point, straight from Instant-NGP sec. 3 (Python ints for the hash)."""
    primes = (1, 2654435761, 805459861)
    out = []
    for level, res in enumerate(resolutions):
        feats = []
        for n in range(x.shape[0]):
            p = [float(x[n, d].detach().clamp(0, 1)) * res for d in range(3)]
            base = [min(math.floor(v), res - 1) for v in p]
            acc = 0
            for c in range(8):
                corner = [base[d] + ((c >> d) & 1) for d in range(3)]
                w = 1.0
                for d in range(3):
                    f = x[n, d].clamp(0, 1) * res - base[d]
                    w = w * (f if (c >> d) & 1 else 1 - f)
                if (res + 1) ** 3 <= T:
                    row = corner[0] + corner[1] * (res + 1) + corner[2] * (res + 1) ** 2
                else:
                    h = 0
                    for d in range(3):
                        h ^= (corner[d] * primes[d]) % (1 << 32)
                    row = h % T
                acc = acc + w * table[level * T + row]
            feats.append(acc)
        out.append(torch.stack(feats))
    return torch.cat(out, -1)


def _backend_or_skip(backend):
    if backend == "cpp":
        from render.nerf.encoding import cpu_kernels, cpu_kernels_error

        if cpu_kernels() is None:
            pytest.skip(f"fused CPU kernels do not build here: {cpu_kernels_error()}")
    return backend


@pytest.mark.parametrize("backend", ["reference", "grid_sample", "cpp"])
@pytest.mark.parametrize("log2_t", [6, 12])  # 6: every level hashed but the first; 12: coarse levels dense
def test_hash_grid_matches_naive_reference_values_and_gradients(log2_t, backend):
    torch.manual_seed(0)
    cfg = HashGridConfig(num_levels=4, features_per_level=2, log2_table_size=log2_t, base_resolution=2,
                         max_resolution=64)
    grid = HashGrid(cfg, init_scale=1.0).double()
    grid.backend = _backend_or_skip(backend)
    assert grid.resolved_backend() == backend
    x = torch.rand(23, 3, dtype=torch.float64)
    x[0] = torch.tensor([1.0, 0.0, 0.5])  # faces of the cube
    x.requires_grad_(True)
    fast = grid(x)
    x_ref = x.detach().clone().requires_grad_(True)
    table_ref = grid.table.detach().clone().requires_grad_(True)
    ref = _naive_hash_encode(x_ref, table_ref, cfg.resolutions(), grid.table_size)
    assert fast.shape == (23, 8)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(fast)
    gx, gt = torch.autograd.grad((fast * g).sum(), [x, grid.table])
    gx_ref, gt_ref = torch.autograd.grad((ref * g).sum(), [x_ref, table_ref])
    torch.testing.assert_close(gt, gt_ref, rtol=1e-10, atol=1e-12)
    inside = ((x > 0) & (x < 1)).all(1)
    torch.testing.assert_close(gx[inside], gx_ref[inside], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("backend", ["grid_sample", "cpp"])
def test_fast_hash_grid_backends_equal_the_reference_at_training_size(backend):
    """The fast paths against the gather reference on a training-sized grid (dense and hashed
    levels, float32, many points, faces and corners of the cube), values and both gradients."""
    torch.manual_seed(3)
    cfg = HashGridConfig(num_levels=8, features_per_level=2, log2_table_size=14, base_resolution=4,
                         max_resolution=200)
    grid = HashGrid(cfg, init_scale=0.5)
    x = torch.rand(20_000, 3)
    x[:8] = torch.tensor([[(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=torch.float32)
    x[8] = torch.tensor([0.0, 0.37, 1.0])
    outs = []
    for b in ("reference", _backend_or_skip(backend)):
        grid.backend = b
        xi = x.clone().requires_grad_(True)
        y = grid(xi)
        g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
        gx, gt = torch.autograd.grad((y * g).sum(), [xi, grid.table])
        outs.append((y, gx, gt))
    (y0, gx0, gt0), (y1, gx1, gt1) = outs
    torch.testing.assert_close(y1, y0, rtol=1e-4, atol=1e-5)  # grid_sample: float32 coordinate round trip
    # float32 sums of thousands of contributions per coarse vertex: tolerances scaled to the gradients
    torch.testing.assert_close(gt1, gt0, rtol=1e-4, atol=1e-5 * float(gt0.abs().max()))
    torch.testing.assert_close(gx1, gx0, rtol=1e-4, atol=1e-5 * float(gx0.abs().max()))


def test_hash_grid_gradcheck():
    torch.manual_seed(1)
    grid = HashGrid(HashGridConfig(num_levels=3, log2_table_size=8, base_resolution=3, max_resolution=20),
                    init_scale=1.0).double()
    x = (torch.rand(5, 3, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    table = grid.table.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, t: hash_grid_encode(a, t, grid.resolutions, grid.table_size),
                                    (x, table), eps=1e-6, atol=1e-5)


def test_sh_basis_matches_scipy_real_spherical_harmonics():
    """Real SH Y_lm from scipy's complex ones (Condon-Shortley phase included), with the axis
    order and signs of the 3DGS constants: 3DGS's basis k of band l equals Y_l,m up to a sign
    fixed per basis function; check the magnitudes agree everywhere and the sign is constant."""
    import scipy.special as scipy_special

    from render.splat.sh import sh_basis

    rng = np.random.default_rng(0)
    d = rng.normal(size=(200, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    ours = sh_basis(3, torch.tensor(d)).numpy()
    theta = np.arccos(np.clip(d[:, 2], -1, 1))  # polar from +z
    phi = np.arctan2(d[:, 1], d[:, 0])
    sph = getattr(scipy_special, "sph_harm_y", None)
    k = 0
    for l in range(4):
        for m in range(-l, l + 1):
            if sph is not None:
                Y = sph(l, abs(m), theta, phi)
            else:
                Y = scipy_special.sph_harm(abs(m), l, phi, theta)
            if m < 0:
                real = math.sqrt(2) * (-1) ** m * Y.imag
            elif m == 0:
                real = Y.real
            else:
                real = math.sqrt(2) * (-1) ** m * Y.real
            col = ours[:, k]
            sign = np.sign(np.dot(col, real))
            np.testing.assert_allclose(col, sign * real, atol=1e-12, err_msg=f"l={l} m={m}")
            k += 1


def _eval_sh_inria(degree, coeffs, dirs):
    """The Inria 3DGS ``eval_sh`` written term by term (utils/sh_utils.py), the reference."""
    from render.splat.sh import SH_C0, SH_C1, SH_C2, SH_C3

    c = coeffs
    r = SH_C0 * c[..., 0, :]
    if degree == 0:
        return r
    x, y, z = dirs[..., 0:1], dirs[..., 1:2], dirs[..., 2:3]
    r = r - SH_C1 * y * c[..., 1, :] + SH_C1 * z * c[..., 2, :] - SH_C1 * x * c[..., 3, :]
    if degree == 1:
        return r
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    r = (r + SH_C2[0] * xy * c[..., 4, :] + SH_C2[1] * yz * c[..., 5, :]
         + SH_C2[2] * (2.0 * zz - xx - yy) * c[..., 6, :] + SH_C2[3] * xz * c[..., 7, :]
         + SH_C2[4] * (xx - yy) * c[..., 8, :])
    if degree == 2:
        return r
    return (r + SH_C3[0] * y * (3 * xx - yy) * c[..., 9, :] + SH_C3[1] * xy * z * c[..., 10, :]
            + SH_C3[2] * y * (4 * zz - xx - yy) * c[..., 11, :]
            + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * c[..., 12, :]
            + SH_C3[4] * x * (4 * zz - xx - yy) * c[..., 13, :] + SH_C3[5] * z * (xx - yy) * c[..., 14, :]
            + SH_C3[6] * x * (xx - 3 * yy) * c[..., 15, :])


def test_sh_basis_agrees_with_eval_sh():
    from render.splat.sh import eval_sh, sh_basis

    torch.manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=-1)
    coeffs = torch.randn(50, 16, 3, dtype=torch.float64)
    for deg in range(4):
        n = (deg + 1) ** 2
        torch.testing.assert_close((sh_basis(deg, d)[..., None] * coeffs[:, :n]).sum(1), eval_sh(deg, coeffs, d))
        # values and gradients (coefficients and directions) equal the term-by-term Inria formula
        c1, d1 = coeffs.clone().requires_grad_(), d.clone().requires_grad_()
        c2, d2 = coeffs.clone().requires_grad_(), d.clone().requires_grad_()
        w = torch.randn(50, 3, dtype=torch.float64)
        (eval_sh(deg, c1, d1) * w).sum().backward()
        (_eval_sh_inria(deg, c2, d2) * w).sum().backward()
        torch.testing.assert_close(c1.grad, c2.grad)
        torch.testing.assert_close(d1.grad, d2.grad)


def test_frequency_encoding_literal():
    enc = FrequencyEncoding(3, 4).double()
    x = torch.rand(7, 3, dtype=torch.float64)
    out = enc(x)
    assert out.shape == (7, 3 * 9)
    for k in range(4):
        for d in range(3):
            assert torch.allclose(out[:, 3 + k * 3 + d], torch.sin(2 ** k * math.pi * x[:, d]))
            assert torch.allclose(out[:, 3 + 12 + k * 3 + d], torch.cos(2 ** k * math.pi * x[:, d]))


# ---------------------------------------------------------------------------------------------
# volume rendering

def _ragged(seed, counts):
    g = torch.Generator().manual_seed(seed)
    ray_idx = torch.cat([torch.full((c,), r, dtype=torch.long) for r, c in enumerate(counts)])
    S = len(ray_idx)
    sig = (torch.rand(S, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    rgb = torch.rand(S, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    starts, ends = [], []
    for c in counts:
        edges = torch.sort(torch.rand(c + 1, generator=g, dtype=torch.float64) * 4)[0]
        starts.append(edges[:-1])
        ends.append(edges[1:])
    return ray_idx, sig, rgb, torch.cat(starts), torch.cat(ends)


def _reference_ray(sig, rgb, t0, t1, bg):
    """One ray, literally: T_i = exp(-sum_{j<i} sigma_j delta_j), w_i = T_i (1 - exp(-sigma_i delta_i))."""
    color = torch.zeros(3, dtype=sig.dtype)
    acc = torch.zeros((), dtype=sig.dtype)
    depth = torch.zeros((), dtype=sig.dtype)
    ws = []
    for i in range(len(sig)):
        T = torch.exp(-sum((sig[j] * (t1[j] - t0[j]) for j in range(i)), torch.zeros((), dtype=sig.dtype)))
        w = T * (1 - torch.exp(-sig[i] * (t1[i] - t0[i])))
        ws.append(w)
        color = color + w * rgb[i]
        acc = acc + w
        depth = depth + w * 0.5 * (t0[i] + t1[i])
    dist = torch.zeros((), dtype=sig.dtype)
    for i in range(len(sig)):
        for j in range(len(sig)):
            dist = dist + ws[i] * ws[j] * torch.abs(0.5 * (t0[i] + t1[i]) - 0.5 * (t0[j] + t1[j]))
        dist = dist + ws[i] ** 2 * (t1[i] - t0[i]) / 3
    return color + (1 - acc) * bg, acc, depth / acc.clamp_min(1e-10) if len(sig) else depth, dist


def test_volume_rendering_matches_per_ray_reference_values_and_gradients():
    counts = [5, 0, 1, 17, 3, 0, 9]  # ragged, with empty rays
    ray_idx, sig, rgb, t0, t1 = _ragged(0, counts)
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    R = len(counts)
    out = composite(sig, rgb, ray_idx, t0, t1, R, background=bg)
    dist = distortion_loss(out.weights, ray_idx, t0, t1, R)
    refs = []
    s = 0
    for c in counts:
        refs.append(_reference_ray(sig[s:s + c], rgb[s:s + c], t0[s:s + c], t1[s:s + c], bg))
        s += c
    ref_rgb = torch.stack([r[0] for r in refs])
    ref_acc = torch.stack([r[1] for r in refs])
    ref_depth = torch.stack([r[2] for r in refs])
    ref_dist = torch.stack([r[3] for r in refs])
    for a, b in [(out.rgb, ref_rgb), (out.opacity, ref_acc), (out.depth, ref_depth), (dist, ref_dist)]:
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    g1, g2, g3, g4 = torch.randn(R, 3, dtype=torch.float64), torch.randn(R, dtype=torch.float64), \
        torch.randn(R, dtype=torch.float64), torch.randn(R, dtype=torch.float64)
    f = lambda c, a, d, l: (c * g1).sum() + (a * g2).sum() + (d * g3).sum() + (l * g4).sum()
    gs = torch.autograd.grad(f(out.rgb, out.opacity, out.depth, dist), [sig, rgb])
    gr = torch.autograd.grad(f(ref_rgb, ref_acc, ref_depth, ref_dist), [sig, rgb])
    for a, b in zip(gs, gr):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_volume_rendering_float32_long_packed_arrays_keep_transmittance():
    """Many rays in one packed array: the float64 prefix sums keep float32 transmittance exact."""
    counts = [64] * 2000
    ray_idx, sig, rgb, t0, t1 = _ragged(1, counts)
    out32 = composite(sig.float(), rgb.float(), ray_idx, t0.float(), t1.float(), len(counts))
    out64 = composite(sig, rgb, ray_idx, t0, t1, len(counts))
    assert float((out32.rgb.double() - out64.rgb).abs().max().detach()) < 1e-5


# ---------------------------------------------------------------------------------------------
# sampling

def test_contraction_maps_everything_into_the_unit_cube_and_is_identity_inside():
    b = SceneBounds("contract", (-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), 0.01, 1e3)
    x = torch.tensor([[0.3, -0.2, 0.5], [10.0, 0.0, 0.0], [1e6, -1e6, 3.0], [-2.0, 0.0, 0.0]])
    u = b.to_unit(x)
    assert torch.all((u >= 0) & (u <= 1))
    torch.testing.assert_close(u[0], (x[0] + 2) / 4)  # inner cube: linear
    torch.testing.assert_close(u[1], torch.tensor([(1.9 + 2) / 4, 0.5, 0.5]))  # 2 - 1/10
    torch.testing.assert_close(u[3], torch.tensor([(-1.5 + 2) / 4, 0.5, 0.5]))


def test_choose_bounds_room_is_box_and_forward_facing_far_points_contract():
    rng = np.random.default_rng(0)
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    centres = np.stack([3 * np.cos(ang), 3 * np.sin(ang), np.full(12, 1.5)], 1)
    dirs = -centres + np.array([0, 0, 1.5])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    room = rng.uniform([-4, -4, 0], [4, 4, 3], (500, 3))
    b, why = choose_bounds(centres, dirs, room)
    assert b.kind == "box", why
    assert np.all(np.asarray(b.lo) <= room.min(0) + 0.2) and np.all(np.asarray(b.hi) >= room.max(0) - 0.2)
    # forward-facing: cameras on a line looking +y at points 5-80 m away
    centres = np.stack([np.linspace(-1, 1, 8), np.zeros(8), np.zeros(8)], 1)
    dirs = np.tile([0.05, 1.0, 0.0], (8, 1))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    far_pts = rng.uniform([-20, 5, -5], [20, 80, 5], (500, 3))
    b, why = choose_bounds(centres, dirs, far_pts)
    assert b.kind == "contract", why
    b2, _ = choose_bounds(centres, dirs, far_pts, kind="box")
    assert b2.kind == "box"


def test_march_rays_box_skips_empty_cells_and_terminates_early():
    b = SceneBounds("box", (-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), 0.0, 10.0)
    o = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.0, -3.0], [5.0, 5.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.28, 0.96], [0.0, 0.0, 1.0]])
    edges = step_sequence(b, 128, 0.0)
    s = march_rays(o, d, b, edges)
    assert set(s.ray_indices.tolist()) == {0, 1}  # ray 2 misses the box
    r0 = s.ray_indices == 0
    assert float(s.t_starts[r0].min()) >= 2.0 - 1e-6 and float(s.t_ends[r0].max()) <= 4.0 + 1e-6
    assert torch.all(s.t_ends > s.t_starts)
    # grid with only the cells around z in [0, 0.25] occupied
    grid = OccupancyGrid(8)
    u = grid.cell_centres(torch.arange(8 ** 3), jitter=False)
    grid.occupied = (u[:, 2] > 0.5) & (u[:, 2] < 0.65)
    s2 = march_rays(o, d, b, edges, grid=grid)
    z = s2.positions[:, 2]
    assert len(z) > 0 and float(z.min()) >= -1e-6 and float(z.max()) <= 0.25 + 0.02
    # early termination: an opaque slab at z > 0 stops ray 0 right after it
    opaque = lambda p: torch.where(p[:, 2] > 0.0, 1e4, 0.0)
    s3 = march_rays(o, d, b, edges, sigma_fn=opaque)
    assert float(s3.positions[s3.ray_indices == 0, 2].max()) < 0.1
    assert float(s.positions[r0, 2].max()) > 0.9


def test_occupancy_grid_update_marks_dense_region():
    torch.manual_seed(0)
    grid = OccupancyGrid(16)
    dens = lambda u: torch.where((u - 0.5).norm(dim=-1) < 0.25, 100.0, 0.0)
    assert bool(grid.occupied.all())  # before any update: nothing skipped
    for _ in range(3):
        frac = grid.update(dens, threshold=1.0)
    u = grid.cell_centres(torch.arange(16 ** 3), jitter=False)
    inside = (u - 0.5).norm(dim=-1) < 0.2
    outside = (u - 0.5).norm(dim=-1) > 0.32
    assert bool(grid.occupied[inside].all()) and not bool(grid.occupied[outside].any())
    assert 0.03 < frac < 0.12


def test_occupancy_grid_keeps_pinned_cells_whatever_their_density():
    """Cells pinned at (SfM) points stay occupied through updates that find them empty; the
    pinned mask is training-time state (not saved), the occupied mask is."""
    torch.manual_seed(0)
    grid = OccupancyGrid(8)
    pts = torch.tensor([[0.06, 0.06, 0.06], [0.5, 0.7, 0.9], [0.51, 0.71, 0.91]])  # the last two share a cell
    assert grid.pin(pts) == 2
    for _ in range(3):
        frac = grid.update(lambda u: torch.zeros(len(u)), threshold=1.0)
    assert frac == pytest.approx(2 / 8 ** 3)
    assert bool(grid.occupied[grid.cell_index(pts)].all())
    assert "pinned" not in grid.state_dict() and "occupied" in grid.state_dict()
    unpinned = OccupancyGrid(8)
    unpinned.update(lambda u: torch.zeros(len(u)), threshold=1.0)
    assert not bool(unpinned.occupied.any())


@pytest.mark.parametrize("backend", ["reference", "grid_sample", "cpp"])
def test_hash_grid_of_no_points_is_empty(backend):
    """A chunk of rays with no sample (all in carved space) encodes to [0, L*F], not an error."""
    cfg = HashGridConfig(num_levels=4, log2_table_size=8, base_resolution=2, max_resolution=40)
    grid = HashGrid(cfg)
    grid.backend = _backend_or_skip(backend)
    x = torch.zeros(0, 3, requires_grad=True)
    y = grid(x)
    assert y.shape == (0, 8)
    y.sum().backward()
    assert x.grad.shape == (0, 3)
