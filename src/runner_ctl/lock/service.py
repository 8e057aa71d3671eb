"""The deploy lock service: the store behind an HTTP JSON API (FastAPI, one event loop).

Waiters long-poll ``POST /v1/requests/{id}/wait``; a release grants the next request in
the same event-loop turn and wakes its waiter, so handoff takes milliseconds with no
client sleeping in a loop. A background task expires leases at the moment they run out.

Every request passes ``_Gate`` first: it authenticates before anything else is read (no
valid token, 401 and nothing more), then reads the body under its size limit. Acting on a
request (wait, heartbeat, finish, withdraw) also needs the secret its enqueue returned.
"""

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from runner_ctl import __version__
from runner_ctl.lock.states import ENV_PATTERN, REQUEST_SECRET_HEADER, Outcome, RequestState
from runner_ctl.lock.store import LeaseLostError, LockStore, NotFoundError
from runner_ctl.lock.store import Request as LockRequest
from runner_ctl.lock.tokens import Token, TokenTable

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_WAIT_SECONDS",
    "REQUEST_SECRET_HEADER",
    "ErrorBody",
    "create_app",
    "hash_request_secret",
]

MAX_BODY_BYTES = 64 * 1024
# A body arrives in a few messages; many more (empty ones) is a client playing games.
MAX_BODY_MESSAGES = 4096
MAX_WAIT_SECONDS = 60.0
# Served without a token: probes, Prometheus, and the API description (docs/reference/lock-api.md).
PUBLIC_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json"})
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
EnvName = Annotated[str, Path(pattern=ENV_PATTERN.pattern, description="environment name")]
RequestId = Annotated[int, Path(ge=1, le=2**62)]
RequestSecret = Annotated[
    str,
    Header(alias=REQUEST_SECRET_HEADER, description="the request_secret that enqueueing this request returned"),
]


def hash_request_secret(secret: str) -> str:
    """What the store keeps of a request's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


class EnqueueBody(BaseModel):
    """A deploy request joining an environment's queue."""

    model_config = ConfigDict(extra="forbid")
    commit: str = Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$", description="full commit id")
    reason: str = Field("", max_length=500, description="Why, for the audit trail.")
    queue_policy: Literal["latest", "all"] = Field(
        "latest",
        description="latest: a queued commit with a newer descendant queued behind it is superseded; "
        "all: every request deploys.",
    )
    lease_ttl: float = Field(30.0, ge=3.0, le=3600.0, description="Seconds a grant's lease lasts without a heartbeat.")


class HeartbeatBody(BaseModel):
    """A lease renewal by the holder."""

    model_config = ConfigDict(extra="forbid")
    fencing_token: int | None = Field(
        None, ge=1, le=2**62, description="The grant's fencing token; a mismatch means the lease is lost (409)."
    )


class FinishBody(BaseModel):
    """How a granted deploy ended, reported once by its holder."""

    model_config = ConfigDict(extra="forbid")
    fencing_token: int = Field(ge=1, le=2**62, description="The grant's fencing token.")
    outcome: Literal["succeeded", "failed", "skipped_stale", "superseded", "refused", "cancelled"] = Field(
        description="The deploy's outcome; only succeeded records the commit as the environment's last deployed."
    )
    exit_code: int | None = Field(None, ge=-255, le=255, description="COMMAND's exit code, when it ran.")
    rollback: bool = Field(False, description="The deploy went back to a diverged commit (--allow-rollback).")
    detail: str = Field("", max_length=2000, description="A line for the audit trail.")


class WithdrawBody(BaseModel):
    """A waiting request leaving the queue."""

    model_config = ConfigDict(extra="forbid")
    outcome: Literal["withdrawn", "timeout"] = Field(
        "withdrawn", description="withdrawn: a signal; timeout: --wait-timeout passed."
    )


class ReleaseBody(BaseModel):
    """An admin breaking a stuck lock."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500, description="Why, for the audit trail.")


class ErrorBody(BaseModel):
    """Every error answer of the service (4xx): a name, and a line when there is more to say."""

    model_config = ConfigDict(extra="forbid")
    error: str = Field(
        description="unauthorized, forbidden, not_found, method_not_allowed, lease_lost, body_too_large, "
        "invalid_request or bad_request."
    )
    detail: str | None = Field(None, description="What was wrong, one line; absent for 401.")


_ERROR_ANSWERS: dict[int, str] = {
    401: "unauthorized: no valid token in Authorization: Bearer TOKEN (nothing else is said, the body is not read)",
    403: "forbidden: the request belongs to another client (X-Request-Secret), or the call needs an admin token",
    404: "not_found: no such request or environment",
    409: "lease_lost: the lease ran out or the fencing token is not the holder's",
    413: "body_too_large: the body is over 64 KiB (declared or chunked)",
    422: "invalid_request: a parameter or the body is malformed; detail names the field",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, for its OpenAPI document (the service's own shape, not FastAPI's 422)."""
    return {code: {"model": ErrorBody, "description": _ERROR_ANSWERS[code]} for code in codes}


class ServiceMetrics:
    """The Prometheus metrics /metrics serves: one registry per service instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "runner_ctl_lock_queue_depth", "Requests waiting per environment", ["env"], registry=self.registry
        )
        self.wait_seconds = Histogram(
            "runner_ctl_lock_wait_seconds",
            "Seconds from enqueue to grant",
            buckets=(0.1, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
            registry=self.registry,
        )
        self.deploy_seconds = Histogram(
            "runner_ctl_lock_deploy_duration_seconds",
            "Seconds from grant to outcome",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
            registry=self.registry,
        )
        self.outcomes = Counter(
            "runner_ctl_lock_outcomes", "Requests ended, by outcome", ["status"], registry=self.registry
        )
        self.lease_expiries = Counter("runner_ctl_lock_lease_expiries", "Leases that ran out", registry=self.registry)


class _Coordinator:
    """Grants and wake-ups. Runs on the event loop only, so store calls never interleave."""

    def __init__(self, store: LockStore, metrics: ServiceMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self.changed: dict[int, asyncio.Event] = {}
        self.lease_changed = asyncio.Event()

    def event_for(self, request_id: int) -> asyncio.Event:
        return self.changed.setdefault(request_id, asyncio.Event())

    def wake(self, request_id: int) -> None:
        event = self.changed.pop(request_id, None)
        if event is not None:
            event.set()

    def settle(self) -> None:
        """Count, wake and hand on what the store's last transitions ended. Called after every
        store call that can end a request; the store reports each ending once, so a late
        heartbeat or a second finish never counts an outcome again."""
        envs: dict[str, None] = {}
        for request in self.store.take_ended():
            self.metrics.outcomes.labels(status=str(request.outcome)).inc()
            if request.outcome == Outcome.EXPIRED:
                self.metrics.lease_expiries.inc()
            if request.granted_at is not None and request.finished_at is not None:
                self.metrics.deploy_seconds.observe(max(0.0, request.finished_at - request.granted_at))
            self.wake(request.id)
            envs[request.env] = None
        for env in envs:
            self.dispatch(env)

    def dispatch(self, env: str) -> None:
        granted = self.store.grant_next(env)
        if granted is not None:
            if granted.granted_at is not None:
                self.metrics.wait_seconds.observe(max(0.0, granted.granted_at - granted.created_at))
            self.wake(granted.id)
        self.lease_changed.set()
        self.refresh_depth(env)

    def refresh_depth(self, env: str) -> None:
        self.metrics.queue_depth.labels(env=env).set(self.store.queue_depth(env))

    def expire_due(self) -> None:
        self.store.expire_due()
        self.settle()

    async def expiry_loop(self) -> None:
        """Expire leases as they run out (bounded sleeps; woken early when leases change)."""
        while True:
            soonest = self.store.next_lease_expiry()
            if soonest is not None and soonest < time.time():
                self.expire_due()
                soonest = self.store.next_lease_expiry()
            delay = 1.0 if soonest is None else min(1.0, max(0.005, soonest - time.time() + 0.001))
            self.lease_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lease_changed.wait(), timeout=delay)


def _error(status: int, error: str, detail: str = "") -> JSONResponse:
    body: dict[str, str] = {"error": error}
    if detail:
        body["detail"] = detail
    return JSONResponse(status_code=status, content=body)


def _header(scope: MutableMapping[str, Any], name: bytes) -> bytes | None:
    return next((value for key, value in scope.get("headers", []) if key == name), None)


class _Gate:
    """In front of the app: authenticate first (401, nothing else read or said), then read the
    body whole under MAX_BODY_BYTES (413, declared or chunked) and hand it on."""

    def __init__(self, app: Callable[..., Awaitable[None]], tokens: TokenTable, public: frozenset[str]) -> None:
        self.app = app
        self.tokens = tokens
        self.public = public

    def authenticate(self, scope: MutableMapping[str, Any]) -> Token | None:
        header = (_header(scope, b"authorization") or b"").decode("latin-1")
        scheme, _, secret = header.partition(" ")
        return self.tokens.authenticate(secret.strip()) if scheme.lower() == "bearer" and secret else None

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in self.public:
            token = self.authenticate(scope)
            if token is None:
                await _error(401, "unauthorized")(scope, receive, send)
                return
            scope["runner_ctl.token"] = token
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            await _too_large()(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        for _ in range(MAX_BODY_MESSAGES):
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > MAX_BODY_BYTES:
                break
            if not message.get("more_body", False):
                await self.app(scope, _replay(b"".join(chunks), receive), send)
                return
        await _too_large()(scope, receive, send)


def _too_large() -> JSONResponse:
    return _error(413, "body_too_large", f"at most {MAX_BODY_BYTES} bytes")


def _replay(
    body: bytes, receive: Callable[[], Awaitable[MutableMapping[str, Any]]]
) -> Callable[[], Awaitable[MutableMapping[str, Any]]]:
    """The body once, in one message; then the connection's own messages (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> MutableMapping[str, Any]:
        return pending.pop() if pending else await receive()

    return replayed


def create_app(store: LockStore, tokens: TokenTable, *, docs: bool = False) -> Any:
    """The ASGI application. ``store`` must be fresh from a (re)start: leases get extended.

    ``docs`` serves the interactive pages /docs and /redoc (off by default: they load scripts
    from a CDN and are one more surface); /openapi.json is always served.
    """
    metrics = ServiceMetrics()
    state: dict[str, _Coordinator] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        coordinator = _Coordinator(store, metrics)
        state["c"] = coordinator
        # A restart must not cost a live holder its lock, nor a waiter its place.
        store.extend_leases_after_restart()
        for env in store.active_envs():
            coordinator.dispatch(env)
        for status in store.status():
            coordinator.refresh_depth(status.env)
        task = asyncio.create_task(coordinator.expiry_loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="runner-ctl deploy lock",
        version=__version__,
        description="Serialized deploys per environment: FIFO queues, leases, fencing tokens, audit.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )

    def coordinator() -> _Coordinator:
        return state["c"]

    async def caller(request: Request) -> Token:
        token: Token | None = request.scope.get("runner_ctl.token")
        if token is None:  # _Gate authenticates every path outside PUBLIC_PATHS; this is a safety net
            raise HTTPException(status_code=401)
        return token

    Caller = Annotated[Token, Depends(caller)]  # noqa: N806 - a type alias, named as types are

    def lookup(request_id: int) -> LockRequest:
        try:
            return store.get(request_id)
        except NotFoundError:
            raise HTTPException(status_code=404, detail=f"no deploy request {request_id}") from None

    def own(request_id: int, token: Token) -> LockRequest:
        found = lookup(request_id)
        if found.actor != token.name and not token.admin:
            raise HTTPException(status_code=403, detail=f"deploy request {request_id} belongs to {found.actor}")
        return found

    def acting(request_id: int, secret: str) -> LockRequest:
        """The request, if ``secret`` is the one its enqueue returned. No bypass, admins
        included: breaking a lock is ``release``, which is audited as such."""
        found = lookup(request_id)
        offered = hash_request_secret(secret)
        if found.secret_hash is None or not hmac.compare_digest(offered, found.secret_hash):
            raise HTTPException(
                status_code=403,
                detail=f"deploy request {request_id} belongs to another client: acting on it needs the "
                f"{REQUEST_SECRET_HEADER} that its enqueue returned",
            )
        return found

    # Starlette's, the base of FastAPI's: the router's 404/405 and the body parser's 400 raise it.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {
            400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
            409: "lease_lost", 413: "body_too_large",
        }  # fmt: skip
        detail = "" if exc.status_code == 401 else str(exc.detail or "")
        return _error(exc.status_code, names.get(exc.status_code, "error"), detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, without a token: ``{"ok": true, "version": ...}``."""
        return {"ok": True, "version": __version__}

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics in the text exposition format, without a token."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/envs/{env}/requests", status_code=201, responses=_errors(401, 413, 422))
    async def enqueue(env: EnvName, body: EnqueueBody, token: Caller) -> dict[str, Any]:
        """Join ``env``'s queue. The answer holds ``request_secret``, shown this once: wait,
        heartbeat, finish and withdraw need it in the X-Request-Secret header."""
        secret = secrets.token_urlsafe(32)
        created = store.enqueue(
            env=env,
            commit=body.commit,
            actor=token.name,
            reason=body.reason,
            queue_policy=body.queue_policy,
            lease_ttl=body.lease_ttl,
            secret_hash=hash_request_secret(secret),
        )
        coordinator().dispatch(env)
        return {**store.as_dict(store.get(created.id)), "request_secret": secret}

    @app.get("/v1/requests/{request_id}", responses=_errors(401, 403, 404, 422))
    async def show(request_id: RequestId, token: Caller) -> dict[str, Any]:
        """One request: state, commit, actor, fencing token, lease, outcome (never its secret)."""
        return store.as_dict(own(request_id, token))

    @app.post("/v1/requests/{request_id}/wait", responses=_errors(401, 403, 404, 422))
    async def wait(
        request_id: RequestId,
        token: Caller,
        secret: RequestSecret = "",
        timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 25.0,
    ) -> dict[str, Any]:
        """Long-poll until the request is granted or over, or ``timeout`` passes; keeps a waiter's place."""
        found = acting(request_id, secret)
        if found.state == RequestState.QUEUED:
            remaining = (found.lease_expires_at or 0.0) - time.time()
            # Renew only a half-used lease: a fresh waiter costs no write (one per cycle saved).
            if remaining < found.lease_ttl / 2:
                try:
                    found = store.touch(request_id)
                except LeaseLostError:
                    coordinator().settle()
                    return store.as_dict(store.get(request_id))
                remaining = (found.lease_expires_at or 0.0) - time.time()
            # Never wait past the lease: the client renews its place with its next call.
            timeout = min(timeout, max(0.0, remaining - 1.0))
            event = coordinator().event_for(request_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=timeout)
        return store.as_dict(store.get(request_id))

    @app.post("/v1/requests/{request_id}/heartbeat", responses=_errors(401, 403, 404, 409, 413, 422))
    async def heartbeat(
        request_id: RequestId, body: HeartbeatBody, token: Caller, secret: RequestSecret = ""
    ) -> dict[str, Any]:
        """Renew the lease of a queued or granted request; 409 when the lease is already lost."""
        acting(request_id, secret)
        try:
            renewed = store.touch(request_id, body.fencing_token)
        except LeaseLostError as error:
            coordinator().settle()
            raise HTTPException(status_code=409, detail=str(error)) from None
        coordinator().lease_changed.set()
        return store.as_dict(renewed)

    @app.post("/v1/requests/{request_id}/finish", responses=_errors(401, 403, 404, 409, 413, 422))
    async def finish(
        request_id: RequestId, body: FinishBody, token: Caller, secret: RequestSecret = ""
    ) -> dict[str, Any]:
        """End a granted request with its outcome; 409 when its lease ran out first (then it stays expired)."""
        acting(request_id, secret)
        try:
            done = store.finish(
                request_id,
                fencing_token=body.fencing_token,
                outcome=Outcome(body.outcome),
                actor=token.name,
                exit_code=body.exit_code,
                rollback=body.rollback,
                detail=body.detail,
            )
        except LeaseLostError as error:
            coordinator().settle()
            raise HTTPException(status_code=409, detail=str(error)) from None
        coordinator().settle()
        return store.as_dict(done)

    @app.post("/v1/requests/{request_id}/withdraw", responses=_errors(401, 403, 404, 413, 422))
    async def withdraw(
        request_id: RequestId, body: WithdrawBody, token: Caller, secret: RequestSecret = ""
    ) -> dict[str, Any]:
        """Leave the queue before a grant, or give a grant back; the next request proceeds."""
        acting(request_id, secret)
        left = store.withdraw(request_id, actor=token.name, outcome=Outcome(body.outcome))
        coordinator().settle()
        return store.as_dict(left)

    def env_status(env: str | None) -> list[dict[str, Any]]:
        return [
            {
                "env": status.env,
                "last_commit": status.last_commit,
                "fencing_counter": status.fencing_counter,
                "holder": store.as_dict(status.holder) if status.holder else None,
                "queue": [store.as_dict(r) for r in status.queue],
            }
            for status in store.status(env)
        ]

    @app.get("/v1/envs", responses=_errors(401))
    async def all_envs(token: Caller) -> list[dict[str, Any]]:
        """Every environment: holder, queue and last deployed commit."""
        return env_status(None)

    @app.get("/v1/envs/{env}", responses=_errors(401, 404, 422))
    async def one_env(env: EnvName, token: Caller) -> dict[str, Any]:
        """One environment: holder, queue and last deployed commit."""
        found = env_status(env)
        if not found:
            raise HTTPException(status_code=404, detail=f"no deploys recorded for environment {env}")
        return found[0]

    @app.get("/v1/envs/{env}/history", responses=_errors(401, 422))
    async def history(
        env: EnvName, token: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> list[dict[str, Any]]:
        """The audit trail of an environment, newest first: who, what commit, when, which transition."""
        return [
            {
                "id": r.id,
                "at": r.at,
                "env": r.env,
                "request_id": r.request_id,
                "actor": r.actor,
                "event": r.event,
                "commit": r.commit,
                "detail": r.detail,
            }
            for r in store.history(env, limit)
        ]

    @app.post("/v1/envs/{env}/release", responses=_errors(401, 403, 413, 422))
    async def release(env: EnvName, body: ReleaseBody, token: Caller) -> dict[str, Any]:
        """Break a stuck lock (admin token only; audited): the holder's request ends and the next is granted."""
        if not token.admin:
            raise HTTPException(status_code=403, detail="releasing a lock needs an admin token")
        released = store.admin_release(env, actor=token.name, reason=body.reason)
        coordinator().settle()
        return {"env": env, "released": store.as_dict(released) if released else None}

    return _Gate(app, tokens, PUBLIC_PATHS | DOCS_PATHS if docs else PUBLIC_PATHS)
