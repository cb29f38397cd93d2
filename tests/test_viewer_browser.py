"""End to end in a real headless Chromium (Debian `chromium`; WebGL on SwiftShader): the viewer
page loads, the scene is drawn where our camera conventions say, clicks reach the server, the
live training view shows the trainer's render from the browser's camera."""

from __future__ import annotations

import time

import numpy as np
import pytest

from viewer.headless import find_chromium

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="needs Chromium (apt-get install chromium chromium-driver)")

RED = (220, 20, 20)


def _scene_only(mask: np.ndarray) -> np.ndarray:
    """Drop viser's overlays: the notification box (top left; "software WebGL" in headless
    Chromium) and the orientation gizmo (bottom left). The GUI panel is cut by the callers."""
    mask = mask.copy()
    mask[:190, :320] = False
    mask[-70:, :70] = False
    return mask


def _is_red(img: np.ndarray) -> np.ndarray:
    return _scene_only((img[..., 0] > 170) & (img[..., 1] < 90) & (img[..., 2] < 90))


def _is_green(img: np.ndarray) -> np.ndarray:
    return _scene_only((img[..., 1] > 150) & (img[..., 0] < 90) & (img[..., 2] < 90))


def _scene(n_pts=3000):
    from test_viewer import ring_reconstruction

    rec = ring_reconstruction(n_pts=n_pts)
    for p in rec.points3D.values():
        p.rgb = np.array(RED, dtype=np.uint8)
    return rec


def _wait_for_view(v, client, cam_from_world, since: float, timeout=30.0, height=700):
    """The client's (camera, cam_from_world) once the browser has reported (after ``since``,
    a time.time()) a pose equal to ``cam_from_world``, or the last state after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        cam, cfw = v.client_view(client, height=height)  # CSS pixels: where clicks land
        reported = client.camera.update_timestamp > since
        if reported and np.allclose(cfw.matrix(), cam_from_world.matrix(), atol=1e-6) or time.monotonic() > end:
            return cam, cfw
        time.sleep(0.1)


def test_chromium_shows_reconstruction_and_round_trips_clicks(tmp_path):
    from PIL import Image as PILImage

    from viewer.app import SceneViewer
    from viewer.camera_path import load_camera_path
    from viewer.content import content_from_reconstruction
    from viewer.headless import HeadlessChromium

    rec = _scene()
    xyz = rec.points_xyz()
    (tmp_path / "images").mkdir()
    for im in rec.images.values():  # photos for the thumbnails / the selected-camera panel
        PILImage.new("RGB", (64, 48), (30, 30, 200)).save(tmp_path / "images" / im.name)
    content = content_from_reconstruction(rec, image_dir=tmp_path / "images")
    with SceneViewer(content, port=0, output_dir=tmp_path / "out", verbose=False) as v, \
            HeadlessChromium(width=1024, height=700) as browser:
        browser.navigate(v.url)
        v.gui_show_axes.value = False  # its red x axis is not a point
        # Wait for WebGL to draw the red points (software rendering: give it time).
        img = browser.wait_for(lambda im: _is_red(im).sum() > 3000, timeout=90)
        PILImage.fromarray(img).save(tmp_path / "browser.png")
        client = v.wait_for_client(30)
        assert client is not None
        assert client.camera.image_width / client.camera.image_height == pytest.approx(1024 / 700, rel=0.01)

        # Conventions: where our Camera projects the points under the browser's own view is
        # where the browser drew them (red pixel centroid vs projected centroid, few px).
        # In CSS pixels of the page (viser may render to a smaller buffer when it is slow).
        cam, cam_from_world = v.client_view(client, height=700)
        uv, ok = cam.project(cam_from_world.apply(xyz))
        red = np.argwhere(_is_red(img[:, :680]))  # left of the GUI panel
        assert red.shape[0] > 3000
        inside = ok & (uv[:, 0] > 2) & (uv[:, 0] < 678) & (uv[:, 1] > 2) & (uv[:, 1] < 698)
        assert inside.mean() > 0.5
        np.testing.assert_allclose(red[:, ::-1].mean(0), uv[inside].mean(0), atol=15)

        # Click the photo of camera 0's frustum (its far plane, `scale` along the optical axis):
        # the browser flies onto camera 0 (exact pose and vertical fov) and shows its photo.
        frustum_scale = v._frustums[0].scale
        photo_centre = rec.images[1].cam_from_world.inverse().apply(np.array([0.0, 0.0, frustum_scale]))
        uv_photo, ok_photo = cam.project(cam_from_world.apply(photo_centre)[None])
        assert ok_photo[0] and 0 < uv_photo[0, 0] < 680 and 0 < uv_photo[0, 1] < 700
        v._thumb_thread.join(30)  # the photos load in the background; wait until they are drawn
        is_blue = lambda im: _scene_only((im[..., 2] > 160) & (im[..., 0] < 80) & (im[..., 1] < 80))
        browser.wait_for(lambda im: is_blue(im).sum() > 200, timeout=60)
        t_fly = time.time()
        browser.click(*uv_photo[0])
        cam, cam_from_world = _wait_for_view(v, client, rec.images[1].cam_from_world, t_fly)
        np.testing.assert_allclose(cam_from_world.matrix(), rec.images[1].cam_from_world.matrix(), atol=1e-6)
        end = time.monotonic() + 10  # the click callback sets the panel right after the pose
        while "im0.png" not in v.gui_cam_info.content and time.monotonic() < end:
            time.sleep(0.1)
        assert "im0.png" in v.gui_cam_info.content

        # Click the front-most point near the image centre: the server picks that point.
        depth = cam_from_world.apply(xyz)[:, 2]
        uv, ok = cam.project(cam_from_world.apply(xyz))
        near_centre = ok & (np.abs(uv[:, 0] - 340) < 150) & (np.abs(uv[:, 1] - cam.height / 2) < 150)
        target = np.flatnonzero(near_centre)[np.argmin(depth[near_centre])]
        browser.wait_for(lambda im: _is_red(im).sum() > 3000, timeout=30)
        browser.click(*uv[target])
        end = time.monotonic() + 20
        while v.selected_point < 0 and time.monotonic() < end:
            time.sleep(0.1)
        assert v.selected_point >= 0, "the click did not reach the server"
        assert np.linalg.norm(uv[v.selected_point] - uv[target]) < 6

        # Server-side screenshot (viser render of the client's view) shows the points too.
        shot = v.screenshot(tmp_path / "out" / "shot.png", client=client)
        assert _is_red(np.asarray(PILImage.open(shot).convert("RGB"))).sum() > 2000

        # Camera path: two keyframes from the browser camera, saved in our conventions.
        v.add_keyframe(client)
        t_fly = time.time()
        v.fly_to_camera(client, 2)
        _wait_for_view(v, client, rec.images[3].cam_from_world, t_fly)
        v.add_keyframe(client)
        path = load_camera_path(v.save_camera_path(tmp_path / "out" / "path.json"))
        assert len(path.keyframes) == 2 and len(path.frames) > 2
        np.testing.assert_allclose(path.keyframes[0].cam_from_world.matrix(),
                                   rec.images[1].cam_from_world.matrix(), atol=1e-6)
        np.testing.assert_allclose(path.keyframes[1].cam_from_world.matrix(),
                                   rec.images[3].cam_from_world.matrix(), atol=1e-6)
        kcam = path.keyframes[0].camera  # 'Path height' (720) tall, the browser's aspect
        assert kcam.height == 720 and kcam.width / kcam.height == pytest.approx(1024 / 700, rel=0.01)


def test_chromium_live_training_view(tmp_path):
    from PIL import Image as PILImage

    from viewer.headless import HeadlessChromium
    from viewer.live import TrainingViewer

    rng = np.random.default_rng(0)
    X = np.c_[rng.uniform(-1, 1, (3000, 2)), np.zeros(3000)]  # a square in the z = 0 plane
    calls = []

    def render_fn(camera, cam_from_world):
        """A 'model': the square splatted as green 5x5 dots, through our own Camera."""
        calls.append((camera, cam_from_world))
        img = np.full((camera.height, camera.width, 3), 255, np.uint8)
        uv, ok = camera.project(cam_from_world.apply(X))
        uv = np.round(uv[ok]).astype(int)
        for dx in range(-2, 3):
            for dy in range(-2, 3):
                img[np.clip(uv[:, 1] + dy, 0, camera.height - 1), np.clip(uv[:, 0] + dx, 0, camera.width - 1)] \
                    = (20, 200, 20)
        return img

    with TrainingViewer(render_fn, port=0, max_fps=5, verbose=False) as tv, \
            HeadlessChromium(width=900, height=600) as browser:
        browser.navigate(tv.url)
        for step in range(20):
            tv.log(step, {"loss": 1.0 / (step + 1), "psnr": 20.0 + step})
        img = browser.wait_for(lambda im: _is_green(im).sum() > 3000, timeout=90)
        PILImage.fromarray(img).save(tmp_path / "live.png")
        assert tv.render_count >= 1 and tv.last_render_error is None
        camera, cam_from_world = calls[-1]
        client = next(iter(tv.server.get_clients().values()))
        # The render camera is the browser's: same aspect, same pose, same vertical fov.
        assert camera.width / camera.height == pytest.approx(900 / 600, rel=0.01)
        np.testing.assert_allclose(cam_from_world.dst_origin_in_src(), client.camera.position, atol=1e-9)
        # The background image covers the canvas: the green square is where the full-size
        # browser camera projects it.
        from viewer.convert import render_camera_for_view

        full, cfw = render_camera_for_view(client.camera.fov, 900, 600, client.camera.wxyz,
                                           client.camera.position, max_side=4096)
        uv, ok = full.project(cfw.apply(X))
        green = np.argwhere(_is_green(img[:, :560]))
        inside = ok & (uv[:, 0] > 2) & (uv[:, 0] < 558) & (uv[:, 1] > 2) & (uv[:, 1] < 598)
        np.testing.assert_allclose(green[:, ::-1].mean(0), uv[inside].mean(0), atol=15)
        # Curves and status reach the GUI; pause toggles.
        end = time.monotonic() + 5
        while "step **19**" not in tv.gui_status.content and time.monotonic() < end:
            time.sleep(0.1)
        assert "step **19**" in tv.gui_status.content
        assert set(tv._plots) == {"loss", "psnr"}
        np.testing.assert_allclose(tv._plots["psnr"].data[1], 20.0 + np.arange(20))
        assert not tv.paused
        tv.paused = True
        assert tv.paused and tv.gui_pause.label == "Resume training"


def _colourful(img: np.ndarray) -> np.ndarray:
    """Saturated pixels: not the white background, the grey grid or the grey GUI."""
    i = img.astype(np.int16)
    return _scene_only((i.max(-1) - i.min(-1)) > 60)


# passes alone (~6 s), but twice in clean-clone full runs the server did not stop within 90 s of
# SIGINT; cause not found (README Status)
@pytest.mark.slow
def test_cli_recon_view_synth_dataset_in_chromium(tmp_path):
    """`recon view` on a recon.synth dataset folder (sparse/0 + images/): the page shows the
    content; Ctrl-C (SIGINT) stops the server cleanly with status 0."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image as PILImage

    from recon import synth
    from viewer.headless import HeadlessChromium

    ds_dir = tmp_path / "ds"
    synth.write_dataset(ds_dir, synth.make_scene(seed=0), synth.make_camera("PINHOLE", 128, 96, fov_deg=60),
                        synth.orbit(4, radius=3.2),
                        options=synth.DatasetOptions(num_points=1500, progress=False, write_normals=False))
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "recon", "view", str(ds_dir), "--port", "0",
                             "--timeout", "180", "-o", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        lines = []
        url = None
        end = time.monotonic() + 60
        while url is None and time.monotonic() < end:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "open http://" in line:
                url = line.split("open ", 1)[1].split()[0]
        assert url is not None and url.startswith("http://127.0.0.1:"), "".join(lines)
        assert any("photos found for 4/4 cameras" in s for s in lines), "".join(lines)
        with HeadlessChromium(width=1024, height=700) as browser:
            browser.navigate(url)
            img = browser.wait_for(lambda im: _colourful(im[:, :680]).sum() > 8000, timeout=90)
            PILImage.fromarray(img).save(tmp_path / "cli.png")
        proc.send_signal(signal.SIGINT)
        # 30 s was once too short in a clean-clone full-suite run (passes alone in ~6 s)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, "".join(lines) + out
        assert "recon view: stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_chromium_splat_is_drawn_with_our_covariance(tmp_path):
    """One elongated, rotated Gaussian (3DGS parameterisation: log-scales, wxyz quaternion not
    normalised, SH DC, opacity logit) rendered by viser's splat renderer: its screen-space blob
    has the centre and the orientation of our analytic projection J R Sigma R^T J^T."""
    from PIL import Image as PILImage

    from calib.transforms import matrix_from_quat
    from recon.io.gaussians import GaussianCloud
    from viewer.app import SceneViewer
    from viewer.content import SceneContent, splats_from_gaussians
    from viewer.headless import HeadlessChromium

    a = np.deg2rad(30.0)
    q = np.array([np.cos(a / 2), 0.0, 0.0, np.sin(a / 2)])  # 30 degrees about world z
    scales = np.array([0.12, 0.02, 0.02])
    g = GaussianCloud(means=np.zeros((1, 3)), log_scales=np.log(scales)[None], quats_wxyz=2.0 * q[None],
                      opacity_logits=np.array([5.0]), sh_dc=np.array([[1.6, -1.6, -1.6]]),
                      sh_rest=np.zeros((1, 0, 3)))
    with SceneViewer(SceneContent(splats=splats_from_gaussians(g)), port=0, verbose=False) as v, \
            HeadlessChromium(width=1400, height=600) as browser:
        v.gui_show_axes.value = False
        v.gui_show_grid.value = False
        browser.navigate(v.url)
        img = browser.wait_for(lambda im: _is_red(im[:, :1040]).sum() > 300, timeout=90)
        PILImage.fromarray(img).save(tmp_path / "splat.png")
        client = v.wait_for_client(30)
        cam, cam_from_world = v.client_view(client, height=600)
    mask = _is_red(img)
    mask[:, 1040:] = False  # the GUI panel
    uv = np.argwhere(mask)[:, ::-1].astype(float)
    assert uv[:, 0].min() > 0 and uv[:, 0].max() < 1035 and uv[:, 1].min() > 0 and uv[:, 1].max() < 599  # whole
    X = cam_from_world.translation  # the Gaussian's centre (world origin) in the camera frame
    (fx, fy), R = cam.focal, cam_from_world.rotation
    J = np.array([[fx / X[2], 0, -fx * X[0] / X[2] ** 2], [0, fy / X[2], -fy * X[1] / X[2] ** 2]])
    Rq = matrix_from_quat(q)
    cov2d = J @ R @ Rq @ np.diag(scales**2) @ Rq.T @ R.T @ J.T
    centre, _ = cam.project(X[None])
    np.testing.assert_allclose(uv.mean(0), centre[0], atol=4)
    w_ref, V_ref = np.linalg.eigh(cov2d)
    w_img, V_img = np.linalg.eigh(np.cov(uv.T))
    cos = abs(V_ref[:, 1] @ V_img[:, 1])  # major axes agree to within ~3 degrees
    assert cos > np.cos(np.deg2rad(3)), np.degrees(np.arccos(cos))
    assert np.sqrt(w_img[1] / w_img[0]) == pytest.approx(np.sqrt(w_ref[1] / w_ref[0]), rel=0.35)


def _press(browser, label: str) -> None:
    """Click the GUI button whose text is ``label`` (a real DOM click in the page)."""
    ok = browser.evaluate(
        "(() => { const b = [...document.querySelectorAll('button')]"
        f".find(b => b.textContent.trim() === {label!r}); if (!b || b.disabled) return false; "
        "b.click(); return true; })()")
    assert ok, f"no enabled button {label!r} in the page"


def test_chromium_labels_select_export_and_buttons(tmp_path):
    """A labelled cloud: click a point in the page, press 'Select this object' and 'Export
    selected object (PLY)' in the GUI: the exported PLY holds exactly that instance. The
    'Screenshot (PNG)' and keyframe buttons work from the page too."""
    from recon.io import read_ply
    from viewer.app import SceneViewer
    from viewer.camera_path import load_camera_path
    from viewer.content import PointLayer, SceneContent
    from viewer.headless import HeadlessChromium

    rng = np.random.default_rng(1)
    n = 4000
    xyz = np.c_[rng.uniform(-1, 1, (n, 2)), np.zeros(n)]
    instance = (xyz[:, 0] > 0).astype(int) + 2 * (xyz[:, 1] > 0).astype(int)  # four quadrants
    class_id = instance % 2
    content = SceneContent(points=PointLayer(xyz, class_id=class_id, instance_id=instance),
                           class_names={0: "left", 1: "right"})
    out = tmp_path / "out"
    with SceneViewer(content, port=0, output_dir=out, verbose=False, point_size=0.02) as v, \
            HeadlessChromium(width=1024, height=700) as browser:
        browser.navigate(v.url)
        browser.wait_for(lambda im: _colourful(im[:, :680]).sum() > 3000, timeout=90)
        client = v.wait_for_client(30)
        cam, cam_from_world = v.client_view(client, height=700)
        uv, ok = cam.project(cam_from_world.apply(xyz))
        depth = cam_from_world.apply(xyz)[:, 2]
        near = ok & (np.abs(uv[:, 0] - 340) < 120) & (np.abs(uv[:, 1] - 350) < 120)
        target = np.flatnonzero(near)[np.argmin(depth[near])]
        browser.click(*uv[target])
        end = time.monotonic() + 20
        while v.selected_point < 0 and time.monotonic() < end:
            time.sleep(0.1)
        assert v.selected_point >= 0 and np.linalg.norm(uv[v.selected_point] - uv[target]) < 6
        inst = int(instance[v.selected_point])
        end = time.monotonic() + 10
        while "Select this object" not in (browser.evaluate(
                "[...document.querySelectorAll('button')].filter(b => !b.disabled)"
                ".map(b => b.textContent.trim()).join('|')") or "") and time.monotonic() < end:
            time.sleep(0.2)
        _press(browser, "Select this object")
        end = time.monotonic() + 20
        while v.selected_instance is None and time.monotonic() < end:
            time.sleep(0.1)
        assert v.selected_instance == inst
        time.sleep(0.5)
        _press(browser, "Export selected object (PLY)")
        exported = out / f"instance_{inst}.ply"
        end = time.monotonic() + 20
        while not exported.is_file() and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(0.5)
        cloud = read_ply(exported)
        assert len(cloud) == int(np.sum(instance == inst))
        np.testing.assert_array_equal(np.unique(cloud.attributes["instance_id"]), [inst])

        _press(browser, "Screenshot (PNG)")
        _press(browser, "Add camera keyframe")
        end = time.monotonic() + 30
        while not (list(out.glob("screenshot_*.png")) and v.keyframes) and time.monotonic() < end:
            time.sleep(0.2)
        assert list(out.glob("screenshot_*.png")) and len(v.keyframes) == 1
        _press(browser, "Save camera path (JSON)")
        end = time.monotonic() + 20
        while not (out / "camera_path.json").is_file() and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(0.3)
        path = load_camera_path(out / "camera_path.json")
        np.testing.assert_allclose(path.keyframes[0].cam_from_world.matrix(), cam_from_world.matrix(), atol=1e-6)
