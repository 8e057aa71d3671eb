"""Running system tools: the one place a child process is started and waited for.

Every child runs in its own process group with stdin closed (unless it is given input), so a
timeout or an interrupt ends its helpers too (a git fetch runs upload-pack or ssh; left behind,
they would hold the output pipes open), and nothing can stop to prompt. A missing program or a
timeout is a one-line error naming ``what``.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner_ctl.errors import RunnerCtlError, StepError, ToolMissingError, ToolNotExecutableError, ToolTimeoutError

__all__ = ["last_line", "run", "run_timed", "run_unchecked"]


def _kill_group(process: "subprocess.Popen[str]") -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()  # reaps it; the pipes close now that the whole group is gone


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

    A missing program raises ToolMissingError and a timeout ToolTimeoutError (the child's
    whole process group is killed), each a one-line message naming ``what``.
    """
    args = [str(a) for a in argv]
    try:
        process = subprocess.Popen(
            args,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL if input_text is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",  # a tool's output that is not UTF-8 must not become a traceback
            start_new_session=True,
        )
    except FileNotFoundError:
        raise ToolMissingError(f"{what} failed: {args[0]} is not installed (or not on PATH)") from None
    except PermissionError:
        raise ToolNotExecutableError(f"{what} failed: {args[0]} is not executable") from None
    except OSError as error:  # e.g. a script without a #! line
        raise ToolMissingError(f"{what} failed: cannot run {args[0]} ({error.strerror or error})") from None
    try:
        stdout, stderr = process.communicate(input_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise ToolTimeoutError(f"{what} failed: {args[0]} did not finish within {timeout:.0f} s") from None
    except BaseException:
        _kill_group(process)
        raise
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


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
