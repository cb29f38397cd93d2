"""OpenCV DNN detectors: Darknet (``.cfg`` + ``.weights``) and ONNX YOLO-family models.

Decoding (both give boxes as centre x, centre y, width, height in network-input units):
- Darknet YOLO layers through OpenCV: one [N, 5 + C] array per output layer, coordinates
  normalised to the input size, column 4 the objectness, columns 5: the class scores (OpenCV's
  region layer already multiplies them by the objectness).
- ONNX: [1, 4 + C, N] (YOLOv8 / v11 heads, class scores only) or [1, N, 5 + C] (YOLOv5 / v7:
  objectness then class probabilities, score = objectness * probability), in input pixels.
Then a score threshold, class-aware NMS (``batched_nms``) and the inverse letterbox.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.errors import FormatError
from recon.semantic.letterbox import letterbox, unletterbox_boxes
from recon.semantic.metrics import batched_nms, nms
from recon.semantic.types import Detections

__all__ = ["OpenCVDetector", "darknet_weight_count", "read_names"]


def read_names(path) -> dict[int, str]:
    """Class names, one per line (Darknet ``.names`` / ``classes.txt``): line i -> class id i."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(path, f"cannot read class names ({e})") from None
    names = [ln.strip() for ln in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise FormatError(path, "no class names in the file (one name per line expected)")
    return dict(enumerate(names))


def _find_names(model: Path) -> Path | None:
    for cand in (model.with_suffix(".names"), model.parent / "coco.names", model.parent / "classes.txt",
                 model.parent / "names.txt"):
        if cand.is_file():
            return cand
    names = sorted(model.parent.glob("*.names"))
    return names[0] if len(names) == 1 else None


def _cfg_net_section(cfg: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = cfg.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise FormatError(cfg, f"cannot read ({e})") from None
    in_net = False
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            if in_net:
                break
            in_net = line.lower() in ("[net]", "[network]")
        elif in_net and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _cfg_sections(cfg: Path) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            out.append((line[1:-1].strip().lower(), {}))
        elif "=" in line and out:
            k, v = line.split("=", 1)
            out[-1][1][k.strip()] = v.strip()
    return out


def darknet_weight_count(cfg: Path) -> int | None:
    """Number of float32 parameters a Darknet ``.cfg`` expects in its ``.weights`` (convolutional
    and connected layers; channels tracked through maxpool / upsample / route / shortcut / yolo),
    or None for layer types not tracked here. OpenCV reads a truncated .weights file without an
    error (the missing weights become garbage), so the loader compares this count with the file
    size."""
    secs = _cfg_sections(cfg)
    if not secs or secs[0][0] not in ("net", "network"):
        return None
    c = int(secs[0][1].get("channels", 3))
    chans: list[int] = []
    total = 0
    for kind, o in secs[1:]:
        if kind == "convolutional":
            f, k = int(o.get("filters", 1)), int(o.get("size", 1))
            g = int(o.get("groups", 1))
            total += f * (c // g) * k * k + (4 * f if int(o.get("batch_normalize", 0)) else f)
            c = f
        elif kind == "connected":
            return None
        elif kind in ("maxpool", "upsample", "yolo", "region", "dropout", "avgpool", "softmax", "cost"):
            pass
        elif kind == "route":
            layers = [int(x) for x in o.get("layers", "").split(",") if x.strip()]
            idx = [i if i >= 0 else len(chans) + i for i in layers]
            if any(not 0 <= i < len(chans) for i in idx):
                return None
            c = sum(chans[i] for i in idx) // int(o.get("groups", 1))
        elif kind == "shortcut":
            pass
        else:
            return None
        chans.append(c)
    return total


def _check_weights_size(cfg: Path, weights: Path) -> None:
    want = darknet_weight_count(cfg)
    if want is None:
        return
    raw = weights.stat().st_size
    if raw < 12:
        raise FormatError(weights, f"truncated Darknet weights ({raw} bytes; the header alone is 20)")
    with open(weights, "rb") as f:
        major, minor, _ = np.frombuffer(f.read(12), "<i4")
    header = 20 if major * 10 + minor >= 2 else 16
    have = (raw - header) // 4
    if have != want:
        raise FormatError(weights, f"holds {have} weights, {cfg.name} needs {want} (truncated file, or weights "
                                   "of another model)")


class OpenCVDetector:
    """A YOLO-family detector run by ``cv2.dnn``.

    model: a Darknet ``.cfg`` (its ``.weights`` beside it with the same stem, or ``weights``) or an
    ``.onnx`` file. names: class id -> name; default: a ``.names`` file beside the model (same
    stem, ``coco.names``, ``classes.txt``), else the ids as strings. input_size (W, H): default the
    cfg's width/height, 640x640 for ONNX. keep_aspect: letterbox (True) or stretch (False);
    default: the cfg's ``letter_box`` (0 = stretch, as Darknet) for Darknet, letterbox for ONNX
    (as Ultralytics exports expect). Thresholds: detections scoring below ``score_threshold``
    are dropped, NMS at ``nms_threshold`` per class (``class_agnostic`` for one pass over all).
    """

    def __init__(self, model, *, weights=None, names: dict[int, str] | None = None,
                 input_size: tuple[int, int] | None = None, keep_aspect: bool | None = None,
                 score_threshold: float = 0.25, nms_threshold: float = 0.45, class_agnostic: bool = False):
        import cv2

        model = Path(model)
        if not model.is_file():
            raise FileNotFoundError(f"{model}: no such model file")
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold: expected a value in [0, 1], got {score_threshold}")
        if not 0.0 <= nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold: expected a value in [0, 1], got {nms_threshold}")
        suffix = model.suffix.lower()
        if suffix == ".cfg":
            self.kind = "darknet"
            weights = Path(weights) if weights is not None else model.with_suffix(".weights")
            if not weights.is_file():
                raise FileNotFoundError(f"{weights}: no Darknet weights beside {model.name} (expected the same "
                                        "stem with .weights)")
            net_cfg = _cfg_net_section(model)
            _check_weights_size(model, weights)
            try:
                net = cv2.dnn.readNetFromDarknet(str(model), str(weights))
            except cv2.error as e:
                raise FormatError(model, f"OpenCV cannot load this Darknet model with {weights.name}: "
                                         f"{str(e).strip().splitlines()[-1]}") from None
            if input_size is None:
                input_size = (int(net_cfg.get("width", 416)), int(net_cfg.get("height", 416)))
            if keep_aspect is None:
                keep_aspect = net_cfg.get("letter_box", "0").strip() not in ("0", "")
        elif suffix == ".onnx":
            self.kind = "onnx"
            try:
                net = cv2.dnn.readNetFromONNX(str(model))
            except cv2.error as e:
                raise FormatError(model, f"OpenCV cannot load this ONNX model: "
                                         f"{str(e).strip().splitlines()[-1]}") from None
            if input_size is None:
                input_size = (640, 640)
            if keep_aspect is None:
                keep_aspect = True
        else:
            raise ValueError(f"model: {model} is neither a Darknet .cfg nor an .onnx file")
        if net is None or net.empty():
            raise FormatError(model, "OpenCV loaded an empty network")
        if names is None:
            found = _find_names(model)
            names = read_names(found) if found is not None else {}
        self.model_path = model
        self.net = net
        self.names = dict(names)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.keep_aspect = bool(keep_aspect)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.class_agnostic = bool(class_agnostic)
        try:  # OpenCV reads some broken files without complaint and fails at the first forward
            self._out_names = net.getUnconnectedOutLayersNames()
            net.setInput(np.zeros((1, 3, self.input_size[1], self.input_size[0]), np.float32))
            net.forward(self._out_names)
        except cv2.error as e:
            raise FormatError(model, f"OpenCV loaded this model but cannot run it: "
                                     f"{str(e).strip().splitlines()[-1]}") from None

    def forward(self, image: np.ndarray):
        """Raw network outputs and the Letterbox used, for an RGB uint8 image [H, W, 3]."""
        import cv2

        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image: expected an RGB uint8 [H, W, 3] array, got {img.dtype} {img.shape}")
        net_img, lb = letterbox(img, self.input_size, keep_aspect=self.keep_aspect)
        blob = cv2.dnn.blobFromImage(net_img, 1 / 255.0, self.input_size, swapRB=False, crop=False)
        self.net.setInput(blob)
        outs = self.net.forward(self._out_names)
        return [np.asarray(o) for o in outs], lb

    def decode(self, outs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes [N, 4] xyxy in network-input pixels, scores [N], classes [N]) above the score
        threshold, before NMS."""
        Wi, Hi = self.input_size
        rows = []
        for o in outs:
            if self.kind == "darknet":
                r = o.reshape(-1, o.shape[-1]).astype(np.float64)
                xywh = r[:, :4] * np.array([Wi, Hi, Wi, Hi])
                cls_scores = r[:, 5:]
            else:
                r = np.squeeze(o, axis=0) if o.ndim == 3 else o
                nc = len(self.names) or None
                widths = (4 + nc, 5 + nc) if nc else ()

                def fits(n, widths=widths):
                    return n in widths

                if fits(r.shape[0]) and fits(r.shape[1]) or not (fits(r.shape[0]) or fits(r.shape[1])):
                    transpose = r.shape[0] < r.shape[1]  # heads have far more anchors than columns
                else:
                    transpose = fits(r.shape[0])
                if transpose:
                    r = r.T  # [4 + C, N] head (YOLOv8 / v11) -> [N, 4 + C]
                objectness = r.shape[1] == 5 + nc if nc else not transpose
                r = r.astype(np.float64)
                xywh = r[:, :4]
                cls_scores = r[:, 5:] * r[:, 4:5] if objectness else r[:, 4:]
            if cls_scores.shape[1] == 0:
                continue
            c = np.argmax(cls_scores, axis=1)
            s = cls_scores[np.arange(len(c)), c]
            keep = s >= self.score_threshold
            xywh, c, s = xywh[keep], c[keep], s[keep]
            # centre/size in input pixel EDGE units -> our centre-of-pixel convention
            xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1) - 0.5
            rows.append((xyxy, s, c))
        if not rows:
            return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
        return (np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows]),
                np.concatenate([r[2] for r in rows]).astype(np.int64))

    def detect(self, image: np.ndarray) -> Detections:
        """Detections in an RGB uint8 image [H, W, 3], boxes in its pixels, highest score first."""
        outs, lb = self.forward(image)
        boxes, scores, classes = self.decode(outs)
        keep = (nms(boxes, scores, self.nms_threshold) if self.class_agnostic
                else batched_nms(boxes, scores, classes, self.nms_threshold))
        return Detections(unletterbox_boxes(boxes[keep], lb), scores[keep], classes[keep], self.names)
