"""Surfaces from oriented points and from density grids: screened Poisson reconstruction
(Kazhdan & Hoppe 2013, via Open3D) with density trimming, and marching cubes (Lorensen &
Cline 1987, via scikit-image) of a NeRF density grid.

Density grid file (``.npz``): ``grid`` (or ``density``, as `recon train nerf` writes) float [X, Y, Z]
(density sampled at the voxel centres
``bbox_min + (i + 0.5) * (bbox_max - bbox_min) / shape``, world frame, metres), ``bbox_min`` [3],
``bbox_max`` [3], optional ``iso_hint`` (a suggested level).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import FormatError, ReconError
from recon.export.mesh import Mesh
from recon.io.ply import PointCloud

__all__ = ["DensityGrid", "marching_cubes", "poisson_mesh", "read_density_grid", "write_density_grid"]


def poisson_mesh(cloud: PointCloud, *, depth: int = 9, density_quantile: float = 0.05,
                 crop_to_points: bool = True) -> Mesh:
    """Screened Poisson surface of an oriented cloud (``cloud.normals`` required, pointing out
    of the surface). Vertices whose Poisson density (how many samples support them) is below
    the ``density_quantile`` quantile are trimmed, which removes the blobs Poisson closes over
    unobserved space; ``crop_to_points`` also drops faces outside the cloud's box. Vertex
    colours are interpolated from the points' colours (Open3D); attribute ``density`` kept."""
    import open3d as o3d

    if cloud.normals is None:
        raise ReconError("points: Poisson needs oriented normals (estimate them with "
                         "recon.export.points.estimate_normals + orient_normals_toward)")
    if len(cloud) < 16:
        raise ReconError(f"points: Poisson needs at least 16 points, got {len(cloud)}")
    if not 0.0 <= density_quantile < 1.0:
        raise ValueError(f"density_quantile: expected a value in [0, 1), got {density_quantile}")
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.xyz.astype(np.float64)))
    pc.normals = o3d.utility.Vector3dVector(cloud.normals.astype(np.float64))
    if cloud.rgb is not None:
        pc.colors = o3d.utility.Vector3dVector(cloud.rgb / 255.0)
    m, dens = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pc, depth=int(depth))
    dens = np.asarray(dens)
    mesh = Mesh.from_open3d(m)
    if cloud.rgb is None:
        mesh.vertex_colors = None
    mesh.attributes = {"density": dens.astype(np.float32)}
    keep_v = dens >= np.quantile(dens, density_quantile) if density_quantile > 0 else np.ones(len(dens), bool)
    if crop_to_points:
        lo, hi = cloud.bounds()
        keep_v &= np.all((mesh.vertices >= lo) & (mesh.vertices <= hi), axis=1)
    mesh = mesh.submesh(keep_v[mesh.faces].all(axis=1))
    if mesh.num_faces == 0:
        raise ReconError("points: Poisson produced no surface after density trimming")
    return mesh.compute_vertex_normals()


@dataclass(eq=False)
class DensityGrid:
    """Density (or any scalar field) ``grid`` [X, Y, Z] sampled at voxel centres of the world
    box ``bbox_min`` .. ``bbox_max`` [3] (metres)."""

    grid: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray
    iso_hint: float | None = None  # a suggested level (e.g. NeRF: ln 2 / voxel, opacity 1/2 per voxel)

    def __post_init__(self):
        g = np.asarray(self.grid)
        if g.ndim != 3 or min(g.shape) < 2 or g.dtype.kind not in "fiu":
            raise ValueError(f"grid: expected a numeric [X, Y, Z] array with every side >= 2, got "
                             f"{g.dtype} {list(g.shape)}")
        self.grid = g.astype(np.float32)
        self.bbox_min = np.asarray(self.bbox_min, np.float64).reshape(3)
        self.bbox_max = np.asarray(self.bbox_max, np.float64).reshape(3)
        if not np.all(self.bbox_max > self.bbox_min):
            raise ValueError(f"bbox_min, bbox_max: expected min < max, got {self.bbox_min}, {self.bbox_max}")

    @property
    def voxel(self) -> np.ndarray:
        return (self.bbox_max - self.bbox_min) / np.array(self.grid.shape)


def read_density_grid(path) -> DensityGrid:
    """Read a density grid ``.npz`` (see the module docstring)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            key = "grid" if "grid" in z.files else "density"
            g = DensityGrid(z[key], z["bbox_min"], z["bbox_max"])
            if "iso_hint" in z.files:
                g.iso_hint = float(z["iso_hint"])
            return g
    except KeyError as e:
        raise FormatError(path, f"density grid lacks {e} (needs grid or density, bbox_min, bbox_max)") from None
    except (OSError, ValueError) as e:
        raise FormatError(path, f"cannot read the density grid: {e}") from None


def write_density_grid(path, grid: DensityGrid) -> Path:
    path = Path(path)
    np.savez_compressed(path, grid=grid.grid, bbox_min=grid.bbox_min, bbox_max=grid.bbox_max)
    return path


def marching_cubes(grid: DensityGrid, level: float) -> Mesh:
    """The iso-surface ``density == level`` of ``grid`` in world coordinates, faces oriented
    so normals point toward lower density (out of the object). ReconError when the level is
    not crossed."""
    from skimage import measure

    g = grid.grid
    finite = g[np.isfinite(g)]
    if not finite.size or not (finite.min() < level < finite.max()):
        raise ReconError(f"grid: the level {level} is not crossed (density range "
                         f"[{finite.min() if finite.size else 'nan'}, {finite.max() if finite.size else 'nan'}])")
    g = np.nan_to_num(g, nan=float(finite.min()))
    verts, faces, _, _ = measure.marching_cubes(g, level=level)
    # index space -> world: voxel centre i sits at bbox_min + (i + 0.5) * voxel.
    verts = grid.bbox_min + (verts + 0.5) * grid.voxel
    mesh = Mesh(verts, faces.astype(np.int64))
    # skimage orients faces toward increasing values' gradient descent ... check against the
    # density gradient and flip when the normals point into the dense side.
    fn = mesh.face_normals()
    centre = mesh.vertices[mesh.faces].mean(1)
    idx = np.clip(((centre - grid.bbox_min) / grid.voxel - 0.5).round().astype(int), 0, np.array(g.shape) - 1)
    grad = np.stack(np.gradient(g), -1)[idx[:, 0], idx[:, 1], idx[:, 2]]
    if np.sum(np.einsum("ij,ij->i", fn, grad)) > 0:
        mesh = Mesh(mesh.vertices, mesh.faces[:, ::-1].copy())
    return mesh.compute_vertex_normals()
