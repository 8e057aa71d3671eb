"""Running system tools: one place that turns a failed command into a one-line error."""

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner_ctl.errors import RunnerCtlError, StepError

__all__ = ["run", "run_timed"]


def run(
    argv: Sequence[str | Path],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    input_text: str | None = None,
) -> str:
    """Run ``argv``, return its stdout; on failure raise naming ``what`` and stderr's last line."""
    args = [str(a) for a in argv]
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            env=None if env is None else dict(env),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise RunnerCtlError(f"{what} failed: {args[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise RunnerCtlError(f"{what} failed: {args[0]} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        last = lines[-1] if lines else "(no output)"
        raise RunnerCtlError(f"{what} failed (exit {done.returncode}): {last}")
    return done.stdout


def run_timed(
    argv: Sequence[str | Path], *, what: str, cwd: Path, env: Mapping[str, str], timeout: float
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a child whose exit code the caller interprets; return it with its wall-clock seconds."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StepError(f"{what} did not finish within {timeout:.0f} s") from None
    return done, time.monotonic() - started
