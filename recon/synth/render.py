"""Render a Scene through any supported ``calib.Camera`` model, exactly.

Every pixel (and every supersample) is unprojected through the camera model
(``Camera.unproject``: distortion and fisheye included), turned into a world ray with
``cam_from_world.inverse()`` and intersected analytically with the scene. Geometry outputs
(depth, normals, labels) come from the ray through the pixel CENTRE, so a 3D point that
projects to pixel (u, v) lies on the ray the depth map reports there.

Anti-aliasing: textures are filtered with trilinear mipmapping using each ray's footprint on
the surface (distance x the pixel's angular size, widened at grazing incidence); geometric
edges (pixels whose neighbours show another surface patch, or lie outside the model's valid
region) are supersampled with ``supersample x supersample`` rays per pixel. ``adaptive=False``
supersamples every pixel (slower, same geometry).

Shading is Lambertian with a fixed directional light and no shadows: view-independent, so the
same surface point has the same colour in every image (photo-consistency).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from calib import Camera, Rigid3
from recon.synth._raycast import Hits, cast
from recon.synth.scene import Scene

__all__ = ["RenderOptions", "RenderedView", "camera_rays", "cast_rays", "pixel_angles", "render_view"]


@dataclass
class RenderOptions:
    """Options of :func:`render_view`.

    supersample: rays per pixel side for the colour of edge pixels (2 -> 4 rays); 1 disables it.
    adaptive: supersample only pixels at geometric edges (textures are mip-filtered anyway);
    False supersamples every pixel.
    chunk_rays: rays intersected at once (bounds memory: ~1 KiB per ray).
    exposure: multiplies linear colour before quantisation (1 = unchanged).
    blur_sigma: Gaussian blur of the final image, pixels (0 = none).
    noise_sigma: std of additive Gaussian noise in 8-bit units (0 = none).
    noise_seed: seed of that noise (the geometry never depends on it).
    """

    supersample: int = 2
    adaptive: bool = True
    chunk_rays: int = 1 << 17
    exposure: float = 1.0
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    noise_seed: int = 0

    def validate(self) -> None:
        if isinstance(self.supersample, bool) or not isinstance(self.supersample, (int, np.integer)) \
                or not 1 <= self.supersample <= 8:
            raise ValueError(f"supersample: expected an integer in [1, 8], got {self.supersample!r}")
        if not isinstance(self.chunk_rays, (int, np.integer)) or self.chunk_rays < 1024:
            raise ValueError(f"chunk_rays: expected an integer >= 1024, got {self.chunk_rays!r}")
        if not (np.isfinite(self.exposure) and self.exposure > 0):
            raise ValueError(f"exposure: expected a positive number, got {self.exposure}")
        if not (np.isfinite(self.blur_sigma) and self.blur_sigma >= 0):
            raise ValueError(f"blur_sigma: expected >= 0 pixels, got {self.blur_sigma}")
        if not (np.isfinite(self.noise_sigma) and self.noise_sigma >= 0):
            raise ValueError(f"noise_sigma: expected >= 0, got {self.noise_sigma}")


@dataclass
class RenderedView:
    """One rendered view; arrays are [H, W, ...].

    rgb: uint8 [H, W, 3]. depth: float64 [H, W], z in the camera frame (metres), 0 where
    ``valid`` is False (datasets store it as float32). normals: float32 [H, W, 3] unit normals in the CAMERA frame, facing the
    camera (0 where invalid). class_id: uint8 [H, W] (0 = void). instance_id: uint16 [H, W]
    (0 = none). patch_id: int64 [H, W] surface patch (-1 = none), for tests and masks.
    valid: bool [H, W] the pixel-centre ray is inside the model's valid region and hit a surface.
    ray_valid: bool [H, W] the pixel-centre ray is inside the model's valid region.
    """

    rgb: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    class_id: np.ndarray
    instance_id: np.ndarray
    patch_id: np.ndarray
    valid: np.ndarray
    ray_valid: np.ndarray

    def points_world(self, camera: Camera, cam_from_world: Rigid3) -> np.ndarray:
        """[H, W, 3] world points of the pixel centres (NaN where invalid)."""
        dirs, _ = camera_rays(camera, 1)
        d = dirs.reshape(camera.height, camera.width, 3)
        with np.errstate(divide="ignore", invalid="ignore"):
            X_cam = d * (self.depth / d[..., 2])[..., None]
        X = cam_from_world.inverse().apply(X_cam.reshape(-1, 3)).reshape(X_cam.shape)
        return np.where(self.valid[..., None], X, np.nan)


_RAY_CACHE: OrderedDict = OrderedDict()
_RAY_CACHE_SIZE = 9  # rays at 1x and 2x plus pixel angles of 3 cameras (a stereo rig + its rectified camera)


def camera_rays(camera: Camera, supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Unit camera-frame rays of every pixel (``supersample`` = 1: pixel centres) or of every
    supersample: ([H * W * s * s, 3], valid [H * W * s * s]), pixel-major (the s*s samples of a
    pixel are consecutive). Cached for the last few cameras (rays depend on intrinsics only)."""
    if not isinstance(camera, Camera):
        raise TypeError(f"camera: expected calib.Camera, got {type(camera).__name__}")
    key = (camera.model, camera.width, camera.height, camera.params.tobytes(), int(supersample))
    hit = _RAY_CACHE.get(key)
    if hit is not None:
        _RAY_CACHE.move_to_end(key)
        return hit
    s = int(supersample)
    offs = (np.arange(s) + 0.5) / s - 0.5
    grid = camera.pixel_grid().reshape(-1, 1, 1, 2)
    sub = np.stack(np.meshgrid(offs, offs, indexing="xy"), -1)  # [s, s, 2] (du, dv)
    uv = (grid + sub[None]).reshape(-1, 2)
    dirs, valid = camera.unproject(uv)
    dirs = np.where(valid[:, None], dirs, [[0.0, 0.0, 1.0]])
    dirs.setflags(write=False)
    valid.setflags(write=False)
    _RAY_CACHE[key] = (dirs, valid)
    while len(_RAY_CACHE) > _RAY_CACHE_SIZE:
        _RAY_CACHE.popitem(last=False)
    return dirs, valid


def cast_rays(scene: Scene, origins, directions, *, chunk_rays: int = 1 << 17) -> Hits:
    """Closest hits of world rays (origins [N, 3], directions [N, 3], normalised here).
    Returns :class:`Hits` (t = distance along the unit direction, inf on a miss)."""
    o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    if o.shape != d.shape:
        raise ValueError(f"origins, directions: shapes differ: {o.shape} vs {d.shape}")
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    parts = [cast(scene, o[i:i + chunk_rays], d[i:i + chunk_rays]) for i in range(0, len(o), chunk_rays)]
    if not parts:
        return cast(scene, o, d)
    return Hits(*[np.concatenate([getattr(p, f) for p in parts]) for f in ("t", "prim", "patch", "u", "v", "normal")])


def pixel_angles(camera: Camera) -> np.ndarray:
    """[H * W] angular size (radians) of each pixel: mean angle between its centre ray and the
    rays of its right and lower neighbours (exact for distorted and fisheye models)."""
    key = ("angles", camera.model, camera.width, camera.height, camera.params.tobytes())
    hit = _RAY_CACHE.get(key)
    if hit is not None:
        _RAY_CACHE.move_to_end(key)
        return hit
    d = camera_rays(camera, 1)[0].reshape(camera.height, camera.width, 3)
    ang = np.full((camera.height, camera.width), np.nan)
    acc = np.zeros((camera.height, camera.width))
    cnt = np.zeros((camera.height, camera.width))
    if camera.width > 1:
        a = np.arccos(np.clip(np.sum(d[:, 1:] * d[:, :-1], -1), -1, 1))
        acc[:, 1:] += a
        acc[:, :-1] += a
        cnt[:, 1:] += 1
        cnt[:, :-1] += 1
    if camera.height > 1:
        a = np.arccos(np.clip(np.sum(d[1:] * d[:-1], -1), -1, 1))
        acc[1:] += a
        acc[:-1] += a
        cnt[1:] += 1
        cnt[:-1] += 1
    ang = np.where(cnt > 0, acc / np.maximum(cnt, 1), 1.0 / float(np.mean(camera.focal))).ravel()
    ang.setflags(write=False)
    _RAY_CACHE[key] = ang
    while len(_RAY_CACHE) > _RAY_CACHE_SIZE:
        _RAY_CACHE.popitem(last=False)
    return ang


def _shade(scene: Scene, hits: Hits, dirs_world: np.ndarray, pixel_angle: np.ndarray | None = None) -> np.ndarray:
    """Linear RGB [N, 3] float32 of hits; misses get a smooth sky gradient (no features).
    ``pixel_angle`` [N] (radians, per ray) selects the mip level; None: finest level."""
    out = np.empty((len(hits.t), 3), np.float32)
    hit = hits.hit
    if np.any(hit):
        lod = None
        if pixel_angle is not None:
            cos = np.abs(np.einsum("ij,ij->i", hits.normal[hit], dirs_world[hit]))
            # footprint of the ray on the surface: the geometric mean of the minor (t * angle)
            # and major (t * angle / cos) axes of the footprint ellipse
            foot = hits.t[hit] * pixel_angle[hit] / np.sqrt(np.maximum(cos, 0.02))
            lod = np.log2(np.maximum(foot / scene.atlas.texel_size, 1e-6)).astype(np.float32)
        albedo = scene.atlas.lookup(hits.patch[hit], hits.u[hit], hits.v[hit], lod)
        lam = np.clip(hits.normal[hit] @ scene.light_direction, 0.0, 1.0)
        amb = scene.config.ambient
        out[hit] = albedo * (amb + (1 - amb) * lam).astype(np.float32)[:, None]
    miss = ~hit
    if np.any(miss):
        el = np.clip(dirs_world[miss, 2], -1, 1).astype(np.float32)[:, None]
        horizon = np.array([0.85, 0.88, 0.92], np.float32)
        zenith = np.array([0.45, 0.62, 0.9], np.float32)
        out[miss] = horizon + (zenith - horizon) * np.clip(el, 0, 1)
    return out


def _edge_pixels(patch: np.ndarray, ray_valid: np.ndarray) -> np.ndarray:
    """[H, W] bool: a 4-neighbour shows another surface patch or validity changes."""
    key = np.where(ray_valid, patch, -2)
    e = np.zeros(key.shape, bool)
    dx = key[:, 1:] != key[:, :-1]
    dy = key[1:] != key[:-1]
    e[:, 1:] |= dx
    e[:, :-1] |= dx
    e[1:] |= dy
    e[:-1] |= dy
    return e


def render_view(scene: Scene, camera: Camera, cam_from_world: Rigid3,
                options: RenderOptions | None = None) -> RenderedView:
    """Render RGB, z-depth, normals, class and instance ids of one view.

    camera: any projectable ``calib.Camera``; cam_from_world: ``calib.Rigid3`` (OpenCV axes).
    Pixels whose ray lies outside the model's valid region (e.g. fisheye corners) are black
    with ``valid = False``.
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"scene: expected recon.synth.Scene, got {type(scene).__name__}")
    if not isinstance(camera, Camera):
        raise TypeError(f"camera: expected calib.Camera, got {type(camera).__name__}")
    if not isinstance(cam_from_world, Rigid3):
        raise TypeError(f"cam_from_world: expected calib.Rigid3, got {type(cam_from_world).__name__}")
    options = RenderOptions() if options is None else options
    options.validate()
    W, H = camera.width, camera.height
    R_wc = cam_from_world.rotation.T  # world_from_cam rotation
    centre = cam_from_world.dst_origin_in_src()
    chunk = int(options.chunk_rays)

    # geometry (and first colour) at pixel centres
    dirs_c, ray_valid = camera_rays(camera, 1)
    angles = pixel_angles(camera)
    n = W * H
    depth = np.zeros(n, np.float64)
    normals = np.zeros((n, 3), np.float32)
    prim = np.full(n, -1, np.int64)
    patch = np.full(n, -1, np.int64)
    rgb_lin = np.zeros((n, 3), np.float32)
    s = int(options.supersample)
    for i in range(0, n, chunk):
        dc = dirs_c[i:i + chunk]
        dw = dc @ R_wc.T
        h = cast(scene, centre, dw)
        rv = ray_valid[i:i + chunk]
        ok = h.hit & rv
        depth[i:i + chunk] = np.where(ok, h.t * dc[:, 2], 0.0)
        normals[i:i + chunk] = np.where(ok[:, None], h.normal @ R_wc, 0.0)
        prim[i:i + chunk] = np.where(ok, h.prim, -1)
        patch[i:i + chunk] = np.where(ok, h.patch, -1)
        if s == 1 or options.adaptive:
            rgb_lin[i:i + chunk] = np.where(rv[:, None], _shade(scene, h, dw, angles[i:i + chunk]), 0.0)

    if s > 1:
        s2 = s * s
        dirs_s, valid_s = camera_rays(camera, s)
        if options.adaptive:
            todo = np.flatnonzero(_edge_pixels(patch.reshape(H, W), ray_valid.reshape(H, W)).ravel())
        else:
            todo = np.arange(n)
        per = max(1, chunk // s2)
        for i in range(0, len(todo), per):
            px = todo[i:i + per]
            rows = (px[:, None] * s2 + np.arange(s2)).ravel()
            dc = dirs_s[rows]
            dw = (dc @ R_wc.T).astype(np.float32)  # colour only: float32 is plenty
            h = cast(scene, centre.astype(np.float32), dw)
            col = _shade(scene, h, dw, np.repeat(angles[px] / s, s2).astype(np.float32)) * valid_s[rows, None]
            cnt = valid_s[rows].reshape(-1, s2).sum(1)
            acc = col.reshape(-1, s2, 3).sum(1)
            rgb_lin[px] = np.where(cnt[:, None] > 0, acc / np.maximum(cnt, 1)[:, None], 0.0)

    rgb = rgb_lin.reshape(H, W, 3) * np.float32(options.exposure * 255.0)
    if options.blur_sigma > 0:
        import cv2

        rgb = cv2.GaussianBlur(rgb, (0, 0), float(options.blur_sigma))
    if options.noise_sigma > 0:
        rng = np.random.default_rng(options.noise_seed)
        rgb = rgb + rng.normal(0.0, options.noise_sigma, rgb.shape).astype(np.float32)
    rgb8 = np.clip(np.round(rgb), 0, 255).astype(np.uint8)

    prims = scene.primitives
    cls_table = np.array([p.class_id for p in prims] + [0], np.uint8)
    ins_table = np.array([p.instance_id for p in prims] + [0], np.uint16)
    valid = prim >= 0
    return RenderedView(
        rgb=rgb8,
        depth=depth.reshape(H, W),
        normals=normals.reshape(H, W, 3),
        class_id=cls_table[prim].reshape(H, W),
        instance_id=ins_table[prim].reshape(H, W),
        patch_id=patch.reshape(H, W),
        valid=valid.reshape(H, W),
        ray_valid=np.asarray(ray_valid).reshape(H, W).copy(),
    )
