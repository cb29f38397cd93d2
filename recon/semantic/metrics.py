"""2D building blocks: box and mask IoU, GIoU, NMS, Hungarian matching, precision/recall,
COCO-style mAP, Dice and mIoU. NumPy only, vectorised over boxes / masks / pixels.

Boxes are ``[N, 4]`` float arrays ``(x1, y1, x2, y2)`` in pixels with ``x2 >= x1``, ``y2 >= y1``;
areas are continuous, ``(x2 - x1) * (y2 - y1)`` (no "+1" as in old Pascal VOC code), as in
pycocotools and torchvision. Boxes are in our pixel convention (pixel (0, 0) is the centre of the
top-left pixel), so a box covering a whole W x H image is ``(-0.5, -0.5, W - 0.5, H - 0.5)``;
IoU and NMS do not depend on that origin. ``recon.semantic.io`` converts to COCO's corner origin
at the file edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAPResult",
    "PRCurve",
    "batched_nms",
    "box_area",
    "box_iou",
    "confusion_matrix",
    "dice",
    "evaluate_map",
    "generalized_box_iou",
    "hungarian",
    "mask_iou",
    "match_detections",
    "mean_iou",
    "nms",
    "precision_recall",
]

#: COCO's IoU thresholds 0.50:0.05:0.95 and its 101 recall points (pycocotools ``Params``).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _boxes(b, name: str) -> np.ndarray:
    a = np.asarray(b, dtype=np.float64)
    if a.ndim == 1 and a.size == 0:
        a = a.reshape(0, 4)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"{name}: expected boxes of shape [N, 4] (x1, y1, x2, y2), got {a.shape}")
    if a.size and (not np.all(np.isfinite(a)) or np.any(a[:, 2] < a[:, 0]) or np.any(a[:, 3] < a[:, 1])):
        raise ValueError(f"{name}: boxes must be finite with x2 >= x1 and y2 >= y1")
    return a


def box_area(boxes) -> np.ndarray:
    """[N] areas (px^2) of ``boxes`` [N, 4] xyxy."""
    b = _boxes(boxes, "boxes")
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def _inter_union(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter, area_a[:, None] + area_b[None, :] - inter


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """[N, M] intersection over union of ``boxes_a`` [N, 4] and ``boxes_b`` [M, 4] (xyxy).

    Two empty (zero-area) boxes have IoU 0.

    Example: ``box_iou([[1, 1, 4, 4]], [[2, 2, 5, 5]])`` is ``[[4 / 14]]``.
    """
    a, b = _boxes(boxes_a, "boxes_a"), _boxes(boxes_b, "boxes_b")
    inter, union = _inter_union(a, b)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def generalized_box_iou(boxes_a, boxes_b) -> np.ndarray:
    """[N, M] generalized IoU (Rezatofighi et al. 2019): IoU - (|C| - |A u B|) / |C|, with C the
    smallest box enclosing A and B. In [-1, 1]; equals IoU when one box encloses the other."""
    a, b = _boxes(boxes_a, "boxes_a"), _boxes(boxes_b, "boxes_b")
    inter, union = _inter_union(a, b)
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    lt = np.minimum(a[:, None, :2], b[None, :, :2])
    rb = np.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = rb - lt
    hull = wh[..., 0] * wh[..., 1]
    return iou - np.divide(hull - union, hull, out=np.zeros_like(hull), where=hull > 0)


def mask_iou(masks_a, masks_b) -> np.ndarray:
    """[N, M] IoU of boolean masks ``masks_a`` [N, H, W] and ``masks_b`` [M, H, W] (pixel counts).
    Two empty masks have IoU 0."""
    a, b = np.asarray(masks_a), np.asarray(masks_b)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"masks_a, masks_b: expected [N, H, W] and [M, H, W] with the same H, W, got "
                         f"{a.shape} and {b.shape}")
    fa = a.reshape(len(a), -1).astype(bool)
    fb = b.reshape(len(b), -1).astype(bool)
    # counts fit float32 exactly up to 2^24 pixels; use float64 to stay exact for large images
    inter = fa.astype(np.float64) @ fb.astype(np.float64).T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes, scores, iou_threshold: float = 0.5) -> np.ndarray:
    """Greedy non-maximum suppression: indices [K] of the kept boxes, highest score first.

    A box is dropped when its IoU with a kept, higher-scoring box is > ``iou_threshold``
    (torchvision's rule). Ties in score keep the lower index first (stable sort)."""
    b = _boxes(boxes, "boxes")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != b.shape[0]:
        raise ValueError(f"scores: expected [{b.shape[0]}] (one per box), got {s.shape}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold: expected a value in [0, 1], got {iou_threshold}")
    order = np.argsort(-s, kind="stable")
    x1, y1, x2, y2 = b.T
    area = (x2 - x1) * (y2 - y1)
    remaining = order
    keep = []
    while remaining.size:  # each pass keeps the best remaining box and drops what it covers
        i, rest = remaining[0], remaining[1:]
        keep.append(i)
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0.0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0.0, None)
        inter = w * h
        union = area[i] + area[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        remaining = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes, scores, classes, iou_threshold: float = 0.5) -> np.ndarray:
    """Class-aware NMS: boxes of different ``classes`` [N] never suppress each other. Indices [K]
    of the kept boxes, highest score first. One NMS pass over boxes shifted apart per class (the
    torchvision trick), so the work is one sort and one greedy loop."""
    b = _boxes(boxes, "boxes")
    c = np.asarray(classes).reshape(-1)
    if c.shape[0] != b.shape[0]:
        raise ValueError(f"classes: expected [{b.shape[0]}] (one per box), got {c.shape}")
    if b.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    _, cls_index = np.unique(c, return_inverse=True)
    span = float(b.max() - b.min()) + 1.0
    shifted = b - b.min() + (cls_index.astype(np.float64) * span)[:, None]
    return nms(shifted, scores, iou_threshold)


def hungarian(cost, *, maximize: bool = False, max_cost: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one assignment for a [N, M] cost matrix (rectangular allowed): (rows [K],
    cols [K]) minimising (or with ``maximize`` maximising) the summed cost, K = min(N, M).
    Pairs whose cost is worse than ``max_cost`` (> for minimise, < for maximise) are dropped
    afterwards (the gating used when matching detections or instance ids). Solver:
    ``scipy.optimize.linear_sum_assignment`` (Jonker-Volgenant)."""
    from scipy.optimize import linear_sum_assignment

    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost: expected a [N, M] matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("cost: expected finite values (gate with max_cost instead of inf)")
    if c.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = linear_sum_assignment(c, maximize=maximize)
    if max_cost is not None:
        ok = c[rows, cols] >= max_cost if maximize else c[rows, cols] <= max_cost
        rows, cols = rows[ok], cols[ok]
    return rows.astype(np.int64), cols.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# detection evaluation (pycocotools semantics, bbox, area "all")
# ---------------------------------------------------------------------------------------------

def match_detections(pred_boxes, pred_scores, gt_boxes, iou_thresholds=(0.5,)) -> np.ndarray:
    """COCO greedy matching of one image's detections of ONE class: bool [T, N] true positives.

    Detections are visited by decreasing score; each takes the unmatched ground-truth box with the
    highest IoU >= the threshold (pycocotools ``evaluateImg``). Returned in the input order."""
    pb, gb = _boxes(pred_boxes, "pred_boxes"), _boxes(gt_boxes, "gt_boxes")
    s = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != pb.shape[0]:
        raise ValueError(f"pred_scores: expected [{pb.shape[0]}], got {s.shape}")
    thr = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    tp = np.zeros((thr.size, pb.shape[0]), dtype=bool)
    if pb.shape[0] == 0 or gb.shape[0] == 0:
        return tp
    order = np.argsort(-s, kind="mergesort")
    iou = box_iou(pb[order], gb)  # [N, G]
    for t, th in enumerate(thr):
        taken = np.zeros(gb.shape[0], dtype=bool)
        th_eff = min(th, 1 - 1e-10)
        for d in range(iou.shape[0]):
            cand = np.where(taken, -1.0, iou[d])
            g = cand.size - 1 - int(np.argmax(cand[::-1]))  # ties: the last gt, as pycocotools
            if cand[g] >= th_eff:
                taken[g] = True
                tp[t, order[d]] = True
    return tp


@dataclass(frozen=True)
class PRCurve:
    """Precision and recall after each detection, sorted by decreasing score."""

    scores: np.ndarray  # [N] sorted decreasing
    precision: np.ndarray  # [N]
    recall: np.ndarray  # [N]
    num_gt: int


def precision_recall(tp, scores, num_gt: int) -> PRCurve:
    """Precision/recall curve of detections with true-positive flags ``tp`` [N] and ``scores``
    [N] against ``num_gt`` ground-truth objects (recall is 0 when ``num_gt`` is 0)."""
    tp = np.asarray(tp, dtype=bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if tp.shape != s.shape:
        raise ValueError(f"tp, scores: expected the same length, got {tp.shape} and {s.shape}")
    if num_gt < 0:
        raise ValueError(f"num_gt: expected >= 0, got {num_gt}")
    order = np.argsort(-s, kind="mergesort")
    ctp = np.cumsum(tp[order])
    cfp = np.cumsum(~tp[order])
    prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    rec = ctp / num_gt if num_gt else np.zeros_like(prec)
    return PRCurve(s[order], prec, rec, int(num_gt))


def _ap101(curve: PRCurve) -> float:
    """COCO 101-point interpolated average precision of one curve (pycocotools ``accumulate``)."""
    if curve.num_gt == 0:
        return float("nan")
    if curve.precision.size == 0:
        return 0.0
    q = np.maximum.accumulate(curve.precision[::-1])[::-1]  # precision envelope
    idx = np.searchsorted(curve.recall, COCO_RECALL_POINTS, side="left")
    out = np.where(idx < q.size, q[np.minimum(idx, q.size - 1)], 0.0)
    return float(out.mean())


@dataclass(frozen=True)
class MAPResult:
    """COCO-style bbox mAP. ``ap`` [C, T]: per class (``class_ids`` [C], those with ground truth)
    and IoU threshold (``iou_thresholds`` [T]); ``map50`` at IoU 0.5, ``map50_95`` the mean over
    0.50:0.05:0.95 (NaN when no class has ground truth)."""

    class_ids: np.ndarray
    iou_thresholds: np.ndarray
    ap: np.ndarray
    map50: float
    map50_95: float


def evaluate_map(predictions, ground_truth, *, iou_thresholds=COCO_IOU_THRESHOLDS,
                 max_detections: int = 100) -> MAPResult:
    """COCO bbox mAP (area range "all", ``max_detections`` per image and class, 101-point
    interpolation), as pycocotools ``COCOeval`` stats[0] (mAP@50:95) and stats[1] (mAP@50).

    ``predictions``: one ``(boxes [N, 4], scores [N], classes [N])`` per image (a
    ``Detections`` works too); ``ground_truth``: one ``(boxes [G, 4], classes [G])`` per image,
    in the same order. Classes without ground truth are left out of the mean (pycocotools).
    """
    preds = [_pred_tuple(p, i) for i, p in enumerate(predictions)]
    gts = [_gt_tuple(g, i) for i, g in enumerate(ground_truth)]
    if len(preds) != len(gts):
        raise ValueError(f"predictions, ground_truth: expected one entry per image each, got {len(preds)} "
                         f"and {len(gts)}")
    thr = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    class_ids = np.unique(np.concatenate([g[1] for g in gts] + [np.zeros(0, np.int64)])).astype(np.int64)
    ap = np.zeros((class_ids.size, thr.size))
    for ci, cls in enumerate(class_ids):
        tps, scores, num_gt = [], [], 0
        for (pb, ps, pc), (gb, gc) in zip(preds, gts):
            gm = gc == cls
            num_gt += int(gm.sum())
            # per image and class: the max_detections best, by decreasing score (pycocotools)
            pm = np.flatnonzero(pc == cls)
            pm = pm[np.argsort(-ps[pm], kind="mergesort")][:max_detections]
            tps.append(match_detections(pb[pm], ps[pm], gb[gm], thr))
            scores.append(ps[pm])
        tp_all = np.concatenate(tps, axis=1)
        sc_all = np.concatenate(scores)
        for t in range(thr.size):
            ap[ci, t] = _ap101(precision_recall(tp_all[t], sc_all, num_gt))
    map_t = ap.mean(axis=0) if class_ids.size else np.full(thr.size, np.nan)
    i50 = np.flatnonzero(np.isclose(thr, 0.5))
    return MAPResult(class_ids, thr, ap, float(map_t[i50[0]]) if i50.size else float("nan"),
                     float(map_t.mean()) if thr.size else float("nan"))


def _pred_tuple(p, i: int):
    if hasattr(p, "boxes") and hasattr(p, "scores"):
        p = (p.boxes, p.scores, p.classes)
    b, s, c = p
    b = _boxes(b, f"predictions[{i}] boxes")
    s = np.asarray(s, dtype=np.float64).reshape(-1)
    c = np.asarray(c, dtype=np.int64).reshape(-1)
    if not len(b) == len(s) == len(c):
        raise ValueError(f"predictions[{i}]: boxes, scores, classes differ in length ({len(b)}, {len(s)}, {len(c)})")
    return b, s, c


def _gt_tuple(g, i: int):
    b, c = g
    b = _boxes(b, f"ground_truth[{i}] boxes")
    c = np.asarray(c, dtype=np.int64).reshape(-1)
    if len(b) != len(c):
        raise ValueError(f"ground_truth[{i}]: boxes and classes differ in length ({len(b)}, {len(c)})")
    return b, c


# ---------------------------------------------------------------------------------------------
# segmentation metrics
# ---------------------------------------------------------------------------------------------

def confusion_matrix(pred, gt, num_classes: int, *, ignore_index: int | None = None) -> np.ndarray:
    """[C, C] int64 counts, rows = ground-truth class, columns = predicted class, over the pixels
    of label maps ``pred`` and ``gt`` (same shape, ints). Pixels whose gt is ``ignore_index`` or
    outside [0, C) are left out; predictions outside [0, C) (e.g. -1 = unlabelled) are counted
    in no column but remain misses of their row in ``mean_iou`` / ``dice``."""
    return _confusion_full(pred, gt, num_classes, ignore_index)[:, :num_classes]


def _confusion_full(pred, gt, num_classes: int, ignore_index) -> np.ndarray:
    """[C, C + 1]: the last column counts predictions outside [0, C)."""
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred, gt: expected the same shape, got {p.shape} and {g.shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected an int >= 1, got {num_classes!r}")
    p = p.reshape(-1).astype(np.int64)
    g = g.reshape(-1).astype(np.int64)
    keep = (g >= 0) & (g < num_classes)
    if ignore_index is not None:
        keep &= g != ignore_index
    p, g = p[keep], g[keep]
    p = np.where((p >= 0) & (p < num_classes), p, num_classes)
    cm = np.bincount(g * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1))
    return cm.reshape(num_classes, num_classes + 1)


def _iou_dice_from_cm(cm_full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = cm_full.shape[0]
    tp = np.diag(cm_full[:, :c]).astype(np.float64)
    fn = cm_full.sum(1) - tp
    fp = cm_full[:, :c].sum(0) - tp
    denom_iou = tp + fp + fn
    denom_dice = 2 * tp + fp + fn
    iou = np.divide(tp, denom_iou, out=np.full_like(tp, np.nan), where=denom_iou > 0)
    dice_ = np.divide(2 * tp, denom_dice, out=np.full_like(tp, np.nan), where=denom_dice > 0)
    return iou, dice_


def mean_iou(pred, gt, num_classes: int, *, ignore_index: int | None = None) -> tuple[float, np.ndarray]:
    """(mIoU, per-class IoU [C]) of label maps: IoU_c = TP / (TP + FP + FN); classes absent from
    both maps are NaN and left out of the mean."""
    iou, _ = _iou_dice_from_cm(_confusion_full(pred, gt, num_classes, ignore_index))
    return (float(np.nanmean(iou)) if np.any(np.isfinite(iou)) else float("nan")), iou


def dice(pred, gt, num_classes: int | None = None, *, ignore_index: int | None = None):
    """Dice = 2 TP / (2 TP + FP + FN). With boolean masks and ``num_classes`` None: one float.
    With label maps and ``num_classes``: (mean Dice, per-class Dice [C]) as ``mean_iou``."""
    if num_classes is None:
        a, b = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
        if a.shape != b.shape:
            raise ValueError(f"pred, gt: expected the same shape, got {a.shape} and {b.shape}")
        s = a.sum() + b.sum()
        return float(2 * np.logical_and(a, b).sum() / s) if s else float("nan")
    _, d = _iou_dice_from_cm(_confusion_full(pred, gt, num_classes, ignore_index))
    return (float(np.nanmean(d)) if np.any(np.isfinite(d)) else float("nan")), d
