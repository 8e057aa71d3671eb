"""What every latency source is asked with, and the forge client it is asked through."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner_ctl.forge.httpcache import ApiCounters, HttpCache
from runner_ctl.forge.rest import RestClient, cache_slug
from runner_ctl.latency.model import Filters
from runner_ctl.latency.window import Window

__all__ = ["Gaps", "SourceOptions"]


MAX_NAMED = 20  # missing runs named in a report; the count says how many more


@dataclass
class Gaps:
    """What a source could not count, for the report to say: jobs without ``created_at``
    (GitHub before 2023, older GitHub Enterprise Server) and runs whose jobs answered 404
    (deleted after they were listed)."""

    no_created_at: int = 0
    missing_runs: list[tuple[int, str]] = field(default_factory=list)  # (id, name)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, no_created_at: int = 0, missing_run: tuple[int, str] | None = None) -> None:
        with self._lock:  # sources fetch runs' jobs from several threads
            self.no_created_at += no_created_at
            if missing_run is not None:
                self.missing_runs.append(missing_run)

    def missing_json(self) -> dict[str, object]:
        named = [name for _, name in sorted(self.missing_runs)]
        return {"runs": len(named), "names": named[:MAX_NAMED]}


@dataclass(frozen=True)
class SourceOptions:
    """What every forge source is asked with."""

    api_url: str
    token: str
    token_env: str
    window: Window
    filters: Filters
    cache_root: Path | None  # None: no cache
    counters: ApiCounters
    max_wait: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    gaps: Gaps = field(default_factory=Gaps)

    def client(
        self, *, forge: str, auth_headers: dict[str, str], not_found: str, cache_parts: tuple[str, ...]
    ) -> RestClient:
        """A client of this forge's API whose cache lives under ``forge/API host/cache_parts``."""
        root = self.cache_root
        return RestClient(
            forge=forge,
            base_url=self.api_url,
            auth_headers=auth_headers,
            token_env=self.token_env,
            not_found=not_found,
            cache=HttpCache(root.joinpath(forge.lower(), cache_slug(self.api_url), *cache_parts) if root else None),
            counters=self.counters,
            max_wait=self.max_wait,
            sleep=self.sleep,
        )
