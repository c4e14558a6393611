"""Knobs of the HTTP frame itself: the ``[api]`` settings section."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.config import Settings, from_section
from workbench.errors import ConfigError

__all__ = ["RATE_LIMIT_STORES", "ApiConfig"]

#: Where rate-limit buckets live: ``local`` (in each process; routes every worker serves get
#: limit / K per worker) or ``redis`` (one bucket per route and client in Redis, shared by every
#: worker and every server pointed at the same Redis).
RATE_LIMIT_STORES = ("local", "redis")


@dataclass(frozen=True)
class ApiConfig:
    """Knobs of the HTTP frame (``[api]`` in workbench.toml, ``WORKBENCH_API__<KEY>``).

    Attributes:
        rate_limits: Where rate-limit buckets live, one of :data:`RATE_LIMIT_STORES`.
    """

    rate_limits: str = "local"

    def __post_init__(self) -> None:
        if self.rate_limits not in RATE_LIMIT_STORES:
            raise ConfigError(
                f"invalid setting [api] rate_limits={self.rate_limits!r}: use 'local' or 'redis'",
                details={"key": "api.rate_limits"},
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiConfig:
        """Build from the settings' ``[api]`` section, refusing unknown keys."""
        return from_section(cls, settings.section("api"), "api")
