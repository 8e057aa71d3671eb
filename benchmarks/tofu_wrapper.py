"""The cached-path overhead of bin/tofu over exec'ing the binary directly.

    .venv/bin/python benchmarks/tofu_wrapper.py [--runs 200]

Builds a scratch checkout (this repository's bin/tofu and its helper, a lockfile with an
entry for this machine) whose cache already holds the "binary" — a copy of /bin/true, so
the binary's own run time is as small as it gets and the difference is the wrapper. Runs
the bare binary and the wrapper alternately, --runs times each, and prints the medians
and the overhead. It measures; it does not judge (the goal is <= 10 ms).
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from runner_ctl.tools import current_platform  # noqa: E402 - after the path set-up above

GOAL_MS = 10.0


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs of each (default 200, at least 50)")
    args = parser.parse_args()
    if args.runs < 50:
        parser.error("--runs must be at least 50")
    with tempfile.TemporaryDirectory(prefix="runner-ctl-tofu-bench-") as tmp:
        clone = Path(tmp) / "clone"
        (clone / "bin").mkdir(parents=True)
        (clone / "src" / "runner_ctl").mkdir(parents=True)
        shutil.copy2(ROOT / "bin" / "tofu", clone / "bin" / "tofu")
        shutil.copy2(ROOT / "src" / "runner_ctl" / "tools.py", clone / "src" / "runner_ctl" / "tools.py")
        bare = Path("/bin/true")
        digest = hashlib.sha256(bare.read_bytes()).hexdigest()
        os_name, cpu = current_platform()
        # The real lockfile's shape: four entries, this machine's last (the longest walk).
        entries = [
            {"kind": "archive", "url": f"https://example.invalid/{n}.zip", "file": "tofu", "sha256": f"{n}" * 64,
             "os": o, "cpu": c, "type": "zip"}
            for n, (o, c) in enumerate([("macos", "arm64"), ("macos", "x86_64"), ("windows", "x86_64")], start=1)
        ]  # fmt: skip
        entries.append({"kind": "archive", "url": "https://example.invalid/t.zip", "file": "tofu", "sha256": digest,
                        "os": os_name, "cpu": cpu, "type": "zip"})  # fmt: skip
        (clone / "multitool.lock.json").write_text(json.dumps({"tofu": {"binaries": entries}}, indent=2) + "\n")
        cache = Path(tmp) / "cache"
        cached = cache / "tools" / digest / "tofu"
        cached.parent.mkdir(parents=True)
        shutil.copy2(bare, cached)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "RUNNER_CTL_CACHE_DIR": str(cache)}
        wrapper = [str(clone / "bin" / "tofu"), "version"]
        direct = [str(cached), "version"]
        for _ in range(5):  # warm the page cache for both
            timed(wrapper, env)
            timed(direct, env)
        wrapped_s, direct_s = [], []
        for _ in range(args.runs):
            wrapped_s.append(timed(wrapper, env))
            direct_s.append(timed(direct, env))
    wrapped_ms = statistics.median(wrapped_s) * 1000
    direct_ms = statistics.median(direct_s) * 1000
    overhead = wrapped_ms - direct_ms
    print(f"runs: {args.runs} each, binary: /bin/true (as the cached tofu)")
    print(f"direct exec median ms: {direct_ms:.2f}")
    print(f"bin/tofu median ms: {wrapped_ms:.2f}")
    print(
        f"overhead median ms: {overhead:.2f} (goal <= {GOAL_MS:.0f} ms: {'met' if overhead <= GOAL_MS else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
