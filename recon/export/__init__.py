"""Dense geometry and export: TSDF fusion of posed depth maps, point-cloud cleanup and dense
point clouds, screened Poisson, marching cubes of density grids, mesh cleanup, mesh formats
and 3DGS PLY filtering; :func:`export_artifact` runs a whole export (the job of `recon export`).

Never imports ``render``: callers (the CLI, pipelines) render depth from a trained model and
hand it over as :class:`DepthView` lists. Importing this package is light (NumPy, calib);
Open3D, trimesh and SciPy load inside the functions that use them.
"""

from recon.export.depth import (
    DepthView,
    backproject,
    check_depth_views,
    load_depth_views,
    undistort_depth_view,
)
from recon.export.job import (
    EXPORT_METHODS,
    EXPORT_WHATS,
    DepthRenderer,
    ExportOptions,
    ExportResult,
    export_artifact,
)
from recon.export.mesh import (
    MESH_SUFFIXES,
    Mesh,
    crop_mesh,
    decimate,
    filter_mesh_by_attribute,
    read_mesh,
    remove_small_components,
    write_mesh,
)
from recon.export.metrics import ChamferResult, chamfer_distance, normal_consistency, sample_surface
from recon.export.points import (
    crop_points,
    estimate_normals,
    filter_points_by_attribute,
    fuse_depth_points,
    orient_normals_toward,
    points_from_reconstruction,
    remove_statistical_outliers,
    voxel_downsample,
)
from recon.export.splat import filter_gaussians
from recon.export.surface import (
    DensityGrid,
    marching_cubes,
    poisson_mesh,
    read_density_grid,
    write_density_grid,
)
from recon.export.tsdf import TSDFOptions, TSDFResult, VolumeSpec, auto_volume, fuse_tsdf

__all__ = [
    "EXPORT_METHODS",
    "EXPORT_WHATS",
    "MESH_SUFFIXES",
    "ChamferResult",
    "DensityGrid",
    "DepthRenderer",
    "DepthView",
    "ExportOptions",
    "ExportResult",
    "Mesh",
    "TSDFOptions",
    "TSDFResult",
    "VolumeSpec",
    "auto_volume",
    "backproject",
    "chamfer_distance",
    "check_depth_views",
    "crop_mesh",
    "crop_points",
    "decimate",
    "estimate_normals",
    "export_artifact",
    "filter_gaussians",
    "filter_mesh_by_attribute",
    "filter_points_by_attribute",
    "fuse_depth_points",
    "fuse_tsdf",
    "load_depth_views",
    "marching_cubes",
    "normal_consistency",
    "orient_normals_toward",
    "points_from_reconstruction",
    "poisson_mesh",
    "read_density_grid",
    "read_mesh",
    "remove_small_components",
    "remove_statistical_outliers",
    "sample_surface",
    "undistort_depth_view",
    "voxel_downsample",
    "write_density_grid",
    "write_mesh",
]
