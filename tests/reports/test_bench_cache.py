"""The cache benchmark suite's plumbing on tiny sizes (``quick``): what it measures, how it
records baselines and targets, and that it leaves nothing behind in Redis. No timing is
asserted: benchmarks measure, tests check behaviour."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest

from workbench.cache.base import CacheConfig, CacheCore
from workbench.errors import InputError
from workbench.redis_adapter import RedisAdapter
from workbench.reports.bench import BenchContext, load_run, run_suites
from workbench.reports.benchmarks.cache import (
    BENCH_DB,
    PARTS,
    VALUE,
    bench_url,
    parse_redis_benchmark_csv,
    spread,
)
from workbench.reports.figures import bench_figures
from workbench.testing import free_port

_D = re.compile(r"-d (\d+)")
_CSV = (
    '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",'
    '"p99_latency_ms","max_latency_ms"\n'
    '"SET","33500.84","0.030","0.008","0.023","0.047","0.087","5.519"\n'
    '"GET","46620.05","0.021","0.008","0.023","0.023","0.047","2.359"\n'
)


def test_redis_benchmark_csv_is_parsed_and_other_output_refused() -> None:
    out = parse_redis_benchmark_csv(_CSV)
    assert out["GET"]["rps"] == 46620.05 and out["SET"]["p99_latency_ms"] == 0.087
    with pytest.raises(InputError, match="CSV"):
        parse_redis_benchmark_csv("ERROR: connection refused\n")


def test_spread_and_bench_url() -> None:
    s = spread([3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and (s["min"], s["max"]) == (1.0, 10.0)
    assert s["iqr"] == pytest.approx(4.75 - 1.75) and s["repeats"] == [3.0, 1.0, 2.0, 10.0]
    assert bench_url("redis://:pw@127.0.0.1:6380/0") == f"redis://:pw@127.0.0.1:6380/{BENCH_DB}"
    assert bench_url("unix:///tmp/r.sock?db=2") == f"unix:///tmp/r.sock?db={BENCH_DB}"


def test_unknown_parts_are_refused(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.reports.benchmarks.cache import run

    monkeypatch.setenv("WORKBENCH_REDIS_URL", redis_url)
    with pytest.raises(InputError, match="roundtrip"):
        run(BenchContext(quick=True, show_progress=False, parts=("nope",)))


def test_quick_run_measures_every_tool_records_targets_and_cleans_up(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_REDIS_URL", redis_url)
    (run,) = run_suites(
        ["cache"], ctx=BenchContext(quick=True, show_progress=False), out_dir=tmp_path
    )
    data = load_run(tmp_path / "cache-quick-latest.json")
    rows = data["measurements"]
    assert {r["params"]["part"] for r in rows} == set(PARTS)
    have_rb = shutil.which("redis-benchmark") is not None
    tools = {r["tool"] for r in rows if r["value"] is not None}
    assert tools >= {"workbench", "redis-py", "cashews"}
    assert ("redis-benchmark" in tools) == have_rb
    for r in rows:
        if r["tool"] == "redis-benchmark" and not have_rb:
            assert r["value"] is None and "not on PATH" in r["note"]
            continue
        # a figure is a median over repeats whose spread is recorded beside it
        assert r["value"] is not None and r["value"] > 0, r
        assert r["params"]["spread"]["min"] <= r["value"] <= r["params"]["spread"]["max"]
        assert len(r["params"]["spread"]["repeats"]) == 2  # quick: 2 repeats
    # the targets, each on the figure it is about, with its verdict
    targets = {r["name"]: (r["target"], r["better"]) for r in rows if r["target"] is not None}
    assert targets == {
        "Cache.get / redis-benchmark -c 1": (0.5, "higher"),
        "Cache.set / redis-benchmark -c 1": (0.5, "higher"),
        "get_many / redis-benchmark -c 1 -P 16 GET": (0.5, "higher"),
        "set_many / redis-benchmark -c 1 -P 16 GET": (0.5, "higher"),
        "get, memory backend": (1_000_000, "higher"),
        "single GET p99": (1000.0, "lower"),
        "two-tier hit time / memory backend get time": (2.0, "lower"),
    }
    assert all(isinstance(r["meets_target"], bool) for r in rows if r["target"] is not None)
    # redis-benchmark sends values as big as ours encoded
    size = len(CacheCore(CacheConfig()).encode(VALUE))
    sizes = [int(m) for r in rows if r["tool"] == "redis-benchmark" for m in _D.findall(r["note"])]
    assert sizes == ([size] * 6 if have_rb else [])
    assert len(bench_figures(data)) == len({r["metric"] for r in rows})
    bench = RedisAdapter(bench_url(redis_url))
    assert list(bench.scan("wbbench-*")) == []
    assert not bench.exists("key:__rand_int__")
    assert run.quick and run.suite == "cache"


def test_a_part_runs_alone(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.reports.benchmarks.cache import run

    monkeypatch.setenv("WORKBENCH_REDIS_URL", redis_url)
    rows = run(BenchContext(quick=True, show_progress=False, parts=("memory",)))
    assert {m.params["part"] for m in rows} == {"memory"}
    assert {m.name for m in rows} == {
        "get, memory backend",
        "get, two-tier hit",
        "two-tier hit time / memory backend get time",
    }
    assert all(m.value > 0 for m in rows)


def test_a_cache_that_fell_back_voids_its_redis_figures() -> None:
    """Against a port nobody listens on every call is served by the memory tier: such
    figures are memory figures, and the suite reports them missing."""
    from workbench.cache import Cache
    from workbench.reports.benchmarks.cache import _fallbacks, _m

    cache = Cache(f"redis://127.0.0.1:{free_port()}/0", namespace="dead", timeout_s=0.2)
    assert _fallbacks(cache) == ""
    cache.set("k", VALUE)
    assert cache.get("k") == VALUE  # from the memory tier, no exception
    why = _fallbacks(cache)
    assert "fell back" in why
    m = _m("GET, 1 connection", "workbench", "ops_per_s", [1.0, 2.0], invalid=why)
    assert math.isnan(m.value) and m.note.startswith(why) and "spread" not in m.params
    cache.close()
