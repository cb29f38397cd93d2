"""nerfstudio / Instant-NGP ``transforms.json`` <-> :class:`recon.Reconstruction`.

Conventions converted HERE (docs/conventions.md):

- ``transform_matrix`` is a 4x4 camera-to-world matrix with OpenGL camera axes (x right, y up,
  z backward). Ours is ``cam_from_world`` with OpenCV axes (x right, y down, z forward):
  ``world_from_cam_cv = transform_matrix @ diag(1, -1, -1, 1)``, ``cam_from_world`` its inverse.
  :func:`cam_from_world_from_transform_matrix` / :func:`transform_matrix_from_cam_from_world`
  are the paired converters (round-trip tested).
- ``cx``, ``cy`` are in the corner convention (centre of the top-left pixel at (0.5, 0.5)), like
  COLMAP: nerfstudio's ``colmap_utils.parse_colmap_camera_params`` copies COLMAP's ``cx, cy``
  unchanged into transforms.json, and its ray generator ``Cameras.get_image_coords`` (nerfstudio
  ``cameras/cameras.py``) samples pixel ``i`` at ``i + pixel_offset`` with ``pixel_offset=0.5``;
  Instant-NGP's ``scripts/colmap2nerf.py`` also copies COLMAP's ``cx, cy`` unchanged (and defaults
  them to ``w / 2, h / 2``, the image centre in the corner convention). So ``cx_ours = cx - 0.5`` on
  read, ``+ 0.5`` on write.
- Intrinsics: ``fl_x fl_y cx cy w h`` (or Instant-NGP/Blender ``camera_angle_x``/``_y``), and
  distortion ``k1 k2 k3 k4 p1 p2`` with ``camera_model``. For perspective cameras nerfstudio's
  radial polynomial is ``1 + k1 r^2 + k2 r^4 + k3 r^6 + k4 r^8``: k1 k2 p1 p2 -> OPENCV, a
  non-zero k3 -> FULL_OPENCV (same k3), a non-zero k4 (r^8) has no COLMAP model: FormatError.
  ``OPENCV_FISHEYE`` k1..k4 (or Instant-NGP's ``is_fisheye: true``) -> OPENCV_FISHEYE. The ``camera_model`` names nerfstudio knows
  (SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, OPENCV_FISHEYE) are written as our
  model name, so those round-trip exactly. Intrinsics may be top-level (shared) or per frame
  (per-frame keys override the top-level ones, as in nerfstudio).
- nerfstudio's ``ns-process-data`` also rotates the WORLD (``applied_transform``, 3x4) so z is
  up; ``read_transforms(..., undo_applied_transform=True)`` maps poses and points back to the
  original (COLMAP) world.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calib import PIXEL_CORNER_OFFSET, Camera, Rigid3, centre_from_corner, corner_from_centre
from recon.errors import FormatError
from recon.scene import Image, Point3D, Reconstruction

__all__ = [
    "TransformsMeta",
    "cam_from_world_from_transform_matrix",
    "find_transforms",
    "read_transforms",
    "transform_matrix_from_cam_from_world",
    "write_transforms",
]

PIXEL_SHIFT = PIXEL_CORNER_OFFSET  # calib's one pixel-centre conversion
_GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # flips y and z of the camera frame (self-inverse)
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2",
                   "camera_model", "camera_angle_x", "camera_angle_y", "is_fisheye")
_FRAME_KEYS = _INTRINSIC_KEYS + ("file_path", "transform_matrix", "mask_path", "depth_file_path",
                                 "colmap_im_id")
_TOP_KEYS = _INTRINSIC_KEYS + ("frames", "aabb_scale", "applied_transform", "ply_file_path")
_NS_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE")


@dataclass
class TransformsMeta:
    """What a transforms.json holds besides cameras and poses.

    Fields:
        aabb_scale: Instant-NGP scene bound scale (power of two), or None.
        applied_transform: [4, 4] world transform nerfstudio applied to COLMAP's world
            (``world_ns = applied_transform @ world_colmap``), or None.
        undone: True when ``read_transforms`` undid ``applied_transform`` (poses and points are
            in the original world).
        mask_paths / depth_paths: image_id -> path as written in the file (relative to the
            file's folder).
        image_paths: image_id -> ``file_path`` as written (``Image.name`` holds the same).
        ply_file_path: the initial point cloud's path as written, or None.
        extra: top-level keys we do not interpret, kept so a rewrite preserves them.
        frame_extra: image_id -> per-frame keys we do not interpret.
    """

    aabb_scale: float | None = None
    applied_transform: np.ndarray | None = None
    undone: bool = False
    mask_paths: dict[int, str] = field(default_factory=dict)
    depth_paths: dict[int, str] = field(default_factory=dict)
    image_paths: dict[int, str] = field(default_factory=dict)
    ply_file_path: str | None = None
    extra: dict = field(default_factory=dict)
    frame_extra: dict[int, dict] = field(default_factory=dict)


# =========================================================================================
# Paired pose converters
# =========================================================================================

def cam_from_world_from_transform_matrix(transform_matrix) -> Rigid3:
    """OpenGL camera-to-world [4, 4] (or [3, 4]) -> OpenCV ``cam_from_world``."""
    T = np.asarray(transform_matrix, dtype=np.float64)
    if T.shape == (3, 4):
        T = np.vstack([T, [0.0, 0.0, 0.0, 1.0]])
    if T.shape != (4, 4):
        raise ValueError(f"transform_matrix: expected [4, 4] or [3, 4], got {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError("transform_matrix: contains NaN/Inf")
    world_from_cam_cv = T @ _GL_FROM_CV
    R = world_from_cam_cv[:3, :3]
    t = world_from_cam_cv[:3, 3]
    return Rigid3(R.T, -R.T @ t)


def transform_matrix_from_cam_from_world(cam_from_world: Rigid3) -> np.ndarray:
    """OpenCV ``cam_from_world`` -> OpenGL camera-to-world [4, 4] (nerfstudio ``transform_matrix``)."""
    if not isinstance(cam_from_world, Rigid3):
        raise TypeError(f"cam_from_world: expected calib.Rigid3, got {type(cam_from_world).__name__}")
    R, t = cam_from_world.rotation, cam_from_world.translation
    T = np.eye(4)
    T[:3, :3] = R.T
    T[:3, 3] = -R.T @ t
    return T @ _GL_FROM_CV


# =========================================================================================
# Reading
# =========================================================================================

def find_transforms(path) -> Path | None:
    """``path`` if it is a .json file, else ``path/transforms.json`` when present."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return path
    if path.is_dir() and (path / "transforms.json").is_file():
        return path / "transforms.json"
    return None


def read_transforms(path, *, undo_applied_transform: bool = False,
                    load_points: bool = True) -> tuple[Reconstruction, TransformsMeta]:
    """Read a nerfstudio / Instant-NGP transforms.json (a file, or a folder holding one).

    Args:
        path: the .json file or its folder.
        undo_applied_transform: map poses and points back through ``applied_transform`` to the
            world they were in before nerfstudio rotated it (e.g. COLMAP's).
        load_points: read ``ply_file_path`` (when present) into ``points3D`` (no tracks).
    Returns:
        (Reconstruction, TransformsMeta). Image ids are ``colmap_im_id`` when every frame has
        one, else 1..N in file order; ``Image.name`` is the frame's ``file_path``. Cameras with
        identical intrinsics share one camera id. Image sizes come from ``w``/``h``, or from
        the image file when the JSON omits them (Blender synthetic scenes).
    Raises:
        FileNotFoundError; FormatError naming the file for malformed JSON, missing or
        non-finite fields, or distortion no COLMAP model can express.
    """
    p = Path(path)
    file = find_transforms(p)
    if file is None:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
        raise FileNotFoundError(f"{p}: no transforms.json here")
    data = _load_json(file)
    if not isinstance(data, dict):
        raise FormatError(file, f"top level must be a JSON object, got {type(data).__name__}")
    frames = data.get("frames")
    if not isinstance(frames, list):
        raise FormatError(file, "missing 'frames' list (not a transforms.json?)")
    meta = TransformsMeta()
    meta.extra = {k: v for k, v in data.items() if k not in _TOP_KEYS}
    if "aabb_scale" in data:
        meta.aabb_scale = _number(file, "aabb_scale", data["aabb_scale"])
    world_fix = None
    if data.get("applied_transform") is not None:
        A = _matrix(file, "applied_transform", data["applied_transform"])
        meta.applied_transform = A
        if undo_applied_transform:
            world_fix = np.linalg.inv(A)  # world_orig_from_world_ns
            meta.undone = True

    use_colmap_ids = bool(frames) and all(isinstance(f, dict) and isinstance(f.get("colmap_im_id"), int)
                                          for f in frames)
    if use_colmap_ids and len({f["colmap_im_id"] for f in frames}) != len(frames):
        use_colmap_ids = False
    cameras: dict[int, Camera] = {}
    cam_ids: dict[tuple, int] = {}
    images: dict[int, Image] = {}
    for k, frame in enumerate(frames):
        where = f"frames[{k}]"
        if not isinstance(frame, dict):
            raise FormatError(file, f"{where} must be an object, got {type(frame).__name__}")
        if "file_path" not in frame or not isinstance(frame["file_path"], str):
            raise FormatError(file, f"{where} has no 'file_path' string")
        if "transform_matrix" not in frame:
            raise FormatError(file, f"{where} ({frame['file_path']!r}) has no 'transform_matrix'")
        T = _matrix(file, f"{where}.transform_matrix", frame["transform_matrix"])
        if world_fix is not None:
            T = world_fix @ T
        try:
            cam_from_world = cam_from_world_from_transform_matrix(T)
        except ValueError as e:
            raise FormatError(file, f"{where}.transform_matrix: {e} (the rotation part must be a "
                                    "rotation; scaled matrices are not supported)") from None
        merged = {key: data[key] for key in _INTRINSIC_KEYS if key in data}
        merged.update({key: frame[key] for key in _INTRINSIC_KEYS if key in frame})
        camera = _camera_from_fields(file, where, merged, file.parent / frame["file_path"])
        key = (camera.model, camera.width, camera.height, camera.params.tobytes())
        if key not in cam_ids:
            cam_ids[key] = len(cam_ids) + 1
            cameras[cam_ids[key]] = camera
        image_id = frame["colmap_im_id"] if use_colmap_ids else k + 1
        images[image_id] = Image(image_id, frame["file_path"], cam_ids[key], cam_from_world)
        meta.image_paths[image_id] = frame["file_path"]
        if isinstance(frame.get("mask_path"), str):
            meta.mask_paths[image_id] = frame["mask_path"]
        if isinstance(frame.get("depth_file_path"), str):
            meta.depth_paths[image_id] = frame["depth_file_path"]
        extra = {kk: v for kk, v in frame.items() if kk not in _FRAME_KEYS}
        if extra:
            meta.frame_extra[image_id] = extra
    rec = Reconstruction(cameras, images, {})
    ply = data.get("ply_file_path")
    if isinstance(ply, str):
        meta.ply_file_path = ply
        if load_points:
            ply_path = file.parent / ply
            if not ply_path.is_file():
                raise FormatError(file, f"ply_file_path {ply!r} does not exist ({ply_path})")
            from recon.io.ply import read_ply

            cloud = read_ply(ply_path)
            xyz = cloud.xyz.astype(np.float64)
            if world_fix is not None:
                xyz = xyz @ world_fix[:3, :3].T + world_fix[:3, 3]
            rgb = cloud.rgb if cloud.rgb is not None else np.zeros((len(cloud), 3), dtype=np.uint8)
            rec.points3D = {i + 1: Point3D(xyz[i], rgb[i]) for i in range(len(cloud))}
    return rec, meta


def _load_json(file: Path):
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(file, f"not UTF-8 text ({e})") from None
    if not text.strip():
        raise FormatError(file, "empty file")

    def _reject_constant(name):  # json accepts NaN/Infinity by default; transforms.json must not
        raise FormatError(file, f"non-finite number {name} in JSON")

    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise FormatError(file, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg} "
                                "(truncated or not JSON?)") from None


def _number(file: Path, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(file, f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise FormatError(file, f"{name} is {value} (NaN/Inf not allowed)")
    return float(value)


def _matrix(file: Path, name: str, value) -> np.ndarray:
    try:
        M = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(file, f"{name} must be a 4x4 (or 3x4) array of numbers") from None
    if M.shape == (3, 4):
        M = np.vstack([M, [0.0, 0.0, 0.0, 1.0]])
    if M.shape != (4, 4):
        raise FormatError(file, f"{name} has shape {M.shape}, expected 4x4 (or 3x4)")
    if not np.all(np.isfinite(M)):
        raise FormatError(file, f"{name} contains NaN/Inf")
    return M


def _camera_from_fields(file: Path, where: str, f: dict, image_path: Path) -> Camera:
    for key, value in f.items():
        if key not in ("camera_model", "is_fisheye"):
            _number(file, f"{where}.{key}", value)
    w, h = f.get("w"), f.get("h")
    if w is None or h is None:
        try:
            from recon.io.images import image_size

            w, h = image_size(image_path)
        except (OSError, ValueError) as e:
            raise FormatError(file, f"{where}: no 'w'/'h' and the image size cannot be read from "
                                    f"{image_path} ({e})") from None
    if int(w) != w or int(h) != h or w <= 0 or h <= 0:
        raise FormatError(file, f"{where}: image size w={w}, h={h} must be positive integers")
    w, h = int(w), int(h)
    fx, fy = f.get("fl_x"), f.get("fl_y")
    if fx is None and "camera_angle_x" in f:
        fx = 0.5 * w / math.tan(0.5 * f["camera_angle_x"])
    if fy is None and "camera_angle_y" in f:
        fy = 0.5 * h / math.tan(0.5 * f["camera_angle_y"])
    if fx is None and fy is None:
        raise FormatError(file, f"{where}: no focal length (fl_x / fl_y / camera_angle_x)")
    fx = fy if fx is None else fx
    fy = fx if fy is None else fy
    cx, cy = centre_from_corner([f.get("cx", w / 2.0), f.get("cy", h / 2.0)])
    d = {k: float(f.get(k, 0.0)) for k in ("k1", "k2", "k3", "k4", "p1", "p2")}
    # Instant-NGP's colmap2nerf.py marks fisheye cameras with "is_fisheye" instead of a model name
    model = f.get("camera_model", "OPENCV_FISHEYE" if f.get("is_fisheye") is True else "OPENCV")
    if model not in _NS_MODELS:
        raise FormatError(file, f"{where}: camera_model {model!r} is not supported (expected one of "
                                f"{', '.join(_NS_MODELS)})")
    try:
        if model == "OPENCV_FISHEYE":
            if d["p1"] or d["p2"]:
                raise FormatError(file, f"{where}: OPENCV_FISHEYE has no tangential terms, found p1={d['p1']}, "
                                        f"p2={d['p2']}")
            return Camera("OPENCV_FISHEYE", w, h, [fx, fy, cx, cy, d["k1"], d["k2"], d["k3"], d["k4"]])
        if d["k4"]:
            raise FormatError(file, f"{where}: k4={d['k4']} (nerfstudio's r^8 radial term) has no COLMAP "
                                    "camera model equivalent")
        single = fx == fy
        if model == "SIMPLE_PINHOLE" and single and not any(d.values()):
            return Camera("SIMPLE_PINHOLE", w, h, [fx, cx, cy])
        if model == "SIMPLE_RADIAL" and single and not (d["k2"] or d["k3"] or d["p1"] or d["p2"]):
            return Camera("SIMPLE_RADIAL", w, h, [fx, cx, cy, d["k1"]])
        if model == "RADIAL" and single and not (d["k3"] or d["p1"] or d["p2"]):
            return Camera("RADIAL", w, h, [fx, cx, cy, d["k1"], d["k2"]])
        if model in ("PINHOLE", "SIMPLE_PINHOLE") and not any(d.values()):
            return Camera("PINHOLE", w, h, [fx, fy, cx, cy])
        if d["k3"]:
            return Camera("FULL_OPENCV", w, h, [fx, fy, cx, cy, d["k1"], d["k2"], d["p1"], d["p2"],
                                                d["k3"], 0.0, 0.0, 0.0])
        return Camera("OPENCV", w, h, [fx, fy, cx, cy, d["k1"], d["k2"], d["p1"], d["p2"]])
    except ValueError as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(file, f"{where}: {e}") from None


# =========================================================================================
# Writing
# =========================================================================================

def _fields_from_camera(cam: Camera) -> dict:
    (fx, fy), (cx, cy) = cam.focal, corner_from_centre(cam.principal_point)
    out = {"camera_model": cam.model if cam.model in _NS_MODELS else None,
           "fl_x": float(fx), "fl_y": float(fy), "cx": float(cx), "cy": float(cy),
           "w": cam.width, "h": cam.height}
    e = cam.extra
    m = cam.model
    if m in ("SIMPLE_PINHOLE", "PINHOLE"):
        pass
    elif m == "SIMPLE_RADIAL":
        out.update(k1=float(e[0]))
    elif m == "RADIAL":
        out.update(k1=float(e[0]), k2=float(e[1]))
    elif m == "OPENCV":
        out.update(k1=float(e[0]), k2=float(e[1]), p1=float(e[2]), p2=float(e[3]))
    elif m == "FULL_OPENCV":
        if np.any(e[5:]):
            raise ValueError(f"camera {cam}: FULL_OPENCV k4..k6 (rational terms) cannot be written to "
                             "transforms.json (nerfstudio has no rational model)")
        out.update(camera_model="OPENCV", k1=float(e[0]), k2=float(e[1]), p1=float(e[2]), p2=float(e[3]),
                   k3=float(e[4]))
    elif m == "OPENCV_FISHEYE":
        out.update(k1=float(e[0]), k2=float(e[1]), k3=float(e[2]), k4=float(e[3]), is_fisheye=True)
    elif m == "SIMPLE_RADIAL_FISHEYE":
        out.update(camera_model="OPENCV_FISHEYE", k1=float(e[0]), k2=0.0, k3=0.0, k4=0.0, is_fisheye=True)
    elif m == "RADIAL_FISHEYE":
        out.update(camera_model="OPENCV_FISHEYE", k1=float(e[0]), k2=float(e[1]), k3=0.0, k4=0.0,
                   is_fisheye=True)
    else:
        raise ValueError(f"camera model {m} cannot be written to transforms.json")
    return out


def write_transforms(rec: Reconstruction, path, *, image_dir: str | None = None,
                     meta: TransformsMeta | None = None, aabb_scale: float | None = None,
                     mask_dir: str | None = None, points_ply: str | None = None,
                     shared_intrinsics: bool | None = None) -> Path:
    """Write ``rec`` as a nerfstudio / Instant-NGP transforms.json.

    Args:
        rec: registered images are written (unregistered ones are skipped).
        path: output .json file, or a folder (``transforms.json`` is written inside).
        image_dir: prefix for ``file_path`` (relative to the JSON's folder), e.g. "images";
            ``file_path = image_dir/Image.name``. None: ``Image.name`` as is.
        meta: extras to write back (aabb_scale, masks, depth paths, applied_transform, unknown
            keys), e.g. from :func:`read_transforms`.
        aabb_scale: Instant-NGP scene bound (overrides ``meta.aabb_scale``).
        mask_dir: when given, every frame gets ``mask_path = mask_dir/<stem>.png``.
        points_ply: write ``rec.points3D`` to this PLY (relative to the JSON's folder) and
            reference it as ``ply_file_path``.
        shared_intrinsics: top-level intrinsics (True), per frame (False), or automatically
            (None: shared when all written images use one camera).
    Returns:
        The .json path written.
    """
    if not isinstance(rec, Reconstruction):
        raise TypeError(f"rec: expected recon.Reconstruction, got {type(rec).__name__}")
    path = Path(path)
    file = path / "transforms.json" if path.is_dir() or path.suffix.lower() != ".json" else path
    file.parent.mkdir(parents=True, exist_ok=True)
    meta = meta or TransformsMeta()
    images = [im for im in rec.images.values() if im.registered]
    used = sorted({im.camera_id for im in images})
    for cid in used:
        if cid not in rec.cameras:
            raise ValueError(f"rec: an image refers to missing camera {cid}")
    if shared_intrinsics is None:
        shared_intrinsics = len(used) <= 1
    elif shared_intrinsics and len(used) > 1:
        raise ValueError(f"shared_intrinsics: True but images use {len(used)} cameras ({used})")
    out: dict = {}
    if shared_intrinsics and used:
        out.update(_clean(_fields_from_camera(rec.cameras[used[0]])))
    ab = aabb_scale if aabb_scale is not None else meta.aabb_scale
    if ab is not None:
        out["aabb_scale"] = int(ab) if float(ab).is_integer() else float(ab)
    world_fix = None
    if meta.applied_transform is not None:
        A = np.asarray(meta.applied_transform, dtype=np.float64)
        out["applied_transform"] = A[:3].tolist()
        if meta.undone:  # poses are in the original world: re-apply the transform on the way out
            world_fix = A
    frames = []
    for im in images:
        T = transform_matrix_from_cam_from_world(im.cam_from_world)
        if world_fix is not None:
            T = world_fix @ T
        name = im.name if image_dir is None else f"{image_dir.rstrip('/')}/{im.name}"
        frame = {"file_path": name, "transform_matrix": T.tolist(), "colmap_im_id": int(im.image_id)}
        if not shared_intrinsics:
            frame.update(_clean(_fields_from_camera(rec.cameras[im.camera_id])))
        if mask_dir is not None:
            frame["mask_path"] = f"{mask_dir.rstrip('/')}/{Path(im.name).with_suffix('.png').as_posix()}"
        elif im.image_id in meta.mask_paths:
            frame["mask_path"] = meta.mask_paths[im.image_id]
        if im.image_id in meta.depth_paths:
            frame["depth_file_path"] = meta.depth_paths[im.image_id]
        frame.update(meta.frame_extra.get(im.image_id, {}))
        frames.append(frame)
    out["frames"] = frames
    if points_ply is not None:
        from recon.io.ply import PointCloud, write_ply

        xyz = rec.points_xyz()
        if world_fix is not None:
            xyz = xyz @ world_fix[:3, :3].T + world_fix[:3, 3]
        write_ply(file.parent / points_ply, PointCloud(xyz, rec.points_rgb()))
        out["ply_file_path"] = points_ply
    elif meta.ply_file_path is not None:
        out["ply_file_path"] = meta.ply_file_path
    for k, v in meta.extra.items():
        out.setdefault(k, v)
    file.write_text(json.dumps(out, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return file


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}
