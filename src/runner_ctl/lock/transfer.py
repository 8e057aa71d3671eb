"""``runner-ctl lock export`` / ``lock import``: the lock database as one JSON document.

For moving the service to another host (docs/howto/move-lock-host.md): everything the
store holds goes out (every table: environments with their last deployed commit and fencing
counter, requests with their queue state and secret hashes, the audit trail), plus the
AUTOINCREMENT counters and the schema version, so an import continues exactly where the
export stopped. The text is deterministic: export, import, export again gives the same bytes.

An import checks the whole document before it opens the database, then loads it in one
transaction: a malformed, truncated or partial export changes nothing. Messages never quote
a value from the document (a secret hash could be one).
"""

import contextlib
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from runner_ctl.errors import ConfigError, UsageError
from runner_ctl.lock.states import Outcome, RequestState
from runner_ctl.lock.store import SCHEMA_VERSION, TABLES, Column, LockStore, NotEmptyError, table_columns

__all__ = ["FORMAT", "FORMAT_VERSION", "export_text", "import_export", "read_export", "write_export"]

FORMAT = "runner-ctl-lock-export"
# The JSON container's version; the tables' shape is SCHEMA_VERSION. Bump on any change here.
FORMAT_VERSION = 1
TOP_KEYS = ("format", "format_version", "schema_version", "sequences", "tables")
SEQUENCES = ("requests", "audit")
_HEX = frozenset("0123456789abcdef")


def _open(db: Path, *, must_exist: bool) -> LockStore:
    if must_exist and not db.is_file():
        raise ConfigError(f"no lock database at {db}; pass --db PATH (the file `lock serve --db` uses)")
    try:
        return LockStore(db)
    except (sqlite3.Error, OSError, ValueError) as error:  # ValueError: a NUL in the path
        raise ConfigError(f"cannot open the lock database {db} ({error}); choose a readable, writable --db") from None


def export_text(db: Path) -> str:
    """The export document of ``db`` as JSON text, checked as an import would check it."""
    store = _open(db, must_exist=True)
    try:
        version, tables, sequences = store.dump()
    except sqlite3.Error as error:
        raise ConfigError(f"cannot read the lock database {db} ({error})") from None
    finally:
        store.close()
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": version,
        "sequences": sequences,
        "tables": tables,
    }
    # An export that its own import would refuse is useless when it is needed: fail now.
    check_export(document, f"the database {db}")
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def write_export(text: str, output: str) -> None:
    """Write to ``output`` (mode 0600, replaced atomically) or, for ``-``, to stdout unless a terminal."""
    if output == "-":
        if sys.stdout.isatty():
            raise UsageError(
                "the export holds the requests' secret hashes and standard output is a terminal; "
                "give --output FILE or redirect it (> FILE, | ssh HOST runner-ctl lock import -)"
            )
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(output)
    if target.is_dir():
        raise UsageError(f"--output {output} is a directory; name a file, e.g. --output lock-export.json")
    try:
        # mkstemp creates the file 0600 before any byte is in it; the rename replaces an older
        # export whatever its mode was.
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as error:
        raise UsageError(f"--output {output}: cannot write there ({error.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).replace(target)
    except OSError as error:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise UsageError(f"--output {output}: cannot write there ({error.strerror})") from None


def read_export(source: str) -> Any:
    """The parsed document in ``source`` (a file, or ``-`` for stdin)."""
    where = "standard input" if source == "-" else source
    if source != "-" and Path(source).exists() and not Path(source).is_file():
        # A FIFO or a device would be opened and waited on; a directory cannot be read.
        raise UsageError(f"{source} is not a regular file; give the file `runner-ctl lock export` wrote")
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file; give the file `runner-ctl lock export` wrote") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not a lock export: not UTF-8 text") from None
    except OSError as error:
        raise UsageError(f"cannot read {source} ({error.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{where} is not a lock export: invalid JSON ({error.msg} at line {error.lineno}); "
            "a truncated copy? export it again"
        ) from None
    except RecursionError:
        raise ConfigError(f"{where} is not a lock export: JSON nested too deeply") from None


# ---- checking a document --------------------------------------------------------------------


def _type_problem(column: Column, value: object) -> str | None:
    if value is None:
        return "is missing (null)" if column.required else None
    # bool is an int to Python, never to the schema.
    if column.kind == "INTEGER" and (isinstance(value, bool) or not isinstance(value, int)):
        return "is not a whole number"
    if column.kind == "REAL" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "is not a number"
    if column.kind == "TEXT" and not isinstance(value, str):
        return "is not text"
    return None


def _exact_keys(found: dict[str, Any], expected: Sequence[str], at: str, what: str = "keys") -> None:
    """``found`` has every one of ``expected`` and nothing else."""
    missing = [key for key in expected if key not in found]
    if missing:
        raise ConfigError(f"{at} lacks {', '.join(missing)} (a partial export?)")
    unknown = sorted(set(found) - set(expected))
    if unknown:
        raise ConfigError(f"{at} has unknown {what} {', '.join(unknown)}")


def _rows(tables: dict[str, Any], table: str, where: str) -> list[dict[str, Any]]:
    """``tables[table]``: a list of objects with exactly the table's columns, each of its type."""
    columns = table_columns()[table]
    rows = tables[table]
    if not isinstance(rows, list):
        raise ConfigError(f"{where}: tables.{table} is not a list of rows")
    for index, row in enumerate(rows):
        at = f"{where}: tables.{table}[{index}]"
        if not isinstance(row, dict):
            raise ConfigError(f"{at} is not an object")
        _exact_keys(row, [column.name for column in columns], at)
        for column in columns:
            problem = _type_problem(column, row[column.name])
            if problem:
                raise ConfigError(f"{at}.{column.name} {problem}")
    return rows


def _unique(rows: list[dict[str, Any]], key: str, at: str) -> None:
    seen: set[object] = set()
    for index, row in enumerate(rows):
        if row[key] in seen:
            raise ConfigError(f"{at}[{index}].{key} repeats an earlier row's")
        seen.add(row[key])


def _check_consistency(tables: dict[str, list[dict[str, Any]]], sequences: dict[str, int], where: str) -> None:
    """What the store relies on and SQLite's constraints do not enforce."""
    _unique(tables["environments"], "env", f"{where}: tables.environments")
    envs = {row["env"]: row for row in tables["environments"]}
    holders: set[str] = set()
    for table in SEQUENCES:
        _unique(tables[table], "id", f"{where}: tables.{table}")
        highest = max((row["id"] for row in tables[table]), default=0)
        if sequences[table] < highest:
            raise ConfigError(f"{where}: sequences.{table} is below the highest id in tables.{table}")
    states, outcomes = {str(s) for s in RequestState}, {str(o) for o in Outcome}
    for index, row in enumerate(tables["requests"]):
        at = f"{where}: tables.requests[{index}]"
        if row["state"] not in states:
            raise ConfigError(f"{at}.state is not one of {', '.join(sorted(states))}")
        if row["outcome"] is not None and row["outcome"] not in outcomes:
            raise ConfigError(f"{at}.outcome is not a known outcome")
        if (row["state"] == RequestState.DONE) != (row["outcome"] is not None):
            raise ConfigError(f"{at}: state and outcome disagree (only a done request has an outcome)")
        if row["rollback"] not in (0, 1):
            raise ConfigError(f"{at}.rollback is not 0 or 1")
        secret_hash = row["secret_hash"]
        if secret_hash is not None and (len(secret_hash) != 64 or not set(secret_hash) <= _HEX):
            raise ConfigError(f"{at}.secret_hash is not a sha256 hex digest")
        env = envs.get(row["env"])
        if env is None:
            raise ConfigError(f"{at}.env is in no row of tables.environments")
        if row["fencing_token"] is not None and row["fencing_token"] > env["fencing_counter"]:
            # An import must never hand out a fencing token again.
            raise ConfigError(f"{at}.fencing_token is above its environment's fencing_counter")
        if row["state"] == RequestState.GRANTED:
            if row["env"] in holders:
                raise ConfigError(f"{at}: a second granted request in one environment")
            holders.add(row["env"])


def check_export(document: object, where: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """The tables and sequences of a well-formed, complete export; ConfigError (one line) otherwise."""
    if not isinstance(document, dict):
        raise ConfigError(f"{where} is not a lock export: not a JSON object")
    if document.get("format") != FORMAT:
        raise ConfigError(f"{where} is not a lock export: format is not {FORMAT!r}")
    _exact_keys(document, TOP_KEYS, f"{where}: the export")
    if document["format_version"] != FORMAT_VERSION or isinstance(document["format_version"], bool):
        raise ConfigError(
            f"{where}: format_version is not {FORMAT_VERSION}, the one this runner-ctl reads; "
            "export and import with the same runner-ctl version"
        )
    if document["schema_version"] != SCHEMA_VERSION or isinstance(document["schema_version"], bool):
        raise ConfigError(
            f"{where}: schema_version is not {SCHEMA_VERSION}, this runner-ctl's lock database schema; "
            "export and import with the same runner-ctl version"
        )
    sequences = document["sequences"]
    if not isinstance(sequences, dict) or set(sequences) != set(SEQUENCES):
        raise ConfigError(f"{where}: sequences must be an object with exactly {', '.join(SEQUENCES)}")
    for name in SEQUENCES:
        if isinstance(sequences[name], bool) or not isinstance(sequences[name], int) or sequences[name] < 0:
            raise ConfigError(f"{where}: sequences.{name} is not a whole number from 0")
    tables = document["tables"]
    if not isinstance(tables, dict):
        raise ConfigError(f"{where}: tables is not an object")
    _exact_keys(tables, TABLES, f"{where}: tables", "tables")
    checked = {table: _rows(tables, table, where) for table in TABLES}
    _check_consistency(checked, sequences, where)
    return checked, sequences


# ---- importing --------------------------------------------------------------------------------


@contextlib.contextmanager
def _new_database_removed_on_failure(db: Path) -> Iterator[None]:
    """A database this import creates is gone again if the import fails: nothing changed."""
    existed = db.exists()
    try:
        yield
    except BaseException:
        if not existed:
            for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                with contextlib.suppress(OSError):
                    path.unlink()
        raise


def import_export(db: Path, source: str, *, force: bool = False) -> dict[str, int]:
    """Load the export in ``source`` into ``db``; the number of rows per table."""
    where = "standard input" if source == "-" else source
    tables, sequences = check_export(read_export(source), where)
    if not db.parent.is_dir():
        raise ConfigError(f"--db {db}: the directory {db.parent} does not exist")
    created = not db.exists()
    with _new_database_removed_on_failure(db):
        store = _open(db, must_exist=False)
        try:
            store.replace_all(tables, sequences, force=force)
        except NotEmptyError as error:
            raise ConfigError(
                f"the lock database {db} is not empty ({error}); import refused. "
                "--force replaces its state with the export's"
            ) from None
        except sqlite3.Error as error:
            raise ConfigError(f"importing into {db} failed, nothing changed ({error})") from None
        finally:
            store.close()
    if created and os.geteuid() == 0:
        # root imports on a host; the service runs as the directory's owner and must write it.
        owner = db.parent.stat()
        os.chown(db, owner.st_uid, owner.st_gid)
    return {table: len(rows) for table, rows in tables.items()}
