"""Images: EXIF orientation (all 8 tags), explicit channel modes, 8/16-bit, EXIF focal length
(generated EXIF and the real sceaux-castle photos against K.txt), and FormatErrors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from recon import FormatError
from recon.io import exif_focal_px, guess_camera, image_size, read_image, write_image
from recon.io.images import SENSOR_WIDTH_MM, list_images

# Where a marker at the STORED top-left pixel appears once displayed, per EXIF orientation
# (EXIF 2.3 / TIFF 6.0 tag 274: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 CW,
# 7 transverse, 8 rotate 90 CCW).
CORNER_AFTER = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}


def _exif(orientation=None, focal=None, f35=None, fp_xres=None, fp_unit=None, make=None, model=None,
          exif_w=None):
    ex = PILImage.Exif()
    if orientation is not None:
        ex[0x0112] = orientation
    if make:
        ex[0x010F] = make
    if model:
        ex[0x0110] = model
    sub = ex.get_ifd(0x8769)
    for tag, v in ((0x920A, focal), (0xA405, f35), (0xA20E, fp_xres), (0xA210, fp_unit), (0xA002, exif_w)):
        if v is not None:
            sub[tag] = v
    return ex


def _corner(a: np.ndarray) -> str:
    h, w = a.shape[:2]
    corners = {"tl": a[0, 0], "tr": a[0, w - 1], "bl": a[h - 1, 0], "br": a[h - 1, w - 1]}
    return max(corners, key=lambda k: int(np.asarray(corners[k]).sum()))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_exif_orientation_applied(tmp_path, orientation, ext):
    stored = np.zeros((30, 40, 3), dtype=np.uint8)  # stored W=40, H=30
    stored[:8, :8] = 255  # marker at the stored top-left corner
    path = tmp_path / f"o{orientation}{ext}"
    PILImage.fromarray(stored).save(path, exif=_exif(orientation))
    img = read_image(path)
    swapped = orientation >= 5
    assert img.shape == ((40, 30, 3) if swapped else (30, 40, 3))
    assert image_size(path) == ((30, 40) if swapped else (40, 30))  # (width, height) as displayed
    assert _corner(img) == CORNER_AFTER[orientation]
    # "unchanged" keeps channels, still orients
    assert read_image(path, mode="unchanged").shape == img.shape


def test_channel_modes(tmp_path, rng):
    rgba = rng.integers(0, 256, size=(12, 10, 4), dtype=np.uint8)
    write_image(tmp_path / "a.png", rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png", mode="unchanged"), rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgba[..., :3])  # alpha dropped
    gray = read_image(tmp_path / "a.png", mode="gray")
    ref = np.asarray(PILImage.fromarray(rgba[..., :3]).convert("L")).astype(int)
    assert gray.shape == (12, 10) and gray.dtype == np.uint8
    assert np.abs(gray.astype(int) - ref).max() <= 1

    g = rng.integers(0, 256, size=(12, 10), dtype=np.uint8)
    write_image(tmp_path / "g.png", g)
    rgb = read_image(tmp_path / "g.png")
    assert rgb.shape == (12, 10, 3) and all(np.array_equal(rgb[..., c], g) for c in range(3))
    np.testing.assert_array_equal(read_image(tmp_path / "g.png", mode="gray"), g)
    with pytest.raises(ValueError, match="mode"):
        read_image(tmp_path / "g.png", mode="bgr")


def test_16bit(tmp_path, rng):
    g16 = rng.integers(0, 65536, size=(9, 11), dtype=np.uint16)
    write_image(tmp_path / "g16.png", g16)
    back = read_image(tmp_path / "g16.png", mode="unchanged")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, g16)
    c16 = rng.integers(0, 65536, size=(9, 11, 3), dtype=np.uint16)
    write_image(tmp_path / "c16.png", c16)
    back = read_image(tmp_path / "c16.png")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, c16)  # RGB order kept (OpenCV's BGR converted both ways)
    gray = read_image(tmp_path / "c16.png", mode="gray")
    assert gray.dtype == np.uint16 and gray.shape == (9, 11)
    with pytest.raises(ValueError, match="16-bit"):
        write_image(tmp_path / "c16.jpg", c16)
    with pytest.raises(TypeError, match="uint8 or uint16"):
        write_image(tmp_path / "f.png", c16.astype(np.float32))


def test_bad_files(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_bytes(b"this is not an image")
    with pytest.raises(FormatError, match="x.jpg"):
        read_image(p)
    write_image(tmp_path / "t.jpg", np.full((64, 64, 3), 100, np.uint8))
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"t\.jpg.*(truncated|corrupt)"):
        read_image(tmp_path / "t.jpg")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


def test_exif_focal_generated(tmp_path):
    img = PILImage.fromarray(np.zeros((300, 400, 3), np.uint8))  # long side 400 px
    p = tmp_path / "e.jpg"
    # 35 mm equivalent only: f_px = f35 / 36 * long side
    img.save(p, exif=_exif(f35=28))
    assert exif_focal_px(p) == pytest.approx(28 / 36 * 400)
    # focal + focal-plane resolution (pixels per cm) of a sensor imaged at full resolution
    img.save(p, exif=_exif(focal=4.5, fp_xres=1000.0, fp_unit=3, exif_w=400))
    assert exif_focal_px(p) == pytest.approx(4.5 * 100.0)
    # ... and after the file was downscaled by 2 (EXIF still says 800 px wide)
    img.save(p, exif=_exif(focal=4.5, fp_xres=1000.0, fp_unit=3, exif_w=800))
    assert exif_focal_px(p) == pytest.approx(4.5 * 100.0 / 2)
    # sensor table wins over the 35 mm equivalent
    img.save(p, exif=_exif(focal=8.0, f35=50, make="Acme", model="Cam One"))
    assert exif_focal_px(p, sensor_widths={"acme cam one": 6.4}) == pytest.approx(8.0 / 6.4 * 400)
    # nothing usable
    img.save(p, exif=_exif(orientation=1))
    assert exif_focal_px(p) is None
    img.save(tmp_path / "plain.png")
    assert exif_focal_px(tmp_path / "plain.png") is None


def test_exif_focal_sceaux_castle(shared_data):
    """Real photos (Kodak Z612, FocalLength 5.85 mm, FocalLengthIn35mmFilm 35): the EXIF guess
    against the reference K.txt (f = 2905.88 px)."""
    folder = shared_data / "sceaux-castle"
    K = np.loadtxt(folder / "K.txt")
    photos = list_images(folder)
    assert len(photos) == 11
    for p in photos[:3]:
        f_table = exif_focal_px(p)  # focal length + sensor width 5.75 mm from the table
        f_35 = exif_focal_px(p, sensor_widths={})  # 35 mm-equivalent route only
        assert abs(f_table / K[0, 0] - 1) < 0.01  # 2881.3 px: -0.85 %
        assert abs(f_35 / K[0, 0] - 1) < 0.06  # 2753.3 px: -5.3 %
        assert image_size(p) == (2832, 2128)
    assert "kodak z612" in SENSOR_WIDTH_MM
    # the initial camera: principal point at the image centre, which K.txt's (1416, 1064) in
    # the corner convention is exactly, in ours (1415.5, 1063.5)
    cam, from_exif = guess_camera(photos[0])
    assert from_exif and cam.model == "SIMPLE_RADIAL" and cam.size == (2832, 2128)
    np.testing.assert_array_equal(cam.principal_point, [K[0, 2] - 0.5, K[1, 2] - 0.5])
    assert cam.params[0] == exif_focal_px(photos[0]) and cam.params[3] == 0.0


def test_guess_camera_fallback_and_orientation(tmp_path):
    p = tmp_path / "r.jpg"
    PILImage.fromarray(np.zeros((30, 40, 3), np.uint8)).save(p, exif=_exif(orientation=6))
    cam, from_exif = guess_camera(p, model="PINHOLE")
    assert not from_exif and cam.size == (30, 40)  # displayed size (rotated)
    np.testing.assert_array_equal(cam.params, [48.0, 48.0, 14.5, 19.5])
    with pytest.raises(ValueError, match="model"):
        guess_camera(p, model="FOV")


def test_guess_camera_from_a_size_or_a_given_focal(tmp_path):
    """One guess_camera: a (width, height) size (no EXIF) or a file, with an optional focal."""
    cam, from_exif = guess_camera((640, 480), model="SIMPLE_PINHOLE")
    assert not from_exif and cam.size == (640, 480)
    np.testing.assert_array_equal(cam.params, [768.0, 319.5, 239.5])
    cam, _ = guess_camera((640, 480), model="SIMPLE_PINHOLE", focal_px=500)
    np.testing.assert_array_equal(cam.params, [500.0, 319.5, 239.5])
    p = tmp_path / "r.jpg"
    PILImage.fromarray(np.zeros((30, 40, 3), np.uint8)).save(p, exif=_exif(orientation=6))
    cam, from_exif = guess_camera(p, model="SIMPLE_PINHOLE", focal_px=25.0)
    assert not from_exif and cam.params[0] == 25.0 and cam.size == (30, 40)
    for bad, name in (({"image": (640,)}, "image"), ({"image": (640, 480), "focal_px": -1.0}, "focal_px")):
        with pytest.raises(ValueError, match=name):
            guess_camera(bad.pop("image"), **bad)


def test_read_real_photo(shared_data):
    p = shared_data / "sceaux-castle" / "100_7100.JPG"
    img = read_image(p)
    assert img.shape == (2128, 2832, 3) and img.dtype == np.uint8
