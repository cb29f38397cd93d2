"""Cameras and trajectories for synthetic scenes.

All poses are ``cam_from_world`` (:class:`calib.Rigid3`, OpenCV camera axes) in the scene's
world frame (z up, metres; see :mod:`recon.synth.scene`).
"""

from __future__ import annotations

import numpy as np

from calib import MODELS, Camera, Rigid3, StereoRig, look_at

__all__ = [
    "STREET_ROOM_HALF_SIZE",
    "TRAJECTORIES",
    "StereoRig",
    "default_distortion",
    "hemisphere",
    "look_at",
    "make_camera",
    "orbit",
    "street",
    "walkthrough",
]

TRAJECTORIES = ("orbit", "walk", "hemisphere", "street")

# the room of the street walk: large enough for a loop 1.5 m from the walls that stays clear
# of the furniture (inside ~2.2 m of the centre)
STREET_ROOM_HALF_SIZE = 6.0


def _check_views(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"views: expected a positive integer number of views, got {n!r}")
    return int(n)


def orbit(n: int, *, radius: float = 3.0, height: float = 1.6, target=(0.0, 0.0, 0.5),
          start_deg: float = 0.0, arc_deg: float = 360.0, height_wobble: float = 0.15) -> list[Rigid3]:
    """``n`` cameras on a circle of ``radius`` metres around ``target`` at ``height`` metres
    (z), spread over ``arc_deg`` degrees (a full turn leaves no duplicate view), looking at
    ``target``. ``height_wobble`` varies the height sinusoidally (two periods per turn) so the
    views are not all coplanar."""
    n = _check_views(n)
    if not (radius > 0):
        raise ValueError(f"radius: expected > 0 m, got {radius}")
    step = arc_deg / n if abs(arc_deg) >= 360 else (arc_deg / max(n - 1, 1))
    poses = []
    for i in range(n):
        a = np.radians(start_deg + i * step)
        z = height + height_wobble * np.sin(2 * a)
        eye = np.array([radius * np.cos(a), radius * np.sin(a), z]) + np.r_[np.asarray(target, float)[:2], 0]
        poses.append(look_at(eye, target))
    return poses


def walkthrough(n: int, *, waypoints=None, look_angle_deg: float = 60.0, look_height: float = 0.6,
                look_distance: float = 3.0, sway: float = 0.02, seed: int = 0) -> list[Rigid3]:
    """A hand-held walk: ``n`` cameras evenly spaced (by arc length) along the polyline
    ``waypoints`` ([K >= 2, 3] world points; default: a 100-degree arc of radius 3.1 m around the
    room centre at eye height, ~5.4 m long), i.e. small video-like baselines.

    Each camera looks ``look_distance`` metres ahead of itself, turned ``look_angle_deg`` from
    the walking direction towards the left (0 = straight ahead, pure forward motion; the default
    60 deg films the furniture diagonally while walking, which keeps enough parallax for SfM), down
    to ``look_height`` (z). ``sway`` adds a smooth hand-held wobble (metres), seeded.
    """
    n = _check_views(n)
    if waypoints is None:
        a = np.radians(np.linspace(-150.0, -50.0, 12))
        waypoints = np.stack([3.1 * np.cos(a), 3.1 * np.sin(a), 1.5 - 0.1 * np.linspace(0, 1, 12)], 1)
    pts = np.asarray(waypoints, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 2:
        raise ValueError(f"waypoints: expected [K >= 2, 3] points, got shape {pts.shape}")
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    if seg.sum() <= 0:
        raise ValueError("waypoints: the path has zero length")
    cum = np.r_[0.0, np.cumsum(seg)]
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 3)
    ang = np.radians(look_angle_deg)
    rot = np.array([[np.cos(ang), -np.sin(ang), 0.0], [np.sin(ang), np.cos(ang), 0.0], [0.0, 0.0, 1.0]])
    poses = []
    for i in range(n):
        s = cum[-1] * (i / max(n - 1, 1))
        k = min(int(np.searchsorted(cum, s, side="right")) - 1, len(seg) - 1)
        while seg[k] == 0 and k > 0:
            k -= 1
        f = (s - cum[k]) / seg[k] if seg[k] > 0 else 0.0
        eye = pts[k] + f * (pts[k + 1] - pts[k])
        eye = eye + sway * np.sin(2 * np.pi * 1.5 * i / max(n - 1, 1) + phase)
        tangent = pts[k + 1] - pts[k]
        tangent = np.array([tangent[0], tangent[1], 0.0])
        if np.linalg.norm(tangent) < 1e-12:
            tangent = np.array([1.0, 0.0, 0.0])
        heading = rot @ (tangent / np.linalg.norm(tangent))
        target = eye + look_distance * heading
        target[2] = look_height
        poses.append(look_at(eye, target))
    return poses


def street(n: int, *, half_size: float = STREET_ROOM_HALF_SIZE, wall_distance: float = 1.5,
           corner_radius: float = 1.2, look_angle_deg: float = -75.0, look_height: float = 0.4,
           seed: int = 0) -> list[Rigid3]:
    """A long walk past facades: ``n`` cameras once round a rounded-square loop
    ``wall_distance`` metres inside the walls of a room of half-size ``half_size`` (use
    ``SceneConfig(room_half_size=half_size)``), walking anticlockwise and looking
    ``look_angle_deg`` from the walking direction (negative: right, at the walls) and down to
    ``look_height`` (walls and floor in view: not a single plane). Like a street-view capture:
    each wall is seen by a few dozen consecutive views, the loop closes at the start. The loop
    is ~``8 * (half_size - wall_distance)`` m long; 250 views are ~14 cm apart.
    """
    n = _check_views(n)
    h = half_size - wall_distance
    if not (h > corner_radius > 0):
        raise ValueError(f"half_size, wall_distance, corner_radius: need half_size - wall_distance > "
                         f"corner_radius > 0, got {half_size}, {wall_distance}, {corner_radius}")
    pts = []
    for cx, cy, a0 in ((h, -h, -90.0), (h, h, 0.0), (-h, h, 90.0), (-h, -h, 180.0)):
        c = np.array([cx - np.sign(cx) * corner_radius, cy - np.sign(cy) * corner_radius])
        for a in np.radians(np.linspace(a0, a0 + 90.0, 7)):
            pts.append([*(c + corner_radius * np.array([np.cos(a), np.sin(a)])), 1.5])
    pts.append(pts[0])
    # one full turn without a duplicate first/last view
    loop = walkthrough(n + 1, waypoints=np.array(pts), look_angle_deg=look_angle_deg,
                       look_height=look_height, look_distance=3.0, sway=0.02, seed=seed)
    return loop[:n]


def hemisphere(n: int, *, radius: float = 3.0, target=(0.0, 0.0, 0.5), min_elevation_deg: float = 12.0,
               max_elevation_deg: float = 55.0, seed: int = 0) -> list[Rigid3]:
    """``n`` cameras at random positions on a spherical cap around ``target`` (elevations in
    the given range, uniform on the sphere), each looking at ``target`` with a random jitter of
    a few centimetres."""
    n = _check_views(n)
    if not (0 <= min_elevation_deg < max_elevation_deg < 90):
        raise ValueError(f"min_elevation_deg, max_elevation_deg: expected 0 <= min < max < 90, got "
                         f"{min_elevation_deg}, {max_elevation_deg}")
    rng = np.random.default_rng(seed)
    target = np.asarray(target, dtype=np.float64)
    s0, s1 = np.sin(np.radians(min_elevation_deg)), np.sin(np.radians(max_elevation_deg))
    poses = []
    for _ in range(n):
        el = np.arcsin(rng.uniform(s0, s1))
        az = rng.uniform(0, 2 * np.pi)
        eye = target + radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        poses.append(look_at(eye, target + rng.normal(0, 0.05, 3)))
    return poses


def default_distortion(model: str) -> np.ndarray:
    """Moderate, realistic distortion coefficients for ``model`` (COLMAP order, after the
    focal lengths and principal point)."""
    return {
        "SIMPLE_PINHOLE": np.zeros(0), "PINHOLE": np.zeros(0),
        "SIMPLE_RADIAL": np.array([-0.08]),
        "RADIAL": np.array([-0.1, 0.02]),
        "OPENCV": np.array([-0.12, 0.03, 4e-4, -3e-4]),
        "FULL_OPENCV": np.array([-0.12, 0.03, 4e-4, -3e-4, -0.004, 0.02, -0.01, 0.002]),
        "OPENCV_FISHEYE": np.array([0.03, -0.01, 0.002, -0.0005]),
        "SIMPLE_RADIAL_FISHEYE": np.array([0.02]),
        "RADIAL_FISHEYE": np.array([0.02, -0.004]),
    }[model]


def make_camera(model: str = "PINHOLE", width: int = 640, height: int = 480, *, fov_deg: float | None = None,
                distortion=None) -> Camera:
    """A camera of COLMAP ``model`` with a horizontal field of view ``fov_deg`` (default 60 for
    perspective, 150 for fisheye models), principal point at the image centre, square pixels,
    and ``distortion`` (default :func:`default_distortion`).

    Perspective models: f = (W / 2) / tan(fov / 2); fisheye models (equidistant-like):
    f = (W / 2) / (fov / 2). The half FOV must lie inside the model's valid range
    (``Camera.max_valid_angle``), else ValueError naming ``fov_deg``.
    """
    if model not in MODELS:
        raise ValueError(f"model: unknown camera model {model!r}; expected one of "
                         f"{sorted(m for m, s in MODELS.items() if s.supported)}")
    spec = MODELS[model]
    if not spec.supported:
        raise ValueError(f"model: {model} can be stored but not projected, so it cannot be rendered")
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name}: expected a positive integer number of pixels, got {v!r}")
        if v > 16384:
            raise ValueError(f"{name}: {v} pixels is beyond the supported 16384")
    if fov_deg is None:
        fov_deg = 150.0 if spec.fisheye else 60.0
    if not (np.isfinite(fov_deg) and fov_deg > 0):
        raise ValueError(f"fov_deg: expected a positive field of view in degrees, got {fov_deg}")
    if not spec.fisheye and fov_deg >= 179:
        raise ValueError(f"fov_deg: {fov_deg} deg is beyond what a perspective model ({model}) can "
                         "image (< 180 deg); use a fisheye model")
    if spec.fisheye and fov_deg >= 360:
        raise ValueError(f"fov_deg: {fov_deg} deg is not a field of view")
    half = np.radians(fov_deg) / 2
    f = (width / 2) / (half if spec.fisheye else np.tan(half))
    cx, cy = (width - 1) / 2, (height - 1) / 2
    dist = default_distortion(model) if distortion is None else np.asarray(distortion, dtype=np.float64).ravel()
    if dist.size != spec.num_extra:
        raise ValueError(f"distortion: {model} takes {spec.num_extra} distortion coefficients, got {dist.size}")
    head = [f, cx, cy] if spec.single_focal else [f, f, cx, cy]
    cam = Camera(model, int(width), int(height), np.r_[head, dist])
    # The whole image width must stay inside the model's invertible region.
    edge = cam.unproject(np.array([[-0.5, cy], [width - 0.5, cy], [cx, -0.5], [cx, height - 0.5]]))
    if not np.all(edge.valid):
        lim = np.degrees(cam.max_valid_angle) * 2
        raise ValueError(f"fov_deg: {fov_deg} deg with this distortion reaches beyond the valid range of "
                         f"{model} (at most ~{lim:.1f} deg across the monotonic region); lower the field of view or "
                         "the distortion")
    return cam


