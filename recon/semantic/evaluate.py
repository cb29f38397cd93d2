"""Judge lifted labels against a ``recon.synth`` dataset's truth.

The true class of a reconstructed point is read where the point projects in the TRUE views (after
a similarity alignment of the reconstruction's camera centres onto the true ones, by image
name), in the views where it passes a depth test against the true depth map; the majority over
those views is its class (and instance). Points seen by no true view are not judged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon.semantic.metrics import hungarian

__all__ = ["LabelScore", "score_labels", "true_point_labels"]


def true_point_labels(xyz, rec, dataset, *, depth_tolerance: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """(class [P], instance [P]) of points ``xyz`` [P, 3] in ``rec``'s frame (-1: not seen in
    any true view). ``rec``: the reconstruction the points belong to (its registered images are
    matched to ``dataset`` views by name for the alignment); ``dataset``: a ``SynthDataset``."""
    from calib import Sim3

    by_name = {v.name: i for i, v in enumerate(dataset.views)}
    src, dst = [], []
    for im in rec.registered_images:
        i = by_name.get(im.name)
        if i is not None:
            src.append(im.center)
            dst.append(dataset.views[i].cam_from_world.dst_origin_in_src())
    if len(src) < 3:
        raise ValueError("rec: fewer than 3 registered images match the dataset's views by name")
    sim = Sim3.align(np.array(src), np.array(dst), with_scale=True)
    world = sim.apply(np.asarray(xyz, dtype=np.float64))
    P = len(world)
    K = max(dataset.class_names) + 1 if dataset.class_names else 256
    votes = np.zeros((P, K), np.int64)
    ip, ii = [], []
    for i in range(len(dataset.views)):
        cam, T = dataset.camera(i), dataset.views[i].cam_from_world
        pc = T.apply(world)
        uv, valid = cam.project(pc)
        x, y = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
        ok = valid & (pc[:, 2] > 0) & (x >= 0) & (x < cam.width) & (y >= 0) & (y < cam.height)
        idx = np.flatnonzero(ok)
        depth = dataset.load_depth(i)[y[idx], x[idx]]
        vis = (depth > 0) & (np.abs(pc[idx, 2] - depth) <= depth_tolerance * depth)
        idx = idx[vis]
        c = dataset.load_class_ids(i)[y[idx], x[idx]].astype(np.int64)
        k = dataset.load_instance_ids(i)[y[idx], x[idx]].astype(np.int64)
        good = c > 0
        np.add.at(votes, (idx[good], c[good]), 1)
        ip.append(idx[k > 0])
        ii.append(k[k > 0])
    true_cls = np.where(votes.sum(1) > 0, np.argmax(votes, 1), -1)
    true_ins = np.full(P, -1, np.int64)
    if ip:
        pi, ki = np.concatenate(ip), np.concatenate(ii)
        if pi.size:
            kk = np.unique(ki)
            iv = np.zeros((P, kk.size), np.int64)
            np.add.at(iv, (pi, np.searchsorted(kk, ki)), 1)
            true_ins = np.where(iv.sum(1) > 0, kk[np.argmax(iv, 1)], -1)
    return true_cls, true_ins


@dataclass(frozen=True)
class LabelScore:
    """class_accuracy: right class among labelled, judged points; labelled_fraction: labelled
    among judged points seen by the labelling; instance_accuracy: right instance among points
    with a predicted and a true instance, after the best one-to-one matching of ids."""

    class_accuracy: float
    labelled_fraction: float
    instance_accuracy: float
    judged: int
    labelled: int


def score_labels(pred_class, true_class, *, seen=None, pred_instance=None, true_instance=None) -> LabelScore:
    """Score predicted labels against truth (-1 = none in either). ``seen`` [P] bool: points the
    labelling saw (default: all)."""
    pc, tc = np.asarray(pred_class), np.asarray(true_class)
    seen = np.ones(pc.shape, bool) if seen is None else np.asarray(seen, bool)
    judged = seen & (tc >= 0)
    lab = judged & (pc >= 0)
    acc = float((pc[lab] == tc[lab]).mean()) if lab.any() else float("nan")
    frac = float(lab.sum() / judged.sum()) if judged.any() else float("nan")
    inst_acc = float("nan")
    if pred_instance is not None and true_instance is not None:
        pi, ti = np.asarray(pred_instance), np.asarray(true_instance)
        both = (pi >= 0) & (ti >= 0)
        if both.any():
            up, ip = np.unique(pi[both], return_inverse=True)
            ut, it = np.unique(ti[both], return_inverse=True)
            table = np.zeros((up.size, ut.size))
            np.add.at(table, (ip, it), 1)
            r, c = hungarian(table, maximize=True)
            inst_acc = float(table[r, c].sum() / both.sum())
    return LabelScore(acc, frac, inst_acc, int(judged.sum()), int(lab.sum()))


# ---------------------------------------------------------------------------------------------
# corrupted label maps (robustness tests and benchmarks)
# ---------------------------------------------------------------------------------------------

def swap_classes(class_map, rng, *, void: int = 0) -> np.ndarray:
    """``class_map`` with its classes permuted as whole masks: every non-void class present gets
    another present class (a random derangement), as a segmenter that names objects wrongly."""
    cm = np.asarray(class_map)
    present = [int(c) for c in np.unique(cm) if c != void]
    if len(present) < 2:
        return cm.copy()
    while True:
        perm = rng.permutation(len(present))
        if np.all(perm != np.arange(len(present))):
            break
    lut = np.arange(int(cm.max()) + 1, dtype=cm.dtype)
    lut[present] = np.asarray(present, dtype=cm.dtype)[perm]
    return lut[cm]


def shift_boundaries(label_map, rng, *, max_px: int = 3) -> np.ndarray:
    """``label_map`` with every region grown or shrunk by up to ``max_px`` pixels: a shift of the
    whole map by a random (dx, dy) in [-max_px, max_px] (edge pixels repeated), so each object's
    boundary is off by a few pixels as a real segmenter's is."""
    lm = np.asarray(label_map)
    dx, dy = rng.integers(-max_px, max_px + 1, size=2)
    H, W = lm.shape
    ys = np.clip(np.arange(H) - dy, 0, H - 1)
    xs = np.clip(np.arange(W) - dx, 0, W - 1)
    return lm[ys[:, None], xs[None, :]]


def permute_instances(instance_map, rng) -> np.ndarray:
    """``instance_map`` with its non-zero ids replaced by a random one-to-one relabelling (ids
    1..65535), as a per-image instance segmenter numbers objects."""
    im = np.asarray(instance_map)
    ids = np.unique(im[im > 0])
    new = rng.choice(np.arange(1, 65536), size=ids.size, replace=False)
    lut = np.zeros(int(im.max()) + 1, dtype=np.int64)
    lut[ids] = new
    return lut[im].astype(np.uint16)
