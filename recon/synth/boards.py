"""Synthetic calibration boards with exact ground truth.

Renders chessboards, ChArUco boards and asymmetric circle grids through any supported
``calib.Camera`` (pinhole, OPENCV, FULL_OPENCV, OPENCV_FISHEYE, ...) at known board poses
``cam_from_board``, and gives the TRUE corner pixels (the board-frame corners of
``calib.boards.board_object_points`` projected through the camera).

Rendering is a ray cast: every output pixel is sampled ``supersample x supersample`` times on a
regular sub-pixel grid; each sample is unprojected through the camera, intersected with the
board plane and shaded from the board's texture (analytic for chessboards and circles, the
OpenCV-generated image for ChArUco). The samples are averaged, which anti-aliases edges the way
a real sensor integrates over a pixel. Optional Gaussian blur (``blur_px``) and intensity noise
(``image_noise``) follow.

Pixel convention: (0, 0) is the centre of the top-left pixel (docs/conventions.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calib import Camera, Rigid3
from calib.boards import BoardSpec, board_object_points, charuco_board

__all__ = [
    "BoardView",
    "board_texture",
    "coverage_board_poses",
    "random_board_poses",
    "render_board",
    "stereo_board_poses",
    "true_corners",
    "write_board_dataset",
    "write_stereo_board_dataset",
]

BLACK, WHITE, BACKGROUND = 0.08, 0.92, 0.5  # reflectances (0..1) of ink, paper, surroundings


def board_texture(board: BoardSpec, *, pixels_per_square: int = 64):
    """A function ``shade(x, y) -> [N] intensity in [0, 1]`` of board-frame coordinates
    (board units), white paper margin included, ``BACKGROUND`` outside the paper."""
    s = float(board.square)
    if board.kind == "chessboard":
        cols, rows = board.cols, board.rows
        x0, x1, y0, y1 = -2 * s, (cols + 1) * s, -2 * s, (rows + 1) * s  # one white square margin

        def shade(x, y):
            ix, iy = np.floor(x / s), np.floor(y / s)
            inside = (ix >= -1) & (ix <= cols - 1) & (iy >= -1) & (iy <= rows - 1)
            black = inside & (((ix + iy) % 2) == 0)  # the top-left square (-1, -1) is black
            out = np.where(black, BLACK, WHITE)
            return np.where((x >= x0) & (x < x1) & (y >= y0) & (y < y1), out, BACKGROUND)

        return shade
    if board.kind == "circles":
        cols, rows = board.cols, board.rows
        radius = 0.3 * s  # diameter 0.6 s: diagonal neighbours (1.41 s apart) stay well separated
        x0, x1 = -2 * s, (2 * (cols - 1) + 1) * s + 2 * s
        y0, y1 = -2 * s, (rows - 1) * s + 2 * s

        def shade(x, y):
            dark = np.zeros(x.shape, dtype=bool)
            for i in (np.floor(y / s), np.floor(y / s) + 1):
                j = np.round((x / s - (i % 2)) / 2.0)
                ok = (i >= 0) & (i < rows) & (j >= 0) & (j < cols)
                cx, cy = (2 * j + i % 2) * s, i * s
                dark |= ok & ((x - cx) ** 2 + (y - cy) ** 2 <= radius * radius)
            out = np.where(dark, BLACK, WHITE)
            return np.where((x >= x0) & (x < x1) & (y >= y0) & (y < y1), out, BACKGROUND)

        return shade
    # ChArUco: OpenCV's own board image (so the markers decode), sampled nearest-neighbour at
    # a resolution well above the rendered one; a half-square white margin around it.
    pps = int(pixels_per_square)
    tex = charuco_board(board).generateImage((board.cols * pps, board.rows * pps), marginSize=0, borderBits=1)
    tex = np.where(tex > 127, WHITE, BLACK)
    th, tw = tex.shape

    def shade(x, y):
        u = np.floor(x / s * pps).astype(np.int64)
        v = np.floor(y / s * pps).astype(np.int64)
        inside = (u >= 0) & (u < tw) & (v >= 0) & (v < th)
        out = np.where(inside, tex[np.clip(v, 0, th - 1), np.clip(u, 0, tw - 1)], WHITE)
        margin = 0.5 * s
        paper = (x >= -margin) & (x < board.cols * s + margin) & (y >= -margin) & (y < board.rows * s + margin)
        return np.where(paper, out, BACKGROUND)

    return shade


class _RayCache:
    """Unit rays of every supersample of every pixel (they depend on the camera only)."""

    # The exact (Newton) unprojection runs on a lattice every ``step`` pixels; samples in
    # between interpolate the ray bilinearly. The lens map is smooth, so over 2 px the error is
    # far below 1e-3 px (checked against exact unprojection in tests/test_calib_synth.py).
    def __init__(self, camera: Camera, supersample: int, step: int = 2):
        n = int(supersample)
        offs = (np.arange(n) + 0.5) / n - 0.5
        u = (np.arange(camera.width)[:, None] + offs[None, :]).ravel()
        v = (np.arange(camera.height)[:, None] + offs[None, :]).ravel()
        gu = np.arange(-step, camera.width + 2 * step, step, dtype=np.float64)
        gv = np.arange(-step, camera.height + 2 * step, step, dtype=np.float64)
        grid_rays, grid_valid = camera.unproject(np.stack(np.meshgrid(gu, gv), -1))  # [Gv, Gu, 3]
        fu = (u - gu[0]) / step
        fv = (v - gv[0]) / step
        iu = np.clip(np.floor(fu).astype(np.int64), 0, len(gu) - 2)
        iv = np.clip(np.floor(fv).astype(np.int64), 0, len(gv) - 2)
        au = (fu - iu)[None, :, None]
        av = (fv - iv)[:, None, None]
        r00 = grid_rays[iv][:, iu]
        r01 = grid_rays[iv][:, iu + 1]
        r10 = grid_rays[iv + 1][:, iu]
        r11 = grid_rays[iv + 1][:, iu + 1]
        rays = (1 - av) * ((1 - au) * r00 + au * r01) + av * ((1 - au) * r10 + au * r11)
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        gvld = grid_valid
        valid = gvld[iv][:, iu] & gvld[iv][:, iu + 1] & gvld[iv + 1][:, iu] & gvld[iv + 1][:, iu + 1]
        self.rays = rays
        self.valid = valid
        self.n = n
        self.camera = camera


def render_board(board: BoardSpec, camera: Camera, cam_from_board: Rigid3, *, supersample: int = 3,
                 blur_px: float = 0.0, image_noise: float = 0.0, rng: np.random.Generator | None = None,
                 _rays: _RayCache | None = None) -> np.ndarray:
    """Render the board seen by ``camera`` at ``cam_from_board``: [H, W] uint8 grey image.

    ``blur_px``: sigma of a Gaussian blur (pixels); ``image_noise``: sigma of additive noise in
    grey levels (0..255)."""
    cache = _rays if _rays is not None and _rays.camera is camera and _rays.n == supersample \
        else _RayCache(camera, supersample, 1 if camera.is_fisheye else 2)
    R, t = cam_from_board.rotation, cam_from_board.translation
    normal = R[:, 2]
    d = cache.rays
    denom = d @ normal
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = float(normal @ t) / denom
    hit = cache.valid & np.isfinite(lam) & (lam > 0)
    P = d * np.where(hit, lam, 0.0)[..., None]
    Xb = (P - t) @ R  # R^T (P - t), row vectors
    shade = board_texture(board)
    val = np.where(hit, shade(Xb[..., 0], Xb[..., 1]), BACKGROUND)
    n = cache.n
    H, W = camera.height, camera.width
    img = val.reshape(H, n, W, n).mean(axis=(1, 3)) * 255.0
    if blur_px > 0:
        import cv2

        img = cv2.GaussianBlur(img, (0, 0), float(blur_px))
    if image_noise > 0:
        rng = np.random.default_rng(0) if rng is None else rng
        img = img + rng.normal(0.0, image_noise, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def true_corners(board: BoardSpec, camera: Camera, cam_from_board: Rigid3):
    """Exact pixel positions [N, 2] of the board corners (ids 0..N-1) and their validity."""
    X = cam_from_board.apply(board_object_points(board))
    uv, valid = camera.project(X)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= camera.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= camera.height - 1)
    return uv, valid & inside


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _rotation_from_z_to(d):
    """Smallest rotation taking +z to the unit vector d."""
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(z, d)
    s, c = np.linalg.norm(v), float(z @ d)
    if s < 1e-12:
        return np.eye(3)
    k = v / s
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = np.arctan2(s, c)
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def _board_extent(board: BoardSpec) -> np.ndarray:
    """[4, 3] corners of the printed area (board frame) the whole of which must be visible."""
    P = board_object_points(board)
    s = board.square
    pad = {"chessboard": 1.5 * s, "circles": 1.2 * s, "charuco": 0.0}[board.kind]  # includes a white margin
    x0, y0 = P[:, 0].min() - pad, P[:, 1].min() - pad
    x1, y1 = P[:, 0].max() + pad, P[:, 1].max() + pad
    if board.kind == "charuco":
        x0, y0, x1, y1 = 0.0, 0.0, board.cols * s, board.rows * s
    return np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], dtype=np.float64)


def random_board_poses(board: BoardSpec, camera: Camera, num_views: int, rng: np.random.Generator, *,
                       max_tilt_deg: float = 40.0, max_roll_deg: float = 25.0,
                       fill: tuple[float, float] = (0.35, 0.65), margin_px: float = 8.0) -> list[Rigid3]:
    """Board poses that put the whole board inside the image, spread over the image: view k
    aims at a jittered point of a grid of targets covering the image, corners included, with
    random tilt and roll; ``fill`` is the range of the board's apparent width as a fraction of
    the image width."""
    ext = _board_extent(board)
    centre_b = ext.mean(axis=0)
    diag = np.linalg.norm(ext[2] - ext[0])
    W, H = camera.width, camera.height
    targets = [(0.5, 0.5)] + [(x, y) for y in (0.15, 0.5, 0.85) for x in (0.15, 0.5, 0.85) if (x, y) != (0.5, 0.5)]
    poses: list[Rigid3] = []
    f = float(np.mean(camera.focal))
    k = 0
    while len(poses) < num_views:
        tx, ty = targets[k % len(targets)]
        k += 1
        for attempt in range(300):
            shrink = 0.985 ** attempt
            jx, jy = rng.uniform(-0.08, 0.08, 2)
            u = (tx + jx) * (W - 1)
            v = (ty + jy) * (H - 1)
            ray, ok = camera.unproject(np.array([u, v]))
            if not ok:
                continue
            frac = rng.uniform(*fill) * shrink
            dist = f * diag / (frac * np.hypot(W, H))
            R = _rotation_from_z_to(ray) @ _rot_z(np.radians(rng.uniform(-max_roll_deg, max_roll_deg))) \
                @ _rot_x(np.radians(rng.uniform(-max_tilt_deg, max_tilt_deg))) \
                @ _rot_y(np.radians(rng.uniform(-max_tilt_deg, max_tilt_deg)))
            t = ray * dist - R @ centre_b
            pose = Rigid3(R, t)
            Xc = pose.apply(np.vstack([ext, board_object_points(board)]))
            if np.any(Xc[:, 2] <= 0.05 * dist):
                continue
            uv, valid = camera.project(Xc)
            if not np.all(valid):
                continue
            if np.all((uv[:, 0] >= margin_px) & (uv[:, 0] <= W - 1 - margin_px)
                      & (uv[:, 1] >= margin_px) & (uv[:, 1] <= H - 1 - margin_px)):
                poses.append(pose)
                break
        else:
            raise RuntimeError(f"could not place a {board} board in a {W}x{H} {camera.model} view: "
                               "board too large for the field of view?")
    return poses


def coverage_board_poses(board: BoardSpec, camera: Camera, num_views: int, rng: np.random.Generator, *,
                         max_tilt_deg: float = 65.0, max_roll_deg: float = 25.0,
                         fill: tuple[float, float] = (1.3, 2.2), min_visible: float = 0.2,
                         margin_px: float = 0.0, reach: float = 0.04,
                         targets: list[tuple[float, float]] | None = None) -> list[Rigid3]:
    """Board poses the way a careful user captures for calibration (mrcal's advice): close,
    tilted boards that reach into every corner and edge of the image, partially visible boards
    allowed (ChArUco, or any detector that gives per-corner ids).

    The views cycle over ``targets`` (fractions of the image size; default: the centre, the four
    image corners, the four edge midpoints). A view aimed at a corner or an edge puts the board's
    centre 15-30 % of the way from that point towards the image centre, with the board larger
    than the image (``fill``: apparent diagonal as a fraction of the image diagonal), so it
    overhangs the corner/edge and its visible corners (:func:`true_corners`) come within
    ``reach`` (fraction of the image diagonal) of the targeted point. Each view is tilted by
    30-100 % of ``max_tilt_deg`` about a random axis (close, strongly tilted boards separate
    focal length from distance and constrain the distortion) and rolled up to
    ``max_roll_deg``. A pose is kept when every board corner is in front of the camera and at
    least ``min_visible`` of them project inside the image (``margin_px`` from the border).
    Use the visible subset of each view with its corner ids (``Observation`` carries ids).

    ``random_board_poses`` keeps whole boards in view, which leaves the image corners without
    observations (the projection there is extrapolated)."""
    if num_views < 0:
        raise ValueError(f"num_views: expected >= 0, got {num_views}")
    if not 0 < fill[0] <= fill[1]:
        raise ValueError(f"fill: expected 0 < low <= high (apparent board diagonal / image diagonal), got {fill}")
    if not 0 < min_visible <= 1:
        raise ValueError(f"min_visible: expected a fraction in (0, 1], got {min_visible}")
    if targets is not None and len(targets) == 0:
        raise ValueError("targets: expected at least one (x, y) image fraction, got none")
    P = board_object_points(board)
    ext = _board_extent(board)
    centre_b = ext.mean(axis=0)
    diag = np.linalg.norm(ext[2] - ext[0])
    W, H = camera.width, camera.height
    # (target image point, where the board centre aims) in fractions of the image size
    corners = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    edges = [(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)]
    if targets is None:
        targets = [(0.5, 0.5)] + corners + edges
    f = float(np.mean(camera.focal))
    reach_px = reach * np.hypot(W, H)
    poses: list[Rigid3] = []
    k = 0
    while len(poses) < num_views:
        tx, ty = targets[k % len(targets)]
        k += 1
        goal = np.array([tx * (W - 1), ty * (H - 1)])
        for attempt in range(500):
            frac = rng.uniform(*fill)
            # aim the board centre a bit inside the target so the board overhangs it
            inward = rng.uniform(0.15, 0.3)
            ax = tx + (0.5 - tx) * 2 * inward + rng.uniform(-0.04, 0.04)
            ay = ty + (0.5 - ty) * 2 * inward + rng.uniform(-0.04, 0.04)
            ray, ok = camera.unproject(np.array([ax * (W - 1), ay * (H - 1)]))
            if not ok:
                continue
            dist = f * diag / (frac * np.hypot(W, H))
            axis = rng.uniform(0, 2 * np.pi)
            tilt = np.radians(rng.uniform(0.3, 1.0) * max_tilt_deg)
            R = _rotation_from_z_to(ray) @ _rot_z(np.radians(rng.uniform(-max_roll_deg, max_roll_deg))) \
                @ _rot_z(axis) @ _rot_x(tilt) @ _rot_z(-axis)
            t = ray * dist - R @ centre_b
            pose = Rigid3(R, t)
            Xc = pose.apply(P)
            if np.any(Xc[:, 2] <= 0.05 * dist):
                continue
            uv, valid = camera.project(Xc)
            inside = valid & (uv[:, 0] >= margin_px) & (uv[:, 0] <= W - 1 - margin_px) \
                & (uv[:, 1] >= margin_px) & (uv[:, 1] <= H - 1 - margin_px)
            if inside.mean() < min_visible:
                continue
            if (tx, ty) != (0.5, 0.5) and np.min(np.linalg.norm(uv[inside] - goal, axis=1)) > reach_px:
                continue
            poses.append(pose)
            break
        else:
            raise RuntimeError(f"could not place a {board} board in a {W}x{H} {camera.model} view "
                               f"reaching ({tx:g}, {ty:g}) of the image")
    return poses


@dataclass
class BoardView:
    image: np.ndarray  # [H, W] uint8
    cam_from_board: Rigid3
    corners: np.ndarray  # [N, 2] true pixel positions of all board corners (ids 0..N-1)
    visible: np.ndarray  # [N] bool


def _camera_json(camera: Camera) -> dict:
    return {"model": camera.model, "width": camera.width, "height": camera.height,
            "params": [float(p) for p in camera.params],
            "param_names": list(camera.spec.param_names),
            "pixel_convention": "(0, 0) is the centre of the top-left pixel"}


def write_board_dataset(out, *, kind: str = "chessboard", cols: int = 9, rows: int = 6, square: float = 0.03,
                        marker: float | None = None, dictionary: str | None = None, num_views: int = 20,
                        camera: Camera | None = None, seed: int = 0, noise_px: float = 0.0,
                        image_noise: float = 0.0, blur_px: float = 0.0, supersample: int = 3,
                        max_tilt_deg: float = 40.0, max_roll_deg: float = 25.0,
                        fill: tuple[float, float] = (0.35, 0.65),
                        cams_from_board: list[Rigid3] | None = None, prefix: str = "") -> Path:
    """Render ``num_views`` board images into ``out/images/`` and write ``out/gt.json``.

    gt.json holds the board spec, the camera (COLMAP model name, OUR pixel-centre convention),
    and per view: image path, ``cam_from_board`` (rotation [3,3], translation [3], board units),
    the true corner pixels (``corners``, ids 0..N-1), ``visible``, and ``corners_noisy`` (true
    corners + Gaussian noise of sigma ``noise_px`` per axis, for tests that skip detection).
    ``fill``: range of the board's apparent size as a fraction of the image diagonal.
    Pass ``cams_from_board`` to render given views (e.g. the right camera of a stereo rig)."""
    import cv2

    if camera is None:
        camera = Camera("OPENCV", 640, 480, [600.0, 600.0, 319.5, 239.5, -0.12, 0.05, 0.0005, -0.0003])
    if kind == "charuco":
        board = BoardSpec("charuco", cols, rows, square, marker if marker else 0.75 * square,
                          dictionary or "DICT_5X5_100")
    else:
        board = BoardSpec(kind, cols, rows, square)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    poses = cams_from_board
    if poses is None:
        poses = random_board_poses(board, camera, num_views, rng, max_tilt_deg=max_tilt_deg,
                                   max_roll_deg=max_roll_deg, fill=fill)
    cache = _RayCache(camera, supersample, 1 if camera.is_fisheye else 2)
    views = []
    for k, pose in enumerate(poses):
        img = render_board(board, camera, pose, supersample=supersample, blur_px=blur_px,
                           image_noise=image_noise, rng=rng, _rays=cache)
        name = f"images/{prefix}{k:04d}.png"
        cv2.imwrite(str(out / name), img)
        uv, vis = true_corners(board, camera, pose)
        noisy = uv + rng.normal(0.0, noise_px, uv.shape) if noise_px > 0 else uv
        views.append({"image": name,
                      "cam_from_board": {"rotation": pose.rotation.tolist(), "translation": pose.translation.tolist(),
                                         "quat_wxyz": pose.quat_wxyz.tolist()},
                      "corners": uv.tolist(), "visible": vis.tolist(), "corners_noisy": noisy.tolist()})
    gt = {"version": 1, "kind": board.kind, "board": str(board), "cols": board.cols, "rows": board.rows,
          "square": board.square, "marker": board.marker, "dictionary": board.dictionary,
          "camera": _camera_json(camera), "noise_px": noise_px, "image_noise": image_noise,
          "blur_px": blur_px, "supersample": supersample, "seed": seed, "views": views}
    (out / "gt.json").write_text(json.dumps(gt, indent=1))
    return out


def stereo_board_poses(board: BoardSpec, left: Camera, right: Camera, right_from_left: Rigid3, num_pairs: int,
                       rng: np.random.Generator, *, distance: tuple[float, float], max_tilt_deg: float = 40.0,
                       max_roll_deg: float = 25.0, spread: float = 1.0, margin_px: float = 4.0) -> list[Rigid3]:
    """Left ``cam_from_board`` poses of a board seen whole by both cameras of a rig (the right
    pose is ``right_from_left @ pose``).

    ``distance``: range of the board centre's depth in the left camera (board units).
    ``spread``: how far from the middle of the two cameras' common view the board centre may be,
    as a fraction of the largest offset that keeps it in view (0: always in the middle).
    ``max_tilt_deg`` / ``max_roll_deg``: uniform tilt about x and y, roll about z. A nearly
    fronto-parallel capture in the middle of a small image (``max_tilt_deg`` ~ 3,
    ``spread`` ~ 0.2) is the poorly conditioned case: neither camera's focal length nor its
    distortion is constrained by such views alone."""
    if num_pairs < 0:
        raise ValueError(f"num_pairs: expected >= 0, got {num_pairs}")
    if not 0 < distance[0] <= distance[1]:
        raise ValueError(f"distance: expected 0 < near <= far, got {distance}")
    if not 0 <= spread <= 1:
        raise ValueError(f"spread: expected a fraction in [0, 1], got {spread}")
    ext = _board_extent(board)
    centre_b = ext.mean(axis=0)
    half_base = -0.5 * right_from_left.inverse().translation  # midpoint between the camera centres, left frame
    W, H = left.width, left.height
    f = float(np.mean(left.focal))
    poses: list[Rigid3] = []
    for _ in range(num_pairs):
        for attempt in range(2000):
            z = rng.uniform(*distance)
            reach = 0.5 * z / f * np.array([W, H]) * spread
            c = np.array([rng.uniform(-reach[0], reach[0]), rng.uniform(-reach[1], reach[1]), z])
            c[:2] -= half_base[:2]
            R = _rot_z(np.radians(rng.uniform(-max_roll_deg, max_roll_deg))) \
                @ _rot_x(np.radians(rng.uniform(-max_tilt_deg, max_tilt_deg))) \
                @ _rot_y(np.radians(rng.uniform(-max_tilt_deg, max_tilt_deg)))
            pose = Rigid3(R, c - R @ centre_b)
            ok = True
            for cam, p in ((left, pose), (right, right_from_left @ pose)):
                uv, valid = cam.project(p.apply(ext))
                ok &= bool(np.all(valid) and np.all((uv >= margin_px) & (uv <= np.array([W, H]) - 1 - margin_px)))
            if ok:
                poses.append(pose)
                break
        else:
            raise RuntimeError(f"could not place a {board} board in both {W}x{H} views at depth {distance}")
    return poses


def write_stereo_board_dataset(out, board: BoardSpec, left: Camera, right: Camera, right_from_left: Rigid3,
                               cams_left_from_board: list[Rigid3], *, blur_px: float = 0.0, image_noise: float = 0.0,
                               supersample: int = 3, seed: int = 0) -> Path:
    """Render a rig's board pairs: ``out/left/NNNN.png``, ``out/right/NNNN.png`` (pair k = the
    k-th of each, sorted) and ``out/gt.json`` (both cameras, ``right_from_left``, the left
    ``cam_from_board`` poses, the true corners of both images)."""
    import cv2

    out = Path(out)
    for side in ("left", "right"):
        (out / side).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    caches = {side: _RayCache(cam, supersample, 1 if cam.is_fisheye else 2) for side, cam in
              (("left", left), ("right", right))}
    views = []
    for k, pose in enumerate(cams_left_from_board):
        view = {"cam_from_board": {"rotation": pose.rotation.tolist(), "translation": pose.translation.tolist()}}
        for side, cam, p in (("left", left, pose), ("right", right, right_from_left @ pose)):
            img = render_board(board, cam, p, supersample=supersample, blur_px=blur_px, image_noise=image_noise,
                               rng=rng, _rays=caches[side])
            cv2.imwrite(str(out / side / f"{k:04d}.png"), img)
            view[f"{side}_corners"] = true_corners(board, cam, p)[0].tolist()
        views.append(view)
    gt = {"version": 1, "board": str(board), "left": _camera_json(left), "right": _camera_json(right),
          "right_from_left": {"rotation": right_from_left.rotation.tolist(),
                              "translation": right_from_left.translation.tolist()},
          "blur_px": blur_px, "image_noise": image_noise, "views": views}
    (out / "gt.json").write_text(json.dumps(gt, indent=1))
    return out
