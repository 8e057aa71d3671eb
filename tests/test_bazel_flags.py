"""The version-dependent flag table (runner_ctl.bazelflags) and the rc file it drives."""

import re

import pytest

from runner_ctl.bazelflags import RULES, SUPPORTED_MAJORS, flags_for, parse_version

# Bazel's versioned command-line reference, or a release's notes.
_SOURCE = r"https://(bazel\.build/versions/[0-9.]+/|github\.com/bazelbuild/bazel/releases/tag/)"
# Every (major, minor) the table distinguishes, plus the first and a late minor of each major.
BOUNDARIES = sorted(
    {(major, 0) for major in SUPPORTED_MAJORS}
    | {(major, 9) for major in SUPPORTED_MAJORS}
    | {rule.since for rule in RULES}
    | {rule.until for rule in RULES if rule.until is not None}
)


@pytest.mark.parametrize("major", SUPPORTED_MAJORS)
def test_every_supported_major_has_the_flags_the_bazelrc_always_writes(major: int) -> None:
    flags = flags_for(f"{major}.0.0")
    for key in ("output_user_root", "max_idle_secs", "repository_cache", "disk_cache"):
        assert flags[key] == f"--{key}"


@pytest.mark.parametrize(("version", "has_gc"), [("4.2.3", False), ("7.3.2", False), ("7.4.0", True), ("8.0.0", True)])
def test_disk_cache_gc_flags_only_from_7_4(version: str, has_gc: bool) -> None:
    flags = flags_for(version)
    assert ("disk_cache_gc_max_size" in flags) is has_gc
    assert ("disk_cache_gc_max_age" in flags) is has_gc


@pytest.mark.parametrize(("major", "minor"), [b for b in BOUNDARIES if b[0] in SUPPORTED_MAJORS])
def test_at_most_one_spelling_per_setting_at_every_boundary(major: int, minor: int) -> None:
    keys = [rule.key for rule in RULES if rule.applies((major, minor))]
    assert len(keys) == len(set(keys)), keys


def test_every_rule_is_well_formed_and_cites_its_source() -> None:
    for rule in RULES:
        assert re.fullmatch(r"--[a-z_]+", rule.flag), rule
        assert rule.until is None or rule.since < rule.until, rule
        assert rule.since[0] >= SUPPORTED_MAJORS[0] or rule.until is not None, rule
        assert re.match(
            r"https://(bazel\.build/versions/[0-9.]+/|github\.com/bazelbuild/bazel/releases/tag/)", rule.source
        ), rule


@pytest.mark.parametrize("text", ["7", "7.4", "v7.4.1", "7.4.1rc1", "3.7.2", "9.0.0", "07.1.0", ""])
def test_versions_outside_the_supported_form_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="Bazel"):
        parse_version(text)
