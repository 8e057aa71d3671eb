"""The documentation site keeps what the README used to say, and the README stays short.

``tests/fixtures/former-readme-terms.txt`` holds every inline code span of the README as it was
before the site existed (1,161 lines at bbce855): keys, commands, flags, files, exit codes,
JSON fields. Each must still be found in the site or the README, so moving the README's
content into docs/ lost none of it. (Left out: the two spans that named ``keydocs``, the
README table generator that ``runner_ctl.refdocs`` replaced.)
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
QUICKSTART = [
    "./bin/runner-ctl rehearse",
    "./bin/test",
]


def _normalized(text: str) -> str:
    return " ".join(text.split())


def _site_text() -> str:
    pages = sorted(DOCS.rglob("*.md"))
    return _normalized("\n".join(page.read_text() for page in [*pages, README]))


def test_every_term_of_the_former_readme_is_in_the_site() -> None:
    terms = (ROOT / "tests/fixtures/former-readme-terms.txt").read_text().splitlines()
    site = _site_text()
    missing = [term for term in terms if term and term not in site]
    assert not missing, (
        f"{len(missing)} of {len(terms)} former README terms are nowhere in docs/ or README.md: {missing}"
    )


def test_the_readme_is_short_and_its_first_commands_are_the_quickstart() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    blocks = re.findall(r"```(?:sh|console|bash)?\n(.*?)```", text, re.DOTALL)
    assert blocks, "the README has no command block"
    commands = [line.split("#")[0].strip() for line in blocks[0].splitlines() if line.strip()]
    assert commands == QUICKSTART


def test_every_page_of_docs_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r":\s+([\w/.-]+\.md)\s*$", nav, re.MULTILINE))
    pages = {page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md")}
    assert pages == listed


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """What .ci/run does: a broken link, a missing anchor or a page outside the nav fails the build."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()
