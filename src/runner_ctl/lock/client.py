"""HTTP client of the deploy lock service (httpx), with bounded retries on transport errors.

Every failure is a RunnerCtlError whose one-line message never holds a header value (the
token, a request's secret):

- ``ServiceUnreachableError`` (exit 6): no answer, or 5xx, after ``retry_seconds`` of retries;
- ``LeaseLost`` (exit 5): 409, the request no longer holds (or never held) the lock;
- ``TokenRejectedError`` (a ConfigError, exit 2): 401;
- ``LockApiError`` (exit 2): the service refused the call (403, 404, 422, other 4xx); ``status``;
- ``NotLockServiceError`` (a LockApiError, exit 2): the URL answers, but not as this service
  (HTML, not JSON, a list where an object belongs, a request without its secret);
- ``UsageError``/``ConfigError`` (exit 2) from the constructor: a malformed URL or token.
"""

import math
import re
from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from runner_ctl.errors import ConfigError, RunnerCtlError, UsageError
from runner_ctl.lock.states import REQUEST_SECRET_HEADER, RequestState, validate_env
from runner_ctl.lock.tokens import check_client_secret

__all__ = [
    "REQUEST_SECRET_HEADER",
    "LeaseLost",
    "LockApiError",
    "LockClient",
    "NotLockServiceError",
    "ServiceUnreachableError",
    "TokenRejectedError",
]

# What the service's request secrets look like (secrets.token_urlsafe); anything else is not
# sent back as a header.
_REQUEST_SECRET = re.compile(r"[A-Za-z0-9_-]{16,128}")
_REQUEST_STATES = frozenset(str(state) for state in RequestState)
_MAX_DETAIL = 300


class ServiceUnreachableError(RunnerCtlError):
    exit_code = 6


class LeaseLost(RunnerCtlError):  # noqa: N818 - the name of the outcome it reports
    exit_code = 5


class TokenRejectedError(ConfigError):
    """401: the token is not (or no longer) in the service's token file."""


class LockApiError(RunnerCtlError):
    """The service answered and refused the call; ``status`` is its HTTP status."""

    exit_code = 2

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotLockServiceError(LockApiError):
    """Something answers at the URL, but not the runner-ctl lock service."""


class _TransportError(Exception):
    pass


_NOT_JSON = object()
_KINDS = {dict: "a JSON object", list: "a JSON list", str: "a JSON string", type(None): "JSON null"}


def _shown_url(url: str) -> str:
    """The URL for a message, without any user:password part."""
    return re.sub(r"//[^/@]*@", "//", url)


class LockClient:
    """One method per API call. Transport failures are retried with backoff for up to
    ``retry_seconds``, then raised as ServiceUnreachableError.

    The client remembers the secret of each request it enqueued and sends it when it acts
    on that request; only this client object can wait for, renew, finish or withdraw it.
    """

    def __init__(self, base_url: str, secret: str, *, retry_seconds: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.shown_url = _shown_url(self.base_url)
        if not (math.isfinite(retry_seconds) and retry_seconds >= 0):
            raise UsageError(f"retry_seconds {retry_seconds} is invalid; expected a number of seconds from 0")
        self.retry_seconds = retry_seconds
        check_client_secret(secret)
        self._token = secret
        self._request_secrets: dict[int, str] = {}
        invalid = UsageError(
            f"lock URL {self.shown_url!r} is invalid; expected http://HOST:PORT or https://HOST:PORT "
            "(e.g. http://127.0.0.1:7465)"
        )
        if not self.base_url.isprintable() or any(ch.isspace() for ch in self.base_url):
            raise invalid
        try:
            url = httpx.URL(self.base_url)
            if url.scheme not in ("http", "https") or not url.host:
                raise invalid
            self._http = httpx.Client(
                base_url=url,
                headers={"Authorization": f"Bearer {secret}", "User-Agent": "runner-ctl"},
                timeout=httpx.Timeout(10.0),
            )
        except (httpx.InvalidURL, TypeError, ValueError):
            raise invalid from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "LockClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        """``text`` without any secret this client holds, cut to one short line."""
        for secret in (self._token, *self._request_secrets.values()):
            text = text.replace(secret, "[redacted]")
        return text[:_MAX_DETAIL]

    def _not_service(self, method: str, path: str, what: str) -> NotLockServiceError:
        return NotLockServiceError(
            f"{self.shown_url} does not look like the runner-ctl lock service: it answered {method} {path} "
            f"with {what}; check RUNNER_CTL_LOCK_URL or --lock-url"
        )

    def _call(
        self, method: str, path: str, *, read_timeout: float = 10.0, listing: bool = False,
        acting_on: int | None = None, **kwargs: Any,
    ) -> Any:  # fmt: skip
        headers = {}
        if acting_on is not None and acting_on in self._request_secrets:
            headers[REQUEST_SECRET_HEADER] = self._request_secrets[acting_on]

        @retry(
            retry=retry_if_exception_type(_TransportError),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(self.retry_seconds),
            reraise=True,
        )
        def attempt() -> httpx.Response:
            try:
                response = self._http.request(
                    method, path, headers=headers, timeout=httpx.Timeout(10.0, read=read_timeout), **kwargs
                )
            except httpx.LocalProtocolError:
                # Our own request could not be written: its text may hold a header value.
                raise LockApiError(f"the request {method} {path} to the lock service could not be sent") from None
            except httpx.TransportError as error:
                raise _TransportError(self._scrub(str(error) or type(error).__name__)) from None
            if response.status_code >= 500:
                raise _TransportError(f"HTTP {response.status_code}")
            return response

        try:
            response = attempt()
        except _TransportError as error:
            raise ServiceUnreachableError(
                f"the deploy lock service at {self.shown_url} is unreachable ({error}); check RUNNER_CTL_LOCK_URL "
                "or --lock-url, or use --via-ssh HOST"
            ) from None
        status = response.status_code
        if status == 401:
            raise TokenRejectedError(
                f"the deploy lock service at {self.shown_url} rejected the token; check RUNNER_CTL_LOCK_TOKEN or "
                "--token-file"
            )
        body = self._json(response)
        if status >= 400:
            if not (isinstance(body, dict) and isinstance(body.get("error"), str)):
                raise self._not_service(method, path, f"HTTP {status} and no error of its own")
            detail = body.get("detail")
            reason = self._scrub(detail if isinstance(detail, str) and detail else body["error"])
            if status == 409:
                raise LeaseLost(f"the lock was lost: {reason}")
            raise LockApiError(f"the deploy lock service refused {method} {path} (HTTP {status}): {reason}", status)
        if body is _NOT_JSON:
            raise self._not_service(method, path, f"HTTP {status} and a body that is not JSON")
        if listing:
            fits = isinstance(body, list) and all(isinstance(item, dict) for item in body)
        else:
            fits = isinstance(body, dict)
        if not fits:
            wanted = "a list of JSON objects" if listing else "a JSON object"
            raise self._not_service(method, path, f"{_KINDS.get(type(body), 'other JSON')} where {wanted} belongs")
        return body

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _NOT_JSON

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A call answered by one deploy request, checked to be one."""
        body: dict[str, Any] = self._call(method, path, **kwargs)
        if not (
            isinstance(body.get("id"), int)
            and not isinstance(body["id"], bool)
            and body.get("state") in _REQUEST_STATES
        ):
            raise self._not_service(method, path, "JSON that is not a deploy request")
        return body

    @staticmethod
    def _env(env: str) -> str:
        try:
            return validate_env(env)
        except ValueError as error:
            raise UsageError(str(error)) from None

    @staticmethod
    def _id(request_id: int) -> int:
        if isinstance(request_id, bool) or not isinstance(request_id, int) or not 1 <= request_id <= 2**62:
            raise UsageError(f"deploy request id {request_id!r} is invalid; expected a positive integer")
        return request_id

    def enqueue(self, env: str, *, commit: str, reason: str, queue_policy: str, lease_ttl: float) -> dict[str, Any]:
        """Join ``env``'s queue. The answer's ``request_secret`` is kept here; never print it."""
        path = f"/v1/envs/{self._env(env)}/requests"
        body = {"commit": commit, "reason": reason, "queue_policy": queue_policy, "lease_ttl": lease_ttl}
        result = self._request("POST", path, json=body)
        secret = result.get("request_secret")
        if not (isinstance(secret, str) and _REQUEST_SECRET.fullmatch(secret)):
            raise self._not_service(
                "POST", path, "a request without a valid request_secret (an older lock service? upgrade it)"
            )
        self._request_secrets[result["id"]] = secret
        return result

    def wait(self, request_id: int, timeout: float) -> dict[str, Any]:
        if not (math.isfinite(timeout) and timeout >= 0):
            raise UsageError(f"wait timeout {timeout} is invalid; expected a finite number of seconds from 0")
        return self._request(
            "POST", f"/v1/requests/{self._id(request_id)}/wait", params={"timeout": timeout},
            read_timeout=timeout + 15, acting_on=request_id,
        )  # fmt: skip

    def heartbeat(self, request_id: int, fencing_token: int) -> dict[str, Any]:
        return self._request(
            "POST", f"/v1/requests/{self._id(request_id)}/heartbeat", json={"fencing_token": fencing_token},
            acting_on=request_id,
        )  # fmt: skip

    def finish(
        self, request_id: int, *, fencing_token: int, outcome: str, exit_code: int | None, rollback: bool, detail: str
    ) -> dict[str, Any]:
        body = {
            "fencing_token": fencing_token,
            "outcome": outcome,
            "exit_code": exit_code,
            "rollback": rollback,
            "detail": detail[:2000],
        }
        return self._request("POST", f"/v1/requests/{self._id(request_id)}/finish", json=body, acting_on=request_id)

    def withdraw(self, request_id: int, outcome: str = "withdrawn") -> dict[str, Any]:
        return self._request(
            "POST", f"/v1/requests/{self._id(request_id)}/withdraw", json={"outcome": outcome}, acting_on=request_id
        )

    def status(self, env: str | None = None) -> Any:
        if env is None:
            return self._call("GET", "/v1/envs", listing=True)
        return self._call("GET", f"/v1/envs/{self._env(env)}")

    def history(self, env: str, limit: int) -> Any:
        return self._call("GET", f"/v1/envs/{self._env(env)}/history", params={"limit": limit}, listing=True)

    def release(self, env: str, reason: str) -> Any:
        result = self._call("POST", f"/v1/envs/{self._env(env)}/release", json={"reason": reason})
        if "released" not in result:
            raise self._not_service("POST", f"/v1/envs/{env}/release", "JSON without the released request")
        return result
