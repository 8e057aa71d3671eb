"""A stand-in of the GitHub CLI (`gh`), not gh itself: `gh pr list` and `gh pr create` as the
runner-count example calls them, against a JSON file of open pull requests.

    GH_STANDIN_STATE=FILE gh pr list --head BRANCH --state open --json number --jq '.[].number'
    GH_STANDIN_STATE=FILE gh pr create --head BRANCH --title T --body B

It refuses to run without GH_TOKEN in its environment, as gh does in CI, and never prints it.
"""

import argparse
import json
import os
import sys
from pathlib import Path


def main() -> int:
    if not os.environ.get("GH_TOKEN"):
        print(
            "gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment variable.",
            file=sys.stderr,
        )
        return 4
    state = Path(os.environ["GH_STANDIN_STATE"])
    prs: list[dict[str, object]] = json.loads(state.read_text()) if state.exists() else []
    parser = argparse.ArgumentParser(prog="gh")
    parser.add_argument("group", choices=["pr"])
    parser.add_argument("action", choices=["list", "create"])
    parser.add_argument("--head", required=True)
    parser.add_argument("--state", default="open")
    parser.add_argument("--json")
    parser.add_argument("--jq")
    parser.add_argument("--title")
    parser.add_argument("--body")
    args = parser.parse_args()
    if args.action == "list":
        for pr in prs:
            if pr["head"] == args.head:
                print(pr["number"])
        return 0
    if any(pr["head"] == args.head for pr in prs):
        print(f"a pull request for branch {args.head!r} already exists", file=sys.stderr)
        return 1
    prs.append({"number": len(prs) + 1, "head": args.head, "title": args.title, "body": args.body})
    state.write_text(json.dumps(prs))
    print(f"https://github.invalid/pull/{len(prs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
