"""Time `runner-ctl rehearse`: first-run and second-run (no-op) seconds and operation counts.

    .venv/bin/python benchmarks/rehearse.py [--runs 3]

Runs the real CLI (root, systemd-nspawn) and prints one line per rehearsal plus medians.
The first rehearsal on a machine also builds the cached rootfs and apt repository; the
line says whether those caches were warm. Record the figures in docs/benchmarks.md.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from runner_ctl.testhost import harness_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def rehearse_once() -> tuple[dict[str, object], float, bool]:
    warm = (harness_dir() / "rootfs").is_dir() and any((harness_dir() / "rootfs").iterdir())
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "runner_ctl", "rehearse", "--json"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    total = time.monotonic() - started
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    if not report["ok"]:
        raise SystemExit(f"rehearsal failed at {report['failed_step']}: {report['error']}")
    return report, total, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rehearsals to run (default 3)")
    runs = parser.parse_args().runs
    firsts, seconds, totals = [], [], []
    print("run  caches  first: s / ops / changed   second: s / ops / changed   checks   total s")
    for index in range(1, runs + 1):
        report, total, warm = rehearse_once()
        first, second, checks = report["first_run"], report["second_run"], report["checks"]
        assert isinstance(first, dict) and isinstance(second, dict) and isinstance(checks, dict)
        print(
            f"{index:>3}  {'warm' if warm else 'cold':>6}  "
            f"{first['seconds']:>8.1f} / {first['operations']:>3} / {first['changed']:>3}      "
            f"{second['seconds']:>8.1f} / {second['operations']:>3} / {second['changed']:>3}      "
            f"{checks['passed']}/{checks['passed'] + checks['failed']}   {total:>7.1f}"
        )
        firsts.append(float(first["seconds"]))
        seconds.append(float(second["seconds"]))
        totals.append(total)
    print(
        f"median: first run {statistics.median(firsts):.1f} s, second (no-op) run "
        f"{statistics.median(seconds):.1f} s, whole rehearsal {statistics.median(totals):.1f} s"
    )


if __name__ == "__main__":
    main()
