"""Warming: preloads from every kind of source with bad items reported by line, and
refresh-ahead of hot keys driven by an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.cache.conftest import FakeClock, wait_until
from workbench.cache import Cache
from workbench.cache.warming import RefreshAhead, WarmReport, warm
from workbench.errors import InputError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["memory", "redis"])
def wcache(request: pytest.FixtureRequest, namespace: str) -> Iterator[Cache]:
    if request.param == "memory":
        clock = FakeClock()
        cache = Cache(None, namespace=namespace, clock=clock, wall=clock)
    else:
        cache = Cache(request.getfixturevalue("redis_url"), namespace=namespace, strict=True)
    try:
        yield cache
    finally:
        cache.clear()
        cache.close()


def test_warm_from_mapping_pairs_and_loader(wcache: Cache) -> None:
    r = warm(wcache, {f"m{i}": i for i in range(1200)}, ttl=60, batch=500)
    assert isinstance(r, WarmReport) and (r.loaded, r.skipped, r.bad_total) == (1200, 0, 0)
    assert wcache.get_many([f"m{i}" for i in range(1200)]) == {f"m{i}": i for i in range(1200)}
    r = warm(wcache, [("p1", [1]), ("p2", {"a": 2}, 30)])
    assert r.loaded == 2 and wcache.get("p2") == {"a": 2}
    r = warm(wcache, lambda: ((f"g{i}", str(i)) for i in range(7)), batch=3)
    assert r.loaded == 7 and wcache.get("g6") == "6"
    assert r.to_dict()["loaded"] == 7 and r.seconds >= 0


def test_bad_items_are_reported_and_the_rest_loaded(wcache: Cache) -> None:
    items: list[Any] = [("a", 1), ("b", {1, 2}), (3, "x"), "junk", ("c", 3, -1), ("d", 4)]
    r = warm(wcache, items, batch=10)
    assert r.loaded == 2 and r.bad_total == 4
    assert [b.line for b in r.bad] == [2, 3, 4, 5]
    assert r.bad[0].key == "b" and "encode" in r.bad[0].reason
    assert "ttl" in r.bad[3].reason
    assert wcache.get_many(["a", "b", "c", "d"]) == {"a": 1, "d": 4}


def test_manifests(wcache: Cache, tmp_path: Path) -> None:
    jsonl = tmp_path / "warm.jsonl"
    jsonl.write_bytes(
        b'{"key": "u1", "value": {"name": "ada"}}\n'
        b"\n"
        b'{"key": "u2", "value": 2, "ttl": 5}\n'
        b"not json\n"
        b'{"value": 3}\n'
        b'{"key": "u4", "value": 4, "colour": "red"}\n'
        b'{"key": "u5", "value": 5, "ttl": "soon"}\n'
    )
    r = warm(wcache, jsonl, ttl=100)
    assert r.loaded == 2
    assert [b.line for b in r.bad] == [4, 5, 6, 7]
    assert wcache.get("u1") == {"name": "ada"}
    ttl = wcache.ttl("u2")
    assert ttl is not None and 0 < ttl <= 5
    obj = tmp_path / "warm.json"
    obj.write_bytes(orjson.dumps({"k1": [1, 2], "k2": None}))
    assert warm(wcache, str(obj)).loaded == 2 and wcache.get("k1") == [1, 2]
    (tmp_path / "list.json").write_bytes(b"[1, 2]")
    with pytest.raises(InputError, match="object"):
        warm(wcache, tmp_path / "list.json")
    with pytest.raises(InputError, match="not a file"):
        warm(wcache, tmp_path / "absent.jsonl")
    with pytest.raises(InputError, match="batch"):
        warm(wcache, {}, batch=0)


def test_per_item_ttls_and_skip_existing() -> None:
    clock = FakeClock()
    cache = Cache(None, namespace="ttl", clock=clock, wall=clock)
    warm(cache, [("short", 1, 5), ("long", 2)], ttl=100)
    clock.advance(6)
    assert cache.get("short") is None and cache.get("long") == 2
    r = warm(cache, {"long": 20, "new": 3}, skip_existing=True)
    assert (r.loaded, r.skipped) == (1, 1) and cache.get("long") == 2


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    cache = Cache(None, namespace="bar")
    warm(cache, {f"k{i}": i for i in range(50)}, progress=True)
    assert "50/50" in capsys.readouterr().err
    warm(cache, {f"k{i}": i for i in range(50)}, progress=None)  # small, not a terminal
    assert capsys.readouterr().err == ""


# -- refresh-ahead ----------------------------------------------------------------------------


def make_refresher(cache: Cache, clock: FakeClock, **kw: Any) -> tuple[RefreshAhead, list[str]]:
    loads: list[str] = []

    def loader(key: str) -> str:
        loads.append(key)
        return f"{key}#{loads.count(key)}"

    kw.setdefault("recount_every", 1)
    return RefreshAhead(cache, loader, ttl=10, top_k=1, clock=clock, **kw), loads


def test_hot_keys_are_reloaded_before_they_expire(wcache: Cache) -> None:
    clock = FakeClock()
    if wcache.adapter is None:
        clock = wcache.core.clock  # type: ignore[assignment]
    ra, loads = make_refresher(wcache, clock)
    with ra:
        assert ra.get("hot") == "hot#1" and ra.get("cold") == "cold#1"
        for _ in range(5):
            assert ra.get("hot") == "hot#1"
        assert ra.hot_keys() == ["hot"]
        clock.advance(7)  # 70 % of the TTL: nothing yet
        assert ra.get("hot") == "hot#1" and ra.drain(5) and loads == ["hot", "cold"]
        clock.advance(1.5)  # 85 %
        assert ra.get("cold") == "cold#1"  # not hot: left to expire
        assert ra.get("hot") == "hot#1"  # served, reloaded behind it
        assert ra.drain(5)
        assert loads == ["hot", "cold", "hot"] and ra.get("hot") == "hot#2"
        assert ra.get("hot") == "hot#2" and ra.drain(5) and ra.stats()["refreshes"] == 1


def test_a_hot_key_is_reloaded_once_however_often_it_is_read() -> None:
    clock = FakeClock()
    cache = Cache(None, namespace="once", clock=clock, wall=clock)
    gate = threading.Event()
    loads: list[str] = []

    def loader(key: str) -> int:
        loads.append(key)
        if len(loads) > 1:
            assert gate.wait(10)
        return len(loads)

    with RefreshAhead(cache, loader, ttl=10, top_k=2, recount_every=1, clock=clock) as ra:
        assert ra.get("k") == 1
        clock.advance(9)
        assert [ra.get("k") for _ in range(20)] == [1] * 20
        assert wait_until(lambda: len(loads) == 2, 5)
        gate.set()
        assert ra.drain(5) and loads == ["k", "k"] and ra.get("k") == 2


def test_the_hit_counter_is_bounded() -> None:
    clock = FakeClock()
    cache = Cache(None, namespace="bounded", clock=clock, wall=clock)
    ra, _ = make_refresher(cache, clock, max_tracked=8)
    with ra:
        for _ in range(50):
            ra.get("popular")
        for i in range(100):
            ra.get(f"once-{i}")
        assert ra.stats()["tracked"] <= 8
        assert ra.hot_keys() == ["popular"]
    with pytest.raises(InputError, match="refresh_fraction"):
        RefreshAhead(cache, str, ttl=10, refresh_fraction=1.0)
