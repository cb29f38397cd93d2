"""recon.io.detect: one fixture per kind (tests/_artifacts.py), the kind and the paths found."""

from __future__ import annotations

import json

import pytest

from recon.errors import FormatError
from recon.io import Kind, detect
from tests import _artifacts

# fixture name -> (expected kind, fields that must be set, expected labelled flag)
TABLE = {
    "sfm_output": (Kind.SFM_OUTPUT, ("model_dir", "transforms", "images_dir", "report", "ply")),
    "colmap_model": (Kind.COLMAP_MODEL, ("model_dir", "images_dir")),
    "transforms": (Kind.TRANSFORMS, ("transforms", "images_dir")),
    "synth_dataset": (Kind.SYNTH_DATASET, ("gt", "model_dir", "transforms", "images_dir", "depth_dir", "labels_dir")),
    "splat_output": (Kind.SPLAT_OUTPUT, ("ply", "report", "data_path", "method")),
    "nerf_output": (Kind.NERF_OUTPUT, ("checkpoint", "report", "data_path", "method")),
    "image_folder": (Kind.IMAGE_FOLDER, ("images_dir",)),
    "image": (Kind.IMAGE, ()),
    "video": (Kind.VIDEO, ()),
    "splat_ply": (Kind.SPLAT_PLY, ("ply",)),
    "mesh": (Kind.MESH, ("mesh",)),
    "point_cloud": (Kind.POINT_CLOUD, ("ply",)),
    "labelled_point_cloud": (Kind.POINT_CLOUD, ("ply",)),
}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    return {name: _artifacts.make(name, root / name) for name in TABLE}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_every_kind_is_detected_with_its_paths(fixtures, name):
    kind, fields = TABLE[name]
    art = detect(fixtures[name])
    assert art.kind is kind, (name, art)
    for f in fields:
        v = getattr(art, f)
        assert v is not None, (name, f)
        if f.endswith(("_dir", "transforms", "report", "ply", "mesh", "checkpoint", "gt", "path")):
            assert v.exists(), (name, f, v)
    assert art.labelled is (name == "labelled_point_cloud")
    assert art.is_posed_images is (kind in (Kind.SFM_OUTPUT, Kind.COLMAP_MODEL, Kind.TRANSFORMS,
                                            Kind.SYNTH_DATASET))


def test_specific_paths(fixtures):
    sfm = detect(fixtures["sfm_output"])
    assert sfm.model_dir == fixtures["sfm_output"] / "sparse" / "0"
    assert sfm.images_dir.name == "photos"  # found through transforms.json / report.json "input"
    assert detect(fixtures["splat_output"]).data_path == fixtures["splat_output"].parent / "data" / "model"
    assert detect(fixtures["nerf_output"]).method == "nerf"
    # a file inside a kind resolves to it
    assert detect(fixtures["colmap_model"] / "cameras.bin").model_dir == fixtures["colmap_model"]
    assert detect(fixtures["synth_dataset"] / "gt.json").kind is Kind.SYNTH_DATASET
    assert detect(fixtures["transforms"] / "transforms.json").kind is Kind.TRANSFORMS
    assert detect(fixtures["splat_output"] / "report.json").kind is Kind.SPLAT_OUTPUT
    assert detect(fixtures["splat_output"] / "splat.ply").kind is Kind.SPLAT_PLY


def test_nerf_needs_its_checkpoint_and_method(tmp_path, fixtures):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"method": "nerf"}))
    assert detect(run).kind is Kind.REPORT  # no checkpoint: not a NeRF output, only its report
    assert detect(run / "report.json").kind is Kind.REPORT
    (run / "checkpoint.pt").write_bytes(b"x")
    assert detect(run).kind is Kind.NERF_OUTPUT
    (run / "report.json").write_text(json.dumps({"method": "other"}))
    assert detect(run).kind is Kind.REPORT


def test_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        detect(tmp_path / "nope")
    (tmp_path / "x.xyz").write_text("1 2 3")
    with pytest.raises(FormatError, match=r"x\.xyz.*unknown file type"):
        detect(tmp_path / "x.xyz")
    (tmp_path / "bad.ply").write_text("not a ply")
    with pytest.raises(FormatError, match="bad.ply"):
        detect(tmp_path / "bad.ply")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(FormatError, match="other.json"):
        detect(tmp_path / "other.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="empty"):
        detect(tmp_path / "empty")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "cameras.txt").write_text("")
    with pytest.raises(FormatError, match="other two"):
        detect(tmp_path / "m" / "cameras.txt")


def test_require_names_what_the_verb_needs(fixtures):
    art = detect(fixtures["mesh"])
    with pytest.raises(FormatError, match=r"mesh.ply: is a mesh; recon train needs a SfM output"):
        art.require(Kind.SFM_OUTPUT, Kind.TRANSFORMS, verb="recon train")
    assert art.require(Kind.MESH, verb="x") is art


# ---- every consumer agrees with the detector ---------------------------------------------------
VIEWABLE = {"sfm_output": "sfm_output", "synth_dataset": "sfm_output", "colmap_model": "colmap",
            "transforms": "transforms", "splat_output": "splat_output", "splat_ply": "splat_ply",
            "mesh": "mesh", "point_cloud": "points", "labelled_point_cloud": "labelled_points"}
TRAINABLE = {"sfm_output", "synth_dataset", "colmap_model", "transforms"}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_info_view_and_train_agree_with_detect(fixtures, name):
    from recon.io.summary import describe
    from render.data import load_scene
    from viewer.detect import detect as view_kind
    from viewer.detect import load as view_load

    path, kind = fixtures[name], TABLE[name][0]
    # info describes every kind
    sections = describe(path)
    assert sections and all(s.lines for s in sections)
    # view shows the kinds it can show and names the kind of the others
    if name in VIEWABLE:
        assert view_kind(path) == VIEWABLE[name]
        content = view_load(path)
        assert content.source == path
    else:
        with pytest.raises(FormatError, match=f"is a {kind.label}"):
            view_kind(path)
    # train reads posed images from exactly the posed kinds
    if name in TRAINABLE:
        scene = load_scene(path)
        assert len(scene.views) == 4 and scene.views[0].image.shape == (_artifacts.H, _artifacts.W, 3)
    else:
        with pytest.raises((FormatError, FileNotFoundError), match=f"is a {kind.label}|found neither"):
            load_scene(path)


def test_render_accepts_only_splat_outputs(fixtures, tmp_path, capsys):
    from recon.cli import main

    for name in sorted(TABLE):
        rc = main(["render", str(fixtures[name]), "--cameras", "test", "-o", str(tmp_path / name)])
        if name == "splat_output":
            assert rc == 0 and len(list((tmp_path / name).glob("*.png"))) == 1  # the split in its report
        else:
            assert rc == 2 and "no splat.ply here" in capsys.readouterr().err, name
