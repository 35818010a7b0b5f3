"""The documentation is self-contained: docs/architecture.md exists, every relative link of the
README and docs/ resolves to a file of the repository, and no file cites a document that is
not in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# Documents outside the repository, written so that this file does not name them itself.
CITED_ELSEWHERE = ("DESIGN" + ".md", "STYLE" + ".md", ".." + "/shared")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def tracked_files() -> list[Path]:
    """The repository's files: git's tracked and untracked-but-not-ignored ones (else every file)."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "recipes").rglob("README.md"))]


def test_architecture_document_exists_and_the_readme_links_it():
    assert ARCHITECTURE.is_file()
    assert "docs/architecture.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def citations_outside(paths: list[Path]) -> list[str]:
    """'file:line: name' for every line of these files that names a document outside the repository."""
    found = []
    for path in paths:
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files
        for number, line in enumerate(text.splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{number}: {name}" for name in CITED_ELSEWHERE if name in line]
    return found


def test_no_file_cites_a_document_outside_the_repository():
    found = citations_outside(tracked_files())
    assert not found, "\n".join(found)


@pytest.mark.parametrize("markdown", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_to_repository_files(markdown):
    broken = []
    for target in _LINK.findall(markdown.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        resolved = (markdown.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    assert not broken, f"{markdown.relative_to(ROOT)}: links to missing files: {broken}"


def test_the_link_check_sees_links():
    assert _LINK.findall("see [the design](docs/architecture.md#layers) and [x](https://a.b/c)") == [
        "docs/architecture.md#layers", "https://a.b/c"]
