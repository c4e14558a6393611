"""The cache's contract: one set of tests run against every backend.

Each test takes the ``backend`` fixture (see ``conftest.py``), so it runs on the memory
backend, Redis, Redis two-tier, a throwaway Redis Cluster, and :class:`AsyncCache` on memory
and on Redis. Redis-backed caches run in strict mode, so a call that silently fell back to the
memory tier would fail here instead of passing. TTL expiry on memory moves an injected clock;
on Redis it uses a short PX and polls for the key to go, with a deadline.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.cache.conftest import Backend, wait_until
from workbench.errors import InputError
from workbench.redis_adapter import RedisAdapter

ROUND_TRIPS: dict[str, Any] = {
    "nested": {"a": {"b": [1, {"c": None, "d": [True, False]}]}, "e": "f", "g": []},
    "bytes": b"\x00\x01\xfe\xff binary",
    "empty-bytes": b"",
    "unicode": "héllo ✓ 日本語 🎉 \u0000 end",
    "empty-str": "",
    "int64-max": 2**63 - 1,
    "int64-min": -(2**63),
    "uint64-max": 2**64 - 1,
    "zero": 0,
    "float": 0.1,
    "float-tiny": 5e-324,
    "float-huge": 1.7976931348623157e308,
    "negative-zero": -0.0,
    "infinity": float("inf"),
    "list": [1, "two", 3.0, None, b"four"],
    "int-keys": {1: "one", 2: "two"},
    "true": True,
    "none": None,
}


def field_of(exc: pytest.ExceptionInfo[InputError]) -> str:
    details = exc.value.details or {}
    return str(details.get("field"))


# -- basic operations -----------------------------------------------------------------------


def test_get_set_delete_exists(cache: Any) -> None:
    assert cache.get("k") is None
    assert cache.get("k", "fallback") == "fallback"
    assert not cache.exists("k")
    cache.set("k", {"v": 1})
    assert cache.get("k") == {"v": 1}
    assert cache.exists("k")
    cache.set("k", "overwritten")
    assert cache.get("k") == "overwritten"
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.get("k") is None
    assert not cache.exists("k")


def test_a_falsy_value_is_not_a_miss(cache: Any) -> None:
    for value in (0, "", b"", [], {}, False):
        cache.set("k", value)
        assert cache.get("k", "absent") == value
        assert type(cache.get("k", "absent")) is type(value)
    cache.set("k", None)
    assert cache.get("k", "absent") is None
    assert cache.exists("k")


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_values_round_trip(cache: Any, name: str) -> None:
    value = ROUND_TRIPS[name]
    cache.set(name, value)
    got = cache.get(name)
    assert got == value
    assert type(got) is type(value)
    if isinstance(value, float):
        assert math.copysign(1.0, got) == math.copysign(1.0, value)


def test_nan_round_trips_in_msgpack(cache: Any) -> None:
    cache.set("nan", [float("nan")])
    assert math.isnan(cache.get("nan")[0])


def test_unicode_keys(cache: Any) -> None:
    cache.set("ключ:日本", 1)
    assert cache.get("ключ:日本") == 1
    assert sorted(cache.keys("ключ:*")) == ["ключ:日本"]


def test_get_many_set_many_delete_many(cache: Any) -> None:
    assert cache.get_many([]) == {}
    cache.set_many({})
    mapping = {f"k{i}": {"i": i, "s": "x" * i} for i in range(30)}
    cache.set_many(mapping)
    assert cache.get_many(mapping) == mapping
    assert cache.get_many(["k1", "missing", "k2"]) == {"k1": mapping["k1"], "k2": mapping["k2"]}
    assert cache.delete_many(["k1", "k2", "missing"]) == 2
    assert cache.delete_many([]) == 0
    left = cache.get_many(mapping)
    assert sorted(left) == sorted(set(mapping) - {"k1", "k2"})


def test_incr(cache: Any) -> None:
    assert cache.incr("n") == 1
    assert cache.incr("n", 41) == 42
    assert cache.incr("n", -50) == -8
    assert cache.get("n") == -8
    assert cache.incr("other", 2**40) == 2**40


def test_incr_on_a_non_integer_is_an_input_error(cache: Any) -> None:
    cache.set("s", "text")
    with pytest.raises(InputError) as exc:
        cache.incr("s")
    assert field_of(exc) == "key"
    assert cache.get("s") == "text"
    for bad in (1.5, True, "1", 2**63):
        with pytest.raises(InputError) as exc:
            cache.incr("n", bad)
        assert field_of(exc) == "amount"
    assert not cache.exists("n")


def test_expire_and_ttl(cache: Any, backend: Backend) -> None:
    assert cache.ttl("k") is None
    assert cache.expire("k", 10) is False
    cache.set("k", 1)
    assert cache.ttl("k") is None
    assert cache.expire("k", 100) is True
    ttl = cache.ttl("k")
    assert ttl is not None and 95 < ttl <= 100
    assert cache.expire("k", None) is True
    assert cache.ttl("k") is None
    cache.set("t", 1, ttl=50)
    ttl = cache.ttl("t")
    assert ttl is not None and 45 < ttl <= 50
    cache.set("t", 2)  # an overwrite without a TTL replaces the old expiry
    assert cache.ttl("t") is None
    assert cache.get("t") == 2


def test_default_ttl_applies_to_writes_without_one(backend: Backend) -> None:
    cache = backend.make(default_ttl_s=30)
    cache.set("k", 1)
    cache.set_many({"a": 1})
    for key in ("k", "a"):
        ttl = cache.ttl(key)
        assert ttl is not None and 25 < ttl <= 30


def test_ttl_expiry(cache: Any, backend: Backend) -> None:
    """Keys given a TTL by set, set_many and expire all go when it runs out (on Redis a short
    PX, polled with a deadline; on memory an exact injected clock)."""
    ttl_s = 0.8
    cache.set("by-set", "v", ttl=ttl_s)
    cache.set_many({"by-set-many": "v"}, ttl=ttl_s)
    cache.set("by-expire", "v")
    assert cache.expire("by-expire", ttl_s)
    cache.set("forever", "v")
    keys = ["by-set", "by-set-many", "by-expire"]
    for key in keys:
        left = cache.ttl(key)
        assert left is not None and 0 < left <= ttl_s
    assert cache.get_many(keys) == dict.fromkeys(keys, "v")
    backend.pass_time(ttl_s - 0.01)
    if backend.clock is not None:  # an exact clock: still there just before the deadline
        assert cache.get_many(keys) == dict.fromkeys(keys, "v")
    backend.pass_time(0.01)

    def gone() -> bool:
        return cache.get_many(keys) == {} and not any(cache.exists(k) for k in keys)

    assert wait_until(gone, timeout_s=5.0)
    for key in keys:
        assert cache.get(key) is None
        assert cache.ttl(key) is None
    assert list(cache.keys()) == ["forever"]
    assert cache.get("forever") == "v"


def test_hash_operations(cache: Any) -> None:
    assert cache.hgetall("h") == {}
    assert cache.hget("h", "f") is None
    assert cache.hget("h", "f", "dflt") == "dflt"
    cache.hset("h", "a", {"nested": [1, 2]})
    cache.hset("h", "b", b"\x00bytes")
    cache.hset("h", "ü", "unicode")
    assert cache.hget("h", "a") == {"nested": [1, 2]}
    assert cache.hgetall("h") == {"a": {"nested": [1, 2]}, "b": b"\x00bytes", "ü": "unicode"}
    cache.hset("h", "a", 7)
    assert cache.hget("h", "a") == 7
    assert cache.hdel("h", "a") is True
    assert cache.hdel("h", "a") is False
    assert cache.hdel("missing", "a") is False
    assert cache.hgetall("h") == {"b": b"\x00bytes", "ü": "unicode"}
    assert cache.exists("h")
    assert cache.delete("h")
    assert cache.hgetall("h") == {}


def test_hash_ops_on_a_plain_value_are_input_errors(cache: Any) -> None:
    cache.set("s", "text")
    with pytest.raises(InputError) as exc:
        cache.hset("s", "f", 1)
    assert field_of(exc) == "key"
    with pytest.raises(InputError):
        cache.hget("s", "f")
    assert cache.get("s") == "text"
    for bad in ("", 3, None):
        with pytest.raises(InputError) as exc:
            cache.hset("h", bad, 1)
        assert field_of(exc) == "field"
    assert not cache.exists("h")


def test_keys_with_patterns(cache: Any) -> None:
    cache.set_many({"user:1": 1, "user:2": 2, "user:10": 10, "item:1": 1, "a*b": 0})
    cache.hset("user:h", "f", 1)
    assert sorted(cache.keys()) == sorted(
        ["user:1", "user:2", "user:10", "item:1", "a*b", "user:h"]
    )
    assert sorted(cache.keys("user:*")) == ["user:1", "user:10", "user:2", "user:h"]
    assert sorted(cache.keys("user:?")) == ["user:1", "user:2", "user:h"]
    assert sorted(cache.keys("item:*")) == ["item:1"]
    assert sorted(cache.keys("a\\*b")) == ["a*b"]
    assert list(cache.keys("nothing:*")) == []


def test_delete_prefix(cache: Any) -> None:
    cache.set_many({"p:1": 1, "p:2": 2, "p*:3": 3, "q:1": 1})
    assert cache.delete_prefix("p:") == 2
    assert sorted(cache.keys()) == ["p*:3", "q:1"]
    assert cache.delete_prefix("p*") == 1  # the prefix is literal, not a pattern
    assert sorted(cache.keys()) == ["q:1"]


def test_clear_removes_only_this_namespace(backend: Backend, namespace: str) -> None:
    mine = backend.make()
    other = backend.make(namespace=namespace + "-other")
    mine.set_many({f"k{i}": i for i in range(25)})
    mine.hset("h", "f", 1)
    other.set("k1", "theirs")
    assert mine.clear() == 26
    assert list(mine.keys()) == []
    assert mine.get("k1") is None
    assert other.get("k1") == "theirs"
    assert mine.clear() == 0


def test_namespaces_do_not_see_each_other(backend: Backend, namespace: str) -> None:
    a = backend.make()
    b = backend.make(namespace=namespace + "-b")
    a.set("shared", "a")
    a.hset("h", "f", "a")
    assert b.get("shared") is None
    assert not b.exists("shared")
    assert b.get_many(["shared"]) == {}
    assert b.hgetall("h") == {}
    b.set("shared", "b")
    assert a.get("shared") == "a"
    assert b.get("shared") == "b"
    assert sorted(a.keys()) == ["h", "shared"]
    assert sorted(b.keys()) == ["shared"]
    assert b.delete("shared")
    assert a.get("shared") == "a"
    if backend.remote:
        assert backend.adapter(namespace).get(f"{namespace}:shared") is not None


def test_prefix_is_part_of_the_key(backend: Backend) -> None:
    plain = backend.make()
    prefixed = backend.make(prefix="cache:")
    plain.set("k", "plain")
    prefixed.set("k", "prefixed")
    assert plain.get("k") == "plain"
    assert prefixed.get("k") == "prefixed"
    assert prefixed.core.key("k") == f"cache:{backend.namespace}:k"
    if backend.remote:
        raw = RedisAdapter(backend.url or "", cluster=backend.cluster)
        assert raw.get(f"cache:{backend.namespace}:k") is not None
        prefixed.clear()


# -- bad input: clear errors, nothing half-written -------------------------------------------


@pytest.mark.parametrize("key", [None, 1, b"bytes", "", "x" * 513])
def test_bad_keys_are_refused(cache: Any, key: Any) -> None:
    for call in (
        lambda: cache.set(key, 1),
        lambda: cache.get(key),
        lambda: cache.delete(key),
        lambda: cache.exists(key),
        lambda: cache.incr(key),
        lambda: cache.get_many(["ok", key]),
        lambda: cache.set_many({"ok": 1, key: 2}),
        lambda: cache.hset(key, "f", 1),
    ):
        with pytest.raises(InputError) as exc:
            call()
        assert field_of(exc) == "key"
        assert str(exc.value).startswith("key:")
    assert list(cache.keys()) == []


@pytest.mark.parametrize("ttl", [0, -1, True, "10", float("nan"), float("inf"), 1e12])
def test_bad_ttls_are_refused(cache: Any, ttl: Any) -> None:
    for call in (lambda: cache.set("k", 1, ttl=ttl), lambda: cache.set_many({"k": 1}, ttl=ttl)):
        with pytest.raises(InputError) as exc:
            call()
        assert field_of(exc) == "ttl"
        assert "ttl" in str(exc.value)
    assert not cache.exists("k")
    cache.set("k", 1)
    with pytest.raises(InputError):
        cache.expire("k", ttl)
    assert cache.ttl("k") is None


@pytest.mark.parametrize("value", [object(), {1, 2}, 2**64, -(2**63) - 1, {"a": object()}])
def test_unencodable_values_are_refused(cache: Any, value: Any) -> None:
    cache.set("k", "old")
    with pytest.raises(InputError) as exc:
        cache.set("k", value)
    assert field_of(exc) == "value"
    assert "msgpack" in str(exc.value)
    assert cache.get("k") == "old"
    with pytest.raises(InputError):
        cache.hset("h", "f", value)
    assert not cache.exists("h")


def test_oversize_values_are_refused(backend: Backend) -> None:
    cache = backend.make(max_value_bytes=1000)
    cache.set("k", "old")
    cache.set("fits", "x" * 990)
    with pytest.raises(InputError) as exc:
        cache.set("k", "x" * 1000)
    assert field_of(exc) == "value"
    assert "max_value_bytes=1000" in str(exc.value)
    assert cache.get("k") == "old"
    assert cache.get("fits") == "x" * 990


def test_set_many_with_one_bad_item_writes_nothing(backend: Backend) -> None:
    cache = backend.make(max_value_bytes=1000)
    cache.set("a", "old")
    good = {f"k{i}": i for i in range(20)}
    for bad_item, field in (
        ({"bad": object()}, "value"),
        ({"big": "x" * 2000}, "value"),
        ({"": 1}, "key"),
        ({7: 1}, "key"),
    ):
        mapping: dict[Any, Any] = {"a": "new", **good, **bad_item, "z": "last"}
        with pytest.raises(InputError) as exc:
            cache.set_many(mapping)
        assert field_of(exc) == field
        assert sorted(cache.keys()) == ["a"]
        assert cache.get("a") == "old"
    with pytest.raises(InputError) as exc:
        cache.set_many([("a", 1)])
    assert "mapping" in str(exc.value)


def test_unknown_serializer_is_refused(backend: Backend) -> None:
    with pytest.raises(InputError) as exc:
        backend.make(serializer="yaml")
    assert field_of(exc) == "serializer"
    assert "'yaml'" in str(exc.value)
    for name in ("json", "msgpack", "pickle"):
        assert name in str(exc.value)


def test_pickle_is_refused_unless_trusted(backend: Backend) -> None:
    with pytest.raises(InputError) as exc:
        backend.make(serializer="pickle")
    assert field_of(exc) == "serializer"
    assert "trusted=True" in str(exc.value)
    trusted = backend.make(serializer="pickle", trusted=True)
    value = {"set": {1, 2}, "tuple": (1, "a"), "complex": 1 + 2j}
    trusted.set("k", value)
    assert trusted.get("k") == value


def test_json_namespace_round_trips_json_values_and_refuses_others(backend: Backend) -> None:
    cache = backend.make(serializer="json")
    value = {"a": [1, 2.5, None, True, "ü"], "b": {"c": 2**63 - 1}}
    cache.set("k", value)
    assert cache.get("k") == value
    for bad in (float("nan"), [float("inf")], b"bytes"):
        with pytest.raises(InputError) as exc:
            cache.set("bad", bad)
        assert field_of(exc) == "value"
    assert not cache.exists("bad")


@pytest.mark.parametrize("writer_serializer", ["json", "msgpack"])
@pytest.mark.parametrize("reader_serializer", ["json", "msgpack", "pickle"])
def test_a_value_written_by_another_serializer_decodes(
    backend: Backend, writer_serializer: str, reader_serializer: str
) -> None:
    trusted = reader_serializer == "pickle"
    writer = backend.make(serializer=writer_serializer)
    reader = backend.make(serializer=reader_serializer, trusted=trusted)
    value = {"a": [1, 2.5, "ü"], "b": None}
    writer.set("k", value)
    backend.share(writer, reader, "k")
    assert reader.get("k") == value
    assert reader.get_many(["k"]) == {"k": value}


def test_pickled_values_decode_only_in_trusted_namespaces(backend: Backend) -> None:
    writer = backend.make(serializer="pickle", trusted=True)
    writer.set("k", {"tuple": (1, 2)})
    untrusted = backend.make(serializer="msgpack")
    backend.share(writer, untrusted, "k")
    with pytest.raises(InputError) as exc:
        untrusted.get("k")
    assert field_of(exc) == "value"
    assert "pickle" in str(exc.value) and "trusted" in str(exc.value)
    with pytest.raises(InputError):
        untrusted.get_many(["k"])
    trusted_reader = backend.make(serializer="msgpack", trusted=True)
    backend.share(writer, trusted_reader, "k")
    assert trusted_reader.get("k") == {"tuple": (1, 2)}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"hello, not ours", "not written by this cache"),
        (b"\x02\x01\x01", "not written by this cache"),  # a future format version
        (bytes([1, 99]) + b"\x01", "unknown serializer (id 99)"),
        (b"\x01\x01\xc1", "corrupt msgpack"),
        (b"\x01\x02{not json", "corrupt json"),
    ],
)
def test_a_value_this_cache_did_not_write_is_a_clear_error(
    cache: Any, backend: Backend, data: bytes, says: str
) -> None:
    backend.put_raw(cache, "raw", data)
    with pytest.raises(InputError) as exc:
        cache.get("raw")
    assert field_of(exc) == "value"
    assert says in str(exc.value)


def test_a_redis_integer_reads_as_an_int(cache: Any, backend: Backend) -> None:
    backend.put_raw(cache, "n", b"-17")
    assert cache.get("n") == -17
    assert cache.incr("n", 20) == 3


# -- Redis Cluster: many slots, hash tags ------------------------------------------------------


@pytest.mark.parametrize("backend", ["cluster"], indirect=True)
def test_cluster_batches_span_every_master(backend: Backend, redis_cluster: Any) -> None:
    cache = backend.make()
    mapping = {f"k{i}": {"i": i} for i in range(200)}
    slots = {RedisAdapter.hash_slot(cache.core.key(k)) for k in mapping}
    masters = {redis_cluster.master_for_slot(s) for s in slots}
    assert len(slots) > 150 and len(masters) == 3
    cache.set_many(mapping)
    assert cache.get_many([*mapping, "missing"]) == mapping
    cache.set_many({k: v for k, v in list(mapping.items())[:50]}, ttl=60)
    ttl = cache.ttl("k0")
    assert ttl is not None and 55 < ttl <= 60
    assert cache.delete_many(list(mapping)[:100]) == 100
    assert len(list(cache.keys())) == 100
    assert cache.clear() == 100
    assert cache.get_many(mapping) == {}


@pytest.mark.parametrize("backend", ["cluster"], indirect=True)
def test_cluster_hash_tagged_keys_share_one_slot(backend: Backend, redis_cluster: Any) -> None:
    cache = backend.make()
    keys = [f"{{user:42}}:{part}" for part in ("profile", "cart", "prefs", "h")]
    slots = {RedisAdapter.hash_slot(cache.core.key(k)) for k in keys}
    assert len(slots) == 1
    assert slots == {RedisAdapter.hash_slot("user:42")}
    cache.set_many({k: k.upper() for k in keys[:3]})
    cache.hset(keys[3], "f", 1)
    assert cache.get_many(keys[:3]) == {k: k.upper() for k in keys[:3]}
    assert sorted(cache.keys("{user:42}:*")) == sorted(keys)
    # one slot on one master: a multi-key command sent to that node alone accepts them all
    (slot,) = slots
    node = RedisAdapter(f"redis://127.0.0.1:{redis_cluster.master_for_slot(slot)}/0")
    with node.errors():
        assert node.client.exists(*[cache.core.key(k) for k in keys]) == 4
    assert cache.delete_many(keys) == 4
