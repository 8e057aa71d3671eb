"""The git questions the deploy stale guard asks, answered in a (possibly shallow) checkout.

A CI checkout is often shallow (depth 1): it has the commit being deployed but not the
history that says whether the last deployed commit is its ancestor. Missing commits are
fetched by id; a shallow history is deepened from the remote before an ancestry answer is
trusted; when neither works the caller is told how to fix the checkout.
"""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runner_ctl._proc import run_unchecked
from runner_ctl.errors import PrerequisiteError, RunnerCtlError, ToolMissingError, ToolTimeoutError, UsageError

__all__ = ["AncestryUnavailableError", "GitRepo", "Relation"]

FETCH_TIMEOUT = 300.0


class AncestryUnavailableError(RunnerCtlError):
    """The history needed for the stale guard cannot be had in this checkout."""

    exit_code = 3


@dataclass(frozen=True)
class Relation:
    """How a candidate commit relates to the last deployed one."""

    same: bool
    candidate_is_ancestor: bool  # candidate is older: deploying it would go backwards
    last_is_ancestor: bool  # candidate is newer: a fast-forward

    @property
    def diverged(self) -> bool:
        return not (self.same or self.candidate_is_ancestor or self.last_is_ancestor)


class GitRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        if self._git("rev-parse", "--git-dir", check=False).returncode != 0:
            raise UsageError(f"--repo-dir {path} is not a git repository; run from the checkout or pass --repo-dir")

    def _git(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        command = ["git", "-C", str(self.path), *args]
        try:
            # Never prompt for credentials: a CI job would hang instead of failing.
            done = run_unchecked(command, what="git", timeout=timeout, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
        except ToolMissingError as error:
            raise PrerequisiteError(f"{error.message}; install git or put it on PATH") from None
        except ToolTimeoutError:
            raise RunnerCtlError(
                f"git {args[0]} in {self.path} took longer than {timeout:g} s and was stopped; "
                "check that origin is reachable and answers"
            ) from None
        if check and done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:]
            raise RunnerCtlError(f"git {' '.join(args)} failed: {last[0] if last else f'exit {done.returncode}'}")
        return done

    def _resolve_local(self, commit: str) -> str | None:
        done = self._git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def _fetch(self, *refspec: str) -> bool:
        remote = "origin"
        return (
            self._git("fetch", "--quiet", "--no-tags", remote, *refspec, check=False, timeout=FETCH_TIMEOUT).returncode
            == 0
        )

    def resolve(self, commit: str) -> str:
        """The full id of ``commit``, fetching it from origin if the checkout lacks it."""
        found = self._resolve_local(commit)
        if found is None and self._fetch(commit):
            found = self._resolve_local(commit)
        if found is None:
            raise UsageError(
                f"--commit {commit} does not resolve in {self.path}, not even after fetching it from origin; "
                "pass a commit id that this repository (or its origin) has"
            )
        return found

    def has(self, commit: str) -> bool:
        return self._resolve_local(commit) is not None or (
            self._fetch(commit) and self._resolve_local(commit) is not None
        )

    def _is_shallow(self) -> bool:
        return self._git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"

    def _ensure_history(self, *commits: str) -> None:
        for commit in commits:
            if not self.has(commit):
                raise AncestryUnavailableError(
                    f"commit {commit} is not in {self.path} and origin did not give it; the stale guard cannot "
                    "compare commits: fetch the repository's history (actions/checkout fetch-depth: 0, "
                    "GitLab GIT_DEPTH: 0) or pass --repo-dir to a full clone"
                )
        if self._is_shallow() and not self._fetch("--unshallow"):
            raise AncestryUnavailableError(
                f"{self.path} is a shallow clone and origin could not deepen it, so commit ancestry is unknown: "
                "check out with full history (actions/checkout fetch-depth: 0, GitLab GIT_DEPTH: 0)"
            )

    def _is_ancestor(self, older: str, newer: str) -> bool:
        done = self._git("merge-base", "--is-ancestor", older, newer, check=False)
        if done.returncode not in (0, 1):
            raise AncestryUnavailableError(f"git cannot tell whether {older} precedes {newer}: {done.stderr.strip()}")
        return done.returncode == 0

    def relation(self, candidate: str, last: str) -> Relation:
        if candidate == last:
            return Relation(same=True, candidate_is_ancestor=False, last_is_ancestor=False)
        self._ensure_history(candidate, last)
        return Relation(
            same=False,
            candidate_is_ancestor=self._is_ancestor(candidate, last),
            last_is_ancestor=self._is_ancestor(last, candidate),
        )

    def is_strict_descendant(self, other: str, of: str) -> bool:
        """Whether ``other`` is a newer commit built on ``of`` (False if it cannot be known)."""
        if other == of:
            return False
        try:
            self._ensure_history(of, other)
        except AncestryUnavailableError:
            return False
        return self._is_ancestor(of, other)
