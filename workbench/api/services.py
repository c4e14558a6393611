"""How a subsystem's domain service is mounted in the HTTP service: one pattern for all.

A subsystem's API module declares one :class:`ServiceSpec` and passes it to its routers::

    SERVICE = ServiceSpec(
        "vision",
        config=lambda settings: VisionConfig.from_settings(settings),   # frozen, validated
        build=lambda config, settings: VisionService(config).start(),
        close=VisionService.close,
    )
    router = ApiRouter("/api/v1/vision", tag="vision", service=SERVICE)

    @router.get("/status", summary="...")
    async def status(req: ApiRequest) -> Any:
        return SERVICE.of(req).status()          # the domain service; handlers stay thin

The lifecycle is the app's, not the handlers':

- :func:`~workbench.api.app.create_app` builds every spec's config from the settings when the
  app is made, so a bad setting is a :class:`~workbench.errors.ConfigError` before any port is
  bound (``workbench serve`` also checks them in the parent process before it forks);
- the domain service is built once at app start-up, in the worker that owns it (see
  :mod:`workbench.api.workers`), and closed at clean-up; tests may pass ready-made services to
  ``create_app(services={name: service})``;
- the API module holds request/response schemas and thin handlers; the domain service
  (``workbench/<subsystem>/service.py``) holds state, background loops and logic, and returns
  dataclasses; the platform's camelCase shapes are built in the API module.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web

from workbench.config import Settings
from workbench.errors import ConfigError

__all__ = ["ServiceSpec", "close_service", "validate_services"]

C = TypeVar("C")
S = TypeVar("S")


@dataclass(frozen=True, eq=False)
class ServiceSpec(Generic[C, S]):
    """A subsystem's domain service as the HTTP service mounts it.

    Attributes:
        name: Short name of the subsystem (``"vision"``); it names the owner worker's socket
            and appears in errors and ``X-Workbench-Worker`` routing.
        config: Builds the subsystem's frozen, validated config from the settings; raises
            :class:`~workbench.errors.ConfigError` naming the bad key.
        build: Builds the domain service from its config (and the settings, for shared
            pieces such as the Redis URL). Runs once, at app start-up, in the owner worker.
        close: Releases the service (threads, pools); may be a coroutine function.
        per_worker: The service keeps its state in a shared store (the cache's contents in
            Redis), so every worker builds its own and serves its routes: no owner, no
            forwarding (see :mod:`workbench.api.workers`).
    """

    name: str
    config: Callable[[Settings], C]
    build: Callable[[C, Settings], S]
    close: Callable[[S], Awaitable[None] | None] | None = None
    per_worker: bool = False
    key: web.AppKey[Any] = field(init=False, repr=False)
    config_key: web.AppKey[Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"service name {self.name!r} must be an identifier")
        object.__setattr__(self, "key", web.AppKey(f"workbench_service_{self.name}", object))
        object.__setattr__(self, "config_key", web.AppKey(f"workbench_config_{self.name}", object))

    def of(self, request: Any) -> S:
        """The running service of the app that ``request`` (an ApiRequest or aiohttp request)
        belongs to."""
        app: web.Application = request.app
        try:
            return app[self.key]
        except KeyError:
            raise RuntimeError(
                f"the {self.name} service is not running in this process; its routes are "
                "served by the worker that owns it"
            ) from None

    def config_of(self, app: web.Application) -> C:
        """The validated config the app was made with."""
        return app[self.config_key]


def validate_services(specs: Iterable[ServiceSpec[Any, Any]], settings: Settings) -> dict[str, Any]:
    """Build every spec's config (validating the settings); returns them by service name.

    Raises:
        ConfigError: a subsystem's settings are invalid (the message names the key).
    """
    configs: dict[str, Any] = {}
    for spec in specs:
        try:
            configs[spec.name] = spec.config(settings)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid settings for the {spec.name} service: {exc}") from None
    return configs


async def close_service(spec: ServiceSpec[Any, Any], service: Any) -> None:
    """Run the spec's ``close`` on ``service``, awaiting it where it is a coroutine."""
    if spec.close is None:
        return
    result = spec.close(service)
    if inspect.isawaitable(result):
        await result
