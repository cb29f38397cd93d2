"""`recon convert SOURCE -o TARGET`: between COLMAP (binary / text), transforms.json and PLY."""

from __future__ import annotations

import argparse

from recon.cli._style import add_output

NAME = "convert"
HELP = "convert between COLMAP (bin/txt), transforms.json and PLY point clouds"
ORDER = 11
FORMATS = ("colmap-bin", "colmap-txt", "transforms", "ply")
DESCRIPTION = """\
Convert a reconstruction between formats. SOURCE is a COLMAP model (folder, file inside it, or a
parent with sparse/0), a transforms.json (file or folder) or, as a source of points only, a PLY.

The output format follows TARGET unless --format says otherwise:
  TARGET ending in .json  -> transforms.json (nerfstudio / Instant-NGP; OpenGL camera-to-world,
                          cx, cy in the corner convention; shared intrinsics when one camera)
  TARGET ending in .ply   -> the model's 3D points as a PLY (xyz, rgb, error, track_length)
  anything else        -> a COLMAP model folder: binary, except when SOURCE is a binary COLMAP model,
                          which converts to text (so `recon convert sparse/0 -o sparse_txt` flips it)

Pairs that cannot work are refused: a PLY has no cameras, so PLY -> COLMAP/transforms.json is
an error. Existing output files are never overwritten without --overwrite.

examples:
  recon convert out/sparse/0 -o out/sparse_txt              # binary -> text
  recon convert out/sparse/0 -o out/transforms.json --image-dir images --points sparse_pc.ply
  recon convert scene/transforms.json -o scene/sparse/0 --format colmap-bin
  recon convert out/sparse/0 -o points.ply
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="SOURCE", help="COLMAP model, transforms.json or PLY")
    add_output(parser, "output file or folder (its name or --format picks the format)", metavar="TARGET")
    parser.add_argument("--format", choices=FORMATS, default=None, help="output format (default: from OUT)")
    parser.add_argument("--input-format", choices=("colmap", "transforms", "ply"), default=None,
                        help="input format (default: detected)")
    parser.add_argument("--image-dir", default=None,
                        help="transforms.json output: prefix for file_path (image folder relative to the "
                             "JSON), e.g. 'images'")
    parser.add_argument("--points", default="sparse_pc.ply", metavar="NAME",
                        help="transforms.json output: also write the 3D points to this PLY next to the JSON "
                             "and reference it as ply_file_path (default: %(default)s; '' to skip)")
    parser.add_argument("--aabb-scale", type=float, default=None, help="transforms.json output: aabb_scale")
    parser.add_argument("--undo-applied-transform", action="store_true",
                        help="transforms.json input: map poses back through nerfstudio's applied_transform")
    parser.add_argument("--ascii", action="store_true", help="PLY output: ASCII instead of binary")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run(args: argparse.Namespace) -> int:
    from recon.io.convert import convert

    msg = convert(args.input, args.output, out_format=args.format, in_format=args.input_format,
                  image_dir=args.image_dir, points_ply=args.points or None, aabb_scale=args.aabb_scale,
                  undo_applied_transform=args.undo_applied_transform, ply_binary=not args.ascii,
                  overwrite=args.overwrite)
    print(msg)
    return 0
