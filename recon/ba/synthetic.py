"""Synthetic bundle-adjustment problems with known truth (tests, benchmarks, examples)."""

from __future__ import annotations

import numpy as np

from calib import Camera, Rigid3, look_at, matrix_from_axis_angle
from recon.ba.problem import BAProblem
from recon.scene import Image, Point3D, Reconstruction

__all__ = ["perturb_problem", "reconstruction_from_problem", "synthetic_problem"]


def synthetic_problem(num_images: int = 10, num_points: int = 500, *, model: str = "SIMPLE_RADIAL",
                      per_image_cameras: bool = False, track_length: tuple[int, int] = (2, 6),
                      noise_px: float = 0.5, seed: int = 0, width: int = 1024, height: int = 768) -> BAProblem:
    """Cameras on a ring (radius 5, jittered) looking at points in a unit box; each point is
    observed by a random subset of the images where it projects inside the frame. Observations
    get Gaussian noise of ``noise_px``. The returned poses/points are the ground truth."""
    rng = np.random.default_rng(seed)
    f = 0.9 * width
    base = {"SIMPLE_PINHOLE": [f, width / 2 - 0.5, height / 2 - 0.5],
            "PINHOLE": [f, f * 1.001, width / 2 - 0.5, height / 2 - 0.5],
            "SIMPLE_RADIAL": [f, width / 2 - 0.5, height / 2 - 0.5, -0.05],
            "RADIAL": [f, width / 2 - 0.5, height / 2 - 0.5, -0.05, 0.01],
            "OPENCV": [f, f * 1.001, width / 2 - 0.5, height / 2 - 0.5, -0.05, 0.01, 1e-4, -1e-4]}
    if model not in base:
        raise ValueError(f"model: expected one of {sorted(base)}, got {model!r}")
    ncam = num_images if per_image_cameras else 1
    cameras = []
    for _ in range(ncam):
        p = np.array(base[model], dtype=float)
        p[0] *= 1 + 0.02 * rng.standard_normal() if per_image_cameras else 1
        cameras.append(Camera(model, width, height, p))
    ang = np.linspace(0, 2 * np.pi, num_images, endpoint=False) * 0.6
    R, t = [], []
    for a in ang:
        c = np.array([5 * np.sin(a), 0.5 * rng.standard_normal(), -5 * np.cos(a)])
        Rc = look_at(c, 0.1 * rng.standard_normal(3), up=(0.0, 1.0, 0.0)).rotation  # image-down = world -y
        R.append(Rc)
        t.append(-Rc @ c)
    R, t = np.array(R), np.array(t)
    X = rng.uniform(-1.2, 1.2, (num_points, 3))
    image_camera = np.arange(num_images) if per_image_cameras else np.zeros(num_images, dtype=np.int64)
    # visibility [N, I]: in front and inside the frame (vectorised per image)
    uv_all = np.zeros((num_points, num_images, 2))
    vis = np.zeros((num_points, num_images), dtype=bool)
    for i in range(num_images):
        pr, ok = cameras[image_camera[i]].project(X @ R[i].T + t[i])
        uv_all[:, i] = pr
        vis[:, i] = ok & (pr[:, 0] >= 0) & (pr[:, 0] < width) & (pr[:, 1] >= 0) & (pr[:, 1] < height)
    # each point keeps a random subset of its visible images, of random length in track_length
    keys = np.where(vis, rng.random(vis.shape), np.inf)
    order = np.argsort(keys, axis=1)
    want = rng.integers(track_length[0], track_length[1] + 1, num_points)
    take = np.minimum(want, vis.sum(1))
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(num_images)[None].repeat(num_points, 0), axis=1)
    keep = vis & (rank < take[:, None])
    op, oi = np.nonzero(keep)
    uv = uv_all[op, oi] + noise_px * rng.standard_normal((len(op), 2))
    return BAProblem(cameras, image_camera, R, t, X, oi, op, uv.reshape(-1, 2))


def perturb_problem(problem: BAProblem, *, rotation_deg: float = 0.3, translation: float = 0.02,
                    point: float = 0.02, focal_rel: float = 0.01, seed: int = 1) -> BAProblem:
    """A copy with Gaussian noise on the free parameters (the starting point for BA)."""
    rng = np.random.default_rng(seed)
    q = problem.copy()
    I = q.num_images
    free = ~q.pose_fixed
    dR = matrix_from_axis_angle(np.radians(rotation_deg) * rng.standard_normal((I, 3)))
    q.rotations = np.where(free[:, None, None], dR @ q.rotations, q.rotations)
    q.translations = q.translations + free[:, None] * translation * rng.standard_normal((I, 3))
    q.points = q.points + (~q.point_fixed)[:, None] * point * rng.standard_normal(q.points.shape)
    cams = []
    for cam, m in zip(q.cameras, q.intrinsics_free):
        p = cam.params.copy()
        nf = 1 if cam.spec.single_focal else 2
        p[:nf] *= np.where(m[:nf], 1 + focal_rel * rng.standard_normal(nf), 1.0)
        cams.append(cam.with_params(p))
    q.cameras = cams
    return q


def reconstruction_from_problem(problem: BAProblem) -> Reconstruction:
    """A Reconstruction with camera ids c+1, image ids i+1, point ids j+1 (COLMAP style)."""
    cameras = {c + 1: cam for c, cam in enumerate(problem.cameras)}
    order = np.argsort(problem.obs_image, kind="stable")
    kp_idx = np.empty(problem.num_observations, dtype=np.int64)
    images = {}
    counts = np.bincount(problem.obs_image, minlength=problem.num_images)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for i in range(problem.num_images):
        obs = order[starts[i]:starts[i] + counts[i]]
        kp_idx[obs] = np.arange(len(obs))
        images[i + 1] = Image(i + 1, f"image_{i + 1:05d}.png", int(problem.image_camera[i]) + 1,
                              Rigid3(problem.rotations[i], problem.translations[i]),
                              problem.obs_uv[obs], problem.obs_point[obs] + 1)
    tracks: list[list] = [[] for _ in range(problem.num_points)]
    for m in range(problem.num_observations):
        tracks[problem.obs_point[m]].append((problem.obs_image[m] + 1, kp_idx[m]))
    points = {j + 1: Point3D(problem.points[j], track=np.array(tr, dtype=np.int64).reshape(-1, 2))
              for j, tr in enumerate(tracks)}
    return Reconstruction(cameras, images, points)
