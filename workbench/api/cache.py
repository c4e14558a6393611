"""HTTP routes of the cache coordinator under ``/api/v1/cache`` (the platform's routes).

- ``GET /{key}``: the value (404 when absent or expired); ``POST /{key}`` ``{value, ttl}``
  stores it; ``DELETE /{key}`` (admin) removes it;
- ``POST /batch`` ``{keys, service}``: the values of many keys in one round trip;
- ``POST /invalidate`` ``{pattern, service}`` (admin): removes the key ``pattern`` (exact, as
  the platform did); our extension: ``pattern`` may be a list of keys, and ``prefix`` removes
  every key that starts with it;
- ``POST /warm`` ``{service, data, ttl}`` (admin): stores every item of ``data``, all or none;
- ``GET /stats``, ``GET /health`` (``{healthy, status, latency_ms, mode, ...}``, degraded
  over 100 ms of Redis latency or while the memory tier serves; always 200, since the cache
  still answers), ``GET /resilience`` (breaker, journal, outages, recoveries).

**Namespaces.** The service comes from the ``X-Service-Type`` header (default ``default``), or
the ``service`` member of a batch, invalidate or warm body; it is 1-64 letters, digits or
``_.-`` (a 400 naming the header or the member otherwise), and the key lives in Redis as
``cache:<service>:<key>``. At most ``[cache] max_services`` namespaces are made (409 past it).

**Keys in the path** are URL-decoded and may hold any character (``/`` included, sent as
``%2F`` or as is), 1 to ``[cache] max_key_length`` (512) characters. A few are unreachable
through the path: the dot segments ``.`` and ``..`` (URL rules), and the route names
``stats``, ``health``, ``resilience``, ``batch``, ``invalidate`` and ``warm``
(:data:`RESERVED`); ``POST /warm``, ``POST /batch`` and ``POST /invalidate`` reach those.

**Values** are any JSON value, at most ``[cache] max_value_bytes`` (1 MiB) once encoded
(stored as JSON, never pickled); ``ttl`` is seconds in (0, ``[cache] max_ttl_s``], default
``[cache] default_ttl_s`` (1 h). While Redis is out reads and writes are served by the
worker's memory tier with the same answers (see :mod:`workbench.cache.service`), unless
``[cache] strict`` is set (503 then).

Every worker serves these routes itself: the contents are in Redis, shared, and each worker
keeps its own memory tier (no owner process; see :mod:`workbench.api.workers`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from workbench.api.routing import ApiRequest, ApiRouter, Reply
from workbench.api.services import ServiceSpec
from workbench.api.wire import WireModel
from workbench.cache.service import (
    MAX_BATCH_KEYS,
    MAX_KEY_LENGTH,
    MAX_TTL_S,
    MAX_WARM_ITEMS,
    SERVICE_HEADER,
    SERVICE_PATTERN,
    CacheService,
    CacheServiceConfig,
)
from workbench.config import Settings
from workbench.errors import NotFoundError

__all__ = ["RESERVED", "SERVICE", "router"]


def _build(config: CacheServiceConfig, settings: Settings) -> CacheService:
    service = CacheService.from_settings(config, settings)
    service.warm_at_start()  # [cache] warm_file, before the first request
    return service


#: The cache coordinator: built at start-up in every worker, closed with the app.
SERVICE: ServiceSpec[CacheServiceConfig, CacheService] = ServiceSpec(
    "cache",
    config=CacheServiceConfig.from_settings,
    build=_build,
    close=CacheService.aclose,
    per_worker=True,  # the contents are in Redis, shared; each worker keeps its memory tier
)

router = ApiRouter("/api/v1/cache", tag="cache", service=SERVICE)

Key = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_LENGTH)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ServiceName = Annotated[str, StringConstraints(pattern=SERVICE_PATTERN)]
Ttl = Annotated[float, Field(gt=0, le=MAX_TTL_S)]

#: Route names are no keys: aiohttp would otherwise route ``POST /stats`` to the key and
#: advertise the key's methods on every fixed route.
RESERVED = ("stats", "health", "resilience", "batch", "invalidate", "warm")
_KEY = "{key:(?!(?:" + "|".join(RESERVED) + ")$)[\\s\\S]+}"
_SERVICE_DOC = (
    f"The namespace is the {SERVICE_HEADER} header (default 'default'; 1-64 letters, digits, "
    "'_', '.' or '-')."
)
_NAMESPACES = {409: "[cache] max_services namespaces exist; reuse a service name"}


def _service(req: ApiRequest) -> CacheService:
    return SERVICE.of(req)


def _namespace(req: ApiRequest, body_service: str | None = None) -> tuple[str, str]:
    """``(service, field it came from)``: the body's member, else the header, else default."""
    if body_service is not None:
        return CacheService.check_service(body_service, "service"), "service"
    raw = req.request.headers.get(SERVICE_HEADER)
    if raw is None:
        return "default", SERVICE_HEADER
    return CacheService.check_service(raw, SERVICE_HEADER), SERVICE_HEADER


def _key(req: ApiRequest) -> str:
    return req.path["key"]


class SetBody(WireModel):
    value: Any = Field(
        description="Any JSON value, at most [cache] max_value_bytes (1 MiB) once encoded."
    )
    ttl: Ttl | None = Field(
        default=None,
        description="Seconds until it expires, in (0, [cache] max_ttl_s]; null: "
        "[cache] default_ttl_s (3600).",
    )


class BatchBody(WireModel):
    keys: list[Key] = Field(
        max_length=MAX_BATCH_KEYS,
        description="Keys to read, each 1-512 characters; at most [cache] max_batch_keys (1000).",
    )
    service: ServiceName | None = Field(
        default=None, description=f"The namespace; default: the {SERVICE_HEADER} header."
    )


# "pattern or prefix", said in the schema too, so clients and fuzzers know.
_PATTERN_OR_PREFIX: dict[str, Any] = {
    "anyOf": [
        {"required": ["pattern"], "properties": {"pattern": {"not": {"type": "null"}}}},
        {"required": ["prefix"], "properties": {"prefix": {"not": {"type": "null"}}}},
        {"required": ["tags"], "properties": {"tags": {"type": "array", "minItems": 1}}},
    ]
}


class InvalidateBody(WireModel):
    model_config = ConfigDict(json_schema_extra=_PATTERN_OR_PREFIX)

    pattern: Key | Annotated[list[Key], Field(max_length=MAX_BATCH_KEYS)] | None = Field(
        default=None,
        description="The key to remove (exact match, as the platform's), or a list of keys "
        "(at most [cache] max_batch_keys).",
    )
    prefix: Key | None = Field(
        default=None, description="Also remove every key that starts with this (SCAN)."
    )
    tags: Annotated[list[Tag], Field(max_length=MAX_BATCH_KEYS)] | None = Field(
        default=None,
        description="Also remove every key cached under one of these tags (our extension).",
    )
    service: ServiceName | None = Field(
        default=None, description=f"The namespace; default: the {SERVICE_HEADER} header."
    )

    @model_validator(mode="after")
    def _something(self) -> InvalidateBody:
        if self.pattern is None and self.prefix is None and not self.tags:
            raise ValueError("give pattern (a key or a list of keys), prefix or tags")
        return self


class WarmBody(WireModel):
    data: dict[Key, Any] = Field(
        max_length=MAX_WARM_ITEMS,
        description="Key to JSON value; at most [cache] max_warm_items (1000) items, every "
        "value at most [cache] max_value_bytes once encoded. All are stored, or none.",
    )
    ttl: Ttl | None = Field(
        default=None, description="Seconds until they expire; null: [cache] default_ttl_s."
    )
    service: ServiceName | None = Field(
        default=None, description=f"The namespace; default: the {SERVICE_HEADER} header."
    )


# The fixed routes come before /{key} (a key named like one of them is reachable by batch).
@router.get("/stats", summary="Counters of a namespace in this worker", description=_SERVICE_DOC)
async def stats(req: ApiRequest) -> Any:
    service, _ = _namespace(req)
    return _service(req).stats(service)


@router.get(
    "/health",
    public=True,
    summary="Health of the cache (degraded: Redis over 100 ms, or out)",
    description="Always 200 while the service answers: a degraded cache still serves from "
    "its memory tier. It covers this worker's namespaces (``fallback_services`` lists those "
    "serving from memory) and needs no token, so it takes no service header.",
)
async def health(req: ApiRequest) -> Any:
    return await _service(req).health()


@router.get(
    "/resilience",
    summary="The fallback: mode, breaker, outage journal, outages and recoveries",
    description=_SERVICE_DOC,
    responses=_NAMESPACES,
)
async def resilience(req: ApiRequest) -> Any:
    service, _ = _namespace(req)
    return _service(req).resilience(service)


@router.post(
    "/batch",
    body=BatchBody,
    summary="Read many keys in one round trip",
    description="``values`` holds the keys found; ``missing`` the others. " + _SERVICE_DOC,
    responses=_NAMESPACES,
)
async def batch(req: ApiRequest) -> Any:
    body: BatchBody = req.body
    service, field = _namespace(req, body.service)
    values = await _service(req).get_many(service, body.keys, field=field)
    missing = [k for k in dict.fromkeys(body.keys) if k not in values]
    return {
        "service": service,
        "values": values,
        "missing": missing,
        "hits": len(values),
        "misses": len(missing),
    }


@router.post(
    "/invalidate",
    body=InvalidateBody,
    admin=True,
    summary="Remove keys: exact (pattern), by prefix or by tag",
    description="``complete`` is false when Redis was out and a prefix was given: the prefix "
    "then reached only the keys this worker holds (exact keys are still removed from Redis "
    "on recovery). " + _SERVICE_DOC,
    responses=_NAMESPACES,
)
async def invalidate(req: ApiRequest) -> Any:
    body: InvalidateBody = req.body
    service, field = _namespace(req, body.service)
    keys = [body.pattern] if isinstance(body.pattern, str) else list(body.pattern or [])
    done = await _service(req).invalidate(
        service, keys=keys, prefix=body.prefix, tags=body.tags or (), field=field
    )
    return Reply(done.to_dict(), meta={"message": f"{done.deleted} keys invalidated"})


@router.post(
    "/warm",
    body=WarmBody,
    admin=True,
    summary="Store many items at once (all or none)",
    description=_SERVICE_DOC,
    responses=_NAMESPACES,
)
async def warm(req: ApiRequest) -> Any:
    body: WarmBody = req.body
    service, field = _namespace(req, body.service)
    done = await _service(req).warm(service, body.data, body.ttl, field=field)
    return Reply(done.to_dict(), meta={"message": f"{done.count} items warmed"})


_BY_KEY = {"path.key": "$request.path.key"}


@router.get(
    f"/{_KEY}",
    summary="Read a key",
    description="404 when the key is absent or expired. " + _SERVICE_DOC,
    responses={**_NAMESPACES, 404: "the key is absent or expired"},
)
async def get_key(req: ApiRequest) -> Any:
    service, _ = _namespace(req)
    key = _key(req)
    found, value = await _service(req).get(service, key)
    if not found:
        raise NotFoundError(
            f"no key {key[:80]!r} in service {service!r} (absent or expired)",
            details={"field": "key"},
        )
    return {"key": key, "service": service, "value": value}


@router.post(
    f"/{_KEY}",
    body=SetBody,
    summary="Store a key",
    description=_SERVICE_DOC,
    responses=_NAMESPACES,
    links={
        "GetKey": {"operationId": "get_api_v1_cache_key", "parameters": _BY_KEY},
        "DeleteKey": {"operationId": "delete_api_v1_cache_key", "parameters": _BY_KEY},
    },
)
async def set_key(req: ApiRequest) -> Any:
    body: SetBody = req.body
    service, _ = _namespace(req)
    key = _key(req)
    ttl = await _service(req).set(service, key, body.value, body.ttl)
    return Reply({"key": key, "service": service, "ttl": ttl}, meta={"message": "cached"})


@router.delete(
    f"/{_KEY}",
    admin=True,
    summary="Remove a key",
    description="``deleted`` says whether it existed. " + _SERVICE_DOC,
    responses=_NAMESPACES,
)
async def delete_key(req: ApiRequest) -> Any:
    service, _ = _namespace(req)
    key = _key(req)
    deleted = await _service(req).delete(service, key)
    return {"key": key, "service": service, "deleted": deleted}
