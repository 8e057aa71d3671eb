"""What every request to the GitLab REST API (v4) carries."""

from urllib.parse import quote

__all__ = ["GITLAB_API", "gitlab_headers", "gitlab_id"]

GITLAB_API = "https://gitlab.com/api/v4"


def gitlab_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def gitlab_id(project_or_group: str) -> str:
    """A numeric id as it is, a path URL-encoded: the ``:id`` of ``/projects/:id``."""
    return quote(project_or_group, safe="")
