"""The documentation site keeps what the README used to say, and the README stays short.

``tests/fixtures/former-readme-terms.txt`` holds every code span of the README as it was
before the site existed (1,161 lines at bbce855): keys, commands, flags, files, exit codes,
JSON fields. Each must still be found in the site or the README, so moving the README's
content into docs/ lost none of it.
"""

import re
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
