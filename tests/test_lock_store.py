"""The lock store on real SQLite: transitions, leases, restarts, and a stateful model check."""

import sqlite3
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from runner_ctl.lock.states import Outcome, RequestState
from runner_ctl.lock.store import LeaseLostError, LockStore
from tests.lockfixtures import OLD_REQUESTS


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> LockStore:
    return LockStore(tmp_path / "lock.db", clock=clock)


def test_fifo_grants_with_increasing_fencing_tokens(store: LockStore) -> None:
    first = store.enqueue(env="prod", commit="a", actor="ci", lease_ttl=30)
    second = store.enqueue(env="prod", commit="b", actor="ci", lease_ttl=30)
    granted = store.grant_next("prod")
    assert granted is not None and granted.id == first.id and granted.fencing_token == 1
    assert store.grant_next("prod") is None  # held
    assert store.position(store.get(second.id)) == 2
    assert store.queued_behind(granted) == ["b"]
    store.finish(first.id, fencing_token=1, outcome=Outcome.SUCCEEDED, actor="ci")
    nxt = store.grant_next("prod")
    assert nxt is not None and nxt.id == second.id and nxt.fencing_token == 2
    assert nxt.previous_commit == "a"


def test_environments_are_independent(store: LockStore) -> None:
    store.enqueue(env="prod", commit="a", actor="ci", lease_ttl=30)
    store.enqueue(env="staging", commit="a", actor="ci", lease_ttl=30)
    assert store.grant_next("prod") is not None
    staging = store.grant_next("staging")
    assert staging is not None and staging.fencing_token == 1


def test_only_success_moves_the_last_deployed_commit(store: LockStore) -> None:
    for commit, outcome in (("a", Outcome.SUCCEEDED), ("b", Outcome.FAILED), ("c", Outcome.SKIPPED_STALE)):
        request = store.enqueue(env="prod", commit=commit, actor="ci", lease_ttl=30)
        granted = store.grant_next("prod")
        assert granted is not None and granted.id == request.id
        store.finish(request.id, fencing_token=granted.fencing_token or 0, outcome=outcome, actor="ci")
    assert store.status("prod")[0].last_commit == "a"


def test_a_stale_fencing_token_cannot_act(store: LockStore) -> None:
    request = store.enqueue(env="prod", commit="a", actor="ci", lease_ttl=30)
    store.grant_next("prod")
    with pytest.raises(LeaseLostError):
        store.touch(request.id, fencing_token=99)
    with pytest.raises(LeaseLostError):
        store.finish(request.id, fencing_token=99, outcome=Outcome.SUCCEEDED, actor="ci")
    assert store.get(request.id).state == RequestState.GRANTED


def test_an_expired_holder_is_recorded_expired_and_the_next_proceeds(store: LockStore, clock: Clock) -> None:
    dead = store.enqueue(env="prod", commit="a", actor="ci", lease_ttl=30)
    waiter = store.enqueue(env="prod", commit="b", actor="ci", lease_ttl=30)
    store.grant_next("prod")
    clock.now += 20
    store.touch(waiter.id)  # the waiter is alive; the holder stopped renewing
    clock.now += 15
    expired = store.expire_due()
    assert [r.id for r in expired] == [dead.id]
    assert store.get(dead.id).outcome == Outcome.EXPIRED
    nxt = store.grant_next("prod")
    assert nxt is not None and nxt.id == waiter.id
    assert nxt.previous_commit is None  # an expired deploy never counts as deployed
    # The dead holder comes back: it learns its lease is lost, and the audit trail says so.
    with pytest.raises(LeaseLostError):
        store.finish(dead.id, fencing_token=1, outcome=Outcome.SUCCEEDED, actor="ci")
    assert store.get(dead.id).outcome == Outcome.EXPIRED
    assert "lease_lost" in [record.event for record in store.history("prod")]


def test_touch_on_a_run_out_lease_expires_it_durably(tmp_path: Path, clock: Clock) -> None:
    store = LockStore(tmp_path / "lock.db", clock=clock)
    request = store.enqueue(env="prod", commit="a", actor="ci", lease_ttl=30)
    clock.now += 31
    with pytest.raises(LeaseLostError):
        store.touch(request.id)
    reopened = LockStore(tmp_path / "lock.db", clock=clock)
    assert reopened.get(request.id).outcome == Outcome.EXPIRED


def test_restart_keeps_queue_and_holder_and_extends_leases(tmp_path: Path, clock: Clock) -> None:
    store = LockStore(tmp_path / "lock.db", clock=clock)
    holder = store.enqueue(env="prod", commit="a", actor="ci", lease_ttl=30)
    waiter = store.enqueue(env="prod", commit="b", actor="ci", lease_ttl=30)
    store.grant_next("prod")
    store.close()
    clock.now += 25  # the service was down for 25 s of a 30 s lease
    restarted = LockStore(tmp_path / "lock.db", clock=clock)
    assert restarted.extend_leases_after_restart() == 2
    clock.now += 20
    assert restarted.expire_due() == []
    assert restarted.get(holder.id).state == RequestState.GRANTED
    assert restarted.position(restarted.get(waiter.id)) == 2
    restarted.touch(holder.id, fencing_token=1)


def test_withdraw_and_admin_release_are_audited(store: LockStore) -> None:
    holder = store.enqueue(env="prod", commit="a", actor="ci", lease_ttl=30)
    waiter = store.enqueue(env="prod", commit="b", actor="alice", lease_ttl=30)
    store.grant_next("prod")
    assert store.withdraw(waiter.id, actor="alice").outcome == Outcome.WITHDRAWN
    released = store.admin_release("prod", actor="admin", reason="stuck")
    assert released is not None and released.id == holder.id
    assert released.outcome == Outcome.CANCELLED
    events = [(r.actor, r.event) for r in store.history("prod")]
    assert ("admin", "cancelled") in events
    assert ("alice", "withdrawn") in events


def test_a_failed_commit_rolls_back_and_the_store_stays_usable(tmp_path: Path, clock: Clock) -> None:
    """A deferred foreign key fails at COMMIT, the way a full disk or an I/O error would."""
    path = tmp_path / "lock.db"
    LockStore(path, clock=clock).close()
    with sqlite3.connect(path) as setup:
        setup.executescript(
            "CREATE TABLE dangling (ref INTEGER REFERENCES requests(id) DEFERRABLE INITIALLY DEFERRED);"
            "CREATE TRIGGER poison AFTER INSERT ON requests WHEN NEW.commit_sha = 'poison'"
            " BEGIN INSERT INTO dangling (ref) VALUES (-1); END;"
        )
    store = LockStore(path, clock=clock)
    with pytest.raises(sqlite3.IntegrityError):
        store.enqueue(env="prod", commit="poison", actor="ci", lease_ttl=30)
    request = store.enqueue(env="prod", commit="a", actor="ci", lease_ttl=30)
    assert store.grant_next("prod") is not None
    assert [r.commit for r in store.status("prod")[0].queue] == []
    assert store.get(request.id).state == RequestState.GRANTED
    assert [r.event for r in store.history("prod")] == ["granted", "queued"]  # nothing of the failed one


def test_a_database_from_before_request_secrets_is_migrated(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "lock.db"
    with sqlite3.connect(path) as old:
        old.executescript(OLD_REQUESTS)
    store = LockStore(path, clock=clock)
    old_request = store.get(1)
    assert old_request.commit == "old" and old_request.secret_hash is None
    fresh = store.enqueue(env="prod", commit="new", actor="ci", lease_ttl=30, secret_hash="ab" * 32)
    assert store.get(fresh.id).secret_hash == "ab" * 32
    store.close()
    assert LockStore(path, clock=clock).get(fresh.id).secret_hash == "ab" * 32  # a second open migrates nothing


def test_each_request_is_reported_ended_exactly_once(store: LockStore, clock: Clock) -> None:
    holder = store.enqueue(env="prod", commit="a", actor="ci", lease_ttl=30)
    waiter = store.enqueue(env="prod", commit="b", actor="ci", lease_ttl=30)
    store.grant_next("prod")
    store.finish(holder.id, fencing_token=1, outcome=Outcome.SUCCEEDED, actor="ci")
    with pytest.raises(LeaseLostError):
        store.finish(holder.id, fencing_token=1, outcome=Outcome.SUCCEEDED, actor="ci")
    with pytest.raises(LeaseLostError):
        store.touch(holder.id, fencing_token=1)
    assert [(r.id, r.outcome) for r in store.take_ended()] == [(holder.id, Outcome.SUCCEEDED)]
    store.withdraw(waiter.id, actor="ci")
    store.withdraw(waiter.id, actor="ci")
    assert [(r.id, r.outcome) for r in store.take_ended()] == [(waiter.id, Outcome.WITHDRAWN)]
    late = store.enqueue(env="prod", commit="c", actor="ci", lease_ttl=30)
    clock.now += 31
    with pytest.raises(LeaseLostError):
        store.touch(late.id)
    assert store.expire_due() == []
    assert [(r.id, r.outcome) for r in store.take_ended()] == [(late.id, Outcome.EXPIRED)]
    assert store.take_ended() == []


class LockModel(RuleBasedStateMachine):
    """The store against a plain-Python model of per-environment FIFO queues."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.directory = tempfile.TemporaryDirectory()
        self.path = Path(self.directory.name) / "lock.db"
        self.clock = Clock()
        self.store = LockStore(self.path, clock=self.clock)
        self.queues: dict[str, list[int]] = {"a": [], "b": []}
        self.holder: dict[str, int | None] = {"a": None, "b": None}
        self.tokens: dict[str, int] = {"a": 0, "b": 0}
        self.last: dict[str, str | None] = {"a": None, "b": None}
        self.commits: dict[int, str] = {}

    def teardown(self) -> None:
        self.store.close()
        self.directory.cleanup()

    @rule(env=st.sampled_from(["a", "b"]), commit=st.sampled_from(["c1", "c2", "c3"]))
    def enqueue(self, env: str, commit: str) -> None:
        request = self.store.enqueue(env=env, commit=commit, actor="t", lease_ttl=1e9)
        self.queues[env].append(request.id)
        self.commits[request.id] = commit

    @rule(env=st.sampled_from(["a", "b"]))
    def grant(self, env: str) -> None:
        granted = self.store.grant_next(env)
        if self.holder[env] is not None or not self.queues[env]:
            assert granted is None
            return
        expected = self.queues[env].pop(0)
        assert granted is not None and granted.id == expected
        self.tokens[env] += 1
        assert granted.fencing_token == self.tokens[env]
        assert granted.previous_commit == self.last[env]
        self.holder[env] = expected

    @rule(env=st.sampled_from(["a", "b"]), outcome=st.sampled_from([Outcome.SUCCEEDED, Outcome.FAILED]))
    def finish(self, env: str, outcome: Outcome) -> None:
        holder = self.holder[env]
        if holder is None:
            return
        self.store.finish(holder, fencing_token=self.tokens[env], outcome=outcome, actor="t")
        if outcome == Outcome.SUCCEEDED:
            self.last[env] = self.commits[holder]
        self.holder[env] = None

    @precondition(lambda self: any(self.queues.values()))
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        env = data.draw(st.sampled_from([e for e, q in self.queues.items() if q]))
        request_id = data.draw(st.sampled_from(self.queues[env]))
        self.store.withdraw(request_id, actor="t")
        self.queues[env].remove(request_id)

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = LockStore(self.path, clock=self.clock)
        self.store.extend_leases_after_restart()

    @invariant()
    def matches_the_model(self) -> None:
        for status in self.store.status():
            assert [r.id for r in status.queue] == self.queues[status.env]
            assert (status.holder.id if status.holder else None) == self.holder[status.env]
            assert status.fencing_counter == self.tokens[status.env]
            assert status.last_commit == self.last[status.env]


TestLockModel = LockModel.TestCase
TestLockModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
