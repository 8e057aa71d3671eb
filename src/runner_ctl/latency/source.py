"""What every latency source is asked with, and the forge client it is asked through."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner_ctl.forge.httpcache import ApiCounters, HttpCache
from runner_ctl.forge.rest import RestClient, cache_slug
from runner_ctl.latency.model import Filters
from runner_ctl.latency.window import Window

__all__ = ["SourceOptions"]


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
