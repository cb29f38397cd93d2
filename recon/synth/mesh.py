"""Triangle mesh of a Scene (ground-truth geometry for meshing / TSDF evaluation, and for
comparing with mesh ray casters such as Open3D's RaycastingScene).

Rectangles and boxes are exact; spheres and cylinders are tessellated (``segments`` around),
so their surfaces deviate from the analytic ones by at most r * (1 - cos(pi / segments)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon.synth.scene import Primitive, Scene

__all__ = ["SceneMesh", "scene_mesh"]


@dataclass
class SceneMesh:
    """vertices [V, 3] float64 world; faces [F, 3] int64 (counter-clockwise seen from
    outside); class_id, instance_id [F] per face."""

    vertices: np.ndarray
    faces: np.ndarray
    class_id: np.ndarray
    instance_id: np.ndarray


def _box_local(h):
    s = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * h
    # vertex index = 4 * (x > 0) + 2 * (y > 0) + (z > 0)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = []
    for a, b, c, d in quads:
        f += [(a, b, c), (a, c, d)]
    return s, np.array(f)


def _rect_local(h):
    v = np.array([[-h[0], -h[1], 0], [h[0], -h[1], 0], [h[0], h[1], 0], [-h[0], h[1], 0]], float)
    return v, np.array([(0, 1, 2), (0, 2, 3)])


def _sphere_local(r, seg):
    th = np.linspace(0, np.pi, seg // 2 + 1)
    ph = np.linspace(0, 2 * np.pi, seg, endpoint=False)
    T, P = np.meshgrid(th, ph, indexing="ij")
    v = r * np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1).reshape(-1, 3)
    f = []
    n_t = len(th)
    for i in range(n_t - 1):
        for j in range(seg):
            a, b = i * seg + j, i * seg + (j + 1) % seg
            c, d = a + seg, b + seg
            f += [(a, c, d), (a, d, b)]
    return v, np.array(f)


def _cylinder_local(r, hz, seg):
    ph = np.linspace(0, 2 * np.pi, seg, endpoint=False)
    ring = np.stack([r * np.cos(ph), r * np.sin(ph)], 1)
    v = np.concatenate([np.c_[ring, np.full(seg, -hz)], np.c_[ring, np.full(seg, hz)],
                        [[0, 0, -hz], [0, 0, hz]]])
    f = []
    for j in range(seg):
        k = (j + 1) % seg
        f += [(j, k, seg + k), (j, seg + k, seg + j)]
        f += [(2 * seg, k, j), (2 * seg + 1, seg + j, seg + k)]
    return v, np.array(f)


def _local_mesh(p: Primitive, segments: int):
    if p.kind == "rect":
        return _rect_local(p.size)
    if p.kind == "box":
        return _box_local(p.size)
    if p.kind == "sphere":
        return _sphere_local(p.size[0], segments)
    return _cylinder_local(p.size[0], p.size[1], segments)


def scene_mesh(scene: Scene, *, segments: int = 48) -> SceneMesh:
    """Triangle mesh of every primitive, in world coordinates."""
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 8:
        raise ValueError(f"segments: expected an integer >= 8, got {segments!r}")
    verts, faces, cls, ins = [], [], [], []
    base = 0
    for p in scene.primitives:
        v, f = _local_mesh(p, int(segments))
        verts.append(p.world_from_local.apply(v))
        faces.append(f + base)
        cls.append(np.full(len(f), p.class_id, np.int64))
        ins.append(np.full(len(f), p.instance_id, np.int64))
        base += len(v)
    return SceneMesh(np.concatenate(verts), np.concatenate(faces).astype(np.int64), np.concatenate(cls),
                     np.concatenate(ins))
