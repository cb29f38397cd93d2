"""Posed images for training radiance fields, loaded through ``recon.io`` from a COLMAP model
folder or a nerfstudio / Instant-NGP ``transforms.json`` (what ``recon sfm`` and ``recon.synth``
write).

Accepted layouts for ``load_scene(path)``:
- ``path/transforms.json`` (image paths relative to the JSON's folder);
- ``path/sparse/0/`` or ``path/sparse/`` (COLMAP cameras/images/points3D .bin or .txt) with the
  images in ``path/images/``;
- ``path`` itself a COLMAP model folder; images in ``path/../images`` or ``path/../../images``.

What a path holds is decided by :func:`recon.io.detect` (the one detector). Cameras with lens
distortion (a ``recon sfm`` SIMPLE_RADIAL camera, OPENCV / fisheye models in transforms.json) are
undistorted on load to the PINHOLE camera of :func:`calib.undistort.undistorted_pinhole` (same
size, no blank pixels), through our camera models; with ``cache_dir`` the undistorted images are
written there once (``cache_dir/images/NAME.png`` + ``cache.json``) and reused while their
source files and cameras are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calib import Camera, Rigid3
from recon.errors import FormatError, ReconError
from recon.io.images import resolve_image

__all__ = ["SceneData", "View", "load_scene", "scene_extent", "split_train_test"]



@dataclass(eq=False)
class View:
    """One posed training/test image."""

    name: str
    camera: Camera  # undistorted pinhole, sized like ``image``
    cam_from_world: Rigid3
    image: np.ndarray  # [H, W, 3] float32 in [0, 1] (RGB; alpha composited on ``background``)


@dataclass(eq=False)
class SceneData:
    views: list[View]
    points_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # [P, 3] world
    points_rgb: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))  # [P, 3]
    source: str = ""  # "colmap:<path>" / "transforms:<path>" / "memory"
    # SfM observations [M, 2] int64 (point index into points_xyz, view index into views): which
    # views saw which point (the COLMAP tracks); empty where the source has no tracks
    point_views: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    def __post_init__(self):
        if not self.views:
            raise ReconError(f"{self.source or 'scene'}: no posed images to train on")

    @property
    def extent(self) -> float:
        return scene_extent([v.cam_from_world for v in self.views])


def _point_views(rec, registered) -> np.ndarray:
    """[M, 2] (point index in ``rec.points3D`` order, index into ``registered``) for every view a
    point's track names, each pair once, ordered by point then image id (vectorised: no Python
    loop over the points)."""
    tracks = [p.track[:, 0] for p in rec.points3D.values()]
    if not tracks or not registered:
        return np.zeros((0, 2), np.int64)
    lens = np.fromiter((len(t) for t in tracks), dtype=np.int64, count=len(tracks))
    pid = np.repeat(np.arange(len(tracks), dtype=np.int64), lens)
    img = np.concatenate(tracks).astype(np.int64) if lens.sum() else np.zeros(0, np.int64)
    ids = np.array([im.image_id for im in registered], dtype=np.int64)
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], img)
    known = (pos < len(ids)) & (ids[order][np.minimum(pos, len(ids) - 1)] == img)
    pairs = np.unique(np.stack([pid[known], img[known]], 1), axis=0)  # sorted by point, then image id
    view = order[np.searchsorted(ids[order], pairs[:, 1])]
    return np.stack([pairs[:, 0], view], 1).astype(np.int64)


def scene_extent(cam_from_worlds: list[Rigid3]) -> float:
    """3DGS ``cameras_extent``: 1.1 x the largest distance of a camera centre from their mean
    (a fallback of 1.0 for a single camera)."""
    centres = np.array([p.dst_origin_in_src() for p in cam_from_worlds]).reshape(-1, 3)
    r = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) if len(centres) else 0.0
    return 1.1 * r if r > 0 else 1.0


def split_train_test(num_views: int, *, test_every: int = 8) -> tuple[list[int], list[int]]:
    """The standard protocol (Mip-NeRF 360 / 3DGS ``--eval``): views i with i % 8 == 0, in the
    order of image names, are held out for testing. ``test_every=0`` keeps every view for training
    (and tests on none)."""
    idx = list(range(num_views))
    if test_every <= 0 or num_views < 2:
        return idx, []
    test = [i for i in idx if i % test_every == 0]
    return [i for i in idx if i % test_every != 0], test


def _find_model(path: Path):
    """-> (kind, model_path, image_root), through recon.io.detect."""
    from recon.io.detect import POSED_KINDS, detect

    try:
        art = detect(path)
    except FormatError:
        if path.is_dir():
            raise FileNotFoundError(f"{path}: found neither transforms.json nor a COLMAP model "
                                    "(sparse/0/cameras.bin|txt) here") from None
        raise
    art.require(*POSED_KINDS, verb="training")
    # A COLMAP model first: it carries the SfM points used to initialise the Gaussians.
    if art.model_dir is not None:
        return "colmap", art.model_dir, art.images_dir or path / "images"
    return "transforms", art.transforms, art.transforms.parent


class _Undistorter:
    """Undistorts the images of distorted cameras to their pinhole camera, cached on disk."""

    def __init__(self, cache_dir: Path | None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.pinholes: dict[int, Camera] = {}
        self.maps: dict[int, np.ndarray] = {}
        self.index: dict = {}
        self.count = 0
        if self.cache_dir is not None and (self.cache_dir / "cache.json").is_file():
            import json

            try:
                self.index = json.loads((self.cache_dir / "cache.json").read_text())
            except (OSError, ValueError):
                self.index = {}

    def camera(self, camera_id: int, camera: Camera) -> Camera:
        from calib.undistort import undistorted_pinhole

        if camera_id not in self.pinholes:
            self.pinholes[camera_id] = undistorted_pinhole(camera)
        return self.pinholes[camera_id]

    def image(self, file: Path, name: str, camera_id: int, camera: Camera, background) -> np.ndarray:
        import json

        pin = self.camera(camera_id, camera)
        key = {"source": str(file.resolve()), "mtime_ns": file.stat().st_mtime_ns, "size": file.stat().st_size,
               "camera": [camera.model, camera.width, camera.height, camera.params.tolist()]}
        cached = self.cache_dir / "images" / (name + ".png") if self.cache_dir is not None else None
        if cached is not None and cached.is_file() and self.index.get(name) == key:
            return _load_image(cached, background)
        import cv2

        from calib.undistort import undistortion_map
        from recon.io import read_image, write_image

        if camera_id not in self.maps:
            self.maps[camera_id] = undistortion_map(camera, pin)
        m = self.maps[camera_id]
        raw = np.asarray(read_image(file, mode="unchanged"))
        if (raw.shape[1], raw.shape[0]) != camera.size:
            raise ReconError(f"{file}: image is {raw.shape[1]}x{raw.shape[0]} but its camera {camera_id} says "
                             f"{camera.width}x{camera.height}; the images do not belong to this model")
        und = cv2.remap(raw, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        self.count += 1
        if cached is None:
            return _as_float_rgb(und, background, file)
        from recon.io.files import atomic_write, atomic_write_text

        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, lambda p: write_image(p, und))
        self.index[name] = key
        atomic_write_text(self.cache_dir / "cache.json", json.dumps(self.index))
        return _load_image(cached, background)


def _load_image(path: Path, background) -> np.ndarray:
    from recon.io import read_image

    return _as_float_rgb(np.asarray(read_image(path, mode="unchanged")), background, path)


def _as_float_rgb(im: np.ndarray, background, path) -> np.ndarray:
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=2)
    if im.dtype == np.uint8:
        imf = im.astype(np.float32) / 255.0
    elif im.dtype == np.uint16:
        imf = im.astype(np.float32) / 65535.0
    else:
        imf = im.astype(np.float32)
    if imf.shape[2] == 4:  # RGBA (Blender scenes): composite on the training background
        a = imf[..., 3:4]
        imf = imf[..., :3] * a + (1 - a) * np.asarray(background, np.float32)
    if imf.shape[2] != 3:
        raise FormatError(path, f"expected an RGB image, got {imf.shape[2]} channels")
    return imf


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image as PILImage

    chans = [np.asarray(PILImage.fromarray(image[..., c].astype(np.float32), mode="F")
                        .resize((width, height), PILImage.Resampling.BOX)) for c in range(3)]
    return np.clip(np.stack(chans, -1), 0.0, 1.0).astype(np.float32)


def load_scene(path, *, resolution_scale: float = 1.0, background=(0.0, 0.0, 0.0),
               max_views: int | None = None, cache_dir=None, allow_distortion: bool = False,
               require_poses: bool = False) -> SceneData:
    """Load every registered image of a COLMAP model or transforms.json, sorted by name.

    Args:
        path: dataset folder (see the module docstring), a transforms.json, or a COLMAP model folder.
        resolution_scale: resize factor for images and intrinsics (0.5 = half size).
        background: RGB in [0, 1] that RGBA images are composited on.
        max_views: keep only the first N views (sorted by name), for quick runs.
        cache_dir: where undistorted images of distorted cameras are kept (None: in memory only).
        allow_distortion: keep distorted / fisheye cameras and their images as they are (ray-based
            trainers such as NeRF cast rays through the camera model); False undistorts them.
        require_poses: refuse, by name, images of the model that have no pose (default: train
            on the registered ones only).
    Raises:
        FileNotFoundError: no model here. FormatError: the path holds something else (a mesh, a
        trained output...). ReconError: images missing for registered cameras, an image whose
        size does not match its camera, no registered image.
    """
    from recon.io.colmap import read_colmap
    from recon.io.transforms_json import read_transforms

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if not (np.isfinite(resolution_scale) and 0 < resolution_scale <= 1.0):
        raise ValueError(f"resolution_scale: expected a value in (0, 1], got {resolution_scale}")
    kind, model_path, root = _find_model(path)
    rec = read_transforms(model_path)[0] if kind == "transforms" else read_colmap(model_path)
    registered = sorted(rec.registered_images, key=lambda im: im.name)
    if require_poses:
        unposed = sorted(im.name for im in rec.images.values() if not im.registered)
        if unposed:
            raise ReconError(f"{model_path}: {len(unposed)} image(s) have no camera pose (first: "
                             f"{unposed[:3]}); register them or remove them from the model")
    if not registered:
        raise ReconError(f"{model_path}: the model has no registered images")
    missing = [im.name for im in registered if resolve_image(root, im.name) is None]
    if missing:
        raise ReconError(f"{model_path}: {len(missing)} of {len(registered)} registered cameras have no "
                         f"image file under {root} (first: {missing[:3]}); check the images folder")
    if max_views is not None:
        registered = registered[:max_views]
    from calib.undistort import has_distortion

    undistorter = _Undistorter(cache_dir)
    views = []
    for im in registered:
        cam = rec.cameras[im.camera_id]
        file = resolve_image(root, im.name)
        if has_distortion(cam) and not allow_distortion:
            img = undistorter.image(file, im.name, im.camera_id, cam, background)
            cam = undistorter.camera(im.camera_id, cam)
        else:
            img = _load_image(file, background)
        h, w = img.shape[:2]
        if (w, h) != cam.size:
            raise ReconError(f"{file}: image is {w}x{h} but its camera {im.camera_id} says "
                             f"{cam.width}x{cam.height}; the images do not belong to this model "
                             "(mixed sizes / a downscaled images folder?)")
        if resolution_scale != 1.0:
            cam = cam.scaled(resolution_scale)
            img = _resize(img, cam.width, cam.height)
        views.append(View(im.name, cam, im.cam_from_world, img))
    xyz = rec.points_xyz() if rec.points3D else np.zeros((0, 3))
    rgb = rec.points_rgb() if rec.points3D else np.zeros((0, 3), np.uint8)
    point_views = _point_views(rec, registered)
    source = f"{kind}:{model_path}"
    if undistorter.pinholes:
        where = f" (cache {cache_dir})" if cache_dir is not None else ""
        source += (f"; {len(undistorter.pinholes)} distorted camera(s) undistorted to PINHOLE{where}, "
                   f"{undistorter.count} image(s) remapped this run")
    return SceneData(views, xyz, rgb, source=source, point_views=point_views)
