"""The dataset catalog (datasets/*.toml, recon.io.catalog, `recon data`): every entry parses and
is complete; downloads check the sha256 and never leave a partial file behind; the wheel ships
the TOMLs as recon/catalog/*.toml and provides no top-level `datasets` package."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from recon.cli import main
from recon.errors import FormatError, ReconError
from recon.io import catalog

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {"mipnerf360", "tandt_db", "nerf_synthetic", "dtu_2dgs", "bal", "eth3d_lowres", "middlebury2014"}


def test_catalog_has_the_expected_datasets():
    names = {d.name for d in catalog.list_datasets()}
    assert EXPECTED <= names
    assert {p.stem for p in (ROOT / "datasets").glob("*.toml")} == names


def test_every_entry_is_complete():
    for d in catalog.list_datasets():
        assert d.url.startswith(("http://", "https://")), d.name
        assert d.sha256 == "" or len(d.sha256) == 64
        if not d.sha256:
            assert d.sha256_note, f"{d.name}: an empty sha256 needs a note saying why"
        assert d.license and d.citation.strip() and d.scenes and d.format in catalog.FORMATS
        assert d.size_mb > 0 or d.size_note, f"{d.name}: unknown size needs a note"
        if d.per_scene:
            assert d.url_for(d.scenes[0]).count("{") == 0
        if d.manual:
            assert d.manual_note


def test_datasets_folder_is_not_a_package():
    assert not (ROOT / "datasets" / "__init__.py").exists()
    assert catalog.catalog_dir().resolve() == (ROOT / "datasets").resolve()


def test_unknown_dataset_and_scene():
    with pytest.raises(ValueError, match="^name: unknown dataset 'nope'; known: .*bal"):
        catalog.get_dataset("nope")
    with pytest.raises(ValueError, match="^scene: dataset 'bal' is downloaded per scene"):
        catalog.get_dataset("bal").url_for()
    with pytest.raises(ValueError, match="^scene: 'x' is not a scene of 'middlebury2014'"):
        catalog.get_dataset("middlebury2014").url_for("x")


# ------------------------------------------------------------------------------------------
# download() against local file:// URLs
# ------------------------------------------------------------------------------------------

def _entry(name: str, url: str, sha256: str = "", **extra) -> str:
    lines = [f'name = "{name}"', f'url = "{url}"', f'sha256 = "{sha256}"', 'sha256_note = "test"',
             'license = "CC0"', 'format = "images"', 'scenes = ["a", "b"]', "size_mb = 0.001",
             'citation = "none"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def local_catalog(tmp_path, monkeypatch):
    """A catalog in a temp folder whose entries point at local files."""
    cat = tmp_path / "catalog"
    cat.mkdir()
    payload = tmp_path / "served" / "payload.bin"
    payload.parent.mkdir()
    payload.write_bytes(b"recon test payload\n" * 1000)
    good = hashlib.sha256(payload.read_bytes()).hexdigest()
    (cat / "good.toml").write_text(_entry("good", payload.as_uri(), good))
    (cat / "bad.toml").write_text(_entry("bad", payload.as_uri(), "0" * 64))
    (cat / "nosha.toml").write_text(_entry("nosha", payload.as_uri()))
    (cat / "gone.toml").write_text(_entry("gone", (tmp_path / "missing.bin").as_uri()))
    (payload.parent / "a.bin").write_bytes(b"scene a")
    (cat / "perscene.toml").write_text(_entry("perscene", payload.parent.as_uri() + "/{scene}.bin"))
    (cat / "manual.toml").write_text(_entry("manual", "https://example.org/x", manual="true",
                                            manual_note='"Use a browser."'))
    monkeypatch.setattr(catalog, "catalog_dir", lambda: cat)
    return tmp_path, good


def test_download_with_correct_sha256(local_catalog):
    tmp, good = local_catalog
    res = catalog.download("good", tmp / "out", progress=False)
    assert res.verified and res.sha256 == good
    assert res.path == tmp / "out" / "payload.bin"
    assert res.path.read_bytes() == (tmp / "served" / "payload.bin").read_bytes()
    assert not list((tmp / "out").glob("*.part"))
    # A second call finds the verified file and does not fetch it again.
    mtime = res.path.stat().st_mtime_ns
    assert catalog.download("good", tmp / "out", progress=True).path.stat().st_mtime_ns == mtime


def test_download_with_wrong_sha256_removes_the_file(local_catalog):
    tmp, good = local_catalog
    with pytest.raises(ReconError, match=f"checksum mismatch .*expected sha256 0{{64}}, got {good}"):
        catalog.download("bad", tmp / "out", progress=False)
    assert list((tmp / "out").iterdir()) == []


def test_download_without_sha256_reports_the_digest(local_catalog):
    tmp, good = local_catalog
    res = catalog.download("nosha", tmp / "out", progress=False)
    assert not res.verified and res.sha256 == good and res.path.is_file()


def test_download_failure_is_a_clear_error(local_catalog):
    tmp, _ = local_catalog
    with pytest.raises(ReconError, match="gone: could not download file://.*offline"):
        catalog.download("gone", tmp / "out", progress=False)
    assert list((tmp / "out").iterdir()) == []
    with pytest.raises(ReconError, match="manual: cannot be downloaded automatically. Use a browser."):
        catalog.download("manual", tmp / "out")
    (tmp / "afile").write_text("x")
    with pytest.raises(ValueError, match="^dest: expected a folder"):
        catalog.download("good", tmp / "afile")


def test_download_per_scene(local_catalog):
    tmp, _ = local_catalog
    res = catalog.download("perscene", tmp / "out", scene="a", progress=False)
    assert res.path.read_bytes() == b"scene a"
    with pytest.raises(ValueError, match="^scene: "):
        catalog.download("perscene", tmp / "out")


@pytest.mark.parametrize("text, message", [
    ('name = "broken"\nurl = ', "invalid TOML"),
    (_entry("broken", "https://x").replace('license = "CC0"\n', ""), "missing field.*license"),
    (_entry("broken", "https://x", sha256="abc"), "sha256 must be 64"),
    (_entry("broken", "https://x").replace('"images"', '"zip"'), "format 'zip' is not one of"),
    (_entry("broken", "https://x", colour='"red"'), "unknown field.*colour"),
    (_entry("other", "https://x"), "must equal the file name"),
])
def test_malformed_entries_name_the_file(tmp_path, monkeypatch, text, message):
    (tmp_path / "broken.toml").write_text(text)
    monkeypatch.setattr(catalog, "catalog_dir", lambda: tmp_path)
    with pytest.raises(FormatError, match=message) as e:
        catalog.get_dataset("broken")
    assert "broken.toml" in str(e.value)


# ------------------------------------------------------------------------------------------
# extract()
# ------------------------------------------------------------------------------------------

def test_extract_zip_tar_and_bz2(tmp_path):
    import bz2
    import tarfile

    src = tmp_path / "src"
    (src / "scene" / "images").mkdir(parents=True)
    (src / "scene" / "images" / "a.txt").write_text("pixel")
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
        z.write(src / "scene" / "images" / "a.txt", "scene/images/a.txt")
    assert catalog.extract(tmp_path / "d.zip", tmp_path / "z") == tmp_path / "z"
    assert (tmp_path / "z" / "scene" / "images" / "a.txt").read_text() == "pixel"
    with tarfile.open(tmp_path / "d.tar.gz", "w:gz") as t:
        t.add(src / "scene", "scene")
    catalog.extract(tmp_path / "d.tar.gz", tmp_path / "t")
    assert (tmp_path / "t" / "scene" / "images" / "a.txt").read_text() == "pixel"
    (tmp_path / "problem.txt.bz2").write_bytes(bz2.compress(b"3 2 1\n"))
    catalog.extract(tmp_path / "problem.txt.bz2", tmp_path / "b")
    assert (tmp_path / "b" / "problem.txt").read_bytes() == b"3 2 1\n"


def test_extract_refuses_unsafe_or_unknown_archives(tmp_path):
    import tarfile

    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        z.writestr("../outside.txt", "x")
    with pytest.raises(FormatError, match="outside"):
        catalog.extract(tmp_path / "evil.zip", tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
    link = tarfile.TarInfo("scene/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with tarfile.open(tmp_path / "link.tar", "w") as t:
        t.addfile(link)
    with pytest.raises(FormatError, match="link"):
        catalog.extract(tmp_path / "link.tar", tmp_path / "out")
    (tmp_path / "x.7z").write_bytes(b"7z")
    with pytest.raises(ReconError, match="7z archives need the external tool"):
        catalog.extract(tmp_path / "x.7z", tmp_path / "out")
    (tmp_path / "x.rar").write_bytes(b"r")
    with pytest.raises(FormatError, match="unknown archive type"):
        catalog.extract(tmp_path / "x.rar", tmp_path / "out")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(FormatError, match="bad.zip: not a valid zip"):
        catalog.extract(tmp_path / "bad.zip", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        catalog.extract(tmp_path / "missing.zip", tmp_path / "out")


# ------------------------------------------------------------------------------------------
# `recon data`
# ------------------------------------------------------------------------------------------

def test_recon_data_list_and_info(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in EXPECTED:
        assert name in out
    assert main(["data", "info", "mipnerf360"]) == 0
    out = capsys.readouterr().out
    assert "360_v2.zip" in out and "Barron" in out and "bicycle" in out


def test_recon_data_download(local_catalog, capsys):
    tmp, good = local_catalog
    assert main(["data", "download", "good", str(tmp / "cli"), "--no-progress"]) == 0
    assert good in capsys.readouterr().out
    assert main(["data", "download", "bad", str(tmp / "cli2"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recon data: error: bad: checksum mismatch") and err.count("\n") == 1
    with zipfile.ZipFile(tmp / "served" / "pack.zip", "w") as z:
        z.writestr("scene/x.txt", "x")
    (tmp / "catalog" / "packed.toml").write_text(_entry("packed", (tmp / "served" / "pack.zip").as_uri()))
    assert main(["data", "download", "packed", str(tmp / "cli3"), "--no-progress", "--extract"]) == 0
    assert (tmp / "cli3" / "scene" / "x.txt").read_text() == "x"
    assert main(["data", "download", "bad", str(tmp / "cli2"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recon data: error: bad: checksum mismatch") and err.count("\n") == 1


# ------------------------------------------------------------------------------------------
# Packaging: the wheel carries the TOMLs as package data, and no `datasets` package.
# ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_wheel_ships_the_catalog_as_package_data(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path), "-q"], capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("recon-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tomls = {Path(n).name for n in names if n.startswith("recon/catalog/") and n.endswith(".toml")}
    assert tomls == {p.name for p in (ROOT / "datasets").glob("*.toml")}
    assert not [n for n in names if n.split("/")[0] == "datasets"]
    assert not [n for n in names if n.startswith("recon/catalog/") and n.endswith(".py")]


def test_pooch_download_of_a_built_archive_into_the_cache(local_catalog, monkeypatch, capsys):
    """pooch end to end on a file:// tar.gz the test builds: progress bar, sha256, unpacking,
    the cache folder ($RECON_DATA_DIR) when no destination is given, and no second fetch."""
    import io
    import tarfile

    tmp, _ = local_catalog
    archive = tmp / "served" / "scene.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        for name, text in (("scene/images/a.txt", "a"), ("scene/sparse/0/cameras.txt", "# none\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    (tmp / "catalog" / "tgz.toml").write_text(_entry("tgz", archive.as_uri(), sha))
    monkeypatch.setenv("RECON_DATA_DIR", str(tmp / "cache"))
    res = catalog.download("tgz", progress=True, unpack=True)
    assert res.path == tmp / "cache" / "tgz" / "scene.tar.gz" and res.verified and res.sha256 == sha
    assert (tmp / "cache" / "tgz" / "scene" / "sparse" / "0" / "cameras.txt").read_text() == "# none\n"
    assert "scene.tar.gz" in capsys.readouterr().err  # the tqdm bar
    mtime = res.path.stat().st_mtime_ns
    assert catalog.download("tgz", progress=False).path.stat().st_mtime_ns == mtime  # cached
    res.path.write_bytes(b"corrupt")  # a damaged cached file is fetched again and checked
    assert catalog.download("tgz", progress=False).sha256 == sha
