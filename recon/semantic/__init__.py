"""Semantic labelling: 2D metrics, 2D detection / segmentation backends behind one interface,
and the lifting of 2D labels onto SfM points and splat centres.

Importing this package is light (NumPy); OpenCV, transformers and torch load inside the
backends that use them.
"""

from recon.semantic.detect_job import DetectOptions, DetectResult, detect_images
from recon.semantic.job import LABEL_BACKENDS, LabelSceneOptions, LabelSceneResult, label_scene
from recon.semantic.letterbox import (
    Letterbox,
    letterbox,
    letterbox_boxes,
    letterbox_params,
    unletterbox_boxes,
)
from recon.semantic.metrics import (
    MAPResult,
    PRCurve,
    batched_nms,
    box_area,
    box_iou,
    confusion_matrix,
    dice,
    evaluate_map,
    generalized_box_iou,
    hungarian,
    mask_iou,
    match_detections,
    mean_iou,
    nms,
    precision_recall,
)
from recon.semantic.types import DetectionBackend, Detections, Segmentation, SegmentationBackend

__all__ = [
    "LABEL_BACKENDS",
    "DetectOptions",
    "DetectResult",
    "DetectionBackend",
    "Detections",
    "LabelSceneOptions",
    "LabelSceneResult",
    "Letterbox",
    "MAPResult",
    "PRCurve",
    "Segmentation",
    "SegmentationBackend",
    "batched_nms",
    "box_area",
    "box_iou",
    "confusion_matrix",
    "detect_images",
    "dice",
    "evaluate_map",
    "generalized_box_iou",
    "hungarian",
    "label_scene",
    "letterbox",
    "letterbox_boxes",
    "letterbox_params",
    "mask_iou",
    "match_detections",
    "mean_iou",
    "nms",
    "precision_recall",
    "unletterbox_boxes",
]
