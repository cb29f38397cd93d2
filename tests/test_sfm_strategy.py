"""How `recon sfm` picks matching and mapping by the size and kind of the image set
(recon.sfm.matching.choose_strategy), where it finds COLMAP's vocabulary tree, and a small real
run through the choices that large sets get (retrieval with a broken tree file -> VLAD, the
hierarchical mapper)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.sfm.matching import choose_strategy, find_vocab_tree


def test_matching_and_mapper_by_size_and_kind():
    small = choose_strategy(16, ordered=False, gps=False)
    assert (small.matching, small.retrieval, small.mapper) == ("exhaustive", None, "incremental")
    assert "16 images" in small.matching_reason and "120 pairs" in small.matching_reason
    # past 30 unordered photos: retrieval; without a tree file, ours (VLAD), with a note saying so
    mid = choose_strategy(80, ordered=False, gps=False)
    assert (mid.matching, mid.retrieval, mid.mapper) == ("retrieval", "vlad", "incremental")
    assert any("recon data download colmap_vocab_tree" in n for n in mid.notes)
    tree = choose_strategy(80, ordered=False, gps=False, vocab_tree=Path("tree.bin"))
    assert tree.retrieval == "vocabtree" and not tree.notes
    video = choose_strategy(80, ordered=True, gps=False)
    assert video.matching == "sequential" and "loop closure" in video.matching_reason
    assert choose_strategy(80, ordered=False, gps=True).matching == "spatial"
    # mapping by size: incremental up to 300, global up to 2000, hierarchical past that
    assert choose_strategy(300, ordered=False, gps=False).mapper == "incremental"
    big = choose_strategy(301, ordered=False, gps=False)
    assert big.mapper == "global" and "301 images (> 300)" in big.mapper_reason
    assert choose_strategy(2000, ordered=True, gps=False).mapper == "global"
    huge = choose_strategy(2001, ordered=False, gps=False, leaf_max_images=400)
    assert huge.mapper == "hierarchical" and "400 images" in huge.mapper_reason
    # thresholds are options; the user's explicit choice wins and says so
    assert choose_strategy(50, ordered=False, gps=False, incremental_max_images=40).mapper == "global"
    forced = choose_strategy(5000, ordered=False, gps=False, matching="exhaustive", mapper="incremental")
    assert (forced.matching, forced.mapper) == ("exhaustive", "incremental")
    assert forced.matching_reason == forced.mapper_reason == "chosen by the user"
    asked = choose_strategy(80, ordered=False, gps=False, retrieval="vocabtree", vocab_tree=None)
    assert asked.retrieval == "vlad" and "no file was found" in asked.notes[0]
    assert json.loads(json.dumps(big.to_json()))["mapper"] == "global"
    with pytest.raises(ValueError, match="n_images"):
        choose_strategy(-1, ordered=False, gps=False)


def test_find_vocab_tree(tmp_path, monkeypatch):
    monkeypatch.delenv("RECON_VOCAB_TREE", raising=False)
    monkeypatch.setenv("RECON_DATA_DIR", str(tmp_path / "cache"))
    assert find_vocab_tree() is None  # nothing on disk, and nothing is downloaded
    assert find_vocab_tree(str(tmp_path / "missing.bin")) is None
    d = tmp_path / "cache" / "colmap_vocab_tree"
    d.mkdir(parents=True)
    small, large = d / "vocab_tree_faiss_flickr100K_words32K.bin", d / "vocab_tree_faiss_flickr100K_words256K.bin"
    small.write_bytes(b"t")
    assert find_vocab_tree(n_images=5000) == small  # the only one there
    large.write_bytes(b"t")
    assert find_vocab_tree(n_images=500) == small and find_vocab_tree(n_images=5000) == large
    own = tmp_path / "mine.bin"
    own.write_bytes(b"t")
    monkeypatch.setenv("RECON_VOCAB_TREE", str(own))
    assert find_vocab_tree() == own
    assert find_vocab_tree(str(large)) == large  # an explicit file wins


def _small_large_set_run(tmp_path):
    """The thresholds lowered so 12 views take the large-set path: retrieval with a tree file
    pycolmap cannot read (run in a child: it may abort) falls back to VLAD with a note, and the
    hierarchical mapper (leaf clusters of 6 images, COLMAP's default overlap of 50 images, so
    here every cluster holds the whole set: this runs the mapper, it does not test merging)
    places every camera."""
    from recon import synth
    from recon.sfm import SfMConfig, run_sfm

    opts = synth.DatasetOptions(progress=False, write_normals=False, write_labels=False)
    ds = synth.write_dataset(tmp_path / "scene", synth.make_scene(seed=0),
                             synth.make_camera("PINHOLE", 320, 240, fov_deg=60), synth.orbit(12, radius=3.2),
                             options=opts)
    bad_tree = tmp_path / "vocab_tree.bin"
    bad_tree.write_bytes(b"not a vocabulary tree" * 10)
    cfg = SfMConfig(max_image_size=320, exhaustive_max_images=4, incremental_max_images=6, global_max_images=8,
                    ordered=False,  # the synthetic views have numbered names: not a video here
                    leaf_max_images=6, vocab_tree=str(bad_tree), retrieval_k=8)
    rep = run_sfm(Path(ds.image_paths[0]).parent, tmp_path / "out", cfg, progress=False)
    plan = rep.strategy
    assert plan["matching"] == "retrieval" and plan["retrieval"] == "vocabtree"  # chosen: a tree file exists
    notes = " ".join(plan["notes"])
    assert rep.matching["retrieval"] == "vlad" and "vocabulary-tree matching failed (signal" in notes
    assert "Failed to read faiss index" in notes  # pycolmap's reason, not a line of its stack dump
    assert plan["mapper"] == "hierarchical" and rep.mapper == "hierarchical"
    assert rep.images_registered == 12, rep.reasons
    return rep, ds


def test_large_set_choices_run_on_a_small_scene(tmp_path):  # 12 s on the loaded 2-core machine
    """See _small_large_set_run; this checks the path: the choices, the fallback and its
    notes, the hierarchical mapper placing every camera."""
    _small_large_set_run(tmp_path)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["strategy"]["mapper_reason"].startswith("12 images (> 8)")


@pytest.mark.slow
def test_large_set_path_on_a_small_scene_is_accurate(tmp_path):
    """The same run, judged against the truth. Slow-marked because pycolmap's hierarchical
    mapper is not deterministic here: 0.50 deg max in the runs measured, but one full-suite
    run of the clean clone gave 11.1 deg (a known weakness, README Status)."""
    from calib import Sim3, rotation_angle_deg
    from recon.io import read_colmap

    rep, ds = _small_large_set_run(tmp_path)
    rec = read_colmap(tmp_path / "out" / "sparse" / "0")
    gt = {Path(v.name).name: v.cam_from_world for v in ds.views}
    names = sorted(im.name for im in rec.registered_images)
    est = [rec.image_by_name(n).cam_from_world for n in names]
    ref = [gt[Path(n).name] for n in names]
    s = Sim3.align(np.array([p.dst_origin_in_src() for p in est]), np.array([p.dst_origin_in_src() for p in ref]))
    rot = max(float(rotation_angle_deg(e.rotation @ s.rotation.T @ r.rotation.T)) for e, r in zip(est, ref))
    # 12 views at 320x240: 0.50 deg max with either mapper (measured; the incremental one on the
    # same pairs gives the same); the bar is loose, this checks the path, test_sfm the accuracy
    assert rot < 1.0, rot
