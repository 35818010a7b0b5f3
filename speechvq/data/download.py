"""Download VCTK 0.92 from its official address: resumable, checksum-verified, extracted once.

The corpus (CSTR, University of Edinburgh; CC BY 4.0) is one zip of about 11 GB on
Edinburgh DataShare (https://datashare.ed.ac.uk/handle/10283/3443). The download goes
into ``ARCHIVE.part``; an interrupted run leaves it there and the next run continues it
with an HTTP ``Range`` request. The finished file is checked against its published
SHA-256 (or an MD5) before it is renamed to its final name; a mismatch deletes the
partial file. Extraction writes a marker file when complete, so a second run skips it.

Command line (used by ``recipes/vctk/run.sh``, stage 0)::

    python -m speechvq.data.download --out DATA_DIR [--url URL --sha256 HEX]

It prints the corpus root (the folder holding ``wav48_silence_trimmed/``) as its last line.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from speechvq.errors import SpeechVQError

logger = logging.getLogger(__name__)

VCTK_URL = "https://datashare.is.ed.ac.uk/bitstream/handle/10283/3443/VCTK-Corpus-0.92.zip"
VCTK_SHA256 = "f96258be9fdc2cbff6559541aae7ea4f59df3fcaf5cf963aae5ca647357e359c"
VCTK_FOLDER = "VCTK-Corpus-0.92"
VCTK_AUDIO_FOLDER = "wav48_silence_trimmed"
EXTRACTED_MARKER = ".extracted"

_CHUNK_BYTES = 1 << 20
# Errors that mean "the transfer stopped early": the .part file is kept for a resume.
_TRANSFER_ERRORS = (http.client.HTTPException, ConnectionError, TimeoutError, urllib.error.URLError)


class DownloadError(SpeechVQError):
    """A download failed (network, HTTP status, checksum) or an archive is unusable."""


def _hash_file(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(part: Path, url: str, sha256: str | None, md5: str | None) -> None:
    """Check `part` against the expected digest; on a mismatch delete it and raise."""
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected is None:
            continue
        actual = _hash_file(part, algorithm)
        if actual != expected.lower():
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url}: {algorithm} mismatch (expected {expected.lower()}, got {actual}); "
                f"deleted {part.name}, run again to download it afresh"
            )
        return
    logger.warning("%s: no checksum given, the download is not verified", url)


def _transfer(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of `url` to `part` (resuming with a Range request if it has bytes).

    Raises one of `_TRANSFER_ERRORS` when the connection ends early (the bytes received
    so far stay in `part`), `DownloadError` for an HTTP error status.
    """
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "speechvq-download", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to fetch: the .part file is already whole
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    with response:
        if start and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                raise DownloadError(f"{url}: server answered a resume with Content-Range {content_range!r}")
            mode, done = "ab", start
            logger.info("resuming %s at byte %d", part.name, start)
        else:  # 200: the server sends the whole file (no Range support, or a fresh start)
            mode, done = "wb", 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        with open(part, mode) as f, tqdm(total=total, initial=done, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=part.name, disable=not progress) as bar:
            while True:
                block = response.read(_CHUNK_BYTES)
                if not block:
                    break
                f.write(block)
                done += len(block)
                bar.update(len(block))
        if total is not None and done < total:
            raise http.client.IncompleteRead(b"", total - done)


def download_file(url: str, dest: str | os.PathLike, sha256: str | None = None, md5: str | None = None,
                  retries: int = 3, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download `url` to `dest`, resuming ``dest.part`` and verifying the checksum.

    Args:
        url: http(s) or file URL.
        dest: final path; it only appears once the content is complete and verified.
        sha256, md5: expected hex digest (sha256 takes precedence; neither = unverified).
        retries: how many times an interrupted transfer is resumed within this call.
        timeout: socket timeout in seconds.
        progress: show a tqdm bar (bytes).

    Returns `dest`. An existing `dest` is taken as already verified (it is only ever
    written by renaming a verified ``.part``). Raises `DownloadError` when the transfer
    still fails after `retries` resumes (the ``.part`` file is kept: run again to resume)
    or when the checksum does not match (the ``.part`` file is deleted).
    """
    dest = Path(dest)
    if dest.is_file():
        logger.info("%s already downloaded, skipping", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout, progress)
            break
        except DownloadError:
            raise
        except _TRANSFER_ERRORS as exc:
            received = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DownloadError(
                    f"{url}: download interrupted after {received} bytes ({type(exc).__name__}); "
                    f"run again to resume from {part}"
                ) from None
            logger.warning("%s: transfer interrupted after %d bytes (%s), resuming",
                           url, received, type(exc).__name__)
    _verify(part, url, sha256, md5)
    os.replace(part, dest)
    return dest


def _corpus_root(folder: Path) -> Path:
    """The folder holding VCTK's audio folder: `folder` itself or one level below it."""
    if (folder / VCTK_AUDIO_FOLDER).is_dir():
        return folder
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (child / VCTK_AUDIO_FOLDER).is_dir():
            return child
    raise DownloadError(f"{folder}: no {VCTK_AUDIO_FOLDER}/ folder after extraction; not a VCTK 0.92 archive")


def extract_once(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a zip into `dest` unless `dest` holds a marker of a complete extraction.

    The marker ``dest/.extracted`` is written after the last member, so an interrupted
    extraction is redone (members are overwritten). Member names are sanitised by
    `zipfile` (no absolute paths, no ``..``). Returns `dest`.
    """
    archive, dest = Path(archive), Path(dest)
    marker = dest / EXTRACTED_MARKER
    if marker.is_file():
        logger.info("%s already extracted, skipping", dest)
        return dest
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for member in tqdm(members, desc=f"extracting {archive.name}", unit="file",
                               disable=len(members) < 1000):
                zf.extract(member, dest)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive}: not a valid zip archive ({exc})") from None
    marker.write_text(f"{archive.name}\n", encoding="utf-8")
    return dest


def download_vctk(out: str | os.PathLike, url: str = VCTK_URL, sha256: str | None = VCTK_SHA256,
                  md5: str | None = None, keep_archive: bool = True, retries: int = 3,
                  progress: bool = True) -> Path:
    """Download and extract VCTK 0.92 under `out`; return the corpus root.

    Layout: ``OUT/VCTK-Corpus-0.92.zip`` (the archive) and ``OUT/VCTK-Corpus-0.92/``
    (extracted, with ``wav48_silence_trimmed/<speaker>/<id>_mic1.flac`` and
    ``txt/<speaker>/<id>.txt``). Each step is skipped when already done, so the call is
    cheap the second time; with ``keep_archive=False`` the zip is deleted after extraction.
    """
    out = Path(out)
    folder = out / VCTK_FOLDER
    if (folder / EXTRACTED_MARKER).is_file():
        logger.info("%s already extracted, skipping download and extraction", folder)
        return _corpus_root(folder)
    archive = download_file(url, out / f"{VCTK_FOLDER}.zip", sha256=sha256, md5=md5,
                            retries=retries, progress=progress)
    extract_once(archive, folder)
    if not keep_archive:
        archive.unlink()
    return _corpus_root(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m speechvq.data.download",
        description="Download VCTK 0.92 (CC BY 4.0, CSTR Edinburgh): resumable, checksum verified, extracted once. "
                    "Prints the corpus root as the last line.")
    parser.add_argument("--out", required=True, type=Path, help="folder for the archive and the extracted corpus")
    parser.add_argument("--url", default=VCTK_URL, help="archive URL (default: the official DataShare address)")
    parser.add_argument("--sha256", default=None,
                        help="expected SHA-256 (default: the published one for the default URL)")
    parser.add_argument("--md5", default=None, help="expected MD5, used when no SHA-256 is given")
    parser.add_argument("--retries", type=int, default=3, help="resumes within one run after a dropped connection")
    parser.add_argument("--delete-archive", action="store_true", help="delete the zip after a complete extraction")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sha256 = args.sha256 if args.sha256 or args.md5 or args.url != VCTK_URL else VCTK_SHA256
    try:
        root = download_vctk(args.out, url=args.url, sha256=sha256, md5=args.md5,
                             keep_archive=not args.delete_archive, retries=args.retries)
    except SpeechVQError as exc:
        print(f"download: error: {exc}", file=sys.stderr)
        return 2
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
