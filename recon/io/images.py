"""Images: read/write with explicit channel handling, EXIF orientation and EXIF focal length.

- :func:`read_image` applies the EXIF orientation tag (so pixels are as a viewer shows them),
  keeps the bit depth (uint8 or uint16) and converts channels only as ``mode`` says:
  ``"rgb"`` -> [H, W, 3] (alpha dropped, gray expanded), ``"gray"`` -> [H, W] (ITU-R 601-2
  luma, as Pillow), ``"unchanged"`` -> [H, W] / [H, W, 3] / [H, W, 4] as stored.
- :func:`exif_focal_px` turns EXIF into an initial focal length guess in pixels.
- :func:`image_size` gives (width, height) after orientation without decoding pixels.
- :func:`open_image` is the one place an image file is opened (every reader here, the SfM input
  check, ``recon info``, the viewer): it reads the header only and refuses a file whose
  width x height exceeds the pixel limit with a one-line :class:`ImageTooLarge` naming the file,
  before any pixel is allocated. The limit (:data:`DEFAULT_MAX_IMAGE_PIXELS`, 400 MP) is sized
  for real 100-300 MP medium-format, aerial and panorama photos (SfM reads them downscaled); a
  verb's ``--max-image-pixels N`` sets it for the process (:func:`set_max_image_pixels`), 0 turns
  it off. It replaces Pillow's decompression-bomb limit (89 MP warns, 179 MP raises).

Pillow does the work; 16-bit colour PNG/TIFF (which Pillow reduces to 8 bit) is read and written
through OpenCV, imported only in that case.
"""

from __future__ import annotations

import struct
from pathlib import Path
from struct import error as struct_error
from typing import NamedTuple

import numpy as np

from calib.calibrate_images import IMAGE_EXTENSIONS  # the one tuple (lower-case); calib is the bottom layer
from recon.errors import FormatError

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "IMAGE_EXTENSIONS", "LOSSLESS_EXTENSIONS", "CameraGuess", "ImageTooLarge",
           "check_image", "exif_focal_px", "exif_orientation", "guess_camera", "image_size", "list_images",
           "max_image_pixels", "open_image", "read_image", "resolve_image", "set_max_image_pixels", "write_image"]

DEFAULT_MAX_IMAGE_PIXELS = 400_000_000
LOSSLESS_EXTENSIONS = (".png", ".tif", ".tiff")  # 16-bit images and label masks
_max_pixels = DEFAULT_MAX_IMAGE_PIXELS


class ImageTooLarge(FormatError):
    """An image whose header declares more pixels than the limit (nothing was decoded)."""


def max_image_pixels() -> int:
    """The pixel limit in force (0: none)."""
    return _max_pixels


def set_max_image_pixels(n: int | None) -> int:
    """Set the process-wide pixel limit (``None``: the default; 0: no limit); returns the old one."""
    global _max_pixels
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise ValueError(f"max_image_pixels: expected an integer >= 0, got {n!r}")
    old, _max_pixels = _max_pixels, DEFAULT_MAX_IMAGE_PIXELS if n is None else n
    return old

_MODES = ("rgb", "gray", "unchanged")

_TAG_ORIENTATION = 0x0112
# what Pillow raises on a malformed EXIF block (bad offsets, truncated IFDs, wrong types): no EXIF
_EXIF_ERRORS = (OSError, ValueError, SyntaxError, KeyError, TypeError, IndexError, struct.error)
_TAG_MAKE = 0x010F
_TAG_MODEL = 0x0110
_IFD_EXIF = 0x8769
_TAG_FOCAL = 0x920A
_TAG_FOCAL_35 = 0xA405
_TAG_FP_XRES = 0xA20E
_TAG_FP_YRES = 0xA20F
_TAG_FP_UNIT = 0xA210
_TAG_EXIF_W = 0xA002
_TAG_EXIF_H = 0xA003
_UNIT_MM = {1: None, 2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # FocalPlaneResolutionUnit -> mm per unit

# Sensor widths (mm) of a few common cameras, keyed by lower-case "make model" substrings.
# Values from manufacturer spec sheets (the same figures as COLMAP's / openMVG's sensor
# databases). Extend as needed; unknown cameras fall back to the other EXIF routes.
SENSOR_WIDTH_MM: dict[str, float] = {
    "kodak z612": 5.75,
    "canon eos 5d mark ii": 36.0,
    "canon eos 5d mark iii": 36.0,
    "canon eos 550d": 22.3,
    "canon eos 600d": 22.3,
    "canon eos 7d": 22.3,
    "canon powershot s95": 7.44,
    "nikon d800": 35.9,
    "nikon d90": 23.6,
    "nikon d7000": 23.6,
    "sony ilce-7": 35.8,
    "sony nex-5": 23.4,
    "gopro hero4": 6.17,
    "dji fc6310": 13.2,  # Phantom 4 Pro
    "dji fc330": 6.17,  # Phantom 4
}


def open_image(path, *, max_pixels: int | None = None):
    """The ``PIL.Image`` of ``path`` with only its header read (use it in a ``with`` block).

    Args:
        max_pixels: width x height limit; None: :func:`max_image_pixels`; 0: no limit.
    Raises:
        FileNotFoundError; ImageTooLarge past the limit; FormatError (naming the file) when
        Pillow cannot identify or parse it.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    PILImage.MAX_IMAGE_PIXELS = None  # our limit below replaces Pillow's decompression-bomb check
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    limit = _max_pixels if max_pixels is None else int(max_pixels)
    try:
        im = PILImage.open(path)
    except UnidentifiedImageError:
        raise FormatError(path, "not an image Pillow can read (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct_error) as e:
        raise FormatError(path, f"cannot open image (truncated or corrupt): {e}") from None
    w, h = im.size
    if limit and w * h > limit:
        im.close()
        raise ImageTooLarge(path, f"{w}x{h} = {w * h / 1e6:.0f} MP is over the {limit / 1e6:.0f} MP "
                                  "image limit (raise it with --max-image-pixels N; 0 = no limit)")
    return im


_open = open_image


def check_image(path, *, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) as stored, after decoding the whole file at reduced resolution where the
    codec allows (JPEG 1/8), so truncated or corrupt files fail here. Raises as
    :func:`open_image`, and FormatError when the pixels cannot be decoded."""
    with open_image(path, max_pixels=max_pixels) as im:
        size = im.size
        try:
            im.draft("L", (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError, struct_error, MemoryError) as e:
            raise FormatError(path, f"cannot decode image (truncated or corrupt): "
                                    f"{type(e).__name__}: {e}") from None
    return size


def exif_orientation(path) -> int:
    """EXIF orientation tag (1..8; 1 = as stored) or 1 when absent."""
    with _open(path) as im:
        try:
            o = int(im.getexif().get(_TAG_ORIENTATION, 1))
        except _EXIF_ERRORS:
            return 1
    return o if 1 <= o <= 8 else 1


def image_size(path) -> tuple[int, int]:
    """(width, height) as displayed, i.e. after the EXIF orientation (5..8 swap the axes)."""
    with _open(path) as im:
        w, h = im.size
        try:
            o = int(im.getexif().get(_TAG_ORIENTATION, 1))
        except _EXIF_ERRORS:
            o = 1
    return (h, w) if o in (5, 6, 7, 8) else (w, h)


def _png_is_16bit_color(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24] == 16 and head[25] in (2, 6)  # bit depth 16, truecolour (+alpha)
    return False


def _tiff_is_16bit_color(im) -> bool:
    bps = getattr(im, "tag_v2", {}).get(258) if hasattr(im, "tag_v2") else None
    if bps is None:
        return False
    bps = bps if isinstance(bps, tuple) else (bps,)
    return len(bps) >= 3 and all(b == 16 for b in bps)


def read_image(path, *, mode: str = "rgb", max_pixels: int | None = None) -> np.ndarray:
    """Read an image as a NumPy array, EXIF orientation applied.

    Args:
        path: image file (JPEG, PNG, TIFF, BMP, WebP, PPM/PGM).
        mode: ``"rgb"`` [H, W, 3] (drops alpha, expands gray), ``"gray"`` [H, W],
            ``"unchanged"`` (channels as stored: [H, W], [H, W, 3] or [H, W, 4]).
        max_pixels: the pixel limit (None: :func:`max_image_pixels`; 0: none), see
            :func:`open_image`.
    Returns:
        uint8 for 8-bit files, uint16 for 16-bit files (never rescaled); float32 for float TIFFs.
    """
    if mode not in _MODES:
        raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")
    path = Path(path)
    from PIL import ImageOps

    with open_image(path, max_pixels=max_pixels) as im:
        if _png_is_16bit_color(path) or (im.format == "TIFF" and _tiff_is_16bit_color(im)):
            orientation = 1
            try:
                orientation = int(im.getexif().get(_TAG_ORIENTATION, 1))
            except _EXIF_ERRORS:
                pass
            arr = _read_16bit_color_cv2(path)
            arr = _apply_orientation(arr, orientation)
        else:
            try:
                im.load()
                im = ImageOps.exif_transpose(im)
            except (OSError, SyntaxError, ValueError, EOFError, struct_error) as e:
                raise FormatError(path, f"cannot decode image (truncated or corrupt): {e}") from None
            arr = _pil_to_array(path, im)
    return _convert_channels(arr, mode)


def _pil_to_array(path: Path, im) -> np.ndarray:
    m = im.mode
    if m in ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "PA"):
        if m == "1":
            im = im.convert("L")
        elif m in ("P", "PA"):
            im = im.convert("RGBA" if "transparency" in im.info or m == "PA" else "RGB")
        elif m in ("CMYK", "YCbCr"):
            im = im.convert("RGB")
        return np.asarray(im).copy()
    if m in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)
    if m == "I":
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise FormatError(path, f"32-bit integer image with values in [{a.min()}, {a.max()}]: not "
                                    "representable as uint16")
        return a.astype(np.uint16)
    if m == "F":
        return np.asarray(im, dtype=np.float32).copy()
    raise FormatError(path, f"unsupported Pillow image mode {m!r}")


def _read_16bit_color_cv2(path: Path) -> np.ndarray:
    import cv2

    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise FormatError(path, "cannot decode 16-bit colour image")
    if a.ndim == 3 and a.shape[2] == 3:
        a = a[..., ::-1]
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(a)


def _apply_orientation(a: np.ndarray, o: int) -> np.ndarray:
    """EXIF orientation (TIFF 6.0 tag 274) -> upright array, like ImageOps.exif_transpose."""
    if o == 2:
        a = a[:, ::-1]
    elif o == 3:
        a = a[::-1, ::-1]
    elif o == 4:
        a = a[::-1]
    elif o == 5:
        a = np.swapaxes(a, 0, 1)
    elif o == 6:
        a = np.swapaxes(a, 0, 1)[:, ::-1]
    elif o == 7:
        a = np.swapaxes(a, 0, 1)[::-1, ::-1]
    elif o == 8:
        a = np.swapaxes(a, 0, 1)[::-1]
    return np.ascontiguousarray(a)


def _convert_channels(a: np.ndarray, mode: str) -> np.ndarray:
    if mode == "unchanged":
        return a
    c = 1 if a.ndim == 2 else a.shape[2]
    if mode == "rgb":
        if c == 1:
            g = a if a.ndim == 2 else a[..., 0]
            return np.repeat(g[..., None], 3, axis=2)
        if c == 2:  # gray + alpha
            return np.repeat(a[..., :1], 3, axis=2)
        return np.ascontiguousarray(a[..., :3])
    # gray
    if c == 1:
        return a if a.ndim == 2 else a[..., 0]
    if c == 2:
        return np.ascontiguousarray(a[..., 0])
    rgb = a[..., :3].astype(np.float64)
    y = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    if a.dtype.kind in "ui":
        return np.clip(np.round(y), 0, np.iinfo(a.dtype).max).astype(a.dtype)
    return y.astype(a.dtype)


def write_image(path, image: np.ndarray, *, quality: int = 95) -> Path:
    """Write an array as an image file; the format follows the extension.

    Args:
        image: [H, W] gray, [H, W, 3] RGB or [H, W, 4] RGBA; uint8, or uint16 (PNG / TIFF only).
        quality: JPEG / WebP quality.
    """
    path = Path(path)
    a = np.asarray(image)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image: expected [H, W], [H, W, 3] or [H, W, 4], got shape {a.shape}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"image: expected uint8 or uint16, got {a.dtype} (scale and convert explicitly)")
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"path: unknown image extension {ext!r} (expected one of {IMAGE_EXTENSIONS})")
    if a.dtype == np.uint16 and ext not in LOSSLESS_EXTENSIONS:
        raise ValueError(f"image: 16-bit images need .png or .tif, got {ext!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if a.dtype == np.uint16 and a.ndim == 3:
        import cv2

        bgr = a[..., ::-1] if a.shape[2] == 3 else a[..., [2, 1, 0, 3]]
        if not cv2.imwrite(str(path), np.ascontiguousarray(bgr)):
            raise OSError(f"{path}: OpenCV could not write the image")
        return path
    from PIL import Image as PILImage

    im = PILImage.fromarray(np.ascontiguousarray(a))  # uint16 [H, W] -> mode "I;16"
    kw = {"quality": quality} if ext in (".jpg", ".jpeg", ".webp") else {}
    if ext in (".jpg", ".jpeg") and im.mode == "RGBA":
        raise ValueError("image: JPEG cannot store alpha; drop it (image[..., :3]) or write PNG")
    im.save(path, **kw)
    return path


def list_images(folder, *, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (``recursive``: and its sub-folders), by extension in any case
    (:data:`IMAGE_EXTENSIONS`), sorted by path. The one image lister of recon."""
    folder = Path(folder)
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def resolve_image(folder, name: str) -> Path | None:
    """The image file ``name`` names in ``folder``: ``folder/name`` when it exists, else
    ``folder/name + EXT`` for the first of :data:`IMAGE_EXTENSIONS` (lower or upper case) that
    exists (NeRF transforms.json and some COLMAP exports omit the extension); None when none."""
    p = Path(folder) / name
    if p.is_file():
        return p
    for ext in (e for x in IMAGE_EXTENSIONS for e in (x, x.upper())):
        if (q := Path(folder) / (name + ext)).is_file():
            return q
    return None


# =========================================================================================
# EXIF focal length
# =========================================================================================

def _rational(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if np.isfinite(f) and f > 0 else None


def exif_focal_px(path, *, sensor_widths: dict[str, float] | None = None) -> float | None:
    """Initial focal length guess in pixels (for the image as displayed) from EXIF, or None.

    Routes, most reliable first:
      1. ``FocalLength`` (mm) and the sensor width from :data:`SENSOR_WIDTH_MM` (matched on
         EXIF Make + Model): ``f_px = f_mm / sensor_width_mm * max(W, H)``.
      2. ``FocalLength`` and ``FocalPlaneXResolution`` / ``ResolutionUnit`` (pixels per unit on
         the sensor, for the EXIF image width; rescaled when the file was resized).
      3. ``FocalLengthIn35mmFilm``: ``f_px = f35 / 36 * max(W, H)`` (36 mm film width; the
         35 mm equivalent is defined on the diagonal, so expect a few percent error when the
         aspect ratio is not 3:2).
    Returns None when EXIF has none of these.
    """
    table = SENSOR_WIDTH_MM if sensor_widths is None else sensor_widths
    with _open(path) as im:
        try:
            exif = im.getexif()
            sub = exif.get_ifd(_IFD_EXIF)
        except _EXIF_ERRORS:
            return None
        w, h = im.size
        make = str(exif.get(_TAG_MAKE, "")).strip().lower()
        model = str(exif.get(_TAG_MODEL, "")).strip().lower()
    focal_mm = _rational(sub.get(_TAG_FOCAL))
    long_side = max(w, h)
    if focal_mm:
        ident = f"{make} {model}"
        width_mm = _sensor_lookup(ident, table)
        if width_mm:
            return focal_mm / width_mm * long_side
        xres = _rational(sub.get(_TAG_FP_XRES))
        unit_mm = _UNIT_MM.get(int(sub.get(_TAG_FP_UNIT, 2) or 2))
        if xres and unit_mm:
            px_per_mm = xres / unit_mm
            # FocalPlaneXResolution refers to the sensor's full-resolution width (stored x axis);
            # ExifImageWidth says what that width was, so a resized file is rescaled.
            exif_w = _rational(sub.get(_TAG_EXIF_W))
            exif_h = _rational(sub.get(_TAG_EXIF_H))
            if exif_w:
                px_per_mm *= w / exif_w
            elif exif_h:
                px_per_mm *= h / exif_h
            return focal_mm * px_per_mm
    f35 = _rational(sub.get(_TAG_FOCAL_35))
    if f35:
        return f35 / 36.0 * long_side
    return None


def _sensor_lookup(ident: str, table: dict[str, float]) -> float | None:
    words = ident.replace("_", " ").split()
    norm = " ".join(words)
    for key, width in table.items():
        kw = key.split()
        # all words of the key appear (make may be "eastman kodak company", model "kodak z612 zoom ...")
        if all(k in words for k in kw) or key in norm:
            return width
    return None


class CameraGuess(NamedTuple):
    camera: object  # calib.Camera
    from_exif: bool  # False: the focal length is the fallback guess


def guess_camera(image, *, model: str = "SIMPLE_RADIAL", focal_px: float | None = None,
                 fallback_focal_factor: float = 1.2, sensor_widths: dict[str, float] | None = None) -> CameraGuess:
    """An initial ``calib.Camera`` for an uncalibrated image (the one camera guess of recon).

    image: an image file (its size as displayed, and its EXIF focal length) or a (width, height)
    size in pixels (no EXIF). The focal length is ``focal_px`` when given, else the EXIF one
    (:func:`exif_focal_px`), else ``fallback_focal_factor * max(W, H)`` (COLMAP's prior);
    principal point at the image centre ((W - 1) / 2, (H - 1) / 2, our pixel-centre convention);
    zero distortion. ``from_exif`` of the result says whether EXIF gave the focal length.

    Args:
        model: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, OPENCV_FISHEYE or FULL_OPENCV.
    """
    from calib import MODELS, Camera

    if model not in MODELS or not MODELS[model].supported:
        raise ValueError(f"model: expected a supported COLMAP camera model name, got {model!r}")
    if not (np.isfinite(fallback_focal_factor) and fallback_focal_factor > 0):
        raise ValueError(f"fallback_focal_factor: expected a positive number, got {fallback_focal_factor}")
    if focal_px is not None and not (np.isfinite(focal_px) and focal_px > 0):
        raise ValueError(f"focal_px: expected a positive focal length in pixels, got {focal_px}")
    if isinstance(image, (tuple, list)):
        if len(image) != 2 or min(image) < 1:
            raise ValueError(f"image: expected a path or a (width, height) size, got {image!r}")
        (w, h), f = (int(image[0]), int(image[1])), None
    else:
        w, h = image_size(image)
        f = None if focal_px is not None else exif_focal_px(image, sensor_widths=sensor_widths)
    from_exif = f is not None
    if focal_px is not None:
        f = float(focal_px)
    if f is None:
        f = fallback_focal_factor * max(w, h)
    spec = MODELS[model]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    head = [f, cx, cy] if spec.single_focal else [f, f, cx, cy]
    return CameraGuess(Camera(model, w, h, np.array(head + [0.0] * spec.num_extra)), from_exif)
