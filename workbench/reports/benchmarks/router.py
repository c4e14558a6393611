"""The router suite: ``workbench router serve`` beside nginx and LiteLLM's proxy, in front of
the same instant backend, in the same run.

Parts (``workbench bench router --part NAME``, repeatable; all by default):

* ``decision``: in process, the median time of one ``Router.plan`` and of one
  ``plan`` + ``start`` + ``finish`` (what a proxied request pays for routing), per strategy of
  the registry (all seven names); target at most 50 us median.
* ``throughput``: wrk, 32 keep-alive connections on loopback, ``POST /v1/chat/completions``
  non-streaming (the body from a wrk Lua script), a warm-up then a timed run, repeated with
  the tools taking turns in a rotating order: (a) direct to the backend, (b) nginx as a
  reverse proxy (keep-alive upstream, ``worker_processes 2``), (c) our router with 2 workers,
  (d) LiteLLM's proxy with 2 workers. The emulated ``workbench router fake-backend`` is also
  measured directly, for context. Targets: ours at least 5,000 req/s (stretch 7,000) and at
  least 5x LiteLLM; the ratio to nginx is reported (no target: nginx only forwards bytes).
  Each tool's CPU per request (user + system time of all its processes over the timed run,
  from ``/proc``) is reported too: on a shared machine req/s falls with the cores others
  take, CPU per request hardly moves.
* ``latency``: an open-loop generator (:func:`open_loop`) at a fixed 1,000 req/s: sends are
  scheduled at fixed times and each latency is measured from its scheduled time, so a slow
  server is charged for the queue it causes (no coordinated omission; Debian has no wrk2).
  p50/p95/p99 direct, through nginx, ours and LiteLLM; target ours p95 minus direct p95 at
  most 5 ms. Where LiteLLM cannot sustain that rate (more than 1 % of its requests fail or
  time out), direct, ours and LiteLLM are measured again at :data:`LOW_RATE`.
* ``ttfb``: time to the first body byte of a streamed chat completion, direct to the
  emulated backend, through our router and through a minimal two-process aiohttp proxy
  (:mod:`~workbench.reports.benchmarks.aiohttp_proxy`: one asyncio hop and nothing else,
  the floor under any router on aiohttp), 4 clients in closed loop, at least 500 requests
  each in a full run; target ours added p95 at most 2 ms.

The backend: for ``throughput`` and ``latency`` every tool proxies one nginx that answers
the chat completion (and ``/v1/models``) from a fixed body, its own process. The emulated
backend is an aiohttp process: on a 2-core machine its own CPU per request comes out of the
share of the proxy under test, so it would measure the backend as much as the proxy (its
direct figure is reported beside nginx's to show the difference). ``ttfb`` needs a real
stream, so it uses ``workbench router fake-backend`` (0 ms latency, 4 chunks).

Method: every figure is the median of repeats (3 in a full run, 1 in a quick one) whose
spread is in ``params``; a ratio is the median of per-repeat ratios of adjacent runs. A run
with failed requests above 1 % (non-2xx, socket errors) is reported as missing rather than
kept. Where we lose (a ratio below 1, a target missed) the measurement's note starts with
``LOSES:`` and ``params["verdict"]`` says so. wrk and nginx are installed from Debian when
missing (as root); LiteLLM in its own virtualenv under ``~/.cache/workbench/bench-litellm``.
Besides the suite's JSON, :func:`write_router_report` writes ``data/reports/bench-router.html``
with req/s per tool and the latency and TTFB CDFs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import InputError
from workbench.reports.bench import BenchContext, Measurement, repeated

__all__ = [
    "CHAT_BODY",
    "PARTS",
    "OpenLoopResult",
    "WrkResult",
    "decision_times",
    "open_loop",
    "open_loop_async",
    "parse_wrk_output",
    "percentiles",
    "router_figures",
    "run",
    "write_router_report",
]

MODEL = "fake-model"
#: The request every tool is sent (non-streaming chat completion).
CHAT_BODY = (
    b'{"model":"fake-model","messages":[{"role":"user","content":"Say hello in one word."}]}'
)
STREAM_BODY = (
    b'{"model":"fake-model","stream":true,'
    b'"messages":[{"role":"user","content":"Say hello in one word."}]}'
)
_ANSWER = (
    '{"id":"chatcmpl-bench","object":"chat.completion","created":1767225600,'
    '"model":"fake-model","choices":[{"index":0,"message":{"role":"assistant",'
    '"content":"static says lorem lorem lorem lorem lorem lorem lorem"},'
    '"finish_reason":"stop"}],"usage":{"prompt_tokens":6,"completion_tokens":8,'
    '"total_tokens":14}}'
)
_MODELS = '{"object":"list","data":[{"id":"fake-model","object":"model","owned_by":"bench"}]}'
LITELLM_VENV = Path.home() / ".cache" / "workbench" / "bench-litellm"
CONNECTIONS = 32
LATENCY_RATE = 1000.0
#: A rate LiteLLM's proxy sustains on a small machine (it is measured there too when it
#: cannot take :data:`LATENCY_RATE`).
LOW_RATE = 20.0
MAX_FAILED = 0.01
_UNITS = {
    "requests_per_s": "req/s",
    "fraction_of_baseline": "x",
    "p50_ms": "ms",
    "p95_ms": "ms",
    "p99_ms": "ms",
    "added_p95_ms": "ms",
    "median_us": "us",
    "cpu_us_per_request": "us",
}
_LOWER = {"p50_ms", "p95_ms", "p99_ms", "added_p95_ms", "median_us", "cpu_us_per_request"}
_CDF_Q = [*range(0, 100), 99.5, 99.9, 100.0]


# -- statistics -----------------------------------------------------------------------------


def percentiles(samples: Sequence[float], qs: Sequence[float]) -> list[float]:
    """Linear-interpolated percentiles ``qs`` (0-100) of ``samples`` (any order)."""
    if not samples:
        raise InputError("percentiles of no samples", details={"field": "samples"})
    xs = sorted(samples)
    out = []
    for q in qs:
        if not 0.0 <= q <= 100.0:
            raise InputError(f"percentile q={q!r} must be in [0, 100]", details={"field": "qs"})
        pos = (len(xs) - 1) * q / 100.0
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        out.append(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))
    return out


def _cdf(samples_ms: Sequence[float]) -> list[list[float]]:
    """``[[percentile, ms], ...]`` at :data:`_CDF_Q` (what the report's CDF plots)."""
    return [[q, round(v, 4)] for q, v in zip(_CDF_Q, percentiles(samples_ms, _CDF_Q), strict=True)]


# -- wrk ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reported.

    Attributes:
        requests_per_s: wrk's ``Requests/sec``.
        requests: Requests completed.
        duration_s: Length of the timed run, seconds.
        non_2xx: Answers that were not 2xx or 3xx.
        socket_errors: Connect, read, write and timeout errors, summed.
        latency_ms: wrk's latency distribution, ``{"50": ms, "75": ..., "90": ..., "99": ...}``
            (empty without ``--latency``); closed loop, so not a latency-under-load figure.
    """

    requests_per_s: float
    requests: int
    duration_s: float
    non_2xx: int = 0
    socket_errors: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def failed_fraction(self) -> float:
        """Failed requests (non-2xx and socket errors) per completed request."""
        return (self.non_2xx + self.socket_errors) / max(self.requests, 1)


_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk_output(text: str) -> WrkResult:
    """wrk's standard report (``--latency`` optional) -> :class:`WrkResult`.

    Raises:
        InputError: ``text`` is not a wrk report (no ``Requests/sec`` or request count).
    """
    rps = re.search(r"^Requests/sec:\s+([\d.]+)\s*$", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", text, re.M)
    if rps is None or total is None:
        raise InputError(f"not a wrk report: {text[-300:]!r}", details={"field": "wrk output"})
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    dist = {}
    block = text.split("Latency Distribution", 1)
    if len(block) == 2:
        for pct, value, unit in re.findall(
            r"^\s+([\d.]+)%\s+([\d.]+)(us|ms|s|m)\s*$", block[1], re.M
        ):
            dist[f"{float(pct):g}"] = float(value) * _TIME_UNITS[unit]
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        requests=int(total.group(1)),
        duration_s=float(total.group(2)) * _TIME_UNITS[total.group(3)] / 1000.0,
        non_2xx=int(non.group(1)) if non else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
        latency_ms=dist,
    )


def _wrk_script(folder: Path) -> Path:
    body = CHAT_BODY.decode()
    path = folder / "chat.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{body}'\n"
    )
    return path


def _wrk(url: str, script: Path, duration_s: float, *, threads: int = 1) -> WrkResult:
    cmd = ["wrk", "-t", str(threads), "-c", str(CONNECTIONS), "-d", f"{duration_s:g}s"]
    cmd += ["--latency", "--timeout", "5s", "-s", str(script), url]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stderr[-300:]}")
    return parse_wrk_output(res.stdout)


# -- the open-loop generator ----------------------------------------------------------------


@dataclass(frozen=True)
class OpenLoopResult:
    """What an open-loop run measured (after its warm-up).

    Attributes:
        rate_per_s: The scheduled send rate.
        duration_s: The scheduled length of the measured window, seconds.
        latencies_s: Seconds from each successful request's *scheduled* send time to the end
            of its answer, sorted; a request that waited for a connection or for the
            generator is charged that wait.
        errors: Requests that failed (transport error, timeout or a non-2xx status).
        statuses: Answers by HTTP status (``0``: no answer).
        send_lag_s: p50, p99 and max of actual minus scheduled send time: the generator's
            own lateness (large values mean the client, not the server, was the limit).
        wall_s: Seconds from the first measured scheduled send to the last answer.
    """

    rate_per_s: float
    duration_s: float
    latencies_s: tuple[float, ...]
    errors: int
    statuses: dict[int, int]
    send_lag_s: tuple[float, float, float]
    wall_s: float

    @property
    def sent(self) -> int:
        return len(self.latencies_s) + self.errors

    @property
    def failed_fraction(self) -> float:
        return self.errors / max(self.sent, 1)

    @property
    def achieved_per_s(self) -> float:
        """Successful answers per second of the measured window."""
        return len(self.latencies_s) / max(self.wall_s, 1e-9)

    def percentiles_ms(self, qs: Sequence[float] = (50, 95, 99)) -> list[float]:
        return [x * 1000.0 for x in percentiles(self.latencies_s, qs)]


def _check_open_loop(
    rate_per_s: float, duration_s: float, warmup_s: float, connections: int, timeout_s: float
) -> None:
    checks = [
        ("rate_per_s", rate_per_s, 0.0, 100_000.0),
        ("duration_s", duration_s, 0.0, 3600.0),
        ("timeout_s", timeout_s, 0.0, 600.0),
    ]
    for name, value, lo, hi in checks:
        if not lo < value <= hi:
            raise InputError(
                f"{name}={value!r} must be in ({lo:g}, {hi:g}]", details={"field": name}
            )
    if not 0.0 <= warmup_s <= 3600.0:
        raise InputError(
            f"warmup_s={warmup_s!r} must be in [0, 3600]", details={"field": "warmup_s"}
        )
    if not 1 <= connections <= 10_000:
        raise InputError(
            f"connections={connections!r} must be in [1, 10000]", details={"field": "connections"}
        )


async def open_loop_async(
    url: str,
    body: bytes,
    *,
    rate_per_s: float,
    duration_s: float,
    warmup_s: float = 0.0,
    connections: int = CONNECTIONS,
    timeout_s: float = 10.0,
    headers: dict[str, str] | None = None,
) -> OpenLoopResult:
    """POST ``body`` to ``url`` at ``rate_per_s`` for ``warmup_s + duration_s`` seconds, open
    loop, and measure each answer from its scheduled send time.

    Send ``i`` is due at ``start + i / rate_per_s`` whatever happened to earlier ones; the
    requests share a keep-alive pool of ``connections``, so a server that falls behind makes
    later requests wait for a connection, and that wait is in their latency. Requests due
    during the warm-up are sent and awaited but not counted. The run is bounded: at most
    ``rate * (warmup + duration)`` requests, each given ``timeout_s``.

    Raises:
        InputError: a rate, duration, timeout or pool size out of range (the field named).
    """
    import aiohttp

    _check_open_loop(rate_per_s, duration_s, warmup_s, connections, timeout_s)
    n_warm = round(rate_per_s * warmup_s)
    n = n_warm + max(1, round(rate_per_s * duration_s))
    interval = 1.0 / rate_per_s
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    latencies: list[float] = []
    lags: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    last_end = 0.0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    clock = time.perf_counter

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int, due: float) -> None:
            nonlocal errors, last_end
            ok, status = False, 0
            try:
                async with session.post(url, data=body, headers=hdrs) as resp:
                    status = resp.status
                    await resp.read()
                    ok = 200 <= status < 300
            except (aiohttp.ClientError, TimeoutError):
                pass
            end = clock()
            if i < n_warm:
                return
            statuses[status] += 1
            last_end = max(last_end, end)
            if ok:
                latencies.append(end - due)
            else:
                errors += 1

        tasks: set[asyncio.Task[None]] = set()
        start = clock() + 0.01
        i = 0
        while i < n:
            now = clock()
            while i < n and start + i * interval <= now:
                due = start + i * interval
                if i >= n_warm:
                    lags.append(now - due)
                task = asyncio.create_task(one(i, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if i < n:
                await asyncio.sleep(max(0.0, start + i * interval - clock()))
        if tasks:
            await asyncio.gather(*tasks)
    first_due = start + n_warm * interval
    lag = percentiles(lags, (50, 99, 100)) if lags else [0.0, 0.0, 0.0]
    return OpenLoopResult(
        rate_per_s=rate_per_s,
        duration_s=duration_s,
        latencies_s=tuple(sorted(latencies)),
        errors=errors,
        statuses=dict(statuses),
        send_lag_s=(lag[0], lag[1], lag[2]),
        wall_s=max(last_end - first_due, 1e-9),
    )


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop  # the generator's own overhead is part of every latency


def open_loop(url: str, body: bytes, **kw: Any) -> OpenLoopResult:
    """:func:`open_loop_async` for synchronous callers (its own event loop, uvloop if present)."""
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        return runner.run(open_loop_async(url, body, **kw))


async def _ttfb_async(
    url: str, body: bytes, *, requests: int, concurrency: int, timeout_s: float = 10.0
) -> tuple[list[float], int]:
    """Seconds from sending a streamed request to the first body bytes, ``concurrency``
    clients in closed loop; returns the samples and the failures."""
    import aiohttp

    samples: list[float] = []
    failures = 0
    left = requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    ) as session:

        async def client() -> None:
            nonlocal left, failures
            while left > 0:
                left -= 1
                t0 = time.perf_counter()
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as resp:
                        first = await resp.content.readany()
                        t1 = time.perf_counter()
                        async for _ in resp.content.iter_any():
                            pass
                        if resp.status == 200 and first.startswith(b"data: "):
                            samples.append(t1 - t0)
                        else:
                            failures += 1
                except (aiohttp.ClientError, TimeoutError):
                    failures += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return samples, failures


# -- the routing decision -------------------------------------------------------------------


def decision_times(strategy: str, *, calls: int, seed: int = 0) -> dict[str, list[float]]:
    """Seconds per ``Router.plan`` and per ``plan`` + ``start`` + ``finish``, call by call,
    for a router of three backends (distinct tags, weights and prices) under ``strategy``.

    Every decision is checked to pick a backend. Returns ``{"plan": [...], "cycle": [...]}``.
    """
    from workbench.router.balancer import Outcome, Router
    from workbench.router.config import STRATEGY_NAMES, BackendConfig, RouterConfig

    if strategy not in STRATEGY_NAMES:
        raise InputError(
            f"strategy={strategy!r} is unknown; known: {', '.join(STRATEGY_NAMES)}",
            details={"field": "strategy"},
        )
    tags = [("fast", "small"), ("medium", "general", "local"), ("code",)]
    backends = tuple(
        BackendConfig(
            name=f"b{i}",
            url=f"http://127.0.0.1:{9 + i}/v1",
            models=(MODEL,),
            tags=tags[i],
            weight=1.0 + i,
            cost_per_1k_tokens=0.1 * (i + 1),
        )
        for i in range(3)
    )
    config = RouterConfig(backends=backends, strategy=strategy, probe_interval_s=None)
    router = Router(config, rng=random.Random(seed))
    text = "Say hello in one word."
    ids = [f"req-{i}" for i in range(calls)]
    ok = Outcome(True, 0.002, 200, tokens=14)
    clock = time.perf_counter_ns
    plan_s: list[float] = []
    cycle_s: list[float] = []
    for i in range(calls):
        t0 = clock()
        plan = router.plan(MODEL, text=text)
        t1 = clock()
        backend = plan[0]
        router.start(backend, model=MODEL)
        router.finish(backend, ok, request_id=ids[i], model=MODEL)
        t2 = clock()
        plan_s.append((t1 - t0) * 1e-9)
        cycle_s.append((t2 - t0) * 1e-9)
    return {"plan": plan_s, "cycle": cycle_s}


# -- the servers ----------------------------------------------------------------------------


def _get(url: str, timeout_s: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0


def _check_chat(url: str) -> str:
    """Why ``url`` does not answer the chat completion properly ('' when it does)."""
    import orjson

    req = urllib.request.Request(
        url, data=CHAT_BODY, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            doc = orjson.loads(resp.read())
        content = doc["choices"][0]["message"]["content"]
    except urllib.error.HTTPError as exc:
        return f"POST {url} answered HTTP {exc.code}: {exc.read()[:200]!r}"
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        return f"POST {url} did not answer a chat completion: {exc!r}"
    return "" if isinstance(content, str) and content else f"POST {url}: empty content"


class _Server:
    """A server under test as its own process group, up once ``ready_url`` answers 200."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        port: int,
        ready_path: str,
        folder: Path,
        env: dict[str, str] | None = None,
        drop_env: Sequence[str] = (),
        timeout_s: float = 90.0,
    ) -> None:
        self.name = name
        self.port = port
        self.log = folder / f"{name}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                list(cmd),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={
                    **{
                        k: v
                        for k, v in os.environ.items()
                        if k not in drop_env and k not in SERVER_ENV_DROP
                    },
                    **(env or {}),
                },
            )
        deadline = time.monotonic() + timeout_s
        while _get(self.url + ready_path) != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-1500:]
                self.stop()
                raise RuntimeError(f"{name} did not come up on port {port}: {tail}")
            time.sleep(0.1)  # polling a child process's readiness

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _nginx_conf(folder: Path, port: int, body: str, *, workers: int) -> Path:
    """An nginx config; ``body`` is the ``server`` block's content (and any ``upstream``)."""
    for sub in ("body", "proxy"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(
        f"worker_processes {workers};\n"
        "daemon off;\n"
        f"pid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "  access_log off;\n"
        f"  client_body_temp_path {folder}/body;\n"
        f"  proxy_temp_path {folder}/proxy;\n"
        "  keepalive_requests 1000000;\n"
        "  keepalive_timeout 120s;\n"
        f"{body}\n"
        "}\n"
    )
    return conf


def _static_backend_block(port: int) -> str:
    return (
        f"  server {{\n    listen 127.0.0.1:{port};\n"
        "    location = /v1/chat/completions {\n"
        f"      default_type application/json;\n      return 200 '{_ANSWER}';\n    }}\n"
        "    location = /v1/models {\n"
        f"      default_type application/json;\n      return 200 '{_MODELS}';\n    }}\n"
        "    location / { return 404; }\n  }"
    )


def _proxy_block(port: int, upstream_port: int) -> str:
    return (
        f"  upstream backend {{\n    server 127.0.0.1:{upstream_port};\n    keepalive 64;\n"
        "    keepalive_requests 1000000;\n  }\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n"
        "      proxy_pass http://backend;\n      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n    }\n  }'
    )


def _router_toml(folder: Path, name: str, backend_url: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        '[router]\nstrategy = "p2c-ewma"\n\n'
        f'[[backends]]\nname = "bench"\nurl = "{backend_url}/v1"\nmodels = ["{MODEL}"]\n'
    )
    return path


def _litellm_yaml(folder: Path, backend_url: str) -> Path:
    path = folder / "litellm.yaml"
    path.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {backend_url}/v1\n"
        "      api_key: unused\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  set_verbose: false\n"
        "  json_logs: false\n"
        "general_settings:\n"
        "  disable_spend_logs: true\n"
        # No client keys, as our router runs here (loopback only): the like-for-like setting.
        "  dangerously_permit_weak_or_unset_master_key: true\n"
    )
    return path


#: Environment of the LiteLLM proxy: no telemetry, no database, no cost-map download.
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOG": "ERROR",
    "LITELLM_TELEMETRY_DISABLED": "true",
    "DISABLE_ADMIN_UI": "True",
    "STORE_MODEL_IN_DB": "False",
}
#: Variables removed from its environment (a database would turn spend logging on).
LITELLM_ENV_DROP = ("DATABASE_URL", "DIRECT_URL")
#: Removed from every server's environment: LiteLLM imports modules lazily while serving,
#: and without cached bytecode it would compile them again in each worker.
SERVER_ENV_DROP = ("PYTHONDONTWRITEBYTECODE",)


def _apt_install(packages: Sequence[str]) -> str:
    """Install Debian packages (as root, once); '' on success, else why not."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{' '.join(packages)} missing (apt-get install -y {' '.join(packages)} as root)"
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if res.returncode != 0:
            return f"{' '.join(cmd)} failed: {res.stderr[-300:]}"
    return ""


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def _ensure_debian_tools() -> dict[str, str]:
    """wrk and nginx, installed from Debian when missing; -> ``{tool: why missing}``."""
    want = {"wrk": shutil.which("wrk") is None, "nginx-light": _nginx_binary() is None}
    missing = [pkg for pkg, absent in want.items() if absent]
    why = _apt_install(missing) if missing else ""
    out = {}
    if shutil.which("wrk") is None:
        out["wrk"] = why or "wrk not on PATH after installing it"
    if _nginx_binary() is None:
        out["nginx"] = why or "nginx not found after installing it"
    return out


def _ensure_litellm() -> tuple[Path | None, str, str]:
    """LiteLLM's proxy in its own virtualenv -> (its ``litellm`` script, version, why missing)."""
    exe = LITELLM_VENV / "bin" / "litellm"
    py = LITELLM_VENV / "bin" / "python"
    if not exe.exists():
        steps = [[sys.executable, "-m", "venv", str(LITELLM_VENV)]]
        steps.append([str(py), "-m", "pip", "install", "-q", "litellm[proxy]"])
        for cmd in steps:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
            if res.returncode != 0:
                return None, "", f"{' '.join(cmd)} failed: {res.stderr[-300:]}"
    marker = LITELLM_VENV / ".workbench-compiled"
    if not marker.exists():
        # Bytecode for every module up front: LiteLLM imports lazily while serving, so a
        # missing .pyc would be compiled inside timed requests.
        subprocess.run(
            [str(py), "-m", "compileall", "-q", "-j", "0", str(LITELLM_VENV / "lib")],
            capture_output=True,
            timeout=1800,
            check=False,
        )
        marker.touch()
    res = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return exe, res.stdout.strip(), ""


class _Stack:
    """The backends and proxies of a run, each started on first use and stopped at the end.

    ``static``: nginx answering from a fixed body; ``fake``: ``workbench router fake-backend``;
    ``nginx``, ``router``, ``litellm``: proxies in front of ``static``; ``router-fake``: our
    router in front of ``fake`` (for streaming), and ``aiohttp-proxy``: the minimal aiohttp
    proxy (:mod:`workbench.reports.benchmarks.aiohttp_proxy`) in front of it too.
    """

    def __init__(self, folder: Path) -> None:
        from workbench.testing import free_port

        self.folder = folder
        self._free_port = free_port
        self.servers: dict[str, _Server] = {}
        self.missing: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        self._tools: dict[str, str] | None = None

    def tools_missing(self) -> dict[str, str]:
        if self._tools is None:
            self._tools = _ensure_debian_tools()
            nginx = _nginx_binary()
            if nginx:
                res = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
                self.versions["nginx"] = res.stderr.strip().rsplit("/", 1)[-1]
            if shutil.which("wrk"):
                res = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
                self.versions["wrk"] = (res.stdout + res.stderr).split()[1]
        return self._tools

    def url(self, name: str) -> str | None:
        """Base URL of server ``name`` (started now if need be); None when it cannot run,
        with the reason in :attr:`missing`."""
        if name in self.servers:
            return self.servers[name].url
        if name in self.missing:
            return None
        try:
            server = self._start(name)
        except RuntimeError as exc:
            self.missing[name] = str(exc)[:600]
            return None
        if server is None:
            return None
        self.servers[name] = server
        if name != "fake":
            why = _check_chat(server.url + "/v1/chat/completions")
            if why:
                server.stop()
                del self.servers[name]
                self.missing[name] = why
                return None
        # Every worker through its lazily loaded code paths before anything is timed.
        open_loop(server.url + "/v1/chat/completions", CHAT_BODY, rate_per_s=100, duration_s=2)
        return server.url

    def _start(self, name: str) -> _Server | None:
        port = self._free_port()
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        nginx = _nginx_binary()
        if name in ("static", "nginx") and (nginx is None or "nginx" in self.tools_missing()):
            self.missing[name] = self.tools_missing().get("nginx", "nginx missing")
            return None
        if name == "static":
            conf = _nginx_conf(folder, port, _static_backend_block(port), workers=2)
            cmd = [str(nginx), "-p", str(folder), "-c", str(conf)]
            return _Server(name, cmd, port=port, ready_path="/v1/models", folder=folder)
        if name == "fake":
            cmd = [sys.executable, "-m", "workbench.cli", "router", "fake-backend", "--port"]
            cmd += [str(port), "--models", MODEL, "--latency-ms", "0"]
            return _Server(name, cmd, port=port, ready_path="/v1/models", folder=folder)
        upstream = self.url("fake" if name in ("router-fake", "aiohttp-proxy") else "static")
        if upstream is None:
            self.missing[name] = "its backend did not start: " + "; ".join(self.missing.values())
            return None
        if name == "nginx":
            conf = _nginx_conf(folder, port, _proxy_block(port, _port_of(upstream)), workers=2)
            cmd = [str(nginx), "-p", str(folder), "-c", str(conf)]
            return _Server(name, cmd, port=port, ready_path="/v1/models", folder=folder)
        if name == "aiohttp-proxy":
            cmd = [sys.executable, "-m", "workbench.reports.benchmarks.aiohttp_proxy"]
            cmd += ["--upstream", upstream, "--port", str(port), "--workers", "2"]
            return _Server(name, cmd, port=port, ready_path="/v1/models", folder=folder)
        if name in ("router", "router-fake"):
            toml = _router_toml(folder, name, upstream)
            cmd = [sys.executable, "-m", "workbench.cli", "router", "serve", "--config", str(toml)]
            cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
            return _Server(name, cmd, port=port, ready_path="/health", folder=folder)
        if name == "litellm":
            exe, version, why = _ensure_litellm()
            if exe is None:
                self.missing[name] = why
                return None
            self.versions["litellm"] = version
            cmd = [str(exe), "--config", str(_litellm_yaml(folder, upstream)), "--host"]
            cmd += ["127.0.0.1", "--port", str(port), "--num_workers", "2"]
            return _Server(
                name,
                cmd,
                port=port,
                ready_path="/health/liveliness",
                folder=folder,
                env=LITELLM_ENV,
                drop_env=LITELLM_ENV_DROP,
                timeout_s=180.0,
            )
        raise InputError(f"unknown server {name!r}", details={"field": "name"})

    def close(self) -> None:
        for server in reversed(list(self.servers.values())):
            server.stop()
        self.servers.clear()


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def group_cpu_s(pgid: int) -> float | None:
    """User plus system CPU seconds of the live processes of process group ``pgid`` (Linux
    ``/proc``; None elsewhere). A server's CPU per request does not shrink when other work
    takes cores from it, as its req/s does."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


# -- measurements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    """Sizes and shared state of one run."""

    quick: bool
    repeats: int
    stack: _Stack
    folder: Path

    def n(self, full: float, quick: float) -> float:
        return quick if self.quick else full


def _verdict(metric: str, value: float, target: float | None, base: str) -> str:
    """'' when nothing is lost, else a plain sentence saying where we lose."""
    if value != value:
        return ""
    lower = metric in _LOWER
    if target is not None and (value > target if lower else value < target):
        return f"LOSES: {value:.4g} misses the target of {target:g}"
    if metric == "fraction_of_baseline" and value < 1.0:
        return f"LOSES: ours is {value:.3g}x {base}, i.e. slower"
    return ""


def _m(
    name: str,
    tool: str,
    metric: str,
    samples: Sequence[float] | None,
    note: str = "",
    *,
    target: float | None = None,
    params: dict[str, Any] | None = None,
    invalid: str = "",
    base: str = "",
) -> Measurement:
    """:func:`~workbench.reports.bench.repeated` with this suite's units, and a ``LOSES:``
    verdict in the note (and ``params["verdict"]``) wherever we lose."""
    m = repeated(
        name,
        tool,
        metric,
        samples,
        _UNITS[metric],
        better="lower" if metric in _LOWER else "higher",
        note=note,
        target=target,
        params=params,
        invalid=invalid,
    )
    verdict = _verdict(metric, m.value, target, base)
    if verdict:
        m = dataclasses.replace(m, note=f"{verdict}; {m.note}")
    if metric == "fraction_of_baseline" or target is not None:
        m.params["verdict"] = verdict or (
            "not measured" if m.value != m.value else "ours wins or meets it"
        )
    return m


def _ratios(ours: Sequence[float], base: Sequence[float]) -> list[float]:
    return [a / b for a, b in zip(ours, base, strict=False) if b > 0]


def _rotate(names: Sequence[str], r: int) -> list[str]:
    k = r % len(names) if names else 0
    return [*names[k:], *names[:k]]


#: Throughput tools -> the server each is sent to.
_WRK_TOOLS = {
    "direct": "static",
    "nginx": "nginx",
    "workbench": "router",
    "litellm": "litellm",
    "fake-backend": "fake",
}
_TOOL_NOTES = {
    "direct": "straight to the instant backend (nginx answering a fixed body): the ceiling",
    "nginx": "nginx reverse proxy, worker_processes 2, keepalive 64 to the backend",
    "workbench": "workbench router serve --workers 2 (p2c-ewma, one backend)",
    "litellm": "LiteLLM proxy --num_workers 2, one openai/ model_list entry, no DB",
    "fake-backend": "straight to workbench router fake-backend (aiohttp, one process): context",
}


def _throughput(s: _Setup) -> list[Measurement]:
    missing = s.stack.tools_missing()
    duration, warm = s.n(10.0, 2.0), s.n(3.0, 1.0)
    script = _wrk_script(s.folder)
    urls: dict[str, str] = {}
    void: dict[str, str] = {}
    for tool, server_name in _WRK_TOOLS.items():
        url = None if "wrk" in missing else s.stack.url(server_name)
        if url is None:
            void[tool] = missing.get("wrk") or s.stack.missing.get(server_name, "did not start")
        else:
            urls[tool] = url + "/v1/chat/completions"
    rps: dict[str, list[float]] = {t: [] for t in _WRK_TOOLS}
    cpu: dict[str, list[float]] = {t: [] for t in _WRK_TOOLS}
    backend_cpu: dict[str, list[float]] = {t: [] for t in _WRK_TOOLS}
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in _WRK_TOOLS}
    dropped: Counter[str] = Counter()
    order = list(urls)
    for r in range(s.repeats):
        for tool in _rotate(order, r):
            server = s.stack.servers[_WRK_TOOLS[tool]]
            upstream = s.stack.servers.get(
                "static" if tool in ("nginx", "workbench", "litellm") else ""
            )
            try:
                _wrk(urls[tool], script, warm)
                before = group_cpu_s(server.proc.pid)
                up_before = group_cpu_s(upstream.proc.pid) if upstream else None
                res = _wrk(urls[tool], script, duration)
                after = group_cpu_s(server.proc.pid)
                up_after = group_cpu_s(upstream.proc.pid) if upstream else None
            except (RuntimeError, InputError, subprocess.TimeoutExpired) as exc:
                void[tool] = f"wrk failed: {exc}"[:400]
                continue
            runs[tool].append(dataclasses.asdict(res))
            if res.failed_fraction > MAX_FAILED:
                dropped[tool] += 1
                continue
            rps[tool].append(res.requests_per_s)
            if before is not None and after is not None and res.requests:
                cpu[tool].append((after - before) / res.requests * 1e6)
            if upstream and up_before is not None and up_after is not None and res.requests:
                backend_cpu[tool].append((up_after - up_before) / res.requests * 1e6)
    for tool in urls:
        if not rps[tool] and tool not in void:
            void[tool] = f"every repeat had more than {MAX_FAILED:.0%} failed requests"
    name = f"POST /v1/chat/completions, {CONNECTIONS} connections, keep-alive"
    out = []
    for tool in _WRK_TOOLS:
        params = {
            "connections": CONNECTIONS,
            "wrk_threads": 1,
            "duration_s": duration,
            "warmup_s": warm,
            "backend": "fake-backend" if tool == "fake-backend" else "nginx static body",
            "runs": runs[tool],
            "repeats_dropped_for_errors": dropped[tool],
        }
        if tool == "workbench":
            params["stretch_target"] = 7000.0
        note = _TOOL_NOTES[tool]
        if dropped[tool]:
            note += f"; {dropped[tool]} repeat(s) dropped: over {MAX_FAILED:.0%} failed requests"
        target = 5000.0 if tool == "workbench" else None
        out.append(
            _m(
                name,
                tool,
                "requests_per_s",
                rps[tool],
                note,
                target=target,
                params=params,
                invalid=void.get(tool, ""),
            )
        )
        cpu_params = {"backend_cpu_us_per_request": [round(x, 2) for x in backend_cpu[tool]]}
        whose = "backend" if tool in ("direct", "fake-backend") else "proxy"
        out.append(
            _m(
                f"{name}: CPU per request of the {whose}",
                tool,
                "cpu_us_per_request",
                cpu[tool],
                "user + system CPU of its processes (every worker) over the timed run, per "
                "request: what it would cost on an idle machine too",
                params=cpu_params,
                invalid=void.get(tool, ""),
            )
        )
    for base, target in (("litellm", 5.0), ("nginx", None), ("direct", None)):
        invalid = void.get("workbench", "") or void.get(base, "")
        out.append(
            _m(
                f"router req/s / {base} req/s",
                "workbench",
                "fraction_of_baseline",
                _ratios(rps["workbench"], rps[base]),
                f"per-repeat ratio of adjacent wrk runs against {base}",
                target=target,
                invalid=invalid,
                base=base,
            )
        )
    return out


#: Open-loop latency tools -> the server each is sent to.
_LATENCY_TOOLS = {"direct": "static", "nginx": "nginx", "workbench": "router", "litellm": "litellm"}


def _latency(s: _Setup) -> list[Measurement]:
    duration, warm = s.n(10.0, 2.0), s.n(2.0, 0.5)
    urls: dict[str, str] = {}
    void: dict[str, str] = {}
    for tool, server in _LATENCY_TOOLS.items():
        url = s.stack.url(server)
        if url is None:
            void[tool] = s.stack.missing.get(server, "did not start")
        else:
            urls[tool] = url + "/v1/chat/completions"
    out = _open_loop_rows(
        LATENCY_RATE, list(_LATENCY_TOOLS), urls, void, duration, warm, s.repeats, target=5.0
    )
    # Where LiteLLM cannot take 1,000 req/s, the three again at a rate it can sustain here,
    # so its latency is compared at all.
    if "litellm" in urls and not any(m.tool == "litellm" and m.value == m.value for m in out):
        low = ["direct", "workbench", "litellm"]
        out += _open_loop_rows(LOW_RATE, low, urls, void, duration, warm / 2, s.repeats)
    return out


def _open_loop_rows(
    rate: float,
    tools: list[str],
    urls: dict[str, str],
    void: dict[str, str],
    duration: float,
    warm: float,
    repeats: int,
    *,
    target: float | None = None,
) -> list[Measurement]:
    """p50/p95/p99 of each tool at ``rate`` (open loop), and the p95 each adds to direct's."""
    per: dict[str, dict[str, list[float]]] = {t: {} for t in tools}
    pooled: dict[str, list[float]] = {t: [] for t in tools}
    info: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    order = [t for t in tools if t in urls]
    for r in range(repeats):
        for tool in _rotate(order, r):
            res = open_loop(
                urls[tool],
                CHAT_BODY,
                rate_per_s=rate,
                duration_s=duration,
                warmup_s=warm,
                connections=CONNECTIONS,
            )
            info[tool].append(
                {
                    "sent": res.sent,
                    "errors": res.errors,
                    "statuses": {str(k): v for k, v in res.statuses.items()},
                    "achieved_per_s": round(res.achieved_per_s, 1),
                    "send_lag_ms_p50_p99_max": [round(x * 1000, 3) for x in res.send_lag_s],
                }
            )
            if res.failed_fraction > MAX_FAILED or not res.latencies_s:
                continue
            p50, p95, p99 = res.percentiles_ms()
            for key, v in (("p50_ms", p50), ("p95_ms", p95), ("p99_ms", p99)):
                per[tool].setdefault(key, []).append(v)
            pooled[tool] += [x * 1000.0 for x in res.latencies_s]
    out = []
    name = f"chat completion at a fixed {rate:,.0f} req/s, open loop"
    for tool in tools:
        invalid = void.get(tool, "")
        if not invalid and not per[tool]:
            failed = sum(x["errors"] for x in info[tool])
            sent = sum(x["sent"] for x in info[tool])
            invalid = (
                f"every repeat had more than {MAX_FAILED:.0%} failed requests ({failed} of "
                f"{sent} failed or timed out after 10 s)"
            )
        note = _TOOL_NOTES[tool]
        achieved = [x["achieved_per_s"] for x in info[tool]]
        if achieved and min(achieved) < 0.95 * rate:
            note += (
                f"; could not keep up with {rate:,.0f} req/s (achieved "
                f"{min(achieved):,.0f}): the latency includes the queue that built up"
            )
        params: dict[str, Any] = {"rate_per_s": rate, "duration_s": duration}
        params |= {"warmup_s": warm, "connections": CONNECTIONS, "runs": info[tool]}
        if pooled[tool]:
            params["cdf_ms"] = _cdf(pooled[tool])
            params["samples"] = len(pooled[tool])
        for metric in ("p50_ms", "p95_ms", "p99_ms"):
            out.append(
                _m(name, tool, metric, per[tool].get(metric), note, params=params, invalid=invalid)
            )
            params = {k: v for k, v in params.items() if k not in ("cdf_ms", "runs")}
    for tool in tools:
        if tool == "direct":
            continue
        added = [
            a - b
            for a, b in zip(
                per[tool].get("p95_ms", []), per["direct"].get("p95_ms", []), strict=False
            )
        ]
        invalid = void.get(tool, "") or void.get("direct", "")
        out.append(
            _m(
                f"added p95 latency at {rate:,.0f} req/s: {tool} minus direct",
                tool,
                "added_p95_ms",
                added,
                "per-repeat p95 minus direct p95 of adjacent runs",
                target=target if tool == "workbench" else None,
                invalid=invalid if invalid or added else "no repeat of both kept",
            )
        )
    return out


def _ttfb(s: _Setup) -> list[Measurement]:
    per_tool, rounds, conc = int(s.n(2000, 200)), int(s.n(5, 2)), 4
    servers = {"direct": "fake", "workbench": "router-fake", "aiohttp-proxy": "aiohttp-proxy"}
    urls = {t: s.stack.url(srv) for t, srv in servers.items()}
    void = {
        t: s.stack.missing.get(srv, "did not start")
        for t, srv in servers.items()
        if urls[t] is None
    }
    live = {t: u + "/v1/chat/completions" for t, u in urls.items() if u is not None}
    samples: dict[str, list[float]] = {t: [] for t in urls}
    failures: Counter[str] = Counter()
    per_round: dict[str, dict[str, list[float]]] = {t: {} for t in urls}

    async def main() -> None:
        for url in live.values():  # warm up pools and code paths
            await _ttfb_async(url, STREAM_BODY, requests=50, concurrency=conc)
        for r in range(rounds):
            for tool in _rotate(list(live), r):
                got, bad = await _ttfb_async(
                    live[tool], STREAM_BODY, requests=per_tool // rounds, concurrency=conc
                )
                failures[tool] += bad
                samples[tool] += [x * 1000.0 for x in got]
                if got:
                    p50, p95 = percentiles([x * 1000.0 for x in got], (50, 95))
                    per_round[tool].setdefault("p50_ms", []).append(p50)
                    per_round[tool].setdefault("p95_ms", []).append(p95)

    if live:
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            runner.run(main())
    out = []
    name = f"streamed chat completion, time to first byte, {conc} clients"
    notes = {
        "direct": "straight to workbench router fake-backend (0 ms, 4 chunks)",
        "workbench": "through workbench router serve --workers 2 to the same backend",
        "aiohttp-proxy": (
            "through the minimal aiohttp proxy (2 processes, no routing, auth or metrics) "
            "to the same backend: the floor of one asyncio hop"
        ),
    }
    for tool in urls:
        invalid = void.get(tool, "")
        if not invalid and failures[tool] > MAX_FAILED * max(len(samples[tool]), 1):
            invalid = f"{failures[tool]} failed requests"
        params: dict[str, Any] = {"requests": len(samples[tool]), "failed": failures[tool]}
        params |= {"concurrency": conc, "rounds": rounds}
        if samples[tool]:
            params["cdf_ms"] = _cdf(samples[tool])
            pooled = percentiles(samples[tool], (50, 95))
            params["pooled_p50_p95_ms"] = [round(x, 4) for x in pooled]
        for metric in ("p50_ms", "p95_ms"):
            out.append(
                _m(
                    name,
                    tool,
                    metric,
                    per_round[tool].get(metric),
                    notes[tool] + "; value: median over rounds",
                    params=params,
                    invalid=invalid,
                )
            )
            params = {k: v for k, v in params.items() if k != "cdf_ms"}

    def added(tool: str) -> list[float]:
        pairs = zip(
            per_round[tool].get("p95_ms", []), per_round["direct"].get("p95_ms", []), strict=False
        )
        return [a - b for a, b in pairs]

    out.append(
        _m(
            "added p95 time to first byte: router minus direct",
            "workbench",
            "added_p95_ms",
            added("workbench"),
            "per-round p95 minus direct p95 of adjacent rounds",
            target=2.0,
            invalid=void.get("workbench", "") or void.get("direct", ""),
        )
    )
    out.append(
        _m(
            "added p95 time to first byte: minimal aiohttp proxy minus direct",
            "aiohttp-proxy",
            "added_p95_ms",
            added("aiohttp-proxy"),
            "per-round p95 minus direct p95 of adjacent rounds; what one asyncio hop costs "
            "here before any routing, the floor under ours",
            invalid=void.get("aiohttp-proxy", "") or void.get("direct", ""),
        )
    )
    return out


def _decision(s: _Setup) -> list[Measurement]:
    from workbench.router.config import STRATEGY_NAMES

    calls = int(s.n(20_000, 2_000))
    medians: dict[str, dict[str, list[float]]] = {
        n: {"plan": [], "cycle": []} for n in STRATEGY_NAMES
    }
    p99: dict[str, list[float]] = {n: [] for n in STRATEGY_NAMES}
    for name in STRATEGY_NAMES:
        decision_times(name, calls=max(200, calls // 10))  # warm up
    for r in range(s.repeats):
        for name in _rotate(list(STRATEGY_NAMES), r):
            t = decision_times(name, calls=calls, seed=r)
            medians[name]["plan"].append(statistics.median(t["plan"]) * 1e6)
            medians[name]["cycle"].append(statistics.median(t["cycle"]) * 1e6)
            p99[name].append(percentiles(t["cycle"], (99,))[0] * 1e6)
    out = []
    for name in STRATEGY_NAMES:
        params = {"calls_per_repeat": calls, "backends": 3, "p99_cycle_us": p99[name]}
        out.append(
            _m(
                f"Router.plan, {name}",
                "workbench",
                "median_us",
                medians[name]["plan"],
                "median per call",
                params=params,
            )
        )
        out.append(
            _m(
                f"Router.plan + start + finish, {name}",
                "workbench",
                "median_us",
                medians[name]["cycle"],
                "median per call; what a proxied request pays to route",
                target=50.0,
                params=params,
            )
        )
    return out


# -- the report -----------------------------------------------------------------------------


def router_figures(measurements: Sequence[dict[str, Any]]) -> list[Any]:
    """Plotly figures of the suite's measurements (``Measurement.to_dict()``): req/s per tool
    (bars with the repeats' range), and the CDFs of latency at 1,000 req/s and of TTFB."""
    import plotly.graph_objects as go

    figures = []
    rows = [m for m in measurements if m["metric"] == "requests_per_s"]
    if rows:
        fig = go.Figure()
        spread = [m["params"].get("spread", {}) for m in rows]
        fig.add_bar(
            x=[m["tool"] for m in rows],
            y=[m["value"] for m in rows],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [
                    s.get("max", m["value"] or 0) - (m["value"] or 0)
                    for s, m in zip(spread, rows, strict=True)
                ],
                "arrayminus": [
                    (m["value"] or 0) - s.get("min", m["value"] or 0)
                    for s, m in zip(spread, rows, strict=True)
                ],
            },
            hovertext=[m["note"] for m in rows],
        )
        target = next((m["target"] for m in rows if m.get("target")), None)
        if target:
            fig.add_hline(y=target, line_dash="dash", annotation_text=f"target {target:g}")
        fig.update_layout(
            title=f"router: req/s, wrk {CONNECTIONS} connections (median, range of repeats)",
            yaxis_title="req/s",
            template="plotly_white",
            height=420,
        )
        figures.append(fig)
    for title, prefix in (
        (
            f"latency at {LATENCY_RATE:,.0f} req/s, open loop: CDF",
            f"chat completion at a fixed {LATENCY_RATE:,.0f} req/s",
        ),
        ("streamed chat completion, time to first byte: CDF", "streamed chat"),
    ):
        curves = [
            m for m in measurements if m["name"].startswith(prefix) and "cdf_ms" in m["params"]
        ]
        if not curves:
            continue
        fig = go.Figure()
        for m in curves:
            q, ms = zip(*m["params"]["cdf_ms"], strict=True)
            fig.add_scatter(x=list(ms), y=[x / 100 for x in q], mode="lines", name=m["tool"])
        fig.update_layout(
            title=title,
            xaxis_title="ms (log)",
            xaxis_type="log",
            yaxis_title="fraction of requests",
            template="plotly_white",
            height=420,
        )
        figures.append(fig)
    return figures


def write_router_report(
    measurements: Sequence[dict[str, Any]],
    path: Path | str = Path("data/reports/bench-router.html"),
) -> Path:
    """Write the suite's figures to a self-contained HTML file; returns its path."""
    from workbench.reports.figures import write_html_report

    lines = [
        f"{m['name']} | {m['tool']} | {m['metric']}: {m['value']} {m['unit']} "
        f"(target {m['target']}) {m['note']}"
        for m in measurements
    ]
    return write_html_report(
        Path(path), "workbench bench router", [("router", lines, router_figures(measurements))]
    )


# -- the suite ------------------------------------------------------------------------------

#: The suite's parts, in the order they run.
PARTS: dict[str, Callable[[_Setup], list[Measurement]]] = {
    "decision": _decision,
    "throughput": _throughput,
    "latency": _latency,
    "ttfb": _ttfb,
}


def run(ctx: BenchContext) -> list[Measurement]:
    unknown = set(ctx.parts) - set(PARTS)
    if unknown:
        raise InputError(
            f"--part: unknown {sorted(unknown)}; the router suite has {list(PARTS)}",
            details={"field": "part"},
        )
    chosen = [p for p in PARTS if not ctx.parts or p in ctx.parts]
    out: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="wb-bench-router-") as tmp:
        stack = _Stack(Path(tmp))
        s = _Setup(quick=ctx.quick, repeats=1 if ctx.quick else 3, stack=stack, folder=Path(tmp))
        try:
            for name in ctx.progress(chosen, desc="router"):
                before = [round(x, 2) for x in os.getloadavg()]
                measured = PARTS[name](s)
                after = [round(x, 2) for x in os.getloadavg()]
                extra: dict[str, Any] = {"part": name, "loadavg_before": before}
                extra["loadavg_after"] = after
                extra["versions"] = dict(stack.versions)
                out += [dataclasses.replace(m, params={**m.params, **extra}) for m in measured]
        finally:
            stack.close()
    suffix = "-quick" if ctx.quick else ""
    write_router_report([m.to_dict() for m in out], f"data/reports/bench-router{suffix}.html")
    return out
