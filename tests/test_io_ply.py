"""PLY point clouds: exact round trips (binary / ASCII), dtypes kept, big-endian input, faces
skipped and reported, compatibility with Open3D / trimesh, and FormatErrors for corrupt files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from recon import FormatError
from recon.io import PointCloud, read_ply, read_ply_header, write_ply


def _cloud(rng, n=500, dtype=np.float32) -> PointCloud:
    return PointCloud(
        xyz=rng.normal(size=(n, 3)).astype(dtype) * 10,
        rgb=rng.integers(0, 256, size=(n, 3), dtype=np.uint8),
        normals=rng.normal(size=(n, 3)).astype(dtype),
        attributes={
            "class_id": rng.integers(0, 20, n).astype(np.int32),
            "instance_id": rng.integers(-1, 1000, n).astype(np.int32),
            "error": rng.uniform(0, 2, n).astype(np.float64),
            "alpha": rng.integers(0, 256, n).astype(np.uint8),
        },
    )


def _assert_same(a: PointCloud, b: PointCloud):
    assert a.xyz.dtype == b.xyz.dtype
    np.testing.assert_array_equal(a.xyz, b.xyz)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.normals, b.normals)
    assert list(a.attributes) == list(b.attributes)
    for k in a.attributes:
        assert a.attributes[k].dtype == b.attributes[k].dtype, k
        np.testing.assert_array_equal(a.attributes[k], b.attributes[k])


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_exact(tmp_path, rng, binary, dtype):
    c = _cloud(rng, dtype=dtype)
    write_ply(tmp_path / "c.ply", c, binary=binary)
    _assert_same(c, read_ply(tmp_path / "c.ply"))
    h = read_ply_header(tmp_path / "c.ply")
    assert h.format == ("binary_little_endian" if binary else "ascii")
    assert [n for n, _ in h.element("vertex").properties][:9] == ["x", "y", "z", "nx", "ny", "nz", "red",
                                                                   "green", "blue"]


def test_minimal_and_empty(tmp_path, rng):
    c = PointCloud(rng.normal(size=(7, 3)))
    write_ply(tmp_path / "m.ply", c)
    b = read_ply(tmp_path / "m.ply")
    assert b.rgb is None and b.normals is None and b.attributes == {}
    np.testing.assert_array_equal(b.xyz, c.xyz)
    for binary in (True, False):
        write_ply(tmp_path / "e.ply", PointCloud(np.zeros((0, 3), np.float32)), binary=binary)
        assert len(read_ply(tmp_path / "e.ply")) == 0


def test_int64_attributes_stored_as_int32(tmp_path, rng):
    c = PointCloud(rng.normal(size=(5, 3)), attributes={"class_id": np.arange(5, dtype=np.int64)})
    write_ply(tmp_path / "a.ply", c)
    b = read_ply(tmp_path / "a.ply")
    assert b.attributes["class_id"].dtype == np.int32
    np.testing.assert_array_equal(b.attributes["class_id"], np.arange(5))
    big = PointCloud(rng.normal(size=(2, 3)), attributes={"id": np.array([0, 2**40])})
    with pytest.raises(ValueError, match="64-bit"):
        write_ply(tmp_path / "b.ply", big)


def test_big_endian_input(tmp_path, rng):
    c = _cloud(rng, n=50)
    names = ["x", "y", "z", "red", "green", "blue", "class_id"]
    dt = np.dtype([("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                   ("class_id", ">i4")])
    data = np.empty(50, dtype=dt)
    for j, n in enumerate("xyz"):
        data[n] = c.xyz[:, j]
    data["red"], data["green"], data["blue"] = c.rgb.T
    data["class_id"] = c.attributes["class_id"]
    header = ("ply\nformat binary_big_endian 1.0\nelement vertex 50\nproperty float x\nproperty float y\n"
              "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
              "property int class_id\nend_header\n")
    (tmp_path / "be.ply").write_bytes(header.encode() + data.tobytes())
    b = read_ply(tmp_path / "be.ply")
    np.testing.assert_array_equal(b.xyz, c.xyz)
    np.testing.assert_array_equal(b.rgb, c.rgb)
    np.testing.assert_array_equal(b.attributes["class_id"], c.attributes["class_id"])
    assert b.xyz.dtype.isnative and list(b.attributes) == names[6:]


def test_mesh_faces_are_skipped_and_reported(tmp_path):
    """A mesh PLY (vertices + faces, written by trimesh) gives its vertices with a warning."""
    import trimesh
    mesh = trimesh.creation.icosphere(subdivisions=1)
    for enc in ("binary", "ascii"):
        path = tmp_path / f"mesh_{enc}.ply"
        path.write_bytes(trimesh.exchange.ply.export_ply(mesh, encoding=enc))
        with pytest.warns(UserWarning, match="face"):
            c = read_ply(path)
        np.testing.assert_allclose(c.xyz, mesh.vertices, rtol=1e-6)
        assert read_ply_header(path).element("face").count == len(mesh.faces)


def test_open3d_reads_ours_and_we_read_open3d(tmp_path, rng):
    import open3d as o3d
    c = _cloud(rng, n=200, dtype=np.float64)
    c = PointCloud(c.xyz, c.rgb, c.normals)  # Open3D knows xyz / rgb / normals only
    write_ply(tmp_path / "ours.ply", c)
    pc = o3d.io.read_point_cloud(str(tmp_path / "ours.ply"))
    np.testing.assert_array_equal(np.asarray(pc.points), c.xyz)
    np.testing.assert_allclose(np.asarray(pc.colors), c.rgb / 255.0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(pc.normals), c.normals)
    o3d.io.write_point_cloud(str(tmp_path / "o3d.ply"), pc, write_ascii=False)
    b = read_ply(tmp_path / "o3d.ply")
    np.testing.assert_array_equal(b.xyz, c.xyz)
    np.testing.assert_array_equal(b.rgb, c.rgb)
    np.testing.assert_array_equal(b.normals, c.normals)


def test_constructor_checks():
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        PointCloud(np.zeros((4, 2)))
    with pytest.raises(TypeError, match="uint8"):
        PointCloud(np.zeros((4, 3)), rgb=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="attributes"):
        PointCloud(np.zeros((4, 3)), attributes={"class_id": np.zeros(3)})
    with pytest.raises(TypeError, match="float"):
        PointCloud(np.zeros((4, 3), dtype=np.int32))


# ---------------------------------------------------------------------------------------------
# corrupt files
# ---------------------------------------------------------------------------------------------

def _expect(path, *needles):
    with pytest.raises(FormatError) as e:
        read_ply(path)
    msg = str(e.value)
    assert path.name in msg, msg
    for n in needles:
        assert n.lower() in msg.lower(), msg


@pytest.mark.parametrize("binary", [True, False])
def test_truncated(tmp_path, rng, binary):
    p = tmp_path / "t.ply"
    write_ply(p, _cloud(rng, n=100), binary=binary)
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * 0.8)])
    _expect(p, "truncated" if binary else "")
    p.write_bytes(data[:40])  # inside the header
    _expect(p, "end_header")


def test_wrong_magic_and_header(tmp_path, rng):
    p = tmp_path / "w.ply"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    _expect(p, "not a PLY")
    good = ("ply\nformat binary_little_endian 1.0\nelement vertex 1\n"
            "property float x\nproperty float y\nproperty float z\nend_header\n")
    for bad, needle in [
        (good.replace("binary_little_endian", "binary_middle_endian"), "format"),
        (good.replace("1.0", "2.0"), "format"),
        (good.replace("property float y", "property float128 y"), "float128"),
        (good.replace("property float z\n", ""), "z"),
        (good.replace("element vertex 1", "element vertex many"), "element"),
        (good.replace("format binary_little_endian 1.0\n", ""), "format"),
        (good.replace("element vertex 1\n", "").replace("end_header", "element face 0\nend_header"), "property before"),
    ]:
        p.write_bytes(bad.encode() + bytes(12))
        _expect(p, needle)


@pytest.mark.parametrize("binary", [True, False])
def test_nan_positions_and_normals(tmp_path, rng, binary):
    c = _cloud(rng, n=20)
    xyz = c.xyz.copy()
    xyz[3, 1] = np.nan
    p = tmp_path / "n.ply"
    write_ply(p, PointCloud(xyz, c.rgb), binary=binary)
    _expect(p, "nan")
    nrm = c.normals.copy()
    nrm[5] = np.inf
    write_ply(p, PointCloud(c.xyz, normals=nrm), binary=binary)
    _expect(p, "normal", "nan/inf")


def test_ascii_garbage(tmp_path, rng):
    p = tmp_path / "g.ply"
    write_ply(p, PointCloud(rng.normal(size=(3, 3))), binary=False)
    text = p.read_text().split("\n")
    text[-2] = "1.0 oops 2.0"
    p.write_text("\n".join(text))
    _expect(p, "bad number")


def test_warns_nothing_on_plain_clouds(tmp_path, rng):
    write_ply(tmp_path / "c.ply", _cloud(rng))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_ply(tmp_path / "c.ply")


def test_round_trip_property(tmp_path_factory):
    """Any mix of point count, xyz dtype, optional rgb / normals and attribute dtypes survives
    binary and ASCII round trips bit for bit (hypothesis)."""
    import hypothesis
    st = hypothesis.strategies
    dtypes = st.sampled_from([np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.float32, np.float64])

    @hypothesis.settings(max_examples=20, deadline=None)
    @hypothesis.given(n=st.integers(0, 40), xyz64=st.booleans(), with_rgb=st.booleans(), with_normals=st.booleans(),
                      attr_dtypes=st.lists(dtypes, max_size=4), binary=st.booleans(), seed=st.integers(0, 2**31))
    def check(n, xyz64, with_rgb, with_normals, attr_dtypes, binary, seed):
        rng = np.random.default_rng(seed)
        ft = np.float64 if xyz64 else np.float32
        attrs = {}
        for k, dt in enumerate(attr_dtypes):
            if np.dtype(dt).kind == "f":
                attrs[f"a{k}"] = (rng.normal(size=n) * 10.0 ** rng.integers(-30, 30)).astype(dt)
            else:
                info = np.iinfo(dt)
                attrs[f"a{k}"] = rng.integers(info.min, info.max, size=n, endpoint=True).astype(dt)
        c = PointCloud((rng.normal(size=(n, 3)) * 1e3).astype(ft),
                       rng.integers(0, 256, (n, 3), dtype=np.uint8) if with_rgb else None,
                       rng.normal(size=(n, 3)).astype(ft) if with_normals else None, attrs)
        p = tmp_path_factory.mktemp("prop") / "c.ply"
        write_ply(p, c, binary=binary)
        b = read_ply(p)
        assert b.xyz.dtype == c.xyz.dtype
        np.testing.assert_array_equal(b.xyz, c.xyz)
        assert (b.rgb is None) == (c.rgb is None) and (b.normals is None) == (c.normals is None)
        if c.rgb is not None:
            np.testing.assert_array_equal(b.rgb, c.rgb)
        if c.normals is not None:
            np.testing.assert_array_equal(b.normals, c.normals)
        for k, a in c.attributes.items():
            assert b.attributes[k].dtype == a.dtype
            np.testing.assert_array_equal(b.attributes[k], a)

    check()
