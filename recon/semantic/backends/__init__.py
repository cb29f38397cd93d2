"""2D backends behind the ``DetectionBackend`` / ``SegmentationBackend`` Protocols. Each module
imports its framework lazily (inside the class), so importing this package is light.

- ``opencv_dnn.OpenCVDetector``: Darknet / ONNX YOLO-family detectors through ``cv2.dnn``;
- ``hf.HFBackend``: Hugging Face transformers detectors and segmenters;
- ``masks.MaskFolder``: folders of class / instance PNGs; ``masks.ground_truth_masks``: a
  ``recon.synth`` dataset's true maps.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BACKENDS", "make_backend"]

BACKENDS = ("gt", "masks", "darknet", "onnx", "hf")


def make_backend(kind: str, *, model=None, masks=None, instances=None, dataset=None, names=None,
                 score_threshold: float | None = None, nms_threshold: float = 0.45,
                 input_size: tuple[int, int] | None = None, text_queries: list[str] | None = None,
                 void: int | None = 0):
    """The backend ``kind`` (one of ``BACKENDS``) configured from CLI-style options; errors name
    the option that is missing or wrong."""
    if kind not in BACKENDS:
        raise ValueError(f"--backend: expected one of {', '.join(BACKENDS)}, got {kind!r}")
    if kind == "gt":
        from recon.semantic.backends.masks import ground_truth_masks

        if dataset is None:
            raise ValueError("--backend gt: no recon.synth dataset found for this scene (pass it with --masks)")
        return ground_truth_masks(dataset)
    if kind == "masks":
        from recon.semantic.backends.masks import MaskFolder

        if masks is None and instances is None:
            raise ValueError("--backend masks: give --masks DIR (class PNGs) and/or --instances DIR")
        return MaskFolder(masks, instances, void=void, names=names)
    if model is None:
        raise ValueError(f"--backend {kind}: --model PATH is required")
    if kind in ("darknet", "onnx"):
        from recon.semantic.backends.opencv_dnn import OpenCVDetector, read_names

        m = Path(model)
        want = ".cfg" if kind == "darknet" else ".onnx"
        if m.suffix.lower() != want:
            raise ValueError(f"--model: {m} is not a {want} file (--backend {kind} needs one"
                             f"{'; the .weights and .names go beside it' if kind == 'darknet' else ''})")
        if isinstance(names, (str, Path)):
            names = read_names(names)
        return OpenCVDetector(m, names=names, input_size=input_size,
                              score_threshold=0.25 if score_threshold is None else score_threshold,
                              nms_threshold=nms_threshold)
    from recon.semantic.backends.hf import HFBackend

    return HFBackend(model, score_threshold=0.5 if score_threshold is None else score_threshold,
                     text_queries=text_queries)
