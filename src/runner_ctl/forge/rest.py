"""A small REST client for the GitHub and GitLab APIs, shared by everything that asks them.

It pays for as little as it can and waits when it is told to: conditional requests from
the ETag cache, ``retry-after`` (both forges), ``x-ratelimit-remaining``/``reset`` (GitHub)
and ``RateLimit-Remaining``/``Reset`` (GitLab), GitHub's secondary rate limits (403 or 429
without those headers), and server errors — all with a bounded number of attempts and a
bounded wait. Tokens travel in headers only; no message ever contains one.
"""

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from runner_ctl import __version__
from runner_ctl.errors import ConfigError, ProxyConfigError, RunnerCtlError
from runner_ctl.forge.httpcache import ApiCounters, HttpCache

__all__ = [
    "MAX_CONCURRENCY",
    "ApiError",
    "NotFoundError",
    "Page",
    "Payload",
    "RestClient",
    "cache_slug",
    "fetch_all",
    "token_from_env",
    "trimmer",
]

# GitHub asks integrators to make requests serially; a few at a time stays far from its
# secondary rate limits (100 concurrent requests) while hiding most of the latency.
MAX_CONCURRENCY = 4
# Without a retry-after, GitHub's documentation says to wait at least a minute.
_SECONDARY_LIMIT_WAIT = 60.0

T = TypeVar("T")
R = TypeVar("R")


class ApiError(RunnerCtlError):
    """The API failed us: unreachable, rate limited for too long, or an unexpected answer."""

    exit_code = 1


class NotFoundError(ConfigError):
    """HTTP 404: the repository or project does not exist, or the token cannot see it."""


class Payload(BaseModel):
    """An API object: the fields we use are validated, the rest dropped."""

    model_config = ConfigDict(extra="ignore")


def trimmer(model: type[Payload], forge: str) -> Callable[[Any], Any]:
    """Validate an answer against the fields we use and keep only those (the cache stays small)."""

    def trim(raw: Any) -> Any:
        try:
            if isinstance(raw, list):  # GitLab answers with bare lists
                return [model.model_validate(item).model_dump() for item in raw]
            return model.model_validate(raw).model_dump()
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ApiError(
                f"the {forge} API answered with an unexpected payload ({where}: {first['msg']}); check --api-url"
            ) from None

    return trim


@dataclass(frozen=True)
class Page:
    body: Any
    next_url: str | None


class _RetryableError(Exception):
    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        text = body.get("message") or body.get("error") or response.reason_phrase
        return " ".join(str(text).split())[:200]
    return response.reason_phrase


def _seconds_header(response: httpx.Response, *names: str) -> float | None:
    for name in names:
        value = response.headers.get(name)
        if value is None:
            continue
        try:
            return float(value)
        except ValueError:
            try:  # retry-after may be an HTTP date
                return parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                continue
    return None


class RestClient:
    """Asks one API for JSON.

    ``not_found`` is the whole message for a 404 on the main resource, ``permission`` what a
    token answered with 403 lacks (named in that error).
    """

    def __init__(
        self,
        *,
        forge: str,
        base_url: str,
        auth_headers: dict[str, str],
        token_env: str,
        not_found: str,
        cache: HttpCache | None = None,
        counters: ApiCounters | None = None,
        max_attempts: int = 5,
        max_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        permission: str | None = None,
    ) -> None:
        self.forge = forge
        self.permission = permission or ("actions: read" if forge == "GitHub" else "the read_api scope")
        self.base_url = base_url.rstrip("/")
        self.token_env = token_env
        self.not_found = not_found
        self.cache = HttpCache(None) if cache is None else cache  # the runner APIs: answers change, none cached
        self.counters = ApiCounters() if counters is None else counters
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self._sleep = sleep
        self._resume_at = 0.0
        self._lock = threading.Lock()
        try:
            self._http = httpx.Client(
                headers={**auth_headers, "User-Agent": f"runner-ctl/{__version__}"},
                timeout=httpx.Timeout(30.0),
                follow_redirects=True,
            )
        except httpx.InvalidURL:  # --api-url is checked already: only a proxy variable is left (it may hold a password)
            raise ProxyConfigError from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str, params: dict[str, str | int] | None = None) -> str:
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        return str(httpx.URL(url, params=params)) if params else url

    def get(self, url: str, *, conditional: bool = False, trim: Callable[[Any], Any] | None = None) -> Page:
        """GET ``url`` (absolute, from ``url()`` or a Link header); the body passes through ``trim``.

        ``conditional`` pages are stored with their ETag; the next GET of the same URL asks
        If-None-Match and a 304 is answered from disk.
        """
        stored = self.cache.get_page(url) if conditional else None
        headers = {"If-None-Match": stored[0]} if stored else {}
        response = self._request(url, headers)
        if response.status_code == 304 and stored is not None and isinstance(stored[1], dict):
            self.counters.add(not_modified=1)
            return Page(stored[1].get("body"), stored[1].get("next"))
        self.counters.add(calls=1)
        try:
            raw = response.json()
        except ValueError:
            raise ApiError(f"the {self.forge} API at {self.base_url} answered {self._path(url)} with something that "
                           "is not JSON; check --api-url") from None  # fmt: skip
        body = trim(raw) if trim else raw
        next_link = response.links.get("next", {}).get("url")
        etag = response.headers.get("etag")
        if conditional and etag:
            self.cache.put_page(url, etag, {"body": body, "next": next_link})
        return Page(body, next_link)

    def send(self, method: str, url: str, *, body: dict[str, Any] | None = None) -> Any:
        """``method`` (POST, PUT, PATCH, DELETE) on ``url`` with a JSON ``body``; the answer's JSON, or None.

        Retried like a GET on transport errors, server errors and rate limits: each call this
        project makes is safe to repeat (a token, a label set, a deletion of a runner).
        """
        response = self._request(url, {}, method=method, body=body)
        self.counters.add(calls=1)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"the {self.forge} API at {self.base_url} answered {method} {self._path(url)} with "
                           "something that is not JSON; check the API URL") from None  # fmt: skip

    def collect(
        self, url: str, *, trim: Callable[[Any], Any], items: Callable[[Any], list[Any]], key: str, max_pages: int
    ) -> list[Any]:
        """Every item of a paged list of something that never changes (a finished run's jobs).

        Served from the disk cache under ``key`` without a request when it is there.
        """
        cached = self.cache.get_object(key)
        if isinstance(cached, list):
            self.counters.add(cache_hits=1)
            return cached
        found: list[Any] = []
        next_url: str | None = url
        for _ in range(max_pages):
            if next_url is None:
                break
            page = self.get(next_url, trim=trim)
            found.extend(items(page.body))
            next_url = page.next_url
        self.cache.put_object(key, found)
        return found

    def _path(self, url: str) -> str:
        return httpx.URL(url).path

    def _request(
        self, url: str, headers: dict[str, str], *, method: str = "GET", body: dict[str, Any] | None = None
    ) -> httpx.Response:
        def wait_for(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, _RetryableError) and error.wait is not None:
                return error.wait
            return float(min(30.0, 0.5 * 2 ** (state.attempt_number - 1)))

        retrying = Retrying(
            retry=retry_if_exception_type(_RetryableError),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_for,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, url, headers, method, body)
        except _RetryableError as error:
            raise ApiError(
                f"the {self.forge} API at {self.base_url} kept failing ({error.reason}) after {self.max_attempts} "
                "attempts; try again later (what was fetched is cached)"
            ) from None

    def _pause_for_rate_limit(self) -> None:
        with self._lock:
            pause = self._resume_at - time.time()
        if pause > 0:
            self._check_wait(pause)
            self._sleep(pause)

    def _check_wait(self, seconds: float) -> None:
        if seconds > self.max_wait:
            resume = time.strftime("%H:%M:%S", time.gmtime(time.time() + seconds))
            raise ApiError(
                f"the {self.forge} API rate limit for the token in {self.token_env} is used up until {resume} UTC "
                f"({seconds:.0f} s, longer than the {self.max_wait:.0f} s this report waits); run it again then "
                "(what was fetched is cached)"
            )

    def _attempt(
        self, url: str, headers: dict[str, str], method: str = "GET", body: dict[str, Any] | None = None
    ) -> httpx.Response:
        self._pause_for_rate_limit()
        try:
            response = self._http.request(method, url, headers=headers, json=body)
        except httpx.LocalProtocolError as error:
            # Raised while writing the request: its text may quote a header, the token's included.
            raise ApiError(f"the {self.forge} API request could not be sent ({type(error).__name__})") from None
        except httpx.TransportError as error:
            raise _RetryableError(str(error) or type(error).__name__) from None
        self._note_budget(response)
        status = response.status_code
        if status in (200, 304) or (method != "GET" and status in (201, 202, 204)):
            return response
        if status == 401:
            raise ConfigError(
                f"the {self.forge} API rejected the token in {self.token_env} (HTTP 401: {_message(response)}); "
                f"set {self.token_env} to a valid token"
            )
        if status in (403, 429):
            self.counters.add(calls=1)
            pause = self._rate_limit_wait(response)
            if pause is None:
                verb = "read" if method == "GET" else method
                raise ConfigError(
                    f"the token in {self.token_env} may not {verb} {self._path(url)} (HTTP 403: {_message(response)}); "
                    f"it needs {self.permission}"
                )
            self._check_wait(pause)
            raise _RetryableError(f"rate limited, HTTP {status}", pause)
        if status == 404:
            raise NotFoundError(self.not_found)
        if status >= 500:
            self.counters.add(calls=1)
            raise _RetryableError(f"HTTP {status}")
        raise ApiError(
            f"the {self.forge} API answered HTTP {status} for {self._path(url)}: {_message(response)}; check the flags"
        )

    def _note_budget(self, response: httpx.Response) -> None:
        """Wait before the next request once the budget is spent, instead of being refused."""
        remaining = response.headers.get("x-ratelimit-remaining") or response.headers.get("ratelimit-remaining")
        reset = _seconds_header(response, "x-ratelimit-reset", "ratelimit-reset")
        if remaining == "0" and reset is not None and response.status_code < 300:
            with self._lock:
                self._resume_at = max(self._resume_at, reset + 1)

    def _rate_limit_wait(self, response: httpx.Response) -> float | None:
        retry_after = _seconds_header(response, "retry-after")
        if retry_after is not None:
            return max(0.0, retry_after)
        remaining = response.headers.get("x-ratelimit-remaining") or response.headers.get("ratelimit-remaining")
        reset = _seconds_header(response, "x-ratelimit-reset", "ratelimit-reset")
        if remaining == "0" and reset is not None:
            return max(0.0, reset - time.time()) + 1
        if response.status_code == 429 or "rate limit" in _message(response).lower():
            return _SECONDARY_LIMIT_WAIT
        return None


def fetch_all(items: Iterable[T], fetch: Callable[[T], R], workers: int = MAX_CONCURRENCY) -> list[R]:
    """``fetch`` over ``items`` at most ``workers`` at a time, in order; the first error wins."""
    todo = list(items)
    if workers <= 1 or len(todo) <= 1:
        return [fetch(item) for item in todo]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="runner-ctl-fetch") as pool:
        futures: list[Future[R]] = [pool.submit(fetch, item) for item in todo]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            error = future.exception()
            if error is not None:
                for pending in futures:
                    pending.cancel()
                raise error
        return [future.result() for future in futures]


def cache_slug(api_url: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", api_url.split("://", 1)[-1]).strip("_")


def token_from_env(name: str, *, or_else: str = "") -> str:
    """The API token in ``$name``, checked before it goes into a header; no message shows it.

    ``or_else`` ends the message for an unset variable (another way to give a token).
    """
    token = os.environ.get(name, "").strip()
    if not token:
        raise ConfigError(f"no API token: set the environment variable {name}{or_else}")
    if not token.isascii():
        raise ConfigError(f"{name} contains non-ASCII characters; set it to the token exactly as the forge issued it")
    if not token.isprintable() or any(char.isspace() for char in token):
        raise ConfigError(f"{name} contains whitespace or control characters; set it to the token alone")
    return token
