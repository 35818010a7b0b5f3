"""Headless Chromium (Debian's package) opens a samples page and plays its audio metadata.

The page is built from a tiny run inside the test (tests/test_report.py's fake run) and
served from 127.0.0.1. A copy of the page with a small script is loaded with
``--dump-dom``: the script records each <audio> element's duration (``loadedmetadata``)
or its media error as data attributes, which the dumped DOM then shows. A second
Chromium run saves a screenshot of the page itself. Install Chromium with
``make browser-deps`` (Debian package ``chromium``).
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import subprocess
import threading
from pathlib import Path

import pytest
from test_report import make_fake_run

from speechvq.analysis.report import build_report

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium (make browser-deps)"),
]

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--mute-audio", "--autoplay-policy=no-user-gesture-required"]

_PROBE_SCRIPT = """<script>
document.querySelectorAll('audio').forEach(function (a) {
  a.addEventListener('loadedmetadata', function () { a.setAttribute('data-duration', String(a.duration)); });
  a.addEventListener('error', function () { a.setAttribute('data-error', String(a.error && a.error.code)); });
  a.preload = 'auto';
  a.load();
});
</script>"""


class _Audio(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "audio":
            self.elements.append(dict(attrs))


def _audio_elements(markup: str) -> list[dict[str, str | None]]:
    parser = _Audio()
    parser.feed(markup)
    return parser.elements


@pytest.fixture
def served_page(tmp_path):
    """(page folder, base URL): the report of a tiny run, served by a thread on 127.0.0.1."""
    index = build_report(make_fake_run(tmp_path))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(index.parent))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield index.parent, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _chromium(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile_{name}"  # a fresh profile per run
    return subprocess.run([str(CHROMIUM), *_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_every_audio_element_plays(served_page, tmp_path):
    folder, url = served_page
    page = (folder / "index.html").read_text(encoding="utf-8")
    expected = _audio_elements(page)
    assert len(expected) == 4
    for element in expected:
        assert (folder / element["src"]).is_file(), element["src"]
    (folder / "check.html").write_text(page.replace("</body>", _PROBE_SCRIPT + "</body>"), encoding="utf-8")

    run = _chromium(tmp_path, "dom", "--virtual-time-budget=10000", "--dump-dom", f"{url}/check.html")
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = _audio_elements(run.stdout)
    assert [e["src"] for e in loaded] == [e["src"] for e in expected]
    for element in loaded:
        assert element.get("data-error") is None, f"{element['src']}: media error {element['data-error']}"
        assert element.get("data-duration") is not None, f"{element['src']}: no metadata loaded"
        assert float(element["data-duration"]) > 0, element

    shot = tmp_path / "page.png"
    run = _chromium(tmp_path, "shot", "--window-size=1280,1800", "--hide-scrollbars",
                    f"--screenshot={shot}", f"{url}/index.html")
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 10_000  # a rendered page, not an empty image


def test_broken_audio_is_detected(served_page, tmp_path):
    """The check can fail: a truncated wav yields a media error, not a duration."""
    folder, url = served_page
    page = (folder / "index.html").read_text(encoding="utf-8")
    broken = _audio_elements(page)[0]["src"]
    (folder / broken).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (folder / "check.html").write_text(page.replace("</body>", _PROBE_SCRIPT + "</body>"), encoding="utf-8")
    run = _chromium(tmp_path, "dom", "--virtual-time-budget=10000", "--dump-dom", f"{url}/check.html")
    assert run.returncode == 0, run.stderr[-2000:]
    first = _audio_elements(run.stdout)[0]
    assert first.get("data-duration") is None and first.get("data-error") is not None
