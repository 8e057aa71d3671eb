#!/usr/bin/env python3
"""A stand-in for ``tofu -chdir=DIR output -no-color -json``: prints a recorded document.

It is not OpenTofu (no binary can be downloaded here). It accepts only the arguments
inventories/production.py passes, as tofu's CLI parses them (``-chdir=`` first, then the
``output`` subcommand and its flags), and answers the way ``tofu output -json`` does: the
outputs document on stdout and exit 0, or tofu's diagnostic text on stderr and exit 1.
Its behaviour comes from the environment a test sets:

    TOFU_STANDIN_DOCUMENT  file whose text is printed on stdout (a recorded document)
    TOFU_STANDIN_STDERR    text printed on stderr
    TOFU_STANDIN_EXIT      exit status (default 0)
    TOFU_STANDIN_LOG       file to which each call appends its argv as one JSON line

Standard library only: it runs with whatever python3 is on PATH.
"""

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    log = os.environ.get("TOFU_STANDIN_LOG")
    if log:
        with Path(log).open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(argv) + "\n")
    if not argv or not argv[0].startswith("-chdir=") or argv[1:2] != ["output"]:
        sys.stderr.write("tofu stand-in: expected -chdir=DIR output [-no-color] -json\n")
        return 2
    if not Path(argv[0].removeprefix("-chdir=")).is_dir():
        # tofu's own words for a missing -chdir directory.
        sys.stderr.write(
            f"Error handling -chdir option: chdir {argv[0].removeprefix('-chdir=')}: no such file or directory\n"
        )
        return 1
    if "-json" not in argv[2:] or any(arg not in ("-json", "-no-color") for arg in argv[2:]):
        sys.stderr.write("tofu stand-in: only -json and -no-color are recorded\n")
        return 2
    document = os.environ.get("TOFU_STANDIN_DOCUMENT")
    if document:
        sys.stdout.write(Path(document).read_text(encoding="utf-8"))
    sys.stderr.write(os.environ.get("TOFU_STANDIN_STDERR", ""))
    return int(os.environ.get("TOFU_STANDIN_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
