"""`runner-ctl rehearse --json` end to end: boot, deploy, host checks, idempotent second run."""

from typing import Any

import pytest

pytestmark = pytest.mark.host


def test_rehearsal_passes_and_the_second_run_changes_nothing(rehearsal: dict[str, Any]) -> None:
    assert rehearsal["ok"] is True, f"{rehearsal['failed_step']}: {rehearsal['error']}"
    assert rehearsal["exit_code"] == 0
    assert rehearsal["failed_step"] is None
    assert rehearsal["layers"] == ["base"]
    first, second = rehearsal["first_run"], rehearsal["second_run"]
    assert first["operations"] > 0
    assert first["changed"] > 0  # a fresh host really was configured
    assert second["operations"] > 0
    assert second["changed"] == 0
    assert first["seconds"] > 0 and second["seconds"] > 0
    assert rehearsal["checks"]["failed"] == 0
    assert rehearsal["checks"]["passed"] >= 10


def test_rehearsal_json_contract(rehearsal: dict[str, Any]) -> None:
    for key in ("ok", "layers", "first_run", "second_run", "checks"):
        assert key in rehearsal
    for run in ("first_run", "second_run"):
        assert set(rehearsal[run]) == {"seconds", "operations", "changed"}
    assert set(rehearsal["checks"]) == {"passed", "failed"}
    assert rehearsal["kept"] is True


def test_rehearsal_reports_its_steps_on_stderr(rehearsal: dict[str, Any]) -> None:
    for step in ("booting", "first deploy", "host checks", "second deploy"):
        assert step in rehearsal["stderr"]
