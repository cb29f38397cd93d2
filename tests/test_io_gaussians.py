"""3DGS PLY layout: bit-exact round trip, property order/naming as 3DGS/SuperSplat expect, errors."""

from __future__ import annotations

import numpy as np
import pytest

from recon.errors import FormatError
from recon.io.gaussians import SH_C0, GaussianCloud, read_splat_ply, write_splat_ply


def _random_cloud(rng, n=50, degree=3):
    k = {0: 0, 1: 3, 2: 8, 3: 15}[degree]
    return GaussianCloud(
        means=rng.normal(size=(n, 3)), log_scales=rng.normal(-3, 1, size=(n, 3)),
        quats_wxyz=rng.normal(size=(n, 4)), opacity_logits=rng.normal(size=n),
        sh_dc=rng.normal(size=(n, 3)), sh_rest=rng.normal(size=(n, k, 3)) * 0.1)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_bit_exact(tmp_path, rng, degree):
    g = _random_cloud(rng, degree=degree)
    path = write_splat_ply(tmp_path / "s.ply", g)
    h = read_splat_ply(path)
    assert len(h) == len(g) and h.sh_degree == degree
    for name in ("means", "log_scales", "quats_wxyz", "opacity_logits", "sh_dc", "sh_rest"):
        a, b = getattr(g, name), getattr(h, name)
        assert a.dtype == b.dtype == np.float32
        assert a.tobytes() == b.tobytes(), name


def test_layout_matches_3dgs(tmp_path, rng):
    """Header lists exactly the Inria 3DGS property order; f_rest is channel-major."""
    g = _random_cloud(rng, n=3, degree=3)
    path = write_splat_ply(tmp_path / "s.ply", g)
    raw = path.read_bytes()
    header = raw[: raw.index(b"end_header")].decode().splitlines()
    props = [line.split()[2] for line in header if line.startswith("property")]
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert props == expected
    assert "format binary_little_endian 1.0" in header
    assert all(line.startswith("property float ") for line in header if line.startswith("property"))
    body = np.frombuffer(raw[raw.index(b"end_header\n") + 11:], dtype="<f4").reshape(3, 62)
    # f_rest_{c*15+k} = coefficient k of channel c (3DGS transposes [N,15,3] -> [N,3,15])
    np.testing.assert_array_equal(body[:, 9 + 1 * 15 + 4], g.sh_rest[:, 4, 1])
    np.testing.assert_array_equal(body[:, 9 + 2 * 15 + 14], g.sh_rest[:, 14, 2])
    np.testing.assert_array_equal(body[:, 54], g.opacity_logits)
    np.testing.assert_array_equal(body[:, 58:62], g.quats_wxyz)


def test_reads_ascii_big_endian_and_reordered(tmp_path, rng):
    g = _random_cloud(rng, n=4, degree=1)
    names = (["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(9)]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])[::-1]
    cols = {"x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2], "opacity": g.opacity_logits}
    for c in range(3):
        cols[f"f_dc_{c}"] = g.sh_dc[:, c]
        cols[f"scale_{c}"] = g.log_scales[:, c]
        for j in range(3):
            cols[f"f_rest_{c * 3 + j}"] = g.sh_rest[:, j, c]
    for c in range(4):
        cols[f"rot_{c}"] = g.quats_wxyz[:, c]
    head = ["ply", "format {}", "comment made by a test", f"element vertex {len(g)}"]
    head += [f"property float {n}" for n in names] + ["end_header"]
    big = np.empty(len(g), dtype=[(n, ">f4") for n in names])
    for n in names:
        big[n] = cols[n]
    (tmp_path / "be.ply").write_bytes(("\n".join(head).format("binary_big_endian 1.0") + "\n").encode()
                                      + big.tobytes())
    rows = "\n".join(" ".join(repr(float(cols[n][i])) for n in names) for i in range(len(g)))
    (tmp_path / "a.ply").write_text("\n".join(head).format("ascii 1.0") + "\n" + rows + "\n")
    for f in ("be.ply", "a.ply"):
        h = read_splat_ply(tmp_path / f)
        assert h.sh_degree == 1
        np.testing.assert_array_equal(h.sh_rest, g.sh_rest)
        np.testing.assert_array_equal(h.quats_wxyz, g.quats_wxyz)
        np.testing.assert_array_equal(h.means, g.means)


def test_empty_cloud_round_trips(tmp_path):
    g = GaussianCloud(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 4)), np.zeros(0),
                      np.zeros((0, 3)), np.zeros((0, 15, 3)))
    h = read_splat_ply(write_splat_ply(tmp_path / "e.ply", g))
    assert len(h) == 0 and h.sh_degree == 3


def test_from_points_colours():
    g = GaussianCloud.from_points([[0, 0, 1], [1, 2, 3]], np.array([[255, 0, 0], [0, 128, 255]], np.uint8),
                                  scale=0.05, opacity=0.3, sh_degree=2)
    np.testing.assert_allclose(g.colors_dc, [[1, 0, 0], [0, 128 / 255, 1]], atol=1e-6)
    np.testing.assert_allclose(g.opacities, 0.3, atol=1e-6)
    np.testing.assert_allclose(g.scales, 0.05, rtol=1e-6)
    assert g.sh_rest.shape == (2, 8, 3) and abs(SH_C0 - 0.28209479177387814) < 1e-15


def test_errors(tmp_path, rng):
    with pytest.raises(ValueError, match="log_scales"):
        GaussianCloud(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((2, 4)), np.zeros(2),
                      np.zeros((2, 3)), np.zeros((2, 0, 3)))
    with pytest.raises(ValueError, match="SH coefficients"):
        GaussianCloud(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 4)), np.zeros(2),
                      np.zeros((2, 3)), np.zeros((2, 5, 3)))
    (tmp_path / "pts.ply").write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                                      "property float y\nproperty float z\nend_header\n0 0 0\n")
    with pytest.raises(FormatError, match="missing vertex properties"):
        read_splat_ply(tmp_path / "pts.ply")
    (tmp_path / "junk.ply").write_bytes(b"hello")
    with pytest.raises(FormatError, match="not a PLY"):
        read_splat_ply(tmp_path / "junk.ply")
    path = write_splat_ply(tmp_path / "t.ply", _random_cloud(rng, n=10))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(FormatError, match="truncated"):
        read_splat_ply(path)
    with pytest.raises(FileNotFoundError):
        read_splat_ply(tmp_path / "nope.ply")
