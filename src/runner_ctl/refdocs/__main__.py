"""``python -m runner_ctl.refdocs [--check] [DIR]``: write (or check) the reference pages in DIR.

DIR defaults to docs/reference of the checkout this runs from. Exit 0 when the pages are
current (or were rewritten), 1 with ``--check`` when some differ, 2 for bad arguments.
"""

import sys
from pathlib import Path

from runner_ctl.refdocs import render_pages

USAGE = "usage: python -m runner_ctl.refdocs [--check] [DIR]"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    rest = [arg for arg in argv if arg != "--check"]
    if len(rest) > 1 or any(arg.startswith("-") for arg in rest):
        print(USAGE, file=sys.stderr)
        return 2
    directory = Path(rest[0]) if rest else Path(__file__).resolve().parents[3] / "docs" / "reference"
    if not directory.is_dir():
        print(f"refdocs: {directory} is not a directory; give docs/reference of a checkout", file=sys.stderr)
        return 2
    stale = []
    for name, text in render_pages().items():
        path = directory / name
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(name)
        if not check:
            path.write_text(text)
    if check and stale:
        print(f"refdocs: out of date: {', '.join(stale)}; run python -m runner_ctl.refdocs", file=sys.stderr)
        return 1
    print(f"refdocs: {'rewrote ' + ', '.join(stale) if stale else 'all pages current'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
