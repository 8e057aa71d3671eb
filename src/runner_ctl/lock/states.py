"""The deploy lock's vocabulary: request states, outcome statuses, and what a name may be."""

import re
from enum import StrEnum

__all__ = [
    "ENV_PATTERN",
    "FINAL_BY_HOLDER",
    "REQUEST_SECRET_HEADER",
    "Outcome",
    "RequestState",
    "validate_env",
]

# An environment name: also a path segment of the API, so no slashes and no leading dot.
ENV_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Acting on a deploy request (wait, heartbeat, finish, withdraw) needs this header: the secret
# that only the request's enqueue answered with.
REQUEST_SECRET_HEADER = "X-Request-Secret"  # noqa: S105 - the header's name, not a secret


class RequestState(StrEnum):
    QUEUED = "queued"  # waiting in its environment's FIFO queue
    GRANTED = "granted"  # holds the environment's lock, under a lease
    DONE = "done"  # has an outcome; never changes again


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED_STALE = "skipped_stale"  # an ancestor of the last deployed commit
    SUPERSEDED = "superseded"  # a descendant was queued behind it (policy latest)
    REFUSED = "refused"  # diverged from the last deployed commit, no --allow-rollback
    TIMEOUT = "timeout"  # gave up waiting (--wait-timeout)
    CANCELLED = "cancelled"  # signalled while its command ran
    WITHDRAWN = "withdrawn"  # left the queue before its grant
    EXPIRED = "expired"  # its client stopped renewing the lease
    LEASE_LOST = "lease_lost"  # its lease expired while the client still lived


# Outcomes a lock holder reports itself when it finishes.
FINAL_BY_HOLDER = frozenset(
    {
        Outcome.SUCCEEDED,
        Outcome.FAILED,
        Outcome.SKIPPED_STALE,
        Outcome.SUPERSEDED,
        Outcome.REFUSED,
        Outcome.CANCELLED,
    }
)


def validate_env(env: str) -> str:
    """Return ``env`` if it is a valid environment name, else raise ValueError saying why."""
    if not ENV_PATTERN.match(env):
        raise ValueError(
            f"environment name {env!r} is invalid; expected 1-64 characters of letters, digits, "
            "'.', '_' or '-', starting with a letter or digit (e.g. 'production')"
        )
    return env
