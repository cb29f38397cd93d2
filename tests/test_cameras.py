"""calib.cameras against the implementations users trust: OpenCV (cv2.projectPoints,
cv2.undistortPointsIter, cv2.fisheye.*) and COLMAP (pycolmap.Camera img_from_cam / cam_from_img),
plus round trips, the valid-region masks, analytic Jacobians against finite differences, image
resizing/cropping and input checking.

Pixel convention: ours and OpenCV put pixel (0, 0) at the centre of the top-left pixel; COLMAP
at (0.5, 0.5), so a pycolmap camera gets cx + 0.5, cy + 0.5 and its pixels are shifted by 0.5.
"""

from __future__ import annotations

import cv2
import numpy as np
import pycolmap
import pytest

from calib import MODELS, Camera, distort, project_jacobians, undistort

W, H = 640, 480

# Strong but invertible lenses: the image corners are far from the pinhole prediction (tens to
# hundreds of pixels) and still inside each model's monotonic region.
PARAMS = {
    "SIMPLE_PINHOLE": [420.0, 319.5, 239.5],
    "PINHOLE": [410.0, 430.0, 321.2, 237.8],
    "SIMPLE_RADIAL": [400.0, 319.5, 239.5, -0.1],
    "RADIAL": [400.0, 318.0, 241.0, -0.3, 0.08],
    "OPENCV": [400.0, 405.0, 322.0, 238.0, -0.3, 0.08, 0.002, -0.0015],
    "OPENCV_FISHEYE": [250.0, 255.0, 319.5, 239.5, 0.05, -0.01, 0.002, -0.0005],
    "FULL_OPENCV": [400.0, 405.0, 322.0, 238.0, -0.2, 0.09, 0.001, -0.0015, 0.01, 0.1, 0.01, 0.002],
    "SIMPLE_RADIAL_FISHEYE": [260.0, 319.5, 239.5, 0.03],
    "RADIAL_FISHEYE": [260.0, 319.5, 239.5, 0.03, -0.004],
}
PROJECTABLE = [m for m, s in MODELS.items() if s.supported]
FISHEYE = {m for m in PROJECTABLE if MODELS[m].fisheye}
CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-16)
# cv2.fisheye.undistortPoints marks a point whose last step exceeds eps as failed (-1e6).
CRITERIA_FISHEYE = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)


def test_every_supported_model_is_tested():
    assert sorted(PARAMS) == sorted(PROJECTABLE)


def make_camera(model: str) -> Camera:
    return Camera(model, W, H, PARAMS[model])


def image_pixels(rng, n: int = 400, margin: float = 0.0) -> np.ndarray:
    """Uniform pixels over the whole image (edges at -0.5 and W - 0.5) plus its four corners."""
    lo, hi = -0.5 - margin, np.array([W, H]) - 0.5 + margin
    corners = np.array([[lo, lo], [hi[0], lo], [lo, hi[1]], hi])
    return np.concatenate([rng.uniform(lo, hi, (n, 2)), corners])


def points_seen(cam: Camera, rng, n: int = 400) -> np.ndarray:
    """Camera-frame points whose images cover the whole image, corners included (z > 0)."""
    rays, valid = cam.unproject(image_pixels(rng, n))
    rays = rays[valid & (rays[:, 2] > 0.05)]
    return rays * rng.uniform(0.5, 5.0, (len(rays), 1))


def to_pycolmap(cam: Camera):
    p = cam.params.copy()
    i = 1 if cam.spec.single_focal else 2
    p[i:i + 2] += 0.5  # COLMAP: pixel centre of the top-left pixel at (0.5, 0.5)
    return pycolmap.Camera(model=cam.model, width=cam.width, height=cam.height, params=p)


def fisheye_theta_d(cam: Camera, uv: np.ndarray) -> np.ndarray:
    return np.linalg.norm((uv - cam.principal_point) / cam.focal, axis=-1)


# ------------------------------------------------------------------------------------------
# project / unproject against OpenCV and COLMAP
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", PROJECTABLE)
def test_points_reach_the_image_corners(model, rng):
    """The test points really include strongly distorted corners: their pixels reach the
    corners, and there the lens moves them far from where a pinhole would put them."""
    cam = make_camera(model)
    X = points_seen(cam, rng)
    uv, valid = cam.project(X)
    assert valid.all()
    corner_dist = np.min(np.linalg.norm(uv[:, None] - np.array([[-0.5, -0.5], [W - 0.5, H - 0.5]]), axis=2), 0)
    assert np.all(corner_dist < 1e-6)
    if model not in ("SIMPLE_PINHOLE", "PINHOLE"):
        pinhole = X[:, :2] / X[:, 2:] * cam.focal + cam.principal_point
        assert np.max(np.linalg.norm(pinhole - uv, axis=1)) > 20.0


@pytest.mark.parametrize("model", PROJECTABLE)
def test_project_matches_opencv(model, rng):
    cam = make_camera(model)
    X = points_seen(cam, rng)
    uv, valid = cam.project(X)
    assert valid.all()
    if model in FISHEYE:
        ref, _ = cv2.fisheye.projectPoints(X[:, None], np.zeros(3), np.zeros(3), cam.K, cam.opencv_dist())
    else:
        ref, _ = cv2.projectPoints(X, np.zeros(3), np.zeros(3), cam.K, cam.opencv_dist())
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), rtol=0, atol=1e-9)


@pytest.mark.parametrize("model", PROJECTABLE)
def test_project_matches_pycolmap(model, rng):
    cam = make_camera(model)
    X = points_seen(cam, rng)
    ref = to_pycolmap(cam).img_from_cam(X) - 0.5
    np.testing.assert_allclose(cam.project(X).uv, ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(cam.img_from_cam(X), ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("model", PROJECTABLE)
def test_cam_from_img_matches_pycolmap(model, rng):
    cam = make_camera(model)
    uv = image_pixels(rng)
    ours = cam.cam_from_img(uv)
    ref = to_pycolmap(cam).cam_from_img(uv + 0.5)
    ok = np.all(np.isfinite(ours), axis=1)
    assert ok.all()  # every pixel of these images has a unique ray in front of the camera
    # Compare in pixels of the undistorted pinhole image (normalised * focal).
    np.testing.assert_allclose(ours * cam.focal, ref * cam.focal, rtol=0, atol=1e-7)


@pytest.mark.parametrize("model", PROJECTABLE)
def test_unproject_matches_opencv(model, rng):
    cam = make_camera(model)
    uv = image_pixels(rng)
    ours = cam.cam_from_img(uv)
    if model in FISHEYE:
        # cv2.fisheye.undistortPoints clamps theta_d to pi / 2: compare where it does not.
        uv = uv[fisheye_theta_d(cam, uv) < np.pi / 2 - 1e-3]
        ours = cam.cam_from_img(uv)
        ref = cv2.fisheye.undistortPoints(uv[:, None], cam.K, cam.opencv_dist(),
                                          criteria=CRITERIA_FISHEYE)
    else:
        ref = cv2.undistortPointsIter(uv[:, None], cam.K, cam.opencv_dist(), None, None, CRITERIA)
    assert len(uv) > 100
    # OpenCV iterates in float64 too but with its own stopping rule: 1e-6 undistorted px.
    np.testing.assert_allclose(ours * cam.focal, ref.reshape(-1, 2) * cam.focal, rtol=0, atol=1e-6)


@pytest.mark.parametrize("model", PROJECTABLE)
def test_unproject_returns_unit_rays_that_project_back(model, rng):
    cam = make_camera(model)
    uv = image_pixels(rng, margin=0.0)
    rays, valid = cam.unproject(uv)
    assert valid.all()
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-12)
    back, vb = cam.project(rays * 3.7)
    assert vb.all()
    np.testing.assert_allclose(back, uv, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------
# distort / undistort round trips and the valid region
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", PROJECTABLE)
def test_undistort_inverts_distort_inside_valid_region(model, rng):
    cam = make_camera(model)
    # Radii up to 99% of the monotonic limit (capped where tan blows up), random directions.
    theta_max = min(cam.max_valid_angle, np.radians(85.0))
    theta = np.concatenate([rng.uniform(0, 0.99 * theta_max, 500), [0.0, 0.99 * theta_max]])
    phi = rng.uniform(0, 2 * np.pi, len(theta))
    xy = np.tan(theta)[:, None] * np.stack([np.cos(phi), np.sin(phi)], 1)
    xy_d = distort(cam, xy)
    back, valid = undistort(cam, xy_d)
    assert valid.all()
    err_px = np.abs(back - xy) * cam.focal
    assert err_px.max() < 1e-9


def test_undistort_strong_rational_lens():
    """Regression: on this FULL_OPENCV lens (barrel near the centre, strong pincushion beyond
    r = 2) plain Newton started at x = x_d overshot and diverged for about 2% of the points
    between 68 and 85 degrees; the radial 1-D initialisation + backtracking converges."""
    cam = make_camera("FULL_OPENCV")
    xy = np.array([[2.70588692, 0.53105592], [-0.86970905, -2.48510969], [1.37335185, -2.42560653]])
    back, valid = undistort(cam, distort(cam, xy))
    assert valid.all()
    np.testing.assert_allclose(back, xy, rtol=0, atol=1e-12)


@pytest.mark.parametrize("model", PROJECTABLE)
def test_undistort_keeps_shapes(model):
    cam = make_camera(model)
    xy = np.full((2, 3, 2), 0.1)
    out, valid = undistort(cam, xy)
    assert out.shape == (2, 3, 2) and valid.shape == (2, 3)
    assert cam.project(np.ones((4, 5, 3))).uv.shape == (4, 5, 2)
    assert cam.unproject(np.zeros((4, 5, 2))).directions.shape == (4, 5, 3)


def test_barrel_fold_is_invalid_not_garbage():
    """SIMPLE_RADIAL k = -0.3: r_d = r (1 - 0.3 r^2) peaks at r = 1/sqrt(0.9) (the fold),
    r_d max = 2 / (3 sqrt(0.9)). Beyond it distorted radii have no pre-image, and points beyond
    the fold project to where points inside the fold already go."""
    k = -0.3
    cam = Camera("SIMPLE_RADIAL", W, H, [300.0, 319.5, 239.5, k])
    r_fold = 1 / np.sqrt(-3 * k)
    rd_max = r_fold * (1 + k * r_fold**2)
    assert np.tan(cam.max_valid_angle) == pytest.approx(r_fold, rel=1e-3)

    # Forward: inside the fold valid, beyond the fold invalid.
    r = np.array([0.5, 0.98 * r_fold, 1.02 * r_fold, 1.5, 3.0])
    X = np.stack([r, np.zeros_like(r), np.ones_like(r)], 1)
    assert cam.project(X).valid.tolist() == [True, True, False, False, False]

    # Inverse: distorted radii beyond rd_max have no solution; near the peak the true
    # (inside-fold) solution is found, never the second pre-image beyond the fold.
    rd = np.array([0.3, 0.999 * rd_max, 1.001 * rd_max, 1.2, 5.0])
    xy_d = np.stack([rd, np.zeros_like(rd)], 1)
    xy, valid = undistort(cam, xy_d)
    assert valid.tolist() == [True, True, False, False, False]
    assert np.all(np.hypot(*xy[valid].T) <= r_fold)
    np.testing.assert_allclose(distort(cam, xy[valid]), xy_d[valid], atol=1e-12)

    # The image corners (r_d = 400 / 300) are beyond the fold: unproject says so.
    uv = np.array([[-0.5, -0.5], [639.5, 479.5], [319.5, 239.5]])
    rays, valid = cam.unproject(uv)
    assert valid.tolist() == [False, False, True]
    assert np.all(np.isnan(cam.cam_from_img(uv)[:2]))
    assert np.all(np.isfinite(rays))  # placeholders stay finite; `valid` says not to use them


def test_fisheye_fold_is_invalid():
    """OPENCV_FISHEYE with k1 < 0 strong enough that theta_d(theta) turns back before 180 deg."""
    cam = Camera("OPENCV_FISHEYE", W, H, [200.0, 200.0, 319.5, 239.5, -0.2, 0.0, 0.0, 0.0])
    # theta_d = theta (1 - 0.2 theta^2): d/dtheta = 1 - 0.6 theta^2 = 0 at theta = 1/sqrt(0.6).
    theta_fold = 1 / np.sqrt(0.6)
    assert cam.max_valid_angle == pytest.approx(theta_fold, rel=1e-3)
    td_max = theta_fold * (1 - 0.2 * theta_fold**2)
    rays = np.array([[np.sin(t), 0, np.cos(t)] for t in (0.3, 0.99 * theta_fold, 1.01 * theta_fold)])
    assert cam.project(rays).valid.tolist() == [True, True, False]
    uv = cam.principal_point + np.array([[0.5, 0.0], [0.999, 0.0], [1.001, 0.0]]) * td_max * 200.0
    dirs, valid = cam.unproject(uv)
    assert valid.tolist() == [True, True, False]
    back = cam.project(dirs[valid]).uv
    np.testing.assert_allclose(back, uv[valid], atol=1e-9)


@pytest.mark.parametrize("model", ["SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "OPENCV_FISHEYE"])
def test_fisheye_beyond_90_degrees(model):
    """Fisheye models are angle-based: a ray at 100 degrees from the axis (z < 0) is valid when the
    lens is monotonic there, and unproject gives it back. COLMAP and OpenCV divide by z and
    cannot represent it (pycolmap returns NaN)."""
    cam = make_camera(model)
    if cam.max_valid_angle < np.radians(100):
        pytest.skip("lens folds before 100 degrees")
    t = np.radians(100.0)
    ray = np.array([np.sin(t) * 0.6, np.sin(t) * 0.8, np.cos(t)])
    uv, valid = cam.project(ray)
    assert valid
    back, vb = cam.unproject(uv)
    assert vb
    np.testing.assert_allclose(back, ray, atol=1e-12)
    assert np.all(np.isnan(cam.cam_from_img(uv)))  # no finite pinhole coordinate behind z = 0


@pytest.mark.parametrize("model", sorted(FISHEYE))
def test_fisheye_point_straight_behind_is_invalid(model):
    """At 180 degrees the direction to the axis is undefined (its image would be a circle)."""
    spec = MODELS[model]
    head = [260.0, 319.5, 239.5] if spec.single_focal else [260.0, 260.0, 319.5, 239.5]
    cam = Camera(model, W, H, head + [0.0] * spec.num_extra)
    assert cam.max_valid_angle == pytest.approx(np.pi)
    _, valid = cam.project(np.array([[0.0, 0.0, -2.0], [0.0, 0.0, 0.0], [1e-3, 0.0, -2.0]]))
    assert valid.tolist() == [False, False, True]


@pytest.mark.parametrize("model", [m for m in PROJECTABLE if m not in FISHEYE])
def test_perspective_points_behind_camera_are_invalid(model):
    cam = make_camera(model)
    X = np.array([[0.1, 0.2, -1.0], [0.0, 0.0, 0.0], [0.1, 0.2, 1.0]])
    uv, valid = cam.project(X)
    assert valid.tolist() == [False, False, True]
    assert np.all(np.isfinite(uv))
    assert np.all(np.isnan(cam.img_from_cam(X)[:2]))


# ------------------------------------------------------------------------------------------
# Jacobians against central finite differences (Richardson-extrapolated)
# ------------------------------------------------------------------------------------------

def _richardson(fn, x0: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """d fn / d x0 by central differences with Richardson extrapolation (error O(h^4)).
    fn: [D] -> [N, 2]; returns [N, 2, D]."""
    def cd(j, h):
        e = np.zeros_like(x0)
        e[j] = h
        return (fn(x0 + e) - fn(x0 - e)) / (2 * h)

    cols = [(4 * cd(j, h) - cd(j, 2 * h)) / 3 for j, h in enumerate(steps)]
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("model", PROJECTABLE)
def test_jacobian_wrt_params_matches_finite_differences(model, rng):
    cam = make_camera(model)
    X = points_seen(cam, rng, n=150)
    uv, _, J, valid = project_jacobians(cam, X)
    assert valid.all()
    np.testing.assert_allclose(uv, cam.project(X).uv, atol=0)
    p0 = cam.params.copy()
    steps = 1e-5 * np.maximum(1.0, np.abs(p0))
    fd = _richardson(lambda p: cam.with_params(p).project(X).uv, p0, steps)
    # Relative tolerance, floored by the rounding noise of the differences (eps * |uv| / h): the
    # k3..k6 columns reach 1e3 px per unit at the corners, so absolute errors of 1e-4 are noise.
    assert np.all(np.abs(J - fd) <= 1e-6 * np.abs(fd) + fd_noise(uv, steps)[None, None, :])


def fd_noise(uv: np.ndarray, steps: np.ndarray) -> np.ndarray:
    return 1e3 * np.finfo(float).eps * np.abs(uv).max() / steps


@pytest.mark.parametrize("model", PROJECTABLE)
def test_jacobian_wrt_point_matches_finite_differences(model, rng):
    cam = make_camera(model)
    X = points_seen(cam, rng, n=150)
    _, J, _, valid = project_jacobians(cam, X)
    assert valid.all()
    fd = np.empty_like(J)
    for i in range(len(X)):  # per point so that the step is relative to that point's depth
        step = 1e-5 * np.full(3, np.linalg.norm(X[i]))
        fd[i] = _richardson(lambda x: cam.project(x[None]).uv, X[i], step)[0]
        assert np.all(np.abs(J[i] - fd[i]) <= 1e-6 * np.abs(fd[i]) + fd_noise(cam.project(X[i]).uv, step))


@pytest.mark.parametrize("model", sorted(FISHEYE))
def test_fisheye_jacobian_on_the_optical_axis(model):
    cam = make_camera(model)
    X = np.array([[0.0, 0.0, 2.0], [1e-13, -1e-13, 2.0]])
    _, J, Jp, valid = project_jacobians(cam, X)
    assert valid.all() and np.all(np.isfinite(J)) and np.all(np.isfinite(Jp))
    f = cam.focal
    expect = np.array([[f[0] / 2, 0, 0], [0, f[1] / 2, 0]])  # d uv / d X = f / z at the axis
    np.testing.assert_allclose(J, np.broadcast_to(expect, J.shape), atol=1e-9)


# ------------------------------------------------------------------------------------------
# Resizing and cropping
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", PROJECTABLE)
@pytest.mark.parametrize("s", [0.5, 0.25, 2.0, 1 / 3])
def test_scaled_camera_projects_scaled_pixels(model, s, rng):
    cam = make_camera(model)
    X = points_seen(cam, rng, n=100)
    small = cam.scaled(s)
    assert small.size == (round(W * s), round(H * s))
    # Pixel centres at integers: an image edge at -0.5 maps to -0.5, u' = (u + 0.5) s - 0.5.
    np.testing.assert_allclose(small.project(X).uv, (cam.project(X).uv + 0.5) * s - 0.5, atol=1e-9)
    np.testing.assert_allclose(small.scaled(1 / s).params, cam.params, rtol=1e-12)


@pytest.mark.parametrize("model", PROJECTABLE)
def test_scaled_matches_pycolmap_rescale(model):
    cam = make_camera(model)
    ref = to_pycolmap(cam)
    ref.rescale(0.5)
    np.testing.assert_allclose(to_pycolmap(cam.scaled(0.5)).params, ref.params, rtol=1e-12)
    assert (ref.width, ref.height) == cam.scaled(0.5).size


@pytest.mark.parametrize("model", PROJECTABLE)
def test_resized_and_cropped(model, rng):
    cam = make_camera(model)
    X = points_seen(cam, rng, n=100)
    uv = cam.project(X).uv
    if MODELS[model].single_focal:
        with pytest.raises(ValueError, match="one focal length"):
            cam.resized(320, 200)
    else:
        r = cam.resized(320, 200)
        assert r.size == (320, 200)
        sx, sy = 320 / W, 200 / H
        np.testing.assert_allclose(r.project(X).uv, (uv + 0.5) * [sx, sy] - 0.5, atol=1e-9)
    r = cam.resized(320, 240)
    np.testing.assert_allclose(r.params, cam.scaled(0.5).params)
    c = cam.cropped(100, 50, 300, 200)
    assert c.size == (300, 200)
    np.testing.assert_allclose(c.project(X).uv, uv - [100, 50], atol=1e-9)


def test_scaled_rejects_bad_factors():
    cam = make_camera("PINHOLE")
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="sx, sy"):
            cam.scaled(bad)


def test_pixel_grid():
    cam = Camera("PINHOLE", 4, 3, [1, 1, 1.5, 1])
    g = cam.pixel_grid()
    assert g.shape == (3, 4, 2)
    assert g[0, 0].tolist() == [0, 0] and g[2, 3].tolist() == [3, 2]


# ------------------------------------------------------------------------------------------
# Construction, OpenCV conversions and input errors
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", PROJECTABLE)
def test_opencv_dist_round_trip(model, rng):
    """from_K(K, opencv_dist()) describes the same lens (possibly as a bigger model)."""
    cam = make_camera(model)
    back = Camera.from_K(cam.K, W, H, cam.opencv_dist(), fisheye=model in FISHEYE)
    X = points_seen(cam, rng, n=100)
    np.testing.assert_allclose(back.project(X).uv, cam.project(X).uv, atol=1e-12)
    if model in ("PINHOLE", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV"):
        assert back.model == model and np.array_equal(back.params, cam.params)


@pytest.mark.parametrize("dist, model", [
    (None, "PINHOLE"), ([0, 0, 0, 0], "PINHOLE"), ([0.1, 0.01, 0.001, 0.002], "OPENCV"),
    ([0.1, 0.01, 0.001, 0.002, 0.0], "OPENCV"), ([0.1, 0.01, 0.001, 0.002, 0.003], "FULL_OPENCV"),
    ([0.1, 0.01, 0.001, 0.002, 0.003, 0.1, 0.0, 0.0], "FULL_OPENCV"),
    ([0.1, 0.01, 0.001, 0.002, 0.003, 0.1, 0.0, 0.0, 0, 0, 0, 0], "FULL_OPENCV"),
    ([0.1, 0.01, 0.001, 0.002, 0.003, 0.1, 0.0, 0.0, 0, 0, 0, 0, 0, 0], "FULL_OPENCV"),
])
def test_from_K_picks_the_smallest_model(dist, model, rng):
    K = np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]])
    cam = Camera.from_K(K, W, H, dist)
    assert cam.model == model
    np.testing.assert_array_equal(cam.K, K)
    d = np.zeros(5) if dist is None else np.asarray(dist, float)
    X = np.c_[rng.uniform(-0.5, 0.5, (50, 2)), np.ones(50)]
    ref, _ = cv2.projectPoints(X, np.zeros(3), np.zeros(3), K, d)
    np.testing.assert_allclose(cam.project(X).uv, ref.reshape(-1, 2), atol=1e-9)


def test_from_K_rejects_what_colmap_cannot_hold():
    K = np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]])
    with pytest.raises(ValueError, match="K: skew"):
        Camera.from_K(np.array([[500.0, 2, 320], [0, 510, 240], [0, 0, 1]]), W, H)
    with pytest.raises(ValueError, match=r"K: expected \[3, 3\]"):
        Camera.from_K(K[:2], W, H)
    with pytest.raises(ValueError, match="K: .*last row"):
        Camera.from_K(np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 2]]), W, H)
    with pytest.raises(ValueError, match="dist: "):
        Camera.from_K(K, W, H, [0.1, 0, 0, 0, 0, 0, 0, 0, 0.01, 0, 0, 0])  # thin prism s1
    with pytest.raises(ValueError, match="dist: fisheye"):
        Camera.from_K(K, W, H, [0.1, 0.2, 0.0], fisheye=True)
    with pytest.raises(ValueError, match="dist: .*NaN"):
        Camera.from_K(K, W, H, [np.nan, 0, 0, 0])


@pytest.mark.parametrize("args, name", [
    (("OPENCV_FISHEYEE", W, H, [1, 1, 1, 1, 0, 0, 0, 0]), "model"),
    ((4, W, H, [1, 1, 1, 1, 0, 0, 0, 0]), "model"),
    (("PINHOLE", W, H, [500, 500, 320]), "params"),
    (("PINHOLE", W, H, [500, 500, 320, 240, 0.1]), "params"),
    (("PINHOLE", W, H, [[500, 500, 320, 240]]), "params"),
    (("PINHOLE", W, H, [0, 500, 320, 240]), "params"),
    (("SIMPLE_RADIAL", W, H, [-5, 320, 240, 0.0]), "params"),
    (("PINHOLE", W, H, [500, np.nan, 320, 240]), "params"),
    (("PINHOLE", W, H, [500, 500, np.inf, 240]), "params"),
    (("PINHOLE", 0, H, [500, 500, 320, 240]), "width"),
    (("PINHOLE", W, -3, [500, 500, 320, 240]), "height"),
    (("PINHOLE", 640.5, H, [500, 500, 320, 240]), "width"),
])
def test_camera_input_errors_name_the_argument(args, name):
    with pytest.raises(ValueError, match=rf"^{name}: "):
        Camera(*args)


def test_camera_accepts_integral_sizes_and_rejects_text_params():
    assert Camera("PINHOLE", np.int64(640), 480.0, [1, 1, 1, 1]).size == (640, 480)
    with pytest.raises(TypeError, match="^params: "):
        Camera("PINHOLE", W, H, ["a", "b", "c", "d"])


def test_geometry_input_errors_name_the_argument():
    cam = make_camera("OPENCV")
    with pytest.raises(ValueError, match=r"^points_cam: expected shape \[\.\.\., 3\]"):
        cam.project(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="^points_cam: contains 1 NaN"):
        cam.project(np.array([[0, 0, 1], [np.nan, 0, 1]]))
    with pytest.raises(ValueError, match=r"^uv: expected shape \[\.\.\., 2\]"):
        cam.unproject(np.zeros(3))
    with pytest.raises(ValueError, match="^xy: "):
        distort(cam, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="^xy_distorted: "):
        undistort(cam, [np.inf, 0.0])
    with pytest.raises(ValueError, match="^points_cam: expected 2 axes"):
        cam.project_jacobians(np.zeros(3))
    with pytest.raises(TypeError, match="^camera: expected calib.Camera"):
        distort("OPENCV", np.zeros(2))


def test_unsupported_models_are_stored_but_not_projected():
    cam = Camera("FOV", W, H, [500, 500, 320, 240, 0.9])
    assert cam.params.tolist() == [500, 500, 320, 240, 0.9]
    with pytest.raises(NotImplementedError, match="FOV"):
        cam.project(np.zeros(3))


def test_camera_is_immutable_and_prints_its_parameters():
    cam = make_camera("OPENCV")
    with pytest.raises(ValueError):
        cam.params[0] = 1.0
    assert "OPENCV" in repr(cam) and "fx=400" in repr(cam)
    assert cam.allclose(Camera("OPENCV", W, H, cam.params + 1e-12))
    assert not cam.allclose(make_camera("FULL_OPENCV"))


# ------------------------------------------------------------------------------------------
# Many random lenses (slow): the round trip and the OpenCV agreement hold for every lens, not
# just the hand-picked ones above.
# ------------------------------------------------------------------------------------------

def random_lens(model: str, rng) -> Camera:
    spec = MODELS[model]
    f = rng.uniform(200, 1200)
    head = [f, rng.uniform(250, 390), rng.uniform(190, 290)]
    if not spec.single_focal:
        head = [f, f * rng.uniform(0.95, 1.05), *head[1:]]
    extra = {
        "SIMPLE_PINHOLE": [], "PINHOLE": [],
        "SIMPLE_RADIAL": [rng.uniform(-0.4, 0.4)],
        "RADIAL": [rng.uniform(-0.4, 0.4), rng.uniform(-0.2, 0.2)],
        "OPENCV": [rng.uniform(-0.4, 0.4), rng.uniform(-0.2, 0.2), *rng.uniform(-0.01, 0.01, 2)],
        "FULL_OPENCV": [rng.uniform(-0.4, 0.4), rng.uniform(-0.2, 0.2), *rng.uniform(-0.01, 0.01, 2),
                        rng.uniform(-0.05, 0.05), *rng.uniform(-0.3, 0.3, 3)],
        "OPENCV_FISHEYE": list(rng.uniform(-0.1, 0.1, 4) * [1, 0.5, 0.2, 0.1]),
        "SIMPLE_RADIAL_FISHEYE": [rng.uniform(-0.1, 0.1)],
        "RADIAL_FISHEYE": [rng.uniform(-0.1, 0.1), rng.uniform(-0.02, 0.02)],
    }[model]
    return Camera(model, W, H, head + extra)


@pytest.mark.slow
@pytest.mark.parametrize("model", PROJECTABLE)
def test_random_lenses_round_trip_and_match_opencv(model):
    rng = np.random.default_rng(sum(map(ord, model)))
    for _ in range(200):
        cam = random_lens(model, rng)
        theta_max = min(cam.max_valid_angle, np.radians(80.0))
        theta = rng.uniform(0, 0.99 * theta_max, 300)
        phi = rng.uniform(0, 2 * np.pi, 300)
        xy = np.tan(theta)[:, None] * np.stack([np.cos(phi), np.sin(phi)], 1)
        back, valid = undistort(cam, distort(cam, xy))
        assert valid.all(), cam
        assert np.max(np.abs(back - xy) * cam.focal) < 1e-9, cam
        X = np.c_[xy, np.ones(len(xy))]
        uv, v = cam.project(X)
        assert v.all(), cam
        if model in FISHEYE:
            ref, _ = cv2.fisheye.projectPoints(X[:, None], np.zeros(3), np.zeros(3), cam.K, cam.opencv_dist())
        else:
            ref, _ = cv2.projectPoints(X, np.zeros(3), np.zeros(3), cam.K, cam.opencv_dist())
        np.testing.assert_allclose(uv, ref.reshape(-1, 2), rtol=1e-12, atol=1e-8, err_msg=repr(cam))
