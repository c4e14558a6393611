"""The router's configuration: backends, strategy, resilience knobs, read from TOML.

A config file has one ``[router]`` table and one ``[[backends]]`` table per backend::

    [router]
    strategy = "p2c-ewma"
    client_keys_env = ["ROUTER_CLIENT_KEY"]
    retries = 2
    [router.strategies]
    planner-pro = "thompson"
    [router.fallbacks]
    planner-pro = ["planner-fast", "local-general"]
    [router.breaker]
    min_calls = 5
    open_s = 30
    [router.limits]                 # per client key; see workbench.router.limits
    rpm = 600
    tpm = 100000
    [router.limits.keys.ROUTER_CLIENT_KEY]
    rpm = 60

    [[backends]]
    name = "vllm-a"
    url = "http://10.0.0.5:8000/v1"
    models = ["llama3.2:3b"]
    aliases = ["local-general"]
    api_key_env = "VLLM_A_KEY"

Every value is checked when the file is loaded; a bad one raises
:class:`~workbench.errors.ConfigError` naming the key (``backends[1].weight``), the value and
what would be valid, so a typo never reaches a running router. Keys a table does not know are
refused for the same reason. API keys are read from the environment variables the config
names, once, at load; they are kept out of ``repr`` and never appear in a message.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from workbench.errors import ConfigError

__all__ = [
    "BACKEND_KINDS",
    "STRATEGY_NAMES",
    "BackendConfig",
    "BreakerConfig",
    "KeyLimits",
    "LimitsConfig",
    "ResponseCacheConfig",
    "RouterConfig",
    "load_config",
]

#: Provider kinds a backend may be. ``openai``, ``lmstudio``, ``vllm`` and ``llamacpp`` speak
#: the OpenAI shapes; ``ollama`` (native ``/api/chat``) and ``anthropic`` (Messages API) are
#: translated by :mod:`workbench.router.translate`.
BACKEND_KINDS = ("openai", "ollama", "anthropic", "lmstudio", "vllm", "llamacpp")
#: Kinds that speak the OpenAI wire format natively.
OPENAI_KINDS = frozenset({"openai", "lmstudio", "vllm", "llamacpp"})
#: Balancing strategies a config may name (the stable contract of ``[router] strategy``).
STRATEGY_NAMES = (
    "round-robin",
    "weighted",
    "least-outstanding",
    "p2c-ewma",
    "cost",
    "tiers",
    "thompson",
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_MODEL = re.compile(r"^[^\s]{1,200}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_S = 86400.0


def _bad(key: str, value: Any, valid: str) -> ConfigError:
    return ConfigError(
        f"router config: {key} = {value!r} is invalid; expected {valid}",
        details={"field": key, "expected": valid},
    )


def _number(key: str, value: Any, lo: float, hi: float, *, lo_open: bool = True) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if lo_open else "["
        raise _bad(key, value, f"a number in {bracket}{lo:g}, {hi:g}]")
    return float(value)


def _integer(key: str, value: Any, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _bad(key, value, f"an integer in [{lo}, {hi}]")
    return value


def _strings(key: str, value: Any, pattern: re.Pattern[str], *, empty: bool) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _bad(key, value, "a list of strings")
    if not empty and not value:
        raise _bad(key, value, "a non-empty list of strings")
    for item in value:
        if not isinstance(item, str) or not pattern.match(item):
            raise _bad(key, value, f"strings matching {pattern.pattern}")
    if len(set(value)) != len(value):
        raise _bad(key, value, "a list without duplicates")
    return tuple(value)


def _read_env(key: str, var: str, environ: Mapping[str, str]) -> str:
    secret = environ.get(var, "")
    if not secret:
        # The message names the variable, never a value.
        raise ConfigError(
            f"router config: {key} names the environment variable {var!r}, which is unset or "
            "empty; export it or remove the key",
            details={"field": key},
        )
    return secret


@dataclass(frozen=True)
class BreakerConfig:
    """Per-backend circuit breaker settings (:class:`workbench.breaker.SlidingWindowBreaker`).

    Attributes:
        window: ``"count"`` (the last ``size`` calls) or ``"time"`` (the last ``window_s`` s).
        size: Calls in a count window.
        window_s: Seconds in a time window.
        min_calls: Calls the window must hold before it may open (the platform's threshold 5).
        failure_rate: Failed fraction that opens it, in (0, 1].
        slow_call_s: Seconds above which a call is slow (``None``: no slow-call rule).
        slow_rate: Slow fraction that opens it, in (0, 1].
        open_s: Seconds it stays open before half-open probes.
        max_open_s: Longest a backend's Retry-After may keep it open.
        half_open_calls: Probes let through while half-open.
    """

    window: str = "count"
    size: int = 20
    window_s: float = 30.0
    min_calls: int = 5
    failure_rate: float = 0.5
    slow_call_s: float | None = None
    slow_rate: float = 1.0
    open_s: float = 30.0
    max_open_s: float = 300.0
    half_open_calls: int = 3

    def __post_init__(self) -> None:
        if self.window not in ("count", "time"):
            raise _bad("router.breaker.window", self.window, "'count' or 'time'")
        _integer("router.breaker.size", self.size, 1, 1_000_000)
        _number("router.breaker.window_s", self.window_s, 0.0, _MAX_S)
        top = self.size if self.window == "count" else 1_000_000
        _integer("router.breaker.min_calls", self.min_calls, 1, top)
        _number("router.breaker.failure_rate", self.failure_rate, 0.0, 1.0)
        if self.slow_call_s is not None:
            _number("router.breaker.slow_call_s", self.slow_call_s, 0.0, _MAX_S)
        _number("router.breaker.slow_rate", self.slow_rate, 0.0, 1.0)
        _number("router.breaker.open_s", self.open_s, 0.0, _MAX_S)
        _number("router.breaker.max_open_s", self.max_open_s, self.open_s, _MAX_S, lo_open=False)
        _integer("router.breaker.half_open_calls", self.half_open_calls, 1, 1000)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~workbench.breaker.SlidingWindowBreaker`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _limit_values(key: str, rpm: Any, tpm: Any, burst: Any) -> None:
    for name, value in (("rpm", rpm), ("tpm", tpm), ("burst", burst)):
        if value is not None:
            _integer(f"{key}.{name}", value, 1, 10**12)


@dataclass(frozen=True)
class KeyLimits:
    """One client key's limits in ``[router.limits.keys.<ENV_NAME>]``; a field left out
    takes the value of ``[router.limits]``.

    Attributes:
        rpm: Requests per minute.
        tpm: Tokens per minute.
        burst: Requests admitted at once after a quiet spell (the request bucket's size).
        unlimited: No limit at all for this key (the other fields must then be left out).
    """

    rpm: int | None = None
    tpm: int | None = None
    burst: int | None = None
    unlimited: bool = False

    def __post_init__(self) -> None:
        _limit_values("router.limits.keys[]", self.rpm, self.tpm, self.burst)
        if not isinstance(self.unlimited, bool):
            raise _bad("router.limits.keys[].unlimited", self.unlimited, "true or false")


@dataclass(frozen=True)
class LimitsConfig:
    """Per client key rate limits (``[router.limits]``), enforced by
    :mod:`workbench.router.limits`, in Redis when ``[router] redis_url`` is set.

    Attributes:
        rpm: Requests per minute for every key (``None``: no request limit).
        tpm: Tokens per minute for every key, as the backends report usage (``None``: none).
        burst: Size of the request bucket (default ``rpm``: a quiet key may spend a minute's
            allowance at once).
        keys: Overrides by the environment variable name of a client key (a name in
            ``client_keys_env``; never the key itself).
        reserve_prompt_tokens: Charge an estimate of the prompt's tokens at admission and
            settle against the reported usage afterwards.
        fail_open: Admit requests while Redis does not answer (default: refuse them, 503).
        redis_timeout_s: Longest one admission waits for Redis, seconds.
        redis_prefix: Prefix of the limiter's Redis keys (one per client key).
    """

    rpm: int | None = None
    tpm: int | None = None
    burst: int | None = None
    keys: Mapping[str, KeyLimits] = field(default_factory=dict)
    reserve_prompt_tokens: bool = True
    fail_open: bool = False
    redis_timeout_s: float = 0.25
    redis_prefix: str = "workbench:router:limits:"

    def __post_init__(self) -> None:
        _limit_values("router.limits", self.rpm, self.tpm, self.burst)
        if self.burst is not None and self.rpm is None:
            raise _bad("router.limits.burst", self.burst, "no burst without an rpm limit")
        if not isinstance(self.keys, Mapping):
            raise _bad("router.limits.keys", self.keys, "[router.limits.keys.<ENV_NAME>] tables")
        for name, limits in self.keys.items():
            key = f"router.limits.keys.{name}"
            if not isinstance(name, str) or not _ENV.match(name):
                raise _bad(key, name, "the environment variable name of a client key")
            if not isinstance(limits, KeyLimits):
                raise _bad(key, limits, f"a [{key}] table")
            _limit_values(key, limits.rpm, limits.tpm, limits.burst)
            given = limits.rpm, limits.tpm, limits.burst
            if limits.unlimited and any(v is not None for v in given):
                raise _bad(f"{key}.unlimited", True, "no rpm, tpm or burst beside unlimited")
            resolved = self.for_key(name)
            if resolved.burst is not None and resolved.rpm is None:
                raise _bad(f"{key}.burst", limits.burst, "no burst without an rpm limit")
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        for name in ("reserve_prompt_tokens", "fail_open"):
            if not isinstance(getattr(self, name), bool):
                raise _bad(f"router.limits.{name}", getattr(self, name), "true or false")
        _number("router.limits.redis_timeout_s", self.redis_timeout_s, 0.0, 60.0)
        if not isinstance(self.redis_prefix, str) or not re.match(
            r"^[A-Za-z0-9_.:{}-]{1,100}$", self.redis_prefix
        ):
            raise _bad("router.limits.redis_prefix", self.redis_prefix, "a Redis key prefix")

    def for_key(self, name: str | None) -> KeyLimits:
        """The limits of the client key read from the variable ``name`` (``None``: no client
        keys configured, the loopback client), overrides applied."""
        own = self.keys.get(name) if name is not None else None
        if own is None:
            return KeyLimits(rpm=self.rpm, tpm=self.tpm, burst=self.burst)
        if own.unlimited:
            return own
        return KeyLimits(
            rpm=own.rpm if own.rpm is not None else self.rpm,
            tpm=own.tpm if own.tpm is not None else self.tpm,
            burst=own.burst if own.burst is not None else (self.burst if own.rpm is None else None),
        )

    @property
    def enabled(self) -> bool:
        """Whether any key has a limit."""
        if self.rpm is not None or self.tpm is not None:
            return True
        return any(k.rpm is not None or k.tpm is not None for k in self.keys.values())


@dataclass(frozen=True)
class ResponseCacheConfig:
    """The response cache (``[router.cache]``) for non-streamed, temperature-0 chat
    completions (:mod:`workbench.router.response_cache`).

    Attributes:
        ttl_s: Seconds an answer is served from the cache.
        url: Where: ``memory://`` (this process) or a Redis URL; ``None``: ``[router]
            redis_url`` when set, else memory.
        namespace: The cache namespace (:class:`workbench.cache.CacheConfig`).
        shared_across_keys: Serve one client key's cached answer to another. Off by default:
            a hit would tell a client that someone else sent the same conversation.
        max_entry_bytes: Largest answer stored.
        memory_bytes: Budget of the in-process tier.
        timeout_s: Longest one cache call waits for Redis.
    """

    ttl_s: float
    url: str | None = None
    namespace: str = "router-responses"
    shared_across_keys: bool = False
    max_entry_bytes: int = 1 << 20
    memory_bytes: int = 64 << 20
    timeout_s: float = 0.25

    def __post_init__(self) -> None:
        _number("router.cache.ttl_s", self.ttl_s, 0.0, 7 * _MAX_S)
        if self.url is not None and (
            not isinstance(self.url, str)
            or not self.url.startswith(("memory://", "redis://", "rediss://", "unix://"))
        ):
            raise _bad("router.cache.url", self.url, "memory:// or a redis:// URL")
        if not isinstance(self.namespace, str) or not re.match(
            r"^[A-Za-z0-9_.\-]{1,64}$", self.namespace
        ):
            raise _bad("router.cache.namespace", self.namespace, "1-64 letters, digits or _.-")
        if not isinstance(self.shared_across_keys, bool):
            raise _bad("router.cache.shared_across_keys", self.shared_across_keys, "true or false")
        _integer("router.cache.max_entry_bytes", self.max_entry_bytes, 1, 64 << 20)
        _integer("router.cache.memory_bytes", self.memory_bytes, 1024, 1 << 40)
        _number("router.cache.timeout_s", self.timeout_s, 0.0, 60.0)


@dataclass(frozen=True)
class BackendConfig:
    """One upstream server.

    Attributes:
        name: Unique identifier (letters, digits, ``_.:-``), used in metrics and logs.
        url: Base URL. OpenAI-compatible kinds and ``anthropic`` end in ``/v1``; ``ollama`` is
            the server root (``http://host:11434``; a trailing ``/v1`` is accepted and dropped
            for the native routes).
        models: Model names it serves (non-empty).
        kind: One of :data:`BACKEND_KINDS`.
        aliases: Further names that route here (``planner-pro``, ``code-assistant``).
        tags: Capability tags (``code``, ``long-context``).
        weight: Relative share for weighted strategies, > 0.
        cost_per_1k_tokens: Price per 1,000 tokens, >= 0 (for the ``cost`` strategy).
        max_concurrency: Requests in flight at most; also the connection pool's size.
        connect_timeout_s: Seconds to establish a connection.
        timeout_s: Seconds for a whole request (capped by the request's deadline).
        api_key_env: Name of the environment variable holding its API key (or ``None``).
        api_key: The key read from ``api_key_env`` at load; never shown in ``repr``.
    """

    name: str
    url: str
    models: tuple[str, ...]
    kind: str = "openai"
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    weight: float = 1.0
    cost_per_1k_tokens: float = 0.0
    max_concurrency: int = 64
    connect_timeout_s: float = 2.0
    timeout_s: float = 60.0
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = f"backends[{self.name!r}]"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise _bad("backends[].name", self.name, f"an identifier matching {_NAME.pattern}")
        if not isinstance(self.url, str) or not re.match(r"^https?://[^\s/]+(/\S*)?$", self.url):
            raise _bad(f"{key}.url", self.url, "an http:// or https:// URL")
        if self.kind not in BACKEND_KINDS:
            raise _bad(f"{key}.kind", self.kind, f"one of {', '.join(BACKEND_KINDS)}")
        if self.kind != "ollama" and not self.url.rstrip("/").endswith("/v1"):
            raise _bad(f"{key}.url", self.url, f"a base URL ending in /v1 for kind {self.kind!r}")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        object.__setattr__(
            self, "models", _strings(f"{key}.models", self.models, _MODEL, empty=False)
        )
        object.__setattr__(
            self, "aliases", _strings(f"{key}.aliases", self.aliases, _MODEL, empty=True)
        )
        object.__setattr__(self, "tags", _strings(f"{key}.tags", self.tags, _MODEL, empty=True))
        if set(self.models) & set(self.aliases):
            raise _bad(f"{key}.aliases", self.aliases, "names that are not also in models")
        _number(f"{key}.weight", self.weight, 0.0, 1e6)
        _number(f"{key}.cost_per_1k_tokens", self.cost_per_1k_tokens, 0.0, 1e6, lo_open=False)
        _integer(f"{key}.max_concurrency", self.max_concurrency, 1, 100_000)
        _number(f"{key}.connect_timeout_s", self.connect_timeout_s, 0.0, _MAX_S)
        _number(f"{key}.timeout_s", self.timeout_s, 0.0, _MAX_S)
        if self.api_key_env is not None and (
            not isinstance(self.api_key_env, str) or not _ENV.match(self.api_key_env)
        ):
            raise _bad(f"{key}.api_key_env", self.api_key_env, "an environment variable name")

    @property
    def names(self) -> tuple[str, ...]:
        """Models and aliases it answers to."""
        return self.models + self.aliases

    @property
    def openai_compatible(self) -> bool:
        """Whether it speaks the OpenAI wire format without translation."""
        return self.kind in OPENAI_KINDS


_ROUTER_KEYS = {
    "strategy",
    "strategies",
    "fallbacks",
    "client_keys_env",
    "retries",
    "retry_budget",
    "deadline_s",
    "max_body_bytes",
    "breaker",
    "redis_url",
    "rate_limit_rpm",
    "rate_limit_tpm",
    "limits",
    "access_log",
    "cache",
    "forgetting",
    "state_path",
    "probe_interval_s",
}


@dataclass(frozen=True)
class RouterConfig:
    """The whole router.

    Attributes:
        backends: The upstream servers (at least one, unique names).
        strategy: Default balancing strategy, one of :data:`STRATEGY_NAMES`.
        strategies: Per model or alias strategy overrides.
        fallbacks: Per model or alias, further models or aliases tried in order when every
            backend of the first has failed or is cooling.
        client_keys_env: Environment variable names holding accepted client keys (none:
            no client auth, and the router binds loopback only).
        client_keys: The keys read from ``client_keys_env`` at load; never shown in ``repr``.
        retries: Further attempts after the first, where retrying is safe.
        retry_budget: Fraction of requests that may be retries (bounds retry storms).
        deadline_s: Seconds a client request may take in all, retries and waits included.
        max_body_bytes: Largest request body accepted (413 above).
        breaker: Per-backend circuit breaker settings.
        redis_url: Redis shared by router instances for rate limits (``None``: local).
        rate_limit_rpm: Requests per minute per client key (``None``: unlimited); the older
            spelling of ``[router.limits] rpm``, copied there (giving both is refused).
        rate_limit_tpm: Tokens per minute per client key; likewise ``[router.limits] tpm``.
        limits: Per client key rate limits (``[router.limits]``).
        cache: The response cache (``[router.cache]``; ``None``: off).
        access_log: One JSON line per ``/v1`` request on the ``workbench.router.access``
            logger: ``False`` (off), ``True`` (through the logging set-up) or a file path.
        client_key_names: For each key of ``client_keys``, the variable it was read from
            (the name per-key limits and logs use); never shown in ``repr``.
        forgetting: Thompson-sampling discount per observation in [0, 1) (0: none).
        state_path: File where learned posteriors persist (``None``: not persisted).
        probe_interval_s: Seconds between active health probes of every backend
            (``GET /v1/models``, Ollama's ``/api/tags``); ``None``: no probes.
    """

    backends: tuple[BackendConfig, ...]
    strategy: str = "p2c-ewma"
    strategies: Mapping[str, str] = field(default_factory=dict)
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    client_keys_env: tuple[str, ...] = ()
    client_keys: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    retries: int = 2
    retry_budget: float = 0.2
    deadline_s: float = 60.0
    max_body_bytes: int = 4 * 1024 * 1024
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    redis_url: str | None = None
    rate_limit_rpm: int | None = None
    rate_limit_tpm: int | None = None
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    cache: ResponseCacheConfig | None = None
    access_log: bool | str = False
    client_key_names: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    forgetting: float = 0.0
    state_path: str | None = None
    probe_interval_s: float | None = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.backends, tuple) or not self.backends:
            raise _bad("backends", self.backends, "at least one [[backends]] table")
        names = [b.name for b in self.backends]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise _bad("backends[].name", dupes[0], "names unique across [[backends]]")
        served = {n for b in self.backends for n in b.names}
        if self.strategy not in STRATEGY_NAMES:
            raise _bad("router.strategy", self.strategy, f"one of {', '.join(STRATEGY_NAMES)}")
        for model, name in self.strategies.items():
            if model not in served:
                raise _bad(f"router.strategies.{model}", name, "a key that some backend serves")
            if name not in STRATEGY_NAMES:
                raise _bad(
                    f"router.strategies.{model}", name, f"one of {', '.join(STRATEGY_NAMES)}"
                )
        object.__setattr__(self, "strategies", MappingProxyType(dict(self.strategies)))
        chains: dict[str, tuple[str, ...]] = {}
        for model, chain in self.fallbacks.items():
            key = f"router.fallbacks.{model}"
            if model not in served:
                raise _bad(key, model, "a key that some backend serves")
            chain = _strings(key, chain, _MODEL, empty=False)
            unknown = [c for c in chain if c not in served or c == model]
            if unknown:
                raise _bad(key, unknown[0], "other models or aliases that some backend serves")
            chains[model] = chain
        object.__setattr__(self, "fallbacks", MappingProxyType(chains))
        _strings("router.client_keys_env", list(self.client_keys_env), _ENV, empty=True)
        object.__setattr__(self, "client_keys_env", tuple(self.client_keys_env))
        _integer("router.retries", self.retries, 0, 10)
        _number("router.retry_budget", self.retry_budget, 0.0, 1.0, lo_open=False)
        _number("router.deadline_s", self.deadline_s, 0.0, _MAX_S)
        _integer("router.max_body_bytes", self.max_body_bytes, 1024, 1 << 30)
        if not isinstance(self.breaker, BreakerConfig):
            raise _bad("router.breaker", self.breaker, "a [router.breaker] table")
        if self.redis_url is not None and (
            not isinstance(self.redis_url, str)
            or not self.redis_url.startswith(("redis://", "rediss://", "unix://"))
        ):
            raise _bad("router.redis_url", self.redis_url, "a redis:// or rediss:// URL")
        for key in ("rate_limit_rpm", "rate_limit_tpm"):
            value = getattr(self, key)
            if value is not None:
                _integer(f"router.{key}", value, 1, 10**12)
        if not isinstance(self.limits, LimitsConfig):
            raise _bad("router.limits", self.limits, "a [router.limits] table")
        for old, new in (("rate_limit_rpm", "rpm"), ("rate_limit_tpm", "tpm")):
            if getattr(self, old) is not None:
                if getattr(self.limits, new) is not None:
                    raise _bad(f"router.{old}", getattr(self, old), f"only [router.limits] {new}")
                limits = replace(self.limits, **{new: getattr(self, old)})
                object.__setattr__(self, "limits", limits)
        for name in self.limits.keys:
            if name not in self.client_keys_env:
                raise _bad(
                    f"router.limits.keys.{name}", name, "a name listed in router.client_keys_env"
                )
        if not isinstance(self.access_log, bool) and not (
            isinstance(self.access_log, str) and self.access_log
        ):
            raise _bad("router.access_log", self.access_log, "true, false or a file path")
        if self.cache is not None and not isinstance(self.cache, ResponseCacheConfig):
            raise _bad("router.cache", self.cache, "a [router.cache] table")
        _number("router.forgetting", self.forgetting, 0.0, 0.999999, lo_open=False)
        if self.state_path is not None and (
            not isinstance(self.state_path, str) or not self.state_path
        ):
            raise _bad("router.state_path", self.state_path, "a file path")
        if self.probe_interval_s is not None:
            _number("router.probe_interval_s", self.probe_interval_s, 0.0, _MAX_S)

    def backend(self, name: str) -> BackendConfig:
        """The backend called ``name`` (KeyError when there is none)."""
        for b in self.backends:
            if b.name == name:
                return b
        raise KeyError(name)

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
    ) -> RouterConfig:
        """Build from a parsed TOML document (``{"router": {...}, "backends": [...]}``).

        Args:
            doc: The document.
            environ: Where ``api_key_env`` and ``client_keys_env`` are looked up
                (``os.environ`` by default).

        Raises:
            ConfigError: naming the bad key.
        """
        env = os.environ if environ is None else environ
        unknown = sorted(set(doc) - {"router", "backends"})
        if unknown:
            raise _bad(unknown[0], doc[unknown[0]], "only a [router] table and [[backends]]")
        router = doc.get("router", {})
        if not isinstance(router, Mapping):
            raise _bad("router", router, "a [router] table")
        unknown = sorted(set(router) - _ROUTER_KEYS)
        if unknown:
            raise _bad(f"router.{unknown[0]}", router[unknown[0]], f"one of {sorted(_ROUTER_KEYS)}")
        raw_backends = doc.get("backends", [])
        if not isinstance(raw_backends, list):
            raise _bad("backends", raw_backends, "[[backends]] tables")
        backend_keys = {f.name for f in fields(BackendConfig)} - {"api_key"}
        backends = []
        for i, raw in enumerate(raw_backends):
            if not isinstance(raw, Mapping):
                raise _bad(f"backends[{i}]", raw, "a [[backends]] table")
            unknown = sorted(set(raw) - backend_keys)
            if unknown:
                raise _bad(
                    f"backends[{i}].{unknown[0]}", raw[unknown[0]], f"one of {sorted(backend_keys)}"
                )
            missing = sorted({"name", "url", "models"} - set(raw))
            if missing:
                raise _bad(f"backends[{i}].{missing[0]}", None, "a value (the key is required)")
            kw = dict(raw)
            for key in ("models", "aliases", "tags"):
                if key in kw and isinstance(kw[key], list):
                    kw[key] = tuple(kw[key])
            backend = BackendConfig(**kw)
            if backend.api_key_env is not None:
                key = _read_env(f"backends[{i}].api_key_env", backend.api_key_env, env)
                object.__setattr__(backend, "api_key", key)
            backends.append(backend)
        kw = dict(router)
        breaker = kw.pop("breaker", {})
        if not isinstance(breaker, Mapping):
            raise _bad("router.breaker", breaker, "a [router.breaker] table")
        breaker_keys = {f.name for f in fields(BreakerConfig)}
        unknown = sorted(set(breaker) - breaker_keys)
        if unknown:
            raise _bad(
                f"router.breaker.{unknown[0]}",
                breaker[unknown[0]],
                f"one of {sorted(breaker_keys)}",
            )
        for key in ("strategies", "fallbacks"):
            if key in kw and not isinstance(kw[key], Mapping):
                raise _bad(f"router.{key}", kw[key], f"a [router.{key}] table")
        if "limits" in kw:
            kw["limits"] = _limits_from(kw["limits"])
        if "cache" in kw:
            kw["cache"] = _cache_from(kw["cache"])
        keys_env = kw.get("client_keys_env", [])
        if isinstance(keys_env, list):
            kw["client_keys_env"] = tuple(keys_env)
        config = cls(backends=tuple(backends), breaker=BreakerConfig(**breaker), **kw)
        names = {
            _read_env("router.client_keys_env", var, env): var for var in config.client_keys_env
        }
        object.__setattr__(config, "client_keys", frozenset(names))
        object.__setattr__(config, "client_key_names", MappingProxyType(names))
        return config


def _table(key: str, raw: Any, cls: type) -> Mapping[str, Any]:
    """``raw`` checked to be the TOML table ``[key]`` holding only fields of ``cls``."""
    if not isinstance(raw, Mapping):
        raise _bad(key, raw, f"a [{key}] table")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _bad(f"{key}.{unknown[0]}", raw[unknown[0]], f"one of {sorted(allowed)}")
    return raw


def _cache_from(raw: Any) -> ResponseCacheConfig:
    """The ``[router.cache]`` table as a :class:`ResponseCacheConfig`."""
    raw = _table("router.cache", raw, ResponseCacheConfig)
    if "ttl_s" not in raw:
        raise _bad("router.cache.ttl_s", None, "a value (the key is required)")
    return ResponseCacheConfig(**raw)


def _limits_from(raw: Any) -> LimitsConfig:
    """The ``[router.limits]`` table (with its ``keys`` sub-tables) as a :class:`LimitsConfig`."""
    kw = dict(_table("router.limits", raw, LimitsConfig))
    keys = kw.pop("keys", {})
    if not isinstance(keys, Mapping):
        raise _bad("router.limits.keys", keys, "[router.limits.keys.<ENV_NAME>] tables")
    parsed = {}
    for name, table in keys.items():
        key = f"router.limits.keys.{name}"
        table = _table(key, table, KeyLimits)
        # Checked here too, so a bad value names this key's own table.
        _limit_values(key, table.get("rpm"), table.get("tpm"), table.get("burst"))
        if not isinstance(table.get("unlimited", False), bool):
            raise _bad(f"{key}.unlimited", table["unlimited"], "true or false")
        parsed[name] = KeyLimits(**table)
    return LimitsConfig(keys=parsed, **kw)


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> RouterConfig:
    """Read and validate a router TOML file.

    Raises:
        ConfigError: the file cannot be read or parsed, or a value is invalid (naming it).
    """
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(
            f"router config {str(path)!r} cannot be read ({exc.strerror}); pass --config FILE",
            details={"field": "config"},
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"router config {str(path)!r} is not valid TOML: {exc}", details={"field": "config"}
        ) from exc
    return RouterConfig.from_mapping(doc, environ=environ)
