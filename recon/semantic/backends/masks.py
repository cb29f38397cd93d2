"""User-supplied masks (any external tool's output) and the synthetic scenes' ground truth.

A mask folder holds one PNG per image, named like the image with ``.png`` (``img_001.jpg`` ->
``img_001.png``; sub-folders mirror the image names). Class PNGs: 8- or 16-bit single channel,
the pixel value IS the class id, ``void`` (default 0) = no label. Instance PNGs: the value is an
instance id local to that image (0 = none); ids need not agree between images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.errors import FormatError
from recon.io.images import LOSSLESS_EXTENSIONS
from recon.semantic.io import read_names_json
from recon.semantic.types import Segmentation

__all__ = ["MaskFolder", "ground_truth_masks", "read_label_png"]

def read_label_png(path) -> np.ndarray:
    """[H, W] integer ids of a single-channel 8/16-bit label image (FormatError otherwise)."""
    import cv2

    from recon.io.images import open_image

    path = Path(path)
    if path.is_file():
        with open_image(path):  # the pixel limit, from the header, before OpenCV decodes
            pass
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FormatError(path, "missing or not a readable image")
    if img.ndim == 3:
        if img.shape[2] in (3, 4) and np.all(img[..., :1] == img[..., 1:3]):
            img = img[..., 0]  # a grey image saved as RGB: the channels agree
        else:
            raise FormatError(path, f"expected a single-channel label image (ids as pixel values), got "
                                    f"{img.shape[2]} channels that differ")
    if img.dtype.kind not in "iu":
        raise FormatError(path, f"expected integer pixel values (8 or 16 bit), got {img.dtype}")
    return img


def _index(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such {what} folder")
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in LOSSLESS_EXTENSIONS:
            files[p.relative_to(folder).with_suffix("").as_posix()] = p
    if not files:
        raise FormatError(folder, f"empty {what} folder: no .png label images in it")
    return files


class MaskFolder:
    """Segmentations read from a folder of class PNGs and/or one of instance PNGs.

    class_dir / instance_dir: folders (at least one). void: the class value meaning "no label".
    names: class id -> name (or a JSON file with them); default a ``classes.json`` in class_dir.
    """

    def __init__(self, class_dir=None, instance_dir=None, *, void: int | None = 0,
                 names: dict[int, str] | str | Path | None = None):
        if class_dir is None and instance_dir is None:
            raise ValueError("masks: give a class mask folder, an instance mask folder or both")
        self.class_dir = Path(class_dir) if class_dir is not None else None
        self.instance_dir = Path(instance_dir) if instance_dir is not None else None
        self._class = _index(self.class_dir, "class mask") if self.class_dir else {}
        self._inst = _index(self.instance_dir, "instance mask") if self.instance_dir else {}
        self.void = void
        if isinstance(names, (str, Path)):
            names = read_names_json(names)
        elif names is None and self.class_dir is not None and (self.class_dir / "classes.json").is_file():
            names = read_names_json(self.class_dir / "classes.json")
        self.names = dict(names or {})

    def _key(self, name: str, table: dict[str, Path]) -> str | None:
        stem = Path(name).with_suffix("").as_posix()
        if stem in table:
            return stem
        base = Path(name).stem
        return base if base in table else None

    def mask_files(self) -> list[Path]:
        return list(self._class.values()) + list(self._inst.values())

    def unmatched(self, image_names) -> list[Path]:
        """Mask files that belong to none of ``image_names``."""
        keys = set()
        for n in image_names:
            keys |= {Path(n).with_suffix("").as_posix(), Path(n).stem}
        return [p for t in (self._class, self._inst) for k, p in t.items() if k not in keys]

    def source_of(self, name: str) -> str:
        """The mask file(s) used for image ``name`` (for messages)."""
        paths = [str(t[k]) for t in (self._class, self._inst) if (k := self._key(name, t)) is not None]
        return ", ".join(paths) or f"(no mask for {name})"

    def has(self, name: str) -> bool:
        return self._key(name, self._class) is not None or self._key(name, self._inst) is not None

    def segment(self, image: np.ndarray | None, name: str) -> Segmentation | None:
        """The masks of image ``name`` (None when the folders have none for it). With ``image``
        given, a mask of another size raises FormatError naming the mask file."""
        cls = ins = None
        k = self._key(name, self._class)
        if k is not None:
            cls = read_label_png(self._class[k]).astype(np.int32)
            if self.void is not None:
                cls[cls == self.void] = -1
        k2 = self._key(name, self._inst)
        if k2 is not None:
            ins = read_label_png(self._inst[k2]).astype(np.int32)
        if cls is not None and ins is not None and cls.shape != ins.shape:
            raise FormatError(self._inst[k2], f"instance mask is {ins.shape[1]}x{ins.shape[0]}, its class mask "
                                              f"{self._class[k]} is {cls.shape[1]}x{cls.shape[0]}")
        if cls is None and ins is None:
            return None
        seg = Segmentation(cls, ins, None, self.names)
        if image is not None and seg.size != (image.shape[1], image.shape[0]):
            raise FormatError(self.source_of(name), f"mask is {seg.size[0]}x{seg.size[1]}, image {name} is "
                                                    f"{image.shape[1]}x{image.shape[0]}")
        return seg


def ground_truth_masks(dataset_dir, *, instances: bool = True) -> MaskFolder:
    """The ground-truth class (and instance) maps of a ``recon.synth`` dataset folder as a
    MaskFolder, with the class names of its gt.json (class 0 = void)."""
    from recon.synth import load_dataset

    ds = load_dataset(dataset_dir)
    labels = ds.gt.get("labels") or {}
    root = Path(ds.root)
    class_dir = root / labels.get("class_dir", "labels/class")
    inst_dir = root / labels.get("instance_dir", "labels/instance")
    if not class_dir.is_dir():
        raise FormatError(root, "synthetic dataset has no labels/class folder (written with write_labels=False?)")
    void = int(labels.get("none", 0))
    return MaskFolder(class_dir, inst_dir if instances and inst_dir.is_dir() else None, void=void,
                      names={k: v for k, v in ds.class_names.items() if k != void})
