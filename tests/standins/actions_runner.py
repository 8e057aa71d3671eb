"""A stand-in for the GitHub Actions runner's end-of-job orphan-process cleanup.

At the end of a job the runner kills every process whose environment carries the job's
``RUNNER_TRACKING_ID`` (actions/runner, ``ProcessInvoker``; issues #598 and #1354). This
does the same on a host, by reading each ``/proc/PID/environ``.
"""

import shlex

__all__ = ["cleanup_command"]

_CLEANUP = r"""
for environ in /proc/[0-9]*/environ; do
  pid=${environ#/proc/}; pid=${pid%/environ}
  if tr '\0' '\n' < "$environ" 2>/dev/null | grep -qx "RUNNER_TRACKING_ID=$1"; then
    kill -9 "$pid" 2>/dev/null && echo "$pid"
  fi
done
true
"""


def cleanup_command(job: str) -> str:
    """A root shell command that kills job ``job``'s processes and prints their PIDs."""
    return f"sh -c {shlex.quote(_CLEANUP)} cleanup {shlex.quote(job)}"
