"""Property-based fuzzing of every reader: truncations, byte flips, absurd counts, NaN/Inf and
wrong types, applied (hypothesis) to a valid file of each format written by our own writer.

The contract: a reader returns a value or raises recon's own error type (``ReconError``, which
``FormatError`` is) with the file named in the message; ``calib.files`` (the lowest layer, which
imports nothing of recon) raises ``ValueError`` naming the file. Nothing else gets out: no
IndexError, struct.error, UnicodeDecodeError, MemoryError... An absurd record count (2^62) is
rejected from the file size before anything of that size is allocated (checked with the
process's peak RSS). Examples are derandomized (the same cases in every run) and each has a
1 s deadline.
"""

from __future__ import annotations

import json
import resource
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calib import Camera, Rigid3
from recon.errors import ReconError

FUZZ = settings(max_examples=30, deadline=1000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_ROOT = Path(tempfile.mkdtemp(prefix="recon_fuzz_"))


def _rec():
    from recon.scene import Image, Point3D, Reconstruction

    cams = {1: Camera("SIMPLE_RADIAL", 64, 48, [60.0, 31.5, 23.5, 0.01]),
            2: Camera("OPENCV", 64, 48, [60.0, 61.0, 31.5, 23.5, 0.01, -0.02, 0.001, 0.0])}
    images, points = {}, {}
    for i in range(1, 4):
        kp = np.array([[10.0 + i, 12.0], [30.0, 20.0 + i]])
        images[i] = Image(i, f"{i:04d}.png", 1 if i < 3 else 2,
                          Rigid3(np.eye(3), np.array([0.1 * i, 0.0, 2.0])), kp, np.array([1, 2]))
    for j in (1, 2):
        points[j] = Point3D(np.array([0.1 * j, 0.2, 0.3]), np.array([10, 20, 30]), 0.5,
                            np.array([[1, j - 1], [2, j - 1], [3, j - 1]]))
    return Reconstruction(cams, images, points)


@dataclass
class Format:
    name: str
    seed: Path  # a valid file (or folder) written by our writer
    target: str  # the file inside ``seed`` that is mutated ("" when seed is the file)
    read: Callable[[Path], object]
    calib_layer: bool = False  # ValueError naming the file is this layer's error type


def _seeds() -> dict[str, Format]:
    import torch

    from calib.files import read_camera, write_opencv_yaml
    from recon.io.camera_path import CameraPath, PathFrame, load_camera_path, save_camera_path
    from recon.io.colmap import read_colmap, write_colmap
    from recon.io.gaussians import GaussianCloud, read_splat_ply, write_splat_ply
    from recon.io.images import read_image, write_image
    from recon.io.ply import PointCloud, read_ply, write_ply
    from recon.io.transforms_json import read_transforms, write_transforms
    from recon.semantic.backends.masks import read_label_png
    from render.scaffold import read_checkpoint

    rng = np.random.default_rng(0)
    d = _ROOT / "seeds"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    f: dict[str, Format] = {}
    cloud = PointCloud(rng.normal(size=(20, 3)).astype(np.float32), rng.integers(0, 255, (20, 3), dtype=np.uint8))
    write_ply(d / "bin.ply", cloud)
    write_ply(d / "ascii.ply", cloud, binary=False)
    f["ply_binary"] = Format("ply_binary", d / "bin.ply", "", read_ply)
    f["ply_ascii"] = Format("ply_ascii", d / "ascii.ply", "", read_ply)
    g = GaussianCloud(rng.normal(size=(10, 3)), rng.normal(size=(10, 3)) - 3, rng.normal(size=(10, 4)),
                      rng.normal(size=10), rng.normal(size=(10, 3)), rng.normal(size=(10, 3, 3)))
    write_splat_ply(d / "splat.ply", g)
    f["splat_ply"] = Format("splat_ply", d / "splat.ply", "", read_splat_ply)
    rec = _rec()
    for kind, binary in (("bin", True), ("txt", False)):
        m = d / f"colmap_{kind}"
        write_colmap(rec, m, binary=binary)
        for part in ("cameras", "images", "points3D"):
            f[f"colmap_{kind}_{part}"] = Format(f"colmap_{kind}_{part}", m, f"{part}.{kind}", read_colmap)
    t = d / "transforms"
    t.mkdir()
    for im in rec.images.values():
        write_image(t / im.name, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    write_transforms(rec, t / "transforms.json")
    f["transforms"] = Format("transforms", t, "transforms.json",
                             lambda p: read_transforms(p, load_points=False))
    write_opencv_yaml(d / "calib.yaml", rec.cameras[2], rms_px=0.3)
    f["calib_yaml"] = Format("calib_yaml", d / "calib.yaml", "", read_camera, calib_layer=True)
    (d / "cameras.txt").write_text("# camera\n1 OPENCV 64 48 60 61 31.5 23.5 0.01 -0.02 0.001 0\n")
    f["calib_colmap_line"] = Format("calib_colmap_line", d / "cameras.txt", "", read_camera, calib_layer=True)
    ck = {"version": 1, "method": "splat", "step": 3, "seconds": 1.0, "config": {"lr": 0.1},
          "split": {"train": ["a"], "test": []}, "state": {"w": torch.zeros(4)}, "torch_rng": torch.get_rng_state()}
    torch.save(ck, d / "checkpoint.pt")
    f["checkpoint"] = Format("checkpoint", d / "checkpoint.pt", "", read_checkpoint)
    frames = [PathFrame(rec.cameras[1], rec.images[i].cam_from_world, 0.5 * i) for i in (1, 2)]
    save_camera_path(d / "path.json", CameraPath(frames, frames, 2.0))
    f["camera_path"] = Format("camera_path", d / "path.json", "", load_camera_path)
    write_image(d / "mask.png", rng.integers(0, 5, (24, 32), dtype=np.uint8))
    f["mask"] = Format("mask", d / "mask.png", "", read_label_png)
    write_image(d / "photo.jpg", rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    write_image(d / "photo.png", rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    f["jpeg"] = Format("jpeg", d / "photo.jpg", "", read_image)
    f["png"] = Format("png", d / "photo.png", "", read_image)
    return f


_FORMATS: dict[str, Format] | None = None


def formats() -> dict[str, Format]:
    global _FORMATS
    if _FORMATS is None:
        _FORMATS = _seeds()
    return _FORMATS


NAMES = ["ply_binary", "ply_ascii", "splat_ply", "colmap_bin_cameras", "colmap_bin_images",
         "colmap_bin_points3D", "colmap_txt_cameras", "colmap_txt_images", "colmap_txt_points3D",
         "transforms", "calib_yaml", "calib_colmap_line", "checkpoint", "camera_path", "mask", "jpeg", "png"]


def _case(fmt: Format, data: bytes) -> tuple[Path, Path]:
    """A copy of the seed with the target file's bytes replaced; (path to read, file mutated)."""
    case = _ROOT / "case"
    if case.exists():
        shutil.rmtree(case)
    if fmt.seed.is_dir():
        shutil.copytree(fmt.seed, case)
        target = case / fmt.target
    else:
        case.mkdir()
        target = case / fmt.seed.name
    target.write_bytes(data)
    return (case if fmt.seed.is_dir() else target), target


def _seed_bytes(fmt: Format) -> bytes:
    return ((fmt.seed / fmt.target) if fmt.target else fmt.seed).read_bytes()


def check(fmt: Format, data: bytes) -> None:
    """Read mutated ``data``: a value, or the allowed error naming the mutated file."""
    path, target = _case(fmt, data)
    try:
        fmt.read(path)
    except ReconError as e:
        assert target.name in str(e) or str(path) in str(e), f"{fmt.name}: error does not name the file: {e}"
        assert "\n" not in str(e).strip(), f"{fmt.name}: not one line: {e!r}"
    except ValueError as e:
        if not fmt.calib_layer:
            raise AssertionError(f"{fmt.name}: ValueError that is not recon's error type: {e!r}") from e
        assert target.name in str(e), f"{fmt.name}: error does not name the file: {e}"


def test_every_seed_reads():
    for name in NAMES:
        formats()[name].read(_case(formats()[name], _seed_bytes(formats()[name]))[0])


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.data())
def test_truncated(name, data):
    fmt = formats()[name]
    raw = _seed_bytes(fmt)
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    check(fmt, raw[:cut])


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.data())
def test_byte_flips(name, data):
    fmt = formats()[name]
    raw = bytearray(_seed_bytes(fmt))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), min_size=1,
                               max_size=8), label="flips")
    for pos, b in flips:
        raw[pos] = b
    check(fmt, bytes(raw))


# ---- text formats: numbers replaced with NaN / Inf / huge / negative / text ------------------
_TEXT = ["ply_ascii", "colmap_txt_cameras", "colmap_txt_images", "colmap_txt_points3D", "transforms",
         "calib_yaml", "calib_colmap_line", "camera_path"]
_NUM = st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "-1", "0", "4611686018427387904",
                        "-4611686018427387904", "1.5", "abc", "", "null", "[]", "{}", '"x"', "true"])


@pytest.mark.parametrize("name", _TEXT)
@FUZZ
@given(data=st.data())
def test_numbers_replaced(name, data):
    import re

    fmt = formats()[name]
    text = _seed_bytes(fmt).decode()
    spans = [m.span() for m in re.finditer(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text)]
    picks = data.draw(st.lists(st.tuples(st.integers(0, len(spans) - 1), _NUM), min_size=1, max_size=4),
                      label="replacements")
    for k, new in sorted({k: v for k, v in picks}.items(), reverse=True):
        a, b = spans[k]
        text = text[:a] + new + text[b:]
    check(fmt, text.encode())


# ---- JSON formats: values of the wrong type ---------------------------------------------------
_JSON_VALUES = st.sampled_from([None, True, -1, 0, 1e308, "x", [], {}, [1, 2], {"a": 1}, [[1, 2], [3]]])


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


@pytest.mark.parametrize("name", ["transforms", "camera_path"])
@FUZZ
@given(data=st.data())
def test_json_wrong_types(name, data):
    fmt = formats()[name]
    doc = json.loads(_seed_bytes(fmt))
    paths = [p for p in _paths(doc) if p]
    for _ in range(data.draw(st.integers(1, 3), label="n")):
        p = data.draw(st.sampled_from(paths), label="where")
        node = doc
        try:
            for k in p[:-1]:
                node = node[k]
            node[p[-1]] = data.draw(_JSON_VALUES, label="value")
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    check(fmt, json.dumps(doc).encode())


# ---- absurd counts: 2^62 records must be refused, not allocated ---------------------------------
_HUGE = 2 ** 62


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _absurd_cases() -> dict[str, bytes]:
    f = formats()
    out = {}
    for name in ("ply_binary", "ply_ascii", "splat_ply"):
        raw = _seed_bytes(f[name])
        head, sep, body = raw.partition(b"end_header\n")
        lines = [(b"element vertex %d" % _HUGE) if ln.startswith(b"element vertex") else ln
                 for ln in head.split(b"\n")]
        out[name] = b"\n".join(lines) + sep + body
    for part in ("cameras", "images", "points3D"):
        raw = _seed_bytes(f[f"colmap_bin_{part}"])
        out[f"colmap_bin_{part}"] = struct.pack("<Q", _HUGE) + raw[8:]
    # a record inside: images.bin's 2D point count, points3D.bin's track length
    raw = bytearray(_seed_bytes(f["colmap_bin_images"]))
    name_end = raw.index(b"\0", 8 + 4 + 32 + 24 + 4)
    raw[name_end + 1:name_end + 9] = struct.pack("<Q", _HUGE)
    out["colmap_bin_images_points2D"] = bytes(raw)
    raw = bytearray(_seed_bytes(f["colmap_bin_points3D"]))
    raw[8 + 8 + 24 + 3 + 8:8 + 8 + 24 + 3 + 8 + 8] = struct.pack("<Q", _HUGE)
    out["colmap_bin_points3D_track"] = bytes(raw)
    return out


@pytest.mark.parametrize("case", ["ply_binary", "ply_ascii", "splat_ply", "colmap_bin_cameras",
                                  "colmap_bin_images", "colmap_bin_points3D", "colmap_bin_images_points2D",
                                  "colmap_bin_points3D_track"])
def test_absurd_count_is_refused_without_allocating(case):
    fmt = formats()[case.replace("_points2D", "").replace("_track", "")]
    data = _absurd_cases()[case]
    path, target = _case(fmt, data)
    before = _peak_kib()
    with pytest.raises(ReconError, match=target.name):
        fmt.read(path)
    assert _peak_kib() - before < 200_000, "the reader allocated for the declared count"
