"""Image limits as a policy (recon.io.images.open_image): a header-declared size past the pixel
limit is refused before any pixel is allocated, with one line naming the file; ``recon info``
exits 2 on it; ``recon sfm`` skips unreadable and over-limit images with the reason in
report.json and registers the rest."""

from __future__ import annotations

import json
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from recon.cli import main
from recon.errors import FormatError
from recon.io.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageTooLarge,
    check_image,
    image_size,
    max_image_pixels,
    read_image,
    set_max_image_pixels,
    write_image,
)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR declares ``width`` x ``height`` RGB pixels, with a token IDAT: a
    decompression bomb's header (the file is ~70 bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture
def default_limit():
    old = set_max_image_pixels(None)
    yield
    set_max_image_pixels(old)


def test_header_past_the_limit_is_refused_before_decoding(tmp_path, default_limit):
    big = png_header_only(tmp_path / "bomb.png", 100_000, 100_000)  # 10^10 pixels
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 400_000_000
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for fn in (image_size, read_image, check_image):
        with pytest.raises(ImageTooLarge, match=r"bomb\.png: 100000x100000 = 10000 MP is over the 400 MP"):
            fn(big)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 100_000  # KiB: none of 30 GB
    # a real 200 MP header is under the default limit (its size reads from the header alone)
    assert image_size(png_header_only(tmp_path / "pano.png", 20_000, 10_000)) == (20_000, 10_000)
    # the limit is an option: 0 = none, N pixels otherwise
    ok = write_image(tmp_path / "ok.png", np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(ImageTooLarge, match="ok.png: 50x40"):
        read_image(ok, max_pixels=1999)
    assert read_image(ok, max_pixels=2000).shape == (40, 50, 3)
    set_max_image_pixels(0)
    assert image_size(big) == (100_000, 100_000)
    with pytest.raises(ValueError, match="max_image_pixels"):
        set_max_image_pixels(-1)


def test_zero_byte_and_truncated_files_name_the_file(tmp_path, default_limit):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    good = write_image(tmp_path / "good.jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:300])
    for p in (empty, cut):
        with pytest.raises(FormatError, match=p.name):
            check_image(p)
        with pytest.raises(FormatError, match=p.name):
            read_image(p)


def test_recon_info_on_the_bomb_is_one_line_exit_2(tmp_path, capsys, default_limit):
    big = png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    assert main(["info", str(big)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bomb.png" in err and "over the 400 MP image limit" in err
    assert main(["info", str(big), "--max-image-pixels", "-5"]) == 2
    assert "--max-image-pixels" in capsys.readouterr().err


def _orbit(tmp_path: Path, n: int) -> Path:
    from recon import synth

    scene = synth.make_scene(seed=0)
    cam = synth.make_camera("SIMPLE_RADIAL", 320, 240, fov_deg=60)
    opts = synth.DatasetOptions(progress=False, write_normals=False, write_labels=False)
    ds = synth.write_dataset(tmp_path / "orbit", scene, cam, synth.orbit(n, radius=3.2), options=opts)
    return Path(ds.image_paths[0]).parent


def test_collect_images_records_why_each_file_is_skipped(tmp_path, default_limit):
    from recon.sfm.inputs import collect_images

    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        write_image(d / f"p{i}.jpg", rng.integers(0, 255, (48, 64, 3), np.uint8))
    png_header_only(d / "bomb.png", 100_000, 100_000)
    (d / "empty.jpg").write_bytes(b"")
    s = collect_images(d, progress=False)
    assert s.names == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert set(s.rejected) == {"bomb.png", "empty.jpg"}
    assert "over the 400 MP image limit" in s.rejected["bomb.png"]
    assert "empty.jpg" not in s.rejected["empty.jpg"] and s.rejected["empty.jpg"]  # reason, not a path


@pytest.mark.slow
def test_recon_sfm_skips_the_bomb_and_the_empty_jpeg(tmp_path, default_limit):
    images = _orbit(tmp_path, 12)
    png_header_only(images / "bomb.png", 100_000, 100_000)
    (images / "empty.jpg").write_bytes(b"")
    out = tmp_path / "sfm"
    assert main(["sfm", str(images), "-o", str(out), "-q"]) == 0
    rep = json.loads((out / "report.json").read_text())
    good = sorted(p.name for p in images.iterdir() if p.name not in ("bomb.png", "empty.jpg"))
    assert rep["images_registered"] == len(good) == 12
    assert "image limit" in rep["reasons"]["bomb.png"]
    assert "empty.jpg" in rep["reasons"]


@pytest.mark.slow
def test_recon_sfm_reads_a_192_mp_jpeg_downscaled(tmp_path, default_limit):
    """A 16000x12000 JPEG among normal photos: under the limit, so SfM reads it (pycolmap
    downscales it to max_image_size on read); never a traceback."""
    import cv2

    images = _orbit(tmp_path, 12)
    src = cv2.imread(str(sorted(images.glob("*.png"))[5] if list(images.glob("*.png"))
                         else sorted(images.iterdir())[5]))
    big = cv2.resize(src, (16000, 12000), interpolation=cv2.INTER_LINEAR)
    assert cv2.imwrite(str(images / "zz_big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del big
    out = tmp_path / "sfm"
    assert main(["sfm", str(images), "-o", str(out), "-q"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["images_registered"] >= 12
    assert "zz_big.jpg" not in rep.get("reasons", {}) or "limit" not in rep["reasons"]["zz_big.jpg"]
