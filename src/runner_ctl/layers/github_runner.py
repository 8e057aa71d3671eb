"""The GitHub Actions runner layer's spec (``deploys/github_runner.py``): warm self-hosted runners.

Each registration names a scope — a repository ``OWNER/REPO``, an organization ``ORG``
(optionally with a runner group) or an enterprise ``enterprise:SLUG`` — and gets ``slots``
runners on the host, each in ``/opt/actions-runner/<name>`` with a stable work directory
under ``data_dir``. Names are ``<prefix><host>-<n>``, or ``<prefix><host>-<name>-<n>`` when
the registration has a ``name``; ``runner-ctl runners prune`` trusts the prefix.

With no registrations (the default) the layer installs and registers nothing.
"""

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from runner_ctl.forge.github import GITHUB_API
from runner_ctl.layers._spec import LayerSettings, LayerSpec, check_download_url
from runner_ctl.secretrefs import is_reference

__all__ = [
    "DEFAULT_DOWNLOAD_URL",
    "RUNNER_ROOT",
    "SPEC",
    "GitHubRunnerRegistration",
    "GitHubRunnerSettings",
    "runner_names",
]

RUNNER_ROOT = "/opt/actions-runner"
DEFAULT_DOWNLOAD_URL = (
    "https://github.com/actions/runner/releases/download/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"
)
# A name reaches paths, unit names and config.sh's argv: one word of safe characters.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,19}$")
_SCOPE = re.compile(r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+|[A-Za-z0-9_.-]+|enterprise:[A-Za-z0-9_.-]+)$")
_LABEL = re.compile(r"^[A-Za-z0-9._:/+-]{1,100}$")
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
_VERSION = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A GitHub runner name may be up to 64 characters.
MAX_NAME_LENGTH = 64


def _form(text: str) -> dict[str, Any]:
    return {"form": text}


class GitHubRunnerRegistration(LayerSettings):
    """One scope's runners on this host."""

    scope: str = Field(
        description="where the runners register: a repository OWNER/REPO, an organization ORG, or enterprise:SLUG",
        examples=["acme/app"],
        json_schema_extra=_form("OWNER/REPO, ORG or enterprise:SLUG"),
    )
    runner_group: str | None = Field(
        None,
        description="the organization's or enterprise's runner group (config.sh --runnergroup); None: Default",
        examples=["bazel"],
        json_schema_extra=_form("None, or a runner group name (not for a repository)"),
    )
    slots: int = Field(
        1,
        ge=1,
        le=32,
        description="how many runners (concurrent jobs) this scope gets on the host",
        examples=[2],
        json_schema_extra=_form("a whole number from 1 to 32"),
    )
    labels: tuple[str, ...] = Field(
        (),
        description="custom labels besides self-hosted, Linux and X64; a change is applied through the labels API",
        examples=[["bazel", "warm"]],
        json_schema_extra=_form("a list of labels of letters, digits and . _ : / + - (no spaces or commas)"),
    )
    present: bool = Field(
        True,
        description="False deregisters these runners and removes their units and files",
        examples=[True],
        json_schema_extra=_form("True or False"),
    )
    name: str | None = Field(
        None,
        description="a word in the runner names (<prefix><host>-<name>-<n>); needed to tell two registrations apart",
        examples=["app"],
        json_schema_extra=_form("None, or letters, digits and . _ - (up to 40)"),
    )
    token: str | None = Field(
        None,
        description="this scope's own API token reference (another GitHub App installation); None: github_runner_token",
        examples=["env:GH_APP_TOKEN_ACME"],
        json_schema_extra=_form("None, or a secret reference env:NAME, file:PATH or cmd:COMMAND"),
    )

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        if not _SCOPE.fullmatch(value) or any(part in (".", "..") for part in value.split("/")):
            raise ValueError(f"scope {value!r} is not OWNER/REPO, ORG or enterprise:SLUG")
        return value

    @field_validator("runner_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and not _GROUP.fullmatch(value):
            raise ValueError(f"runner_group {value!r} is not a runner group name")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, tuple):
            for label in value:
                if isinstance(label, str) and ("," in label or any(ch.isspace() for ch in label)):
                    raise ValueError(
                        f"label {label!r} has a space or a comma (config.sh --labels is one comma-separated word); "
                        "give each label as its own list item"
                    )
                if not isinstance(label, str) or not _LABEL.fullmatch(label):
                    raise ValueError(f"label {label!r} is not letters, digits and . _ : / + - (1 to 100)")
            if len({label.lower() for label in value}) != len(value):
                raise ValueError("a label is listed twice (GitHub compares labels without case)")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError(f"name {value!r} is not letters, digits and . _ - (up to 40)")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not is_reference(value):
            # Never echo it: a token pasted here must not reach a log.
            raise ValueError("token is not a secret reference; expected env:NAME, file:PATH or cmd:COMMAND")
        return value

    @model_validator(mode="after")
    def _group_needs_org(self) -> "GitHubRunnerRegistration":
        if self.runner_group is not None and "/" in self.scope:
            raise ValueError(f"runner_group is for an organization or enterprise; {self.scope} is a repository")
        return self


def runner_names(prefix: str, host: str, registration: GitHubRunnerRegistration) -> list[str]:
    """The runner names of a registration on ``host``: one per slot."""
    middle = f"{registration.name}-" if registration.name else ""
    return [f"{prefix}{host}-{middle}{n}" for n in range(1, registration.slots + 1)]


class GitHubRunnerSettings(LayerSettings):
    """Settings of the GitHub Actions runner layer."""

    github_runner_registrations: tuple[GitHubRunnerRegistration, ...] = Field(
        (),
        description=(
            "the scopes this host serves: each a mapping with scope, and optionally runner_group, slots (1), "
            "labels, present (True), name and token; () installs nothing"
        ),
        examples=[[{"scope": "acme/app", "slots": 2, "labels": ["bazel"]}]],
        json_schema_extra=_form("a list of mappings with scope (OWNER/REPO, ORG or enterprise:SLUG) and optional keys"),
    )
    github_runner_token: str | None = Field(
        None,
        description=(
            "the API token (a PAT or a GitHub App installation token) as a secret reference, used on the operator's "
            "machine only: for registration, remove and label calls; never sent to the host"
        ),
        examples=["env:GITHUB_RUNNER_TOKEN"],
        json_schema_extra=_form("None, or a secret reference env:NAME, file:PATH or cmd:COMMAND"),
    )
    github_runner_api_url: str = Field(
        GITHUB_API,
        description="the REST API: https://api.github.com, or a GitHub Enterprise Server's https://HOST/api/v3",
        examples=[GITHUB_API],
        json_schema_extra=_form("https://api.github.com or an http(s) URL ending in /api/v3"),
    )
    github_runner_version: str | None = Field(
        None,
        description="the actions/runner release to install, pinned; required when a registration is present",
        examples=["2.321.0"],
        json_schema_extra=_form("None, or a release version X.Y.Z"),
    )
    github_runner_sha256: str | None = Field(
        None,
        description=(
            "sha256 of actions-runner-linux-<arch>-<version>.tar.gz, from the release notes; checked on the "
            "operator's machine and again on the host before extraction"
        ),
        examples=["0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"],
        json_schema_extra=_form("None, or 64 lower-case hex digits"),
    )
    github_runner_arch: Literal["x64", "arm64", "arm"] = Field(
        "x64",
        description="the release's architecture (x64 for amd64 hosts)",
        examples=["x64"],
        json_schema_extra=_form("'x64', 'arm64' or 'arm'"),
    )
    github_runner_download_url: str = Field(
        DEFAULT_DOWNLOAD_URL,
        description="where the release is downloaded, with {version} and {arch} filled in; point it at a mirror",
        examples=[DEFAULT_DOWNLOAD_URL],
        json_schema_extra=_form("an http(s) URL, with {version} and {arch} as the only braces"),
    )
    github_runner_name_prefix: str = Field(
        "rc-",
        description="the start of every runner name (<prefix><host>-<n>); runner-ctl runners prune trusts it",
        examples=["rc-"],
        json_schema_extra=_form("letters, digits and . _ - (up to 20)"),
    )

    @field_validator("github_runner_registrations", mode="before")
    @classmethod
    def _registrations(cls, value: Any) -> Any:
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, tuple):
            # Group data is plain mappings; strict mode takes only models, so build them here.
            return tuple(
                GitHubRunnerRegistration.model_validate(item, strict=False) if isinstance(item, dict) else item
                for item in value
            )
        return value

    @field_validator("github_runner_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not is_reference(value):
            raise ValueError("not a secret reference; expected env:NAME, file:PATH or cmd:COMMAND")
        return value

    @field_validator("github_runner_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        value = value.rstrip("/")
        if value != GITHUB_API and not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~-]+)*/api/v3", value):
            raise ValueError(f"{value!r} is neither {GITHUB_API} nor a GitHub Enterprise Server API URL .../api/v3")
        return value

    @field_validator("github_runner_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not _VERSION.fullmatch(value):
            raise ValueError(f"{value!r} is not a release version X.Y.Z (e.g. '2.321.0', no leading v)")
        return value

    @field_validator("github_runner_sha256")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.fullmatch(value):
            raise ValueError("not 64 lower-case hex digits (the sha256 the release notes list)")
        return value

    @field_validator("github_runner_download_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_download_url(value)

    @field_validator("github_runner_name_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.fullmatch(value):
            raise ValueError(f"{value!r} is not letters, digits and . _ - (up to 20)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "GitHubRunnerSettings":
        # Model-level messages name their key first (hostdata reads it from there).
        seen: dict[str, int] = {}
        for index, registration in enumerate(self.github_runner_registrations, start=1):
            # Names differ between registrations exactly when they do on a placeholder host.
            for name in runner_names(self.github_runner_name_prefix, "<host>", registration):
                if name in seen:
                    first = self.github_runner_registrations[seen[name] - 1]
                    raise ValueError(
                        f"github_runner_registrations {seen[name]} ({first.scope}) and {index} "
                        f"({registration.scope}) both resolve to runner name {name}; give them different names"
                    )
                seen[name] = index
        present = [r for r in self.github_runner_registrations if r.present]
        if present and (self.github_runner_version is None or self.github_runner_sha256 is None):
            missing = "github_runner_version" if self.github_runner_version is None else "github_runner_sha256"
            raise ValueError(
                f"{missing} is required when a registration is present: pin the release version and its sha256 "
                "from the actions/runner release notes"
            )
        if self.github_runner_token is None:
            tokenless = [r.scope for r in self.github_runner_registrations if r.token is None]
            if tokenless:
                raise ValueError(
                    f"github_runner_token is required for registration {tokenless[0]} (or give it a token): "
                    "a secret reference to a PAT or GitHub App installation token"
                )
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.github_runner_registrations)

    def download_url(self) -> str:
        return self.github_runner_download_url.format(version=self.github_runner_version, arch=self.github_runner_arch)

    def server_url(self) -> str:
        """The web URL config.sh --url starts with: github.com, or the Enterprise Server's root."""
        if self.github_runner_api_url == GITHUB_API:
            return "https://github.com"
        return self.github_runner_api_url.removesuffix("/api/v3")


SPEC = LayerSpec(name="github_runner", settings=GitHubRunnerSettings, secret_fields=("github_runner_token",))
