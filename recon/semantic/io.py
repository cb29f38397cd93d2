"""Files of the semantic stage: COCO-style detection results, annotated images, labelled PLYs
(points and 3DGS splats), the class table, and the per-object filter used for export.

Pixel convention at this edge: our boxes have pixel (0, 0) at the centre of the top-left pixel;
COCO's ``bbox`` [x, y, w, h] has its origin at the top-left CORNER of the image, so
``x_coco = x1 + 0.5`` (the same 0.5 shift as ``recon.io.colmap.PIXEL_SHIFT``).

Labelled PLY vertex properties: ``class_id`` (int, -1 = unlabelled / ambiguous),
``instance_id`` (int, -1 = none), ``confidence`` (float, winning share of the class vote), the
names ``recon.synth`` (gt_points.ply), ``recon.io.detect`` and ``recon view`` use.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from recon.errors import FormatError
from recon.io.colmap import PIXEL_SHIFT
from recon.semantic.types import Detections

__all__ = [
    "class_table",
    "coco_results",
    "detections_from_coco",
    "draw_detections",
    "read_class_table",
    "read_label_names",
    "read_names_json",
    "select_labels",
    "write_class_table",
    "write_coco_results",
]


def coco_results(file_name: str, det: Detections) -> list[dict]:
    """One COCO results entry per detection: {file_name, category_id, category_name,
    bbox [x, y, w, h] (pixels, origin at the image corner), score}."""
    out = []
    for b, s, c, n in zip(det.boxes, det.scores, det.classes, det.class_names()):
        x1, y1 = b[0] + PIXEL_SHIFT, b[1] + PIXEL_SHIFT
        out.append(
            {
                "file_name": file_name,
                "category_id": int(c),
                "category_name": n,
                "bbox": [
                    round(float(x1), 2),
                    round(float(y1), 2),
                    round(float(b[2] - b[0]), 2),
                    round(float(b[3] - b[1]), 2),
                ],
                "score": round(float(s), 5),
            }
        )
    return out


def detections_from_coco(
    entries: list[dict], file_name: str, names: dict[int, str] | None = None
) -> Detections:
    """The Detections of ``file_name`` in a COCO results list (the inverse of ``coco_results``)."""
    rows = [e for e in entries if e.get("file_name") == file_name]
    b = np.array([e["bbox"] for e in rows], dtype=np.float64).reshape(-1, 4)
    boxes = np.concatenate([b[:, :2] - PIXEL_SHIFT, b[:, :2] - PIXEL_SHIFT + b[:, 2:]], axis=1)
    nm = dict(names or {})
    nm.update({int(e["category_id"]): str(e.get("category_name", e["category_id"])) for e in rows})
    return Detections(boxes, [e["score"] for e in rows], [e["category_id"] for e in rows], nm)


def write_coco_results(path, entries: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1))
    return path


def draw_detections(image: np.ndarray, det: Detections, colours=None) -> np.ndarray:
    """A copy of RGB ``image`` [H, W, 3] with each detection's box and "name score" drawn in
    ``colours`` [N, 3] uint8 (default one colour; the CLI passes ``viewer``'s label palette)."""
    import cv2

    out = np.ascontiguousarray(np.asarray(image, dtype=np.uint8).copy())
    cols = np.broadcast_to(
        np.asarray((255, 200, 0) if colours is None else colours, np.uint8), (len(det), 3)
    )
    thick = max(1, round(min(out.shape[:2]) / 300))
    for b, s, name, col in zip(det.boxes, det.scores, det.class_names(), cols):
        c = tuple(int(v) for v in col)
        p1 = (round(b[0] + 0.5), round(b[1] + 0.5))
        p2 = (round(b[2] - 0.5), round(b[3] - 0.5))
        cv2.rectangle(out, p1, p2, c, thick)
        text = f"{name} {s:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, 1)
        y = max(p1[1], th + base)
        cv2.rectangle(out, (p1[0], y - th - base), (p1[0] + tw, y), c, -1)
        cv2.putText(
            out,
            text,
            (p1[0], y - base),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thick,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return out


# ---------------------------------------------------------------------------------------------
# class table and per-object selection
# ---------------------------------------------------------------------------------------------


def class_table(
    class_id,
    instance_id,
    names: dict[int, str],
    instance_class: dict[int, int] | None = None,
    *,
    what: str = "points",
) -> dict:
    """The class table of a labelling: {"version", "what", "classes": {id: {name, count}},
    "instances": {id: {class_id, class_name, count}}, "unlabelled", "total"} (JSON keys are
    strings). Every named class is listed, counts 0 included."""
    cid = np.asarray(class_id, dtype=np.int64).reshape(-1)
    iid = np.asarray(instance_id, dtype=np.int64).reshape(-1)
    classes = {}
    ids, counts = np.unique(cid[cid >= 0], return_counts=True)
    cnt = dict(zip(ids.tolist(), counts.tolist()))
    for k in sorted(set(names) | set(cnt)):
        classes[str(k)] = {"name": names.get(k, str(k)), "count": int(cnt.get(k, 0))}
    instances = {}
    ids, counts = np.unique(iid[iid >= 0], return_counts=True)
    for k, n in zip(ids.tolist(), counts.tolist()):
        c = (instance_class or {}).get(k)
        instances[str(k)] = {
            "class_id": c,
            "class_name": names.get(c, str(c)) if c is not None else None,
            "count": int(n),
        }
    return {
        "version": 1,
        "what": what,
        "classes": classes,
        "instances": instances,
        "unlabelled": int((cid < 0).sum()),
        "total": int(cid.size),
    }


def write_class_table(path, table: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1))
    return path


def read_class_table(path) -> dict:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FormatError(path, f"cannot read the class table ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("classes"), dict):
        raise FormatError(path, 'not a class table (expected a "classes" object)')
    return doc


def read_names_json(path) -> dict[int, str]:
    """Class names from JSON: {"id": "name"}, {"id": {"name": ...}}, ["name0", ...], or a class
    table (its "classes"). FormatError naming the file otherwise."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FormatError(path, f"cannot read class names ({e})") from None
    if isinstance(doc, dict) and "classes" in doc and isinstance(doc["classes"], (dict, list)):
        doc = doc["classes"]
    if isinstance(doc, list):
        return {i: str(n) for i, n in enumerate(doc)}
    if isinstance(doc, dict):
        try:
            return {int(k): (v["name"] if isinstance(v, dict) else str(v)) for k, v in doc.items()}
        except (ValueError, KeyError, TypeError):
            pass
    raise FormatError(
        path, 'expected class names as {"id": "name", ...} or ["name0", "name1", ...]'
    )


def read_label_names(ply_path) -> dict[int, str]:
    """Class names of a labelled PLY written by ``recon label``: ``<stem>.classes.json`` or
    ``classes.json`` beside it, else the ``class_table.json`` beside it; {} when none exists.
    (For ``recon export --class NAME``, with :func:`select_labels`.)"""
    p = Path(ply_path)
    for cand in (
        p.with_suffix(".classes.json"),
        p.parent / "classes.json",
        p.parent / "class_table.json",
    ):
        if cand.is_file():
            return read_names_json(cand)
    return {}


def select_labels(
    class_id,
    instance_id=None,
    *,
    classes=None,
    instance: int | None = None,
    names: dict[int, str] | None = None,
) -> np.ndarray:
    """Boolean [N] mask of the points / splats to keep for a per-object export: those whose
    ``class_id`` is in ``classes`` (ids or names, names looked up in ``names``) and, with
    ``instance``, whose ``instance_id`` equals it. Unknown names or an instance that no point has
    raise ValueError naming the option."""
    cid = np.asarray(class_id, dtype=np.int64).reshape(-1)
    keep = np.ones(cid.size, dtype=bool)
    if classes is not None:
        if isinstance(classes, (str, int, np.integer)):
            classes = [classes]
        by_name = {v: k for k, v in (names or {}).items()}
        want = []
        for c in classes:
            if isinstance(c, str) and not c.lstrip("-").isdigit():
                if c not in by_name:
                    raise ValueError(
                        f"--class: unknown class {c!r} (known: {', '.join(sorted(by_name)) or 'none'})"
                    )
                want.append(by_name[c])
            else:
                want.append(int(c))
        keep &= np.isin(cid, want)
    if instance is not None:
        if instance_id is None:
            raise ValueError("--instance: this file has no instance_id per point")
        iid = np.asarray(instance_id, dtype=np.int64).reshape(-1)
        if not np.any(iid == int(instance)):
            present = np.unique(iid[iid >= 0])
            raise ValueError(
                f"--instance: no point has instance {instance} (instances: "
                f"{present.min() if present.size else '-'}..{present.max() if present.size else '-'})"
            )
        keep &= iid == int(instance)
    return keep
