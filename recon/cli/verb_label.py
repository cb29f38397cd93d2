"""`recon label SCENE --backend ... -o OUT`: lift 2D labels onto SfM points or splat centres."""

from __future__ import annotations

import argparse

from recon.cli._style import add_quiet

NAME = "label"
HELP = "semantic labels in 3D: 2D masks / detections of every view voted onto SfM points or splat centres"
ORDER = 61
OPENS_IMAGES = True  # gets --max-image-pixels (recon.cli.build_parser)
DESCRIPTION = """\
Run a 2D backend on every registered view of a reconstruction and lift its labels into 3D: each SfM
point reads the class (and instance) under its keypoint in every image of its track; splat centres
(when SCENE is a `recon train splat` output) are projected into every view and kept where they pass
a depth test. Votes are weighted by the backend's confidence and by each view's agreement with the
other views (a mask that names objects wrongly loses its say); points without a clear majority are
-1. Instance ids, which differ in every image, are matched across views through the points they
share (one id per view per object).

SCENE: a `recon sfm` output, a COLMAP model, a `recon synth` dataset, or a `recon train splat`
output (its splat centres are labelled, with the cameras of the data it was trained on).

Backends:
  gt       the ground-truth class / instance maps of the recon.synth dataset the images come from
  masks    --masks DIR: class PNGs named like the images (pixel value = class id, --void = none);
           --instances DIR: instance PNGs (value = instance id in that image, 0 = none)
  darknet  --model FILE.cfg (YOLO via OpenCV DNN; boxes are painted as class maps)
  onnx     --model FILE.onnx
  hf       --model FOLDER (transformers segmenter or detector)

Writes to OUT:
  labels.ply            the points with vertex properties class_id, instance_id (-1 = none),
                        confidence (winning share of the vote), num_votes, point3D_id (SfM)
  labels.classes.json   class id -> name (read by `recon view OUT/labels.ply`)
  class_table.json      classes {id: {name, count}}, instances {id: {class_id, class_name, count}}
  splat_labelled.ply    (splat scenes) the 3DGS PLY with class_id, instance_id, confidence added
  report.json           backend, points seen / labelled, instances, per-view notes, seconds

Exit status: 0 ok; 1 when no point got a class or an instance (outputs are still written);
2 bad input (a model that does not load, masks of another size than the images, masks for
images that are not in the model, an empty mask folder), with one line naming the file.

examples:
  recon label out/sfm --backend masks --masks seg/class --instances seg/instance -o out/labels
  recon label out/synth_sfm --backend gt -o out/labels
  recon label out/splat --backend hf --model models/mask2former -o out/labels
  recon view out/labels/labels.ply
"""


# recon.semantic.job.LABEL_BACKENDS, spelled out: `recon --help` must not import NumPy
_BACKENDS = ("gt", "masks", "darknet", "onnx", "hf")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scene", metavar="SCENE", help="SfM output, COLMAP model, synthetic dataset or splat output")
    p.add_argument("--backend", choices=_BACKENDS, required=True, help="where the 2D labels come from (see above)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (created)")
    p.add_argument("--masks", default=None, metavar="DIR",
                   help="class PNG folder (masks backend); synthetic dataset folder (gt backend)")
    p.add_argument("--instances", default=None, metavar="DIR", help="instance PNG folder (masks backend)")
    p.add_argument("--names", default=None, metavar="FILE",
                   help='class names: JSON {"id": "name"} (masks) or one name per line (darknet / onnx)')
    p.add_argument("--void", type=int, default=0, help="class PNG value meaning 'no label' (default: 0; -1 = none)")
    p.add_argument("--model", default=None, metavar="PATH", help="model file / folder (darknet, onnx, hf)")
    p.add_argument("--score", type=float, default=None, help="detection / segment score threshold")
    p.add_argument("--text", nargs="+", default=None, metavar="QUERY", help="text queries (open-vocabulary hf)")
    p.add_argument("--min-agreement", type=float, default=0.5,
                   help="winning share of the vote weight a label needs (default: 0.5)")
    p.add_argument("--plain-vote", action="store_true",
                   help="no per-view reliability or mask-boundary weighting (confidence-weighted majority only)")
    add_quiet(p, "no progress bar", no_progress_alias=False)


def _options(args: argparse.Namespace):
    from recon.semantic.job import LabelSceneOptions

    return LabelSceneOptions(
        backend=args.backend, masks=args.masks, instances=args.instances, names=args.names,
        void=None if args.void < 0 else args.void, model=args.model, score=args.score,
        text=None if args.text is None else tuple(args.text), min_agreement=args.min_agreement,
        plain_vote=args.plain_vote, progress=not args.quiet)


def run(args: argparse.Namespace) -> int:
    import sys

    from recon.semantic.job import label_scene

    r = label_scene(args.scene, args.output, _options(args))
    s = r.summary
    print(f"recon label: {s['points_labelled']}/{s['points']} {r.what} labelled "
          f"({100 * s['labelled_fraction_of_seen']:.1f} % of those seen), {s['instances']} instances "
          f"-> {r.output}", file=sys.stderr)
    return 0 if r.labelled_anything else 1
