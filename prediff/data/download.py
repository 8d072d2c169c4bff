"""Download and unpack SEVIR-LR (the dataset MindEarth PreDiff trains on) with resume and integrity checks.

Steps, each safe to interrupt:

1. the archive is fetched into ``<dest>/<name>.part``; a later run continues it with an HTTP ``Range``
   request (a server that ignores ``Range`` makes it start over);
2. the finished file is checked: its size against the server's ``Content-Length`` / ``Content-Range``, its
   SHA-256 against an expected digest (if given), then renamed to ``<dest>/<name>``;
3. it is extracted into a temporary folder beside ``dest`` — ``zipfile`` checks each member's CRC-32 while
   extracting — and the tree (``data/`` first, ``CATALOG.csv`` last) is renamed into ``dest``. The archive's
   content may sit in one top-level folder (the published ``sevir_lr.zip`` has ``sevir_lr/``).

A tree whose ``CATALOG.csv`` exists is complete: readers never see a half-unpacked dataset.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from prediff.data.catalog import CATALOG_NAME
from prediff.errors import DataError

SEVIR_LR_URL = "https://deep-earth.s3.amazonaws.com/datasets/sevir_lr.zip"
_CHUNK_BYTES = 1 << 20


def download_file(url: str, destination: str | os.PathLike, sha256: str | None = None, retries: int = 3,
                  timeout_s: float = 60.0, show_progress: bool = True) -> Path:
    """Fetch ``url`` to ``destination``, resuming ``<destination>.part`` left by an interrupted run.

    Parameters
    ----------
    url : http(s) or file URL.
    destination : final path of the file; an existing file there is returned without downloading.
    sha256 : expected hex digest of the whole file, or None to skip that check.
    retries : further attempts after a broken connection, each resuming where the last stopped.
    timeout_s : socket timeout in seconds.
    show_progress : draw a tqdm progress bar on stderr.

    Returns
    -------
    The path of the complete file.

    Raises
    ------
    DataError : the server refuses, the connection keeps breaking (the ``.part`` file is kept: run again to
        resume), or the size or SHA-256 is wrong (the bad file is removed).
    """
    destination = Path(destination)
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    for attempt in range(retries + 1):
        try:
            total = _fetch(url, partial, timeout_s, show_progress)
            break
        except (OSError, http.client.HTTPException) as error:
            # OSError covers URLError, HTTPError, refused / reset connections and timeouts
            if isinstance(error, urllib.error.HTTPError) or attempt == retries:
                reason = f"HTTP {error.code} {error.reason}" if isinstance(error, urllib.error.HTTPError) else error
                kept = partial.stat().st_size if partial.exists() else 0
                raise DataError(f"downloading {url} failed ({reason}); {kept} bytes are kept in {partial} — run "
                                "the same command again to resume, or pass --url with a reachable mirror") from None
    size = partial.stat().st_size
    if total is not None and size != total:
        partial.unlink()
        raise DataError(f"{url}: received {size} bytes but the server announced {total}; the partial file was "
                        "removed — run the command again")
    if sha256 is not None:
        digest = file_sha256(partial)
        if digest.lower() != sha256.strip().lower():
            partial.unlink()
            raise DataError(f"{url}: SHA-256 is {digest}, expected {sha256}; the download is corrupt (removed) — "
                            "run the command again, or check the expected digest")
    os.replace(partial, destination)
    return destination


def _fetch(url: str, partial: Path, timeout_s: float, show_progress: bool) -> int | None:
    """Append the rest of ``url`` to ``partial``; returns the full size in bytes if the server told it."""
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # the .part file is already complete (or longer than the file): verify it as it is
            return _total_from_content_range(error.headers.get("Content-Range"))
        raise
    with response:
        status = getattr(response, "status", 200)
        length = response.headers.get("Content-Length")
        if status == 206:
            total = _total_from_content_range(response.headers.get("Content-Range"))
            mode = "ab"
        else:
            # no range support (or nothing to resume): the body is the whole file
            offset = 0
            total = int(length) if length is not None else None
            mode = "wb"
        from tqdm import tqdm

        with open(partial, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                                unit_divisor=1024, desc=partial.name.removesuffix(".part"),
                                                disable=not show_progress) as bar:
            while True:
                chunk = response.read(_CHUNK_BYTES)
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))
        if length is not None and partial.stat().st_size - offset < int(length):
            raise ConnectionError(f"connection closed after {partial.stat().st_size - offset} of {length} bytes")
    return total


def _total_from_content_range(header: str | None) -> int | None:
    # "bytes 100-199/200" or "bytes */200"
    if not header or "/" not in header:
        return None
    total = header.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unpack_sevir_archive(archive: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Extract a SEVIR-format zip into ``destination`` (``CATALOG.csv`` + ``data/``), atomically.

    Parameters
    ----------
    archive : the zip file; ``CATALOG.csv`` may be at its top or inside one top-level folder.
    destination : dataset root to create; must hold neither ``CATALOG.csv`` nor ``data/`` yet.

    Returns
    -------
    The dataset root (``destination``).

    Raises
    ------
    DataError : ``destination`` already has a dataset or a ``data/`` folder, the archive is not a valid zip, a
        member fails its CRC check, or it holds no ``CATALOG.csv``.
    """
    archive = Path(archive)
    destination = Path(destination)
    _check_destination(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for stale in destination.glob(".unpack-*"):
        # staging folders of a run that was killed before it could clean up
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=destination))
    try:
        try:
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(staging)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
            raise DataError(f"{archive} is not a valid zip archive ({error}); delete it and download again") from None
        source = _tree_root(staging, archive)
        if (source / "data").exists():
            os.replace(source / "data", destination / "data")
        # the catalog goes last: a folder with CATALOG.csv is a complete dataset
        os.replace(source / CATALOG_NAME, destination / CATALOG_NAME)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def _check_destination(destination: Path) -> None:
    if (destination / CATALOG_NAME).exists():
        raise DataError(f"{destination} already holds a dataset ({CATALOG_NAME}); choose another folder, or delete "
                        "it to unpack again")
    if (destination / "data").exists():
        raise DataError(f"{destination}/data exists but {destination} has no {CATALOG_NAME} (left by another tool or "
                        "an interrupted unpack); delete that data folder or choose another --out")


def _tree_root(staging: Path, archive: Path) -> Path:
    if (staging / CATALOG_NAME).is_file():
        return staging
    candidates = [entry for entry in staging.iterdir() if (entry / CATALOG_NAME).is_file()]
    if len(candidates) == 1:
        return candidates[0]
    raise DataError(f"{archive} holds no {CATALOG_NAME} at its top or in one top-level folder; it is not a "
                    "SEVIR-format archive — check the --url")


def download_sevir_lr(destination: str | os.PathLike, url: str = SEVIR_LR_URL, sha256: str | None = None,
                      keep_archive: bool = False, show_progress: bool = True, retries: int = 3) -> Path:
    """Download SEVIR-LR (or any SEVIR-format zip at ``url``) and unpack it as a dataset root.

    Parameters
    ----------
    destination : dataset root to create (``CATALOG.csv`` + ``data/``); the archive is downloaded into it.
    url : archive URL, by default the published ``sevir_lr.zip``.
    sha256 : expected SHA-256 of the archive, or None.
    keep_archive : keep the zip after unpacking (by default it is deleted to save the space).
    show_progress : draw a progress bar.
    retries : further attempts after a broken connection.

    Returns
    -------
    The dataset root; an already complete root (it has ``CATALOG.csv``) is returned untouched.
    """
    destination = Path(destination).expanduser()
    if (destination / CATALOG_NAME).is_file():
        return destination
    _check_destination(destination)
    name = Path(urllib.parse.urlparse(url).path).name or "dataset.zip"
    archive = download_file(url, destination / name, sha256=sha256, retries=retries, show_progress=show_progress)
    unpack_sevir_archive(archive, destination)
    if not keep_archive:
        archive.unlink()
    return destination
