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
        allowed_hosts: Host names (without port) a request's ``Host`` header may name while
            no API token is set; others get 403, so a web page that rebinds its own DNS name
            to 127.0.0.1 cannot read the answers of a token-less local server. ``"*"`` allows
            any. Ignored when a token is set (the token protects then).
    """

    rate_limits: str = "local"
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

    def __post_init__(self) -> None:
        hosts = tuple(str(h).strip().lower().strip("[]") for h in self.allowed_hosts)
        if not hosts or any(not h for h in hosts):
            raise ConfigError(
                f"invalid setting [api] allowed_hosts={self.allowed_hosts!r}: list host names "
                "such as ['localhost', '127.0.0.1', '::1'], or ['*'] for any",
                details={"key": "api.allowed_hosts"},
            )
        object.__setattr__(self, "allowed_hosts", hosts)
        if self.rate_limits not in RATE_LIMIT_STORES:
            raise ConfigError(
                f"invalid setting [api] rate_limits={self.rate_limits!r}: use 'local' or 'redis'",
                details={"key": "api.rate_limits"},
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiConfig:
        """Build from the settings' ``[api]`` section, refusing unknown keys."""
        return from_section(cls, settings.section("api"), "api")
