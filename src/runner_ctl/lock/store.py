"""The deploy lock's durable state: SQLite (WAL), one transaction per transition.

Every method that changes state commits before it returns, so a response built from its
result never reports something a crash could take back. The store is synchronous and
single-writer by design: the service calls it from one event loop.

Model: per environment a FIFO queue of requests. The oldest queued request is granted
when nobody holds the environment; a grant carries the next fencing token (strictly
increasing per environment) and a lease the holder renews. A request ends with exactly one
outcome, and every transition is written to the audit trail in the same transaction.

Acting on a request needs the secret its enqueue returned; the store keeps only its hash
(``secret_hash``), so the database never holds what a client would present.
"""

import contextlib
import dataclasses
import functools
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner_ctl.lock.states import FINAL_BY_HOLDER, Outcome, RequestState

__all__ = [
    "DEFAULT_HOST_DB",
    "SCHEMA_VERSION",
    "TABLES",
    "AuditRecord",
    "Column",
    "EnvStatus",
    "LeaseLostError",
    "LockStore",
    "NotEmptyError",
    "NotFoundError",
    "Request",
    "table_columns",
]

# Where the deploy_lock layer keeps the database on a host: the persistent data volume, under
# the base layer's default data_dir. `runner-ctl lock export/import` default to it; the layer
# (layers/deploy_lock.py) is the source of truth and should point here, or this at it.
DEFAULT_HOST_DB = Path("/var/lib/ci/runner-ctl/lock.db")

# PRAGMA user_version of a database at SCHEMA. 2: requests.secret_hash (databases from before
# it read 0 until _migrate brings them here). Bump it with every migration; exports carry it.
SCHEMA_VERSION = 2
# Every table of SCHEMA, in the order an export lists them and an import fills them.
TABLES = ("environments", "requests", "audit")

SCHEMA = """
CREATE TABLE IF NOT EXISTS environments (
    env TEXT PRIMARY KEY,
    last_commit TEXT,
    fencing_counter INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    env TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    queue_policy TEXT NOT NULL,
    lease_ttl REAL NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    created_at REAL NOT NULL,
    granted_at REAL,
    finished_at REAL,
    lease_expires_at REAL,
    fencing_token INTEGER,
    previous_commit TEXT,
    rollback INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    secret_hash TEXT
);
CREATE INDEX IF NOT EXISTS requests_by_env_state ON requests (env, state, id);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    env TEXT NOT NULL,
    request_id INTEGER,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    commit_sha TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_env ON audit (env, id);
"""


class NotFoundError(LookupError):
    """No such request."""


class NotEmptyError(RuntimeError):
    """An import met a database that already holds state (and was not told to replace it)."""

    def __init__(self, counts: dict[str, int]) -> None:
        super().__init__(", ".join(f"{count} {table}" for table, count in counts.items() if count))
        self.counts = counts


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # SQLite's declared type: INTEGER, REAL or TEXT
    required: bool  # NOT NULL, or the INTEGER PRIMARY KEY


@functools.cache
def table_columns() -> dict[str, tuple[Column, ...]]:
    """Each table's columns as SCHEMA declares them (read from a scratch in-memory database)."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA)
        return {
            table: tuple(
                Column(name, kind.upper(), bool(notnull or pk))
                for _, name, kind, notnull, _, pk in db.execute(f"PRAGMA table_info({table})")
            )
            for table in TABLES
        }
    finally:
        db.close()


class LeaseLostError(RuntimeError):
    """The caller no longer holds the lock it acts for (lease expired, or a stale token)."""


@dataclass(frozen=True)
class Request:
    id: int
    env: str
    commit: str
    actor: str
    reason: str
    queue_policy: str
    lease_ttl: float
    state: RequestState
    outcome: Outcome | None
    created_at: float
    granted_at: float | None
    finished_at: float | None
    lease_expires_at: float | None
    fencing_token: int | None
    previous_commit: str | None
    rollback: bool
    exit_code: int | None
    detail: str
    secret_hash: str | None  # sha256 hex of the request's secret; None for requests older than secrets

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Request":
        return cls(
            id=row["id"],
            env=row["env"],
            commit=row["commit_sha"],
            actor=row["actor"],
            reason=row["reason"],
            queue_policy=row["queue_policy"],
            lease_ttl=row["lease_ttl"],
            state=RequestState(row["state"]),
            outcome=Outcome(row["outcome"]) if row["outcome"] else None,
            created_at=row["created_at"],
            granted_at=row["granted_at"],
            finished_at=row["finished_at"],
            lease_expires_at=row["lease_expires_at"],
            fencing_token=row["fencing_token"],
            previous_commit=row["previous_commit"],
            rollback=bool(row["rollback"]),
            exit_code=row["exit_code"],
            detail=row["detail"],
            secret_hash=row["secret_hash"],
        )


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: float
    env: str
    request_id: int | None
    actor: str
    event: str
    commit: str | None
    detail: str


@dataclass(frozen=True)
class EnvStatus:
    env: str
    last_commit: str | None
    fencing_counter: int
    holder: Request | None
    queue: tuple[Request, ...]


class LockStore:
    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a crash of this process (the kill -9 tests), and
        # commits skip an fsync each, which halves handoff latency; on power loss the last
        # transactions may roll back (see docs/benchmarks.md).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._migrate()
        # Requests ended by the transaction under way, and by committed ones not yet taken.
        self._ending: list[Request] = []
        self._ended: list[Request] = []

    def _migrate(self) -> None:
        """Bring a database made by an older version up to SCHEMA (CREATE IF NOT EXISTS adds no column)."""
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(requests)")}
        if "secret_hash" not in columns:
            # Requests from before keep NULL: nobody can present their secret, so only their lease
            # running out or an admin release ends them.
            self._db.execute("ALTER TABLE requests ADD COLUMN secret_hash TEXT")
        if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    # ---- the whole state, for `runner-ctl lock export` / `lock import` -----------------------

    def dump(self) -> tuple[int, dict[str, list[dict[str, Any]]], dict[str, int]]:
        """Schema version, every table's rows (by primary key) and the AUTOINCREMENT counters.

        One read transaction: a consistent snapshot even while the service writes.
        """
        self._db.execute("BEGIN")
        try:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            tables = {
                table: [
                    {column.name: row[column.name] for column in columns}
                    for row in self._db.execute(f"SELECT * FROM {table} ORDER BY {columns[0].name}")  # noqa: S608
                ]
                for table, columns in table_columns().items()
            }
            sequences = self._sequences()
        finally:
            self._db.execute("COMMIT")
        return version, tables, sequences

    def _sequences(self) -> dict[str, int]:
        # The next id continues after the highest ever given, even where rows with it are gone.
        found = {row["name"]: int(row["seq"]) for row in self._db.execute("SELECT name, seq FROM sqlite_sequence")}
        return {table: found.get(table, 0) for table in ("requests", "audit")}

    def counts(self) -> dict[str, int]:
        return {
            table: int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608
            for table in TABLES
        }

    def replace_all(
        self, tables: dict[str, list[dict[str, Any]]], sequences: dict[str, int], *, force: bool = False
    ) -> None:
        """Load a dump, in one transaction. Refuses (NotEmptyError) a database with state unless ``force``,
        which replaces that state. Rows are written as given: the caller checks them first."""
        with self._tx() as db:
            counts = self.counts()
            if any(counts.values()) or any(self._sequences().values()):
                if not force:
                    raise NotEmptyError(counts)
                for table in reversed(TABLES):
                    db.execute(f"DELETE FROM {table}")  # noqa: S608
                db.execute("DELETE FROM sqlite_sequence")
            for table, columns in table_columns().items():
                names = [column.name for column in columns]
                db.executemany(
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",  # noqa: S608
                    [tuple(row[name] for name in names) for row in tables[table]],
                )
            db.execute("DELETE FROM sqlite_sequence")
            db.executemany(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                [(table, seq) for table, seq in sequences.items() if seq],
            )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        self._ending.clear()
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            # Also after a failed COMMIT (a deferred constraint, a full disk): SQLite keeps the
            # transaction open then, and every later BEGIN would fail until a restart.
            self._ending.clear()
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._ended.extend(self._ending)
        self._ending.clear()

    def take_ended(self) -> list[Request]:
        """Requests that committed transitions ended since the last call, each exactly once.

        The one source for counting outcomes: a request shows up here only on its real
        transition to done, never when a late heartbeat or a second finish meets it again.
        """
        ended, self._ended = self._ended, []
        return ended

    def _audit(
        self, db: sqlite3.Connection, env: str, request_id: int | None, actor: str, event: str,
        commit: str | None, detail: str = "",
    ) -> None:  # fmt: skip
        db.execute(
            "INSERT INTO audit (at, env, request_id, actor, event, commit_sha, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self._clock(), env, request_id, actor, event, commit, detail),
        )

    def _get(self, db: sqlite3.Connection, request_id: int) -> Request:
        row = db.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no deploy request {request_id}")
        return Request.from_row(row)

    # ---- reads ------------------------------------------------------------------------------

    def get(self, request_id: int) -> Request:
        return self._get(self._db, request_id)

    def queued_behind(self, request: Request) -> list[str]:
        """Commits queued after ``request`` in its environment, oldest first."""
        rows = self._db.execute(
            "SELECT commit_sha FROM requests WHERE env = ? AND state = ? AND id > ? ORDER BY id",
            (request.env, RequestState.QUEUED, request.id),
        ).fetchall()
        return [row["commit_sha"] for row in rows]

    def queue_depth(self, env: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) AS waiting FROM requests WHERE env = ? AND state = ?", (env, RequestState.QUEUED)
        ).fetchone()
        return int(row["waiting"])

    def position(self, request: Request) -> int:
        """1-based place in the queue (the holder counts as ahead); 0 once granted or done."""
        if request.state != RequestState.QUEUED:
            return 0
        row = self._db.execute(
            "SELECT COUNT(*) AS ahead FROM requests WHERE env = ? AND state IN (?, ?) AND id < ?",
            (request.env, RequestState.QUEUED, RequestState.GRANTED, request.id),
        ).fetchone()
        return int(row["ahead"]) + 1

    def status(self, env: str | None = None) -> list[EnvStatus]:
        envs = [
            row["env"]
            for row in self._db.execute(
                "SELECT env FROM environments WHERE ? IS NULL OR env = ? ORDER BY env", (env, env)
            ).fetchall()
        ]
        result = []
        for name in envs:
            meta = self._db.execute("SELECT * FROM environments WHERE env = ?", (name,)).fetchone()
            active = [
                Request.from_row(row)
                for row in self._db.execute(
                    "SELECT * FROM requests WHERE env = ? AND state IN (?, ?) ORDER BY id",
                    (name, RequestState.QUEUED, RequestState.GRANTED),
                ).fetchall()
            ]
            holder = next((r for r in active if r.state == RequestState.GRANTED), None)
            queue = tuple(r for r in active if r.state == RequestState.QUEUED)
            result.append(EnvStatus(name, meta["last_commit"], meta["fencing_counter"], holder, queue))
        return result

    def history(self, env: str, limit: int = 50) -> list[AuditRecord]:
        rows = self._db.execute("SELECT * FROM audit WHERE env = ? ORDER BY id DESC LIMIT ?", (env, limit)).fetchall()
        return [
            AuditRecord(
                r["id"], r["at"], r["env"], r["request_id"], r["actor"], r["event"], r["commit_sha"], r["detail"]
            )
            for r in rows
        ]

    def active_envs(self) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT env FROM requests WHERE state IN (?, ?)", (RequestState.QUEUED, RequestState.GRANTED)
        ).fetchall()
        return [row["env"] for row in rows]

    def next_lease_expiry(self) -> float | None:
        row = self._db.execute(
            "SELECT MIN(lease_expires_at) AS soonest FROM requests WHERE state IN (?, ?)",
            (RequestState.QUEUED, RequestState.GRANTED),
        ).fetchone()
        return None if row["soonest"] is None else float(row["soonest"])

    # ---- transitions ------------------------------------------------------------------------

    def enqueue(
        self, *, env: str, commit: str, actor: str, reason: str = "", queue_policy: str = "latest", lease_ttl: float,
        secret_hash: str | None = None,
    ) -> Request:  # fmt: skip
        """Join the environment's queue. The lease also covers waiting: a waiter that stops
        calling (``touch``) is dropped when it runs out, so a dead waiter never blocks a queue."""
        now = self._clock()
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO environments (env) VALUES (?)", (env,))
            cursor = db.execute(
                "INSERT INTO requests (env, commit_sha, actor, reason, queue_policy, lease_ttl, state, created_at,"
                " lease_expires_at, secret_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    env, commit, actor, reason, queue_policy, lease_ttl, RequestState.QUEUED, now, now + lease_ttl,
                    secret_hash,
                ),
            )  # fmt: skip
            request_id = int(cursor.lastrowid or 0)
            self._audit(db, env, request_id, actor, "queued", commit, reason)
            return self._get(db, request_id)

    def grant_next(self, env: str) -> Request | None:
        """Grant the oldest queued request if nobody holds ``env``; return the new holder."""
        now = self._clock()
        with self._tx() as db:
            holder = db.execute(
                "SELECT id FROM requests WHERE env = ? AND state = ?", (env, RequestState.GRANTED)
            ).fetchone()
            if holder is not None:
                return None
            head = db.execute(
                "SELECT * FROM requests WHERE env = ? AND state = ? ORDER BY id LIMIT 1", (env, RequestState.QUEUED)
            ).fetchone()
            if head is None:
                return None
            meta = db.execute("SELECT * FROM environments WHERE env = ?", (env,)).fetchone()
            token = int(meta["fencing_counter"]) + 1
            db.execute("UPDATE environments SET fencing_counter = ? WHERE env = ?", (token, env))
            db.execute(
                "UPDATE requests SET state = ?, granted_at = ?, lease_expires_at = ?, fencing_token = ?,"
                " previous_commit = ? WHERE id = ?",
                (RequestState.GRANTED, now, now + head["lease_ttl"], token, meta["last_commit"], head["id"]),
            )
            self._audit(db, env, head["id"], head["actor"], "granted", head["commit_sha"], f"fencing_token={token}")
            return self._get(db, head["id"])

    def touch(self, request_id: int, fencing_token: int | None = None) -> Request:
        """Renew a lease: a waiter's (no token) or the holder's (its fencing token)."""
        now = self._clock()
        with self._tx() as db:
            request = self._get(db, request_id)
            problem = self._lease_problem(db, request, now, fencing_token)
            if problem is None:
                db.execute(
                    "UPDATE requests SET lease_expires_at = ? WHERE id = ?", (now + request.lease_ttl, request_id)
                )
                request = self._get(db, request_id)
        if problem is not None:  # raised after the commit: an expiry found here is kept
            raise LeaseLostError(problem)
        return request

    def _lease_problem(
        self, db: sqlite3.Connection, request: Request, now: float, fencing_token: int | None
    ) -> str | None:
        """Why ``request`` may not act now, or None. Ends it as expired if its lease ran out."""
        if request.state == RequestState.DONE:
            return f"deploy request {request.id} is over ({request.outcome})"
        if request.state == RequestState.GRANTED and fencing_token != request.fencing_token:
            return f"fencing token {fencing_token} is not the holder's"
        if request.lease_expires_at is not None and request.lease_expires_at < now:
            self._end(db, request, Outcome.EXPIRED, actor="lockd", detail="lease ran out")
            return f"deploy request {request.id}'s lease ran out"
        return None

    def _end(
        self, db: sqlite3.Connection, request: Request, outcome: Outcome, *, actor: str, detail: str = "",
        exit_code: int | None = None, rollback: bool = False,
    ) -> Request:  # fmt: skip
        """The one transition to done. Guarded in SQL, so a request ends (and is counted) once."""
        now = self._clock()
        cursor = db.execute(
            "UPDATE requests SET state = ?, outcome = ?, finished_at = ?, lease_expires_at = NULL, exit_code = ?,"
            " rollback = ?, detail = ? WHERE id = ? AND state != ?",
            (RequestState.DONE, outcome, now, exit_code, int(rollback), detail, request.id, RequestState.DONE),
        )
        if cursor.rowcount != 1:
            return self._get(db, request.id)
        if outcome == Outcome.SUCCEEDED:
            db.execute("UPDATE environments SET last_commit = ? WHERE env = ?", (request.commit, request.env))
        event = f"{outcome}{' (rollback)' if rollback else ''}"
        self._audit(db, request.env, request.id, actor, event, request.commit, detail)
        ended = dataclasses.replace(
            request, state=RequestState.DONE, outcome=outcome, finished_at=now, lease_expires_at=None,
            exit_code=exit_code, rollback=rollback, detail=detail,
        )  # fmt: skip
        self._ending.append(ended)
        return ended

    def finish(
        self, request_id: int, *, fencing_token: int, outcome: Outcome, actor: str, exit_code: int | None = None,
        rollback: bool = False, detail: str = "",
    ) -> Request:  # fmt: skip
        """The holder reports its outcome and releases the lock."""
        if outcome not in FINAL_BY_HOLDER:
            raise ValueError(f"a holder cannot finish with {outcome}")
        now = self._clock()
        with self._tx() as db:
            request = self._get(db, request_id)
            if request.state == RequestState.GRANTED:
                problem = self._lease_problem(db, request, now, fencing_token)
            else:
                problem = f"deploy request {request_id} does not hold {request.env}"
            if problem is None:
                request = self._end(
                    db, request, outcome, actor=actor, detail=detail, exit_code=exit_code, rollback=rollback
                )
            elif self._get(db, request_id).outcome == Outcome.EXPIRED and fencing_token == request.fencing_token:
                # The holder outlived its lease: record what it says happened; the outcome stays.
                self._audit(
                    db, request.env, request.id, actor, "lease_lost", request.commit,
                    f"client reported {outcome} (exit code {exit_code}) after its lease ran out",
                )  # fmt: skip
        if problem is not None:
            raise LeaseLostError(problem)
        return request

    def withdraw(
        self, request_id: int, *, actor: str, outcome: Outcome = Outcome.WITHDRAWN, detail: str = ""
    ) -> Request:
        """Leave the queue before a grant (``withdrawn``, or ``timeout`` when the client gave up)."""
        if outcome not in (Outcome.WITHDRAWN, Outcome.TIMEOUT):
            raise ValueError(f"cannot withdraw with {outcome}")
        with self._tx() as db:
            request = self._get(db, request_id)
            if request.state == RequestState.QUEUED:
                self._end(db, request, outcome, actor=actor, detail=detail)
            return self._get(db, request_id)

    def expire_due(self) -> list[Request]:
        """End every request whose lease ran out; return them."""
        now = self._clock()
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM requests WHERE state IN (?, ?) AND lease_expires_at < ? ORDER BY id",
                (RequestState.QUEUED, RequestState.GRANTED, now),
            ).fetchall()
            return [
                self._end(db, Request.from_row(row), Outcome.EXPIRED, actor="lockd", detail="lease ran out")
                for row in rows
            ]

    def extend_leases_after_restart(self) -> int:
        """Give every live request one more TTL, so clients can reconnect after a restart."""
        now = self._clock()
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE requests SET lease_expires_at = MAX(COALESCE(lease_expires_at, 0), ? + lease_ttl)"
                " WHERE state IN (?, ?)",
                (now, RequestState.QUEUED, RequestState.GRANTED),
            )
            return cursor.rowcount

    def admin_release(self, env: str, *, actor: str, reason: str) -> Request | None:
        """Break ``env``'s lock (admins only; audited). Returns the released holder, if any."""
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM requests WHERE env = ? AND state = ?", (env, RequestState.GRANTED)
            ).fetchone()
            if row is None:
                self._audit(db, env, None, actor, "admin_release", None, f"nothing held: {reason}")
                return None
            request = Request.from_row(row)
            return self._end(db, request, Outcome.CANCELLED, actor=actor, detail=f"lock released by admin: {reason}")

    def as_dict(self, request: Request) -> dict[str, Any]:
        """A request as the API shows it: never its secret, nor the secret's hash."""
        return {
            "id": request.id,
            "env": request.env,
            "commit": request.commit,
            "actor": request.actor,
            "reason": request.reason,
            "queue_policy": request.queue_policy,
            "lease_ttl": request.lease_ttl,
            "state": str(request.state),
            "outcome": str(request.outcome) if request.outcome else None,
            "created_at": request.created_at,
            "granted_at": request.granted_at,
            "finished_at": request.finished_at,
            "lease_expires_at": request.lease_expires_at,
            "fencing_token": request.fencing_token,
            "previous_commit": request.previous_commit,
            "rollback": request.rollback,
            "exit_code": request.exit_code,
            "position": self.position(request),
            "queued_behind": self.queued_behind(request) if request.state == RequestState.GRANTED else [],
        }
