"""Pure functions between our conventions and viser's, plus the array work behind the viewer.

Everything here is NumPy only (no viser import), so it is tested without a server.

viser's camera conventions (checked in viser 1.1.1 ``_viser.py`` ``CameraHandle`` and
``_scene_api.py`` ``add_camera_frustum``): cameras use OpenCV axes (+x right, +y down, +z
forward), exactly ours; a camera's ``wxyz`` / ``position`` are the rotation and translation of
``world_from_cam`` (``P_world = R p_cam + t``); ``fov`` is the VERTICAL field of view in radians
and ``aspect`` is width / height. So the only conversion at this edge is pose direction
(``cam_from_world`` <-> ``world_from_cam``) and intrinsics <-> (fov, aspect).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from calib import Camera, Rigid3
from calib._check import as_array

__all__ = [
    "SH_C0",
    "ViserPose",
    "as_rgb8",
    "cam_from_world_from_viser_pose",
    "colormap",
    "label_palette",
    "pick_point",
    "pinhole_from_fov",
    "render_camera_for_view",
    "rgb_from_sh_dc",
    "sigmoid",
    "splat_covariances",
    "subsample_order",
    "vertical_fov",
    "viser_pose_from_cam_from_world",
]

SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi)), the DC band of real spherical harmonics


class ViserPose(NamedTuple):
    wxyz: np.ndarray  # [4] rotation of world_from_cam, Hamilton w, x, y, z
    position: np.ndarray  # [3] camera centre in world coordinates


def viser_pose_from_cam_from_world(cam_from_world: Rigid3) -> ViserPose:
    """Our ``cam_from_world`` -> viser's (wxyz, position) of ``world_from_cam`` (both OpenCV axes)."""
    if not isinstance(cam_from_world, Rigid3):
        raise TypeError(f"cam_from_world: expected calib.Rigid3, got {type(cam_from_world).__name__}")
    world_from_cam = cam_from_world.inverse()
    return ViserPose(world_from_cam.quat_wxyz, world_from_cam.translation.copy())


def cam_from_world_from_viser_pose(wxyz, position) -> Rigid3:
    """viser's (wxyz, position) of ``world_from_cam`` -> our ``cam_from_world``."""
    q = as_array(wxyz, "wxyz", ndim=1, last=(4,))
    t = as_array(position, "position", ndim=1, last=(3,))
    n = np.linalg.norm(q)
    if not n > 0:
        raise ValueError("wxyz: zero quaternion")
    return Rigid3.from_quat(q / n, t).inverse()


def vertical_fov(camera: Camera) -> float:
    """Vertical field of view in radians of the pinhole part of ``camera`` (fy, cy ignored:
    viser draws frustums centred on the optical axis)."""
    fy = camera.focal[-1]
    return float(2.0 * np.arctan2(camera.height / 2.0, fy))


def pinhole_from_fov(fov: float, width: int, height: int) -> Camera:
    """A PINHOLE camera with square pixels for a VERTICAL field of view ``fov`` (radians) and an
    image of ``width`` x ``height`` pixels; principal point at the image centre in our
    convention (pixel (0, 0) is the centre of the top-left pixel, so cx = (W - 1) / 2)."""
    if not (0.0 < float(fov) < np.pi):
        raise ValueError(f"fov: expected a vertical field of view in (0, pi) radians, got {fov!r}")
    f = (height / 2.0) / np.tan(float(fov) / 2.0)
    return Camera("PINHOLE", int(width), int(height), [f, f, (width - 1) / 2.0, (height - 1) / 2.0])


def splat_covariances(log_scales, quats_wxyz) -> np.ndarray:
    """3DGS covariance ``R diag(exp(log_scale))^2 R^T`` [N, 3, 3] (float32) from log-scales
    [N, 3] and (not necessarily unit) quaternions [N, 4] w, x, y, z; world units squared."""
    s = np.exp(np.asarray(log_scales, dtype=np.float32).reshape(-1, 3))
    q = np.asarray(quats_wxyz, dtype=np.float32).reshape(-1, 4)
    if q.shape[0] != s.shape[0]:
        raise ValueError(f"quats_wxyz: expected [{s.shape[0]}, 4] to match log_scales, got {q.shape}")
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = q / np.where(norm > 0, norm, 1.0)
    w, x, y, z = q.T
    R = np.empty((q.shape[0], 3, 3), dtype=np.float32)
    R[:, 0, 0] = 1 - 2 * (y * y + z * z)
    R[:, 0, 1] = 2 * (x * y - w * z)
    R[:, 0, 2] = 2 * (x * z + w * y)
    R[:, 1, 0] = 2 * (x * y + w * z)
    R[:, 1, 1] = 1 - 2 * (x * x + z * z)
    R[:, 1, 2] = 2 * (y * z - w * x)
    R[:, 2, 0] = 2 * (x * z - w * y)
    R[:, 2, 1] = 2 * (y * z + w * x)
    R[:, 2, 2] = 1 - 2 * (x * x + y * y)
    M = R * s[:, None, :]  # R @ diag(s)
    return M @ M.transpose(0, 2, 1)


def rgb_from_sh_dc(sh_dc) -> np.ndarray:
    """View-independent colour of a 3DGS splat: ``0.5 + SH_C0 * f_dc`` clipped to [0, 1], [N, 3]."""
    return np.clip(0.5 + SH_C0 * np.asarray(sh_dc, dtype=np.float32).reshape(-1, 3), 0.0, 1.0)


def sigmoid(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


def subsample_order(n: int, seed: int = 0) -> np.ndarray:
    """A deterministic random permutation of ``range(n)``: the first ``budget`` entries are the
    points shown under a point budget, so a larger budget shows a superset of a smaller one."""
    return np.random.default_rng(seed).permutation(int(n))


def colormap(values, *, name: str = "viridis", lo: float | None = None, hi: float | None = None,
             invalid_rgb=(128, 128, 128)) -> np.ndarray:
    """Map scalar ``values`` [N] to RGB uint8 [N, 3] with a matplotlib colormap. ``lo``/``hi``
    default to the 2nd/98th percentiles of the finite values (robust to outliers); values that
    are non-finite or negative-sentinel (< 0 where the data uses -1 for unknown) use
    ``invalid_rgb``."""
    import matplotlib

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    ok = np.isfinite(v) & (v >= 0)
    out = np.empty((v.size, 3), dtype=np.uint8)
    out[:] = np.asarray(invalid_rgb, dtype=np.uint8)
    if ok.any():
        good = v[ok]
        lo = float(np.percentile(good, 2)) if lo is None else float(lo)
        hi = float(np.percentile(good, 98)) if hi is None else float(hi)
        t = np.clip((good - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.full(good.shape, 0.5)
        lut = (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
        out[ok] = lut[np.round(t * 255).astype(np.int64)]
    return out


# 20 well separated colours (Tableau 20 reordered: strong colours first), then golden-ratio hues.
_PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
], dtype=np.uint8)


def label_palette(ids) -> np.ndarray:
    """A fixed colour per integer label id, [N, 3] uint8; id < 0 (unlabelled) is dark grey.
    The same id always gets the same colour, in every run and every file."""
    import colorsys

    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    out = np.empty((ids.size, 3), dtype=np.uint8)
    uniq, inv = np.unique(ids, return_inverse=True)
    colours = np.empty((uniq.size, 3), dtype=np.uint8)
    for k, i in enumerate(uniq):
        if i < 0:
            colours[k] = (60, 60, 60)
        elif i < len(_PALETTE):
            colours[k] = _PALETTE[i]
        else:
            h = (i * 0.618033988749895) % 1.0
            colours[k] = np.round(np.array(colorsys.hsv_to_rgb(h, 0.75, 0.95)) * 255).astype(np.uint8)
    out[:] = colours[inv]
    return out


def pick_point(xyz, ray_origin, ray_direction, *, max_angle: float, candidates=None) -> int:
    """Index of the point of ``xyz`` [N, 3] closest in angle to the ray (in front of its origin),
    or -1 when none lies within ``max_angle`` radians. Among points within the angle the nearest
    along the ray wins (what the user sees in front). ``candidates``: optional index array to
    restrict the search (e.g. the visible points)."""
    P = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    idx = np.arange(P.shape[0]) if candidates is None else np.asarray(candidates, dtype=np.int64)
    if idx.size == 0:
        return -1
    o = np.asarray(ray_origin, dtype=np.float32).reshape(3)
    d = np.asarray(ray_direction, dtype=np.float32).reshape(3)
    d = d / np.linalg.norm(d)
    v = P[idx] - o
    t = v @ d
    front = t > 0
    if not front.any():
        return -1
    perp = np.linalg.norm(v - t[:, None] * d, axis=1)
    angle = np.where(front, np.arctan2(perp, np.maximum(t, 1e-12)), np.inf)
    hit = angle <= max_angle
    if not hit.any():
        return -1
    # Nearest along the ray among the hits, ties broken by angle.
    hits = np.flatnonzero(hit)
    best = hits[np.lexsort((angle[hits], t[hits]))[0]]
    return int(idx[best])


def render_camera_for_view(fov: float, width: int, height: int, wxyz, position, *,
                           max_side: int = 512):
    """(calib.Camera PINHOLE, cam_from_world) to render a browser view: the canvas size
    ``width`` x ``height`` scaled down so its longest side is at most ``max_side`` (aspect kept,
    so the image stretches exactly over the canvas), vertical ``fov`` in radians, viser's
    ``wxyz`` / ``position`` of world_from_cam."""
    if width <= 0 or height <= 0:
        raise ValueError(f"width, height: expected positive canvas size, got {width}x{height}")
    s = min(1.0, float(max_side) / max(width, height))
    w, h = max(1, round(width * s)), max(1, round(height * s))
    return pinhole_from_fov(fov, w, h), cam_from_world_from_viser_pose(wxyz, position)


def as_rgb8(img, camera: Camera) -> np.ndarray:
    """Check/convert a render callback's result (array or tensor; uint8 or float in [0, 1];
    RGB or RGBA) to [H, W, 3] uint8 of the camera's size."""
    if hasattr(img, "detach"):  # a torch tensor: we never import torch here
        img = img.detach().cpu().numpy()
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.shape != (camera.height, camera.width, 3):
        raise ValueError(f"render_fn returned shape {img.shape}, expected "
                         f"[{camera.height}, {camera.width}, 3] for a {camera.width}x{camera.height} camera")
    if img.dtype != np.uint8:
        if img.dtype.kind == "f":
            img = np.clip(np.nan_to_num(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            raise TypeError(f"render_fn returned dtype {img.dtype}, expected uint8 or float in [0, 1]")
    return img
