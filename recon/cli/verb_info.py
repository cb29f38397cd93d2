"""`recon info PATH`: summarise any supported file or folder."""

from __future__ import annotations

import argparse

NAME = "info"
HELP = "summarise a COLMAP model, transforms.json, PLY, image(s), synthetic dataset or output folder"
ORDER = 10
OPENS_IMAGES = True  # gets --max-image-pixels (recon.cli.build_parser)
DESCRIPTION = """\
Summarise what PATH holds:

  COLMAP model (folder with cameras/images/points3D .bin or .txt, or a parent with sparse/0):
      cameras with models and parameters, registered images, points, mean track length,
      mean reprojection error (recomputed with recon's camera models)
  transforms.json (file or folder): frames, shared/per-frame intrinsics, aabb_scale, masks,
      initial points
  PLY: point count, fields, bounding box (3D Gaussian Splatting PLY: count, SH degree, opacity)
  image: size after EXIF orientation, EXIF focal length guess in pixels
  folder of images; synthetic dataset (gt.json); sfm / train output folder (report.json)

Principal points are printed in recon's convention (pixel (0, 0) = centre of the top-left pixel);
COLMAP and nerfstudio files store cx, cy + 0.5.

examples:
  recon info out/sparse/0
  recon info data/scene/transforms.json --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="file or folder to summarise")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")


def run(args: argparse.Namespace) -> int:
    import json

    from recon.io.summary import describe

    sections = describe(args.path)
    if args.json:
        text = json.dumps([{"title": s.title, **s.data} for s in sections], indent=2, default=str)
    else:
        text = "\n\n".join(s.text() for s in sections)
    print(text, flush=True)  # a broken pipe (`recon info ... | head`) is handled in recon.cli.main
    return 0
