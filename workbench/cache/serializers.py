"""Value serializers of the cache, each value tagged with the serializer and format that wrote it.

A stored value is ``FORMAT_VERSION`` (one byte), the serializer's id (one byte), then the
serializer's bytes. A reader refuses a value of another format version or an unknown
serializer with a :class:`~workbench.errors.InputError` naming both, instead of guessing.

- ``msgpack`` (the default): compact, fast, and it round-trips what JSON cannot (``bytes``,
  NaN and infinities, integer keys). Tuples come back as lists.
- ``json`` (orjson): for namespaces whose values other programs read as JSON. orjson writes
  NaN and infinities as ``null``; this serializer refuses them rather than change the value.
- ``pickle``: any Python object, but unpickling runs code, so it is only allowed in a namespace
  created with ``trusted=True``, and never for values that arrive over HTTP (the API layer
  never creates a trusted namespace).

Serializers are registered by name in :data:`SERIALIZERS`; the registry refuses a second
registration of a name or an id and lists the names it has when asked for an unknown one.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from workbench.errors import InputError

__all__ = ["FORMAT_VERSION", "SERIALIZERS", "Serializer", "get_serializer", "register"]

FORMAT_VERSION = 1
_FORMAT_BYTE = bytes([FORMAT_VERSION])


@dataclass(frozen=True)
class Serializer:
    """One serializer: ``dumps(value) -> bytes`` and ``loads(bytes) -> value``.

    Attributes:
        name: Its registry name (``msgpack``, ``json``, ``pickle``).
        ident: The byte written after the format version (1..255, unique).
        dumps: Encodes a value; raises :class:`~workbench.errors.InputError` for a value it
            cannot encode.
        loads: Decodes what ``dumps`` wrote.
        trusted_only: Whether decoding may run code (only allowed in trusted namespaces).
    """

    name: str
    ident: int
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]
    trusted_only: bool = False

    @property
    def header(self) -> bytes:
        return _FORMAT_BYTE + bytes([self.ident])


SERIALIZERS: dict[str, Serializer] = {}
_BY_IDENT: dict[int, Serializer] = {}


def register(serializer: Serializer) -> Serializer:
    """Add ``serializer`` to the registry (a name or id already taken is refused)."""
    if serializer.name in SERIALIZERS:
        raise InputError(f"serializer {serializer.name!r} is already registered")
    if not 1 <= serializer.ident <= 255 or serializer.ident in _BY_IDENT:
        raise InputError(
            f"serializer {serializer.name!r}: id {serializer.ident} is out of 1..255 or taken"
        )
    SERIALIZERS[serializer.name] = serializer
    _BY_IDENT[serializer.ident] = serializer
    return serializer


def get_serializer(name: str) -> Serializer:
    """The serializer called ``name``; an unknown name lists the registered ones."""
    try:
        return SERIALIZERS[name]
    except (KeyError, TypeError):
        raise InputError(
            f"serializer: unknown {name!r}; use one of {sorted(SERIALIZERS)}",
            details={"field": "serializer"},
        ) from None


def by_ident(ident: int) -> Serializer | None:
    return _BY_IDENT.get(ident)


def _unencodable(name: str, exc: Exception) -> InputError:
    return InputError(
        f"value: the {name} serializer cannot encode it ({exc}); store JSON-like data "
        "(dict, list, str, int, float, bool, None, bytes) or use a namespace with another "
        "serializer",
        details={"field": "value"},
    )


_packer_dumps = msgpack.Packer(use_bin_type=True, datetime=False).pack


def _msgpack_dumps(value: Any) -> bytes:
    try:
        return _packer_dumps(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _unencodable("msgpack", exc) from None


def _msgpack_loads(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _has_non_finite(value: Any, depth: int = 0) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if depth > 64:
        return False  # orjson refuses deeper nesting itself
    if isinstance(value, dict):
        return any(_has_non_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v, depth + 1) for v in value)
    return False


def _json_dumps(value: Any) -> bytes:
    try:
        data = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise _unencodable("json", exc) from None
    if b"null" in data and _has_non_finite(value):
        raise InputError(
            "value: NaN and infinities have no JSON form (they would come back as null); "
            "use a msgpack namespace for them",
            details={"field": "value"},
        )
    return data


def _pickle_dumps(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise _unencodable("pickle", exc) from None


register(Serializer("msgpack", 1, _msgpack_dumps, _msgpack_loads))
register(Serializer("json", 2, _json_dumps, orjson.loads))
register(Serializer("pickle", 3, _pickle_dumps, pickle.loads, trusted_only=True))
