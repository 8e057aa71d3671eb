"""The bazel layer's spec: where Bazel comes from, its rc file, its disk bound.

``deploys/bazel.py`` applies it. Every key is documented here once; the one-line errors,
``inventories/group_data/all.py`` and the docs site's group-data reference follow these fields.
"""

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from runner_ctl.bazelflags import parse_version
from runner_ctl.layers._spec import LayerSettings, LayerSpec, check_download_url

__all__ = [
    "APT_BAZEL_VERSION",
    "BAZELISK_ARCHES",
    "SPEC",
    "TESTHOST_DATA",
    "BazelSettings",
]

# Debian 12's bazel-bootstrap: the only Bazel the apt source can give.
APT_BAZEL_VERSION = "4.2.3"
# uname -m (pyinfra's Arch fact) → the architecture in Bazelisk's release asset names.
BAZELISK_ARCHES: dict[str, str] = {"x86_64": "amd64", "aarch64": "arm64"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# Test hosts cannot reach GitHub's release downloads, so they take Bazel from the local apt
# repository (inventories/testhost.py and the host checks both apply this).
TESTHOST_DATA: dict[str, Any] = {"bazel_source": "apt", "bazel_version": APT_BAZEL_VERSION}


class BazelSettings(LayerSettings):
    bazel_source: Literal["bazelisk", "apt"] = Field(
        "bazelisk",
        description=(
            "Where Bazel comes from: a pinned, checksum-verified Bazelisk release, or Debian's "
            f"bazel-bootstrap ({APT_BAZEL_VERSION}) from apt."
        ),
        examples=["bazelisk"],
        json_schema_extra={"form": "'bazelisk' or 'apt'"},
    )
    bazel_version: str = Field(
        "7.4.1",
        validate_default=True,  # the default must agree with a bazel_source set alone
        description=(
            "The Bazel release the host's rc files are written for (flags are chosen by version); "
            "Bazelisk runs it when a workspace has no .bazelversion."
        ),
        examples=["7.4.1"],
        json_schema_extra={"form": "a Bazel release X.Y.Z, major 4 to 8 (4.2.3 with bazel_source 'apt')"},
    )
    bazel_bazelisk_version: str = Field(
        "1.28.1",
        description="The Bazelisk release installed as the real Bazel behind /usr/local/bin/bazel.",
        examples=["1.28.1"],
        json_schema_extra={"form": "a Bazelisk release X.Y.Z"},
    )
    bazel_bazelisk_sha256: dict[str, str] = Field(
        default_factory=lambda: {
            # From the release binaries the npm package @bazel/bazelisk 1.28.1 ships.
            "x86_64": "22e7d3a188699982f661cf4687137ee52d1f24fec1ec893d91a6c4d791a75de8",
            "aarch64": "8ded44b58a0d9425a4178af26cf17693feac3b87bdcfef0a2a0898fcd1afc9f2",
        },
        description=(
            "SHA-256 of the Bazelisk binary per host architecture; a download that does not match "
            "never reaches the host."
        ),
        examples=[{"x86_64": "22e7d3a188699982f661cf4687137ee52d1f24fec1ec893d91a6c4d791a75de8"}],
        json_schema_extra={"form": "a mapping of 'x86_64'/'aarch64' to 64 lower-case hex digits"},
    )
    bazel_bazelisk_url: str = Field(
        "https://github.com/bazelbuild/bazelisk/releases/download/v{version}/bazelisk-linux-{arch}",
        description="Where the Bazelisk binary is downloaded from ({version} and {arch} are filled in): a mirror.",
        examples=["https://mirror.example.com/bazelisk/v{version}/bazelisk-linux-{arch}"],
        json_schema_extra={"form": "an http(s) URL; {version} and {arch} are filled in"},
    )
    bazel_max_idle_secs: int = Field(
        86400,
        ge=0,
        le=31_536_000,
        description="Seconds an idle Bazel server stays alive (--max_idle_secs): a day keeps it warm overnight.",
        examples=[86400],
        json_schema_extra={"form": "a whole number of seconds, 0 (never idle out) to 31536000"},
    )
    bazel_disk_cache: bool = Field(
        False,
        description="Also keep a local --disk_cache on the data volume (useful without a remote cache).",
        examples=[False],
        json_schema_extra={"form": "True or False"},
    )
    bazel_disk_cache_max_size_gb: int = Field(
        20,
        ge=1,
        le=100_000,
        description="Bazel's own disk cache garbage collection bound in GiB (written only for Bazel 7.4 and later).",
        examples=[20],
        json_schema_extra={"form": "a whole number of GiB from 1 to 100000"},
    )
    bazel_disk_cache_max_age_days: int = Field(
        14,
        ge=1,
        le=3650,
        description="Bazel's own disk cache garbage collection age in days (written only for Bazel 7.4 and later).",
        examples=[14],
        json_schema_extra={"form": "a whole number of days from 1 to 3650"},
    )
    bazel_prune_unused_days: int = Field(
        14,
        ge=1,
        le=3650,
        description="The prune timer removes output bases no Bazel command has used for this many days.",
        examples=[14],
        json_schema_extra={"form": "a whole number of days from 1 to 3650"},
    )
    bazel_prune_threshold_percent: int = Field(
        80,
        ge=1,
        le=99,
        description=(
            "Above this use of the data volume the prune timer trims the repository and disk caches "
            "(never while a Bazel server is running)."
        ),
        examples=[80],
        json_schema_extra={"form": "a whole percentage from 1 to 99"},
    )

    @field_validator("bazel_version")
    @classmethod
    def _version(cls, value: str, info: ValidationInfo) -> str:
        parse_version(value)
        # bazel_source is declared first, so it is validated (and in info.data) by now.
        if info.data.get("bazel_source") == "apt" and value != APT_BAZEL_VERSION:
            raise ValueError(
                f"Debian's bazel-bootstrap is {APT_BAZEL_VERSION}: set bazel_version = {APT_BAZEL_VERSION!r} "
                "or bazel_source = 'bazelisk'"
            )
        return value

    @field_validator("bazel_bazelisk_version")
    @classmethod
    def _bazelisk_version(cls, value: str) -> str:
        if not re.fullmatch(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)", value):
            raise ValueError(f"not a Bazelisk release X.Y.Z: {value!r}")
        return value

    @field_validator("bazel_bazelisk_sha256")
    @classmethod
    def _sha256(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("no checksum given")
        for arch, digest in value.items():
            if arch not in BAZELISK_ARCHES:
                raise ValueError(f"unknown architecture {arch!r} (expected {' or '.join(BAZELISK_ARCHES)})")
            if not _SHA256.fullmatch(digest):
                raise ValueError(f"{arch}: {digest!r} is not 64 lower-case hex digits")
        return value

    @field_validator("bazel_bazelisk_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_download_url(value)

    def bazelisk_url(self, arch: str) -> str:
        """The download URL for a host of architecture ``arch`` (uname -m)."""
        return self.bazel_bazelisk_url.format(version=self.bazel_bazelisk_version, arch=BAZELISK_ARCHES[arch])


SPEC = LayerSpec(
    name="bazel",
    settings=BazelSettings,
    # bazel-bootstrap brings its JDK; curl is not needed: Bazelisk is fetched and verified
    # on the operator's machine and uploaded.
    apt_packages=("bazel-bootstrap",),
)
