"""The one table of Bazel flags whose name or existence depends on the Bazel version.

Every flag the host layers write into an rc file must be accepted by the configured
Bazel: an unknown flag in ``/etc/bazel.bazelrc`` fails every build on the host. Each
rule below names a setting (``key``), the flag as the versions from ``since`` up to (not
including) ``until`` spell it, and where that fact comes from: Bazel's command-line
reference for a version, or its release notes. The templates ask ``flags_for(version)``
and write a setting only when the version has a flag for it.

Flags every supported version accepts unchanged (``--output_user_root``,
``--max_idle_secs``, ``--repository_cache``, ``--disk_cache``) are listed too, with the
oldest supported reference as their source, so the templates take every flag name from
this table and a test can check each supported major against it.
"""

import re
from dataclasses import dataclass

__all__ = [
    "OLDEST_MAJOR",
    "RULES",
    "SUPPORTED_MAJORS",
    "FlagRule",
    "flags_for",
    "parse_version",
]

OLDEST_MAJOR = 4
SUPPORTED_MAJORS: tuple[int, ...] = (4, 5, 6, 7, 8)
_VERSION = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")

Version = tuple[int, int]

_REF_4 = "https://bazel.build/versions/4.2.0/reference/command-line-reference"  # oldest supported


@dataclass(frozen=True)
class FlagRule:
    key: str  # the setting the flag carries
    flag: str  # the flag as this range of versions spells it, without value
    since: Version  # first (major, minor) that accepts it
    until: Version | None  # first (major, minor) that no longer does; None: still accepted
    source: str  # command-line reference or release notes that say so

    def applies(self, version: Version) -> bool:
        return self.since <= version and (self.until is None or version < self.until)


RULES: tuple[FlagRule, ...] = (
    # ---- bazel layer: /etc/bazel.bazelrc ----------------------------------------------------
    FlagRule("output_user_root", "--output_user_root", (4, 0), None, _REF_4 + "#flag--output_user_root"),
    FlagRule("max_idle_secs", "--max_idle_secs", (4, 0), None, _REF_4 + "#flag--max_idle_secs"),
    FlagRule("repository_cache", "--repository_cache", (4, 0), None, _REF_4 + "#flag--repository_cache"),
    FlagRule("disk_cache", "--disk_cache", (4, 0), None, _REF_4 + "#flag--disk_cache"),
    # Disk cache garbage collection arrived in 7.4.0 (release notes: "--disk_cache can now be
    # garbage collected"); before that the flags are unknown and fail every command.
    FlagRule(
        "disk_cache_gc_max_size",
        "--experimental_disk_cache_gc_max_size",
        (7, 4),
        None,
        "https://github.com/bazelbuild/bazel/releases/tag/7.4.0; "
        "https://bazel.build/versions/7.4.0/reference/command-line-reference#flag--experimental_disk_cache_gc_max_size",
    ),
    FlagRule(
        "disk_cache_gc_max_age",
        "--experimental_disk_cache_gc_max_age",
        (7, 4),
        None,
        "https://github.com/bazelbuild/bazel/releases/tag/7.4.0; "
        "https://bazel.build/versions/7.4.0/reference/command-line-reference#flag--experimental_disk_cache_gc_max_age",
    ),
    # ---- buildbuddy layer: /etc/bazel.d/buildbuddy.bazelrc (appended by that layer) ---------
    # Remote and build-event flags every supported major accepts under these names.
    *(
        FlagRule(key, f"--{key}", (4, 0), None, f"{_REF_4}#flag--{key}")
        for key in (
            "bes_backend",
            "bes_results_url",
            "remote_cache",
            "remote_executor",
            "remote_instance_name",
            "jobs",
            "build_metadata",
            # The API key's header (in the auth file): cache, execution and build events.
            "remote_header",
            # A value without a unit is seconds in every major (an int before 4, a duration since).
            "remote_timeout",
            # Build without the Bytes left experimental in 1.0; 7.0 made "toplevel" the default
            # (https://blog.bazel.build/2023/10/06/bwob-in-bazel-7.html). --remote_download_all
            # exists only from 7.0, so the layer writes the long form with its value.
            "remote_download_outputs",
        )
    ),
    # Before 6.0, Build without the Bytes (--remote_download_outputs toplevel or minimal)
    # refuses to run unless these are on (Bazel 4.2.3 on the test host: "requires
    # --experimental_inmemory_jdeps_files to be enabled"); 6.0 made them the default
    # (bazelbuild/bazel#15203, #15204), so they are written only before 6.
    *(
        FlagRule(
            key,
            f"--experimental_{key}",
            (4, 0),
            (6, 0),
            f"{_REF_4}#flag--experimental_{key}; https://github.com/bazelbuild/bazel/pull/{pr}",
        )
        for key, pr in (("inmemory_jdeps_files", 15204), ("inmemory_dotd_files", 15203))
    ),
    # Drops the duplicate important_outputs field from build events. 8.0 made false the
    # default (bazel commit 241c21da0739, noted in buildbuddy-io/buildbuddy#8889), so it is
    # written only before 8.
    FlagRule(
        "nolegacy_important_outputs",
        "--nolegacy_important_outputs",
        (4, 0),
        (8, 0),
        f"{_REF_4}#flag--legacy_important_outputs; https://github.com/bazelbuild/bazel/commit/241c21da0739ad2d5b0642690190c14b96dcbae2",
    ),
    # zstd compression of gRPC cache transfers: new in 5.0 as experimental (bazelbuild/bazel#14277,
    # cherry-picked for 5.0); renamed in 7.0 (bazelbuild/bazel#17990, "RELNOTES:
    # --experimental_remote_cache_compression has been renamed to --remote_cache_compression").
    FlagRule(
        "remote_cache_compression",
        "--experimental_remote_cache_compression",
        (5, 0),
        (7, 0),
        "https://bazel.build/versions/5.4.0/reference/command-line-reference"
        "#flag--experimental_remote_cache_compression; https://github.com/bazelbuild/bazel/pull/14277",
    ),
    FlagRule(
        "remote_cache_compression",
        "--remote_cache_compression",
        (7, 0),
        None,
        "https://github.com/bazelbuild/bazel/releases/tag/7.0.0; https://github.com/bazelbuild/bazel/pull/17990",
    ),
)


def parse_version(text: str) -> Version:
    """(major, minor) of a Bazel release ``X.Y.Z`` in a supported major; ValueError otherwise."""
    match = _VERSION.fullmatch(text)
    if not match:
        raise ValueError(f"not a Bazel release X.Y.Z: {text!r}")
    major, minor = int(match.group(1)), int(match.group(2))
    if major not in SUPPORTED_MAJORS:
        raise ValueError(
            f"Bazel {text}: major {major} is not supported ({SUPPORTED_MAJORS[0]} to {SUPPORTED_MAJORS[-1]})"
        )
    return major, minor


def flags_for(version: str) -> dict[str, str]:
    """Setting → flag name, for every setting ``version`` has a flag for."""
    parsed = parse_version(version)
    flags: dict[str, str] = {}
    for rule in RULES:
        if rule.applies(parsed):
            if rule.key in flags:
                raise AssertionError(f"two rules give {rule.key} a flag for Bazel {version}")
            flags[rule.key] = rule.flag
    return flags
