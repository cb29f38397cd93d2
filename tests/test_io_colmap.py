"""COLMAP sparse models: exact round trips and pycolmap 4.2 compatibility both ways, pixel-centre
shift at the edge, and clear FormatErrors for corrupt files."""

from __future__ import annotations

import filecmp
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from calib import MODELS, Camera, Rigid3
from recon import FormatError, Image, Point3D, Reconstruction
from recon.io import find_colmap_model, read_colmap, read_model, write_colmap
from recon.io.colmap import _qvec_of

FILES = {"bin": ("cameras.bin", "images.bin", "points3D.bin"),
         "txt": ("cameras.txt", "images.txt", "points3D.txt")}


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------

def _random_params(model: str, rng, w: int, h: int) -> np.ndarray:
    spec = MODELS[model]
    p = []
    for name in spec.param_names:
        if name in ("f", "fx", "fy"):
            p.append(rng.uniform(400, 900))
        elif name == "cx":
            p.append(w / 2 + rng.uniform(-20, 20))
        elif name == "cy":
            p.append(h / 2 + rng.uniform(-20, 20))
        elif name == "omega":
            p.append(rng.uniform(0.5, 1.0))
        else:
            p.append(rng.uniform(-0.05, 0.05))
    return np.array(p)


def make_reconstruction(rng, models=("SIMPLE_RADIAL", "PINHOLE", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV",
                                     "FOV", "THIN_PRISM_FISHEYE", "RAD_TAN_THIN_PRISM_FISHEYE"),
                        n_points: int = 60, space_in_name: bool = False) -> Reconstruction:
    """Cameras of many models (also ones we store but cannot project), images with keypoints
    (some without a 3D point), points with tracks; ids deliberately non-contiguous."""
    w, h = 640, 480
    cameras = {10 + i: Camera(m, w, h, _random_params(m, rng, w, h)) for i, m in enumerate(models)}
    images = {}
    cam_ids = list(cameras)
    for k in range(6):
        iid = 3 * k + 1
        kp = rng.uniform(0.5, 630.0, size=(n_points + 5, 2))
        pose = Rigid3.from_axis_angle(rng.normal(size=3) * 0.5, rng.normal(size=3))
        images[iid] = Image(iid, f"sub{' ' if space_in_name else '_'}dir/img_{k:03d}.png" if k == 0 else f"img_{k:03d}.png",
                            cam_ids[k % len(cam_ids)], pose, kp, np.full(n_points + 5, -1))
    points = {}
    for j in range(n_points):
        pid = 100 + 7 * j
        obs = rng.choice(list(images), size=rng.integers(2, 5), replace=False)
        track = np.array([[iid, j] for iid in obs])
        for iid in obs:
            images[iid].point3D_ids[j] = pid
        points[pid] = Point3D(rng.normal(size=3) * 3, rng.integers(0, 256, 3), float(rng.uniform(0, 2)), track)
    rec = Reconstruction(cameras, images, points)
    rec.validate()
    return rec


@pytest.fixture
def synthetic_pycolmap(tmp_path):
    """A pycolmap-synthesized model written by pycolmap in both formats."""
    opts = pycolmap.SyntheticDatasetOptions()
    opts.num_rigs = 2
    opts.num_frames_per_rig = 3
    opts.num_points3D = 50
    opts.camera_model_id = pycolmap.CameraModelId.OPENCV
    opts.camera_params = [700.0, 710.0, 512.3, 384.7, 0.01, -0.02, 0.001, 0.002]
    rec = pycolmap.synthesize_dataset(opts)
    for kind in ("bin", "txt"):
        (tmp_path / kind).mkdir()
    rec.write(str(tmp_path / "bin"))
    rec.write_text(str(tmp_path / "txt"))
    return rec, tmp_path


def assert_same_as_pycolmap(ours: Reconstruction, ref) -> None:
    """Identical values: ours + 0.5 on principal points and keypoints == pycolmap's."""
    assert set(ours.cameras) == set(ref.cameras)
    for cid, cam in ours.cameras.items():
        rc = ref.cameras[cid]
        assert cam.model == rc.model.name and (cam.width, cam.height) == (rc.width, rc.height)
        expect = np.array(rc.params)
        i = 1 if cam.spec.single_focal else 2
        expect[i:i + 2] -= 0.5
        np.testing.assert_array_equal(cam.params, expect)
    assert set(ours.images) == set(ref.images)
    for iid, im in ours.images.items():
        ri = ref.images[iid]
        assert im.name == ri.name and im.camera_id == ri.camera_id
        pose = ri.cam_from_world()
        xyzw = np.array(pose.rotation.quat)
        q = _qvec_of(im.cam_from_world)
        # same rotation; exact when the quaternion came from the file, else to rounding
        assert np.allclose(q, np.r_[xyzw[3], xyzw[:3]], rtol=0, atol=1e-15) or \
            np.allclose(q, -np.r_[xyzw[3], xyzw[:3]], rtol=0, atol=1e-15)
        # ~10 ulp: BLAS threading changes the last bits of the product
        np.testing.assert_allclose(im.cam_from_world.rotation, pose.rotation.matrix(), rtol=0, atol=1e-14)
        np.testing.assert_array_equal(im.cam_from_world.translation, pose.translation)
        xy = np.array([p.xy for p in ri.points2D]).reshape(-1, 2)
        np.testing.assert_array_equal(im.keypoints + 0.5, xy)
        ids = np.array([p.point3D_id if p.has_point3D() else -1 for p in ri.points2D], dtype=np.int64)
        np.testing.assert_array_equal(im.point3D_ids, ids)
    assert set(ours.points3D) == set(ref.points3D)
    for pid, p in ours.points3D.items():
        rp = ref.points3D[pid]
        np.testing.assert_array_equal(p.xyz, rp.xyz)
        np.testing.assert_array_equal(p.rgb, rp.color)
        assert p.error == rp.error
        track = np.array([(e.image_id, e.point2D_idx) for e in rp.track.elements]).reshape(-1, 2)
        np.testing.assert_array_equal(p.track, track)


# ---------------------------------------------------------------------------------------------
# pycolmap compatibility
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bin", "txt"])
def test_read_what_pycolmap_writes(synthetic_pycolmap, kind):
    ref, root = synthetic_pycolmap
    ours = read_colmap(root / kind)
    assert len(ours.images) == 6 and len(ours.points3D) == 50
    assert_same_as_pycolmap(ours, ref)
    # our pixel convention: the principal point moved by -0.5 relative to the file
    cam = next(iter(ours.cameras.values()))
    np.testing.assert_array_equal(cam.principal_point, [512.3 - 0.5, 384.7 - 0.5])


@pytest.mark.parametrize("kind", ["bin", "txt"])
def test_file_round_trip_is_byte_identical(synthetic_pycolmap, tmp_path, kind):
    """pycolmap file -> ours -> file: the same bytes (quaternions written back unchanged,
    text in COLMAP's 17-digit format)."""
    _, root = synthetic_pycolmap
    out = tmp_path / f"out_{kind}"
    write_colmap(read_colmap(root / kind), out, binary=(kind == "bin"))
    # trivial rigs (one camera each): our rigs / frames files equal pycolmap's too
    for name in FILES[kind] + (f"rigs.{kind}", f"frames.{kind}"):
        assert filecmp.cmp(root / kind / name, out / name, shallow=False), name


def test_stale_frames_file_cannot_override_new_poses(synthetic_pycolmap):
    """pycolmap composes image poses from frames.*: rewriting a model in place must rewrite
    them too, or pycolmap would silently load the old poses."""
    _, root = synthetic_pycolmap
    rec = read_colmap(root / "bin")
    im = rec.images[1]
    im.cam_from_world = Rigid3(im.cam_from_world.rotation, im.cam_from_world.translation + 1.0)
    write_colmap(rec, root / "bin")
    ref = pycolmap.Reconstruction(str(root / "bin"))
    np.testing.assert_array_equal(ref.images[1].cam_from_world().translation, im.cam_from_world.translation)
    with pytest.warns(UserWarning, match="binary files"):
        write_colmap(rec, root / "bin", binary=False)


@pytest.mark.parametrize("binary", [True, False])
def test_pycolmap_reads_what_we_write(tmp_path, rng, binary):
    ours = make_reconstruction(rng, space_in_name=binary)  # text files cannot hold spaces in names
    write_colmap(ours, tmp_path, binary=binary)
    ref = pycolmap.Reconstruction(str(tmp_path))
    assert_same_as_pycolmap(ours, ref)
    assert ref.num_reg_images() == len(ours.images)


@pytest.mark.parametrize("binary", [True, False])
def test_our_round_trip(tmp_path, rng, binary):
    rec = make_reconstruction(rng)
    write_colmap(rec, tmp_path, binary=binary)
    back = read_colmap(tmp_path)
    for cid, cam in rec.cameras.items():
        assert back.cameras[cid].model == cam.model
        np.testing.assert_array_equal(back.cameras[cid].params, cam.params)  # shift is exact here
    for iid, im in rec.images.items():
        b = back.images[iid]
        assert b.name == im.name and b.camera_id == im.camera_id
        # (k + 0.5) - 0.5 == k except where k + 0.5 crosses a power of two (then 1 ulp)
        np.testing.assert_allclose(b.keypoints, im.keypoints, rtol=2.3e-16, atol=0)
        np.testing.assert_array_equal(b.point3D_ids, im.point3D_ids)
        np.testing.assert_array_equal(b.cam_from_world.translation, im.cam_from_world.translation)
        # matrix -> quaternion -> matrix: rounding only
        np.testing.assert_allclose(b.cam_from_world.rotation, im.cam_from_world.rotation, rtol=0, atol=4e-16)
    for pid, p in rec.points3D.items():
        b = back.points3D[pid]
        np.testing.assert_array_equal(b.xyz, p.xyz)
        np.testing.assert_array_equal(b.rgb, p.rgb)
        np.testing.assert_array_equal(b.track, p.track)
        assert b.error == p.error
    # the second generation is byte-identical to the first
    write_colmap(back, tmp_path / "again", binary=binary)
    for name in FILES["bin" if binary else "txt"]:
        assert filecmp.cmp(tmp_path / name, tmp_path / "again" / name, shallow=False), name


def test_projection_agrees_with_pycolmap_after_shift(synthetic_pycolmap):
    """The converted camera + pose project points exactly where pycolmap projects them, minus
    0.5 px: the conversion is the convention change and nothing else."""
    ref, root = synthetic_pycolmap
    ours = read_colmap(root / "bin")
    for iid, im in ours.images.items():
        cam = ours.cameras[im.camera_id]
        ri = ref.images[iid]
        pids = [pid for pid in im.point3D_ids if pid >= 0][:10]
        X = np.array([ours.points3D[pid].xyz for pid in pids])
        uv, valid = cam.project(im.cam_from_world.apply(X))
        ref_uv = np.array([ref.cameras[ri.camera_id].img_from_cam(ri.cam_from_world() * x) for x in X])
        assert valid.all()
        np.testing.assert_allclose(uv + 0.5, ref_uv, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# model discovery and unregistered images
# ---------------------------------------------------------------------------------------------

def test_find_model_in_parent_and_from_a_file(tmp_path, rng):
    rec = make_reconstruction(rng, models=("PINHOLE",), n_points=5)
    model = tmp_path / "proj" / "sparse" / "0"
    write_colmap(rec, model, binary=False)
    assert find_colmap_model(tmp_path / "proj") == model
    assert find_colmap_model(model / "images.txt") == model
    assert find_colmap_model(tmp_path) is None
    assert len(read_model(tmp_path / "proj").points3D) == 5
    with pytest.raises(FileNotFoundError, match="no COLMAP model"):
        read_colmap(tmp_path)


def test_unregistered_images_are_skipped_with_a_warning(tmp_path, rng):
    rec = make_reconstruction(rng, models=("PINHOLE",), n_points=5)
    rec.images[99] = Image(99, "lost.png", next(iter(rec.cameras)), None)
    with pytest.warns(UserWarning, match="unregistered"):
        write_colmap(rec, tmp_path)
    back = read_colmap(tmp_path)
    assert 99 not in back.images and len(back.images) == len(rec.images) - 1


def test_text_refuses_names_with_spaces(tmp_path, rng):
    rec = make_reconstruction(rng, models=("PINHOLE",), n_points=5, space_in_name=True)
    with pytest.raises(ValueError, match="space"):
        write_colmap(rec, tmp_path, binary=False)
    write_colmap(rec, tmp_path, binary=True)
    assert read_colmap(tmp_path).images[1].name == "sub dir/img_000.png"


def test_write_checks_inputs(tmp_path, rng):
    rec = make_reconstruction(rng, models=("PINHOLE",), n_points=5)
    rec.images[1].camera_id = 12345
    with pytest.raises(ValueError, match="camera 12345"):
        write_colmap(rec, tmp_path)
    with pytest.raises(TypeError, match="Reconstruction"):
        write_colmap({"cameras": {}}, tmp_path)


# ---------------------------------------------------------------------------------------------
# corrupt files: every error names the file and the problem
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def good_model(tmp_path, rng):
    rec = make_reconstruction(rng, models=("OPENCV", "SIMPLE_RADIAL"), n_points=8)
    for kind in ("bin", "txt"):
        write_colmap(rec, tmp_path / kind, binary=(kind == "bin"))
    return tmp_path


def _expect_error(folder: Path, file: str, *needles: str):
    with pytest.raises(FormatError) as e:
        read_colmap(folder)
    msg = str(e.value)
    assert file in msg, msg
    for n in needles:
        assert n.lower() in msg.lower(), msg
    return msg


@pytest.mark.parametrize("file", FILES["bin"])
@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.97])
def test_truncated_binary(good_model, file, fraction):
    path = good_model / "bin" / file
    data = path.read_bytes()
    cut = max(3, int(len(data) * fraction)) if fraction else 3
    path.write_bytes(data[:cut])
    _expect_error(good_model / "bin", file, "truncated")


@pytest.mark.parametrize("file", FILES["bin"])
def test_wrong_content_binary(good_model, file):
    """A text file or random bytes under a .bin name."""
    path = good_model / "bin" / file
    path.write_bytes(b"# Camera list with one line of data per camera:\n1 PINHOLE 640 480 1 1 1 1\n")
    _expect_error(good_model / "bin", file)
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    _expect_error(good_model / "bin", file)


def test_incomplete_model(good_model):
    (good_model / "bin" / "points3D.bin").unlink()
    with pytest.raises(FormatError, match=r"incomplete COLMAP model.*not points3D\.bin"):
        read_colmap(good_model / "bin")


def test_trailing_bytes_binary(good_model):
    path = good_model / "bin" / "points3D.bin"
    path.write_bytes(path.read_bytes() + b"\x00" * 5)
    _expect_error(good_model / "bin", "points3D.bin", "trailing")


def test_unknown_model_id_binary(good_model):
    path = good_model / "bin" / "cameras.bin"
    data = bytearray(path.read_bytes())
    data[8 + 4:8 + 8] = struct.pack("<i", 42)  # first camera's model id
    path.write_bytes(bytes(data))
    _expect_error(good_model / "bin", "cameras.bin", "unknown camera model id 42")


def test_nan_binary(good_model):
    cams = good_model / "bin" / "cameras.bin"
    data = bytearray(cams.read_bytes())
    data[8 + 24:8 + 32] = struct.pack("<d", float("nan"))  # first camera's fx
    cams.write_bytes(bytes(data))
    _expect_error(good_model / "bin", "cameras.bin", "nan")

    pts = good_model / "bin" / "points3D.bin"
    write_colmap(read_colmap(good_model / "txt"), good_model / "bin")  # restore
    data = bytearray(pts.read_bytes())
    data[8 + 8:8 + 16] = struct.pack("<d", float("inf"))  # first point's x
    pts.write_bytes(bytes(data))
    _expect_error(good_model / "bin", "points3D.bin", "nan/inf")

    write_colmap(read_colmap(good_model / "txt"), good_model / "bin")
    ims = good_model / "bin" / "images.bin"
    data = bytearray(ims.read_bytes())
    data[8 + 4:8 + 12] = struct.pack("<d", float("nan"))  # first image's qw
    ims.write_bytes(bytes(data))
    _expect_error(good_model / "bin", "images.bin", "nan")


def test_non_unit_quaternion_binary(good_model):
    ims = good_model / "bin" / "images.bin"
    data = bytearray(ims.read_bytes())
    data[8 + 4:8 + 12] = struct.pack("<d", 7.0)  # first image's qw
    ims.write_bytes(bytes(data))
    _expect_error(good_model / "bin", "images.bin", "unit quaternion")


def _edit_line(path: Path, index: int, fn):
    lines = path.read_text().split("\n")
    data = [i for i, ln in enumerate(lines) if ln and not ln.startswith("#")]
    lines[data[index]] = fn(lines[data[index]])
    path.write_text("\n".join(lines))


@pytest.mark.parametrize("file,index,edit,needles", [
    ("cameras.txt", 0, lambda s: s.replace("OPENCV", "BROWN_CONRADY"), ["unknown camera model"]),
    ("cameras.txt", 0, lambda s: s + " 0.5", ["takes 8 params"]),
    ("cameras.txt", 0, lambda s: " ".join(s.split()[:5] + ["nan"] + s.split()[6:]), ["nan"]),
    ("cameras.txt", 0, lambda s: " ".join(s.split()[:5] + ["abc"] + s.split()[6:]), ["must be a number"]),
    ("images.txt", 0, lambda s: " ".join(s.split()[:1] + ["nan"] + s.split()[2:]), ["nan"]),
    ("images.txt", 1, lambda s: s.rsplit(" ", 2)[0], ["triples"]),
    ("points3D.txt", 0, lambda s: " ".join(s.split()[:2] + ["inf"] + s.split()[3:]), ["nan/inf"]),
    ("points3D.txt", 0, lambda s: " ".join(s.split()[:4] + ["300"] + s.split()[5:]), ["0..255"]),
    ("images.txt", 1, lambda s: "x" + s, ["POINTS2D X Y", "must be a number"]),
    ("images.txt", 1, lambda s: " ".join(s.split()[:2] + ["1.5"] + s.split()[3:]), ["POINT3D_ID", "integer"]),
    ("points3D.txt", 0, lambda s: s + " 1", ["pairs"]),
    ("points3D.txt", 0, lambda s: s + " 1 oops", ["TRACK", "integer"]),
    ("points3D.txt", 0, lambda s: s + " 1 99999999999999999999999", ["TRACK", "integer"]),
])
def test_corrupt_text(good_model, file, index, edit, needles):
    _edit_line(good_model / "txt" / file, index, edit)
    msg = _expect_error(good_model / "txt", file, *needles)
    assert "line " in msg  # text errors say where


def test_truncated_text(good_model):
    path = good_model / "txt" / "images.txt"
    lines = path.read_text().rstrip("\n").split("\n")
    path.write_text("\n".join(lines[:-1]) + "\n")  # drop the last POINTS2D line
    _expect_error(good_model / "txt", "images.txt", "truncated")


def test_binary_renamed_as_text(good_model):
    shutil.copy(good_model / "bin" / "cameras.bin", good_model / "txt" / "cameras.txt")
    _expect_error(good_model / "txt", "cameras.txt", "binary data")


def test_dangling_reference(good_model):
    _edit_line(good_model / "txt" / "points3D.txt", 0, lambda s: s + " 4242 0")
    msg = _expect_error(good_model / "txt", "", "image 4242")
    assert str(good_model / "txt") in msg


def test_cli_prints_format_error_without_traceback(good_model):
    import subprocess
    import sys

    path = good_model / "bin" / "images.bin"
    path.write_bytes(path.read_bytes()[:50])
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "recon", "info", str(good_model / "bin")], capture_output=True,
                       text=True, cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2, r.stderr
    assert "images.bin" in r.stderr and "truncated" in r.stderr
    assert "Traceback" not in r.stderr


def test_warnings_clean_on_good_files(good_model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_colmap(good_model / "bin")
        read_colmap(good_model / "txt")


def test_multi_camera_rig_model(tmp_path):
    """pycolmap 4 rigs (2 cameras per rig, non-trivial sensor_from_rig): images.bin still holds
    each image's composed cam_from_world, which is what we read."""
    opts = pycolmap.SyntheticDatasetOptions()
    opts.num_rigs = 1
    opts.num_cameras_per_rig = 2
    opts.num_frames_per_rig = 3
    opts.num_points3D = 30
    ref = pycolmap.synthesize_dataset(opts)
    ref.write(str(tmp_path))
    assert (tmp_path / "rigs.bin").is_file()
    ours = read_colmap(tmp_path)
    assert_same_as_pycolmap(ours, ref)
    write_colmap(ours, tmp_path / "ours")
    assert_same_as_pycolmap(ours, pycolmap.Reconstruction(str(tmp_path / "ours")))


def test_large_sparse_ids_round_trip(tmp_path, rng):
    """Ids near COLMAP's uint32 limit take the sorted-search path of the reference check."""
    rec = make_reconstruction(rng, models=("PINHOLE",), n_points=6)
    big = 4_000_000_000
    images = {iid + big: Image(iid + big, im.name, im.camera_id, im.cam_from_world, im.keypoints, im.point3D_ids)
              for iid, im in rec.images.items()}
    points = {pid: Point3D(p.xyz, p.rgb, p.error, p.track + np.array([big, 0])) for pid, p in rec.points3D.items()}
    write_colmap(Reconstruction(rec.cameras, images, points), tmp_path)
    back = read_colmap(tmp_path)
    assert set(back.images) == set(images)
    bad = dict(points)
    pid = next(iter(bad))
    bad[pid] = Point3D(points[pid].xyz, track=np.array([[big - 5, 0]]))
    with pytest.raises(ValueError, match=f"image {big - 5}"):
        write_colmap(Reconstruction(rec.cameras, images, bad), tmp_path / "bad")


def test_quaternion_memory_is_released(synthetic_pycolmap):
    import gc

    from recon.io import colmap as colmap_module

    _, root = synthetic_pycolmap
    gc.collect()  # poses of earlier tests
    before = len(colmap_module._QVEC_CACHE)
    rec = read_colmap(root / "bin")
    assert len(colmap_module._QVEC_CACHE) == before + len(rec.images)
    del rec
    gc.collect()
    assert len(colmap_module._QVEC_CACHE) == before
