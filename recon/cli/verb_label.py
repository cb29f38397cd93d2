"""`recon label SCENE --backend ... -o OUT`: lift 2D labels onto SfM points or splat centres."""

from __future__ import annotations

import argparse

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


# recon.semantic.backends.BACKENDS, spelled out: `recon --help` must not import NumPy
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _resolve_scene(path):
    """(posed Artifact, splat PLY or None)."""
    from recon.errors import FormatError
    from recon.io import detect
    from recon.io.detect import Kind

    art = detect(path)
    if art.kind == Kind.SPLAT_OUTPUT:
        if art.data_path is None:
            raise FormatError(art.path, "splat output without the data_path it was trained on (report.json); "
                                        "cannot find its cameras")
        posed = detect(art.data_path)
        if not posed.is_posed_images:
            raise FormatError(art.data_path, f"is a {posed.kind.label}, not posed images (training data of "
                                             f"{art.path})")
        return posed, art.ply
    art.require(Kind.SFM_OUTPUT, Kind.COLMAP_MODEL, Kind.SYNTH_DATASET, Kind.TRANSFORMS, verb="recon label")
    return art, None


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time
    from pathlib import Path

    import numpy as np

    from recon.errors import FormatError
    from recon.io import read_model
    from recon.semantic.backends import make_backend
    from recon.semantic.lift import LabelOptions
    from recon.semantic.scene import label_reconstruction, view_segmenter

    t0 = time.perf_counter()
    posed, splat_ply = _resolve_scene(args.scene)
    rec = read_model(posed.model_dir or posed.transforms)
    images_dir = posed.images_dir
    dataset = None
    if args.backend == "gt":
        if args.masks:
            dataset = Path(args.masks)
        elif posed.gt is not None:
            dataset = Path(posed.gt).parent
        elif images_dir is not None and (Path(images_dir).parent / "gt.json").is_file():
            dataset = Path(images_dir).parent
    options = LabelOptions(min_agreement=args.min_agreement, reliability_rounds=0 if args.plain_vote else 2,
                           boundary_px=0 if args.plain_vote else 2)
    backend = make_backend(args.backend, model=args.model, masks=args.masks if args.backend == "masks" else None,
                           instances=args.instances, dataset=dataset, names=args.names,
                           score_threshold=args.score, text_queries=args.text,
                           void=None if args.void < 0 else args.void)
    if hasattr(backend, "unmatched"):
        known = {im.name for im in rec.images.values()}
        if images_dir is not None:
            from recon.io.images import list_images

            known |= {p.name for p in list_images(images_dir)}
        stray = backend.unmatched(sorted(known))
        if stray:
            raise FormatError(stray[0], f"mask for an image that is not in the model {posed.path} "
                                        f"({len(stray)} such mask file{'s' if len(stray) > 1 else ''}; masks are "
                                        "matched to images by name without extension)")
        if not any(backend.has(im.name) for im in rec.registered_images):
            raise FormatError(backend.mask_files()[0].parent, "no mask matches a registered image of the model")

    xyz = None
    gaussians = None
    if splat_ply is not None:
        from recon.io import read_splat_ply

        gaussians = read_splat_ply(splat_ply)
        xyz = gaussians.means.astype(np.float64)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    result = label_reconstruction(rec, view_segmenter(backend, images_dir), xyz=xyz,
                                  names=getattr(backend, "names", None), options=options,
                                  progress=not args.quiet)
    _write_outputs(out, result, rec, gaussians)
    summary = result.summary()
    report = {"version": 1, "scene": str(args.scene), "backend": args.backend, "model": args.model,
              "masks_dir": args.masks, "instances_dir": args.instances,
              "what": "splat centres" if gaussians is not None else "SfM points",
              **summary, "options": {"min_agreement": options.min_agreement,
                                     "reliability_rounds": options.reliability_rounds,
                                     "boundary_px": options.boundary_px},
              "notes": result.notes[:50], "seconds": round(time.perf_counter() - t0, 3)}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"recon label: {summary['points_labelled']}/{summary['points']} {report['what']} labelled "
          f"({100 * summary['labelled_fraction_of_seen']:.1f} % of those seen), {summary['instances']} instances "
          f"-> {out}", file=sys.stderr)
    return 0 if summary["points_labelled"] or summary["instances"] else 1


def _write_outputs(out, result, rec, gaussians) -> None:
    import json

    import numpy as np

    from recon.io import PointCloud, write_ply
    from recon.semantic.io import class_table, write_class_table

    lab = result.labels
    attrs = {"class_id": lab.class_id, "instance_id": lab.instance_id, "confidence": lab.confidence,
             "num_votes": lab.num_votes}
    if result.point_ids is not None:
        rgb = np.array([rec.points3D[int(p)].rgb for p in result.point_ids], np.uint8).reshape(-1, 3)
        attrs["point3D_id"] = result.point_ids.astype(np.int32)
    else:
        rgb = np.round(gaussians.colors_dc * 255).astype(np.uint8)
    write_ply(out / "labels.ply", PointCloud(result.xyz, rgb, attributes=attrs),
              comments=("recon label: class_id / instance_id (-1 = none), confidence per vertex",))
    (out / "labels.classes.json").write_text(json.dumps({str(k): v for k, v in sorted(result.names.items())},
                                                        indent=1))
    what = "splats" if gaussians is not None else "points"
    write_class_table(out / "class_table.json", class_table(lab.class_id, lab.instance_id, result.names,
                                                            lab.instance_class, what=what))
    if gaussians is not None:
        from recon.io import write_splat_ply

        write_splat_ply(out / "splat_labelled.ply", gaussians,
                        attributes={"class_id": lab.class_id, "instance_id": lab.instance_id,
                                    "confidence": lab.confidence})
