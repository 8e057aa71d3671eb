"""A registered CI runner as both forges describe it, in one shape."""

from dataclasses import dataclass

__all__ = ["RunnerInfo"]


@dataclass(frozen=True)
class RunnerInfo:
    """One runner registration on GitHub or GitLab.

    ``contacted_at`` is when the forge last heard from it (epoch seconds): GitLab says,
    GitHub gives no such time (None).
    """

    id: int
    name: str
    online: bool
    busy: bool
    labels: tuple[str, ...]
    status: str  # the forge's own word: online/offline (GitHub), online/offline/stale/never_contacted (GitLab)
    contacted_at: float | None = None
