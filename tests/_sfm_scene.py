"""A tiny textured scene rendered with known cameras, for SfM tests (no recon.synth needed):
a floor and two walls (a room corner) plus a box, each face a random multi-scale texture, rendered
by per-face homography warps composited with an analytic z-buffer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calib import Camera, Rigid3


def _texture(rng, size=512):
    import cv2

    img = np.zeros((size, size, 3), np.float32)
    for s in (4, 8, 16, 32, 64, 128):
        noise = rng.random((s, s, 3)).astype(np.float32)
        img += cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) / (1 + np.log2(s))
    img -= img.min()
    img /= img.max()
    # add blobs for SIFT
    for _ in range(120):
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(img, c, int(rng.integers(3, 14)), tuple(float(v) for v in rng.random(3)), -1)
    return (img * 255).astype(np.uint8)


def _faces():
    """(origin, u axis, v axis) of rectangles in world (metres); y is down (OpenCV-like world)."""
    return [
        (np.array([-3.0, 1.0, -3.0]), np.array([6.0, 0, 0]), np.array([0, 0, 6.0])),  # floor y=1
        (np.array([-3.0, -2.0, 3.0]), np.array([6.0, 0, 0]), np.array([0, 3.0, 0])),  # back wall z=3
        (np.array([3.0, -2.0, -3.0]), np.array([0, 0, 6.0]), np.array([0, 3.0, 0])),  # right wall x=3
        (np.array([-3.0, -2.0, -3.0]), np.array([0, 0, 6.0]), np.array([0, 3.0, 0])),  # left wall x=-3
        (np.array([-0.6, 0.2, 0.4]), np.array([1.0, 0, 0]), np.array([0, 0.8, 0])),  # box front z=0.4
        (np.array([-0.6, 0.2, 0.4]), np.array([1.0, 0, 0]), np.array([0, 0, 1.0])),  # box top y=0.2
        (np.array([0.4, 0.2, 0.4]), np.array([0, 0, 1.0]), np.array([0, 0.8, 0])),  # box right x=0.4
        (np.array([-0.6, 0.2, 0.4]), np.array([0, 0, 1.0]), np.array([0, 0.8, 0])),  # box left x=-0.6
    ]


def look_at(center, target, up=(0.0, -1.0, 0.0)) -> Rigid3:
    z = np.asarray(target, float) - center
    z /= np.linalg.norm(z)
    x = np.cross(z, up)  # OpenCV: x right, y down (= -up), z forward
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return Rigid3(R, -R @ center)


def render(camera: Camera, cam_from_world: Rigid3, textures) -> np.ndarray:
    import cv2

    W, H = camera.size
    K = camera.K
    img = np.zeros((H, W, 3), np.uint8)
    depth = np.full((H, W), np.inf)
    uv = camera.pixel_grid().reshape(-1, 2)
    rays = np.concatenate([(uv - camera.principal_point) / camera.focal, np.ones((len(uv), 1))], 1)
    R, t = cam_from_world.rotation, cam_from_world.translation
    for (o, u, v), tex in zip(_faces(), textures):
        ts = tex.shape[0]
        # homography texture pixel -> image pixel:  X = o + a/ts u + b/ts v
        A = np.stack([u / ts, v / ts, o], 1)  # world = A @ [a, b, 1]
        Hm = K @ (R @ A + np.outer(t, [0, 0, 1]))
        warped = cv2.warpPerspective(tex, Hm, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
        mask = cv2.warpPerspective(np.ones(tex.shape[:2], np.uint8), Hm, (W, H), flags=cv2.INTER_NEAREST)
        # plane depth along each ray: n . (X - o) = 0 with X = C + s R^T ray
        n = np.cross(u, v)
        n_c = R @ n
        d_c = n_c @ (R @ o + t)
        denom = rays @ n_c
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (d_c / denom).reshape(H, W)
        ok = (mask > 0) & (z > 0.05) & (z < depth)
        img[ok] = warped[ok]
        depth[ok] = z[ok]
    return img


def make_scene(out_dir: Path, poses: list[Rigid3], camera: Camera, *, seed: int = 0) -> list[str]:
    import cv2

    rng = np.random.default_rng(seed)
    textures = [_texture(rng) for _ in _faces()]
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for k, pose in enumerate(poses):
        name = f"view_{k:03d}.png"
        cv2.imwrite(str(out_dir / name), cv2.cvtColor(render(camera, pose, textures), cv2.COLOR_RGB2BGR))
        names.append(name)
    return names


def orbit_poses(n: int, radius: float = 2.2, height: float = -0.6, arc_deg: float = 120.0) -> list[Rigid3]:
    """Cameras on an arc around the box, looking at it (inside the room)."""
    out = []
    for a in np.radians(np.linspace(-arc_deg / 2, arc_deg / 2, n)):
        c = np.array([radius * np.sin(a), height, 0.6 - radius * np.cos(a)])
        out.append(look_at(c, np.array([0.0, 0.3, 1.2])))
    return out


def walk_poses(n: int) -> list[Rigid3]:
    """A forward walk with a slow turn (video-like: small motion between frames)."""
    out = []
    for k in range(n):
        s = k / max(n - 1, 1)
        c = np.array([-1.5 + 2.5 * s, -0.5 + 0.1 * np.sin(4 * s), -2.2 + 1.2 * s])
        target = c + np.array([np.sin(0.6 * s - 0.1), 0.25, np.cos(0.6 * s - 0.1)])
        out.append(look_at(c, target))
    return out
