"""A tiny exact ray-caster for two-view / stereo tests (fast enough for the non-slow suite):
a slanted textured background plane plus a textured box face in front of it (occlusions),
seen through any calib.Camera (distortion included) at any pose. Ground-truth z-depth comes
with every render. recon.synth renders richer scenes; this one is cheap and analytic."""

from __future__ import annotations

import numpy as np

from calib import Camera, Rigid3


def _texture(seed: int, size: int = 1024) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    acc = np.zeros((size, size, 3), np.float32)
    for k, s in enumerate((8, 32, 128, 512, 1024)):
        n = rng.random((s, s, 3)).astype(np.float32)
        acc += cv2.resize(n, (size, size), interpolation=cv2.INTER_CUBIC) * (0.7 ** k)
    acc -= acc.min()
    acc /= acc.max()
    return acc


class PlaneBoxScene:
    """World frame = OpenCV camera axes of a reference camera at the origin.

    background: plane z = z_back + slope * x (metres), textured in (x, y);
    box face:   the rectangle z = z_box, x in box_x, y in box_y, textured in (x, y).
    """

    def __init__(self, seed: int = 0, z_back: float = 6.0, slope: float = 0.25, z_box: float = 3.0,
                 box_x=(-0.6, 0.5), box_y=(-0.4, 0.6), texel: float = 0.008):
        self.z_back, self.slope, self.z_box = z_back, slope, z_box
        self.box_x, self.box_y = box_x, box_y
        self.tex = [_texture(seed), _texture(seed + 1)]
        self.texel = texel

    def _sample(self, k, X, Y):
        """Bilinear, wrapping texture lookup at world (X, Y) [N] -> [N, 3]."""
        t = self.tex[k]
        s = t.shape[0]
        x = X / self.texel
        y = Y / self.texel
        x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        x0, y0 = x0 % s, y0 % s
        x1, y1 = (x0 + 1) % s, (y0 + 1) % s
        return ((1 - fx) * (1 - fy) * t[y0, x0] + fx * (1 - fy) * t[y0, x1]
                + (1 - fx) * fy * t[y1, x0] + fx * fy * t[y1, x1])

    def _cast(self, camera: Camera, cam_from_world: Rigid3, uv: np.ndarray):
        dirs_cam, ok = camera.unproject(uv)
        world_from_cam = cam_from_world.inverse()
        C = world_from_cam.translation
        D = dirs_cam @ world_from_cam.rotation.T
        with np.errstate(divide="ignore", invalid="ignore"):
            lam_b = (self.z_back + self.slope * C[0] - C[2]) / (D[:, 2] - self.slope * D[:, 0])
            lam_f = (self.z_box - C[2]) / D[:, 2]
        Pf = C + lam_f[:, None] * D
        hit_f = (lam_f > 0) & (Pf[:, 0] >= self.box_x[0]) & (Pf[:, 0] <= self.box_x[1]) & \
            (Pf[:, 1] >= self.box_y[0]) & (Pf[:, 1] <= self.box_y[1])
        hit_b = lam_b > 0
        use_f = hit_f & (~hit_b | (lam_f < lam_b))
        lam = np.where(use_f, lam_f, np.where(hit_b, lam_b, np.nan))
        valid = ok & np.isfinite(lam)
        P = C + np.where(valid, lam, 0.0)[:, None] * D
        col = np.zeros((P.shape[0], 3), np.float32)
        for k, sel in ((0, valid & ~use_f), (1, valid & use_f)):
            if sel.any():
                col[sel] = self._sample(k, P[sel, 0], P[sel, 1])
        z = np.where(valid, cam_from_world.apply(P)[:, 2], np.nan)
        return col, z, valid

    def render(self, camera: Camera, cam_from_world: Rigid3, supersample: int = 1):
        """(rgb uint8 [H, W, 3], depth float32 [H, W] z in the camera frame at pixel centres
        (NaN where no surface), valid [H, W])."""
        w, h = camera.size
        ss = supersample
        off = (np.arange(ss) + 0.5) / ss - 0.5
        gx = (np.arange(w)[:, None] + off[None, :]).ravel()
        gy = (np.arange(h)[:, None] + off[None, :]).ravel()
        u, v = np.meshgrid(gx, gy)
        col, _, _ = self._cast(camera, cam_from_world, np.stack([u, v], -1).reshape(-1, 2))
        rgb = col.reshape(h, ss, w, ss, 3).mean(axis=(1, 3))
        _, z, valid = self._cast(camera, cam_from_world, camera.pixel_grid().reshape(-1, 2))
        return (np.clip(rgb * 255, 0, 255).round().astype(np.uint8), z.reshape(h, w).astype(np.float32),
                valid.reshape(h, w))


def pinhole(w=480, h=360, f=420.0) -> Camera:
    return Camera("PINHOLE", w, h, np.array([f, f, (w - 1) / 2, (h - 1) / 2]))


def rectified_pair(scene: PlaneBoxScene, camera: Camera, baseline: float):
    """Left at the origin, right at +baseline x (ideal rectified rig). Returns left, right,
    depth_left, depth_right, gt disparity left (f B / Z), non-occluded mask (left pixels whose
    surface point is seen by the right camera)."""
    left_T = Rigid3.identity()
    right_T = Rigid3(np.eye(3), np.array([-baseline, 0.0, 0.0]))
    L, zl, vl = scene.render(camera, left_T)
    R, zr, _vr = scene.render(camera, right_T)
    f = camera.focal[0]
    dl = f * baseline / zl
    dr = f * baseline / zr
    hgt, wid = zl.shape
    u = np.arange(wid)[None, :]
    xr = np.rint(u - np.nan_to_num(dl, nan=-1e6)).astype(np.int64)
    inside = (xr >= 0) & (xr < wid) & vl
    back = dr[np.arange(hgt)[:, None], np.clip(xr, 0, wid - 1)]
    nonocc = inside & (np.abs(back - dl) < 0.5)
    return L, R, zl, zr, dl.astype(np.float32), nonocc
