"""Serializers: round trips of generated values, the value tag, and the registry's rules."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.cache.base import CacheConfig, CacheCore
from workbench.cache.serializers import (
    FORMAT_VERSION,
    SERIALIZERS,
    Serializer,
    by_ident,
    get_serializer,
    register,
)
from workbench.errors import InputError

INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
JSON_SCALARS = st.none() | st.booleans() | INT64 | FINITE | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)
MSGPACK_SCALARS = (
    st.none() | st.booleans() | INT64 | st.floats(allow_nan=True) | st.text() | st.binary()
)
MSGPACK_VALUES = st.recursive(
    MSGPACK_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text() | st.integers(-(2**63), 2**63 - 1), inner, max_size=5)
    ),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN, the sign of zero and the exact types compared."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def core(serializer: str = "msgpack", **settings: Any) -> CacheCore:
    return CacheCore(CacheConfig(namespace="ser", serializer=serializer, **settings))


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_json_round_trips_json_values(value: Any) -> None:
    ser = get_serializer("json")
    assert same(ser.loads(ser.dumps(value)), value)
    c = core("json")
    data = c.encode(value)
    assert data[:2] == bytes([FORMAT_VERSION, ser.ident])
    assert same(c.decode(data), value)


@settings(max_examples=100, deadline=None)
@given(MSGPACK_VALUES)
def test_msgpack_round_trips_msgpack_values(value: Any) -> None:
    ser = get_serializer("msgpack")
    assert same(ser.loads(ser.dumps(value)), value)
    c = core()
    data = c.encode(value)
    assert data[:2] == bytes([FORMAT_VERSION, ser.ident])
    assert same(c.decode(data), value)


@settings(max_examples=50, deadline=None)
@given(JSON_VALUES)
def test_every_namespace_decodes_every_safe_serializer(value: Any) -> None:
    written = {name: core(name).encode(value) for name in ("json", "msgpack")}
    for reader in ("json", "msgpack"):
        for data in written.values():
            assert same(core(reader).decode(data), value)


def test_tuples_come_back_as_lists() -> None:
    c = core()
    assert c.decode(c.encode((1, (2, "x")))) == [1, [2, "x"]]


def test_pickle_round_trips_python_objects_in_trusted_namespaces_only() -> None:
    value = {"set": {1, 2}, "tuple": (1, 2), "complex": 3j, "frozen": frozenset("ab")}
    trusted = core("pickle", trusted=True)
    data = trusted.encode(value)
    assert data[:2] == bytes([FORMAT_VERSION, get_serializer("pickle").ident])
    assert trusted.decode(data) == value
    with pytest.raises(InputError) as exc:
        core("msgpack").decode(data)
    assert "pickle" in str(exc.value) and "not trusted" in str(exc.value)
    assert core("msgpack", trusted=True).decode(data) == value
    with pytest.raises(InputError) as exc:
        core("pickle")
    assert exc.value.details["field"] == "serializer"


def test_a_pickled_payload_is_never_run_by_an_untrusted_reader() -> None:
    ran: list[str] = []

    class Payload:
        def __reduce__(self) -> Any:
            return (ran.append, ("ran",))

    data = bytes([FORMAT_VERSION, get_serializer("pickle").ident]) + pickle.dumps(Payload())
    with pytest.raises(InputError):
        core("json").decode(data)
    assert ran == []


@pytest.mark.parametrize("version", [0, 2, 255])
def test_another_format_version_is_refused(version: int) -> None:
    c = core()
    data = bytes([version]) + c.encode({"a": 1})[1:]
    with pytest.raises(InputError) as exc:
        c.decode(data)
    assert exc.value.details["field"] == "value"
    assert f"knows format {FORMAT_VERSION}" in str(exc.value)


@pytest.mark.parametrize("ident", [0, 4, 99, 255])
def test_an_unknown_serializer_id_is_refused(ident: int) -> None:
    assert by_ident(ident) is None
    with pytest.raises(InputError) as exc:
        core().decode(bytes([FORMAT_VERSION, ident]) + b"\x01")
    assert f"unknown serializer (id {ident})" in str(exc.value)
    for name in ("msgpack", "json", "pickle"):
        assert name in str(exc.value)


@pytest.mark.parametrize("data", [b"", b"\x01", b"plain text", b"\x01\x01\xc1", b"\x01\x02["])
def test_truncated_or_foreign_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(InputError) as exc:
        core().decode(data)
    assert exc.value.details["field"] == "value"


def test_redis_integers_decode_as_ints() -> None:
    c = core()
    assert c.decode(b"42") == 42
    assert c.decode(b"-9223372036854775808") == -(2**63)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        -float("inf"),
        [1.0, float("nan")],
        {"a": {"b": [float("-inf")]}},
    ],
)
def test_json_refuses_nan_and_infinities(value: Any) -> None:
    with pytest.raises(InputError) as exc:
        core("json").encode(value)
    assert exc.value.details["field"] == "value"
    assert "NaN" in str(exc.value) and "msgpack" in str(exc.value)
    assert same(core().decode(core().encode(value)), value)  # msgpack keeps them


def test_json_keeps_the_string_null() -> None:
    c = core("json")
    assert c.decode(c.encode(["null", None])) == ["null", None]


@pytest.mark.parametrize("value", [b"bytes", {1: "int key"}, object(), 2**64])
def test_json_refuses_what_it_cannot_represent(value: Any) -> None:
    with pytest.raises(InputError) as exc:
        core("json").encode(value)
    assert exc.value.details["field"] == "value"
    assert "json serializer cannot encode" in str(exc.value)


@pytest.mark.parametrize("value", [object(), {1, 2}, 2**64, -(2**63) - 1, [lambda: 0]])
def test_msgpack_refuses_what_it_cannot_represent(value: Any) -> None:
    with pytest.raises(InputError) as exc:
        core().encode(value)
    assert exc.value.details["field"] == "value"
    assert "msgpack serializer cannot encode" in str(exc.value)


def test_the_encoded_size_limit_counts_the_tag() -> None:
    c = core(max_value_bytes=100)
    assert len(c.encode(b"x" * 96)) == 100  # tag (2) + msgpack bin8 header (2) + 96
    with pytest.raises(InputError) as exc:
        c.encode(b"x" * 97)
    assert "max_value_bytes=100" in str(exc.value)


def test_the_registry_refuses_duplicate_names_and_ids() -> None:
    before = dict(SERIALIZERS)
    msgpack = get_serializer("msgpack")
    with pytest.raises(InputError) as exc:
        register(Serializer("msgpack", 200, msgpack.dumps, msgpack.loads))
    assert "already registered" in str(exc.value)
    with pytest.raises(InputError) as exc:
        register(Serializer("msgpack-copy", msgpack.ident, msgpack.dumps, msgpack.loads))
    assert "taken" in str(exc.value)
    for ident in (0, 256, -1):
        with pytest.raises(InputError):
            register(Serializer("out-of-range", ident, msgpack.dumps, msgpack.loads))
    assert before == SERIALIZERS
    assert by_ident(200) is None


def test_an_unknown_serializer_name_lists_the_known_ones() -> None:
    for name in ("yaml", "", None, "MSGPACK"):
        with pytest.raises(InputError) as exc:
            get_serializer(name)  # type: ignore[arg-type]
        assert exc.value.details["field"] == "serializer"
        assert "['json', 'msgpack', 'pickle']" in str(exc.value)
    with pytest.raises(InputError):
        CacheConfig(serializer="yaml")
