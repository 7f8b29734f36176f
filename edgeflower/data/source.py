"""Find the dataset: --data DIR, then $EDGEFLOWER_DATA, then the user cache, then download the official archive."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from edgeflower.errors import DataError, DownloadError
from edgeflower.util.files import cache_dir
from edgeflower.util.progress import progress

log = logging.getLogger(__name__)

ARCHIVE_URL = "http://download.tensorflow.org/example_images/flower_photos.tgz"
ARCHIVE_SHA256 = "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"
ARCHIVE_SIZE = 228_813_984
DATASET_DIRNAME = "flower_photos"

from edgeflower.edge.preprocess import IMAGE_SUFFIXES  # noqa: E402,F401 - one definition for every side


def list_images(root: str | os.PathLike) -> dict[str, list[str]]:
    """Class name -> sorted relative paths of files in ``root/<class>/`` (any file not hidden, not only images).

    Non-image suffixes are kept so that ``data check`` can report them; loaders filter by suffix.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"data directory {root} does not exist: pass --data DIR pointing at flower_photos/")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a directory: pass the flower_photos/ folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"data directory {root} has no class folders: expected {root}/<class>/<image>.jpg")
    out: dict[str, list[str]] = {}
    for c in classes:
        files = sorted(
            f"{c}/{p.name}" for p in (root / c).iterdir() if p.is_file() and not p.name.startswith(".")
        )
        out[c] = files
    return out


def _looks_like_dataset(d: Path) -> bool:
    return d.is_dir() and any(p.is_dir() for p in d.iterdir()) and not (d / ".incomplete").exists()


def resolve_data_dir(data: str | os.PathLike | None = None, download: bool = True,
                     url: str = ARCHIVE_URL, sha256: str = ARCHIVE_SHA256) -> Path:
    """The dataset directory by the documented resolution order; downloads into the cache as a last resort."""
    if data:
        d = Path(data).expanduser()
        if not d.exists():
            raise DataError(f"--data {d} does not exist: point it at the flower_photos/ folder "
                            "or leave it out to use $EDGEFLOWER_DATA / the download")
        return d
    env = os.environ.get("EDGEFLOWER_DATA")
    if env:
        d = Path(env).expanduser()
        if not d.exists():
            raise DataError(f"EDGEFLOWER_DATA={d} does not exist: fix or unset it")
        return d
    cached = cache_dir() / "datasets" / DATASET_DIRNAME
    if _looks_like_dataset(cached):
        return cached
    if not download:
        raise DataError("no dataset found: pass --data DIR, set EDGEFLOWER_DATA, or allow the download")
    return download_dataset(cached.parent, url=url, sha256=sha256)


def download_dataset(dest_parent: str | os.PathLike, url: str = ARCHIVE_URL, sha256: str = ARCHIVE_SHA256,
                     timeout: float = 60.0) -> Path:
    """Download ``url`` (a .tgz holding ``flower_photos/``), verify its sha256 and extract it atomically.

    The archive goes to a temporary file and the extraction to a temporary folder; only a verified,
    fully extracted tree is renamed to ``dest_parent/flower_photos``. An interruption leaves nothing
    that a later run could mistake for a valid dataset.
    """
    dest_parent = Path(dest_parent)
    dest_parent.mkdir(parents=True, exist_ok=True)
    final = dest_parent / DATASET_DIRNAME
    fd, tmp_name = tempfile.mkstemp(prefix=".flower_photos.", suffix=".tgz.part", dir=dest_parent)
    os.close(fd)
    tmp_archive = Path(tmp_name)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".flower_photos.extract.", dir=dest_parent))
    try:
        digest = _fetch(url, tmp_archive, timeout)
        if digest != sha256:
            raise DownloadError(f"checksum mismatch for {url}: got sha256 {digest}, expected {sha256}; "
                                "the download was corrupted or the file changed: retry, or download it yourself "
                                "and pass --data")
        log.info("extracting %s", tmp_archive)
        _safe_extract(tmp_archive, tmp_dir)
        extracted = tmp_dir / DATASET_DIRNAME
        if not extracted.is_dir():
            raise DownloadError(f"archive from {url} does not contain a {DATASET_DIRNAME}/ folder")
        if final.exists():
            shutil.rmtree(final)
        os.replace(extracted, final)
        return final
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_archive.unlink()
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _fetch(url: str, dest: Path, timeout: float) -> str:
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            # a server that sends no Content-Length still gets a bar: the archive's known size
            total = int(resp.headers.get("Content-Length") or 0) or (ARCHIVE_SIZE if url == ARCHIVE_URL else None)
            chunk = 1 << 20

            def chunks():
                while True:
                    b = resp.read(chunk)
                    if not b:
                        return
                    yield b

            n_chunks = (total + chunk - 1) // chunk if total else None
            for b in progress(chunks(), total=n_chunks, desc="download MiB"):
                h.update(b)
                out.write(b)
    except OSError as exc:  # URLError, timeouts, connection resets
        raise DownloadError(f"cannot download {url}: {getattr(exc, 'reason', exc)}; check the network, or "
                            "download flower_photos.tgz elsewhere, extract it and pass --data DIR "
                            "(or set EDGEFLOWER_DATA)") from exc
    return h.hexdigest()


def _safe_extract(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            dest_resolved = dest.resolve()
            for m in tf.getmembers():
                target = (dest / m.name).resolve()
                if dest_resolved not in target.parents and target != dest_resolved:
                    raise DownloadError(f"archive member {m.name!r} would escape the extraction folder")
                if m.issym() or m.islnk() or m.isdev():
                    raise DownloadError(f"archive member {m.name!r} is a link or device; refusing to extract")
            tf.extractall(dest)
    except tarfile.TarError as exc:
        raise DownloadError(f"archive {archive} is not a valid .tgz: {exc}") from exc
