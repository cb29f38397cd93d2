"""Dataset folders of rendered views with complete ground truth, and their loader.

Layout written by :func:`write_dataset` (documented in docs/synth.md)::

    OUT/
      images/NAME.png              RGB, 8 bit
      depth/STEM.npy               float32 [H, W], z in the camera frame, metres, 0 = no surface
      normals/STEM.png             16-bit RGB, camera-frame unit normal n = v / 65535 * 2 - 1
                                   (0, 0, 0) = no surface
      labels/class/STEM.png        uint8 class id (gt.json "class_names"; 0 = void)
      labels/instance/STEM.png     uint16 instance id (gt.json "instances"; 0 = none)
      sparse/0/                    ground-truth COLMAP model (recon.io.write_colmap)
      transforms.json              nerfstudio / Instant-NGP poses (recon.io.write_transforms)
      gt_points.npz                ground-truth 3D points (xyz, rgb, normals, class_id,
                                   instance_id) and their exact observations (obs_view,
                                   obs_point, obs_uv)
      gt_points.ply                the same points as a labelled PLY (class_id, instance_id)
      gt.json                      everything else (cameras, poses, classes, seed, options)

``NAME`` is the image name (e.g. ``0007.png`` or ``left/0007.png``) and ``STEM`` the name
without its extension. gt.json stores intrinsics in recon's convention (pixel (0, 0) is the
centre of the top-left pixel); the COLMAP files get COLMAP's +0.5 shift from recon.io.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from calib import Camera, Rigid3
from recon.errors import FormatError
from recon.scene import Image, Point3D, Reconstruction
from recon.synth.render import (
    RenderedView,
    RenderOptions,
    camera_rays,
    cast_rays,
    pixel_angles,
    render_view,
)
from recon.synth.scene import Instance, Scene

__all__ = [
    "GT_FORMAT",
    "GT_VERSION",
    "DatasetOptions",
    "GroundTruthPoints",
    "SynthDataset",
    "SynthView",
    "ground_truth_points",
    "load_dataset",
    "write_dataset",
]

GT_FORMAT = "recon-synth"
GT_VERSION = 1


@dataclass
class DatasetOptions:
    """Options of :func:`write_dataset`.

    render: per-view rendering options. num_points: ground-truth 3D points sampled on visible
    surfaces for sparse/0 (spread evenly over the views). min_track_length: points seen in
    fewer views are dropped. write_normals / write_labels: optional outputs.
    progress: tqdm progress bar on stderr. write_sparse / write_transforms: the COLMAP model
    and transforms.json (need recon.io). workers: processes rendering views in parallel (fork,
    Linux / macOS; 1 = in this process); the output is identical for any number of workers.
    """

    render: RenderOptions = field(default_factory=RenderOptions)
    num_points: int = 4000
    min_track_length: int = 2
    write_normals: bool = True
    write_labels: bool = True
    write_sparse: bool = True
    write_transforms: bool = True
    progress: bool = True
    workers: int = 1

    def validate(self) -> None:
        self.render.validate()
        if isinstance(self.num_points, bool) or not isinstance(self.num_points, (int, np.integer)) \
                or self.num_points < 0:
            raise ValueError(f"num_points: expected a non-negative integer, got {self.num_points!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, (int, np.integer)) or self.workers < 1:
            raise ValueError(f"workers: expected a positive integer, got {self.workers!r}")
        if not isinstance(self.min_track_length, (int, np.integer)) or self.min_track_length < 1:
            raise ValueError(f"min_track_length: expected an integer >= 1, got {self.min_track_length!r}")


@dataclass(frozen=True)
class SynthView:
    """One view of a dataset: its image name, camera id and pose (and where its files are)."""

    name: str
    camera_id: int
    cam_from_world: Rigid3

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]


@dataclass
class SynthDataset:
    """A dataset folder written by :func:`write_dataset` (read back by :func:`load_dataset`).

    cameras: camera_id -> Camera (recon pixel convention). views: in file order.
    class_names: class id -> name. instances: instance table. gt: the raw gt.json dict (for
    kind-specific sections such as "stereo" or "board").
    """

    root: Path
    kind: str
    cameras: dict[int, Camera]
    views: list[SynthView]
    class_names: dict[int, str]
    instances: list[Instance]
    seed: int | None
    gt: dict

    def __len__(self) -> int:
        return len(self.views)

    @property
    def cam_from_world(self) -> list[Rigid3]:
        return [v.cam_from_world for v in self.views]

    @property
    def image_paths(self) -> list[Path]:
        return [self.root / "images" / v.name for v in self.views]

    def camera(self, i: int) -> Camera:
        return self.cameras[self.views[i].camera_id]

    def _path(self, section: str, i: int, ext: str) -> Path:
        return self.root / section / (self.views[i].stem + ext)

    def depth_path(self, i: int) -> Path:
        return self._path(self.gt.get("depth", {}).get("dir", "depth"), i, ".npy")

    def load_image(self, i: int) -> np.ndarray:
        """RGB uint8 [H, W, 3]."""
        return _read_png(self.image_paths[i], color=True)

    def load_depth(self, i: int) -> np.ndarray:
        """float32 [H, W]: z in the camera frame (metres), 0 where no surface was hit."""
        p = self.depth_path(i)
        try:
            d = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FormatError(p, f"cannot read depth: {e}") from None
        cam = self.camera(i)
        if d.shape != (cam.height, cam.width):
            raise FormatError(p, f"depth has shape {d.shape}, expected {(cam.height, cam.width)}")
        return d

    def load_normals(self, i: int) -> np.ndarray:
        """float32 [H, W, 3] camera-frame unit normals (0 where no surface)."""
        v = _read_png(self._path("normals", i, ".png"), color=True, depth16=True).astype(np.float32)
        n = v / 65535.0 * 2.0 - 1.0
        return np.where(np.any(v > 0, axis=-1, keepdims=True), n, 0.0).astype(np.float32)

    def load_class_ids(self, i: int) -> np.ndarray:
        """uint8 [H, W] class ids (see ``class_names``)."""
        return _read_png(self._path("labels/class", i, ".png"), color=False)

    def load_instance_ids(self, i: int) -> np.ndarray:
        """uint16 [H, W] instance ids (see ``instances``)."""
        return _read_png(self._path("labels/instance", i, ".png"), color=False, depth16=True)

    def points(self) -> GroundTruthPoints:
        """The ground-truth 3D points and their exact observations (gt_points.npz)."""
        p = self.root / (self.gt.get("points") or {}).get("file", "gt_points.npz")
        try:
            z = np.load(p, allow_pickle=False)
            view, point, uv = z["obs_view"], z["obs_point"], z["obs_uv"]
            obs = [(point[view == k], uv[view == k]) for k in range(len(self.views))]
            return GroundTruthPoints(z["xyz"], z["rgb"], z["instance_id"], obs, z["class_id"], z["normals"])
        except (OSError, KeyError, ValueError) as e:
            raise FormatError(p, f"cannot read ground-truth points: {e}") from None

    def reconstruction(self) -> Reconstruction:
        """The ground-truth sparse model (sparse/0) via ``recon.io.read_colmap``."""
        from recon.io import read_colmap

        return read_colmap(self.root / "sparse" / "0")


# =========================================================================================
# PNG helpers (cv2 at the edge: BGR <-> RGB converted here)
# =========================================================================================

def _write_png(path: Path, arr: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    a = arr[..., ::-1] if arr.ndim == 3 else arr
    if not cv2.imwrite(str(path), np.ascontiguousarray(a)):
        raise OSError(f"{path}: cannot write image")


def _read_png(path: Path, *, color: bool, depth16: bool = False) -> np.ndarray:
    import cv2

    flags = cv2.IMREAD_UNCHANGED if depth16 or not color else cv2.IMREAD_COLOR
    img = cv2.imread(str(path), flags)
    if img is None:
        raise FormatError(path, "missing or not a readable image")
    if img.ndim == 3:
        img = img[..., ::-1].copy()
    return img


def _pose_json(T: Rigid3) -> dict:
    return {"quat_wxyz": T.quat_wxyz.tolist(), "translation": T.translation.tolist(),
            "matrix": T.matrix().tolist(), "center": T.dst_origin_in_src().tolist()}


def _camera_json(cam: Camera) -> dict:
    return {"model": cam.model, "width": cam.width, "height": cam.height, "params": cam.params.tolist(),
            "param_names": list(cam.spec.param_names)}


# =========================================================================================
# Ground-truth points
# =========================================================================================

@dataclass
class GroundTruthPoints:
    """xyz [N, 3] world; rgb [N, 3] uint8; instance_id, class_id [N]; normals [N, 3] world
    unit surface normals (facing the camera that sampled the point); observations per view:
    list of (point indices [M], uv [M, 2]) with uv in recon's pixel convention."""

    xyz: np.ndarray
    rgb: np.ndarray
    instance_id: np.ndarray
    observations: list[tuple[np.ndarray, np.ndarray]]
    class_id: np.ndarray | None = None
    normals: np.ndarray | None = None


def _visible(scene: Scene, camera: Camera, cam_from_world: Rigid3, xyz: np.ndarray):
    """(mask [N], uv [N, 2]): points inside the image, inside the model's valid region and not
    occluded (a ray cast from the camera centre reaches them)."""
    uv, ok = camera.project(cam_from_world.apply(xyz))
    W, H = camera.width, camera.height
    ok &= (uv[:, 0] >= -0.5) & (uv[:, 0] < W - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < H - 0.5)
    idx = np.flatnonzero(ok)
    if idx.size:
        c = cam_from_world.dst_origin_in_src()
        vec = xyz[idx] - c
        dist = np.linalg.norm(vec, axis=1)
        hits = cast_rays(scene, np.broadcast_to(c, vec.shape), vec)
        seen = hits.t >= dist - np.maximum(1e-6, 1e-7 * dist)
        ok[idx[~seen]] = False
    return ok, uv


def ground_truth_points(scene: Scene, cameras: list[Camera], cams_from_world: list[Rigid3],
                        renders: list[dict], *, min_track_length: int = 2) -> GroundTruthPoints:
    """Points sampled at pixel centres of each view (``renders[i]``: {"pix": [K] flat pixel
    indices, "rgb": [K, 3]}) made exact by a float64 ray cast, then observed in every view where
    they are visible (exact projection, occlusion by ray casting)."""
    xyz, rgb, inst, cls, nrm = [], [], [], [], []
    for cam, T, r in zip(cameras, cams_from_world, renders):
        if r["pix"].size == 0:
            continue
        dirs, _ = camera_rays(cam, 1)
        d_world = dirs[r["pix"]] @ T.rotation  # R^T d, row form
        c = T.dst_origin_in_src()
        h = cast_rays(scene, np.broadcast_to(c, d_world.shape), d_world)
        ok = h.hit
        xyz.append(c + h.t[ok, None] * d_world[ok])
        rgb.append(r["rgb"][ok])
        inst.append(np.array([scene.primitives[k].instance_id for k in h.prim[ok]], np.int64))
        cls.append(np.array([scene.primitives[k].class_id for k in h.prim[ok]], np.int64))
        nrm.append(h.normal[ok])
    xyz = np.concatenate(xyz) if xyz else np.zeros((0, 3))
    rgb = np.concatenate(rgb) if rgb else np.zeros((0, 3), np.uint8)
    inst = np.concatenate(inst) if inst else np.zeros(0, np.int64)
    cls = np.concatenate(cls) if cls else np.zeros(0, np.int64)
    nrm = np.concatenate(nrm) if nrm else np.zeros((0, 3))
    seen = [_visible(scene, cam, T, xyz) if len(xyz) else (np.zeros(0, bool), np.zeros((0, 2)))
            for cam, T in zip(cameras, cams_from_world)]
    count = np.sum([m for m, _ in seen], axis=0) if len(xyz) else np.zeros(0, int)
    keep = np.flatnonzero(count >= min_track_length)
    remap = np.full(len(xyz), -1, np.int64)
    remap[keep] = np.arange(keep.size)
    obs = []
    for m, uv in seen:
        idx = np.flatnonzero(m[keep]) if keep.size else np.zeros(0, np.int64)
        obs.append((idx, uv[keep[idx]] if idx.size else np.zeros((0, 2))))
    return GroundTruthPoints(xyz[keep], rgb[keep], inst[keep], obs, cls[keep], nrm[keep])


def ground_truth_reconstruction(cameras: dict[int, Camera], views: list[SynthView],
                                pts: GroundTruthPoints) -> Reconstruction:
    """A COLMAP-style model: cameras, posed images with the true 2D observations as keypoints,
    points with their tracks (reprojection error 0)."""
    images = {}
    tracks: list[list[tuple[int, int]]] = [[] for _ in range(len(pts.xyz))]
    for i, (view, (idx, uv)) in enumerate(zip(views, pts.observations)):
        image_id = i + 1
        images[image_id] = Image(image_id, view.name, view.camera_id, view.cam_from_world,
                                 keypoints=uv.reshape(-1, 2), point3D_ids=idx + 1)
        for k, p in enumerate(idx):
            tracks[p].append((image_id, k))
    points = {j + 1: Point3D(pts.xyz[j], pts.rgb[j], 0.0, np.array(tracks[j], np.int64).reshape(-1, 2))
              for j in range(len(pts.xyz))}
    return Reconstruction(dict(cameras), images, points)


# =========================================================================================
# Writer
# =========================================================================================

def _unique_cameras(cameras: list[Camera]) -> tuple[dict[int, Camera], list[int]]:
    table: dict[int, Camera] = {}
    ids = []
    for cam in cameras:
        for cid, c in table.items():
            if c is cam or c.allclose(cam, rtol=0, atol=0):
                ids.append(cid)
                break
        else:
            cid = len(table) + 1
            table[cid] = cam
            ids.append(cid)
    return table, ids


def _encode_normals(n: np.ndarray, valid: np.ndarray) -> np.ndarray:
    v = np.round((np.clip(n, -1, 1) + 1.0) * 0.5 * 65535).astype(np.uint16)
    v[~valid] = 0
    return v


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/") \
            or "\\" in name or not name.lower().endswith(".png"):
        raise ValueError(f"names: expected relative '/'-separated .png names, got {name!r}")
    return name


def write_dataset(out, scene: Scene, cameras, cam_from_world: list[Rigid3], *, names: list[str] | None = None,
                  options: DatasetOptions | None = None, kind: str = "scene", extra_gt: dict | None = None,
                  seed: int | None = None) -> SynthDataset:
    """Render every view and write a complete dataset folder (layout in the module docstring).

    out: folder (created; existing files of the same names are overwritten).
    cameras: one ``calib.Camera`` for all views or a list, one per view.
    cam_from_world: list of ``calib.Rigid3``, one per view. names: image names (default
    ``0000.png``...). extra_gt: merged into gt.json (e.g. trajectory, stereo sections).
    seed: recorded in gt.json and used for the point sampling (default ``scene.seed``).
    Returns the dataset as :func:`load_dataset` reads it.
    """
    options = DatasetOptions() if options is None else options
    options.validate()
    if not isinstance(scene, Scene):
        raise TypeError(f"scene: expected recon.synth.Scene, got {type(scene).__name__}")
    poses = list(cam_from_world)
    if len(poses) == 0:
        raise ValueError("cam_from_world: expected at least one view, got 0")
    for i, T in enumerate(poses):
        if not isinstance(T, Rigid3):
            raise TypeError(f"cam_from_world[{i}]: expected calib.Rigid3, got {type(T).__name__}")
    cams = [cameras] * len(poses) if isinstance(cameras, Camera) else list(cameras)
    if len(cams) != len(poses):
        raise ValueError(f"cameras: expected one camera or {len(poses)} (one per view), got {len(cams)}")
    for i, c in enumerate(cams):
        if not isinstance(c, Camera):
            raise TypeError(f"cameras[{i}]: expected calib.Camera, got {type(c).__name__}")
    names = [f"{i:04d}.png" for i in range(len(poses))] if names is None else [_check_name(n) for n in names]
    if len(names) != len(poses) or len(set(names)) != len(names):
        raise ValueError(f"names: expected {len(poses)} unique names, got {len(names)} ({len(set(names))} unique)")
    seed = scene.seed if seed is None else int(seed)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cam_table, cam_ids = _unique_cameras(cams)
    views = [SynthView(n, cid, T) for n, cid, T in zip(names, cam_ids, poses)]
    gt = _gt_header(scene, cam_table, views, options, kind, seed)
    if extra_gt:
        gt.update(extra_gt)
    _write_json(out / "gt.json", gt)  # complete = False until the end: partial results are described

    rng = np.random.default_rng([seed, 7])
    per_view = int(np.ceil(options.num_points / len(poses))) if options.num_points else 0
    samples = []
    bar = _progress(len(poses), "render", options.progress)
    renders = _render_all(scene, cams, [v.cam_from_world for v in views], options)
    for view, rv in zip(views, renders):
        _write_view(out, view, rv, options)
        pix = np.flatnonzero(rv.valid.ravel())
        if per_view and pix.size:
            pix = np.sort(rng.choice(pix, size=min(per_view, pix.size), replace=False))
        else:
            pix = pix[:0]
        samples.append({"pix": pix, "rgb": rv.rgb.reshape(-1, 3)[pix]})
        bar.update(1)
    bar.close()

    rec = None
    if options.num_points:
        pts = ground_truth_points(scene, cams, poses, samples, min_track_length=options.min_track_length)
        rec = ground_truth_reconstruction(cam_table, views, pts)
        gt["points"] = {"count": len(pts.xyz), "observations": int(sum(len(o[0]) for o in pts.observations))}
        _write_points_npz(out / "gt_points.npz", pts)
        gt["points"]["file"] = "gt_points.npz"
        gt["points"]["ply"] = _write_points_ply(out / "gt_points.ply", pts)
    else:
        rec = Reconstruction(dict(cam_table), {i + 1: Image(i + 1, v.name, v.camera_id, v.cam_from_world)
                                               for i, v in enumerate(views)}, {})
    gt["summary"] = _summary(gt, cam_table)
    gt["sparse"] = _write_sparse(out, rec) if options.write_sparse else None
    gt["transforms"] = _write_transforms_json(out, rec) if options.write_transforms else None
    gt["complete"] = True
    _write_json(out / "gt.json", gt)
    return load_dataset(out)


def _summary(gt: dict, cameras: dict[int, Camera]) -> str:
    cams = ", ".join(f"{c.model} {c.width}x{c.height}" for c in cameras.values())
    traj = (gt.get("trajectory") or {}).get("kind")
    pts = (gt.get("points") or {}).get("count", 0)
    return (f"{gt['kind']}: {len(gt['views'])} views ({cams}){', ' + traj if traj else ''}, seed {gt['seed']}, "
            f"{len(gt['instances'])} instances, {pts} ground-truth points")


_WORKER_STATE: tuple | None = None


def _render_task(args):
    scene, render_options = _WORKER_STATE
    cam, pose = args
    return render_view(scene, cam, pose, render_options)


def _render_all(scene: Scene, cams: list[Camera], poses: list[Rigid3], options: DatasetOptions):
    """Yield RenderedViews in order; ``options.workers`` > 1 renders in forked processes (the
    scene, its baked textures and the ray caches are inherited, not pickled)."""
    workers = min(int(options.workers), len(poses))
    if workers <= 1:
        for cam, pose in zip(cams, poses):
            yield render_view(scene, cam, pose, options.render)
        return
    import multiprocessing as mp

    global _WORKER_STATE
    _ = scene.atlas  # bake once, before forking
    for cam in {id(c): c for c in cams}.values():  # unproject once per camera, before forking
        camera_rays(cam, 1)
        pixel_angles(cam)
        if options.render.supersample > 1:
            camera_rays(cam, options.render.supersample)
    _WORKER_STATE = (scene, options.render)
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_render_task, list(zip(cams, poses)))
    finally:
        _WORKER_STATE = None


def _progress(total: int, desc: str, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        enabled = False
    if not enabled:
        class _Null:
            def update(self, _n=1):
                pass

            def close(self):
                pass
        return _Null()
    return tqdm(total=total, desc=desc, unit="view", file=sys.stderr, leave=False)


def _write_view(out: Path, view: SynthView, rv: RenderedView, options: DatasetOptions) -> None:
    _write_png(out / "images" / view.name, rv.rgb)
    p = out / "depth" / (view.stem + ".npy")
    p.parent.mkdir(parents=True, exist_ok=True)
    np.save(p, rv.depth.astype(np.float32), allow_pickle=False)
    if options.write_normals:
        _write_png(out / "normals" / (view.stem + ".png"), _encode_normals(rv.normals, rv.valid))
    if options.write_labels:
        _write_png(out / "labels" / "class" / (view.stem + ".png"), rv.class_id.astype(np.uint8))
        _write_png(out / "labels" / "instance" / (view.stem + ".png"), rv.instance_id.astype(np.uint16))


def _write_points_npz(path: Path, pts: GroundTruthPoints) -> None:
    view = np.concatenate([np.full(len(i), k, np.int64) for k, (i, _) in enumerate(pts.observations)])
    point = np.concatenate([i for i, _ in pts.observations]).astype(np.int64)
    uv = np.concatenate([uv.reshape(-1, 2) for _, uv in pts.observations])
    np.savez_compressed(path, xyz=pts.xyz, rgb=pts.rgb, instance_id=pts.instance_id, class_id=pts.class_id,
                        normals=pts.normals, obs_view=view, obs_point=point, obs_uv=uv)


def _write_points_ply(path: Path, pts: GroundTruthPoints) -> str | None:
    try:
        from recon.io import PointCloud, write_ply
    except ImportError:
        return None
    cloud = PointCloud(pts.xyz.astype(np.float32), pts.rgb.astype(np.uint8), pts.normals.astype(np.float32),
                       {"class_id": pts.class_id.astype(np.int32), "instance_id": pts.instance_id.astype(np.int32)})
    write_ply(path, cloud, comments=("recon synth ground-truth points: class_id / instance_id per vertex",))
    return path.name


def _write_sparse(out: Path, rec: Reconstruction) -> dict | None:
    try:
        from recon.io import write_colmap
    except ImportError:
        print("recon synth: recon.io.write_colmap is not available; sparse/0 not written", file=sys.stderr)
        return None
    d = out / "sparse" / "0"
    d.mkdir(parents=True, exist_ok=True)
    write_colmap(rec, d)
    return {"dir": "sparse/0", "points": len(rec.points3D), "images": len(rec.images)}


def _write_transforms_json(out: Path, rec: Reconstruction) -> str | None:
    try:
        from recon.io import write_transforms
    except ImportError:
        print("recon synth: recon.io.write_transforms is not available; transforms.json not written",
              file=sys.stderr)
        return None
    write_transforms(rec, out / "transforms.json", image_dir="images")
    return "transforms.json"


def _gt_header(scene: Scene, cameras: dict[int, Camera], views: list[SynthView], options: DatasetOptions,
               kind: str, seed: int) -> dict:
    from recon import __version__

    lo, hi = scene.bounds()
    return {
        "format": GT_FORMAT,
        "version": GT_VERSION,
        "kind": kind,
        "summary": "incomplete (rendering)",
        "complete": False,
        "generator": f"recon {__version__}",
        "seed": seed,
        "conventions": {
            "world": "right-handed, metres, z up, floor at z = 0",
            "camera_axes": "OpenCV: x right, y down, z forward",
            "pixel_centre": "pixel (0, 0) is the centre of the top-left pixel (cx, cy in this file); "
                            "COLMAP files in sparse/0 use COLMAP's corner convention",
            "pose": "cam_from_world: X_cam = R X_world + t; quaternion Hamilton w, x, y, z",
        },
        "depth": {"dir": "depth", "format": "npy", "dtype": "float32", "unit": "m",
                  "quantity": "z in the camera frame (not ray length)", "invalid": 0.0},
        "normals": {"dir": "normals", "format": "png", "dtype": "uint16", "frame": "camera",
                    "decode": "n = v / 65535 * 2 - 1; v = (0, 0, 0) where no surface"},
        "labels": {"class_dir": "labels/class", "class_dtype": "uint8",
                   "instance_dir": "labels/instance", "instance_dtype": "uint16", "none": 0},
        "cameras": {str(cid): _camera_json(c) for cid, c in cameras.items()},
        "views": [{"name": v.name, "camera_id": v.camera_id, "cam_from_world": _pose_json(v.cam_from_world)}
                  for v in views],
        "class_names": {str(k): v for k, v in scene.class_names.items()},
        "instances": [{"id": i.instance_id, "class_id": i.class_id, "name": i.name} for i in scene.instances],
        "scene": {"config": asdict(scene.config), "bounds_min": lo.tolist(), "bounds_max": hi.tolist(),
                  "num_primitives": len(scene.primitives)},
        "options": {"render": asdict(options.render), "num_points": options.num_points,
                    "min_track_length": options.min_track_length},
    }


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


# =========================================================================================
# Loader
# =========================================================================================

def load_dataset(path) -> SynthDataset:
    """Read a dataset folder written by :func:`write_dataset` (its gt.json)."""
    root = Path(path)
    gt_path = root / "gt.json" if root.is_dir() else root
    if gt_path.is_file() and root.is_file():
        root = root.parent
    try:
        gt = json.loads(gt_path.read_text())
    except FileNotFoundError:
        raise FormatError(gt_path, "not found: not a recon synth dataset folder") from None
    except json.JSONDecodeError as e:
        raise FormatError(gt_path, f"invalid JSON: {e}") from None
    if not isinstance(gt, dict) or gt.get("format") != GT_FORMAT:
        raise FormatError(gt_path, f"expected format {GT_FORMAT!r}, got {gt.get('format') if isinstance(gt, dict) else gt!r}")
    if int(gt.get("version", 0)) > GT_VERSION:
        raise FormatError(gt_path, f"version {gt.get('version')} is newer than this reader ({GT_VERSION})")
    try:
        cameras = {int(k): Camera(c["model"], c["width"], c["height"], np.asarray(c["params"], float))
                   for k, c in gt["cameras"].items()}
        views = []
        for v in gt["views"]:
            T = v["cam_from_world"]
            views.append(SynthView(v["name"], int(v["camera_id"]),
                                   Rigid3.from_matrix(np.asarray(T["matrix"], float))))
        class_names = {int(k): str(v) for k, v in gt.get("class_names", {}).items()}
        instances = [Instance(int(i["id"]), int(i["class_id"]), str(i["name"])) for i in gt.get("instances", [])]
    except (KeyError, TypeError, ValueError) as e:
        raise FormatError(gt_path, f"malformed gt.json: {type(e).__name__}: {e}") from None
    for v in views:
        if v.camera_id not in cameras:
            raise FormatError(gt_path, f"view {v.name!r} refers to missing camera {v.camera_id}")
    return SynthDataset(root, str(gt.get("kind", "scene")), cameras, views, class_names, instances,
                        gt.get("seed"), gt)
