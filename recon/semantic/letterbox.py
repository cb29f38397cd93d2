"""Letterboxing: resize an image into a fixed network input keeping its aspect ratio, pad the
rest, and map boxes between the two frames.

Coordinates are in our pixel convention (pixel (0, 0) is the centre of the top-left pixel). A
resize by s maps pixel EDGES by s, so a centre coordinate maps as ``x' = (x + 0.5) s - 0.5``;
``letterbox_boxes`` / ``unletterbox_boxes`` are exact inverses of each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Letterbox", "letterbox", "letterbox_boxes", "letterbox_params", "unletterbox_boxes"]


@dataclass(frozen=True)
class Letterbox:
    """How an image of ``image_size`` (W, H) sits inside the network input ``input_size`` (W, H):
    scaled by ``scale`` (sx, sy) to ``resized_size`` (W, H), then shifted by ``pad`` (left, top)
    whole pixels. With ``keep_aspect=False`` (a plain stretch) pad is (0, 0) and sx != sy."""

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    resized_size: tuple[int, int]
    scale: tuple[float, float]
    pad: tuple[int, int]


def _size(v, name: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (width, height), got {v!r}") from None
    if w < 1 or h < 1:
        raise ValueError(f"{name}: expected positive (width, height), got {v!r}")
    return w, h


def letterbox_params(image_size, input_size, *, keep_aspect: bool = True) -> Letterbox:
    """The letterbox of an image of ``image_size`` (W, H) into ``input_size`` (W, H): one scale
    min(Wi / W, Hi / H), the resized image centred (left/top padding rounded down, as
    Ultralytics' ``LetterBox``). The scale actually applied per axis is resized / original."""
    W, H = _size(image_size, "image_size")
    Wi, Hi = _size(input_size, "input_size")
    if not keep_aspect:
        return Letterbox((W, H), (Wi, Hi), (Wi, Hi), (Wi / W, Hi / H), (0, 0))
    s = min(Wi / W, Hi / H)
    nw, nh = min(Wi, max(1, round(W * s))), min(Hi, max(1, round(H * s)))
    return Letterbox((W, H), (Wi, Hi), (nw, nh), (nw / W, nh / H), ((Wi - nw) // 2, (Hi - nh) // 2))


def letterbox(image, input_size, *, keep_aspect: bool = True, fill: int = 114) -> tuple[np.ndarray, Letterbox]:
    """(network image [Hi, Wi, C], Letterbox) for ``image`` [H, W, C] or [H, W]: resized with
    bilinear interpolation (as ``cv2.dnn.blobFromImage`` and Ultralytics) and padded with ``fill`` (YOLO's grey 114)."""
    import cv2

    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"image: expected [H, W] or [H, W, C], got shape {img.shape}")
    lb = letterbox_params((img.shape[1], img.shape[0]), input_size, keep_aspect=keep_aspect)
    resized = cv2.resize(img, lb.resized_size, interpolation=cv2.INTER_LINEAR)
    Wi, Hi = lb.input_size
    out = np.full((Hi, Wi) + img.shape[2:], fill, dtype=img.dtype)
    l, t = lb.pad
    out[t:t + lb.resized_size[1], l:l + lb.resized_size[0]] = resized.reshape(
        (lb.resized_size[1], lb.resized_size[0]) + img.shape[2:])
    return out, lb


def _as_boxes(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes: expected [N, 4] (x1, y1, x2, y2), got {b.shape}")
    return b


def letterbox_boxes(boxes, lb: Letterbox) -> np.ndarray:
    """Boxes [N, 4] xyxy from image pixels to network-input pixels."""
    b = _as_boxes(boxes)
    s = np.array([lb.scale[0], lb.scale[1]] * 2)
    p = np.array([lb.pad[0], lb.pad[1]] * 2, dtype=np.float64)
    return (b + 0.5) * s + p - 0.5


def unletterbox_boxes(boxes, lb: Letterbox, *, clip: bool = True) -> np.ndarray:
    """Boxes [N, 4] xyxy from network-input pixels back to image pixels (the inverse of
    ``letterbox_boxes``), clipped to the image edges (-0.5 .. W - 0.5) when ``clip``."""
    b = _as_boxes(boxes)
    s = np.array([lb.scale[0], lb.scale[1]] * 2)
    p = np.array([lb.pad[0], lb.pad[1]] * 2, dtype=np.float64)
    out = (b + 0.5 - p) / s - 0.5
    if clip:
        W, H = lb.image_size
        out = np.clip(out, -0.5, np.array([W, H, W, H], dtype=np.float64) - 0.5)
    return out
