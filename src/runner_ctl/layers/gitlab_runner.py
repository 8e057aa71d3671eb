"""The GitLab runner layer's spec (``deploys/gitlab_runner.py``): GitLab Runner from GitLab's apt repository.

``gitlab-runner`` and ``gitlab-runner-helper-images`` come from GitLab's signed apt repository,
its key pinned by fingerprint, the version pinned and held. Each registration is a runner of
a project, a group or the instance, with its tags; its token is a runner authentication token
(``glrt-…``) from a secret reference, or one created on the operator's machine through
``POST /api/v4/user/runners`` with ``gitlab_runner_api_token``. With no registrations (the
default) nothing is installed.
"""

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runner_ctl.hostport import check_loopback
from runner_ctl.layers._spec import LayerSettings, LayerSpec

__all__ = [
    "GITLAB_KEY_FINGERPRINT",
    "GITLAB_KEY_URL",
    "GITLAB_REPO",
    "SPEC",
    "GitLabRegistration",
    "GitLabRunnerSettings",
    "package_version",
    "runner_name",
]

# GitLab's own repository and its metadata signing key ("GitLab B.V. (package repository
# signing key)", docs.gitlab.com/omnibus/update/package_signatures).
GITLAB_REPO = "https://packages.gitlab.com/runner/gitlab-runner/debian/"
GITLAB_KEY_URL = "https://packages.gitlab.com/gpg.key"
GITLAB_KEY_FINGERPRINT = "F6403F6544A38863DAA0B6E03F01618A51312F3F"

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(-\d+)?$")
# A tag is one word: GitLab splits tag lists at commas, and config and API carry them as is.
_TAG = re.compile(r"^[A-Za-z0-9._:/+-]{1,64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
_PATH = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]{0,254}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_ENV_VALUE = re.compile(r"^[A-Za-z0-9 ._:/@+=,%-]{0,1024}$")
_REFERENCE = re.compile(r"^(env|file|cmd):.+$")
_FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
_URL_CHARS = re.compile(r"^[A-Za-z0-9._~:/?=&%+@-]+$")


def _url(value: str, *, path_suffix: str | None = None) -> str:
    if not _URL_CHARS.fullmatch(value):
        raise ValueError("whitespace, quotes and '#' are not allowed in a URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host name")
    if path_suffix is not None and not parts.path.rstrip("/").endswith(path_suffix):
        raise ValueError(f"the URL must end with {path_suffix}")
    return value


def package_version(version: str) -> str:
    """The Debian package version of a release: GitLab's packages are ``X.Y.Z-1``."""
    return version if "-" in version else f"{version}-1"


def runner_name(prefix: str, host: str, index: int, name: str | None) -> str:
    """``<prefix><host>-<n>``, or ``<prefix><host>-<name>-1`` for a named registration (one runner each)."""
    return f"{prefix}{host}-{name}-1" if name else f"{prefix}{host}-{index}"


class GitLabRegistration(BaseModel):
    """One runner: a project, a group or the instance, with its tags."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    project: str | None = Field(None, description="the project's path (group/project) or numeric id")
    group: str | None = Field(None, description="the group's path or numeric id")
    instance: bool = Field(False, description="an instance runner (needs an admin's token)")
    tags: tuple[str, ...] = Field(
        (),
        description="the runner's tags, changed through the API (never re-registered); without "
        "gitlab_runner_api_token a token-referenced runner keeps the tags GitLab has",
    )
    run_untagged: bool = Field(False, description="also pick up jobs without tags")
    name: str | None = Field(None, description="a name part: <prefix><host>-<name>-1 instead of <prefix><host>-<n>")
    token: str | None = Field(
        None,
        description="secret reference to the runner's glrt- authentication token; None: created with the API token",
    )
    present: bool = Field(True, description="False deletes the runner in GitLab and removes it from the host")

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        if isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, tuple):
            raise ValueError("tags: not a list")
        for tag in value:
            if not isinstance(tag, str) or not _TAG.fullmatch(tag):
                raise ValueError(
                    f"tag {tag!r} is not one word of letters, digits and . _ : / + - (no spaces or commas)"
                )
        if len(set(value)) != len(value):
            raise ValueError("a tag is listed twice")
        return value

    @field_validator("project", "group")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not _PATH.fullmatch(value) or ".." in value or value.endswith("/")):
            raise ValueError(f"{value!r} is not a GitLab path (group/project) or numeric id")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError(f"name {value!r} is not lower-case letters, digits and '-' (up to 41)")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not _REFERENCE.fullmatch(value):
            # Never echo it: a token pasted here instead of its reference must not reach a log.
            raise ValueError("token is not a secret reference; expected env:NAME, file:PATH or cmd:COMMAND")
        return value

    @model_validator(mode="after")
    def _one_scope(self) -> "GitLabRegistration":
        scopes = [s for s, on in (("project", self.project), ("group", self.group), ("instance", self.instance)) if on]
        if len(scopes) != 1:
            raise ValueError(f"a registration names exactly one of project, group or instance (got {scopes or 'none'})")
        return self

    @property
    def target(self) -> str:
        """What ``runner-ctl runners`` and the API call it: a project or group path, or ``instance``."""
        return self.project or self.group or "instance"

    @property
    def runner_type(self) -> Literal["project_type", "group_type", "instance_type"]:
        if self.project:
            return "project_type"
        return "group_type" if self.group else "instance_type"


class GitLabRunnerSettings(LayerSettings):
    """Settings of the GitLab runner layer."""

    gitlab_runner_registrations: tuple[GitLabRegistration, ...] = Field(
        (),
        description=(
            "The runners on this host: each a project, group or the instance with its tags, a glrt- token "
            "reference or creation through the API, and present: False to delete it; empty installs nothing."
        ),
        examples=[[{"project": "acme/app", "tags": ["bazel", "linux"]}]],
        json_schema_extra={
            "form": "a list of {'project'|'group': PATH, or 'instance': True, 'tags': [...], 'name': ..., "
            "'token': 'env:NAME', 'run_untagged': bool, 'present': bool}"
        },
    )
    gitlab_runner_api_url: str = Field(
        "https://gitlab.com/api/v4",
        description="The GitLab REST API (v4) of GitLab.com or a self-managed GitLab; the runners' url is its origin.",
        examples=["https://gitlab.example.com/api/v4"],
        json_schema_extra={"form": "an http:// or https:// URL ending with /api/v4"},
    )
    gitlab_runner_api_token: str | None = Field(
        None,
        description=(
            "Secret reference to a GitLab token with the create_runner scope (creates runners) and manage_runner "
            "(changes tags, deletes runners); used on the operator's machine only, never written to the host."
        ),
        examples=["env:GITLAB_TOKEN"],
        json_schema_extra={"form": "None, or a secret reference env:NAME, file:PATH or cmd:COMMAND"},
    )
    gitlab_runner_version: str = Field(
        "17.7.1",
        description=(
            "The GitLab Runner release; gitlab-runner and gitlab-runner-helper-images are pinned to it "
            "(package version X.Y.Z-1 unless given) and held."
        ),
        examples=["17.7.1"],
        json_schema_extra={"form": "a release X.Y.Z, optionally with the package revision (X.Y.Z-1)"},
    )
    gitlab_runner_apt_repo: str = Field(
        GITLAB_REPO,
        description="GitLab's apt repository for Debian, or a mirror of it (suite bookworm, component main).",
        examples=[GITLAB_REPO],
        json_schema_extra={"form": "an http:// or https:// URL"},
    )
    gitlab_runner_apt_key_url: str = Field(
        GITLAB_KEY_URL,
        description="Where the operator's machine fetches the repository's signing key (then checks its fingerprint).",
        examples=[GITLAB_KEY_URL],
        json_schema_extra={"form": "an http:// or https:// URL"},
    )
    gitlab_runner_apt_key_fingerprint: str = Field(
        GITLAB_KEY_FINGERPRINT,
        description="The signing key's fingerprint; apt trusts only that key for this source (signed-by).",
        examples=[GITLAB_KEY_FINGERPRINT],
        json_schema_extra={"form": "40 hex digits (spaces allowed)"},
    )
    gitlab_runner_name_prefix: str = Field(
        "rc-",
        description="Runner names are <prefix><host>-<n>; `runner-ctl runners prune` deletes only names with it.",
        examples=["rc-"],
        json_schema_extra={"form": "lower-case letters, digits and '-' (up to 20)"},
    )
    gitlab_runner_concurrent: int = Field(
        1,
        ge=1,
        le=256,
        description="How many jobs run at once on the host, over all its runners (config.toml's concurrent).",
        examples=[1],
        json_schema_extra={"form": "a whole number from 1 to 256"},
    )
    gitlab_runner_check_interval: int = Field(
        3,
        ge=1,
        le=3600,
        description="Seconds between the runner's requests for new jobs (config.toml's check_interval).",
        examples=[3],
        json_schema_extra={"form": "a whole number of seconds from 1 to 3600"},
    )
    gitlab_runner_environment: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables every job gets (config.toml's environment); no secrets here.",
        examples=[{"BAZELISK_HOME": "/var/lib/ci/bazelisk"}],
        json_schema_extra={"form": "a mapping of NAME to a value of letters, digits, spaces and . _ : / @ + = , % -"},
    )
    gitlab_runner_listen_address: str = Field(
        "127.0.0.1:9252",
        description="Where the runner serves Prometheus metrics; loopback only.",
        examples=["127.0.0.1:9252"],
        json_schema_extra={"form": "a loopback HOST:PORT"},
    )
    gitlab_runner_stop_timeout: int = Field(
        7200,
        ge=60,
        le=86400,
        description="Seconds a stop or restart waits for running jobs to finish (SIGQUIT, then TimeoutStopSec).",
        examples=[7200],
        json_schema_extra={"form": "a whole number of seconds from 60 to 86400"},
    )

    @field_validator("gitlab_runner_registrations", mode="before")
    @classmethod
    def _registrations(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("gitlab_runner_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _url(value, path_suffix="/api/v4").rstrip("/")

    @field_validator("gitlab_runner_apt_repo", "gitlab_runner_apt_key_url")
    @classmethod
    def _plain_url(cls, value: str) -> str:
        return _url(value)

    @field_validator("gitlab_runner_api_token")
    @classmethod
    def _api_token(cls, value: str | None) -> str | None:
        if value is not None and not _REFERENCE.fullmatch(value):
            raise ValueError("not a secret reference; expected env:NAME, file:PATH or cmd:COMMAND")
        return value

    @field_validator("gitlab_runner_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.fullmatch(value):
            raise ValueError(f"{value!r} is not a release X.Y.Z")
        return value

    @field_validator("gitlab_runner_apt_key_fingerprint")
    @classmethod
    def _fingerprint(cls, value: str) -> str:
        compact = value.replace(" ", "").upper()
        if not _FINGERPRINT.fullmatch(compact):
            raise ValueError("not a key fingerprint of 40 hex digits")
        return compact

    @field_validator("gitlab_runner_name_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"^[a-z0-9-]{1,20}$", value):
            raise ValueError(f"{value!r} is not lower-case letters, digits and '-'")
        return value

    @field_validator("gitlab_runner_environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not _ENV_KEY.fullmatch(key):
                raise ValueError(f"not an environment variable name: {key!r}")
            if not _ENV_VALUE.fullmatch(item):
                raise ValueError(f"{key}: the value holds quotes, a backslash or a control character")
        return value

    @field_validator("gitlab_runner_listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        return check_loopback(value)

    @model_validator(mode="after")
    def _consistent(self) -> "GitLabRunnerSettings":
        # Model-level messages name their key first (hostdata reads it from there).
        names: dict[str, int] = {}
        for index, registration in enumerate(self.gitlab_runner_registrations, start=1):
            name = runner_name(self.gitlab_runner_name_prefix, "HOST", index, registration.name)
            if name in names:
                raise ValueError(
                    f"gitlab_runner_registrations {names[name]} and {index} both resolve to the runner name "
                    f"{name!r}; give one of them another name"
                )
            names[name] = index
        needs_api = [
            i for i, r in enumerate(self.gitlab_runner_registrations, start=1) if r.token is None or not r.present
        ]
        if needs_api and self.gitlab_runner_api_token is None:
            raise ValueError(
                f"gitlab_runner_api_token is not set, and registration {needs_api[0]} needs it (to create a runner "
                "without a token, or to delete one); set it to a reference to a token with the create_runner and "
                "manage_runner scopes"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Whether any runner is to be on the host (else the layer installs nothing and removes its traces)."""
        return any(r.present for r in self.gitlab_runner_registrations)

    @property
    def server_url(self) -> str:
        """GitLab's URL as config.toml's ``url`` wants it: the API URL without ``/api/v4``."""
        return self.gitlab_runner_api_url.removesuffix("/api/v4")


SPEC = LayerSpec(
    name="gitlab_runner",
    settings=GitLabRunnerSettings,
    secret_fields=("gitlab_runner_api_token", "gitlab_runner_registrations"),
)
