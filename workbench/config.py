"""Configuration: defaults, then ``workbench.toml``, then ``WORKBENCH_*`` environment variables.

This is the only module that reads environment variables. Settings are frozen dataclasses
validated in ``__post_init__``; a bad value raises :class:`~workbench.errors.ConfigError`
naming the key, the value and the fix. Variants are made with :func:`dataclasses.replace`.

Sources, later ones winning:

1. the defaults below;
2. a TOML file: ``$WORKBENCH_CONFIG`` if set, else ``./workbench.toml`` if it exists. Top-level
   keys are the field names of :class:`Settings` (``redis_url = "..."``); a table per
   subsystem (``[mcts]``, ``[optimize]``, ...) holds that subsystem's knobs;
3. environment variables: ``WORKBENCH_<FIELD>`` for a top-level field (``WORKBENCH_REDIS_URL``)
   and ``WORKBENCH_<SECTION>__<KEY>`` for a subsystem knob (``WORKBENCH_MCTS__MAX_ITERATIONS``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from workbench.errors import ConfigError

__all__ = ["SECTIONS", "Settings", "from_section", "load_settings"]

_ENV_PREFIX = "WORKBENCH_"
#: Subsystem tables allowed in ``workbench.toml`` and as ``WORKBENCH_<SECTION>__<KEY>``.
SECTIONS = ("mcts", "optimize", "analytics", "router", "cache", "gpu", "api", "bench")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Process-wide settings.

    Attributes:
        redis_url: Redis used by persistence and the cache (``redis://host:port/db``).
        redis_prefix: Prefix of every key workbench writes, so several users share a server.
        redis_timeout_s: Socket connect and read timeout of Redis calls, seconds.
        postgres_url: PostgreSQL for analytics and persistence (``postgresql://...``).
        data_dir: Folder of files workbench writes (reports, benchmarks, file stores).
        api_token: Bearer token required on every HTTP route but ``/health``; ``None`` means
            no auth, which ``workbench serve`` accepts only on a loopback address.
        admin_token: Bearer token required on destructive routes; ``None`` forbids them.
        host: Address ``workbench serve`` binds.
        port: Port ``workbench serve`` binds.
        workers: Number of server processes (they share the port with ``SO_REUSEPORT``).
        max_body_bytes: Largest request body accepted; larger ones get 413.
        log_level: Level of workbench's loggers.
        smoke: Shrink budgets of notebooks and demos to the least their checks need.
        sections: Per-subsystem knobs (read-only mappings keyed by section name).
    """

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = ""
    redis_timeout_s: float = 2.0
    postgres_url: str = "postgresql://127.0.0.1:5432/test"
    data_dir: Path = Path("data")
    api_token: str | None = None
    admin_token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 1024 * 1024
    log_level: str = "INFO"
    smoke: bool = False
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scheme = urlsplit(self.redis_url).scheme
        if scheme not in {"redis", "rediss", "unix"}:
            _bad("redis_url", self.redis_url, "use redis://host:port/db or rediss://...")
        if urlsplit(self.postgres_url).scheme not in {"postgresql", "postgres"}:
            _bad("postgres_url", self.postgres_url, "use postgresql://host:port/dbname")
        if not self.redis_timeout_s > 0:
            _bad("redis_timeout_s", self.redis_timeout_s, "use a positive number of seconds")
        if not 0 <= self.port <= 65535:
            _bad("port", self.port, "use a port between 0 and 65535")
        if not 1 <= self.workers <= 64:
            _bad("workers", self.workers, "use between 1 and 64 processes")
        if self.max_body_bytes < 1024:
            _bad("max_body_bytes", self.max_body_bytes, "use at least 1024 bytes")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            _bad("log_level", self.log_level, "use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        for token_name in ("api_token", "admin_token"):
            token = getattr(self, token_name)
            if token is not None and len(token) < 8:
                _bad(token_name, "<hidden>", "use a token of at least 8 characters")
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            _bad("sections", sorted(unknown), f"known sections are {', '.join(SECTIONS)}")
        frozen = {k: MappingProxyType(dict(v)) for k, v in self.sections.items()}
        object.__setattr__(self, "sections", MappingProxyType(frozen))
        object.__setattr__(self, "data_dir", Path(self.data_dir))

    def section(self, name: str) -> Mapping[str, Any]:
        """Knobs of one subsystem (empty when none were configured)."""
        if name not in SECTIONS:
            raise ConfigError(f"unknown config section {name!r}; known: {', '.join(SECTIONS)}")
        return self.sections.get(name, MappingProxyType({}))

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON-ready data with secrets hidden (for ``doctor`` and logs)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("token"):
                value = None if value is None else "<set>"
            elif isinstance(value, Path):
                value = str(value)
            elif f.name == "sections":
                value = {k: dict(v) for k, v in value.items()}
            out[f.name] = value
        return out


def _bad(key: str, value: Any, fix: str) -> None:
    raise ConfigError(f"invalid setting {key}={value!r}: {fix}", details={"key": key})


def _coerce(key: str, raw: Any, target: Any) -> Any:
    """Convert a TOML or environment value to the type of a Settings field."""
    origin = str(target)
    try:
        if raw is None:
            return None
        if "bool" in origin:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(raw)
        if "int" in origin and "str" not in origin:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if "float" in origin:
            return float(raw)
        if "Path" in origin:
            return Path(str(raw))
        if "str | None" in origin:
            return str(raw) or None
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"invalid setting {key}={raw!r}: expected {origin}", details={"key": key}
        ) from None


def _env_value(text: str) -> Any:
    """Parse a subsystem knob from the environment: int, float, bool or string."""
    low = text.strip().lower()
    if low in {"true", "false"}:
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    toml_path: str | Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build :class:`Settings` from defaults, the TOML file, the environment and overrides.

    Args:
        env: Environment to read (default ``os.environ``).
        toml_path: TOML file to read (default ``$WORKBENCH_CONFIG`` or ``./workbench.toml``).
        **overrides: Field values that win over every other source (``None`` values ignored).

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or an invalid value.
    """
    env = os.environ if env is None else env
    known = {f.name: f for f in fields(Settings) if f.name != "sections"}
    values: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}

    path = Path(toml_path) if toml_path else None
    if path is None and env.get("WORKBENCH_CONFIG"):
        path = Path(env["WORKBENCH_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"WORKBENCH_CONFIG={str(path)!r} is not a file; fix or unset it")
    if path is None and Path("workbench.toml").is_file():
        path = Path("workbench.toml")
    if path is not None:
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from exc
        for key, raw in doc.items():
            if key in SECTIONS and isinstance(raw, dict):
                sections.setdefault(key, {}).update(raw)
            elif key in known:
                values[key] = _coerce(key, raw, known[key].type)
            else:
                raise ConfigError(
                    f"unknown key {key!r} in {str(path)!r}; known keys are "
                    f"{', '.join(sorted(known))} and tables {', '.join(SECTIONS)}",
                    details={"key": key},
                )

    for name, raw in env.items():
        if not name.startswith(_ENV_PREFIX) or name == "WORKBENCH_CONFIG":
            continue
        rest = name[len(_ENV_PREFIX) :].lower()
        if "__" in rest:
            section, _, key = rest.partition("__")
            if section not in SECTIONS:
                raise ConfigError(
                    f"unknown section in environment variable {name}; "
                    f"known sections: {', '.join(SECTIONS)}"
                )
            sections.setdefault(section, {})[key] = _env_value(raw)
        elif rest in known:
            values[rest] = _coerce(name, raw, known[rest].type)
        # Other WORKBENCH_* variables belong to tools around workbench (tests, make).

    for key, value in overrides.items():
        if value is None:
            continue
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}")
        values[key] = value
    return Settings(**values, sections=sections)


def replace(settings: Settings, **changes: Any) -> Settings:
    """Return a validated copy of ``settings`` with ``changes`` applied."""
    return dataclasses.replace(settings, **changes)


def from_section(cls: type[Any], section: Mapping[str, Any], name: str) -> Any:
    """Build the frozen config dataclass ``cls`` from one settings section.

    Keys are the dataclass's field names; each value is converted to the type of the field's
    default (``bool`` accepts the same words as the environment), and ``cls(...)`` validates
    the whole in its ``__post_init__``. Mapping-valued fields (tables such as
    ``[gpu.models.<name>]``) are passed through for the class to check; a tuple-valued field
    takes a list, or a comma-separated string (as an environment variable gives it).

    Raises:
        ConfigError: an unknown key, or a value that does not convert (naming ``[name] key``).
    """
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown [{name}] setting(s) {unknown}; known: {', '.join(sorted(known))}",
            details={"key": f"{name}.{unknown[0]}"},
        )
    defaults = cls()
    values: dict[str, Any] = {}
    for key, raw in section.items():
        default = getattr(defaults, key)
        if isinstance(default, Mapping) or default is None:
            values[key] = raw
            continue
        target = type(default)
        try:
            if target is bool:
                values[key] = _coerce(f"{name}.{key}", raw, "bool")
            elif target is tuple:
                if isinstance(raw, str):  # from the environment: comma-separated
                    raw = [part.strip() for part in raw.split(",") if part.strip()]
                if not isinstance(raw, list | tuple):
                    raise ValueError(raw)
                values[key] = tuple(raw)
            elif target is int and (isinstance(raw, bool) or float(raw) != int(float(raw))):
                raise ValueError(raw)
            else:
                values[key] = target(int(float(raw)) if target is int else raw)
        except (TypeError, ValueError):
            raise ConfigError(
                f"invalid setting [{name}] {key}={raw!r}: expected a {target.__name__} "
                f"like the default {default!r}",
                details={"key": f"{name}.{key}"},
            ) from None
    return cls(**values)
