"""`recon detect` as a library function: :func:`detect_images` runs a 2D detector on photos and
writes COCO results, annotated pictures and a report (outputs listed on :func:`detect_images`)."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DetectOptions", "DetectResult", "collect_image_paths", "detect_images", "detector_kind"]

DETECTORS = ("darknet", "onnx", "hf")


@dataclass(frozen=True)
class DetectOptions:
    """Options of :func:`detect_images` (the flags of `recon detect`).

    model:          .cfg (darknet: .weights and names beside it), .onnx, or a Hugging Face folder
    backend:        "darknet" | "onnx" | "hf"; None: from ``model`` (:func:`detector_kind`)
    score:          score threshold (None: the backend's: 0.25 YOLO, 0.5 hf)
    nms:            per-class NMS IoU threshold, in (0, 1]
    input_size:     network input (W, H) in pixels (None: the cfg's; 640 for onnx)
    names:          class names file, one per line
    text:           text queries of open-vocabulary hf detectors
    pictures:       write annotated/NAME.jpg
    progress:       progress bar on stderr
    """

    model: str | Path
    backend: str | None = None
    score: float | None = None
    nms: float = 0.45
    input_size: tuple[int, int] | None = None
    names: str | Path | None = None
    text: tuple[str, ...] | None = None
    pictures: bool = True
    progress: bool = True

    def validate(self) -> None:
        if self.backend is not None and self.backend not in DETECTORS:
            raise ValueError(f"backend: expected one of {', '.join(DETECTORS)}, got {self.backend!r}")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 1):
            raise ValueError(f"input_size: expected (W, H) in pixels, got {self.input_size}")
        if not 0.0 < self.nms <= 1.0:
            raise ValueError(f"nms: expected an IoU threshold in (0, 1], got {self.nms}")


@dataclass
class DetectResult:
    """What :func:`detect_images` wrote: ``detections`` (COCO results entries), per-class counts."""

    output: Path
    backend: str
    images: int
    detections: list[dict] = field(default_factory=list)
    per_class: dict[str, int] = field(default_factory=dict)
    score_threshold: float | None = None
    nms_threshold: float = 0.45
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"backend": self.backend, "images": self.images, "detections": len(self.detections),
                "per_class": self.per_class, "score_threshold": self.score_threshold,
                "nms_threshold": self.nms_threshold, "seconds": round(self.seconds, 3)}


def detector_kind(model, backend: str | None = None) -> str:
    """The detector backend of ``model``: ``backend`` if given, else .cfg -> darknet,
    .onnx -> onnx, a folder -> hf. ValueError when it cannot be told."""
    if backend:
        return backend
    m = Path(model)
    if m.suffix.lower() == ".cfg":
        return "darknet"
    if m.suffix.lower() == ".onnx":
        return "onnx"
    if m.is_dir():
        return "hf"
    raise ValueError(f"--model: cannot tell the backend of {m} (a .cfg, .onnx or model folder); pass --backend")


def collect_image_paths(items) -> list[Path]:
    """Image files and folders of images (recon.io.images.list_images) -> paths, in order.
    FileNotFoundError names a missing item or an empty folder."""
    from recon.io.images import list_images

    out: list[Path] = []
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


def _unique_names(images: list[Path]) -> list[str]:
    """File names; relative to the common folder when two files share a name."""
    names = [p.name for p in images]
    if len(set(names)) != len(names):
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in images]))
        names = [p.resolve().relative_to(root).as_posix() for p in images]
    return names


def detect_images(images, output, options: DetectOptions, *,
                  palette: Callable | None = None) -> DetectResult:
    """Detect objects in ``images`` (files and/or folders) and write to ``output``:

    ``detections.json``  COCO results {file_name, category_id, category_name, bbox [x, y, w, h]
                         in pixels from the image's top-left corner, score}
    ``annotated/NAME``   each image with its boxes (``options.pictures``)
    ``report.json``      :meth:`DetectResult.to_json` plus the model (recon.io.report)

    ``palette``: class ids -> [N, 3] uint8 colours for the pictures (the CLI passes the
    viewer's label palette; None: the drawing's default). What was detected before an
    interruption is written all the same."""
    from tqdm import tqdm

    from recon.io import read_image, write_image
    from recon.io.report import write_report
    from recon.semantic.backends import make_backend
    from recon.semantic.io import coco_results, draw_detections, write_coco_results

    options.validate()
    t0 = time.perf_counter()
    paths = collect_image_paths([images] if isinstance(images, (str, Path)) else images)
    kind = detector_kind(options.model, options.backend)
    backend = make_backend(kind, model=options.model, names=options.names, score_threshold=options.score,
                           nms_threshold=options.nms, input_size=options.input_size,
                           text_queries=list(options.text) if options.text else None)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    res = DetectResult(out, kind, len(paths), nms_threshold=options.nms,
                       score_threshold=getattr(backend, "score_threshold", options.score))
    counts: Counter = Counter()
    try:
        for path, name in tqdm(list(zip(paths, _unique_names(paths))), desc="detect", unit="img",
                               disable=not options.progress, file=sys.stderr):
            img = read_image(path)
            det = backend.detect(img)
            res.detections += coco_results(name, det)
            counts.update(det.class_names())
            if options.pictures:
                cols = palette(det.classes) if palette is not None else None
                write_image(out / "annotated" / Path(name).with_suffix(".jpg"), draw_detections(img, det, cols))
    finally:  # what was detected so far is kept
        res.per_class = dict(counts.most_common())
        res.seconds = time.perf_counter() - t0
        write_coco_results(out / "detections.json", res.detections)
        write_report(out / "report.json", {**res.to_json(), "model": str(options.model)})
    return res
