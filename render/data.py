"""Posed images for training radiance fields, loaded through ``recon.io`` from a COLMAP model
folder or a nerfstudio / Instant-NGP ``transforms.json`` (what ``recon sfm`` and ``recon.synth``
write).

Accepted layouts for ``load_scene(path)``:
- ``path/transforms.json`` (image paths relative to the JSON's folder);
- ``path/sparse/0/`` or ``path/sparse/`` (COLMAP cameras/images/points3D .bin or .txt) with the
  images in ``path/images/``;
- ``path`` itself a COLMAP model folder; images in ``path/../images`` or ``path/../../images``.

Cameras must be undistorted pinhole models (SIMPLE_PINHOLE / PINHOLE, or any model whose
distortion is zero); ``recon undistort`` or pycolmap's ``undistort_images`` produce that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calib import Camera, Rigid3
from recon.errors import FormatError, ReconError

__all__ = ["SceneData", "View", "load_scene", "scene_extent", "split_train_test"]

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG", ".webp", ".tif", ".tiff")


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

    def __post_init__(self):
        if not self.views:
            raise ReconError(f"{self.source or 'scene'}: no posed images to train on")

    @property
    def extent(self) -> float:
        return scene_extent([v.cam_from_world for v in self.views])


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


def _check_pinhole(camera: Camera, where: str) -> None:
    if camera.is_fisheye or (camera.model not in ("SIMPLE_PINHOLE", "PINHOLE") and np.any(camera.extra != 0)):
        raise ReconError(f"{where}: camera model {camera.model} with distortion {camera.extra.tolist()}; "
                         "splatting needs undistorted images (run `recon undistort` or pycolmap's "
                         "undistort_images first)")


def _find_model(path: Path):
    """-> (kind, model_path, image_root)."""
    from recon.io.transforms_json import find_transforms

    # A COLMAP model first: it carries the SfM points used to initialise the Gaussians.
    if path.is_dir():
        for cand in (path / "sparse" / "0", path / "sparse", path):
            if any((cand / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
                from recon.io import find_image_dir

                return "colmap", cand, find_image_dir(cand, dataset_dir=path) or path / "images"
    tj = find_transforms(path)
    if tj is not None:
        return "transforms", tj, tj.parent
    raise FileNotFoundError(f"{path}: found neither transforms.json nor a COLMAP model "
                            "(sparse/0/cameras.bin|txt) here")


def _resolve_image(root: Path, name: str) -> Path | None:
    p = root / name
    if p.is_file():
        return p
    if p.suffix == "":
        for ext in _IMAGE_EXTS:
            if p.with_suffix(ext).is_file():
                return p.with_suffix(ext)
    return None


def _load_image(path: Path, background) -> np.ndarray:
    from recon.io import read_image

    im = np.asarray(read_image(path, mode="unchanged"))
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
               max_views: int | None = None, allow_distortion: bool = False,
               require_poses: bool = False) -> SceneData:
    """Load every registered image of a COLMAP model or transforms.json, sorted by name.

    Args:
        path: dataset folder (see the module docstring), a transforms.json, or a COLMAP model folder.
        resolution_scale: resize factor for images and intrinsics (0.5 = half size).
        background: RGB in [0, 1] that RGBA images are composited on.
        max_views: keep only the first N views (sorted by name), for quick runs.
        allow_distortion: keep distorted / fisheye cameras as they are (ray-based trainers such as
            NeRF cast rays through the camera model); False refuses them (splatting).
        require_poses: refuse, by name, images of the model that have no pose (default: train
            on the registered ones only).
    Raises:
        FileNotFoundError: no model here. ReconError: images missing for registered cameras,
        an image whose size does not match its camera, distorted cameras, no registered image.
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
    missing = [im.name for im in registered if _resolve_image(root, im.name) is None]
    if missing:
        raise ReconError(f"{model_path}: {len(missing)} of {len(registered)} registered cameras have no "
                         f"image file under {root} (first: {missing[:3]}); check the images folder")
    if max_views is not None:
        registered = registered[:max_views]
    views = []
    for im in registered:
        cam = rec.cameras[im.camera_id]
        if not allow_distortion:
            _check_pinhole(cam, f"{model_path}: image {im.name!r}")
        file = _resolve_image(root, im.name)
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
    return SceneData(views, xyz, rgb, source=f"{kind}:{model_path}")
