"""Running system tools: one place that turns a failed command into a one-line error."""

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner_ctl.errors import RunnerCtlError, StepError, ToolMissingError, ToolTimeoutError

__all__ = ["last_line", "run", "run_timed", "run_unchecked"]


def run_unchecked(
    argv: Sequence[str | Path],
    *,
    what: str,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a child whose exit code the caller interprets.

    A missing program raises ToolMissingError and a timeout ToolTimeoutError (the child is
    killed), each a one-line message naming ``what``.
    """
    args = [str(a) for a in argv]
    try:
        return subprocess.run(
            args,
            cwd=cwd,
            env=None if env is None else dict(env),
            input=input_text,
            capture_output=True,
            text=True,
            errors="replace",  # a tool's output that is not UTF-8 must not become a traceback
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ToolMissingError(f"{what} failed: {args[0]} is not installed (or not on PATH)") from None
    except PermissionError:
        raise ToolMissingError(f"{what} failed: {args[0]} is not executable") from None
    except subprocess.TimeoutExpired:
        raise ToolTimeoutError(f"{what} failed: {args[0]} did not finish within {timeout:.0f} s") from None


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    """The last non-blank line the child wrote (stderr first), for a one-line error."""
    lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


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
    done = run_unchecked(argv, what=what, cwd=cwd, env=env, timeout=timeout, input_text=input_text)
    if done.returncode != 0:
        raise RunnerCtlError(f"{what} failed (exit {done.returncode}): {last_line(done)}")
    return done.stdout


def run_timed(
    argv: Sequence[str | Path], *, what: str, cwd: Path, env: Mapping[str, str], timeout: float
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a child whose exit code the caller interprets; return it with its wall-clock seconds."""
    started = time.monotonic()
    try:
        done = run_unchecked(argv, what=what, cwd=cwd, env=env, timeout=timeout)
    except ToolTimeoutError:
        raise StepError(f"{what} did not finish within {timeout:.0f} s") from None
    return done, time.monotonic() - started
