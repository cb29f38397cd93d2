"""Label a reconstructed scene: run a 2D backend on every registered view and lift its labels onto
the SfM points (visibility by track membership) or onto splat centres (visibility by a depth
test), with :mod:`recon.semantic.lift`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.errors import FormatError
from recon.semantic.lift import (
    BACKGROUND,
    LabelOptions,
    Observations,
    PointLabels,
    label_points,
    observations_by_projection,
    observations_from_tracks,
    sample_segmentations,
)
from recon.semantic.types import Detections, Segmentation

__all__ = ["SceneLabels", "label_reconstruction", "segmentation_from_detections", "view_segmenter"]


@dataclass(eq=False)
class SceneLabels:
    """Labels of ``xyz`` [P, 3] (world): ``labels`` (class_id / instance_id / confidence per
    point), ``names`` (class id -> name), ``point_ids`` [P] (SfM point3D ids; None for splat
    centres), ``image_names`` (views in order), ``observations`` and per-view ``notes``."""

    xyz: np.ndarray
    labels: PointLabels
    names: dict[int, str]
    image_names: list[str]
    observations: Observations
    point_ids: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    views_with_labels: np.ndarray | None = None  # [V] bool: the backend gave this view labels

    def seen(self) -> np.ndarray:
        """[P] bool: points observed in at least one view that has labels (void pixels count as
        seen: a point seen only on void stays unlabelled and counts against the labelled share)."""
        o = self.observations
        has = np.ones(o.num_views, bool) if self.views_with_labels is None else self.views_with_labels
        return np.bincount(o.point[has[o.view]], minlength=o.num_points) > 0

    def summary(self) -> dict:
        lab = self.labels
        seen = self.seen()
        return {"points": len(self.xyz), "points_seen": int(seen.sum()),
                "points_labelled": lab.num_labelled,
                "labelled_fraction_of_seen": float((lab.class_id[seen] >= 0).mean()) if seen.any() else 0.0,
                "instances": int(lab.instance_id.max()) + 1 if lab.instance_id.size else 0,
                "observations": len(self.observations.point), "views": len(self.image_names)}


def segmentation_from_detections(det: Detections, size: tuple[int, int]) -> Segmentation:
    """A Segmentation of an image of ``size`` (W, H) from boxes: pixels inside a box get its class
    (confidence = its score; where boxes overlap the higher score wins) and instance id (box
    index + 1); pixels outside every box are ``BACKGROUND`` (confidence 1), so a wall point that
    one view's box covers is out-voted by the views that see it outside any box. Still coarse: a
    point always inside boxes (an object's surroundings in every view) takes the box's class."""
    W, H = size
    cls = np.full((H, W), BACKGROUND, np.int32)
    conf = np.ones((H, W), np.float32)
    ins = np.zeros((H, W), np.int32)
    for k in np.argsort(det.scores, kind="stable"):  # ascending: higher scores paint last
        x1, y1, x2, y2 = det.boxes[k]
        c0, c1 = int(np.clip(np.ceil(x1), 0, W)), int(np.clip(np.floor(x2) + 1, 0, W))
        r0, r1 = int(np.clip(np.ceil(y1), 0, H)), int(np.clip(np.floor(y2) + 1, 0, H))
        cls[r0:r1, c0:c1] = det.classes[k]
        conf[r0:r1, c0:c1] = det.scores[k]
        ins[r0:r1, c0:c1] = k + 1
    return Segmentation(cls, ins, conf, det.names)


def view_segmenter(backend, images_dir: Path | None) -> Callable[[str, tuple[int, int]], Segmentation | None]:
    """``f(image_name, (W, H)) -> Segmentation | None`` for any backend: file-based ones
    (``segment(None, name)``, e.g. MaskFolder) get no pixels; model backends get the RGB image
    read from ``images_dir`` (``segment`` or, for detectors, boxes turned into a class map)."""
    from recon.io import read_image

    file_based = hasattr(backend, "source_of")

    def run(name: str, size: tuple[int, int]) -> Segmentation | None:
        if file_based:
            seg = backend.segment(None, name)
            if seg is not None and seg.size != tuple(size):
                raise FormatError(backend.source_of(name), f"mask is {seg.size[0]}x{seg.size[1]}, but image "
                                                           f"{name} is {size[0]}x{size[1]} in the model")
            return seg
        if images_dir is None:
            raise FileNotFoundError(f"{name}: the images of this model were not found (they are needed to "
                                    "run a model backend)")
        img = read_image(Path(images_dir) / name)
        if (img.shape[1], img.shape[0]) != tuple(size):
            raise FormatError(Path(images_dir) / name, f"image is {img.shape[1]}x{img.shape[0]}, the model's "
                                                       f"camera is {size[0]}x{size[1]}")
        if hasattr(backend, "segment"):
            return backend.segment(img, name)
        return segmentation_from_detections(backend.detect(img), size)

    return run


def label_reconstruction(rec, segment: Callable[[str, tuple[int, int]], Segmentation | None], *,
                         xyz=None, names: dict[int, str] | None = None,
                         options: LabelOptions | None = None, progress: bool = False,
                         depth_cell_px: int = 4, depth_tolerance: float = 0.02) -> SceneLabels:
    """Label the 3D points of ``rec`` (a ``recon.scene.Reconstruction``) from the segmentations
    ``segment(image_name, (W, H))`` of its registered images.

    xyz None: the SfM points, seen where their tracks say. xyz [P, 3] (e.g. splat centres): those
    points, seen where they project in front of a view and pass the depth test
    (:func:`recon.semantic.lift.observations_by_projection`).
    """
    options = LabelOptions() if options is None else options
    images = sorted(rec.registered_images, key=lambda im: im.name)
    if not images:
        raise ValueError("rec: no registered images to take labels from")
    names_list = [im.name for im in images]
    cams = [rec.cameras[im.camera_id] for im in images]
    sizes = [(c.width, c.height) for c in cams]
    if xyz is None:
        point_ids, pts, obs = observations_from_tracks(rec, [im.image_id for im in images])
    else:
        pts = np.asarray(xyz, dtype=np.float64)
        point_ids = None
        obs = observations_by_projection(pts, cams, [im.cam_from_world for im in images],
                                         cell_px=depth_cell_px, depth_tolerance=depth_tolerance)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images), desc="label views", unit="view", leave=False)
    notes: list[str] = []
    table = dict(names or {})
    has_labels = np.zeros(len(images), bool)

    def seg_of(v: int):
        s = segment(names_list[v], sizes[v])
        if s is None:
            notes.append(f"{names_list[v]}: no labels for this view")
        else:
            has_labels[v] = True
            for k, n in s.names.items():
                table.setdefault(k, n)
        return s

    try:
        sampled = sample_segmentations(obs, seg_of, sizes, progress=(lambda v: bar.update(1)) if bar else None,
                                       boundary_px=options.boundary_px)
    finally:
        if bar is not None:
            bar.close()
    labels = label_points(obs, sampled, options, xyz=pts)
    return SceneLabels(pts, labels, table, names_list, obs, point_ids, notes, has_labels)
