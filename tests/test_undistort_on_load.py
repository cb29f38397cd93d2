"""Trainers take cameras as users have them: a distorted model is undistorted on load (through
calib's camera models, cached), and the result matches a render of the same scene through the
undistorted pinhole camera (recon.synth ground truth)."""

from __future__ import annotations

import numpy as np
import pytest

from calib import Camera
from calib.undistort import has_distortion, undistorted_pinhole, undistortion_map
from recon import synth
from render.data import load_scene


@pytest.mark.parametrize("model", ["SIMPLE_RADIAL", "OPENCV", "OPENCV_FISHEYE"])
def test_map_sends_each_pinhole_pixel_along_the_same_ray(model):
    cam = synth.make_camera(model, 80, 60, fov_deg=100 if model == "OPENCV_FISHEYE" else 60)
    pin = undistorted_pinhole(cam)
    assert pin.model == "PINHOLE" and pin.size == cam.size and not has_distortion(pin)
    m = undistortion_map(cam, pin)
    assert m.shape == (60, 80, 2)
    # no blank pixels: every pinhole pixel sees the source image
    assert np.all((m[..., 0] >= -0.5) & (m[..., 0] <= 79.5) & (m[..., 1] >= -0.5) & (m[..., 1] <= 59.5))
    # and it is the widest such view: 1 % more field of view puts a border pixel outside
    wider = Camera("PINHOLE", 80, 60, np.r_[pin.focal * 0.99, pin.principal_point])
    w = undistortion_map(cam, wider)
    assert not np.all((w[..., 0] >= -0.5) & (w[..., 0] <= 79.5) & (w[..., 1] >= -0.5) & (w[..., 1] <= 59.5))
    # same ray: the source pixel unprojects to the pinhole pixel's direction
    xy_src = cam.cam_from_img(m.reshape(-1, 2).astype(np.float64))
    xy_pin = pin.cam_from_img(pin.pixel_grid().reshape(-1, 2))
    np.testing.assert_allclose(xy_src, xy_pin, atol=2e-6)


@pytest.fixture(scope="module")
def distorted_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("distorted")
    scene = synth.make_scene(seed=0)
    cam = synth.make_camera("SIMPLE_RADIAL", 96, 72, fov_deg=60, distortion=[-0.15])
    poses = synth.orbit(3, radius=3.2)
    synth.write_dataset(root, scene, cam, poses,
                        options=synth.DatasetOptions(progress=False, write_normals=False, write_labels=False))
    return root, scene, cam, poses


def test_distorted_sfm_model_trains_as_given(distorted_dataset, tmp_path):
    root, scene, cam, poses = distorted_dataset
    data = load_scene(root, cache_dir=tmp_path / "cache")
    assert "undistorted to PINHOLE" in data.source and "3 image(s) remapped" in data.source
    pin = data.views[0].camera
    assert pin.model == "PINHOLE" and pin.size == cam.size
    def box4(a):  # 4x4 means: compare geometry, not the aliasing of resampling a textured render
        return a.reshape(a.shape[0] // 4, 4, a.shape[1] // 4, 4, 3).mean((1, 3))

    yy, xx = np.mgrid[:18, :24]
    r = np.hypot(xx - 11.5, yy - 8.5)
    ring = r > 0.6 * r.max()  # where the distortion moves pixels most
    for v, pose in zip(data.views, poses):
        truth = box4(synth.render_view(scene, pin, pose).rgb.astype(np.float32) / 255)
        raw = box4(synth.render_view(scene, cam, pose).rgb.astype(np.float32) / 255)  # used as if pinhole
        err, err_raw = np.abs(box4(v.image) - truth), np.abs(raw - truth)
        # measured: 0.0026-0.0047 vs 0.0093-0.0128 overall, 0.0024-0.0036 vs 0.0085-0.0106 in the ring
        assert err.mean() < 0.5 * err_raw.mean() and err.mean() < 0.006, (err.mean(), err_raw.mean())
        assert err[ring].mean() < 0.4 * err_raw[ring].mean(), (err[ring].mean(), err_raw[ring].mean())
    # cached: a second load remaps nothing and returns the same pixels
    again = load_scene(root, cache_dir=tmp_path / "cache")
    assert "0 image(s) remapped" in again.source
    for a, b in zip(data.views, again.views):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.camera.allclose(b.camera)
    # half resolution: undistorted at full size, then scaled like any pinhole
    half = load_scene(root, cache_dir=tmp_path / "cache", resolution_scale=0.5)
    assert half.views[0].camera.size == (48, 36) and half.views[0].camera.allclose(pin.scaled(0.5))
