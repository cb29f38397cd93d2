"""Lifting 2D labels onto 3D points: observations, votes, instances across views.

1. **Observations** (point, view, pixel): for SfM points, their track (the keypoint where each
   image saw the point: visibility by track membership); for other points (splat centres), a
   projection into every view kept when it passes a depth test against a z-buffer of all the
   points (:func:`observations_by_projection`).
2. **Class votes**: each observation reads the class map (and confidence) at its pixel; each point
   takes the confidence-weighted majority. Then (``reliability_rounds``) every (view, class) pair
   gets a reliability a = how often that view's votes for that class agree with the other views'
   consensus (leave-one-out, Laplace-smoothed), and votes are re-weighted by the log-odds
   log((K - 1) a / (1 - a)) of a symmetric K-class noise model (the diagonal of Dawid & Skene's
   1979 EM), clipped at 0. A view whose mask swaps two classes gets weight ~0 for them, so a
   corrupted mask stops out-voting good ones. Points whose winning share of the weight is below
   ``min_agreement`` are ambiguous (-1), points without a vote unlabelled (-1).
3. **Instances**: ids are local to each image. Nodes are (view, local id); two nodes of different
   views are linked by the number of points both saw. Links are merged greedily, strongest
   first, when the overlap is a large enough part of the smaller node (``min_overlap``) and the
   two groups share no view (one node per view per object: a one-to-one matching of ids between
   views, grown as a graph). Each point then takes the majority group of its observations.
   Finally groups of one class that no view sees together and whose points touch in 3D (within
   3x the median point spacing) are merged: the sides of an object seen from opposite
   directions share no SfM point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Class id of pixels a backend positively calls "none of the classes" (outside every detection
#: box). Unlike -1 (void / unknown: no vote), background votes against the classes, and a point
#: it wins stays unlabelled (-1).
BACKGROUND = -2

__all__ = ["BACKGROUND", "LabelOptions", "Observations", "PointLabels", "label_points", "observations_by_projection",
           "observations_from_tracks", "sample_segmentations"]


@dataclass(frozen=True)
class LabelOptions:
    """min_agreement: the winning class (instance) needs more than this share of the vote weight
    (0.5 = a strict weighted majority); min_weight: total weight below which a point stays
    unlabelled. reliability_rounds: re-weighting rounds (0 = plain confidence-weighted voting).
    min_overlap: instance link strength / size of the smaller node needed to merge."""

    min_agreement: float = 0.5
    min_weight: float = 1e-6
    reliability_rounds: int = 2
    min_overlap: float = 0.3
    boundary_px: int = 2

    def __post_init__(self):
        if not 0.0 <= self.min_agreement < 1.0:
            raise ValueError(f"min_agreement: expected a value in [0, 1), got {self.min_agreement}")
        if self.min_weight < 0:
            raise ValueError(f"min_weight: expected >= 0, got {self.min_weight}")
        if isinstance(self.reliability_rounds, bool) or not isinstance(self.reliability_rounds, int) \
                or self.reliability_rounds < 0:
            raise ValueError(f"reliability_rounds: expected an int >= 0, got {self.reliability_rounds!r}")
        if isinstance(self.boundary_px, bool) or not isinstance(self.boundary_px, int) or self.boundary_px < 0:
            raise ValueError(f"boundary_px: expected an int >= 0, got {self.boundary_px!r}")
        if not 0.0 < self.min_overlap <= 1.0:
            raise ValueError(f"min_overlap: expected a value in (0, 1], got {self.min_overlap}")


@dataclass(eq=False)
class Observations:
    """Where points were seen: point [O] (index into the point array), view [O] (index into the
    view list), uv [O, 2] pixels (our convention: (0, 0) = centre of the top-left pixel)."""

    point: np.ndarray
    view: np.ndarray
    uv: np.ndarray
    num_points: int
    num_views: int

    def __post_init__(self):
        self.point = np.asarray(self.point, dtype=np.int64).reshape(-1)
        self.view = np.asarray(self.view, dtype=np.int64).reshape(-1)
        self.uv = np.asarray(self.uv, dtype=np.float64).reshape(-1, 2)
        if not len(self.point) == len(self.view) == len(self.uv):
            raise ValueError("point, view, uv: expected one row each per observation")


def observations_from_tracks(rec, image_ids: list[int]) -> tuple[np.ndarray, np.ndarray, Observations]:
    """(point3D ids [P], xyz [P, 3], Observations) of a ``recon.scene.Reconstruction``: every
    track element (image_id, keypoint index) of an image in ``image_ids`` (views in that order)."""
    view_of = {int(i): k for k, i in enumerate(image_ids)}
    pids = np.array(sorted(rec.points3D), dtype=np.int64)
    xyz = np.array([rec.points3D[p].xyz for p in pids], dtype=np.float64).reshape(-1, 3)
    pts, views, uvs = [], [], []
    kp = {i: rec.images[i].keypoints for i in image_ids}
    for k, pid in enumerate(pids):
        tr = rec.points3D[int(pid)].track
        for img_id, p2d in tr:
            v = view_of.get(int(img_id))
            if v is None:
                continue
            kps = kp[int(img_id)]
            if 0 <= p2d < len(kps):
                pts.append(k)
                views.append(v)
                uvs.append(kps[p2d])
    return pids, xyz, Observations(np.array(pts, np.int64), np.array(views, np.int64),
                                   np.array(uvs, np.float64).reshape(-1, 2), len(pids), len(image_ids))


def observations_by_projection(xyz, cameras, cam_from_world, *, cell_px: int = 4,
                               depth_tolerance: float = 0.02) -> Observations:
    """Observations of points ``xyz`` [P, 3] (world) in views given by ``cameras`` (list of
    ``calib.Camera``) and ``cam_from_world`` (list of ``calib.Rigid3``), with a depth test: a point
    is seen when it projects inside the image in front of the camera and its depth is within
    ``depth_tolerance`` (relative) of the nearest point projecting into the same ``cell_px`` x
    ``cell_px`` cell (a z-buffer of the points themselves, so dense splat centres occlude the
    ones behind them)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz: expected [P, 3], got {xyz.shape}")
    if len(cameras) != len(cam_from_world):
        raise ValueError(f"cameras, cam_from_world: expected one each per view, got {len(cameras)} and "
                         f"{len(cam_from_world)}")
    if cell_px < 1:
        raise ValueError(f"cell_px: expected >= 1, got {cell_px}")
    pts, views, uvs = [], [], []
    for v, (cam, T) in enumerate(zip(cameras, cam_from_world)):
        pc = T.apply(xyz)
        front = pc[:, 2] > 1e-9
        uv, valid = cam.project(pc)
        W, H = cam.width, cam.height
        inside = front & valid & (uv[:, 0] > -0.5) & (uv[:, 0] < W - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < H - 0.5)
        idx = np.flatnonzero(inside)
        if idx.size == 0:
            continue
        cx = ((uv[idx, 0] + 0.5) // cell_px).astype(np.int64)
        cy = ((uv[idx, 1] + 0.5) // cell_px).astype(np.int64)
        gw = W // cell_px + 1
        cell = cy * gw + cx
        z = pc[idx, 2]
        zbuf = np.full((H // cell_px + 1) * gw, np.inf)
        np.minimum.at(zbuf, cell, z)
        seen = z <= zbuf[cell] * (1.0 + depth_tolerance)
        pts.append(idx[seen])
        views.append(np.full(int(seen.sum()), v, np.int64))
        uvs.append(uv[idx[seen]])
    cat = (lambda a, d: np.concatenate(a) if a else np.zeros(d))
    return Observations(cat(pts, 0).astype(np.int64), cat(views, 0).astype(np.int64),
                        cat(uvs, (0, 2)), len(xyz), len(cameras))


@dataclass(eq=False)
class SampledLabels:
    """Per observation: class [O] (-1 = no label), weight [O] (confidence), instance [O] (local
    id, 0 = none; -1 when the view has no instance map)."""

    cls: np.ndarray
    weight: np.ndarray
    instance: np.ndarray


def _purity(class_map: np.ndarray, x: np.ndarray, y: np.ndarray, c: np.ndarray, r: int) -> np.ndarray:
    """Share of the (2r + 1)^2 window around each (x, y) whose class is ``c`` (pixels outside
    the image are left out)."""
    H, W = class_map.shape
    same = np.zeros(x.shape, np.float64)
    count = np.zeros(x.shape, np.float64)
    for dy in range(-r, r + 1):
        yy = y + dy
        oky = (yy >= 0) & (yy < H)
        for dx in range(-r, r + 1):
            xx = x + dx
            ok = oky & (xx >= 0) & (xx < W)
            same[ok] += class_map[yy[ok], xx[ok]] == c[ok]
            count[ok] += 1
    return same / np.maximum(count, 1)


def sample_segmentations(obs: Observations, segment, sizes: list[tuple[int, int]], *, progress=None,
                         boundary_px: int = 2) -> SampledLabels:
    """Read each view's Segmentation (``segment(view_index)`` -> ``Segmentation`` or None when the
    view has none) at its observations' pixels (nearest pixel). ``sizes``: (W, H) per view; a
    segmentation of another size raises ValueError (the caller names the file).

    Each vote's weight is the confidence at the pixel times the share of the (2 boundary_px + 1)^2
    window around it that has the same class: a pixel on a mask boundary, where a segmenter's
    boundary a few pixels off flips the class, votes about half as much as one inside a region
    (0 = off)."""
    cls = np.full(len(obs.point), -1, np.int64)
    wgt = np.zeros(len(obs.point), np.float64)
    ins = np.full(len(obs.point), -1, np.int64)
    order = np.argsort(obs.view, kind="stable")
    bounds = np.searchsorted(obs.view[order], np.arange(obs.num_views + 1))
    for v in range(obs.num_views):
        sel = order[bounds[v]:bounds[v + 1]]
        seg = segment(v)
        if progress is not None:
            progress(v)
        if seg is None or sel.size == 0:
            continue
        W, H = sizes[v]
        if seg.size != (W, H):
            raise ValueError(f"view {v}: segmentation is {seg.size[0]}x{seg.size[1]}, the image is {W}x{H}")
        x = np.clip(np.rint(obs.uv[sel, 0]).astype(np.int64), 0, W - 1)
        y = np.clip(np.rint(obs.uv[sel, 1]).astype(np.int64), 0, H - 1)
        if seg.class_map is not None:
            cls[sel] = seg.class_map[y, x]
            wgt[sel] = 1.0 if seg.confidence is None else seg.confidence[y, x]
            if boundary_px > 0:
                wgt[sel] *= _purity(seg.class_map, x, y, cls[sel], boundary_px)
        if seg.instance_map is not None:
            ins[sel] = seg.instance_map[y, x]
    wgt[(cls < 0) & (cls != BACKGROUND)] = 0.0
    return SampledLabels(cls, wgt, ins)


@dataclass(eq=False)
class PointLabels:
    """class_id [P] int32 (-1 = unlabelled or ambiguous), instance_id [P] int32 (-1 = none; ids
    0..K-1 by decreasing size), confidence [P] float32 (winning share of the class vote weight;
    0 when unlabelled), num_votes [P] (observations with a class), instance_class: instance id ->
    its majority class id, view_reliability [V, K] per view and class index (``class_ids``)."""

    class_id: np.ndarray
    instance_id: np.ndarray
    confidence: np.ndarray
    num_votes: np.ndarray
    instance_class: dict[int, int] = field(default_factory=dict)
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    view_reliability: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def num_labelled(self) -> int:
        return int((self.class_id >= 0).sum())


def _weighted_argmax(point: np.ndarray, label: np.ndarray, weight: np.ndarray, num_points: int,
                     num_labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(votes [P, K], winner [P] (-1 without weight), share [P])."""
    votes = np.zeros((num_points, max(num_labels, 1)))
    ok = (label >= 0) & (weight > 0)
    np.add.at(votes, (point[ok], label[ok]), weight[ok])
    total = votes.sum(1)
    win = np.argmax(votes, axis=1)
    share = np.divide(votes[np.arange(num_points), win], total, out=np.zeros(num_points), where=total > 0)
    win = np.where(total > 0, win, -1)
    return votes, win, share


def label_points(obs: Observations, sampled: SampledLabels, options: LabelOptions | None = None, *,
                 xyz=None) -> PointLabels:
    """Class, instance and confidence of every point from its sampled observations (see the
    module docstring for the method). ``xyz`` [P, 3]: the points, for the 3D-adjacency merge of
    instance fragments (skipped when None)."""
    options = LabelOptions() if options is None else options
    if len(sampled.cls) != len(obs.point):
        raise ValueError(f"sampled: expected {len(obs.point)} observations, got {len(sampled.cls)}")
    P, V = obs.num_points, obs.num_views
    has = (sampled.cls >= 0) | (sampled.cls == BACKGROUND)
    class_ids = np.unique(sampled.cls[has])
    K = class_ids.size
    lab = np.full(len(obs.point), -1, np.int64)
    lab[has] = np.searchsorted(class_ids, sampled.cls[has])
    base_w = sampled.weight.copy()
    w = base_w.copy()
    rel = np.ones((V, max(K, 1)))
    for _ in range(options.reliability_rounds if K > 1 else 0):
        votes, _, _ = _weighted_argmax(obs.point, lab, w, P, K)
        # leave-one-out consensus of each observation's point
        o = np.flatnonzero(has & (w > 0))
        loo = votes[obs.point[o]].copy()
        loo[np.arange(o.size), lab[o]] -= w[o]
        loo_tot = loo.sum(1)
        cons = np.argmax(loo, axis=1)
        valid = loo_tot > 1e-12
        o, cons, agree = o[valid], cons[valid], (cons[valid] == lab[o[valid]])
        key = obs.view[o] * K + lab[o]
        n_agree = np.bincount(key, weights=agree.astype(np.float64), minlength=V * K)
        n_all = np.bincount(key, minlength=V * K).astype(np.float64)
        a = ((n_agree + 1.0) / (n_all + 2.0)).reshape(V, K)
        logodds = np.clip(np.log((K - 1) * a / (1.0 - a)), 0.0, None)
        # relative to a typical (view, class): ordinary views keep weight 1 (so a tie stays a
        # tie, as in a plain vote); only views that disagree with the others lose weight
        typical = np.median(logodds.reshape(-1)[n_all >= 5]) if np.any(n_all >= 5) else logodds.max()
        rel = np.clip(logodds / max(0.5 * float(typical), 1e-9), 0.0, 1.0)
        w = base_w * np.where(has, rel[obs.view, np.maximum(lab, 0)], 0.0)
    votes, win, share = _weighted_argmax(obs.point, lab, w, P, K)
    total = votes.sum(1)
    ok = (win >= 0) & (share > options.min_agreement) & (total > options.min_weight)
    class_id = np.where(ok, class_ids[np.maximum(win, 0)] if K else -1, -1).astype(np.int32)
    ok &= class_id != BACKGROUND
    class_id[~ok] = -1  # background won: "not an object of any class"
    confidence = np.where(ok, share, 0.0).astype(np.float32)
    num_votes = np.bincount(obs.point[has], minlength=P).astype(np.int32)

    instance_id = np.full(P, -1, np.int32)
    instance_class: dict[int, int] = {}
    if np.any(sampled.instance > 0):
        instance_id = _lift_instances(obs, sampled.instance, base_w_for_instances(sampled), options)
        if xyz is not None:
            instance_id = _merge_adjacent_fragments(np.asarray(xyz, np.float64), instance_id, class_id, obs)
        for k in np.unique(instance_id[instance_id >= 0]):
            c = class_id[(instance_id == k) & (class_id >= 0)]
            if c.size:
                vals, cnt = np.unique(c, return_counts=True)
                instance_class[int(k)] = int(vals[np.argmax(cnt)])
    return PointLabels(class_id, instance_id, confidence, num_votes, instance_class, class_ids.astype(np.int64),
                       rel)


def _merge_adjacent_fragments(xyz: np.ndarray, inst: np.ndarray, cls: np.ndarray, obs: Observations,
                              *, spacing_factor: float = 3.0) -> np.ndarray:
    """Merge instance groups that no view sees together (disjoint view sets), that have the same
    majority class, and whose points come within ``spacing_factor`` x the median nearest-
    neighbour spacing of the points: the sides of one object seen from opposite directions share
    no SfM point, so the overlap graph leaves them apart. Groups seen in a common view are never
    merged (that view told them apart). Renumbered by size."""
    from scipy.spatial import cKDTree

    ids = np.unique(inst[inst >= 0])
    if ids.size < 2 or len(xyz) < 3:
        return inst
    spacing = float(np.median(cKDTree(xyz).query(xyz, k=2)[0][:, 1]))
    thr = spacing_factor * spacing
    views = {int(k): set(np.unique(obs.view[inst[obs.point] == k]).tolist()) for k in ids}
    klass = {}
    for k in ids:
        c = cls[(inst == k) & (cls >= 0)]
        klass[int(k)] = int(np.bincount(c - c.min()).argmax() + c.min()) if c.size else -1
    trees = {int(k): cKDTree(xyz[inst == k]) for k in ids}
    parent = {int(k): int(k) for k in ids}

    def find(k):
        while parent[k] != k:
            k = parent[k]
        return k

    order = sorted((int(k) for k in ids), key=lambda k: -int((inst == k).sum()))
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            ra, rb = find(a), find(b)
            if ra == rb or klass[a] != klass[b] or klass[a] < 0 or views[ra] & views[rb]:
                continue
            d, _ = trees[b].query(xyz[inst == a], k=1, distance_upper_bound=thr)
            if np.isfinite(d).any():
                parent[rb] = ra
                views[ra] |= views.pop(rb)
    root = np.full(int(ids.max()) + 1, -1, np.int64)
    for k in ids:
        root[k] = find(int(k))
    out = np.where(inst >= 0, root[np.maximum(inst, 0)], -1)
    u, counts = np.unique(out[out >= 0], return_counts=True)
    remap = np.full(int(ids.max()) + 1, -1, np.int64)
    remap[u[np.argsort(-counts, kind="stable")]] = np.arange(u.size)
    return np.where(out >= 0, remap[np.maximum(out, 0)], -1).astype(np.int32)


def base_w_for_instances(sampled: SampledLabels) -> np.ndarray:
    # instance maps may come without a class map (weight 0 there): count each observation once
    return np.where(sampled.instance > 0, np.maximum(sampled.weight, 0.0) + (sampled.weight <= 0), 0.0)


def _lift_instances(obs: Observations, local: np.ndarray, weight: np.ndarray, options: LabelOptions) -> np.ndarray:
    from scipy import sparse

    P = obs.num_points
    sel = np.flatnonzero(local > 0)
    node_keys, node = np.unique(np.stack([obs.view[sel], local[sel]], 1), axis=0, return_inverse=True)
    node = node.reshape(-1)
    N = len(node_keys)
    node_view = node_keys[:, 0]
    inc = sparse.csr_matrix((np.ones(sel.size), (obs.point[sel], node)), shape=(P, N))
    inc.data[:] = 1.0  # a point counts once per node
    size = np.asarray(inc.sum(0)).reshape(-1)
    co = (inc.T @ inc).tocoo()
    a, b, n = co.row, co.col, co.data
    keep = (a < b) & (node_view[a] != node_view[b])
    a, b, n = a[keep], b[keep], n[keep]
    ratio = n / np.minimum(size[a], size[b])
    keep = ratio >= options.min_overlap
    a, b, n = a[keep], b[keep], n[keep]
    parent = np.arange(N)
    views_of = {i: {int(node_view[i])} for i in range(N)}

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for e in np.argsort(-n, kind="stable"):
        ra, rb = find(a[e]), find(b[e])
        if ra == rb or views_of[ra] & views_of[rb]:
            continue
        if len(views_of[ra]) < len(views_of[rb]):
            ra, rb = rb, ra
        parent[rb] = ra
        views_of[ra] |= views_of.pop(rb)
    group = np.array([find(i) for i in range(N)], np.int64)
    _, group = np.unique(group, return_inverse=True)
    G = int(group.max()) + 1
    _, win, share = _weighted_argmax(obs.point[sel], group[node], weight[sel], P, G)
    pid = np.where((win >= 0) & (share > options.min_agreement), win, -1)
    # renumber by decreasing number of points, 0..K-1
    ids, counts = np.unique(pid[pid >= 0], return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    remap = np.full(G, -1, np.int64)
    remap[order] = np.arange(order.size)
    return np.where(pid >= 0, remap[np.maximum(pid, 0)], -1).astype(np.int32)
