"""Geometry metrics, one home for tests and benchmarks: symmetric Chamfer distance between
meshes and point sets, and how many surface normals face the cameras that see them.

Distances TO a mesh are exact point-to-triangle distances (Open3D RaycastingScene); distances
FROM a mesh use points sampled uniformly by area; point sets use a KD-tree (SciPy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon.export.mesh import Mesh

__all__ = ["ChamferResult", "chamfer_distance", "normal_consistency", "sample_surface"]


@dataclass(frozen=True)
class ChamferResult:
    """Mean distances in the units of the inputs (metres): ``a_to_b`` = mean over a's points of
    the distance to b; ``mean`` = (a_to_b + b_to_a) / 2 (the symmetric Chamfer distance).
    ``diagonal``: bounding-box diagonal of b (the reference), ``relative`` = mean / diagonal."""

    mean: float
    a_to_b: float
    b_to_a: float
    diagonal: float

    @property
    def relative(self) -> float:
        return self.mean / self.diagonal if self.diagonal > 0 else float("nan")


def sample_surface(mesh: Mesh, n: int, *, seed: int = 0) -> np.ndarray:
    """[n, 3] points uniformly distributed over the area of ``mesh``."""
    if mesh.num_faces == 0:
        raise ValueError("mesh: no faces to sample")
    rng = np.random.default_rng(seed)
    area = mesh.face_areas()
    face = rng.choice(len(area), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    a, b, c = (mesh.vertices[mesh.faces[face, i]] for i in range(3))
    return (1 - s)[:, None] * a + (s * (1 - r2))[:, None] * b + (s * r2)[:, None] * c


def _distances_to(target, query: np.ndarray) -> np.ndarray:
    if isinstance(target, Mesh):
        import open3d as o3d

        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(target.vertices.astype(np.float32)),
                            o3d.core.Tensor(target.faces.astype(np.uint32)))
        return scene.compute_distance(o3d.core.Tensor(query.astype(np.float32))).numpy().astype(np.float64)
    from scipy.spatial import cKDTree

    return cKDTree(target).query(query, workers=-1)[0]


def _points(x, n: int, seed: int) -> np.ndarray:
    if isinstance(x, Mesh):
        return sample_surface(x, n, seed=seed)
    p = np.asarray(x, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise ValueError(f"expected a Mesh or non-empty points [N, 3], got shape {list(p.shape)}")
    if len(p) > n:
        p = p[np.random.default_rng(seed).choice(len(p), n, replace=False)]
    return p


def chamfer_distance(a, b, *, samples: int = 200_000, seed: int = 0) -> ChamferResult:
    """Symmetric Chamfer distance between ``a`` and ``b`` (each a :class:`Mesh` or points
    [N, 3]); at most ``samples`` points per side (meshes are sampled, larger point sets
    subsampled). ``b`` is the reference whose bounding-box diagonal normalises ``relative``."""
    pa, pb = _points(a, samples, seed), _points(b, samples, seed + 1)
    ref = b.vertices if isinstance(b, Mesh) else np.asarray(b, dtype=np.float64)
    diag = float(np.linalg.norm(ref.max(0) - ref.min(0)))
    ab = float(_distances_to(b, pa).mean())
    ba = float(_distances_to(a, pb).mean())
    return ChamferResult(0.5 * (ab + ba), ab, ba, diag)


def normal_consistency(points, normals, views) -> float:
    """Fraction of oriented points (``points`` / unit ``normals`` [N, 3], world frame) whose
    normal faces the cameras that see them: for each point, the sum over the views in which it
    projects inside the image at (within 2 %) the view's depth of sign(n . (centre - p)) must
    be positive. Points seen by no view are left out. ``views``: DepthView list."""
    p = np.asarray(points, np.float64)
    nr = np.asarray(normals, np.float64)
    vote = np.zeros(len(p))
    seen = np.zeros(len(p), bool)
    for v in views:
        pc = v.cam_from_world.apply(p)
        uv, ok = v.camera.project(pc)
        ui = np.rint(uv[:, 0]).astype(np.int64)
        vi = np.rint(uv[:, 1]).astype(np.int64)
        ok &= (ui >= 0) & (ui < v.camera.width) & (vi >= 0) & (vi < v.camera.height) & (pc[:, 2] > 0)
        d = np.zeros(len(p))
        d[ok] = v.depth[vi[ok], ui[ok]]
        ok &= np.abs(d - pc[:, 2]) < 0.02 * np.maximum(d, 1e-9)
        centre = v.cam_from_world.inverse().translation
        vote[ok] += np.sign(np.einsum("ij,ij->i", nr[ok], centre - p[ok]))
        seen |= ok
    if not seen.any():
        return float("nan")
    return float(np.mean(vote[seen] > 0))
