"""Triangle meshes: the typed result of every mesher, conversions at the Open3D / trimesh edge,
cleanup, decimation, filtering by a vertex property, and mesh files (PLY, OBJ + MTL, GLB).

NumPy at import; Open3D and trimesh load inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.errors import ReconError

__all__ = ["MESH_SUFFIXES", "Mesh", "crop_mesh", "decimate", "filter_mesh_by_attribute", "read_mesh",
           "remove_small_components", "write_mesh"]

MESH_SUFFIXES = (".ply", ".obj", ".glb")


@dataclass(eq=False)
class Mesh:
    """vertices [V, 3] float64 (world, metres); faces [F, 3] int64, counter-clockwise seen from
    outside (normals point out of the surface, toward the cameras that saw it); optional
    vertex_colors [V, 3] uint8, vertex_normals [V, 3] float64 (unit) and attributes: name ->
    [V] per-vertex scalars (e.g. ``class_id``, ``instance_id``, ``density``)."""

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None = None
    vertex_normals: np.ndarray | None = None
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        v = np.asarray(self.vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"vertices: expected shape [V, 3], got {list(v.shape)}")
        f = np.asarray(self.faces)
        if f.size == 0:
            f = np.zeros((0, 3), np.int64)
        if f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu":
            raise ValueError(f"faces: expected integer shape [F, 3], got {f.dtype} {list(f.shape)}")
        f = f.astype(np.int64)
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(f"faces: indices must lie in [0, {len(v)}), got [{f.min()}, {f.max()}]")
        self.vertices, self.faces = v, f
        n = len(v)
        if self.vertex_colors is not None:
            c = np.asarray(self.vertex_colors)
            if c.dtype != np.uint8 or c.shape != (n, 3):
                raise ValueError(f"vertex_colors: expected uint8 [{n}, 3], got {c.dtype} {list(c.shape)}")
            self.vertex_colors = c
        if self.vertex_normals is not None:
            nr = np.asarray(self.vertex_normals, dtype=np.float64)
            if nr.shape != (n, 3):
                raise ValueError(f"vertex_normals: expected [{n}, 3], got {list(nr.shape)}")
            self.vertex_normals = nr
        attrs = {}
        for k, a in dict(self.attributes).items():
            a = np.asarray(a)
            if a.shape != (n,):
                raise ValueError(f"attributes[{k!r}]: expected shape [{n}], got {list(a.shape)}")
            attrs[k] = a
        self.attributes = attrs

    def __repr__(self) -> str:
        extra = [k for k, x in (("colors", self.vertex_colors), ("normals", self.vertex_normals)) if x is not None]
        return f"Mesh({len(self.vertices)} vertices, {len(self.faces)} faces{', ' if extra else ''}{', '.join(extra)})"

    @property
    def num_faces(self) -> int:
        return len(self.faces)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.vertices) == 0:
            raise ValueError("bounds: the mesh has no vertices")
        return self.vertices.min(0), self.vertices.max(0)

    def face_normals(self) -> np.ndarray:
        """[F, 3] unit normals of the faces (right-hand rule on the vertex order)."""
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        n = np.cross(b - a, c - a)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)

    def face_areas(self) -> np.ndarray:
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)

    def compute_vertex_normals(self) -> Mesh:
        """A copy with area-weighted vertex normals from the faces."""
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        fn = np.cross(b - a, c - a)  # length = 2 * area
        vn = np.zeros_like(self.vertices)
        for i in range(3):
            np.add.at(vn, self.faces[:, i], fn)
        vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-300)
        return Mesh(self.vertices, self.faces, self.vertex_colors, vn, self.attributes)

    def smooth_vertex_normals(self, iterations: int = 3) -> Mesh:
        """A copy whose vertex normals are averaged over each vertex's 1-ring ``iterations``
        times (the geometry is unchanged): removes the voxel-scale wobble of TSDF normals on
        surfaces seen at grazing angles."""
        m = self if self.vertex_normals is not None else self.compute_vertex_normals()
        import scipy.sparse as sp

        n = len(m.vertices)
        f = m.faces
        rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0], np.arange(n)])
        cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2], np.arange(n)])
        adj = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
        adj.data[:] = 1.0
        vn = m.vertex_normals
        for _ in range(int(iterations)):
            vn = adj @ vn
            vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-300)
        return Mesh(m.vertices, m.faces, m.vertex_colors, vn, m.attributes)

    def submesh(self, keep_faces) -> Mesh:
        """The faces selected by a bool mask / index and the vertices they use (attributes kept)."""
        faces = self.faces[keep_faces]
        used = np.unique(faces)
        remap = np.full(len(self.vertices), -1, np.int64)
        remap[used] = np.arange(len(used))
        pick = lambda a: None if a is None else a[used]
        return Mesh(self.vertices[used], remap[faces], pick(self.vertex_colors), pick(self.vertex_normals),
                    {k: a[used] for k, a in self.attributes.items()})

    # ---- library edges ------------------------------------------------------------------
    def to_open3d(self):
        import open3d as o3d

        m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(self.vertices),
                                      o3d.utility.Vector3iVector(self.faces.astype(np.int32)))
        if self.vertex_colors is not None:
            m.vertex_colors = o3d.utility.Vector3dVector(self.vertex_colors / 255.0)
        if self.vertex_normals is not None:
            m.vertex_normals = o3d.utility.Vector3dVector(self.vertex_normals)
        return m

    @classmethod
    def from_open3d(cls, m) -> Mesh:
        v = np.asarray(m.vertices, dtype=np.float64)
        f = np.asarray(m.triangles, dtype=np.int64).reshape(-1, 3)
        col = np.asarray(m.vertex_colors)
        col = np.clip(np.rint(col * 255), 0, 255).astype(np.uint8) if len(col) == len(v) and len(v) else None
        nrm = np.asarray(m.vertex_normals, dtype=np.float64)
        return cls(v, f, col, nrm if len(nrm) == len(v) and len(v) else None)

    def to_trimesh(self):
        import trimesh

        kw = {}
        if self.vertex_colors is not None:
            kw["vertex_colors"] = np.c_[self.vertex_colors, np.full(len(self.vertices), 255, np.uint8)]
        if self.vertex_normals is not None:
            kw["vertex_normals"] = self.vertex_normals
        return trimesh.Trimesh(self.vertices, self.faces, process=False, **kw)

    @classmethod
    def from_trimesh(cls, t) -> Mesh:
        col = None
        vc = getattr(t.visual, "vertex_colors", None) if t.visual.kind == "vertex" else None
        if vc is None and t.visual.kind == "texture":
            try:
                vc = t.visual.to_color().vertex_colors
            except Exception:  # noqa: BLE001 - a texture we cannot sample: no colours
                vc = None
        if vc is not None and len(vc) == len(t.vertices):
            col = np.asarray(vc)[:, :3].astype(np.uint8)
        return cls(np.asarray(t.vertices), np.asarray(t.faces), col)


def remove_small_components(mesh: Mesh, *, min_faces: int | None = None, min_fraction: float = 0.0002) -> Mesh:
    """Drop connected components (shared vertices) with fewer than ``min_faces`` faces
    (default: ``min_fraction`` of the largest component)."""
    if mesh.num_faces == 0:
        return mesh
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = len(mesh.vertices)
    f = mesh.faces
    rows = np.concatenate([f[:, 0], f[:, 1]])
    cols = np.concatenate([f[:, 1], f[:, 2]])
    graph = sp.coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    face_label = label[f[:, 0]]
    counts = np.bincount(face_label)
    limit = min_faces if min_faces is not None else max(1, int(np.ceil(min_fraction * counts.max())))
    return mesh.submesh(counts[face_label] >= limit)


def decimate(mesh: Mesh, target_faces: int) -> Mesh:
    """Quadric edge-collapse decimation (Open3D, Garland & Heckbert 1997) to at most about
    ``target_faces`` faces; vertex colours are carried (Open3D averages them)."""
    if isinstance(target_faces, bool) or not isinstance(target_faces, (int, np.integer)) or target_faces < 4:
        raise ValueError(f"target_faces: expected an integer >= 4, got {target_faces!r}")
    if mesh.num_faces <= target_faces:
        return mesh
    m = mesh.to_open3d().simplify_quadric_decimation(int(target_faces))
    m.remove_unreferenced_vertices()
    m.compute_vertex_normals()
    return Mesh.from_open3d(m)


def crop_mesh(mesh: Mesh, bbox_min, bbox_max) -> Mesh:
    """The faces whose three vertices lie inside the axis-aligned box [bbox_min, bbox_max] (world)."""
    lo, hi = np.asarray(bbox_min, float).reshape(3), np.asarray(bbox_max, float).reshape(3)
    inside = np.all((mesh.vertices >= lo) & (mesh.vertices <= hi), axis=1)
    return mesh.submesh(inside[mesh.faces].all(axis=1))


def filter_mesh_by_attribute(mesh: Mesh, name: str, values) -> Mesh:
    """The faces whose three vertices all have ``attributes[name]`` in ``values`` (one value or
    a list): the per-object export (e.g. ``instance_id`` 7, ``class_id`` of "chair")."""
    if name not in mesh.attributes:
        raise ValueError(f"name: the mesh has no vertex attribute {name!r} (has: {sorted(mesh.attributes)})")
    keep_v = np.isin(mesh.attributes[name], np.atleast_1d(np.asarray(values)))
    return mesh.submesh(keep_v[mesh.faces].all(axis=1))


def write_mesh(path, mesh: Mesh) -> Path:
    """Write ``mesh`` by the file extension: ``.ply`` (binary, vertex colours and normals),
    ``.obj`` (vertex colours as ``v x y z r g b``; no MTL without a texture), ``.glb`` (binary glTF with
    COLOR_0). Raises ReconError for an empty mesh (nothing is written)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"path: mesh formats are {', '.join(MESH_SUFFIXES)}; got {path.name!r}")
    if mesh.num_faces == 0:
        raise ReconError(f"{path}: the mesh is empty (no faces); nothing written")
    t = mesh.to_trimesh()
    if suffix == ".ply":
        data = t.export(file_type="ply", encoding="binary")
        path.write_bytes(data)
    elif suffix == ".obj":
        from trimesh.exchange.obj import export_obj

        # Vertex colours as `v x y z r g b` (read by trimesh, Open3D, MeshLab, Blender). No MTL:
        # a material would make readers switch to (absent) texture colours.
        text = export_obj(t, include_color=mesh.vertex_colors is not None,
                          include_normals=mesh.vertex_normals is not None, include_texture=False)
        path.write_text("\n".join(l for l in text.splitlines() if not l.startswith(("mtllib", "usemtl"))) + "\n")
    else:
        path.write_bytes(t.export(file_type="glb"))
    return path


def read_mesh(path) -> Mesh:
    """Read a mesh file (PLY, OBJ, GLB, ... anything trimesh reads) with vertex colours, through
    the one mesh reader (recon.io.meshes.read_trimesh); FormatError naming the file."""
    from recon.io.meshes import read_trimesh

    return Mesh.from_trimesh(read_trimesh(path, allow_empty=True))
