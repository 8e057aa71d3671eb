"""The BuildBuddy layer's spec: remote cache, remote execution and build event upload for Bazel.

The layer (``deploys/buildbuddy.py``) writes ``/etc/bazel.d/buildbuddy.bazelrc``, which the
Bazel layer's ``/etc/bazel.bazelrc`` try-imports, and the API key into a file of its own.

When the layer is on: with an API key (``buildbuddy_api_key``), or without one for a
self-hosted BuildBuddy whose auth is off (``buildbuddy_unauthenticated``). BuildBuddy cloud
without a key is refused: its anonymous invocations are readable by anyone with the link.
Otherwise (the default) the layer removes its files, and says so.
"""

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from runner_ctl.layers._spec import LayerSettings, LayerSpec

__all__ = ["CLOUD_ENDPOINT", "SPEC", "BuildBuddySettings", "check_api_key", "is_grpc"]

CLOUD_ENDPOINT = "grpcs://remote.buildbuddy.io"
_CLOUD_HOST_SUFFIX = ".buildbuddy.io"
_ENDPOINT_SCHEMES = ("grpc", "grpcs", "http", "https")
# Written into an rc file as one word: no whitespace, quotes, '#' or shell metacharacters.
_URL_CHARS = re.compile(r"^[A-Za-z0-9._~:/?=&%+@\[\]-]+$")
_METADATA_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_METADATA_VALUE = re.compile(r"^[A-Za-z0-9._:/@+-]{1,200}$")
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9._/-]{0,200}$")
# BuildBuddy shows keys as letters and digits; a little wider, never whitespace or '=' tricks
# that would end the rc line or the header early.
_API_KEY = re.compile(r"^[A-Za-z0-9._~+/-]{8,512}$")


def _url(value: str, schemes: tuple[str, ...]) -> str:
    if not _URL_CHARS.fullmatch(value):
        raise ValueError("whitespace, quotes and '#' are not allowed in a URL")
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"the scheme must be one of {', '.join(s + '://' for s in schemes)}")
    if not parts.hostname:
        raise ValueError("no host name")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ValueError("the port is not a number from 0 to 65535") from None
    return value


def is_grpc(endpoint: str) -> bool:
    return urlsplit(endpoint).scheme in ("grpc", "grpcs")


def check_api_key(key: str) -> None:
    """A ValueError (naming no part of the key) unless ``key`` can be written into a header flag."""
    if not _API_KEY.fullmatch(key):
        raise ValueError(
            "the API key is not 8 to 512 letters, digits or . _ ~ + / -; "
            "expected the key as BuildBuddy shows it (Settings > API keys)"
        )


class BuildBuddySettings(LayerSettings):
    """Settings of the BuildBuddy layer (``deploys/buildbuddy.py``)."""

    buildbuddy_api_key: str | None = Field(
        None,
        description=(
            "The BuildBuddy API key as a secret reference, resolved on the operator's machine and written "
            "only into /etc/bazel.d/buildbuddy-auth.bazelrc (0640 root:runner_user); None turns the layer off "
            "unless buildbuddy_unauthenticated is set."
        ),
        examples=["env:BUILDBUDDY_API_KEY"],
        json_schema_extra={"form": "None, or a secret reference env:NAME, file:PATH or cmd:COMMAND"},
    )
    buildbuddy_unauthenticated: bool = Field(
        False,
        description=(
            "Use a self-hosted BuildBuddy whose auth is off without an API key; refused for BuildBuddy cloud "
            "and together with buildbuddy_api_key."
        ),
        examples=[False],
        json_schema_extra={"form": "True or False"},
    )
    buildbuddy_endpoint: str = Field(
        CLOUD_ENDPOINT,
        description=(
            "The BuildBuddy endpoint Bazel uses for build events, the remote cache and remote execution: "
            "BuildBuddy cloud or a self-hosted one."
        ),
        examples=[CLOUD_ENDPOINT],
        json_schema_extra={"form": "a grpc://, grpcs://, http:// or https:// URL"},
    )
    buildbuddy_results_url: str | None = Field(
        "https://app.buildbuddy.io/invocation/",
        description="Where Bazel says a build's results can be seen (--bes_results_url); None prints no link.",
        examples=["https://app.buildbuddy.io/invocation/"],
        json_schema_extra={"form": "None, or an http:// or https:// URL"},
    )
    buildbuddy_bes: bool = Field(
        True,
        description="Upload build events to the endpoint (--bes_backend); needs a grpc:// or grpcs:// endpoint.",
        examples=[True],
        json_schema_extra={"form": "True or False"},
    )
    buildbuddy_remote_cache: bool = Field(
        True,
        description="Use the endpoint as Bazel's remote cache (--remote_cache).",
        examples=[True],
        json_schema_extra={"form": "True or False"},
    )
    buildbuddy_remote_execution: bool = Field(
        False,
        description=(
            "Run actions on the endpoint's executors (--remote_executor, with buildbuddy_jobs); "
            "needs a grpc:// or grpcs:// endpoint."
        ),
        examples=[False],
        json_schema_extra={"form": "True or False"},
    )
    buildbuddy_instance_name: str = Field(
        "",
        description="The remote instance name (--remote_instance_name), which partitions the cache; '' for none.",
        examples=["ci"],
        json_schema_extra={"form": "letters, digits and . _ / - (up to 200), or ''"},
    )
    buildbuddy_jobs: int = Field(
        50,
        ge=1,
        le=5000,
        description="Concurrent actions (--jobs) when buildbuddy_remote_execution is on; not written otherwise.",
        examples=[50],
        json_schema_extra={"form": "a whole number from 1 to 5000"},
    )
    buildbuddy_remote_timeout: int = Field(
        600,
        ge=1,
        le=86400,
        description="Seconds Bazel waits for a remote cache or execution call (--remote_timeout).",
        examples=[600],
        json_schema_extra={"form": "a whole number of seconds from 1 to 86400"},
    )
    buildbuddy_compression: bool = Field(
        True,
        description=(
            "zstd-compress cache transfers, where the configured Bazel has the flag (5 and later) and the "
            "endpoint is gRPC; a self-hosted BuildBuddy needs cache.zstd_transcoding_enabled for it."
        ),
        examples=[True],
        json_schema_extra={"form": "True or False"},
    )
    buildbuddy_download_outputs: Literal["all", "toplevel", "minimal"] = Field(
        "toplevel",
        description=(
            "Which remote outputs Bazel downloads (--remote_download_outputs): all, those of the top-level "
            "targets, or only what local actions need."
        ),
        examples=["toplevel"],
        json_schema_extra={"form": "'all', 'toplevel' or 'minimal'"},
    )
    buildbuddy_build_metadata: dict[str, str] = Field(
        default_factory=lambda: {"ROLE": "CI"},
        description="Build metadata sent with every invocation (--build_metadata=KEY=VALUE); ROLE=CI marks CI builds.",
        examples=[{"ROLE": "CI"}],
        json_schema_extra={"form": "a mapping of upper-case KEY to a value of letters, digits and . _ : / @ + -"},
    )

    @field_validator("buildbuddy_endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return _url(value, _ENDPOINT_SCHEMES).rstrip("/")

    @field_validator("buildbuddy_results_url")
    @classmethod
    def _results_url(cls, value: str | None) -> str | None:
        return None if value is None else _url(value, ("http", "https"))

    @field_validator("buildbuddy_instance_name")
    @classmethod
    def _instance_name(cls, value: str) -> str:
        if not _INSTANCE_NAME.fullmatch(value):
            raise ValueError(f"not an instance name: {value!r}")
        return value

    @field_validator("buildbuddy_build_metadata", mode="before")
    @classmethod
    def _build_metadata(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or not _METADATA_KEY.fullmatch(key):
                    raise ValueError(f"not an upper-case metadata key: {key!r}")
                if not isinstance(item, str) or not _METADATA_VALUE.fullmatch(item):
                    raise ValueError(f"{key}: not a one-word value: {item!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "BuildBuddySettings":
        # Model-level messages name their key first (hostdata reads it from there).
        grpc = is_grpc(self.buildbuddy_endpoint)
        if self.buildbuddy_unauthenticated and self.buildbuddy_api_key is not None:
            raise ValueError("buildbuddy_unauthenticated is set together with buildbuddy_api_key; keep one")
        host = urlsplit(self.buildbuddy_endpoint).hostname or ""
        if self.buildbuddy_unauthenticated and (host == "buildbuddy.io" or host.endswith(_CLOUD_HOST_SUFFIX)):
            raise ValueError(
                "buildbuddy_unauthenticated is for a self-hosted endpoint; BuildBuddy cloud needs buildbuddy_api_key"
            )
        if not grpc:
            wants = [key for key in ("buildbuddy_bes", "buildbuddy_remote_execution") if getattr(self, key)]
            if wants:
                raise ValueError(
                    f"buildbuddy_endpoint is HTTP, and {wants[0]} needs gRPC "
                    f"(Bazel sends build events and remote execution over gRPC only); use a grpc:// or grpcs:// "
                    f"endpoint or set {wants[0]} = False"
                )
        return self

    @property
    def enabled(self) -> bool:
        """Whether the layer writes its config (else it removes it)."""
        return self.buildbuddy_api_key is not None or self.buildbuddy_unauthenticated


SPEC = LayerSpec(name="buildbuddy", settings=BuildBuddySettings, secret_fields=("buildbuddy_api_key",))
