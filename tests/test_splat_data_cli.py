"""Loading posed images for training (COLMAP model / transforms.json via recon.io), the clear
errors for bad datasets, and the `recon train splat` / `recon render` verbs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calib import Camera
from recon.cli import main
from recon.errors import ReconError
from recon.io import write_colmap, write_image, write_transforms
from recon.scene import Image, Point3D, Reconstruction
from render.data import load_scene, split_train_test
from render.splat.toy import toy_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")


REPO = Path(__file__).resolve().parents[1]


def _write_dataset(root: Path, *, kind: str = "colmap", num_views: int = 10, width: int = 40, height: int = 30,
                   points: bool = True) -> Path:
    scene = toy_scene(num_views=num_views, width=width, height=height, n_gaussians=400, n_points=200,
                      background=(1.0, 1.0, 1.0))
    cam = scene.views[0].camera
    images = {}
    for k, v in enumerate(scene.views):
        write_image(root / "images" / v.name, (v.image * 255 + 0.5).astype(np.uint8))
        images[k + 1] = Image(k + 1, v.name, 1, v.cam_from_world)
    pts = {i + 1: Point3D(x, c) for i, (x, c) in enumerate(zip(scene.points_xyz, scene.points_rgb))} if points else {}
    rec = Reconstruction({1: cam}, images, pts)
    if kind == "colmap":
        write_colmap(rec, root / "sparse" / "0")
    else:
        write_transforms(rec, root, image_dir="images")
    return root


@pytest.fixture(scope="module")
def colmap_data(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("colmap_ds"))


def test_load_colmap_and_transforms_agree(colmap_data, tmp_path):
    a = load_scene(colmap_data)
    b = load_scene(_write_dataset(tmp_path, kind="transforms", points=False))
    assert len(a.views) == len(b.views) == 10 and len(a.points_xyz) == 200 and len(b.points_xyz) == 0
    for va, vb in zip(a.views, b.views):
        assert va.name == Path(vb.name).name
        assert va.camera.allclose(vb.camera, atol=1e-9)
        np.testing.assert_allclose(va.cam_from_world.matrix(), vb.cam_from_world.matrix(), atol=1e-9)
        np.testing.assert_array_equal(va.image, vb.image)
        assert va.image.shape == (30, 40, 3) and va.image.dtype == np.float32
    half = load_scene(colmap_data, resolution_scale=0.5)
    assert half.views[0].image.shape == (15, 20, 3) and half.views[0].camera.size == (20, 15)
    np.testing.assert_allclose(half.views[0].camera.principal_point, [(19.5 + 0.5) * 0.5 - 0.5, (14.5 + 0.5) * 0.5 - 0.5])


def test_split_every_eighth():
    train, test = split_train_test(30)
    assert test == [0, 8, 16, 24] and len(train) == 26 and not set(train) & set(test)
    assert split_train_test(30, test_every=0) == (list(range(30)), [])


def test_bad_datasets_give_clear_errors(tmp_path):
    root = _write_dataset(tmp_path / "missing")
    (root / "images" / "view_003.png").unlink()
    with pytest.raises(ReconError, match=r"1 of 10 registered cameras have no image file.*view_003"):
        load_scene(root)
    root = _write_dataset(tmp_path / "sizes")
    write_image(root / "images" / "view_002.png", np.zeros((60, 80, 3), np.uint8))
    with pytest.raises(ReconError, match=r"view_002.png: image is 80x60 but its camera 1 says 40x30"):
        load_scene(root)
    root = _write_dataset(tmp_path / "distorted")
    from recon.io import read_colmap

    rec = read_colmap(root / "sparse" / "0")
    c = rec.cameras[1]
    rec.cameras[1] = Camera("OPENCV", c.width, c.height, np.r_[c.params, 0.1, 0.0, 0.0, 0.0])
    write_colmap(rec, root / "sparse" / "0")
    # distorted cameras are undistorted on load (tests/test_undistort_on_load.py checks the pixels)
    assert load_scene(root).views[0].camera.model == "PINHOLE"
    with pytest.raises(FileNotFoundError, match="neither transforms.json nor a COLMAP model"):
        (tmp_path / "empty").mkdir()
        load_scene(tmp_path / "empty")


def test_cli_train_then_render(colmap_data, tmp_path):
    out, frames = tmp_path / "run", tmp_path / "frames"
    rc = main(["train", "splat", str(colmap_data), "-o", str(out), "--steps", "40", "--quiet",
               "--sh-degree", "1", "--background", "1", "1", "1", "--threads", "1"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["steps"] == 40 and rep["test_views"] == 2 and rep["psnr_test"] > 10
    assert (out / "splat.ply").is_file() and (out / "checkpoint.pt").is_file()
    assert rep["data_path"] == str(colmap_data.resolve())
    rc = main(["render", str(out), "--cameras", "orbit", "--frames", "3", "-o", str(frames)])
    assert rc == 0
    pngs = sorted(frames.glob("frame_*.png"))
    assert len(pngs) == 3
    from recon.io import read_image

    img = read_image(pngs[0])
    assert img.shape == (30, 40, 3) and img.std() > 5  # something was rendered, not flat background
    assert main(["render", str(out), "--cameras", "test", "-o", str(tmp_path / "test_frames")]) == 0
    test_pngs = sorted((tmp_path / "test_frames").glob("*.png"))
    assert len(test_pngs) == 2

    # A camera path (as `recon view` records it) through the test cameras renders the same pixels.
    from recon.io.camera_path import CameraPath, PathFrame, save_camera_path
    from render.data import load_scene, split_train_test

    scene = load_scene(colmap_data, resolution_scale=rep.get("resolution_scale", 1.0))
    _, test_idx = split_train_test(len(scene.views))
    path_frames = [PathFrame(scene.views[i].camera, scene.views[i].cam_from_world, float(k))
                   for k, i in enumerate(test_idx)]
    save_camera_path(tmp_path / "path.json", CameraPath(path_frames, path_frames, 1.0))
    assert main(["render", str(out), "--camera-path", str(tmp_path / "path.json"),
                 "-o", str(tmp_path / "path_frames")]) == 0
    path_pngs = sorted((tmp_path / "path_frames").glob("*.png"))
    assert len(path_pngs) == 2
    for a, b in zip(test_pngs, path_pngs):
        assert np.array_equal(read_image(a), read_image(b))


def test_render_test_cameras_are_the_runs_split(colmap_data, tmp_path):
    """`recon render --cameras test` renders the views the run held out, read from report.json
    (it used to re-derive every 8th of all views, wrong after --test-every / --max-views)."""
    out = tmp_path / "run"
    assert main(["train", "splat", str(colmap_data), "-o", str(out), "--steps", "5", "--quiet", "--sh-degree", "0",
                 "--test-every", "3", "--max-views", "7", "--threads", "1"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["split"]["test"] == ["view_000.png", "view_003.png", "view_006.png"]
    from render.frames import RenderFramesOptions, render_run_frames

    res = render_run_frames(out, tmp_path / "frames", RenderFramesOptions(cameras="test", progress=False))
    frames = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert res.method == "splat" and res.frames == frames and res.video is None
    evals = sorted((out / "renders" / "test").glob("*.png"))
    assert len(frames) == len(evals) == 3
    from recon.io import read_image

    for a, b in zip(frames, evals):  # the same cameras give the same pixels
        assert np.array_equal(read_image(a), read_image(b))


def test_cli_errors_are_clear(tmp_path, capsys):
    rc = main(["train", "splat", str(tmp_path / "nope"), "-o", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and "no such file or folder" in capsys.readouterr().err
    rc = main(["render", str(tmp_path), "-o", str(tmp_path / "f")])
    assert rc == 2 and "no splat.ply" in capsys.readouterr().err


def test_help_is_light():
    """`recon train --help` discovers render/*/cli_train.py without importing torch."""
    code = ("import sys; from recon.cli import build_parser; p = build_parser(); "
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()) as f:\n"
            "    try: p.parse_args(['train', 'splat', '--help'])\n"
            "    except SystemExit: pass\n"
            "assert '--strategy' in f.getvalue(), f.getvalue()\n"
            "bad = [m for m in ('torch', 'gsplat', 'viser', 'open3d') if m in sys.modules]\n"
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120, check=False)
    assert r.returncode == 0, r.stderr


def test_a_broken_trainer_module_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    """`recon train` used to drop a trainer whose cli_train.py failed to import, silently."""
    import render

    pkg = tmp_path / "broken"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cli_train.py").write_text("import no_such_module_for_recon_tests\n")
    monkeypatch.setattr(render, "__path__", [*render.__path__, str(tmp_path)])
    from recon.cli import build_parser

    parser = build_parser()
    help_text = parser._subparsers._group_actions[0].choices["train"].format_help()
    assert "broken" in help_text and "BROKEN: render.broken.cli_train cannot be imported" in help_text
    rc = main(["train", "broken", "data", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "render.broken.cli_train cannot be imported (ModuleNotFoundError" in err
    assert "no_such_module_for_recon_tests" in err
