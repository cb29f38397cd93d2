"""COLMAP sparse models (``cameras``, ``images``, ``points3D``; ``.bin`` or ``.txt``).

Format reference: COLMAP ``doc/format.rst`` and ``src/colmap/scene/reconstruction_io_binary.cc``
(all binary values little-endian):

- ``cameras.bin``: uint64 count; per camera: uint32 camera_id, int32 model_id, uint64 width,
  uint64 height, float64 params[model's count].
- ``images.bin``: uint64 count; per image: uint32 image_id, float64 qw qx qy qz, float64 tx ty tz
  (``cam_from_world``), uint32 camera_id, name (NUL-terminated bytes), uint64 num_points2D, then
  per point float64 x, float64 y, uint64 point3D_id (2**64 - 1 = none).
- ``points3D.bin``: uint64 count; per point: uint64 point3D_id, float64 x y z, uint8 r g b,
  float64 error, uint64 track_length, then per element uint32 image_id, uint32 point2D_idx.

Conventions converted HERE and nowhere else (docs/conventions.md): COLMAP puts the centre of the
top-left pixel at (0.5, 0.5); we put it at (0, 0). On read the principal point (cx, cy) and every
keypoint are shifted by -0.5, on write by +0.5. COLMAP's qvec is a Hamilton quaternion (w, x, y, z)
of ``cam_from_world``, as is ours.

COLMAP 3.12+ / pycolmap 4 also write ``rigs`` and ``frames`` files. ``images`` still hold each
image's ``cam_from_world``, which is all our data model needs, so those files are ignored on
read. On write we emit trivial ones (one rig per camera, one frame per image with
``rig_from_world = cam_from_world``, exactly what pycolmap writes for single-camera rigs): a stale
``frames`` file left from an earlier model would otherwise make pycolmap take the OLD poses
(it composes image poses from frames). Multi-camera rig structure is therefore not preserved
(the per-image poses are). COLMAP 4 stores only registered images; an image whose
``cam_from_world`` is None cannot be expressed there, so the writer skips it with a warning.

- ``rigs.bin``: uint64 count; per rig: uint32 rig_id, uint32 num_sensors, int32 ref sensor type
  (0 = camera), uint32 ref sensor id (further sensors with their poses: never written by us).
- ``frames.bin``: uint64 count; per frame: uint32 frame_id, uint32 rig_id, float64 qw qx qy qz
  tx ty tz (``rig_from_world``), uint32 num_data_ids, then per data int32 sensor type, uint32
  sensor id, uint64 data id (the image id).

Round trips: file -> ours -> file reproduces every value bit for bit (quaternions read from a file
are remembered for the pose object they built and written back unchanged; ``x - 0.5`` is exact
in float64 for file coordinates x >= 0.25, so ``+ 0.5`` restores x). ours -> file -> ours is exact
except that ``(k + 0.5) - 0.5`` can lose the last bit of a coordinate k whose ``k + 0.5`` crosses a
power of two (k in [0.5, 1), [1.5, 2), [3.5, 4), ...: at most 1 ulp, ~1e-16 px), and a rotation
built from a matrix goes through a quaternion (rounding, ~1e-16).
"""

from __future__ import annotations

import itertools
import math
import struct
import warnings
import weakref
from pathlib import Path

import numpy as np

from calib import MODEL_BY_ID, MODELS, PIXEL_CORNER_OFFSET, Camera, Rigid3, centre_from_corner, corner_from_centre
from calib.transforms import matrix_from_quat, quat_from_matrix
from recon.errors import FormatError
from recon.scene import Image, Point3D, Reconstruction

__all__ = [
    "PIXEL_SHIFT",
    "colmap_model_kind",
    "find_colmap_model",
    "read_cameras",
    "read_colmap",
    "write_colmap",
]

PIXEL_SHIFT = PIXEL_CORNER_OFFSET  # ours = COLMAP - 0.5 (calib.Camera.from_corner_params & co.)
_INVALID_POINT3D = np.uint64(2**64 - 1)
_BIN_FILES = ("cameras.bin", "images.bin", "points3D.bin")
_TXT_FILES = ("cameras.txt", "images.txt", "points3D.txt")

_KEYPOINT_DTYPE = np.dtype([("xy", "<f8", (2,)), ("point3D_id", "<u8")])


# =========================================================================================
# Exact quaternions across a round trip
# =========================================================================================
# Rigid3 stores a rotation matrix; quaternion -> matrix -> quaternion can differ from the file in
# the last bit (and in sign). We remember, per Rigid3 object built by this reader, the quaternion
# it came from (weakly: the entry disappears with the object; Rigid3 is frozen, so the pair
# cannot drift apart), and the writer reuses it when it still produces exactly that matrix.
_QVEC_CACHE: dict[int, tuple[weakref.ref, np.ndarray]] = {}


def _remember_qvec(pose: Rigid3, qvec: np.ndarray) -> None:
    key = id(pose)
    try:
        ref = weakref.ref(pose, lambda _r, k=key: _QVEC_CACHE.pop(k, None))
    except TypeError:  # not weak-referenceable: no exact-quaternion memory, still correct
        return
    _QVEC_CACHE[key] = (ref, qvec.copy())


def _qvec_of(pose: Rigid3) -> np.ndarray:
    entry = _QVEC_CACHE.get(id(pose))
    if entry is not None and entry[0]() is pose:
        q = entry[1]
        if np.array_equal(matrix_from_quat(q), pose.rotation):
            return q
    return quat_from_matrix(pose.rotation)


def _pose_from_file(path: Path, qvec: np.ndarray, tvec: np.ndarray, what: str) -> Rigid3:
    if not (np.all(np.isfinite(qvec)) and np.all(np.isfinite(tvec))):
        raise FormatError(path, f"{what}: pose has NaN/Inf values (qvec {qvec.tolist()}, tvec {tvec.tolist()})")
    n = float(np.linalg.norm(qvec))
    if not abs(n - 1.0) < 1e-3:  # COLMAP writes unit quaternions; a far-off norm means corruption
        raise FormatError(path, f"{what}: quaternion (w, x, y, z) = {qvec.tolist()} has norm {n:.6g}, "
                                "expected a unit quaternion")
    pose = Rigid3(matrix_from_quat(qvec), tvec)
    _remember_qvec(pose, qvec)
    return pose


# =========================================================================================
# Locating models
# =========================================================================================

def colmap_model_kind(folder) -> str | None:
    """'bin' or 'txt' when ``folder`` holds a complete COLMAP model (bin preferred), else None."""
    folder = Path(folder)
    if all((folder / f).is_file() for f in _BIN_FILES):
        return "bin"
    if all((folder / f).is_file() for f in _TXT_FILES):
        return "txt"
    return None


def find_colmap_model(path) -> Path | None:
    """The folder holding a COLMAP model at or under ``path``: ``path`` itself, ``path/sparse/0``,
    ``path/sparse`` or ``path/0``; or the parent when ``path`` is one of the model's files."""
    path = Path(path)
    if path.is_file() and path.name in _BIN_FILES + _TXT_FILES:
        path = path.parent
    for cand in (path, path / "sparse" / "0", path / "sparse", path / "0"):
        if cand.is_dir() and colmap_model_kind(cand):
            return cand
    return None


# =========================================================================================
# Public API
# =========================================================================================

def read_colmap(path) -> Reconstruction:
    """Read a COLMAP sparse model from a folder (binary preferred when both are present).

    Args:
        path: a folder with cameras/images/points3D ``.bin`` or ``.txt`` (or a parent holding
            ``sparse/0``).
    Returns:
        Reconstruction in our conventions (principal points and keypoints shifted by -0.5).
    Raises:
        FileNotFoundError when no model is found; FormatError naming the file and the problem
        (truncated, bad header, unknown camera model, NaN values, dangling references).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    folder = find_colmap_model(path)
    if folder is None:
        base = path if path.is_dir() else path.parent
        for files in (_BIN_FILES, _TXT_FILES):
            present = [f for f in files if (base / f).is_file()]
            if present:
                missing = [f for f in files if f not in present]
                raise FormatError(base, f"incomplete COLMAP model: has {', '.join(present)} but not "
                                        f"{', '.join(missing)}")
        raise FileNotFoundError(f"{path}: no COLMAP model here (expected {', '.join(_BIN_FILES)} "
                                f"or {', '.join(_TXT_FILES)}, or a sparse/0 sub-folder)")
    if colmap_model_kind(folder) == "bin":
        cameras = _read_cameras_bin(folder / "cameras.bin")
        images = _read_images_bin(folder / "images.bin")
        points = _read_points3D_bin(folder / "points3D.bin")
    else:
        cameras = _read_cameras_txt(folder / "cameras.txt")
        images = _read_images_txt(folder / "images.txt")
        points = _read_points3D_txt(folder / "points3D.txt")
    rec = Reconstruction(cameras, images, points)
    _check_references(folder, rec)
    return rec


def read_cameras(path) -> dict[int, Camera]:
    """Only the cameras of a model folder (fast for ``recon info`` on huge models)."""
    folder = find_colmap_model(path)
    if folder is None:
        raise FileNotFoundError(f"{path}: no COLMAP model here")
    if colmap_model_kind(folder) == "bin":
        return _read_cameras_bin(folder / "cameras.bin")
    return _read_cameras_txt(folder / "cameras.txt")


def write_colmap(rec: Reconstruction, path, *, binary: bool = True) -> Path:
    """Write ``rec`` as a COLMAP model into folder ``path`` (created if needed).

    Args:
        rec: the reconstruction (our conventions).
        path: output folder; existing cameras/images/points3D files of the chosen kind are
            replaced.
        binary: ``.bin`` files (default) or ``.txt``.
    Returns:
        The folder written. Unregistered images are skipped (COLMAP 4 stores registered images
        only) with a warning; their observations must not be referenced by points.
    """
    if not isinstance(rec, Reconstruction):
        raise TypeError(f"rec: expected recon.Reconstruction, got {type(rec).__name__}")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"path: {folder} exists and is not a folder")
    def _bad(msg):
        raise ValueError(f"rec: {msg}")

    _check_references(folder, rec, error=_bad)
    unregistered = [im.image_id for im in rec.images.values() if not im.registered]
    if unregistered:
        warnings.warn(f"write_colmap: skipping {len(unregistered)} unregistered image(s) "
                      f"(ids {unregistered[:10]}{'...' if len(unregistered) > 10 else ''}): COLMAP "
                      "models store registered images only", stacklevel=2)
        skipped = np.array(unregistered, dtype=np.int64)
        for pid, p in rec.points3D.items():
            if np.isin(p.track[:, 0], skipped).any():
                raise ValueError(f"rec: point3D {pid} is observed in an unregistered image")
    for cid in rec.cameras:
        _check_id(cid, "camera_id", 2**32 - 1)
    for iid in rec.images:
        _check_id(iid, "image_id", 2**32 - 1)
    for pid in rec.points3D:
        _check_id(pid, "point3D_id", 2**64 - 2)
    images = [im for im in rec.images.values() if im.registered]
    for im in images:
        if "\x00" in im.name or (not binary and any(c.isspace() for c in im.name)):
            raise ValueError(f"rec: image {im.image_id} name {im.name!r} contains "
                             f"{'a NUL byte' if chr(0) in im.name else 'white space'}, which COLMAP "
                             f"{'files' if chr(0) in im.name else 'text files'} cannot hold"
                             f"{'' if chr(0) in im.name else ' (write binary=True)'}")
    folder.mkdir(parents=True, exist_ok=True)
    other = "txt" if binary else "bin"
    stale = [n for n in ("cameras", "images", "points3D") if (folder / f"{n}.{other}").exists()]
    if not binary and stale:
        warnings.warn(f"write_colmap: {folder} also holds {', '.join(f'{n}.bin' for n in stale)}; COLMAP, "
                      "pycolmap and recon read the binary files when both exist", stacklevel=2)
    if binary:
        _write_cameras_bin(folder / "cameras.bin", rec.cameras)
        _write_images_bin(folder / "images.bin", images)
        _write_points3D_bin(folder / "points3D.bin", rec.points3D)
        _write_rigs_bin(folder / "rigs.bin", rec.cameras)
        _write_frames_bin(folder / "frames.bin", images)
    else:
        _write_cameras_txt(folder / "cameras.txt", rec.cameras)
        _write_images_txt(folder / "images.txt", images)
        _write_points3D_txt(folder / "points3D.txt", rec.points3D)
        _write_rigs_txt(folder / "rigs.txt", rec.cameras)
        _write_frames_txt(folder / "frames.txt", images)
    return folder


def _check_id(value, name: str, max_value: int) -> None:
    if not 0 <= int(value) <= max_value:
        raise ValueError(f"rec: {name} {value} does not fit COLMAP's range [0, {max_value}]")


def _check_references(folder, rec: Reconstruction, *, error=None) -> None:
    """Referential integrity, vectorised (tracks of 1e6 observations take milliseconds).
    Raises ``error(message)``: FormatError naming ``folder`` by default."""
    if error is None:
        def error(msg):
            raise FormatError(folder, msg)
    for iid, im in rec.images.items():
        if im.camera_id not in rec.cameras:
            error(f"image {iid} ({im.name!r}) refers to camera {im.camera_id}, which is not in the "
                  "cameras")
    if not rec.points3D:
        return
    image_ids = np.array(sorted(rec.images), dtype=np.int64)
    n_kp = np.array([rec.images[i].keypoints.shape[0] for i in image_ids], dtype=np.int64)
    lengths = np.array([p.track.shape[0] for p in rec.points3D.values()], dtype=np.int64)
    if lengths.sum() == 0:
        return
    tracks = np.concatenate([p.track for p in rec.points3D.values()], axis=0)
    owner = np.repeat(np.array(list(rec.points3D), dtype=np.int64), lengths)
    tid = tracks[:, 0]
    if len(image_ids) and 0 <= image_ids[0] and image_ids[-1] <= 4 * len(image_ids) + 1_000_000:
        # dense lookup table: O(1) per observation (ids are small in practice)
        lut = np.full(int(image_ids[-1]) + 1, -1, dtype=np.int64)
        lut[image_ids] = n_kp
        n_kp_obs = np.where((tid >= 0) & (tid < lut.size), lut[np.clip(tid, 0, lut.size - 1)], -1)
    else:
        slot = np.minimum(np.searchsorted(image_ids, tid), max(len(image_ids) - 1, 0))
        hit = (image_ids[slot] == tid) if len(image_ids) else np.zeros(len(tid), dtype=bool)
        n_kp_obs = np.where(hit, n_kp[slot] if len(image_ids) else 0, -1)
    known = n_kp_obs >= 0
    if not known.all():
        k = int(np.argmin(known))
        error(f"point3D {owner[k]}: track refers to image {tracks[k, 0]}, which is not in the images")
    in_range = (tracks[:, 1] >= 0) & (tracks[:, 1] < n_kp_obs)
    if not in_range.all():
        k = int(np.argmin(in_range))
        error(f"point3D {owner[k]}: track refers to keypoint {tracks[k, 1]} of image {tracks[k, 0]}, "
              f"which has {n_kp_obs[k]}")


# =========================================================================================
# Cameras
# =========================================================================================

def _make_camera(path: Path, camera_id: int, model: str, width: int, height: int,
                 params: np.ndarray) -> Camera:
    if not np.all(np.isfinite(params)):
        raise FormatError(path, f"camera {camera_id}: params contain NaN/Inf: {params.tolist()}")
    try:
        return Camera.from_corner_params(model, width, height, params)
    except ValueError as e:
        raise FormatError(path, f"camera {camera_id}: {e}") from None


def _colmap_params(cam: Camera) -> np.ndarray:
    return cam.corner_params()


class _Reader:
    """Sequential little-endian reader over a whole file's bytes with truncation checks."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.buf = path.read_bytes()
        except OSError as e:
            raise FormatError(path, f"cannot read: {e}") from None
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.buf):
            raise FormatError(self.path, f"truncated: needs {n} more byte(s) for {what} at offset "
                                         f"{self.pos}, file has {len(self.buf)} bytes")

    def unpack(self, fmt: str, what: str):
        s = struct.Struct("<" + fmt)
        self.need(s.size, what)
        out = s.unpack_from(self.buf, self.pos)
        self.pos += s.size
        return out

    def array(self, dtype: np.dtype, count: int, what: str) -> np.ndarray:
        n = dtype.itemsize * count
        self.need(n, what)
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += n
        return out

    def cstring(self, what: str) -> str:
        end = self.buf.find(b"\x00", self.pos)
        if end < 0:
            raise FormatError(self.path, f"truncated: {what} has no terminating NUL byte")
        raw = self.buf[self.pos:end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(self.path, f"{what} is not valid UTF-8: {raw[:60]!r}") from None

    def count(self, what: str, min_record: int) -> int:
        (n,) = self.unpack("Q", f"the number of {what}")
        if n * min_record > len(self.buf) - self.pos:
            raise FormatError(self.path, f"header says {n} {what}, but only {len(self.buf) - self.pos} "
                                         f"bytes follow (at least {min_record} per record): truncated "
                                         "or not a COLMAP file")
        return n

    def finish(self) -> None:
        if self.pos != len(self.buf):
            raise FormatError(self.path, f"{len(self.buf) - self.pos} unexpected trailing byte(s) after "
                                         "the last record (wrong file kind or corrupted count)")


def _read_cameras_bin(path: Path) -> dict[int, Camera]:
    r = _Reader(path)
    cameras: dict[int, Camera] = {}
    for _ in range(r.count("cameras", 24)):
        camera_id, model_id, width, height = r.unpack("IiQQ", "a camera header")
        spec = MODEL_BY_ID.get(model_id)
        if spec is None:
            raise FormatError(path, f"camera {camera_id}: unknown camera model id {model_id} (known: "
                                    f"{', '.join(f'{k}={v.name}' for k, v in sorted(MODEL_BY_ID.items()))})")
        if not (0 < width < 2**31 and 0 < height < 2**31):
            raise FormatError(path, f"camera {camera_id}: implausible size {width}x{height}")
        params = np.array(r.array(np.dtype("<f8"), spec.num_params, f"camera {camera_id} params"),
                          dtype=np.float64)
        if camera_id in cameras:
            raise FormatError(path, f"camera id {camera_id} appears twice")
        cameras[camera_id] = _make_camera(path, camera_id, spec.name, width, height, params)
    r.finish()
    return cameras


def _write_cameras_bin(path: Path, cameras: dict[int, Camera]) -> None:
    parts = [struct.pack("<Q", len(cameras))]
    for cid, cam in cameras.items():
        parts.append(struct.pack("<IiQQ", int(cid), cam.spec.model_id, cam.width, cam.height))
        parts.append(_colmap_params(cam).astype("<f8").tobytes())
    path.write_bytes(b"".join(parts))


def _read_cameras_txt(path: Path) -> dict[int, Camera]:
    cameras: dict[int, Camera] = {}
    for lineno, line in _data_lines(path):
        tok = line.split()
        where = f"line {lineno}"
        if len(tok) < 4:
            raise FormatError(path, f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[], got "
                                    f"{len(tok)} field(s)")
        camera_id = _parse_int(path, where, "CAMERA_ID", tok[0])
        model = tok[1]
        spec = MODELS.get(model)
        if spec is None:
            if model.lstrip("-").isdigit() and int(model) in MODEL_BY_ID:
                spec = MODEL_BY_ID[int(model)]
            else:
                raise FormatError(path, f"{where}: unknown camera model {model!r} (known: "
                                        f"{', '.join(MODELS)})")
        width = _parse_int(path, where, "WIDTH", tok[2])
        height = _parse_int(path, where, "HEIGHT", tok[3])
        if width <= 0 or height <= 0:
            raise FormatError(path, f"{where}: camera {camera_id} has size {width}x{height}")
        if len(tok) - 4 != spec.num_params:
            raise FormatError(path, f"{where}: {spec.name} takes {spec.num_params} params "
                                    f"({' '.join(spec.param_names)}), found {len(tok) - 4}")
        params = np.array([_parse_float(path, where, "PARAMS", t) for t in tok[4:]])
        if camera_id in cameras:
            raise FormatError(path, f"{where}: camera id {camera_id} appears twice")
        cameras[camera_id] = _make_camera(path, camera_id, spec.name, width, height, params)
    return cameras


def _write_cameras_txt(path: Path, cameras: dict[int, Camera]) -> None:
    lines = ["# Camera list with one line of data per camera:",
             "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
             f"# Number of cameras: {len(cameras)}"]
    for cid, cam in cameras.items():
        lines.append(" ".join([str(int(cid)), cam.model, str(cam.width), str(cam.height),
                               *(_fmt(v) for v in _colmap_params(cam))]))
    _write_text(path, lines)


# =========================================================================================
# Images
# =========================================================================================

def _make_image(path: Path, image_id: int, name: str, camera_id: int, qvec, tvec,
                xy: np.ndarray, ids: np.ndarray) -> Image:
    pose = _pose_from_file(path, np.asarray(qvec, dtype=np.float64), np.asarray(tvec, dtype=np.float64),
                           f"image {image_id} ({name!r})")
    if xy.size and not np.all(np.isfinite(xy)):
        bad = int(np.count_nonzero(~np.isfinite(xy).all(axis=1)))
        raise FormatError(path, f"image {image_id} ({name!r}): {bad} keypoint(s) with NaN/Inf coordinates")
    return Image(image_id, name, camera_id, pose, centre_from_corner(xy), ids)


def _read_images_bin(path: Path) -> dict[int, Image]:
    r = _Reader(path)
    images: dict[int, Image] = {}
    for _ in range(r.count("images", 73)):
        (image_id,) = r.unpack("I", "an image id")
        vals = r.unpack("7d", f"image {image_id} pose")
        (camera_id,) = r.unpack("I", f"image {image_id} camera id")
        name = r.cstring(f"image {image_id} name")
        (n2d,) = r.unpack("Q", f"image {image_id} number of points2D")
        if n2d * _KEYPOINT_DTYPE.itemsize > len(r.buf) - r.pos:
            raise FormatError(path, f"truncated: image {image_id} ({name!r}) declares {n2d} points2D, "
                                    f"but only {len(r.buf) - r.pos} bytes remain")
        kp = r.array(_KEYPOINT_DTYPE, n2d, f"image {image_id} points2D")
        xy = np.array(kp["xy"], dtype=np.float64).reshape(-1, 2)
        ids = kp["point3D_id"].astype(np.int64)  # 2**64 - 1 wraps to -1 = "no point"
        if image_id in images:
            raise FormatError(path, f"image id {image_id} appears twice")
        images[image_id] = _make_image(path, image_id, name, camera_id, vals[:4], vals[4:], xy, ids)
    r.finish()
    return images


def _write_images_bin(path: Path, images: list[Image]) -> None:
    parts = [struct.pack("<Q", len(images))]
    for im in images:
        pose = im.cam_from_world
        parts.append(struct.pack("<I", int(im.image_id)))
        parts.append(np.asarray(_qvec_of(pose), dtype="<f8").tobytes())
        parts.append(np.asarray(pose.translation, dtype="<f8").tobytes())
        parts.append(struct.pack("<I", int(im.camera_id)))
        parts.append(im.name.encode("utf-8") + b"\x00")
        kp = np.empty(im.keypoints.shape[0], dtype=_KEYPOINT_DTYPE)
        kp["xy"] = corner_from_centre(im.keypoints)
        kp["point3D_id"] = im.point3D_ids.astype(np.int64).view(np.uint64)
        parts.append(struct.pack("<Q", kp.shape[0]))
        parts.append(kp.tobytes())
    path.write_bytes(b"".join(parts))


def _read_images_txt(path: Path) -> dict[int, Image]:
    images: dict[int, Image] = {}
    lines = list(_data_lines(path, keep_empty=True))
    # Two lines per image; the POINTS2D line may be empty.
    i = 0
    while i < len(lines):
        lineno, line = lines[i]
        if not line:  # a stray blank line between records
            i += 1
            continue
        tok = line.split()
        where = f"line {lineno}"
        if len(tok) < 10:
            raise FormatError(path, f"{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got "
                                    f"{len(tok)} field(s)")
        image_id = _parse_int(path, where, "IMAGE_ID", tok[0])
        vals = [_parse_float(path, where, "pose", t) for t in tok[1:8]]
        camera_id = _parse_int(path, where, "CAMERA_ID", tok[8])
        name = " ".join(tok[9:])  # COLMAP itself splits names at spaces; be lenient on read
        if i + 1 >= len(lines):
            raise FormatError(path, f"{where}: image {image_id} has no POINTS2D line (truncated file)")
        lineno2, line2 = lines[i + 1]
        xy, ids = _parse_points2D(path, lineno2, line2)
        if image_id in images:
            raise FormatError(path, f"{where}: image id {image_id} appears twice")
        images[image_id] = _make_image(path, image_id, name, camera_id, vals[:4], vals[4:], xy, ids)
        i += 2
    return images


def _parse_points2D(path: Path, lineno: int, line: str) -> tuple[np.ndarray, np.ndarray]:
    a = _fast_numbers(line, np.float64)
    if a is not None and a.size % 3 == 0:
        a = a.reshape(-1, 3)
        idf = a[:, 2]
        if np.all((idf == np.round(idf)) & (np.abs(idf) < 2.0**53)):
            return np.ascontiguousarray(a[:, :2]), idf.astype(np.int64)
    tok = line.split()  # slow path: find what is wrong
    if len(tok) % 3:
        raise FormatError(path, f"line {lineno}: POINTS2D must be triples (X Y POINT3D_ID), got "
                                f"{len(tok)} value(s)")
    xy = np.array([_parse_float(path, f"line {lineno}", "POINTS2D X Y", t)
                   for k, t in enumerate(tok) if k % 3 != 2]).reshape(-1, 2)
    ids = np.array([_parse_int(path, f"line {lineno}", "POINT3D_ID", t) for t in tok[2::3]], dtype=np.int64)
    return xy, ids


def _write_images_txt(path: Path, images: list[Image]) -> None:
    n_obs = sum(int(np.count_nonzero(im.point3D_ids >= 0)) for im in images)
    mean_obs = n_obs / len(images) if images else 0.0
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
             "#   POINTS2D[] as (X, Y, POINT3D_ID)",
             f"# Number of images: {len(images)}, mean observations per image: {mean_obs:g}"]
    for im in images:
        pose = im.cam_from_world
        vals = list(_qvec_of(pose)) + list(pose.translation)
        lines.append(" ".join([str(int(im.image_id)), *(_fmt(v) for v in vals), str(int(im.camera_id)),
                               im.name]))
        xy = corner_from_centre(im.keypoints)
        # COLMAP ends every triple with a space (also the last): keep that so files match.
        # One %-format over the whole line runs the number formatting in C.
        flat = itertools.chain.from_iterable(zip(xy[:, 0].tolist(), xy[:, 1].tolist(), im.point3D_ids.tolist()))
        lines.append(("%.17g %.17g %d " * xy.shape[0]) % tuple(flat))
    _write_text(path, lines)


# =========================================================================================
# Rigs and frames (trivial: one camera per rig, one image per frame)
# =========================================================================================
_SENSOR_CAMERA = 0


def _write_rigs_bin(path: Path, cameras: dict[int, Camera]) -> None:
    parts = [struct.pack("<Q", len(cameras))]
    for cid in cameras:
        parts.append(struct.pack("<IIiI", int(cid), 1, _SENSOR_CAMERA, int(cid)))
    path.write_bytes(b"".join(parts))


def _write_frames_bin(path: Path, images: list[Image]) -> None:
    parts = [struct.pack("<Q", len(images))]
    for im in images:
        pose = im.cam_from_world
        parts.append(struct.pack("<II", int(im.image_id), int(im.camera_id)))
        parts.append(np.asarray(_qvec_of(pose), dtype="<f8").tobytes())
        parts.append(np.asarray(pose.translation, dtype="<f8").tobytes())
        parts.append(struct.pack("<IiIQ", 1, _SENSOR_CAMERA, int(im.camera_id), int(im.image_id)))
    path.write_bytes(b"".join(parts))


def _write_rigs_txt(path: Path, cameras: dict[int, Camera]) -> None:
    lines = ["# Rig calib list with one line of data per calib:",
             "#   RIG_ID, NUM_SENSORS, REF_SENSOR_TYPE, REF_SENSOR_ID, SENSORS[] as (SENSOR_TYPE, SENSOR_ID, "
             "HAS_POSE, [QW, QX, QY, QZ, TX, TY, TZ])",
             f"# Number of rigs: {len(cameras)}"]
    lines += [f"{int(cid)} 1 CAMERA {int(cid)}" for cid in cameras]
    _write_text(path, lines)


def _write_frames_txt(path: Path, images: list[Image]) -> None:
    lines = ["# Frame list with one line of data per frame:",
             "#   FRAME_ID, RIG_ID, RIG_FROM_WORLD[QW, QX, QY, QZ, TX, TY, TZ], NUM_DATA_IDS, DATA_IDS[] as "
             "(SENSOR_TYPE, SENSOR_ID, DATA_ID)",
             f"# Number of frames: {len(images)}"]
    for im in images:
        pose = im.cam_from_world
        vals = " ".join(_fmt(v) for v in (*_qvec_of(pose), *pose.translation))
        lines.append(f"{int(im.image_id)} {int(im.camera_id)} {vals} 1 CAMERA {int(im.camera_id)} {int(im.image_id)}")
    _write_text(path, lines)


# =========================================================================================
# Points
# =========================================================================================

def _make_point(path: Path, pid: int, xyz, rgb, error: float, track: np.ndarray) -> Point3D:
    if not (math.isfinite(xyz[0]) and math.isfinite(xyz[1]) and math.isfinite(xyz[2]) and math.isfinite(error)):
        raise FormatError(path, f"point3D {pid}: NaN/Inf in xyz {list(xyz)} or error {error}")
    return Point3D(np.array(xyz, dtype=np.float64), np.array(rgb, dtype=np.uint8), float(error), track)


def _read_points3D_bin(path: Path) -> dict[int, Point3D]:
    r = _Reader(path)
    points: dict[int, Point3D] = {}
    head = struct.Struct("<Q3d3BdQ")
    buf = r.buf
    n = r.count("points3D", head.size)
    pos = r.pos
    size = len(buf)
    for _ in range(n):
        if pos + head.size > size:
            r.pos = pos
            r.need(head.size, "a point3D record")
        pid, x, y, z, cr, cg, cb, err, tlen = head.unpack_from(buf, pos)
        pos += head.size
        if pos + 8 * tlen > size:
            raise FormatError(path, f"truncated: point3D {pid} declares a track of {tlen} elements, but "
                                    f"only {size - pos} bytes remain")
        track = np.frombuffer(buf, dtype="<u4", count=2 * tlen, offset=pos).reshape(-1, 2).astype(np.int64)
        pos += 8 * tlen
        if pid in points:
            raise FormatError(path, f"point3D id {pid} appears twice")
        points[pid] = _make_point(path, pid, (x, y, z), (cr, cg, cb), err, track)
    r.pos = pos
    r.finish()
    return points


def _write_points3D_bin(path: Path, points: dict[int, Point3D]) -> None:
    head = struct.Struct("<Q3d3BdQ")
    parts = [struct.pack("<Q", len(points))]
    for pid, p in points.items():
        x, y, z = (float(v) for v in p.xyz)
        r, g, b = (int(v) for v in p.rgb)
        parts.append(head.pack(int(pid), x, y, z, r, g, b, float(p.error), p.track.shape[0]))
        parts.append(np.ascontiguousarray(p.track, dtype="<u4").tobytes())
    path.write_bytes(b"".join(parts))


def _read_points3D_txt(path: Path) -> dict[int, Point3D]:
    points: dict[int, Point3D] = {}
    for lineno, line in _data_lines(path):
        where = f"line {lineno}"
        tok = line.split(maxsplit=8)
        if len(tok) < 8:
            raise FormatError(path, f"{where}: expected POINT3D_ID X Y Z R G B ERROR TRACK[], got "
                                    f"{len(tok)} field(s)")
        pid = _parse_int(path, where, "POINT3D_ID", tok[0])
        xyz = [_parse_float(path, where, "X Y Z", t) for t in tok[1:4]]
        rgb = [_parse_int(path, where, "R G B", t) for t in tok[4:7]]
        if not all(0 <= c <= 255 for c in rgb):
            raise FormatError(path, f"{where}: colour {rgb} outside 0..255")
        err = _parse_float(path, where, "ERROR", tok[7])
        rest = tok[8] if len(tok) > 8 else ""
        track = _fast_numbers(rest, np.int64)
        if track is None:
            track = np.array([_parse_int(path, where, "TRACK", t) for t in rest.split()], dtype=np.int64)
        if track.size % 2:
            raise FormatError(path, f"{where}: TRACK must be (IMAGE_ID, POINT2D_IDX) pairs, got "
                                    f"{track.size} value(s)")
        if pid in points:
            raise FormatError(path, f"{where}: point3D id {pid} appears twice")
        points[pid] = _make_point(path, pid, xyz, rgb, err, track.reshape(-1, 2))
    return points


def _write_points3D_txt(path: Path, points: dict[int, Point3D]) -> None:
    tl = [p.track.shape[0] for p in points.values()]
    mean_tl = sum(tl) / len(tl) if tl else 0.0
    lines = ["# 3D point list with one line of data per point:",
             "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
             f"# Number of points: {len(points)}, mean track length: {mean_tl:g}"]
    head = "%d %.17g %.17g %.17g %d %d %d %.17g"
    for pid, p in points.items():
        vals = (int(pid), *p.xyz.tolist(), *p.rgb.tolist(), float(p.error), *p.track.ravel().tolist())
        lines.append((head + " %d" * p.track.size) % vals)
    _write_text(path, lines)


# =========================================================================================
# Text helpers
# =========================================================================================

def _fmt(v) -> str:
    """17 significant digits, as COLMAP writes (``std::setprecision(17)``): parses back to the
    same float64, and our text files match COLMAP's byte for byte."""
    return "%.17g" % float(v)


def _write_text(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _data_lines(path: Path, *, keep_empty: bool = False):
    """(line number, stripped line) for the non-comment lines of a COLMAP text file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FormatError(path, f"cannot read: {e}") from None
    if b"\x00" in raw[:4096]:
        raise FormatError(path, "binary data in a COLMAP text file (is it a .bin file renamed?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(path, f"not UTF-8 text ({e})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines, start=1):
        s = line.strip()
        if s.startswith("#"):
            continue
        if not s and not keep_empty:
            continue
        yield i, s


def _fast_numbers(text: str, dtype) -> np.ndarray | None:
    """Whitespace-separated numbers parsed in C; None when anything is off (the caller then
    parses token by token to produce a precise error message)."""
    try:
        a = np.fromstring(text, dtype=dtype, sep=" ")
    except ValueError:
        return None
    if dtype == np.int64 and a.size and (a.max() == np.iinfo(np.int64).max or a.min() == np.iinfo(np.int64).min):
        return None  # saturated: out of range
    return a


def _parse_int(path: Path, where: str, what: str, tok: str) -> int:
    try:
        v = int(tok)
    except ValueError:
        raise FormatError(path, f"{where}: {what} must be an integer, got {tok!r}") from None
    if not -(2**63) <= v < 2**63:
        raise FormatError(path, f"{where}: {what} must be an integer in the 64-bit range, got {tok}")
    return v


def _parse_float(path: Path, where: str, what: str, tok: str) -> float:
    try:
        v = float(tok)
    except ValueError:
        raise FormatError(path, f"{where}: {what} must be a number, got {tok!r}") from None
    if not math.isfinite(v):
        raise FormatError(path, f"{where}: {what} is {tok} (NaN/Inf not allowed)")
    return v
