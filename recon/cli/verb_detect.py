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


def run(args: argparse.Namespace) -> int:
    import sys

    from recon.semantic.detect_job import DetectOptions, detect_images

    if args.input_size and len(args.input_size) > 2:
        raise ValueError(f"--input-size: expected W or W H in pixels, got {args.input_size}")
    size = (args.input_size[0], args.input_size[-1]) if args.input_size else None
    try:
        from viewer.convert import label_palette
    except ImportError:
        label_palette = None
    options = DetectOptions(model=args.model, backend=args.backend, score=args.score, nms=args.nms,
                            input_size=size, names=args.names, text=tuple(args.text) if args.text else None,
                            pictures=not args.no_pictures, progress=not args.quiet)
    try:
        res = detect_images(args.images, args.output, options, palette=label_palette)
    except ValueError as e:  # option errors carry the library's names; the CLI's flags are --x
        msg = str(e)
        for name in ("input_size", "nms", "backend"):
            if msg.startswith(name + ":"):
                msg = "--" + name.replace("_", "-") + msg[len(name):]
        raise ValueError(msg) from None
    print(f"recon detect: {len(res.detections)} detections in {res.images} images -> "
          f"{res.output / 'detections.json'}", file=sys.stderr)
    return 0
