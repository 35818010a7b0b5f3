"""VCTK download: resumed after a dropped connection, rejected on a bad checksum, extracted once.

A local HTTP server on 127.0.0.1 (a thread, shut down after each test) serves a small zip
in VCTK 0.92's layout and honours ``Range`` requests; it can be told to drop the
connection after N bytes of the next response.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import threading
import zipfile
from pathlib import Path

import pytest

from speechvq.data import download
from speechvq.data.download import DownloadError, download_file, download_vctk


def _vctk_zip() -> bytes:
    """A zip laid out like VCTK-Corpus-0.92.zip (no top folder), ~40 kB of incompressible bytes."""
    buf = io.BytesIO()
    payload = hashlib.sha256(b"seed").digest() * 1300  # repeated digest: stored, not compressed away
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("README.txt", "VCTK test archive\n")
        zf.writestr("speaker-info.txt", "ID  AGE  GENDER  ACCENTS  REGION\np225  23  F  English  Southern England\n")
        for speaker in ("p225", "p226"):
            for n in ("001", "002"):
                zf.writestr(f"txt/{speaker}/{speaker}_{n}.txt", "Please call Stella.\n")
                zf.writestr(f"wav48_silence_trimmed/{speaker}/{speaker}_{n}_mic1.flac", payload)
    return buf.getvalue()


class _Server:
    """Serves `data` at /VCTK-Corpus-0.92.zip with Range support; records every Range header."""

    def __init__(self, data: bytes):
        self.data = data
        self.ranges: list[str | None] = []
        self.drop_after: int | None = None  # next response: close the connection after this many bytes
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 5

            def do_GET(self):  # noqa: N802 (http.server's naming)
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = int(header.removeprefix("bytes=").split("-")[0]) if header else 0
                body = server.data[start:]
                self.send_response(206 if header else 200)
                if header:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drop_after is not None:
                    body, server.drop_after = body[:server.drop_after], None
                    self.close_connection = True
                self.wfile.write(body)
                self.wfile.flush()

            def log_message(self, *args):  # keep pytest output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/VCTK-Corpus-0.92.zip"


@pytest.fixture
def server():
    srv = _Server(_vctk_zip())
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join(timeout=5)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    dest = tmp_path / "VCTK-Corpus-0.92.zip"
    server.drop_after = 10_000
    with pytest.raises(DownloadError, match="interrupted after 10000 bytes"):
        download_file(server.url, dest, sha256=_sha256(server.data), retries=0, progress=False)
    part = dest.with_name(dest.name + ".part")
    assert part.stat().st_size == 10_000 and not dest.exists()

    download_file(server.url, dest, sha256=_sha256(server.data), retries=0, progress=False)
    assert server.ranges == [None, "bytes=10000-"]
    assert dest.read_bytes() == server.data
    assert not part.exists()


def test_retries_resume_within_one_call(server, tmp_path):
    server.drop_after = 5_000
    dest = download_file(server.url, tmp_path / "a.zip", md5=hashlib.md5(server.data).hexdigest(),
                         retries=1, progress=False)
    assert server.ranges == [None, "bytes=5000-"]
    assert dest.read_bytes() == server.data


def test_corrupted_download_is_rejected_and_deleted(server, tmp_path):
    dest = tmp_path / "VCTK-Corpus-0.92.zip"
    with pytest.raises(DownloadError, match="sha256 mismatch") as info:
        download_file(server.url, dest, sha256=_sha256(server.data + b"x"), progress=False)
    assert "\n" not in str(info.value)
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()


def test_vctk_extracted_once(server, tmp_path, caplog, monkeypatch):
    root = download_vctk(tmp_path, url=server.url, sha256=_sha256(server.data), progress=False)
    assert root == tmp_path / "VCTK-Corpus-0.92"
    assert (root / "wav48_silence_trimmed" / "p226" / "p226_002_mic1.flac").is_file()
    assert (root / "txt" / "p225" / "p225_001.txt").read_text() == "Please call Stella.\n"
    assert len(server.ranges) == 1

    calls = []
    monkeypatch.setattr(zipfile.ZipFile, "extract", lambda *a, **k: calls.append(a))
    with caplog.at_level(logging.INFO, logger=download.__name__):
        assert download_vctk(tmp_path, url=server.url, sha256=_sha256(server.data), progress=False) == root
    assert calls == []
    assert len(server.ranges) == 1  # nothing downloaded again
    assert "skipping" in caplog.text


def test_interrupted_extraction_is_redone(server, tmp_path):
    archive = download_file(server.url, tmp_path / "v.zip", sha256=_sha256(server.data), progress=False)
    dest = tmp_path / "VCTK-Corpus-0.92"
    (dest / "txt").mkdir(parents=True)  # a half-finished earlier extraction: no marker
    download.extract_once(archive, dest)
    assert (dest / download.EXTRACTED_MARKER).is_file()
    assert (dest / "speaker-info.txt").is_file()


def test_cli_prints_corpus_root(server, tmp_path, capsys):
    rc = download.main(["--out", str(tmp_path), "--url", server.url, "--sha256", _sha256(server.data)])
    assert rc == 0
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]) == tmp_path / "VCTK-Corpus-0.92"
    rc = download.main(["--out", str(tmp_path / "bad"), "--url", server.url, "--sha256", "0" * 64])
    assert rc == 2
    assert "mismatch" in capsys.readouterr().err
