"""Posed depth maps: the input of TSDF fusion and of dense point clouds.

A :class:`DepthView` is one camera (``calib.Camera``, pixel (0, 0) = centre of the top-left
pixel), its ``cam_from_world`` pose, a depth map (z in the camera frame, metres; 0 or NaN = no
measurement) and optionally the colour image. :func:`load_depth_views` reads them from a folder
(a recon.synth dataset, or any folder with ``depth/STEM.npy`` beside a COLMAP model or
transforms.json, which is what `recon train nerf` and `recon stereo` write); trainers hand
rendered depth maps over as DepthView lists (recon.export never imports render).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calib import Camera, Rigid3
from recon.errors import FormatError, ReconError

__all__ = ["DepthView", "backproject", "check_depth_views", "load_depth_views", "undistort_depth_view"]


@dataclass(eq=False)
class DepthView:
    """One posed depth map.

    camera: intrinsics (any COLMAP model; fusion resamples distorted ones to a pinhole first).
    cam_from_world: world -> OpenCV camera. depth: float32 [H, W], z in the camera frame in
    metres, 0 or NaN where there is no measurement. rgb: uint8 [H, W, 3] or None. name: image name.
    """

    camera: Camera
    cam_from_world: Rigid3
    depth: np.ndarray
    rgb: np.ndarray | None = None
    name: str = ""

    def __post_init__(self):
        if not isinstance(self.camera, Camera):
            raise TypeError(f"camera: expected calib.Camera, got {type(self.camera).__name__}")
        if not isinstance(self.cam_from_world, Rigid3):
            raise TypeError(f"cam_from_world: expected calib.Rigid3, got {type(self.cam_from_world).__name__}")
        d = np.asarray(self.depth)
        hw = (self.camera.height, self.camera.width)
        if d.shape != hw:
            raise ValueError(f"depth: expected shape [H, W] = {list(hw)} for {self.name or 'this view'}, "
                             f"got {list(d.shape)}")
        if d.dtype.kind != "f":
            raise TypeError(f"depth: expected a float array (metres), got dtype {d.dtype}")
        self.depth = np.ascontiguousarray(d, dtype=np.float32)
        if self.rgb is not None:
            c = np.asarray(self.rgb)
            if c.shape != hw + (3,) or c.dtype != np.uint8:
                raise ValueError(f"rgb: expected uint8 [H, W, 3] = {list(hw) + [3]}, got {c.dtype} {list(c.shape)}")
            self.rgb = np.ascontiguousarray(c)

    @property
    def valid(self) -> np.ndarray:
        """[H, W] bool: finite, positive depth."""
        d = self.depth
        return np.isfinite(d) & (d > 0)


def check_depth_views(views, name: str = "views") -> list[DepthView]:
    """A non-empty list of DepthView with at least one valid depth; else ReconError naming why."""
    views = list(views)
    if not views:
        raise ReconError(f"{name}: no depth maps given")
    for v in views:
        if not isinstance(v, DepthView):
            raise TypeError(f"{name}: expected DepthView items, got {type(v).__name__}")
    if not any(v.valid.any() for v in views):
        raise ReconError(f"{name}: all {len(views)} depth maps are empty (every value is 0, NaN or negative)")
    return views


def backproject(view: DepthView, *, stride: int = 1, world: bool = True):
    """Points of the valid pixels of ``view``: (xyz [N, 3] float64, world frame when ``world``
    else camera frame; rgb [N, 3] uint8 or None; pixel index [N] into the flattened [H*W] image).
    ``stride`` subsamples the pixel grid (every stride-th row and column)."""
    cam = view.camera
    ys, xs = np.mgrid[0:cam.height:stride, 0:cam.width:stride]
    d = view.depth[ys, xs]
    ok = np.isfinite(d) & (d > 0)
    ys, xs, d = ys[ok], xs[ok], d[ok].astype(np.float64)
    uv = np.stack([xs, ys], -1).astype(np.float64)
    if cam.model in ("SIMPLE_PINHOLE", "PINHOLE") or not np.any(cam.extra):
        (fx, fy), (cx, cy) = cam.focal, cam.principal_point
        xy = np.stack([(uv[:, 0] - cx) / fx, (uv[:, 1] - cy) / fy], -1)
    else:
        xy = cam.cam_from_img(uv)
    good = np.all(np.isfinite(xy), axis=1)
    p = np.concatenate([xy * d[:, None], d[:, None]], axis=1)[good]
    index = (ys * cam.width + xs)[good]
    if world:
        p = view.cam_from_world.inverse().apply(p)
    rgb = view.rgb[ys[good], xs[good]] if view.rgb is not None else None
    return p, rgb, index


def undistort_depth_view(view: DepthView) -> DepthView:
    """The view resampled (nearest neighbour: depths are never blended across edges) into a
    PINHOLE camera with the same focal lengths, principal point and size. Pinhole views are
    returned as they are."""
    cam = view.camera
    if cam.model in ("SIMPLE_PINHOLE", "PINHOLE") or not np.any(cam.extra):
        return view
    (fx, fy), (cx, cy) = cam.focal, cam.principal_point
    pin = Camera("PINHOLE", cam.width, cam.height, [fx, fy, cx, cy])
    grid = pin.pixel_grid().reshape(-1, 2)
    xy = np.stack([(grid[:, 0] - cx) / fx, (grid[:, 1] - cy) / fy], -1)
    rays = np.concatenate([xy, np.ones((len(xy), 1))], 1)
    uv, ok = cam.project(rays)
    ui = np.rint(uv[:, 0]).astype(np.int64)
    vi = np.rint(uv[:, 1]).astype(np.int64)
    ok &= (ui >= 0) & (ui < cam.width) & (vi >= 0) & (vi < cam.height)
    depth = np.zeros(cam.height * cam.width, np.float32)
    depth[ok] = view.depth[vi[ok], ui[ok]]  # z is the same along a ray whatever the model
    rgb = None
    if view.rgb is not None:
        rgb = np.zeros((cam.height * cam.width, 3), np.uint8)
        rgb[ok] = view.rgb[vi[ok], ui[ok]]
        rgb = rgb.reshape(cam.height, cam.width, 3)
    return DepthView(pin, view.cam_from_world, depth.reshape(cam.height, cam.width), rgb, view.name)


def load_depth_views(path, *, with_rgb: bool = True, depth_dir=None, model_path=None) -> list[DepthView]:
    """Depth views from a folder: a recon.synth dataset (gt.json), or ``depth_dir`` (default
    ``path/depth``) of ``STEM.npy`` files (float32 [H, W], z in metres, 0 = none) matched by
    image stem (``a/b.png`` -> ``a/b.npy`` or ``a_b.npy``, as `recon train nerf` writes them)
    to the images of the COLMAP model or transforms.json at ``model_path`` (default ``path``).
    Colours come from the model's photos when their size matches. Raises FormatError naming
    the folder when nothing matches."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    if (root / "gt.json").is_file() and depth_dir is None and model_path is None:
        from recon.synth import load_dataset

        ds = load_dataset(root)
        views = []
        for i, v in enumerate(ds.views):
            rgb = ds.load_image(i) if with_rgb else None
            views.append(DepthView(ds.camera(i), v.cam_from_world, ds.load_depth(i), rgb, v.name))
        if not views:
            raise FormatError(root, "the dataset has no views")
        return views
    from recon.io import find_image_dir, read_image, read_model

    model_root = Path(model_path) if model_path is not None else root
    rec = read_model(model_root)
    ddir = Path(depth_dir) if depth_dir is not None else root / "depth"
    if not ddir.is_dir():
        raise FormatError(root, f"no depth folder {ddir} (expected STEM.npy per image)")
    images = find_image_dir(model_root, dataset_dir=model_root) if with_rgb else None
    views = []
    for img in sorted(rec.images.values(), key=lambda im: im.name):
        if not img.registered:
            continue
        stem = img.name.rsplit(".", 1)[0]
        f = next((c for c in (ddir / f"{stem}.npy", ddir / f"{stem.replace('/', '_')}.npy") if c.is_file()), None)
        if f is None:
            continue
        try:
            d = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FormatError(f, f"cannot read depth: {e}") from None
        cam = rec.cameras[img.camera_id]
        if d.shape != (cam.height, cam.width):
            if d.ndim == 2 and d.shape[0] > 0 and np.isclose(d.shape[1] / cam.width, d.shape[0] / cam.height, rtol=0.02):
                cam = cam.resized(d.shape[1], d.shape[0])  # depth rendered at a training scale
            else:
                raise FormatError(f, f"depth has shape {d.shape}, expected {(cam.height, cam.width)}")
        if d.dtype.kind != "f":
            raise FormatError(f, f"depth has dtype {d.dtype}, expected float (metres)")
        rgb = None
        if images is not None and (images / img.name).is_file():
            rgb = read_image(images / img.name)
            if rgb.ndim != 3 or rgb.shape[:2] != d.shape or rgb.dtype != np.uint8:
                rgb = None
        views.append(DepthView(cam, img.cam_from_world, d.astype(np.float32), rgb, img.name))
    if not views:
        raise FormatError(ddir, "no STEM.npy here matches an image of the model")
    return views
