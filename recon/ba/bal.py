"""Bundle Adjustment in the Large (BAL) problem files (Agarwal et al. 2010,
https://grail.cs.washington.edu/projects/bal/), converted to our conventions at this edge.

BAL's file layout (text, whitespace-separated)::

    <num_cameras> <num_points> <num_observations>
    <camera_index> <point_index> <x> <y>          (num_observations lines)
    <9 camera parameters, one per line>            (num_cameras blocks: rodrigues r[3], t[3], f, k1, k2)
    <3 point coordinates, one per line>            (num_points blocks)

BAL's camera convention: ``P = R X + t`` (R from the rotation vector r), ``p = -P / P.z`` (the
camera looks down its -z axis, +y up), ``p' = f (1 + k1 |p|^2 + k2 |p|^4) p``, and the
observation (x, y) equals p' in pixels relative to the image centre, +y up.

Ours (docs/conventions.md) is OpenCV: x right, y down, z forward, pixels from the top-left pixel
centre. With F = diag(1, -1, -1): ``R_ours = F R_bal``, ``t_ours = F t_bal`` (so X_ours = F P),
the normalised coordinates are ``(x_n, y_n) = (p.x, -p.y)``, the camera is
``RADIAL(f, cx, cy, k1, k2)`` and pixels are ``u = x + cx``, ``v = -y + cy``. BAL gives no image
size: we pick an even width/height enclosing every observation, centre (W - 1) / 2 (exact in
binary, so the round trip is exact).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calib import Camera, axis_angle_from_matrix, matrix_from_axis_angle
from recon.ba.problem import BAProblem
from recon.errors import FormatError

__all__ = ["BAL_FLIP", "read_bal", "write_bal"]

BAL_FLIP = np.diag([1.0, -1.0, -1.0])  # BAL camera frame -> OpenCV camera frame


def read_bal(path) -> BAProblem:
    """Read a BAL problem (plain text, or .bz2 / .gz compressed) into a :class:`BAProblem`:
    one RADIAL camera per image, f, k1, k2 free and the principal point fixed (as in BAL)."""
    path = Path(path)
    try:
        if path.suffix == ".bz2":
            import bz2

            text = bz2.open(path, "rt").read()
        elif path.suffix == ".gz":
            import gzip

            text = gzip.open(path, "rt").read()
        else:
            text = path.read_text()
    except OSError as e:
        raise FormatError(path, f"cannot read: {e}") from None
    tokens = text.split()
    try:
        nc, npt, nobs = (int(x) for x in tokens[:3])
    except (ValueError, IndexError):
        raise FormatError(path, "expected a header '<num_cameras> <num_points> <num_observations>'") from None
    need = 3 + 4 * nobs + 9 * nc + 3 * npt
    if len(tokens) < need:
        raise FormatError(path, f"truncated: expected {need} numbers for {nc} cameras, {npt} points and "
                                f"{nobs} observations, found {len(tokens)}")
    try:
        vals = np.array(tokens[3:need], dtype=np.float64)
    except ValueError as e:
        raise FormatError(path, f"non-numeric value: {e}") from None
    obs = vals[: 4 * nobs].reshape(nobs, 4)
    cams = vals[4 * nobs: 4 * nobs + 9 * nc].reshape(nc, 9)
    pts = vals[4 * nobs + 9 * nc:].reshape(npt, 3)
    ci, pi = obs[:, 0].astype(np.int64), obs[:, 1].astype(np.int64)
    if nobs and (ci.min() < 0 or ci.max() >= nc or pi.min() < 0 or pi.max() >= npt):
        raise FormatError(path, "observation refers to a camera or point index out of range")
    if np.any(cams[:, 6] <= 0):
        bad = np.nonzero(cams[:, 6] <= 0)[0][:5].tolist()
        raise FormatError(path, f"non-positive focal length for cameras {bad}")
    # image size: even, enclosing every observation of that camera, centre (W - 1) / 2
    half = np.zeros((nc, 2))
    np.maximum.at(half, ci, np.abs(obs[:, 2:4]))
    size = 2 * np.ceil(half + 1.0).astype(np.int64)
    cameras, R, t = [], [], []
    for k in range(nc):
        r, tt, f, k1, k2 = cams[k, :3], cams[k, 3:6], cams[k, 6], cams[k, 7], cams[k, 8]
        W, H = int(size[k, 0]), int(size[k, 1])
        cameras.append(Camera("RADIAL", W, H, [f, (W - 1) / 2.0, (H - 1) / 2.0, k1, k2]))
        R.append(BAL_FLIP @ matrix_from_axis_angle(r))
        t.append(BAL_FLIP @ tt)
    cx = np.array([c.params[1] for c in cameras]).reshape(-1)
    cy = np.array([c.params[2] for c in cameras]).reshape(-1)
    uv = np.stack([obs[:, 2] + cx[ci], -obs[:, 3] + cy[ci]], 1) if nobs else np.zeros((0, 2))
    masks = [np.array([True, False, False, True, True]) for _ in range(nc)]
    return BAProblem(cameras, np.arange(nc), np.array(R).reshape(-1, 3, 3), np.array(t).reshape(-1, 3),
                     pts, ci, pi, uv, masks)


def write_bal(path, problem: BAProblem) -> None:
    """Write a problem as a BAL file. Needs one camera per image, each RADIAL (or SIMPLE_RADIAL /
    SIMPLE_PINHOLE, written with the missing k's as 0)."""
    if not np.array_equal(problem.image_camera, np.arange(problem.num_images)) or \
            len(problem.cameras) != problem.num_images:
        raise ValueError("problem: BAL stores one camera per image (image_camera must be 0..I-1)")
    lines = [f"{problem.num_images} {problem.num_points} {problem.num_observations}"]
    cxy = []
    params = []
    for k, cam in enumerate(problem.cameras):
        p = cam.params
        if cam.model == "RADIAL":
            f, cx, cy, k1, k2 = p
        elif cam.model == "SIMPLE_RADIAL":
            (f, cx, cy, k1), k2 = p, 0.0
        elif cam.model == "SIMPLE_PINHOLE":
            (f, cx, cy), k1, k2 = p, 0.0, 0.0
        else:
            raise ValueError(f"problem.cameras[{k}]: BAL holds f, k1, k2 only, got {cam.model}")
        cxy.append((cx, cy))
        r = axis_angle_from_matrix(BAL_FLIP @ problem.rotations[k])
        tt = BAL_FLIP @ problem.translations[k]
        params.append(np.r_[r, tt, f, k1, k2])
    cxy = np.array(cxy).reshape(-1, 2)
    ci, pi = problem.obs_image, problem.obs_point
    x = problem.obs_uv[:, 0] - cxy[ci, 0]
    y = -(problem.obs_uv[:, 1] - cxy[ci, 1])
    lines += [f"{a} {b} {u:.17g} {v:.17g}" for a, b, u, v in zip(ci, pi, x, y)]
    lines += [f"{v:.17g}" for prm in params for v in prm]
    lines += [f"{v:.17g}" for v in problem.points.ravel()]
    Path(path).write_text("\n".join(lines) + "\n")
