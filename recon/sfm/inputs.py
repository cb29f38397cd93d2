"""Input stage of ``recon sfm``: find images (or extract video frames), reject what cannot be
used (unreadable/corrupt files, exact duplicates) and say why, read known calibrations."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FrameExtraction",
    "ImageSet",
    "collect_images",
    "extract_video_frames",
    "sharpness",
]

from recon.io.detect import VIDEO_EXTENSIONS  # one list of extensions, in recon.io
from recon.io.images import IMAGE_EXTENSIONS, list_images


@dataclass
class ImageSet:
    """image_dir: the folder pycolmap reads; names: usable images relative to it ('/'-separated);
    sizes: (width, height) per usable name; rejected: name -> reason (not passed to SfM)."""

    image_dir: Path
    names: list[str]
    sizes: dict[str, tuple[int, int]]
    rejected: dict[str, str] = field(default_factory=dict)
    ordered: bool = False  # frames of a video (or a sequence): sequential matching applies

    @property
    def total(self) -> int:
        return len(self.names) + len(self.rejected)


@dataclass
class FrameExtraction:
    frames_total: int
    frames_kept: int
    fps: float
    step: int
    rejected_blurry: list[int]


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian (Pech-Pacheco et al. 2000): low = blurry."""
    import cv2

    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def _check_image(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """Decode fully (reduced resolution where the codec allows) to catch truncated files; the
    pixel limit of :func:`recon.io.images.open_image` applies (header read first)."""
    from recon.errors import FormatError
    from recon.io.images import ImageTooLarge, check_image

    try:
        size = check_image(path)
    except ImageTooLarge as e:
        return None, str(e).removeprefix(f"{path}: ")
    except (FormatError, OSError) as e:
        return None, f"unreadable image ({str(e).removeprefix(f'{path}: ')})"
    if size[0] < 16 or size[1] < 16:
        return None, f"too small ({size[0]}x{size[1]} pixels)"
    return size, None


def collect_images(image_dir, *, progress: bool = True) -> ImageSet:
    """All images under ``image_dir`` (recursively, sorted by name), checked one by one."""
    from tqdm import tqdm

    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise ValueError(f"images: {image_dir} is not a folder")
    files = list_images(image_dir, recursive=True)
    names, sizes, rejected, seen = [], {}, {}, {}
    for p in tqdm(files, desc="check images", unit="img", disable=not progress, leave=False):
        name = p.relative_to(image_dir).as_posix()
        size, why = _check_image(p)
        if why:
            rejected[name] = why
            continue
        digest = hashlib.sha1(p.read_bytes()).hexdigest()
        if digest in seen:
            rejected[name] = f"duplicate of {seen[digest]} (identical file)"
            continue
        seen[digest] = name
        names.append(name)
        sizes[name] = size
    return ImageSet(image_dir, names, sizes, rejected)


def extract_video_frames(video, out_dir, *, target_fps: float = 2.0, max_frames: int | None = None,
                         blur_ratio: float = 0.35, progress: bool = True) -> tuple[ImageSet, FrameExtraction]:
    """Frames of ``video`` written to ``out_dir`` as JPEG, thinned to about ``target_fps``: from
    each window of ``step = round(fps / target_fps)`` frames the sharpest one is kept
    (variance of the Laplacian on a 640-pixel-wide grey copy); a kept frame whose sharpness is
    below ``blur_ratio`` times the median of the kept frames is rejected as blurry."""
    import cv2
    from tqdm import tqdm

    video, out_dir = Path(video), Path(out_dir)
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise ValueError(f"video: cannot open {video} with OpenCV")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    step = max(1, int(round(fps / target_fps))) if target_fps > 0 else 1
    out_dir.mkdir(parents=True, exist_ok=True)
    best = []  # (sharpness, frame_index, image) per window
    cur = None
    idx = 0
    bar = tqdm(total=n or None, desc="read video", unit="frame", disable=not progress, leave=False)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        small = cv2.cvtColor(cv2.resize(frame, (640, max(1, int(frame.shape[0] * 640 / frame.shape[1])))),
                             cv2.COLOR_BGR2GRAY)
        s = sharpness(small)
        if cur is None or s > cur[0]:
            cur = (s, idx, frame)
        idx += 1
        bar.update(1)
        if idx % step == 0:
            best.append(cur)
            cur = None
            if max_frames and len(best) >= max_frames:
                break
    if cur is not None:
        best.append(cur)
    bar.close()
    cap.release()
    if not best:
        raise ValueError(f"video: no frame could be decoded from {video}")
    med = float(np.median([b[0] for b in best]))
    names, sizes, blurry = [], {}, []
    for s, fi, frame in best:
        if s < blur_ratio * med:
            blurry.append(fi)
            continue
        name = f"frame_{fi:06d}.jpg"
        cv2.imwrite(str(out_dir / name), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        names.append(name)
        sizes[name] = (frame.shape[1], frame.shape[0])
    rejected = {f"frame_{fi:06d}": "blurry (variance of Laplacian below "
                f"{blur_ratio:.2f} x median)" for fi in blurry}
    return (ImageSet(out_dir, names, sizes, rejected, ordered=True),
            FrameExtraction(idx, len(names), float(fps), step, blurry))


