"""HTTP client of the deploy lock service (httpx), with bounded retries on transport errors."""

from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from runner_ctl.errors import ConfigError, RunnerCtlError, UsageError

__all__ = ["LeaseLost", "LockClient", "ServiceUnreachableError"]


class ServiceUnreachableError(RunnerCtlError):
    exit_code = 6


class LeaseLost(RunnerCtlError):  # noqa: N818 - the name of the outcome it reports
    exit_code = 5


class _TransportError(Exception):
    pass


class LockClient:
    """One method per API call. Transport failures are retried with backoff for up to
    ``retry_seconds``, then raised as ServiceUnreachableError."""

    def __init__(self, base_url: str, secret: str, *, retry_seconds: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_seconds = retry_seconds
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {secret}", "User-Agent": "runner-ctl"},
            timeout=httpx.Timeout(10.0),
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, read_timeout: float = 10.0, **kwargs: Any) -> Any:
        @retry(
            retry=retry_if_exception_type(_TransportError),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(self.retry_seconds),
            reraise=True,
        )
        def attempt() -> httpx.Response:
            try:
                response = self._http.request(method, path, timeout=httpx.Timeout(10.0, read=read_timeout), **kwargs)
            except httpx.TransportError as error:
                raise _TransportError(str(error) or type(error).__name__) from None
            if response.status_code >= 500:
                raise _TransportError(f"HTTP {response.status_code}")
            return response

        try:
            response = attempt()
        except _TransportError as error:
            raise ServiceUnreachableError(
                f"the deploy lock service at {self.base_url} is unreachable ({error}); check RUNNER_CTL_LOCK_URL "
                "or --lock-url, or use --via-ssh HOST"
            ) from None
        if response.status_code == 401:
            raise ConfigError("the deploy lock service rejected the token; check RUNNER_CTL_LOCK_TOKEN or --token-file")
        body = response.json() if response.content else {}
        if response.status_code == 409:
            raise LeaseLost(f"the lock was lost: {body.get('detail', '')}")
        if response.status_code >= 400:
            detail = body.get("detail") or body.get("error") or f"HTTP {response.status_code}"
            raise UsageError(f"the deploy lock service refused the request: {detail}")
        return body

    def enqueue(self, env: str, *, commit: str, reason: str, queue_policy: str, lease_ttl: float) -> dict[str, Any]:
        body = {"commit": commit, "reason": reason, "queue_policy": queue_policy, "lease_ttl": lease_ttl}
        result: dict[str, Any] = self._call("POST", f"/v1/envs/{env}/requests", json=body)
        return result

    def wait(self, request_id: int, timeout: float) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/v1/requests/{request_id}/wait", params={"timeout": timeout}, read_timeout=timeout + 15
        )
        return result

    def heartbeat(self, request_id: int, fencing_token: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/v1/requests/{request_id}/heartbeat", json={"fencing_token": fencing_token}
        )
        return result

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
        result: dict[str, Any] = self._call("POST", f"/v1/requests/{request_id}/finish", json=body)
        return result

    def withdraw(self, request_id: int, outcome: str = "withdrawn") -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/requests/{request_id}/withdraw", json={"outcome": outcome})
        return result

    def status(self, env: str | None = None) -> Any:
        return self._call("GET", f"/v1/envs/{env}" if env else "/v1/envs")

    def history(self, env: str, limit: int) -> Any:
        return self._call("GET", f"/v1/envs/{env}/history", params={"limit": limit})

    def release(self, env: str, reason: str) -> Any:
        return self._call("POST", f"/v1/envs/{env}/release", json={"reason": reason})
