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


# ---- phase 1: hit distance only (inf on a miss); o [3, 1] or [3, M], d [3, M], local frame ----

def _t_rect(p: Primitive, o, d):
    hx, hy = p.size
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -o[2] / d[2]
    x = o[0] + t * d[0]
    y = o[1] + t * d[1]
    ok = (t > _EPS) & (np.abs(x) <= hx) & (np.abs(y) <= hy)
    return np.where(ok, t, np.inf)


def _t_box(p: Primitive, o, d):
    h = p.size
    with np.errstate(divide="ignore", invalid="ignore"):
        tn = tf = None
        for k in range(3):
            inv = 1.0 / d[k]
            t1 = (-h[k] - o[k]) * inv
            t2 = (h[k] - o[k]) * inv
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            tn = lo if tn is None else np.maximum(tn, lo)
            tf = hi if tf is None else np.minimum(tf, hi)
    return np.where((tn <= tf) & (tn > _EPS), tn, np.inf)


def _t_sphere(p: Primitive, o, d):
    r = p.size[0]
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    c = o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - r * r
    disc = b * b - c
    ok = disc >= 0
    t = -b - np.sqrt(np.where(ok, disc, 0.0))
    return np.where(ok & (t > _EPS), t, np.inf)


def _t_cylinder(p: Primitive, o, d):
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
        # caps: entering the top (+z) when going down, the bottom (-z) when going up
        tc = (np.where(d[2] < 0, hz, -hz) - o[2]) / d[2]
    xc = o[0] + tc * d[0]
    yc = o[1] + tc * d[1]
    cap_ok = (tc > _EPS) & (xc * xc + yc * yc <= r * r)
    return np.minimum(np.where(side_ok, ts, np.inf), np.where(cap_ok, tc, np.inf))


# ---- phase 2: surface attributes of the winning hits, from the local hit point q [3, M] ----

def _cube_uv(n: np.ndarray, r: float):
    """Cube-map patch (0..5: -x +x -y +y -z +z) and (u, v) in metres for directions [3, M]."""
    ax, ay, az = np.abs(n)
    axis = np.where((ax >= ay) & (ax >= az), 0, np.where(ay >= az, 1, 2))
    na = np.where(axis == 0, n[0], np.where(axis == 1, n[1], n[2]))
    face = 2 * axis + (na > 0)
    den = np.maximum(np.abs(na), 1e-300)
    u = (np.where(axis == 0, n[1], n[0]) / den + 1.0) * r
    v = (np.where(axis == 2, n[1], n[2]) / den + 1.0) * r
    return face, u, v


def _attr_rect(p: Primitive, q):
    hx, hy = p.size
    n = np.zeros_like(q)
    n[2] = 1.0
    return np.zeros(q.shape[1], np.int64), q[0] + hx, q[1] + hy, n


def _attr_box(p: Primitive, q):
    h = p.size
    # the face is the coordinate that reached its half extent (largest |q_k| / h_k)
    rel = np.abs(q) / h[:, None]
    face, _, _ = _cube_uv(rel * np.sign(q), 1.0)
    axis = face // 2
    positive = (face % 2) == 1
    u = np.where(axis == 0, q[1] + h[1], q[0] + h[0])
    v = np.where(axis == 2, q[1] + h[1], q[2] + h[2])
    sgn = np.where(positive, 1.0, -1.0)
    n = np.stack([np.where(axis == 0, sgn, 0.0), np.where(axis == 1, sgn, 0.0), np.where(axis == 2, sgn, 0.0)])
    return face, u, v, n


def _attr_sphere(p: Primitive, q):
    r = p.size[0]
    n = q / r
    face, u, v = _cube_uv(n, r)
    return face, u, v, n


def _attr_cylinder(p: Primitive, q):
    r, hz = p.size
    rho = np.hypot(q[0], q[1])
    cap = (hz - np.abs(q[2])) < (r - rho)  # nearer to a cap plane than to the side
    top = q[2] > 0
    face = np.where(cap, np.where(top, 2, 1), 0)
    ang = np.arctan2(q[1], q[0])
    u = np.where(cap, q[0] + r, r * (ang + np.pi))
    v = np.where(cap, q[1] + r, q[2] + hz)
    safe = np.maximum(rho, 1e-300)
    n = np.stack([np.where(cap, 0.0, q[0] / safe), np.where(cap, 0.0, q[1] / safe),
                  np.where(cap, np.where(top, 1.0, -1.0), 0.0)])
    return face, u, v, n


_T = {"rect": _t_rect, "box": _t_box, "sphere": _t_sphere, "cylinder": _t_cylinder}
_ATTR = {"rect": _attr_rect, "box": _attr_box, "sphere": _attr_sphere, "cylinder": _attr_cylinder}


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
    dt = d_all.dtype
    n = d_all.shape[1]
    o_arr = np.asarray(origins, dtype=dt)
    o_all = o_arr.reshape(3, 1) if o_arr.ndim == 1 else np.ascontiguousarray(o_arr.T)
    t_best = np.full(n, np.inf, dt)
    prim = np.full(n, -1, np.int64)
    prims = scene.primitives
    local = {}
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
            if i not in local:
                R, tr = p.world_from_local.rotation, p.world_from_local.translation
                local[i] = (R.T.astype(dt), tr.reshape(3, 1).astype(dt))
            Rt, tr = local[i]
            t = _T[p.kind](p, Rt @ (o_p - tr), Rt @ d_p)
            cur = t_best if rows is None else t_best[rows]
            better = t < cur
            if rows is None:
                t_best = np.where(better, t, t_best)
                prim = np.where(better, i, prim)
            else:
                j = rows[better]
                t_best[j] = t[better]
                prim[j] = i
    hit = prim >= 0
    patch = np.full(n, -1, np.int64)
    u = np.zeros(n, dt)
    v = np.zeros(n, dt)
    nrm = np.zeros((3, n), dt)
    if np.any(hit):
        hit_idx = np.flatnonzero(hit)
        order = np.argsort(prim[hit_idx], kind="stable")
        hit_idx = hit_idx[order]
        ph = prim[hit_idx]
        bounds = np.flatnonzero(np.diff(ph)) + 1
        face = np.zeros(n, np.int64)
        for rows in np.split(hit_idx, bounds):
            i = int(prim[rows[0]])
            p = prims[i]
            Rt, tr = local[i]
            o_p = _sel(o_all, rows)
            q = Rt @ (o_p + t_best[rows] * d_all[:, rows] - tr)  # local hit points
            f, uu, vv, nl = _ATTR[p.kind](p, q)
            face[rows] = f
            u[rows] = uu
            v[rows] = vv
            nrm[:, rows] = Rt.T @ nl
        base = scene.__dict__.get("_patch_base")
        if base is None:
            counts = np.array([q.num_patches for q in prims], np.int64)
            base = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            scene.__dict__["_patch_base"] = base
        patch[hit] = base[prim[hit]] + face[hit]
    # normals facing the ray origin (two-sided surfaces)
    flip = (nrm * d_all).sum(0) > 0
    nrm[:, flip] *= -1
    return Hits(t_best, prim, patch, u, v, np.ascontiguousarray(nrm.T))
