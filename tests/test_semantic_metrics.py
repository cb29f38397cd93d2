"""recon.semantic 2D building blocks against worked examples and slow literal references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recon.semantic import (
    batched_nms,
    box_iou,
    confusion_matrix,
    dice,
    evaluate_map,
    generalized_box_iou,
    hungarian,
    letterbox,
    letterbox_boxes,
    letterbox_params,
    mask_iou,
    mean_iou,
    nms,
    precision_recall,
    unletterbox_boxes,
)


def _random_boxes(rng, n, size=100.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 3, (n, 2))
    return np.concatenate([xy, xy + wh], 1)


# ---- slow literal references ----------------------------------------------------------------

def _iou_literal(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _giou_literal(a, b):
    iou = _iou_literal(a, b)
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return iou - (hull - union) / hull


def _nms_literal(boxes, scores, thr):
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(_iou_literal(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


def _cocoeval_literal(preds, gts, thresholds, max_det=100):
    """A transliteration of pycocotools evaluateImg + accumulate (bbox, area 'all'), loops only."""
    rec_thrs = [i / 100 for i in range(101)]
    classes = sorted({int(c) for _, gc in gts for c in gc})
    ap = np.zeros((len(classes), len(thresholds)))
    for ci, cls in enumerate(classes):
        for ti, t in enumerate(thresholds):
            all_scores, all_tp, npig = [], [], 0
            for (pb, ps, pc), (gb, gc) in zip(preds, gts):
                g = [gb[j] for j in range(len(gb)) if gc[j] == cls]
                d = [(ps[j], pb[j]) for j in range(len(pb)) if pc[j] == cls]
                d = sorted(d, key=lambda x: -x[0])[:max_det]  # python sort is stable
                npig += len(g)
                gtm = [False] * len(g)
                for s, box in d:
                    iou, m = min(t, 1 - 1e-10), -1
                    for gi, gbox in enumerate(g):
                        if gtm[gi]:
                            continue
                        v = _iou_literal(box, gbox)
                        if v < iou:
                            continue
                        iou, m = v, gi
                    if m > -1:
                        gtm[m] = True
                    all_scores.append(s)
                    all_tp.append(m > -1)
            order = sorted(range(len(all_scores)), key=lambda i: -all_scores[i])
            tp = fp = 0
            rc, pr = [], []
            for i in order:
                tp += all_tp[i]
                fp += not all_tp[i]
                rc.append(tp / npig)
                pr.append(tp / (tp + fp + np.spacing(1)))
            for i in range(len(pr) - 1, 0, -1):
                pr[i - 1] = max(pr[i - 1], pr[i])
            q = []
            for r in rec_thrs:
                idx = next((k for k, v in enumerate(rc) if v >= r), None)
                q.append(pr[idx] if idx is not None else 0.0)
            ap[ci, ti] = sum(q) / len(q)
    return ap


def _random_detection_set(rng, n_images=6, n_classes=3):
    preds, gts = [], []
    for _ in range(n_images):
        g = _random_boxes(rng, int(rng.integers(0, 6)))
        gc = rng.integers(0, n_classes, len(g))
        # detections: jittered copies of some gts (true positives at various IoU) plus clutter
        keep = rng.random(len(g)) < 0.8
        tp = g[keep] + rng.normal(0, 3, (int(keep.sum()), 4))
        tp = np.concatenate([np.minimum(tp[:, :2], tp[:, 2:]), np.maximum(tp[:, :2], tp[:, 2:])], 1)
        tpc = np.where(rng.random(int(keep.sum())) < 0.85, gc[keep], rng.integers(0, n_classes, int(keep.sum())))
        fp = _random_boxes(rng, int(rng.integers(0, 5)))
        pb = np.concatenate([tp, fp]).reshape(-1, 4)
        pc = np.concatenate([tpc, rng.integers(0, n_classes, len(fp))]).astype(np.int64)
        ps = rng.random(len(pb))
        preds.append((pb, ps, pc))
        gts.append((g, gc))
    return preds, gts


# ---- boxes -----------------------------------------------------------------------------------

def test_box_iou_worked_example():
    assert box_iou([[1, 1, 4, 4]], [[2, 2, 5, 5]])[0, 0] == pytest.approx(4 / 14, abs=1e-15)
    assert box_iou([[0, 0, 2, 2]], [[2, 0, 4, 2]])[0, 0] == 0.0  # touching edges
    assert box_iou([[0, 0, 2, 2]], [[0, 0, 2, 2]])[0, 0] == 1.0
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0  # empty boxes: 0, not NaN


def test_box_iou_and_giou_match_literal_reference():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 17), _random_boxes(rng, 11)
    iou, giou = box_iou(a, b), generalized_box_iou(a, b)
    ref = np.array([[_iou_literal(x, y) for y in b] for x in a])
    gref = np.array([[_giou_literal(x, y) for y in b] for x in a])
    np.testing.assert_allclose(iou, ref, atol=1e-12)
    np.testing.assert_allclose(giou, gref, atol=1e-12)
    assert np.all(giou <= iou + 1e-15) and np.all(giou >= -1)
    # enclosed box: GIoU == IoU; far apart boxes: GIoU < 0
    assert generalized_box_iou([[0, 0, 10, 10]], [[2, 2, 4, 4]])[0, 0] == pytest.approx(0.04)
    assert generalized_box_iou([[0, 0, 1, 1]], [[9, 9, 10, 10]])[0, 0] < -0.9


def test_box_input_checks_name_the_argument():
    with pytest.raises(ValueError, match="boxes_a"):
        box_iou(np.zeros((3, 3)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="boxes_b"):
        box_iou(np.zeros((1, 4)), [[2, 2, 1, 1]])


def test_mask_iou_matches_literal():
    rng = np.random.default_rng(1)
    a = rng.random((4, 9, 7)) < 0.4
    b = rng.random((3, 9, 7)) < 0.5
    b[2] = False
    out = mask_iou(a, b)
    for i in range(4):
        for j in range(3):
            inter = sum(a[i][y][x] and b[j][y][x] for y in range(9) for x in range(7))
            union = sum(a[i][y][x] or b[j][y][x] for y in range(9) for x in range(7))
            assert out[i, j] == pytest.approx(inter / union if union else 0.0)


def test_nms_matches_literal_greedy_and_batched_is_per_class():
    rng = np.random.default_rng(2)
    for trial in range(20):
        n = int(rng.integers(1, 40))
        boxes = _random_boxes(rng, n, size=60)
        scores = rng.random(n)
        if trial % 5 == 0:
            scores = np.round(scores, 1)  # ties
        for thr in (0.3, 0.5, 0.7):
            assert nms(boxes, scores, thr).tolist() == _nms_literal(boxes, scores, thr)
        classes = rng.integers(0, 3, n)
        keep = batched_nms(boxes, scores, classes, 0.5)
        ref = []
        for c in np.unique(classes):
            idx = np.flatnonzero(classes == c)
            ref += [int(idx[k]) for k in _nms_literal(boxes[idx], scores[idx], 0.5)]
        assert sorted(keep.tolist()) == sorted(ref)
        assert np.all(np.diff(scores[keep]) <= 0)  # highest score first


def test_nms_worked_example():
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]]
    scores = [0.9, 0.8, 0.7, 0.95]
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert batched_nms(boxes, scores, [0, 0, 0, 1], 0.5).tolist() == [3, 0, 2]


# ---- Hungarian -------------------------------------------------------------------------------

def test_hungarian_worked_example():
    cost = np.array([[4, 1, 3], [2, 0, 5], [3, 2, 2]])
    rows, cols = hungarian(cost)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0), (2, 2)]
    assert cost[rows, cols].sum() == 5


def test_hungarian_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(30):
        n, m = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        cost = rng.integers(0, 20, (n, m)).astype(float)
        for maximize in (False, True):
            r, c = hungarian(cost, maximize=maximize)
            assert len(r) == min(n, m) and len(set(r)) == len(r) and len(set(c)) == len(c)
            best = None
            if n <= m:
                for perm in itertools.permutations(range(m), n):
                    v = sum(cost[i, perm[i]] for i in range(n))
                    best = v if best is None else (max(best, v) if maximize else min(best, v))
            else:
                for perm in itertools.permutations(range(n), m):
                    v = sum(cost[perm[j], j] for j in range(m))
                    best = v if best is None else (max(best, v) if maximize else min(best, v))
            assert cost[r, c].sum() == pytest.approx(best)
    r, c = hungarian([[0.1, 0.9], [0.8, 0.95]], max_cost=0.5)
    assert list(zip(r.tolist(), c.tolist())) == [(0, 0)]  # (1, 1) costs 0.95 > 0.5: gated


# ---- detection evaluation --------------------------------------------------------------------

def test_precision_recall_worked_example():
    pr = precision_recall([True, False, True, False], [0.9, 0.8, 0.7, 0.1], num_gt=3)
    np.testing.assert_allclose(pr.precision, [1, 1 / 2, 2 / 3, 2 / 4])
    np.testing.assert_allclose(pr.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])


def test_map_perfect_and_worked_example():
    gt = [(np.array([[0, 0, 10, 10], [20, 20, 40, 40]]), np.array([0, 1]))]
    perfect = [(gt[0][0], np.array([0.9, 0.8]), gt[0][1])]
    r = evaluate_map(perfect, gt)
    assert r.map50 == 1.0 and r.map50_95 == 1.0
    # class 0: one TP at rank 2 after a FP -> precision envelope 0.5 over all recalls
    pred = [(np.array([[50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 40, 40]]), np.array([0.95, 0.9, 0.8]),
             np.array([0, 0, 1]))]
    r = evaluate_map(pred, gt)
    np.testing.assert_allclose(r.ap[:, 0], [0.5, 1.0])
    assert r.map50 == pytest.approx(0.75)


def test_map_matches_literal_cocoeval_on_random_detections():
    rng = np.random.default_rng(4)
    thr = np.linspace(0.5, 0.95, 10)
    for _ in range(4):
        preds, gts = _random_detection_set(rng)
        r = evaluate_map(preds, gts)
        ref = _cocoeval_literal(preds, gts, thr)
        classes = sorted({int(c) for _, gc in gts for c in gc})
        assert r.class_ids.tolist() == classes
        np.testing.assert_allclose(r.ap, ref, atol=1e-12)
        np.testing.assert_allclose(r.map50_95, ref.mean(), atol=1e-12)


def test_map_matches_pycocotools_when_installed():
    pytest.importorskip("pycocotools", reason="pycocotools not installed (optional peer check; the literal "
                                              "reference above always runs)")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(5)
    preds, gts = _random_detection_set(rng, n_images=8)
    images, anns, dets = [], [], []
    for i, ((pb, ps, pc), (gb, gc)) in enumerate(zip(preds, gts)):
        images.append({"id": i + 1, "width": 200, "height": 200})
        for b, c in zip(gb, gc):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1, "iscrowd": 0,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, s, c in zip(pb, ps, pc):
            dets.append({"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns,
                        "categories": [{"id": k + 1, "name": str(k)} for k in range(3)]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    r = evaluate_map(preds, gts)
    assert r.map50_95 == pytest.approx(ev.stats[0], abs=1e-9)
    assert r.map50 == pytest.approx(ev.stats[1], abs=1e-9)


# ---- segmentation metrics --------------------------------------------------------------------

def test_dice_and_miou_match_literal():
    rng = np.random.default_rng(6)
    gt = rng.integers(0, 4, (13, 11))
    pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(-1, 4, gt.shape))
    m, per = mean_iou(pred, gt, 4)
    d_mean, d_per = dice(pred, gt, 4)
    for c in range(4):
        tp = sum(1 for p, g in zip(pred.ravel(), gt.ravel()) if p == c and g == c)
        fp = sum(1 for p, g in zip(pred.ravel(), gt.ravel()) if p == c and g != c)
        fn = sum(1 for p, g in zip(pred.ravel(), gt.ravel()) if p != c and g == c)
        assert per[c] == pytest.approx(tp / (tp + fp + fn))
        assert d_per[c] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m == pytest.approx(per.mean()) and d_mean == pytest.approx(d_per.mean())
    cm = confusion_matrix(pred, gt, 4)
    assert cm.sum() == int((pred >= 0).sum())
    # worked example with boolean masks: |A| = 2, |B| = 2, overlap 1 -> Dice 0.5
    assert dice(np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool)) == 0.5
    # ignore_index drops pixels; a class absent everywhere is NaN and left out of the mean
    m2, per2 = mean_iou(np.array([0, 0, 1]), np.array([0, 2, 1]), 4, ignore_index=2)
    assert m2 == 1.0 and np.isnan(per2[3])


# ---- letterbox -------------------------------------------------------------------------------

def test_letterbox_boxes_round_trip_exact_and_on_pixels():
    rng = np.random.default_rng(7)
    for (W, H), size in (((768, 576), (416, 416)), ((320, 240), (640, 640)), ((100, 300), (320, 256))):
        lb = letterbox_params((W, H), size)
        assert lb.resized_size[0] <= size[0] and lb.resized_size[1] <= size[1]
        boxes = _random_boxes(rng, 20, size=min(W, H) * 0.6)
        back = unletterbox_boxes(letterbox_boxes(boxes, lb), lb, clip=False)
        np.testing.assert_allclose(back, boxes, atol=1e-9)
        # on pixels: a filled rectangle, letterboxed, found again and mapped back within 1 px
        img = np.zeros((H, W, 3), np.uint8)
        x1, y1, x2, y2 = int(W * 0.2), int(H * 0.3), int(W * 0.7), int(H * 0.8)
        img[y1:y2 + 1, x1:x2 + 1] = 255
        net, lb2 = letterbox(img, size, fill=0)
        assert net.shape == (size[1], size[0], 3) and lb2 == lb
        ys, xs = np.nonzero(net[..., 0] > 127)
        found = np.array([[xs.min() - 0.5, ys.min() - 0.5, xs.max() + 0.5, ys.max() + 0.5]])
        back = unletterbox_boxes(found, lb)[0]
        np.testing.assert_allclose(back, [x1 - 0.5, y1 - 0.5, x2 + 0.5, y2 + 0.5], atol=1.0)


def test_letterbox_stretch_and_checks():
    lb = letterbox_params((640, 480), (320, 320), keep_aspect=False)
    assert lb.pad == (0, 0) and lb.scale == (0.5, 320 / 480)
    with pytest.raises(ValueError, match="input_size"):
        letterbox_params((640, 480), (0, 320))
