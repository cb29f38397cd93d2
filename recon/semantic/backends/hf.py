"""Hugging Face ``transformers`` detectors and segmenters (imported lazily; ``pip install
recon[hf]``).

``HFBackend(model)`` loads a model folder (``save_pretrained`` layout: config.json, weights,
preprocessor_config.json) or, when the user allows downloads, a hub id, and picks the task from
the config's architecture:

- ``...ForObjectDetection`` (DETR, Conditional/Deformable DETR, YOLOS, RT-DETR, ...): ``detect``;
- ``OwlViTForObjectDetection`` / ``Owlv2...`` / ``GroundingDino...`` (open vocabulary): ``detect``
  with ``text_queries`` (the class names are the queries);
- ``...ForSemanticSegmentation`` (SegFormer, UperNet, DPT, ...): ``segment`` -> class map;
- ``...ForUniversalSegmentation`` / ``...ForInstanceSegmentation`` (Mask2Former, OneFormer,
  MaskFormer): ``segment`` -> panoptic class + instance maps with per-segment scores.

``segment`` on a detector paints its boxes (``recon.semantic.scene.segmentation_from_detections``).
SAM (point / box prompts) is not wired yet: it needs prompts per image, which no verb gives.
Boxes from the processors are in pixel-edge units; they are shifted by -0.5 into our convention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.errors import FormatError
from recon.semantic.types import Detections, Segmentation

__all__ = ["HFBackend"]

_OPEN_VOCAB = ("OwlViT", "Owlv2", "GroundingDino")


class HFBackend:
    """A transformers model behind the Detections / Segmentation interface.

    model: local folder or hub id (``local_files_only`` unless ``allow_download``). task: None =
    from the architecture ("detection", "semantic", "panoptic"). score_threshold: detections and
    panoptic segments below it are dropped. text_queries: class names for open-vocabulary
    detectors. device: torch device (default cuda when available, else cpu).
    """

    def __init__(self, model, *, task: str | None = None, score_threshold: float = 0.5,
                 text_queries: list[str] | None = None, device: str | None = None,
                 allow_download: bool = False):
        try:
            import torch
            import transformers
        except ImportError as e:
            raise ImportError(f"the hf backend needs transformers (pip install 'recon[hf]'): {e}") from None
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold: expected a value in [0, 1], got {score_threshold}")
        path = Path(model)
        local = not allow_download
        if local and not path.is_dir():
            raise FileNotFoundError(f"{model}: no such model folder (pass a folder written by save_pretrained, "
                                    "or allow downloads for a hub id)")
        try:
            config = transformers.AutoConfig.from_pretrained(str(model), local_files_only=local)
        except (OSError, ValueError) as e:
            raise FormatError(model, f"not a transformers model folder: {str(e).splitlines()[0]}") from None
        arch = (config.architectures or [""])[0]
        if task is None:
            if "ObjectDetection" in arch or "GroundingDino" in arch:
                task = "detection"
            elif "SemanticSegmentation" in arch:
                task = "semantic"
            elif "UniversalSegmentation" in arch or "InstanceSegmentation" in arch or "MaskFormer" in arch:
                task = "panoptic"
            else:
                raise FormatError(model, f"architecture {arch or '(none)'} is not a detector or segmenter this "
                                         "backend knows (…ForObjectDetection, …ForSemanticSegmentation, "
                                         "…ForUniversalSegmentation)")
        if task not in ("detection", "semantic", "panoptic"):
            raise ValueError(f"task: expected detection, semantic or panoptic, got {task!r}")
        self.open_vocab = any(k in arch for k in _OPEN_VOCAB)
        if self.open_vocab and not text_queries:
            raise ValueError(f"text_queries: {arch} is an open-vocabulary detector; give the class names to find")
        auto = {"detection": transformers.AutoModelForZeroShotObjectDetection if self.open_vocab
                else transformers.AutoModelForObjectDetection,
                "semantic": transformers.AutoModelForSemanticSegmentation,
                "panoptic": transformers.AutoModelForUniversalSegmentation}[task]
        try:
            self.processor = (transformers.AutoProcessor if self.open_vocab else transformers.AutoImageProcessor
                              ).from_pretrained(str(model), local_files_only=local)
            self.model = auto.from_pretrained(str(model), local_files_only=local)
        except (OSError, ValueError, KeyError) as e:
            raise FormatError(model, f"cannot load the model or its processor: {str(e).splitlines()[0]}") from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.task = task
        self.score_threshold = float(score_threshold)
        self.text_queries = list(text_queries or [])
        if self.open_vocab:
            self.names = dict(enumerate(self.text_queries))
        else:
            self.names = {int(k): str(v) for k, v in (config.id2label or {}).items()}

    def _run(self, image: np.ndarray, **extra):
        import torch

        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image: expected an RGB uint8 [H, W, 3] array, got {img.dtype} {img.shape}")
        if self.open_vocab:
            inputs = self.processor(text=[self.text_queries], images=img, return_tensors="pt")
        else:
            inputs = self.processor(images=img, return_tensors="pt")
        inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        with torch.no_grad():
            return self.model(**inputs), (img.shape[0], img.shape[1])

    def detect(self, image: np.ndarray) -> Detections:
        """Detections in an RGB uint8 image [H, W, 3] (task "detection")."""
        if self.task != "detection":
            raise ValueError(f"detect: this model is a {self.task} segmenter; use segment()")
        out, hw = self._run(image)
        if self.open_vocab:
            post = getattr(self.processor, "post_process_grounded_object_detection", None) \
                or self.processor.post_process_object_detection
            r = post(out, threshold=self.score_threshold, target_sizes=[hw])[0]
        else:
            r = self.processor.post_process_object_detection(out, threshold=self.score_threshold,
                                                             target_sizes=[hw])[0]
        boxes = r["boxes"].detach().cpu().numpy().astype(np.float64).reshape(-1, 4) - 0.5
        boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1)
        scores = r["scores"].detach().cpu().numpy()
        labels = r["labels"].detach().cpu().numpy()
        order = np.argsort(-scores, kind="stable")
        return Detections(boxes[order], scores[order], labels[order], self.names)

    def segment(self, image: np.ndarray, name: str = "") -> Segmentation:
        """Per-pixel labels of an RGB uint8 image [H, W, 3]."""
        if self.task == "detection":
            from recon.semantic.scene import segmentation_from_detections

            img = np.asarray(image)
            return segmentation_from_detections(self.detect(img), (img.shape[1], img.shape[0]))
        out, hw = self._run(image)
        if self.task == "semantic":
            cm = self.processor.post_process_semantic_segmentation(out, target_sizes=[hw])[0]
            cm = cm.detach().cpu().numpy().astype(np.int32)
            conf = None
            logits = getattr(out, "logits", None)
            if logits is not None:
                import torch

                up = torch.nn.functional.interpolate(logits, size=hw, mode="bilinear", align_corners=False)
                conf = up.softmax(1).max(1).values[0].cpu().numpy().astype(np.float32)
            return Segmentation(cm, None, conf, self.names)
        r = self.processor.post_process_panoptic_segmentation(out, threshold=self.score_threshold,
                                                              target_sizes=[hw])[0]
        seg = r["segmentation"].detach().cpu().numpy().astype(np.int64)
        cls = np.full(seg.shape, -1, np.int32)
        conf = np.zeros(seg.shape, np.float32)
        ins = np.zeros(seg.shape, np.int32)
        for info in r["segments_info"]:
            m = seg == info["id"]
            cls[m] = int(info["label_id"])
            conf[m] = float(info.get("score", 1.0))
            ins[m] = int(info["id"]) + 1  # segment ids may start at 0; 0 = none here
        return Segmentation(cls, ins, conf, self.names)
