"""Exact, vectorised ray casting against the analytic primitives of a Scene (private).

Rays are intersected in each primitive's local frame (a rotation preserves the ray parameter
t, so ``t`` is the distance along the unit world direction). Arrays are stored
component-major ([3, N], contiguous rows) so every operation is a contiguous vector op;
origins may be shared ([3, 1], one camera centre) or per ray ([3, N]). Objects are culled per
instance and per primitive with bounding spheres, and rays that already hit something nearer
skip them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon.synth.scene import Primitive, Scene

_EPS = 1e-9


@dataclass
class Hits:
    """Closest hit per ray. t: [N] distance along the unit direction (inf: miss); prim: [N]
    primitive index (-1: miss); patch: [N] global texture patch (-1: miss); u, v: [N] metres in
    the patch; normal: [N, 3] world unit normal, facing the ray origin (0 on a miss)."""

    t: np.ndarray
    prim: np.ndarray
    patch: np.ndarray
    u: np.ndarray
    v: np.ndarray
    normal: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        return self.prim >= 0


def _sel(o: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return o if o.shape[1] == 1 else o[:, idx]


def _rect(p: Primitive, o, d):
    hx, hy = p.size
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -o[2] / d[2]
    x = o[0] + t * d[0]
    y = o[1] + t * d[1]
    ok = (t > _EPS) & (np.abs(x) <= hx) & (np.abs(y) <= hy)
    n = np.zeros_like(d)
    n[2] = 1.0
    return np.where(ok, t, np.inf), np.zeros(d.shape[1], np.int64), x + hx, y + hy, n


def _box(p: Primitive, o, d):
    h = p.size
    with np.errstate(divide="ignore", invalid="ignore"):
        tmins, tmaxs = [], []
        for k in range(3):
            inv = 1.0 / d[k]
            t1 = (-h[k] - o[k]) * inv
            t2 = (h[k] - o[k]) * inv
            tmins.append(np.minimum(t1, t2))
            tmaxs.append(np.maximum(t1, t2))
    tn = np.maximum(np.maximum(tmins[0], tmins[1]), tmins[2])
    tf = np.minimum(np.minimum(tmaxs[0], tmaxs[1]), tmaxs[2])
    axis = np.where(tmins[0] >= tn, 0, np.where(tmins[1] >= tn, 1, 2))
    ok = (tn <= tf) & (tn > _EPS)
    t = np.where(ok, tn, np.inf)
    tt = np.where(ok, tn, 0.0)
    px, py, pz = (o[k] + tt * d[k] for k in range(3))
    dax = np.where(axis == 0, d[0], np.where(axis == 1, d[1], d[2]))
    positive = dax < 0  # entering through the + face
    face = 2 * axis + positive
    u = np.where(axis == 0, py + h[1], px + h[0])
    v = np.where(axis == 2, py + h[1], pz + h[2])
    sgn = np.where(positive, 1.0, -1.0)
    n = np.stack([np.where(axis == 0, sgn, 0.0), np.where(axis == 1, sgn, 0.0), np.where(axis == 2, sgn, 0.0)])
    return t, face, u, v, n


def _cube_uv(n: np.ndarray, r: float):
    """Cube-map patch (0..5: -x +x -y +y -z +z) and (u, v) in metres for unit normals [3, N]."""
    ax, ay, az = np.abs(n)
    axis = np.where((ax >= ay) & (ax >= az), 0, np.where(ay >= az, 1, 2))
    na = np.where(axis == 0, n[0], np.where(axis == 1, n[1], n[2]))
    face = 2 * axis + (na > 0)
    den = np.maximum(np.abs(na), 1e-12)
    u = (np.where(axis == 0, n[1], n[0]) / den + 1.0) * r
    v = (np.where(axis == 2, n[1], n[2]) / den + 1.0) * r
    return face, u, v


def _sphere(p: Primitive, o, d):
    r = p.size[0]
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    c = o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - r * r
    disc = b * b - c
    ok = disc >= 0
    t = -b - np.sqrt(np.where(ok, disc, 0.0))
    ok &= t > _EPS
    t = np.where(ok, t, np.inf)
    tt = np.where(ok, t, 0.0)
    n = (o + tt * d) / r
    n[2] = np.where(ok, n[2], 1.0)
    face, u, v = _cube_uv(n, r)
    return t, face, u, v, n


def _cylinder(p: Primitive, o, d):
    r, hz = p.size
    a = d[0] * d[0] + d[1] * d[1]
    b = o[0] * d[0] + o[1] * d[1]
    c = o[0] * o[0] + o[1] * o[1] - r * r
    disc = b * b - a * c
    side_ok = (disc >= 0) & (a > 1e-18)
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = (-b - np.sqrt(np.where(side_ok, disc, 0.0))) / np.where(a > 1e-18, a, 1.0)
    zs = o[2] + ts * d[2]
    side_ok &= (ts > _EPS) & (np.abs(zs) <= hz)
    ts = np.where(side_ok, ts, np.inf)
    # caps: entering the top (+z) when going down, the bottom (-z) when going up
    down = d[2] < 0
    zc = np.where(down, hz, -hz)
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = (zc - o[2]) / d[2]
    xc = o[0] + tc * d[0]
    yc = o[1] + tc * d[1]
    cap_ok = (tc > _EPS) & (xc * xc + yc * yc <= r * r)
    tc = np.where(cap_ok, tc, np.inf)
    use_cap = tc < ts
    t = np.minimum(ts, tc)
    tt = np.where(np.isfinite(t), t, 0.0)
    px, py, pz = (o[k] + tt * d[k] for k in range(3))
    ang = np.arctan2(py, px)
    face = np.where(use_cap, np.where(down, 2, 1), 0)
    u = np.where(use_cap, px + r, r * (ang + np.pi))
    v = np.where(use_cap, py + r, pz + hz)
    n = np.stack([np.where(use_cap, 0.0, px / r), np.where(use_cap, 0.0, py / r),
                  np.where(use_cap, np.where(down, 1.0, -1.0), 0.0)])
    return t, face, u, v, n


_INTERSECT = {"rect": _rect, "box": _box, "sphere": _sphere, "cylinder": _cylinder}


def _groups(scene: Scene):
    """Per instance: (is_big, primitive indices, bounding centre [3, 1], radius); objects first."""
    cache = scene.__dict__.get("_raycast_groups")
    if cache is not None:
        return cache
    by_inst: dict[int, list[int]] = {}
    for i, p in enumerate(scene.primitives):
        by_inst.setdefault(p.instance_id, []).append(i)
    groups = []
    for idx in by_inst.values():
        spheres = [scene.primitives[i].bounding_sphere() for i in idx]
        centre = np.mean([c for c, _ in spheres], axis=0)
        radius = max(np.linalg.norm(c - centre) + r for c, r in spheres) * (1 + 1e-9) + 1e-9
        big = any(scene.primitives[i].kind == "rect" for i in idx)
        groups.append((big, idx, centre.reshape(3, 1), radius))
    groups.sort(key=lambda g: g[0])
    scene.__dict__["_raycast_groups"] = groups
    return groups


def _sphere_candidates(o, d, centre, radius, t_best):
    oc = o - centre
    b = oc[0] * d[0] + oc[1] * d[1] + oc[2] * d[2]
    c = oc[0] * oc[0] + oc[1] * oc[1] + oc[2] * oc[2] - radius * radius
    disc = b * b - c
    sq = np.sqrt(np.maximum(disc, 0.0))
    return (disc >= 0) & (sq - b > _EPS) & (-b - sq < t_best)


def cast(scene: Scene, origins: np.ndarray, dirs: np.ndarray) -> Hits:
    """Closest hits of world rays ``origins + t * dirs``; ``dirs`` [N, 3] unit length,
    ``origins`` [N, 3] or [3] (one shared origin)."""
    d_all = np.ascontiguousarray(np.asarray(dirs).T)  # [3, N]
    n = d_all.shape[1]
    o_arr = np.asarray(origins, dtype=d_all.dtype)
    o_all = o_arr.reshape(3, 1) if o_arr.ndim == 1 else np.ascontiguousarray(o_arr.T)
    t_best = np.full(n, np.inf, d_all.dtype)
    prim = np.full(n, -1, np.int64)
    face = np.zeros(n, np.int64)
    u = np.zeros(n, d_all.dtype)
    v = np.zeros(n, d_all.dtype)
    nrm = np.zeros((3, n), d_all.dtype)
    prims = scene.primitives
    for big, idx, centre, radius in _groups(scene):
        if big:
            sub = None
            o_g, d_g = o_all, d_all
        else:
            sub = np.flatnonzero(_sphere_candidates(o_all, d_all, centre, radius, t_best))
            if sub.size == 0:
                continue
            o_g, d_g = _sel(o_all, sub), d_all[:, sub]
        for i in idx:
            p = prims[i]
            if sub is not None and len(idx) > 1 and sub.size > 256:
                c_p, r_p = p.bounding_sphere()
                keep = np.flatnonzero(_sphere_candidates(o_g, d_g, c_p.reshape(3, 1), r_p * (1 + 1e-9) + 1e-9,
                                                         t_best[sub]))
                if keep.size == 0:
                    continue
                rows, o_p, d_p = sub[keep], _sel(o_g, keep), d_g[:, keep]
            else:
                rows, o_p, d_p = sub, o_g, d_g
            R, tr = p.world_from_local.rotation, p.world_from_local.translation
            Rt = R.T.astype(d_all.dtype)
            o_l = Rt @ (o_p - tr.reshape(3, 1).astype(d_all.dtype))
            d_l = Rt @ d_p
            t, f, uu, vv, nl = _INTERSECT[p.kind](p, o_l, d_l)
            cur = t_best if rows is None else t_best[rows]
            better = t < cur
            if not np.any(better):
                continue
            j = np.flatnonzero(better) if rows is None else rows[better]
            t_best[j] = t[better]
            prim[j] = i
            face[j] = f[better]
            u[j] = uu[better]
            v[j] = vv[better]
            nrm[:, j] = R.astype(d_all.dtype) @ nl[:, better]
    hit = prim >= 0
    # normals facing the ray origin (two-sided surfaces)
    flip = (nrm * d_all).sum(0) > 0
    nrm[:, flip] *= -1
    patch = np.full(n, -1, np.int64)
    if np.any(hit):
        base = scene.__dict__.get("_patch_base")
        if base is None:
            counts = np.array([q.num_patches for q in prims], np.int64)
            base = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            scene.__dict__["_patch_base"] = base
        patch[hit] = base[prim[hit]] + face[hit]
    return Hits(t_best, prim, patch, u, v, np.ascontiguousarray(nrm.T))
