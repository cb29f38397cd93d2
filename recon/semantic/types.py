"""Result types of the 2D backends and the Protocols every backend follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["DetectionBackend", "Detections", "Segmentation", "SegmentationBackend"]


@dataclass(eq=False)
class Detections:
    """Detections in one image. boxes [N, 4] float64 xyxy pixels (pixel (0, 0) = centre of the
    top-left pixel); scores [N] in [0, 1]; classes [N] int64 ids; names: class id -> name (the
    model's whole table, not just the classes present)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        b = np.asarray(self.boxes, dtype=np.float64)
        if b.size == 0:
            b = b.reshape(0, 4)
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes: expected [N, 4] xyxy, got {b.shape}")
        s = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        c = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        if not len(b) == len(s) == len(c):
            raise ValueError(f"boxes, scores, classes: expected one row each per detection, got {len(b)}, "
                             f"{len(s)}, {len(c)}")
        self.boxes, self.scores, self.classes = b, s, c
        self.names = {int(k): str(v) for k, v in dict(self.names).items()}

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def subset(self, index) -> Detections:
        return Detections(self.boxes[index], self.scores[index], self.classes[index], self.names)

    def class_names(self) -> list[str]:
        """The name of each detection's class (``str(id)`` when the table lacks it)."""
        return [self.names.get(int(c), str(int(c))) for c in self.classes]


@dataclass(eq=False)
class Segmentation:
    """Per-pixel labels of one image ([H, W] arrays):

    class_map: int32 class ids, -1 = no label (void / unknown), or None when the backend gives
    instances only; confidence: float32 in [0, 1] per pixel (None = 1 everywhere);
    instance_map: int32 instance ids local to THIS image (0 = none), or None. Instance ids of two
    images need not agree: lifting matches them. names: class id -> name."""

    class_map: np.ndarray | None = None
    instance_map: np.ndarray | None = None
    confidence: np.ndarray | None = None
    names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        shape = None
        for name in ("class_map", "instance_map", "confidence"):
            a = getattr(self, name)
            if a is None:
                continue
            a = np.asarray(a)
            if a.ndim != 2:
                raise ValueError(f"{name}: expected an [H, W] array, got shape {a.shape}")
            if shape is not None and a.shape != shape:
                raise ValueError(f"{name}: shape {a.shape} differs from the other maps' {shape}")
            shape = a.shape
            if name == "confidence":
                a = a.astype(np.float32)
            else:
                if a.dtype.kind not in "iu":
                    raise TypeError(f"{name}: expected integer ids, got dtype {a.dtype}")
                a = a.astype(np.int32)
            setattr(self, name, a)
        if shape is None:
            raise ValueError("Segmentation: needs a class_map or an instance_map")
        self.names = {int(k): str(v) for k, v in dict(self.names).items()}

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        a = self.class_map if self.class_map is not None else self.instance_map
        return int(a.shape[1]), int(a.shape[0])


@runtime_checkable
class DetectionBackend(Protocol):
    """Anything that finds boxes in an RGB uint8 image [H, W, 3]."""

    names: dict[int, str]

    def detect(self, image: np.ndarray) -> Detections: ...


@runtime_checkable
class SegmentationBackend(Protocol):
    """Anything that labels the pixels of an image. ``segment`` takes the RGB image [H, W, 3] and
    its name (file name relative to the image folder: file-based backends look masks up by it)."""

    names: dict[int, str]

    def segment(self, image: np.ndarray | None, name: str) -> Segmentation: ...
