"""`runner-ctl lock export` / `lock import` on real SQLite databases, run as a user runs the CLI.

The source database is filled through the store's own transitions (queue, grant, finish,
expiry, withdrawal, admin release, in two environments, with secret hashes), so the export
covers every table and column the service writes.
"""

import contextlib
import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner_ctl.lock.states import FINAL_BY_HOLDER, Outcome, RequestState
from runner_ctl.lock.store import SCHEMA_VERSION, LeaseLostError, LockStore
from runner_ctl.lock.transfer import export_text, import_export
from tests.conftest import PROJECT_ROOT, runner_ctl
from tests.lockfixtures import OLD_REQUESTS


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.25

    def __call__(self) -> float:
        self.now += 1.5
        return self.now


def secret_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def fill(db: Path) -> list[str]:
    """A database with history in two environments; the secret hashes it holds."""
    store = LockStore(db, clock=Clock())
    hashes = [secret_hash(f"secret-{n}") for n in range(6)]
    try:
        first = store.enqueue(env="prod", commit="a" * 40, actor="ci", lease_ttl=30, secret_hash=hashes[0])
        store.enqueue(
            env="prod", commit="b" * 40, actor="laptop", reason="hotfix", lease_ttl=45.5, secret_hash=hashes[1]
        )
        granted = store.grant_next("prod")
        assert granted is not None and granted.id == first.id
        store.finish(first.id, fencing_token=1, outcome=Outcome.SUCCEEDED, actor="ci", exit_code=0)
        store.grant_next("prod")  # the second now holds prod, under a lease
        store.enqueue(env="prod", commit="c" * 40, actor="ci", lease_ttl=30, secret_hash=hashes[2])  # queued
        staging = store.enqueue(env="staging", commit="d" * 40, actor="ci", lease_ttl=30, secret_hash=hashes[3])
        store.withdraw(staging.id, actor="ci")
        store.enqueue(env="staging", commit="e" * 40, actor="ci", lease_ttl=30, secret_hash=hashes[4])
        store.grant_next("staging")
        store.admin_release("staging", actor="admin", reason="holder crashed")
        store.enqueue(env="qa", commit="f" * 40, actor="ci", lease_ttl=0.5, secret_hash=hashes[5])
        store.expire_due()
    finally:
        store.close()
    return hashes


def rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, and the counters: what "nothing changed" compares."""
    connection = sqlite3.connect(db)
    try:
        return {
            table: connection.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608
            for table in ("environments", "requests", "audit", "sqlite_sequence")
        }
    finally:
        connection.close()


def assert_one_line_error(done: subprocess.CompletedProcess[str], needle: str, *, exit_code: int = 2) -> None:
    assert done.returncode == exit_code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert needle in lines[0], lines[0]


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, list[str]]:
    db = tmp_path / "old-host" / "lock.db"
    db.parent.mkdir()
    return db, fill(db)


@pytest.fixture
def exported(tmp_path: Path, source: tuple[Path, list[str]]) -> Path:
    db, _ = source
    output = tmp_path / "export.json"
    done = runner_ctl("lock", "export", "--db", str(db), "--output", str(output))
    assert done.returncode == 0, done.stderr
    return output


def test_export_import_export_is_byte_identical(tmp_path: Path, source: tuple[Path, list[str]], exported: Path) -> None:
    db, hashes = source
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    document = json.loads(exported.read_text())
    assert document["format_version"] == 1 and document["schema_version"] == SCHEMA_VERSION
    assert set(document["tables"]) == {"environments", "requests", "audit"}
    assert {row["secret_hash"] for row in document["tables"]["requests"]} == set(hashes)

    target = tmp_path / "new-host" / "lock.db"
    target.parent.mkdir()
    done = runner_ctl("lock", "import", "--db", str(target), str(exported))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"imported into {target}: 3 environments, 6 requests, 13 audit"
    again = tmp_path / "again.json"
    assert runner_ctl("lock", "export", "--db", str(target), "--output", str(again)).returncode == 0
    assert again.read_bytes() == exported.read_bytes()
    assert rows(target) == rows(db)
    # No secret hash ever reaches the terminal.
    assert not any(h in done.stdout + done.stderr for h in hashes)


def test_the_imported_database_carries_on_where_the_old_one_stopped(
    tmp_path: Path, source: tuple[Path, list[str]], exported: Path
) -> None:
    db, _ = source
    target = tmp_path / "lock.db"
    assert runner_ctl("lock", "import", "--db", str(target), str(exported)).returncode == 0
    old, new = LockStore(db), LockStore(target)
    try:
        assert new.status() == old.status()
        assert new.history("prod") == old.history("prod")
        [prod] = new.status("prod")
        assert prod.last_commit == "a" * 40 and prod.holder is not None and len(prod.queue) == 1
        # What the service does when it starts on the new host: the leases restart from now.
        new.extend_leases_after_restart()
        # Ids and fencing tokens continue, never repeat: the next grant fences out the old holder.
        assert prod.holder.fencing_token is not None
        new.finish(prod.holder.id, fencing_token=prod.holder.fencing_token, outcome=Outcome.SUCCEEDED, actor="ci")
        granted = new.grant_next("prod")
        assert granted is not None and granted.fencing_token == prod.fencing_counter + 1
        assert new.enqueue(env="qa", commit="0" * 40, actor="ci", lease_ttl=30).id == 7
    finally:
        old.close()
        new.close()


def test_import_into_a_non_empty_database_is_refused_unless_forced(tmp_path: Path, exported: Path) -> None:
    target = tmp_path / "busy.db"
    store = LockStore(target)
    store.enqueue(env="prod", commit="9" * 40, actor="ci", lease_ttl=30)
    store.close()
    before = rows(target)
    done = runner_ctl("lock", "import", "--db", str(target), str(exported))
    assert_one_line_error(done, f"the lock database {target} is not empty (1 environments, 1 requests, 1 audit)")
    assert "--force" in done.stderr
    assert rows(target) == before

    forced = runner_ctl("lock", "import", "--db", str(target), str(exported), "--force")
    assert forced.returncode == 0, forced.stderr
    again = tmp_path / "again.json"
    assert runner_ctl("lock", "export", "--db", str(target), "--output", str(again)).returncode == 0
    assert again.read_bytes() == exported.read_bytes()


def _drop_table(doc: dict[str, Any]) -> None:
    del doc["tables"]["audit"]


def _drop_column(doc: dict[str, Any]) -> None:
    del doc["tables"]["requests"][2]["fencing_token"]


def _wrong_type(doc: dict[str, Any]) -> None:
    doc["tables"]["environments"][0]["fencing_counter"] = "3"


def _unknown_version(doc: dict[str, Any]) -> None:
    doc["format_version"] = 2


def _newer_schema(doc: dict[str, Any]) -> None:
    doc["schema_version"] = SCHEMA_VERSION + 1


def _no_sequences(doc: dict[str, Any]) -> None:
    del doc["sequences"]


def _token_above_counter(doc: dict[str, Any]) -> None:
    doc["tables"]["requests"][0]["fencing_token"] = 99


def _bad_state(doc: dict[str, Any]) -> None:
    doc["tables"]["requests"][0]["state"] = "running"


def _sequence_behind(doc: dict[str, Any]) -> None:
    doc["sequences"]["audit"] = 3


def _extra_key(doc: dict[str, Any]) -> None:
    doc["tables"]["audit"][0]["note"] = "x"


def _bad_hash(doc: dict[str, Any]) -> None:
    doc["tables"]["requests"][0]["secret_hash"] = "NOT-A-HASH"  # noqa: S105 - a malformed digest, not a secret


BAD_DOCUMENTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "missing-table": (_drop_table, "tables lacks audit (a partial export?)"),
    "missing-column": (_drop_column, "tables.requests[2] lacks fencing_token (a partial export?)"),
    "wrong-type": (_wrong_type, "tables.environments[0].fencing_counter is not a whole number"),
    "unknown-format-version": (_unknown_version, "format_version is not 1, the one this runner-ctl reads"),
    "newer-schema": (_newer_schema, f"schema_version is not {SCHEMA_VERSION}"),
    "missing-sequences": (_no_sequences, "the export lacks sequences (a partial export?)"),
    "fencing-token-above-counter": (_token_above_counter, "fencing_token is above its environment's fencing_counter"),
    "unknown-state": (_bad_state, "tables.requests[0].state is not one of done, granted, queued"),
    "sequence-behind-ids": (_sequence_behind, "sequences.audit is below the highest id in tables.audit"),
    "unknown-key": (_extra_key, "tables.audit[0] has unknown keys note"),
    "bad-secret-hash": (_bad_hash, "tables.requests[0].secret_hash is not a sha256 hex digest"),
}


@pytest.mark.parametrize("case", [*BAD_DOCUMENTS, "truncated", "not-an-object", "not-an-export"])
def test_a_malformed_or_partial_export_changes_nothing(
    tmp_path: Path, source: tuple[Path, list[str]], exported: Path, case: str
) -> None:
    db, hashes = source
    bad = tmp_path / "bad.json"
    text = exported.read_text()
    if case == "truncated":
        bad.write_text(text[: len(text) * 2 // 3])
        needle = "is not a lock export: invalid JSON"
    elif case == "not-an-object":
        bad.write_text("[]\n")
        needle = "is not a lock export: not a JSON object"
    elif case == "not-an-export":
        bad.write_text('{"format": "something-else"}\n')
        needle = "format is not 'runner-ctl-lock-export'"
    else:
        change, needle = BAD_DOCUMENTS[case]
        document = json.loads(text)
        change(document)
        bad.write_text(json.dumps(document))
    before = rows(db)
    # Even with --force into a database with state: checked first, so nothing is replaced.
    done = runner_ctl("lock", "import", "--db", str(db), str(bad), "--force")
    assert_one_line_error(done, needle)
    assert rows(db) == before
    assert not any(h in done.stderr for h in hashes)
    # Into a database that does not exist yet, none is created.
    fresh = tmp_path / "fresh.db"
    assert_one_line_error(runner_ctl("lock", "import", "--db", str(fresh), str(bad)), needle)
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("fresh")) == []


def test_export_to_a_pipe_and_import_from_standard_input(
    tmp_path: Path, source: tuple[Path, list[str]], exported: Path
) -> None:
    db, hashes = source
    piped = runner_ctl("lock", "export", "--db", str(db))
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == exported.read_text()
    assert not any(h in piped.stderr for h in hashes)
    target = tmp_path / "lock.db"
    done = subprocess.run(
        [sys.executable, "-m", "runner_ctl", "lock", "import", "--db", str(target), "-"],
        input=piped.stdout,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert rows(target) == rows(db)


def test_export_refuses_to_print_secret_hashes_on_a_terminal(source: tuple[Path, list[str]]) -> None:
    db, hashes = source
    leader, follower = os.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "runner_ctl", "lock", "export", "--db", str(db), "--output", "-"],
            stdout=follower,
            stderr=subprocess.PIPE,
            cwd=PROJECT_ROOT,
            text=True,
            timeout=120,
            check=False,
        )
        os.set_blocking(leader, False)
        try:
            printed = os.read(leader, 65536).decode()
        except BlockingIOError:
            printed = ""
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 2
    assert "standard output is a terminal" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not any(h in printed + done.stderr for h in hashes)


def test_export_replaces_a_loose_file_with_a_private_one(tmp_path: Path, source: tuple[Path, list[str]]) -> None:
    db, _ = source
    output = tmp_path / "export.json"
    output.write_text("old")
    output.chmod(0o644)
    assert runner_ctl("lock", "export", "--db", str(db), "--output", str(output)).returncode == 0
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert json.loads(output.read_text())["format"] == "runner-ctl-lock-export"


def test_export_of_a_missing_database_says_which_flag(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    done = runner_ctl("lock", "export", "--db", str(missing), "--output", str(tmp_path / "x.json"))
    assert_one_line_error(done, f"no lock database at {missing}; pass --db PATH")
    assert not missing.exists() and not (tmp_path / "x.json").exists()


def test_a_database_from_before_secret_hashes_exports_at_the_current_schema(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    connection = sqlite3.connect(db)
    connection.executescript(OLD_REQUESTS)
    # The first release's enqueue also wrote the environment's row (its table is unchanged since).
    connection.executescript(
        "CREATE TABLE environments (env TEXT PRIMARY KEY, last_commit TEXT,"
        " fencing_counter INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO environments (env) VALUES ('prod');"
    )
    connection.close()
    done = runner_ctl("lock", "export", "--db", str(db))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["schema_version"] == SCHEMA_VERSION
    [request] = document["tables"]["requests"]
    assert request["secret_hash"] is None and request["state"] == RequestState.QUEUED
    assert request["lease_ttl"] == 30.0


def test_import_refuses_a_fifo_and_a_file_that_is_no_database(tmp_path: Path, exported: Path) -> None:
    fifo = tmp_path / "export.fifo"
    os.mkfifo(fifo)
    # Refused without opening it: nothing would ever write to it, and the CLI must not wait.
    done = runner_ctl("lock", "import", "--db", str(tmp_path / "lock.db"), str(fifo), timeout=60)
    assert_one_line_error(done, f"{fifo} is not a regular file")
    assert not (tmp_path / "lock.db").exists()
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("x" * 4096)
    done = runner_ctl("lock", "import", "--db", str(not_a_db), str(exported))
    assert_one_line_error(done, f"cannot open the lock database {not_a_db}")
    assert not_a_db.read_text() == "x" * 4096


# Any history the store's own transitions can write survives export -> import -> export.
_STEP = st.tuples(
    st.sampled_from(["enqueue", "grant", "finish", "withdraw", "expire", "release"]),
    st.sampled_from(["prod", "staging"]),
    st.sampled_from(list(Outcome)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_STEP, max_size=25))
def test_any_store_history_round_trips_byte_identically(tmp_path_factory: pytest.TempPathFactory, steps: Any) -> None:
    tmp = tmp_path_factory.mktemp("history")
    clock = Clock()
    store = LockStore(tmp / "a.db", clock=clock)
    try:
        for number, (step, env, outcome) in enumerate(steps):
            held = [r for r in store.status(env) if r.holder] if step in ("finish", "release") else []
            if step == "enqueue":
                store.enqueue(env=env, commit=f"{number:040x}", actor="ci", lease_ttl=2.5, secret_hash=secret_hash(env))
            elif step == "grant":
                store.grant_next(env)
            elif step == "finish" and held and outcome in FINAL_BY_HOLDER:
                holder = held[0].holder
                assert holder is not None and holder.fencing_token is not None
                with contextlib.suppress(LeaseLostError):
                    store.finish(holder.id, fencing_token=holder.fencing_token, outcome=outcome, actor="ci")
            elif step == "withdraw" and store.queue_depth(env):
                [status] = store.status(env)
                store.withdraw(status.queue[0].id, actor="ci")
            elif step == "expire":
                store.expire_due()
            elif step == "release":
                store.admin_release(env, actor="admin", reason=f"step {number}")
    finally:
        store.close()
    first = export_text(tmp / "a.db")
    (tmp / "a.json").write_text(first)
    import_export(tmp / "b.db", str(tmp / "a.json"))
    assert export_text(tmp / "b.db") == first
    assert rows(tmp / "b.db") == rows(tmp / "a.db")
