"""`recon export SOURCE -o FILE`: meshes, point clouds and cropped 3DGS PLYs from any stage's output.

The job is recon.export.export_artifact; splat depth comes from render.splat.render_depth_views.
Light at import: argparse only."""

from __future__ import annotations

import argparse

from recon.cli._style import add_quiet

NAME = "export"
HELP = "meshes (TSDF, Poisson, marching cubes) and point clouds from depth, SfM, splat or NeRF outputs"
ORDER = 70
DESCRIPTION = """\
Export a mesh, a point cloud or a cleaned 3DGS PLY from the output of any stage. The format
follows the extension of -o: .ply (binary; meshes and point clouds), .obj (vertex colours), .glb
(binary glTF). A FILE.report.json is written beside the file (vertex / face counts, bounding
box, method, options, seconds). Nothing is written when the result would be empty.

What each SOURCE gives by default (--what / --method change it):
  synthetic dataset or a folder with depth/STEM.npy + poses   mesh: TSDF fusion of the depth maps
  `recon train splat` output                                  mesh: TSDF of depth rendered from the
                                                              splats for the training cameras
  `recon train nerf` output                                   mesh: TSDF of its depth/ maps
                                                              (--method marching-cubes: density grid)
  SfM output / COLMAP model / transforms.json                 points: SfM points, normals toward the
                                                              cameras, outliers removed (mesh: Poisson)
  `recon stereo` output                                       points: its points.ply cleaned (mesh: Poisson)
  point cloud PLY                                             points: cropped / down-sampled (mesh: Poisson)
  mesh                                                        mesh: cleaned / decimated / converted
  3DGS splat PLY                                              splat: cropped, --min-opacity filtered

--what points on a depth source (dataset, splat, NeRF) gives a dense cloud: every depth pixel that
agrees with at least --min-views views. TSDF bounds and voxel size are chosen from the cameras
and depth (the box of the depth seen by >= 2 views; voxel = 1.5 median pixel footprints); --crop
and --voxel override them. --instance / --class keep one object of a labelled point cloud or mesh
(vertex attributes instance_id / class_id).

examples:
  recon export out/orbit -o out/orbit_mesh.ply                      # TSDF of a recon synth dataset
  recon export out/splat -o out/splat_mesh.glb --faces 200000       # mesh from trained Gaussians
  recon export out/sfm -o out/points.ply --voxel 0.01
  recon export out/sfm -o out/poisson.obj --what mesh --method poisson
  recon export out/nerf -o out/nerf_mc.ply --method marching-cubes
  recon export out/splat -o out/splat_crop.ply --what splat --crop -1 -1 0 1 1 2 --min-opacity 0.05
  recon export labels.ply -o chair.ply --class chair
"""

# recon.export.EXPORT_WHATS / EXPORT_METHODS, spelled out: `recon --help` must not import NumPy
WHATS = ("points", "mesh", "splat")
METHODS = ("tsdf", "poisson", "marching-cubes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE",
                        help="dataset, SfM / stereo / splat / NeRF output folder, point cloud, mesh or 3DGS PLY")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="output file (.ply, .obj, .glb)")
    parser.add_argument("--what", choices=WHATS, help="what to export (default: per source, see above)")
    parser.add_argument("--method", choices=METHODS, help="mesher (default: tsdf for depth sources, else poisson)")
    parser.add_argument("--crop", type=float, nargs=6, metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                        help="world box in metres (TSDF: the fusion volume)")
    parser.add_argument("--voxel", type=float, metavar="M",
                        help="voxel size in metres: TSDF voxel, or point down-sampling (default: automatic / none)")
    parser.add_argument("--faces", type=int, metavar="N", help="decimate the mesh to about N faces")
    parser.add_argument("--min-component", type=float, default=0.0002, metavar="F",
                        help="drop mesh pieces with fewer faces than F x the largest piece (default 0.0002, "
                             "i.e. floaters; small real objects such as a ball are separate pieces too; 0 keeps all)")
    parser.add_argument("--min-views", type=int, default=2, metavar="K",
                        help="dense points: keep depth that agrees with K views (default 2)")
    parser.add_argument("--depth-max", type=float, metavar="M", help="ignore depth beyond M metres")
    parser.add_argument("--min-alpha", type=float, default=0.5, metavar="A",
                        help="splat depth: ignore pixels with accumulated opacity below A (default 0.5)")
    parser.add_argument("--min-opacity", type=float, default=0.0, metavar="A",
                        help="--what splat: drop Gaussians with opacity below A")
    parser.add_argument("--poisson-depth", type=int, default=9, metavar="D", help="Poisson octree depth (default 9)")
    parser.add_argument("--density-quantile", type=float, default=0.05, metavar="Q",
                        help="Poisson: trim vertices below this density quantile (default 0.05)")
    parser.add_argument("--level", type=float, metavar="L",
                        help="marching cubes iso-level (default: the grid's iso_hint, else its mean)")
    parser.add_argument("--outlier-std", type=float, default=2.0, metavar="S",
                        help="points: statistical outlier removal at S standard deviations (0: off)")
    parser.add_argument("--instance", type=int, metavar="K", help="keep instance_id K only (labelled sources)")
    parser.add_argument("--class", dest="class_name", metavar="NAME",
                        help="keep one class (name or id) only (labelled sources)")
    parser.add_argument("--no-colors", action="store_true",
                        help="accept a source without colours (default: that is an error)")
    add_quiet(parser)


def _options(args: argparse.Namespace):
    from recon.export import ExportOptions

    return ExportOptions(
        what=args.what, method=args.method, crop=None if args.crop is None else tuple(args.crop), voxel=args.voxel,
        faces=args.faces, min_component=args.min_component, min_views=args.min_views, depth_max=args.depth_max,
        min_alpha=args.min_alpha, min_opacity=args.min_opacity, poisson_depth=args.poisson_depth,
        density_quantile=args.density_quantile, level=args.level, outlier_std=args.outlier_std,
        instance=args.instance, class_name=args.class_name, allow_no_colors=args.no_colors,
        progress=not args.quiet)


def run(args: argparse.Namespace) -> int:
    import sys

    from recon.export import export_artifact
    from render.splat import render_depth_views

    r = export_artifact(args.source, args.output, _options(args), depth_renderer=render_depth_views)
    counts = f"{r.vertices:,} vertices" + (f", {r.faces:,} faces" if r.faces else "")
    print(f"recon export: {r.what} ({r.method}) {counts} in {r.seconds:.1f} s -> {r.output} "
          f"(report {r.report_path.name})", file=sys.stderr)
    return 0
