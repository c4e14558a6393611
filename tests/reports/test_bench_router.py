"""The router benchmark suite's pure parts, without wrk, nginx or LiteLLM: wrk's report parsed,
the open-loop generator against an emulated backend on loopback (its counts, and that a
latency is charged from the scheduled send time), the TTFB client, the routing-decision
microbench, the verdicts written where we lose, and the figures. No timing is asserted except
lower bounds that queueing arithmetic guarantees on any machine, however slow."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from workbench.errors import InputError
from workbench.reports.bench import BenchContext
from workbench.reports.benchmarks import router as bench
from workbench.router.config import STRATEGY_NAMES, load_config
from workbench.router.fake_backend import run_fake_backend

# Real wrk 4.1.0 reports, as it printed them.
_WRK_OK = (
    "Running 1s test @ http://127.0.0.1:60145/v1/chat/completions\n  1 threads and 32 connections\n"
    "  Thread Stats   Avg      Stdev     Max   +/- Stdev\n"
    "    Latency     1.04ms    1.70ms  13.55ms   86.57%\n"
    "    Req/Sec    73.10k    10.68k   79.30k    90.91%\n  Latency Distribution\n"
    "     50%  137.00us\n     75%    1.39ms\n     90%    3.29ms\n     99%    7.82ms\n"
    "  80450 requests in 1.11s, 35.22MB read\nRequests/sec:  72652.69\nTransfer/sec:     31.80MB\n"
)
_WRK_BAD = (
    "Running 1m test @ http://127.0.0.1:60145/nope\n  1 threads and 32 connections\n"
    "  Thread Stats   Avg      Stdev     Max   +/- Stdev\n"
    "    Latency     1.02ms    1.67ms   9.76ms   86.09%\n"
    "    Req/Sec    75.28k     4.73k   83.94k    81.82%\n"
    "  82291 requests in 1.00m, 24.17MB read\n"
    "  Socket errors: connect 0, read 3, write 0, timeout 7\n"
    "  Non-2xx or 3xx responses: 82291\nRequests/sec:   1371.52\nTransfer/sec:     21.98MB\n"
)


def test_wrk_report_is_parsed_with_units_and_failures() -> None:
    ok = bench.parse_wrk_output(_WRK_OK)
    assert ok.requests_per_s == 72652.69 and ok.requests == 80450
    assert ok.duration_s == pytest.approx(1.11)
    assert ok.latency_ms == pytest.approx({"50": 0.137, "75": 1.39, "90": 3.29, "99": 7.82})
    assert ok.non_2xx == 0 and ok.socket_errors == 0 and ok.failed_fraction == 0.0
    bad = bench.parse_wrk_output(_WRK_BAD)
    assert bad.duration_s == pytest.approx(60.0) and bad.latency_ms == {}
    assert bad.non_2xx == 82291 and bad.socket_errors == 10
    assert bad.failed_fraction > bench.MAX_FAILED
    with pytest.raises(InputError, match="not a wrk report"):
        bench.parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_script_sends_the_benchmark_body(tmp_path: Path) -> None:
    text = bench._wrk_script(tmp_path).read_text()
    assert 'wrk.method = "POST"' in text and bench.CHAT_BODY.decode() in text


def test_percentiles_interpolate_and_refuse_nonsense() -> None:
    assert bench.percentiles([4.0, 1.0, 3.0, 2.0], (0, 50, 100)) == [1.0, 2.5, 4.0]
    with pytest.raises(InputError):
        bench.percentiles([], (50,))
    with pytest.raises(InputError, match="q=101"):
        bench.percentiles([1.0], (101,))


def test_open_loop_sends_the_scheduled_count_and_skips_the_warmup() -> None:
    with run_fake_backend(models=("fake-model",)) as server:
        url = server.openai_url + "/chat/completions"
        res = bench.open_loop(url, bench.CHAT_BODY, rate_per_s=200, duration_s=0.5, warmup_s=0.1)
        assert server.stats.requests["/v1/chat/completions"] == 120  # warm-up ones were sent
    assert res.sent == 100 and res.errors == 0 and res.statuses == {200: 100}
    assert len(res.latencies_s) == 100 and list(res.latencies_s) == sorted(res.latencies_s)
    assert all(x > 0 for x in res.latencies_s) and res.failed_fraction == 0.0
    p50, p95, p99 = res.percentiles_ms()
    assert 0 < p50 <= p95 <= p99


def test_open_loop_charges_the_queue_from_the_scheduled_time() -> None:
    """One connection, a 20 ms backend and a send every 10 ms: request k cannot end before
    20 ms * (k + 1) after the start, so it waited at least 10 ms * k + 20 ms from when it was
    due. A closed-loop client (coordinated omission) would report about 20 ms for all."""
    with run_fake_backend(models=("fake-model",), latency_ms=20.0) as server:
        url = server.openai_url + "/chat/completions"
        res = bench.open_loop(url, bench.CHAT_BODY, rate_per_s=100, duration_s=0.6, connections=1)
    assert res.sent == 60 and res.errors == 0
    # Latencies grow with k; the i-th smallest is at least the bound of request i.
    for i, latency in enumerate(res.latencies_s):
        assert latency >= 0.010 * i + 0.020 - 1e-3, (i, latency)
    assert res.latencies_s[-1] >= 0.6


def test_open_loop_counts_failures_apart_from_latencies() -> None:
    with run_fake_backend(models=("fake-model",), error_rate=1.0) as server:
        url = server.openai_url + "/chat/completions"
        res = bench.open_loop(url, bench.CHAT_BODY, rate_per_s=100, duration_s=0.2)
    assert res.errors == res.sent == 20 and res.latencies_s == ()
    assert res.statuses == {500: 20} and res.failed_fraction == 1.0


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"rate_per_s": 0}, "rate_per_s"),
        ({"rate_per_s": 1e9}, "rate_per_s"),
        ({"duration_s": -1}, "duration_s"),
        ({"warmup_s": -1}, "warmup_s"),
        ({"connections": 0}, "connections"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
def test_open_loop_refuses_out_of_range_knobs(kw: dict[str, float], field: str) -> None:
    args = {"rate_per_s": 10.0, "duration_s": 1.0, **kw}
    with pytest.raises(InputError, match=field) as info:
        bench.open_loop("http://127.0.0.1:1/", b"{}", **args)
    assert info.value.details["field"] == field


def test_ttfb_client_reads_the_first_event_of_a_stream() -> None:
    import asyncio

    with run_fake_backend(models=("fake-model",)) as server:
        url = server.openai_url + "/chat/completions"
        samples, failures = asyncio.run(
            bench._ttfb_async(url, bench.STREAM_BODY, requests=30, concurrency=3)
        )
    assert failures == 0 and len(samples) == 30 and all(x > 0 for x in samples)


def test_the_minimal_aiohttp_proxy_passes_streams_and_answers_through(tmp_path: Path) -> None:
    """The TTFB part's floor (two processes sharing a port) proxies what the router does."""
    import asyncio
    import sys

    import httpx

    from workbench.testing import free_port

    with run_fake_backend(models=("fake-model",)) as backend:
        port = free_port()
        cmd = [sys.executable, "-m", "workbench.reports.benchmarks.aiohttp_proxy"]
        cmd += ["--upstream", backend.url, "--port", str(port), "--workers", "2"]
        server = bench._Server(
            "aiohttp-proxy", cmd, port=port, ready_path="/v1/models", folder=tmp_path
        )
        try:
            url = server.url + "/v1/chat/completions"
            samples, failures = asyncio.run(
                bench._ttfb_async(url, bench.STREAM_BODY, requests=30, concurrency=3)
            )
            assert failures == 0 and len(samples) == 30
            r = httpx.post(
                url, content=bench.CHAT_BODY, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
            assert backend.stats.requests["/v1/chat/completions"] == 31
        finally:
            server.stop()


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_decision_microbench_times_every_strategy(strategy: str) -> None:
    t = bench.decision_times(strategy, calls=300)
    assert len(t["plan"]) == len(t["cycle"]) == 300
    assert all(0 < p <= c for p, c in zip(t["plan"], t["cycle"], strict=True))


def test_decision_part_reports_all_strategies_with_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = bench.run(BenchContext(quick=True, show_progress=False, parts=("decision",)))
    cycles = [m for m in out if m.name.startswith("Router.plan + start + finish")]
    assert sorted(m.name.rsplit(", ", 1)[1] for m in cycles) == sorted(STRATEGY_NAMES)
    assert all(m.target == 50.0 and m.unit == "us" and m.value > 0 for m in cycles)
    assert all(m.params["part"] == "decision" and "verdict" in m.params for m in cycles)
    assert (tmp_path / "data" / "reports" / "bench-router-quick.html").exists()


def test_unknown_parts_are_refused() -> None:
    with pytest.raises(InputError, match="throughput"):
        bench.run(BenchContext(quick=True, show_progress=False, parts=("nope",)))


def test_where_we_lose_the_json_says_so() -> None:
    slower = bench._m("r / nginx", "workbench", "fraction_of_baseline", [0.2, 0.3, 0.25])
    assert slower.value == 0.25 and slower.note.startswith("LOSES:")
    assert slower.params["verdict"].startswith("LOSES:")
    missed = bench._m("p95", "workbench", "added_p95_ms", [7.0], target=5.0)
    assert missed.meets_target is False and "misses the target" in missed.params["verdict"]
    met = bench._m("rps", "workbench", "requests_per_s", [6000.0, 5500.0], target=5000.0)
    assert met.meets_target and not met.note.startswith("LOSES")
    gone = bench._m("rps", "litellm", "requests_per_s", [], invalid="LiteLLM did not start")
    assert math.isnan(gone.value) and gone.to_dict()["value"] is None
    assert gone.note.startswith("LiteLLM did not start")


def test_router_config_of_the_benchmark_loads(tmp_path: Path) -> None:
    config = load_config(bench._router_toml(tmp_path, "router", "http://127.0.0.1:9"))
    assert config.backends[0].url == "http://127.0.0.1:9/v1"
    assert config.backends[0].models == (bench.MODEL,)


def test_figures_show_rps_and_both_cdfs(tmp_path: Path) -> None:
    cdf = [[0.0, 0.1], [50.0, 0.5], [100.0, 2.0]]
    rows = [
        bench._m("wrk", tool, "requests_per_s", [v, v * 1.1], target=5000.0)
        for tool, v in (("workbench", 4000.0), ("nginx", 60000.0))
    ]
    lat = bench._m("chat completion at a fixed 1,000 req/s, open loop", "direct", "p95_ms", [1.0])
    ttfb = bench._m("streamed chat completion, ttfb", "workbench", "p95_ms", [1.0])
    dicts = [m.to_dict() for m in rows]
    for m in (lat, ttfb):
        d = m.to_dict()
        d["params"]["cdf_ms"] = cdf
        dicts.append(d)
    figures = bench.router_figures(dicts)
    assert len(figures) == 3
    assert list(figures[0].data[0].x) == ["workbench", "nginx"]
    path = bench.write_router_report(dicts, tmp_path / "r.html")
    assert "plotly" in path.read_text()
