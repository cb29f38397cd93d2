"""calib.transforms: property tests (hypothesis) of the SO(3)/SE(3)/Sim(3) algebra and a
cross-check against scipy.spatial.transform.Rotation (whose quaternions are x, y, z, w)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from calib import (
    Rigid3,
    Sim3,
    axis_angle_from_matrix,
    matrix_from_axis_angle,
    matrix_from_quat,
    project_to_so3,
    quat_from_matrix,
    quat_multiply,
    quat_slerp,
    rotation_angle_deg,
    skew,
)

settings.register_profile("recon", max_examples=40, deadline=None)
settings.register_profile("stress", max_examples=1000, deadline=None)  # RECON_HYPOTHESIS=stress
settings.load_profile(os.environ.get("RECON_HYPOTHESIS", "recon"))

finite = st.floats(-1.0, 1.0, allow_nan=False)
vec3 = st.tuples(finite, finite, finite).map(np.array)
translation = st.tuples(*[st.floats(-100, 100, allow_nan=False)] * 3).map(np.array)


@st.composite
def unit_axis(draw):
    v = draw(st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 3).filter(lambda v: np.linalg.norm(v) > 0.1))
    v = np.array(v)
    return v / np.linalg.norm(v)


# Angles concentrated where formulas break: 0, tiny, and pi (180 degrees) and just below it.
special_angle = st.sampled_from([0.0, 1e-15, 1e-10, 1e-8, 1e-6, np.pi - 1e-4, np.pi - 1e-8, np.pi - 1e-12, np.pi])
angle = st.one_of(special_angle, st.floats(0.0, np.pi, allow_nan=False))


@st.composite
def rotvec(draw):
    return draw(unit_axis()) * draw(angle)


@st.composite
def quat(draw):
    """Unit wxyz quaternion with w >= 0 (our canonical form)."""
    rv = draw(rotvec())
    a = np.linalg.norm(rv)
    axis = rv / a if a > 0 else np.array([1.0, 0, 0])
    return np.r_[np.cos(a / 2), np.sin(a / 2) * axis]


@st.composite
def rigid(draw):
    return Rigid3.from_axis_angle(draw(rotvec()), draw(translation))


def assert_rotation(R):
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)


def assert_same_quat(q1, q2, atol=1e-12):
    """q and -q are the same rotation; compare up to that sign."""
    assert abs(abs(np.dot(q1, q2)) - 1.0) < atol or np.allclose(q1, q2, atol=atol)
    s = np.sign(np.dot(q1, q2)) or 1.0
    np.testing.assert_allclose(q1, s * q2, atol=atol)


def assert_same_rigid(a: Rigid3, b: Rigid3, atol=1e-9):
    np.testing.assert_allclose(a.rotation, b.rotation, atol=atol)
    np.testing.assert_allclose(a.translation, b.translation, atol=atol * 100)


# ------------------------------------------------------------------------------------------
# SO(3) representations
# ------------------------------------------------------------------------------------------

@given(quat())
def test_quat_matrix_round_trip(q):
    R = matrix_from_quat(q)
    assert_rotation(R)
    q2 = quat_from_matrix(R)
    assert q2[0] >= 0
    assert_same_quat(q2, q)


@given(rotvec())
def test_axis_angle_round_trip(rv):
    R = matrix_from_axis_angle(rv)
    assert_rotation(R)
    rv2 = axis_angle_from_matrix(R)
    a = np.linalg.norm(rv)
    assert np.linalg.norm(rv2) <= np.pi + 1e-12
    if a < np.pi - 1e-6:
        np.testing.assert_allclose(rv2, rv, atol=1e-9)
    else:
        # Near 180 degrees rv and -rv are (almost) the same rotation: compare matrices.
        np.testing.assert_allclose(matrix_from_axis_angle(rv2), R, atol=1e-9)


@given(rotvec())
def test_axis_angle_matches_scipy_and_opencv(rv):
    R = matrix_from_axis_angle(rv)
    np.testing.assert_allclose(R, Rotation.from_rotvec(rv).as_matrix(), atol=1e-12)
    import cv2
    np.testing.assert_allclose(R, cv2.Rodrigues(rv)[0], atol=1e-12)


@given(quat())
def test_quaternions_match_scipy_xyzw(q):
    """scipy stores x, y, z, w: reorder at the edge, never store its output directly."""
    r = Rotation.from_quat(q[[1, 2, 3, 0]])
    np.testing.assert_allclose(matrix_from_quat(q), r.as_matrix(), atol=1e-12)
    ours = quat_from_matrix(r.as_matrix())
    assert_same_quat(ours, r.as_quat()[[3, 0, 1, 2]])
    np.testing.assert_allclose(rotation_angle_deg(r.as_matrix()), np.degrees(r.magnitude()), atol=1e-6)


def test_quaternion_known_values():
    """A 90-degree turn about z maps x to y (Hamilton, wxyz)."""
    q = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    np.testing.assert_allclose(matrix_from_quat(q) @ [1, 0, 0], [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(quat_from_matrix(np.diag([-1.0, -1.0, 1.0])), [0, 0, 0, 1], atol=1e-15)
    np.testing.assert_allclose(axis_angle_from_matrix(np.diag([1.0, -1.0, -1.0])), [np.pi, 0, 0], atol=1e-15)


@given(quat(), quat(), vec3)
def test_quat_multiply_is_rotation_composition(q1, q2, v):
    np.testing.assert_allclose(matrix_from_quat(quat_multiply(q1, q2)),
                               matrix_from_quat(q1) @ matrix_from_quat(q2), atol=1e-12)
    expect = Rotation.from_quat(q1[[1, 2, 3, 0]]) * Rotation.from_quat(q2[[1, 2, 3, 0]])
    np.testing.assert_allclose(matrix_from_quat(quat_multiply(q1, q2)) @ v, expect.apply(v), atol=1e-12)


def test_batched_conversions(rng):
    rvs = Rotation.random(50, random_state=1).as_rotvec()
    R = matrix_from_axis_angle(rvs.reshape(5, 10, 3))
    assert R.shape == (5, 10, 3, 3)
    q = quat_from_matrix(R)
    assert q.shape == (5, 10, 4) and np.all(q[..., 0] >= 0)
    np.testing.assert_allclose(matrix_from_quat(q), R, atol=1e-12)
    np.testing.assert_allclose(axis_angle_from_matrix(R).reshape(-1, 3), rvs, atol=1e-9)
    assert rotation_angle_deg(R).shape == (5, 10)


@given(vec3, vec3)
def test_skew_is_cross_product(v, w):
    np.testing.assert_allclose(skew(v) @ w, np.cross(v, w), atol=1e-15)
    np.testing.assert_allclose(skew(v), -skew(v).T)


@given(rotvec(), st.floats(1e-3, 0.2))
def test_project_to_so3(rv, noise):
    R = matrix_from_axis_angle(rv)
    np.testing.assert_allclose(project_to_so3(R), R, atol=1e-12)
    M = R + noise * np.random.default_rng(0).normal(size=(3, 3))
    P = project_to_so3(M)
    assert_rotation(P)
    # The projection is the closest rotation: no other rotation near it does better.
    for d in np.eye(3) * 1e-3:
        assert np.linalg.norm(M - P) <= np.linalg.norm(M - matrix_from_axis_angle(d) @ P) + 1e-12


# ------------------------------------------------------------------------------------------
# slerp
# ------------------------------------------------------------------------------------------

@given(quat(), quat())
def test_slerp_endpoints_and_constant_speed(q0, q1):
    np.testing.assert_allclose(matrix_from_quat(quat_slerp(q0, q1, 0.0)), matrix_from_quat(q0), atol=1e-12)
    np.testing.assert_allclose(matrix_from_quat(quat_slerp(q0, q1, 1.0)), matrix_from_quat(q1), atol=1e-12)
    R0, R1 = matrix_from_quat(q0), matrix_from_quat(q1)
    total = rotation_angle_deg(R1 @ R0.T)
    ts = np.linspace(0, 1, 11)
    Rs = matrix_from_quat(quat_slerp(q0, q1, ts))
    # Constant angular speed along the shortest arc: the angle from R0 grows linearly in t.
    from_start = rotation_angle_deg(Rs @ R0.T)
    if total < 179.9:  # at 180 degrees two arcs are equally short
        np.testing.assert_allclose(from_start, ts * total, atol=1e-6)
        steps = rotation_angle_deg(Rs[1:] @ np.swapaxes(Rs[:-1], 1, 2))
        np.testing.assert_allclose(steps, total / 10, atol=1e-6)


@given(quat(), quat(), st.floats(0, 1))
def test_slerp_ignores_quaternion_sign(q0, q1, t):
    a = quat_slerp(q0, q1, t)
    b = quat_slerp(-q0, -q1, t)
    if rotation_angle_deg(matrix_from_quat(q1) @ matrix_from_quat(q0).T) < 179.9:
        c = quat_slerp(q0, -q1, t)
        assert_same_quat(a, c, atol=1e-9)
    assert_same_quat(a, b, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(a), 1.0, atol=1e-12)


def test_slerp_matches_scipy():
    from scipy.spatial.transform import Slerp

    rots = Rotation.random(2, random_state=3)
    ts = np.linspace(0, 1, 7)
    ref = Slerp([0, 1], rots)(ts).as_matrix()
    q = rots.as_quat()[:, [3, 0, 1, 2]]
    np.testing.assert_allclose(matrix_from_quat(quat_slerp(q[0], q[1], ts)), ref, atol=1e-12)


def test_slerp_tiny_angles_keep_constant_speed():
    q0 = np.array([1.0, 0, 0, 0])
    for a in (1e-7, 1e-5, 1e-3, 0.05):
        q1 = np.array([np.cos(a / 2), np.sin(a / 2), 0, 0])
        q = quat_slerp(q0, q1, 0.3)
        np.testing.assert_allclose(2 * np.arctan2(q[1], q[0]), 0.3 * a, rtol=1e-9)


# ------------------------------------------------------------------------------------------
# Rigid3
# ------------------------------------------------------------------------------------------

@given(rigid(), rigid(), rigid())
def test_rigid_composition_is_associative(a, b, c):
    assert_same_rigid((a @ b) @ c, a @ (b @ c))


@given(rigid(), rigid(), vec3)
def test_rigid_compose_and_apply(a, b, x):
    np.testing.assert_allclose((a @ b).apply(x), a.apply(b.apply(x)), atol=1e-9)
    np.testing.assert_allclose((a @ b).matrix(), a.matrix() @ b.matrix(), atol=1e-9)


@given(rigid(), vec3)
def test_rigid_inverse(a, x):
    ident = Rigid3.identity()
    assert_same_rigid(a @ a.inverse(), ident)
    assert_same_rigid(a.inverse() @ a, ident)
    np.testing.assert_allclose(a.inverse().apply(a.apply(x)), x, atol=1e-9)
    np.testing.assert_allclose(np.linalg.inv(a.matrix()), a.inverse().matrix(), atol=1e-9)
    assert_same_rigid(ident @ a, a)


@given(rigid())
def test_rigid_representations_round_trip(a):
    assert_same_rigid(Rigid3.from_matrix(a.matrix()), a, atol=0)
    assert_same_rigid(Rigid3.from_matrix(a.matrix3x4()), a, atol=0)
    assert_same_rigid(Rigid3.from_quat(a.quat_wxyz, a.translation), a, atol=1e-12)
    assert_same_rigid(Rigid3.from_axis_angle(a.axis_angle, a.translation), a, atol=1e-9)


@given(rigid())
def test_camera_centre(cam_from_world):
    """dst_origin_in_src of cam_from_world is the camera centre: it maps to the camera origin."""
    c = cam_from_world.dst_origin_in_src()
    np.testing.assert_allclose(cam_from_world.apply(c), 0.0, atol=1e-9)
    np.testing.assert_allclose(cam_from_world.inverse().src_origin_in_dst(), c, atol=1e-12)


@given(rigid(), rigid())
def test_rigid_interpolate(a, b):
    assert_same_rigid(a.interpolate(b, 0.0), a)
    assert_same_rigid(a.interpolate(b, 1.0), b)
    mid = a.interpolate(b, 0.5)
    np.testing.assert_allclose(mid.translation, (a.translation + b.translation) / 2, atol=1e-12)


def test_rigid_apply_batched():
    a = Rigid3.from_axis_angle([0.1, 0.2, 0.3], [1, 2, 3])
    X = np.random.default_rng(0).normal(size=(4, 5, 3))
    Y = a.apply(X)
    assert Y.shape == (4, 5, 3)
    np.testing.assert_allclose(Y[2, 3], a.rotation @ X[2, 3] + a.translation)


def test_rigid_input_errors():
    with pytest.raises(ValueError, match="orthonormal"):
        Rigid3(np.diag([1.0, 1.0, 2.0]), np.zeros(3))
    with pytest.raises(ValueError, match="orthonormal"):
        Rigid3(np.diag([1.0, 1.0, -1.0]), np.zeros(3))  # a reflection
    with pytest.raises(ValueError, match="translation: contains NaN"):
        Rigid3(np.eye(3), [0, np.nan, 0])
    with pytest.raises(ValueError, match=r"rotation: expected shape \[\.\.\., 3, 3\]"):
        Rigid3(np.eye(2), np.zeros(3))
    with pytest.raises(ValueError, match="T: last row"):
        Rigid3.from_matrix(np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"T: expected \[4, 4\] or \[3, 4\]"):
        Rigid3.from_matrix(np.eye(3))
    with pytest.raises(ValueError, match="q: zero-norm"):
        matrix_from_quat([0, 0, 0, 0])
    with pytest.raises(ValueError, match="rvec: contains NaN"):
        matrix_from_axis_angle([np.nan, 0, 0])


# ------------------------------------------------------------------------------------------
# Sim3
# ------------------------------------------------------------------------------------------

@st.composite
def similarity(draw):
    return Sim3(draw(st.floats(0.01, 100.0)), matrix_from_axis_angle(draw(rotvec())), draw(translation))


@given(similarity(), st.integers(0, 2**31))
def test_sim3_align_recovers_a_known_similarity(S, seed):
    src = np.random.default_rng(seed).normal(size=(20, 3))
    est = Sim3.align(src, S.apply(src))
    assert est.scale == pytest.approx(S.scale, rel=1e-9)
    np.testing.assert_allclose(est.rotation, S.rotation, atol=1e-9)
    np.testing.assert_allclose(est.translation, S.translation, atol=1e-7 * (1 + S.scale))


def test_sim3_align_with_noise_and_without_scale(rng):
    S = Sim3(1.0, matrix_from_axis_angle([0.3, -0.2, 2.5]), [1.0, -2.0, 0.5])
    src = rng.normal(size=(200, 3))
    dst = S.apply(src) + rng.normal(scale=1e-3, size=src.shape)
    est = Sim3.align(src, dst, with_scale=False)
    assert est.scale == 1.0
    assert rotation_angle_deg(est.rotation @ S.rotation.T) < 0.01
    # Planar points (rank 2) still determine the similarity; a reflection is never returned.
    src[:, 2] = 0.0
    est = Sim3.align(src, S.apply(src))
    np.testing.assert_allclose(est.rotation, S.rotation, atol=1e-9)
    with pytest.raises(ValueError, match="collinear"):
        Sim3.align(np.outer(np.arange(5.0), [1, 2, 3]), np.outer(np.arange(5.0), [3, 2, 1]))
    with pytest.raises(ValueError, match="src, dst: expected equal shapes"):
        Sim3.align(np.zeros((2, 3)), np.zeros((2, 3)))


@given(similarity(), rigid(), vec3)
def test_sim3_transform_pose(dst_from_src, cam_from_src, x_src):
    """Moving the world by a similarity and the cameras with it keeps every image the same: the
    point is seen in the same direction, at s times the distance (the scene got s times bigger)."""
    cam_from_dst = dst_from_src.transform_pose(cam_from_src)
    x_dst = dst_from_src.apply(x_src)
    np.testing.assert_allclose(cam_from_dst.apply(x_dst), dst_from_src.scale * cam_from_src.apply(x_src),
                               atol=1e-7 * (1 + dst_from_src.scale) * 100)
    # The camera centre moves like any other point.
    np.testing.assert_allclose(cam_from_dst.dst_origin_in_src(),
                               dst_from_src.apply(cam_from_src.dst_origin_in_src()),
                               atol=1e-7 * (1 + dst_from_src.scale) * 100)


@given(similarity(), similarity(), vec3)
def test_sim3_inverse_and_compose(a, b, x):
    np.testing.assert_allclose(a.inverse().apply(a.apply(x)), x, atol=1e-9 * (1 + 1 / a.scale) * 100)
    np.testing.assert_allclose((a @ b).apply(x), a.apply(b.apply(x)), rtol=1e-9, atol=1e-7 * (1 + a.scale) * 100)
    np.testing.assert_allclose((a @ b).matrix(), a.matrix() @ b.matrix(), rtol=1e-9, atol=1e-6 * (1 + a.scale) * 100)


def test_sim3_input_errors():
    with pytest.raises(ValueError, match="scale: expected a positive"):
        Sim3(0.0, np.eye(3), np.zeros(3))
    with pytest.raises(ValueError, match="scale: expected a positive"):
        Sim3(np.nan, np.eye(3), np.zeros(3))
    with pytest.raises(ValueError, match="orthonormal"):
        Sim3(1.0, 2 * np.eye(3), np.zeros(3))
    with pytest.raises(TypeError, match="cam_from_world: expected calib.Rigid3"):
        Sim3.identity().transform_pose(np.eye(4))
