"""The catalog of public datasets: one small TOML per dataset in the top-level ``datasets/`` folder.

``datasets/`` is deliberately not an importable package (the name belongs to Hugging Face's
library). The wheel ships the TOMLs as package data at ``recon/catalog/*.toml`` (in the source
tree ``recon/catalog`` is a symlink to ``../datasets``); a checkout whose symlink is missing (e.g.
Windows without symlink support) reads ``datasets/`` next to the sources.

Entry fields (see datasets/*.toml): ``name``, ``url`` (may contain ``{scene}`` for per-scene
files), ``sha256`` (empty when the publisher gives none: never guessed), ``license``, ``format``
(colmap | transforms | images | bal | stereo), ``scenes``, ``size_mb`` (0 = unknown), ``citation``;
optional ``title``, ``homepage``, ``layout``, ``manual`` (true: needs a browser), and ``*_note``
texts.

Example::

    from recon.io.catalog import list_datasets, download, extract
    [d.name for d in list_datasets()]
    got = download("bal", "data/", scene="ladybug/problem-49-7776-pre")
    extract(got.path, "data/")   # -> data/problem-49-7776-pre.txt

Downloads, checksums, the cache folder and unpacking are pooch's (``pooch.retrieve`` and its
Unzip / Untar / Decompress processors); ``file://`` URLs (local mirrors) go through a small
downloader here, since pooch speaks http(s), ftp, sftp and doi.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from recon.errors import FormatError, ReconError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["FORMATS", "REQUIRED_FIELDS", "DatasetInfo", "Downloaded", "cache_dir", "catalog_dir", "download",
           "extract", "get_dataset", "list_datasets"]

REQUIRED_FIELDS = ("name", "url", "sha256", "license", "format", "scenes", "size_mb", "citation")
FORMATS = ("colmap", "transforms", "images", "bal", "stereo", "vocab_tree")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    url: str  # may contain "{scene}"
    sha256: str  # hex digest of the file at ``url``; "" when none is published
    license: str
    format: str  # one of FORMATS
    scenes: tuple[str, ...]
    size_mb: float  # 0 = unknown
    citation: str
    title: str = ""
    homepage: str = ""
    layout: str = ""
    manual: bool = False  # True: the host needs a browser; download() explains instead
    manual_note: str = ""
    sha256_note: str = ""
    license_note: str = ""
    size_note: str = ""
    archive: str = ""
    source: str = ""  # the TOML file it was read from

    @property
    def per_scene(self) -> bool:
        return "{scene}" in self.url

    def url_for(self, scene: str | None = None) -> str:
        """The download URL; ``scene`` is required for per-scene datasets and ignored otherwise."""
        if not self.per_scene:
            return self.url
        if scene is None:
            raise ValueError(f"scene: dataset {self.name!r} is downloaded per scene; choose one of "
                             f"{', '.join(self.scenes)}")
        if scene not in self.scenes:
            raise ValueError(f"scene: {scene!r} is not a scene of {self.name!r}; expected one of "
                             f"{', '.join(self.scenes)}")
        return self.url.replace("{scene}", scene)


class Downloaded(NamedTuple):
    path: Path  # the downloaded file
    sha256: str  # its hex digest (computed)
    verified: bool  # True when it matched the catalog's sha256; False when the catalog has none


def catalog_dir() -> Path:
    """Folder holding the catalog TOMLs (installed package data, or ``datasets/`` of a checkout)."""
    here = Path(__file__).resolve().parents[1]  # .../recon
    for candidate in (here / "catalog", here.parent / "datasets"):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    raise ReconError(f"dataset catalog not found (looked in {here / 'catalog'} and {here.parent / 'datasets'})")


def _parse(path: Path) -> DatasetInfo:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise FormatError(path, f"invalid TOML: {e}") from None
    missing = [k for k in REQUIRED_FIELDS if k not in raw]
    if missing:
        raise FormatError(path, f"missing field(s) {', '.join(missing)}")
    if raw["format"] not in FORMATS:
        raise FormatError(path, f"format {raw['format']!r} is not one of {', '.join(FORMATS)}")
    sha = raw["sha256"]
    if not isinstance(sha, str) or (sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha))):
        raise FormatError(path, f"sha256 must be 64 lowercase hex digits or empty, got {sha!r}")
    if not isinstance(raw["scenes"], list) or not all(isinstance(s, str) for s in raw["scenes"]):
        raise FormatError(path, "scenes must be a list of strings")
    if not isinstance(raw["size_mb"], (int, float)) or raw["size_mb"] < 0:
        raise FormatError(path, f"size_mb must be a number >= 0, got {raw['size_mb']!r}")
    known = set(DatasetInfo.__dataclass_fields__) - {"source"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise FormatError(path, f"unknown field(s) {', '.join(unknown)}")
    if raw["name"] != path.stem:
        raise FormatError(path, f"name {raw['name']!r} must equal the file name {path.stem!r}")
    fields = {k: v for k, v in raw.items() if k in known}
    fields["scenes"] = tuple(raw["scenes"])
    fields["size_mb"] = float(raw["size_mb"])
    return DatasetInfo(**fields, source=str(path))


def list_datasets() -> list[DatasetInfo]:
    """Every catalog entry, sorted by name."""
    return [_parse(p) for p in sorted(catalog_dir().glob("*.toml"))]


def get_dataset(name: str) -> DatasetInfo:
    path = catalog_dir() / f"{name}.toml"
    if not isinstance(name, str) or "/" in name or not path.is_file():
        known = ", ".join(d.name for d in list_datasets())
        raise ValueError(f"name: unknown dataset {name!r}; known: {known}")
    return _parse(path)


def _sha256_of(path: Path) -> str:
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


def cache_dir() -> Path:
    """Where ``recon data download`` puts datasets when no folder is given: ``$RECON_DATA_DIR``,
    else the user cache folder (``~/.cache/recon`` on Linux, via ``pooch.os_cache``)."""
    env = os.environ.get("RECON_DATA_DIR")
    if env:
        return Path(env)
    import pooch

    return Path(pooch.os_cache("recon"))


class _FileDownloader:
    """pooch downloader for ``file://`` URLs (pooch itself speaks http, https, ftp, sftp, doi):
    local mirrors, and the tests, which build their archive and serve it from disk."""

    def __init__(self, progressbar: bool):
        self.progressbar = progressbar

    def __call__(self, url, output_file, pooch, check_only=False):
        src = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        if check_only:
            return src.is_file()
        total = src.stat().st_size
        bar = None
        if self.progressbar:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=src.name, file=sys.stderr)
        try:
            with open(src, "rb") as fin, open(output_file, "wb") as fout:
                for block in iter(lambda: fin.read(1 << 20), b""):
                    fout.write(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()


def download(name: str, dest=None, *, scene: str | None = None, progress: bool = True,
             timeout: float = 60.0, unpack: bool = False) -> Downloaded:
    """Download dataset ``name`` (one ``scene`` of it for per-scene datasets) into folder ``dest``
    (default :func:`cache_dir`), with pooch: progress bar, sha256 check, cache.

    pooch downloads to a temporary file and moves it into place only after its sha256 matched
    the catalog; on a mismatch or a network error nothing is left behind and a ReconError says
    what happened. An existing file with the right checksum is not fetched again. With
    ``unpack`` the archive is also unpacked into ``dest`` (see :func:`extract`).
    """
    import logging

    import pooch

    info = get_dataset(name)
    if info.manual:
        raise ReconError(f"{info.name}: cannot be downloaded automatically. {info.manual_note} URL: {info.url}")
    url = info.url_for(scene)
    dest = Path(dest) if dest is not None else cache_dir() / info.name
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"dest: expected a folder, got the file {dest}")
    dest.mkdir(parents=True, exist_ok=True)
    fname = Path(urllib.request.url2pathname(url.rsplit("/", 1)[-1])).name
    if url.startswith("file:"):
        downloader = _FileDownloader(progress)
    else:
        downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout) \
            if url.startswith(("http:", "https:")) else pooch.choose_downloader(url, progressbar=progress)
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # pooch logs every download at INFO; we print our own line
    try:
        path = Path(pooch.retrieve(url, known_hash=f"sha256:{info.sha256}" if info.sha256 else None,
                                   fname=fname, path=dest, downloader=downloader, progressbar=progress))
    except ValueError as e:
        got = re.search(r"got ([0-9a-f]{64})", str(e))
        raise ReconError(f"{info.name}: checksum mismatch for {url}: expected sha256 {info.sha256}, "
                         f"got {got.group(1) if got else '?'}; the download was removed") from None
    except Exception as e:  # noqa: BLE001 - requests / ftplib / OS errors: one line, never a traceback
        reason = getattr(e, "reason", None) or e
        raise ReconError(f"{info.name}: could not download {url}: {reason}. Check the network connection "
                         "(offline?) or download it by hand from the dataset's homepage "
                         f"{info.homepage or url}") from None
    finally:
        logger.setLevel(level)
    digest = _sha256_of(path)
    if unpack:
        extract(path, dest)
    return Downloaded(path, digest, bool(info.sha256))


def extract(archive, dest) -> Path:
    """Unpack a downloaded archive into folder ``dest``; returns ``dest``.

    .zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, and single-file .bz2 / .gz (written next to it
    without the suffix). Members that would land outside ``dest`` (absolute paths, ``..``, links)
    are refused. .7z needs the external ``7z`` tool: the error says so.
    """
    import tarfile
    import zipfile

    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(2, "No such file", str(archive))
    name = archive.name.lower()
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()

    def inside(member: str) -> Path:
        target = (root / member).resolve()
        if member.startswith(("/", "\\")) or (target != root and root not in target.parents):
            raise FormatError(archive, f"member {member!r} would be written outside {dest}; refusing")
        return target

    import pooch

    # pooch unpacks; the members are checked here first (pooch trusts the archive).
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():
                    inside(member)
        except zipfile.BadZipFile as e:
            raise FormatError(archive, f"not a valid zip archive ({e})") from None
        pooch.Unzip(extract_dir=str(root))(str(archive.resolve()), "download", None)
    elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz")):
        try:
            with tarfile.open(archive) as t:
                for member in t.getmembers():
                    inside(member.name)
                    if member.issym() or member.islnk() or not (member.isfile() or member.isdir()):
                        raise FormatError(archive, f"member {member.name!r} is a link or device; refusing")
        except tarfile.TarError as e:
            raise FormatError(archive, f"not a valid tar archive ({e})") from None
        pooch.Untar(extract_dir=str(root))(str(archive.resolve()), "download", None)
    elif name.endswith((".bz2", ".gz")):
        target = root / archive.name.rsplit(".", 1)[0]
        part = target.with_name(target.name + ".part")
        try:
            out = pooch.Decompress(method="auto", name=str(part))(str(archive.resolve()), "download", None)
        except (OSError, EOFError) as e:
            part.unlink(missing_ok=True)
            raise FormatError(archive, f"cannot decompress ({e})") from None
        os.replace(out, target)
    elif name.endswith(".7z"):
        raise ReconError(f"{archive}: 7z archives need the external tool: `7z x {archive} -o{dest}` "
                         "(Debian: apt-get install p7zip-full)")
    else:
        raise FormatError(archive, "unknown archive type (expected .zip, .tar[.gz|.bz2|.xz], .bz2, .gz or .7z)")
    return dest
