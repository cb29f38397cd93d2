"""`recon detect IMAGES... --model PATH -o OUT`: 2D object detection, COCO-style results."""

from __future__ import annotations

import argparse

NAME = "detect"
HELP = "2D object detection (Darknet / ONNX YOLO via OpenCV DNN, Hugging Face models): COCO results JSON + pictures"
ORDER = 60
OPENS_IMAGES = True  # gets --max-image-pixels (recon.cli.build_parser)
DESCRIPTION = """\
Detect objects in photos with a YOLO-family model run by OpenCV DNN (Darknet .cfg + .weights, or
.onnx, letterboxed input, class-aware NMS) or a Hugging Face transformers detector (a folder written
by save_pretrained: DETR, YOLOS, RT-DETR, ...; OWL-ViT / Grounding DINO with --text).

--model: for darknet the .cfg, with the .weights (same stem) and the class names (.names with the
same stem, coco.names or classes.txt) beside it; for onnx the .onnx (names as for darknet, or
--names); for hf the model folder. --backend defaults from the model: .cfg -> darknet,
.onnx -> onnx, a folder -> hf.

Writes to OUT:
  detections.json   COCO results: a list of {file_name, category_id, category_name,
                    bbox [x, y, w, h] (pixels, origin at the image's top-left corner), score}
  annotated/NAME    each image with its boxes, class names and scores
  report.json       model, backend, thresholds, images, detections per class, seconds

examples:
  recon detect photos/*.jpg --model yolov3-tiny.cfg -o out/det
  recon detect photos --backend onnx --model yolov8n.onnx --input-size 640 -o out/det --score 0.3
  recon detect photos --backend hf --model models/detr-resnet-50 -o out/det
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files and/or folders of images")
    p.add_argument("--model", required=True, metavar="PATH", help="model file or folder (see above)")
    p.add_argument("--backend", choices=("darknet", "onnx", "hf"), default=None,
                   help="model kind (default: from --model)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (created)")
    p.add_argument("--score", type=float, default=None,
                   help="score threshold (default: 0.25 for YOLO, 0.5 for hf)")
    p.add_argument("--nms", type=float, default=0.45, help="NMS IoU threshold, per class (default: 0.45)")
    p.add_argument("--input-size", type=int, nargs="+", default=None, metavar="PX",
                   help="network input W [H] in pixels (default: the cfg's; 640 for onnx)")
    p.add_argument("--names", default=None, metavar="FILE", help="class names file, one per line")
    p.add_argument("--text", nargs="+", default=None, metavar="QUERY",
                   help="text queries (class names) for open-vocabulary hf detectors")
    p.add_argument("--no-pictures", action="store_true", help="do not write annotated images")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _backend_kind(args) -> str:
    from pathlib import Path

    if args.backend:
        return args.backend
    m = Path(args.model)
    if m.suffix.lower() == ".cfg":
        return "darknet"
    if m.suffix.lower() == ".onnx":
        return "onnx"
    if m.is_dir():
        return "hf"
    raise ValueError(f"--model: cannot tell the backend of {m} (a .cfg, .onnx or model folder); pass --backend")


def _collect_images(items) -> list:
    from pathlib import Path

    from recon.io.images import list_images

    out = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise FileNotFoundError(f"{p}: no images in this folder")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from collections import Counter
    from pathlib import Path

    from tqdm import tqdm

    from recon.io import read_image, write_image
    from recon.semantic.backends import make_backend
    from recon.semantic.io import coco_results, draw_detections, write_coco_results

    t0 = time.perf_counter()
    images = _collect_images(args.images)
    kind = _backend_kind(args)
    size = None
    if args.input_size:
        if len(args.input_size) > 2 or min(args.input_size) < 1:
            raise ValueError(f"--input-size: expected W or W H in pixels, got {args.input_size}")
        size = (args.input_size[0], args.input_size[-1])
    backend = make_backend(kind, model=args.model, names=args.names, score_threshold=args.score,
                           nms_threshold=args.nms, input_size=size, text_queries=args.text)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    try:
        from viewer.convert import label_palette
    except ImportError:
        label_palette = None
    # names relative to a common folder keep sub-folders apart in annotated/
    names = [p.name for p in images]
    if len(set(names)) != len(names):
        import os

        root = Path(os.path.commonpath([str(p.resolve().parent) for p in images]))
        names = [p.resolve().relative_to(root).as_posix() for p in images]
    entries: list[dict] = []
    counts: Counter = Counter()
    try:
        for path, name in tqdm(list(zip(images, names)), desc="detect", unit="img", disable=args.quiet,
                               file=sys.stderr):
            img = read_image(path)
            det = backend.detect(img)
            entries += coco_results(name, det)
            counts.update(det.class_names())
            if not args.no_pictures:
                cols = label_palette(det.classes) if label_palette else None
                write_image(out / "annotated" / Path(name).with_suffix(".jpg"), draw_detections(img, det, cols))
    finally:  # what was detected so far is kept
        write_coco_results(out / "detections.json", entries)
        report = {"version": 1, "backend": kind, "model": str(args.model), "images": len(images),
                  "detections": len(entries), "per_class": dict(counts.most_common()),
                  "score_threshold": getattr(backend, "score_threshold", args.score),
                  "nms_threshold": args.nms, "seconds": round(time.perf_counter() - t0, 3)}
        from recon.io.report import write_report

        write_report(out / "report.json", report)
    print(f"recon detect: {len(entries)} detections in {len(images)} images -> {out / 'detections.json'}",
          file=sys.stderr)
    return 0
