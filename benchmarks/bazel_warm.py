"""How much a Bazel server that survives the CI runner's cleanup saves the next job.

    .venv/bin/python benchmarks/bazel_warm.py [--json] [--host NAME] [--keep]

On a disposable test host (booted and deployed with deploys/runner_host.py, or an already
deployed one such as a host kept by ``runner-ctl rehearse --keep``, given with ``--host``),
as the runner user, against tests/workspaces/genrules (320 genrule targets), after one full
build:

+ cold: the null build right after ``bazel shutdown`` (server start, loading, analysis);
+ warm: the null build with the same server, as job 1 (median of three);
+ next job: job 1's processes killed as the Actions runner kills them at the end of a job
  (tests/standins/actions_runner.py), then job 2's null build.

Times are taken on the host (no SSH in them). Only one test host may boot at a time on a
machine (they share its swap): run it when no rehearsal is running. With ``--json`` the last line is
``{"cold_seconds", "warm_seconds", "next_job_seconds", "server_survived"}``.
Goal: the next job at least 10 times faster than cold and within 1.5 times of warm.
"""

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.standins, run from anywhere

from tests.standins.actions_runner import cleanup_command
from tests.workspaces import GENRULES, copy_to_host

from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.pyinfra_run import run_deploy
from runner_ctl.rehearse import REHEARSAL_VOLUME_MB
from runner_ctl.testhost import DisposableHost, boot_host, destroy_host, get_host

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUNNER = BaseLayerSettings().runner_user
WORKSPACE = f"/home/{RUNNER}/bench-genrules"


def _ssh(host: DisposableHost, command: str, timeout: float = 600) -> str:
    done = subprocess.run(
        ["ssh", "-F", host.ssh_config, "-o", "BatchMode=yes", host.name, command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"on {host.name}: {command!r} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def _as_runner(host: DisposableHost, command: str, job: str | None = None) -> str:
    env = f"RUNNER_TRACKING_ID={shlex.quote(job)} " if job else ""
    script = f"cd {WORKSPACE} && {env}{command}"
    return _ssh(host, f"runuser -l {RUNNER} -c {shlex.quote(script)}")


def _timed_null_build(host: DisposableHost, job: str) -> float:
    """Seconds of one ``bazel build //...`` measured on the host."""
    command = "s=$(date +%s%N); bazel build //... >/dev/null 2>&1 && e=$(date +%s%N) && echo $(( (e - s) / 1000 ))"
    return int(_as_runner(host, command, job=job).strip()) / 1e6


def _server_pid(host: DisposableHost) -> int:
    base = _as_runner(host, "bazel info output_base 2>/dev/null").strip()
    return int(_ssh(host, f"cat {base}/server/server.pid.txt").strip())


def measure(host: DisposableHost) -> tuple[float, float, float, bool]:
    """(cold, warm, next job) seconds and whether job 1's server served job 2."""
    copy_to_host(host, GENRULES, user=RUNNER, dest=WORKSPACE)
    _as_runner(host, "bazel build //... >/dev/null 2>&1")  # outputs exist: later builds are null builds
    _as_runner(host, "bazel shutdown")
    cold = _timed_null_build(host, "job1")
    warm = statistics.median(_timed_null_build(host, "job1") for _ in range(3))
    before = _server_pid(host)
    _ssh(host, cleanup_command("job1"))
    next_job = _timed_null_build(host, "job2")
    return cold, warm, next_job, _server_pid(host) == before


def _deploy(host: DisposableHost) -> None:
    with tempfile.TemporaryDirectory() as logs:
        run_deploy(
            project_root=PROJECT_ROOT,
            inventory=PROJECT_ROOT / "inventories" / "testhost.py",
            deploy=PROJECT_ROOT / "deploys" / "runner_host.py",
            env={"RUNNER_CTL_TESTHOST": host.name},
            log_path=Path(logs) / "deploy.log",
            label="deploy",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    parser.add_argument("--host", help="an already deployed test host (e.g. kept by `runner-ctl rehearse --keep`)")
    parser.add_argument("--keep", action="store_true", help="keep the host this run boots")
    args = parser.parse_args()
    host = get_host(args.host) if args.host else boot_host(volume_mb=REHEARSAL_VOLUME_MB)
    try:
        if not args.host:
            _deploy(host)
        cold, warm, next_job, survived = measure(host)
    finally:
        if not args.host and not args.keep:
            destroy_host(host.name)
    print(
        f"cold null build {cold:.2f} s, warm {warm:.2f} s, next job after the runner's cleanup {next_job:.2f} s "
        f"({cold / next_job:.1f}x faster than cold, {next_job / warm:.2f}x warm); "
        f"server survived: {survived}",
        file=sys.stderr if args.json else sys.stdout,
    )
    if args.json:
        figures = {"cold_seconds": cold, "warm_seconds": warm, "next_job_seconds": next_job}
        print(json.dumps({**{key: round(value, 3) for key, value in figures.items()}, "server_survived": survived}))


if __name__ == "__main__":
    main()
