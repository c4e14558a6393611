"""The proxy's reliability over real loopback HTTP: a stream that breaks after it started,
and a backend killed in the middle of a load test and started again.

Both drive the real router (``run_router``) in front of emulated backends
(``run_fake_backend``) in background threads. The load test's routing decisions run on an
injected clock (real monotonic time plus an offset the test can advance), so "one open-wait
later" is a step of that clock, not a sleep; every other bound is a count of requests.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
import pytest

from workbench.breaker import CLOSED, OPEN
from workbench.router.balancer import Outcome, Router
from workbench.router.config import RouterConfig
from workbench.router.fake_backend import FakeBackendServer, run_fake_backend
from workbench.router.server import run_router

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
CHAT_PATH = "/v1/chat/completions"


def _entry(fake: FakeBackendServer, name: str) -> dict[str, Any]:
    return {"name": name, "url": fake.openai_url, "models": ["m"]}


def _sse_frames(raw: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded (``[DONE]`` kept as a string)."""
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


# -- a stream that breaks after it started ----------------------------------------------------


def test_a_stream_broken_after_some_chunks_is_not_retried_elsewhere() -> None:
    """The first backend (round-robin starts there) sends 3 of its 6 chunks and drops the
    connection. The client must see exactly that: the 3 chunks of one answer from that
    backend, one error event, and the end of the stream, with no ``[DONE]``. No other
    backend is asked: a retry at that point would splice a second answer onto the first."""
    broken_knobs = {"fail_mode": "truncate", "truncate_after": 3, "stream_chunks": 6}
    with (
        run_fake_backend(name="broken", models=("m",), **broken_knobs) as broken,
        run_fake_backend(name="spare1", models=("m",), stream_chunks=6) as spare1,
        run_fake_backend(name="spare2", models=("m",), stream_chunks=6) as spare2,
    ):
        backends = [_entry(broken, "broken"), _entry(spare1, "spare1"), _entry(spare2, "spare2")]
        doc = {"router": {"strategy": "round-robin", "retries": 2}, "backends": backends}
        thread = run_router(RouterConfig.from_mapping(doc, environ={}))
        try:
            with httpx.stream(
                "POST", thread.url + CHAT_PATH, json={**CHAT, "stream": True}, timeout=10
            ) as r:
                status, served_by = r.status_code, r.headers.get("x-workbench-backend")
                try:
                    raw = b"".join(r.iter_raw())
                except httpx.RemoteProtocolError as exc:  # a second response inside the first
                    pytest.fail(f"the client did not get one well-formed stream: {exc}")
            health = httpx.get(thread.url + "/health").json()["backends"]
        finally:
            thread.stop()
        assert status == 200 and served_by == "broken"
        frames = _sse_frames(raw)
        chunks, rest = frames[:3], frames[3:]
        assert [f.get("object") for f in chunks] == ["chat.completion.chunk"] * 3, frames
        assert len({f["id"] for f in chunks}) == 1, "chunks of more than one answer"
        text = "".join(f["choices"][0]["delta"]["content"] for f in chunks)
        assert text.startswith("broken says"), text
        assert len(rest) == 1 and isinstance(rest[0], dict), rest  # one error event, then the end
        assert set(rest[0]["error"]) == {"message", "type", "param", "code"}
        assert "[DONE]" not in frames and "spare" not in raw.decode()
        # One attempt in all: the spares were never asked, the broken backend once.
        assert broken.stats.requests[CHAT_PATH] == 1
        assert spare1.stats.requests[CHAT_PATH] == spare2.stats.requests[CHAT_PATH] == 0
        assert health["broken"]["requests"] == 1 and health["broken"]["errors"] == 1
        assert health["spare1"]["requests"] == health["spare2"]["requests"] == 0


# -- a backend killed under load and started again --------------------------------------------


class ShiftedClock:
    """Monotonic seconds plus an offset that :meth:`advance` moves forward (thread-safe:
    one float written by the test thread, read by the router's)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class FinishLog:
    """Every outcome the router records, with the breaker's state right after it (appended
    in the router's loop; the test reads it once the load is over)."""

    def __init__(self, router: Router) -> None:
        self.rows: list[tuple[str, bool, str]] = []  # (backend, success, breaker state after)
        self.marks: dict[str, int] = {}
        original = router.finish

        def finish(backend: Any, outcome: Outcome, **kw: Any) -> None:
            original(backend, outcome, **kw)
            self.rows.append((backend.name, outcome.success, backend.breaker.state))

        router.finish = finish  # type: ignore[method-assign]

    def mark(self, name: str) -> None:
        self.marks[name] = len(self.rows)

    def of(self, backend: str, since: str, until: str) -> list[tuple[bool, str]]:
        """``(success, breaker state)`` of ``backend``'s outcomes between two marks."""
        rows = self.rows[self.marks[since] : self.marks[until]]
        return [(ok, state) for name, ok, state in rows if name == backend]


@contextmanager
def _three_backends() -> Iterator[list[FakeBackendServer]]:
    servers = [run_fake_backend(name=n, models=("m",), latency_ms=2.0) for n in "abc"]
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


TOTAL, CONCURRENCY = 3000, 32
KILL_AT, RESTART_AT = 1000, 1800  # request numbers (issued) at which b is stopped, started
RETURN_WITHIN = 200  # requests after the open-wait by which b must serve again
BREAKER = {"size": 10, "min_calls": 5, "failure_rate": 0.5, "open_s": 30.0}


@pytest.mark.parametrize("strategy", ["round-robin", "least-outstanding", "p2c-ewma"])
def test_a_backend_killed_under_load_costs_no_client_errors_and_comes_back(strategy: str) -> None:
    """3,000 requests at 32 concurrency over three backends; b's server is stopped once
    1,000 requests were issued (the load goes on meanwhile) and started again on the same
    port once 1,800 were.

    Asserted: at most 0.1 % of the requests end in an error the client sees (the failed
    attempts on b are retried on a and c); b's breaker opens after at most ``size`` failed
    attempts (its configured count window); once one open-wait (``open_s``) of the router's
    clock has passed after the restart, b serves again within 200 requests, and its breaker
    is closed at the end.

    The strategies that spread load are checked; ``cost`` (everything to the cheapest) and
    ``thompson`` without forgetting (which keeps the outage's evidence against b) are not
    bound to send b traffic again, and ``tiers`` routes by the request text.
    """
    clock = ShiftedClock()
    with _three_backends() as (fa, fb, fc):
        doc = {
            "router": {"strategy": strategy, "breaker": BREAKER, "probe_interval_s": None},
            "backends": [_entry(fa, "a"), _entry(fb, "b"), _entry(fc, "c")],
        }
        config = RouterConfig.from_mapping(doc, environ={})
        router = Router(config, clock=clock, rng=random.Random(5))
        log = FinishLog(router)
        thread = run_router(config, router=router)
        restarted: list[FakeBackendServer] = []
        try:
            statuses, served_by = asyncio.run(_load(thread.url, fb, clock, log, restarted))
            b_state = thread.call(lambda: router.backend("b").breaker.state)
        finally:
            thread.stop()
            for s in restarted:
                s.stop()

    assert len(statuses) == TOTAL and 0 not in statuses
    errors = [(s, by) for s, by in zip(statuses, served_by, strict=True) if s != 200]
    assert len(errors) <= TOTAL // 1000, f"{len(errors)} client-visible errors: {errors[:10]}"

    # b's breaker opened within its configured window of failed attempts after the kill.
    after_kill = log.of("b", "kill", "restart")
    failed_before_open = 0
    for ok, state in after_kill:
        failed_before_open += not ok
        if state == OPEN:
            break
    else:
        pytest.fail(f"b's breaker never opened after the kill: {after_kill[:30]}")
    assert failed_before_open <= BREAKER["size"], after_kill[:30]

    # One open-wait after the restart, b serves again within RETURN_WITHIN requests.
    rows = log.rows[log.marks["waited"] :]
    b_ok = [i for i, (name, ok, _) in enumerate(rows) if name == "b" and ok]
    assert b_ok and b_ok[0] < RETURN_WITHIN, (b_ok[:5], len(rows))
    assert b_state == CLOSED
    assert restarted[0].stats.requests[CHAT_PATH] >= 10
    assert set(served_by[-300:]) == {"a", "b", "c"}


async def _load(
    url: str,
    fb: FakeBackendServer,
    clock: ShiftedClock,
    log: FinishLog,
    restarted: list[FakeBackendServer],
) -> tuple[list[int], list[str]]:
    """Run the load: stop b once KILL_AT requests were issued, with the load going on; once
    RESTART_AT were, hold new requests, start b again on its port, step the router's clock
    by one open-wait, and let the load go on. Phases follow request counts, whatever the
    machine's speed; every wait is bounded."""
    issued = 0
    statuses: list[int] = [0] * TOTAL
    served_by: list[str] = [""] * TOTAL
    kill_reached, restart_reached, restart_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    port = fb.port

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal issued
        while issued < TOTAL:
            i = issued
            issued += 1
            if i == KILL_AT:
                kill_reached.set()
            if i >= RESTART_AT and not restart_done.is_set():
                restart_reached.set()
                await asyncio.wait_for(restart_done.wait(), 60.0)
            try:
                async with session.post(url + CHAT_PATH, json=CHAT) as r:
                    await r.read()
                    statuses[i] = r.status
                    served_by[i] = r.headers.get("x-workbench-backend", "")
            except aiohttp.ClientError as exc:
                statuses[i] = -1
                served_by[i] = type(exc).__name__

    async def controller() -> None:
        await asyncio.wait_for(kill_reached.wait(), 60.0)
        log.mark("kill")
        await asyncio.to_thread(fb.stop)
        log.mark("killed")
        await asyncio.wait_for(restart_reached.wait(), 60.0)
        log.mark("restart")
        server = await asyncio.to_thread(
            lambda: run_fake_backend(port, name="b", models=("m",), latency_ms=2.0)
        )
        restarted.append(server)
        clock.advance(BREAKER["open_s"])  # one open-wait of the router's clock
        log.mark("waited")
        restart_done.set()

    timeout = aiohttp.ClientTimeout(total=30.0)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(controller(), *(worker(session) for _ in range(CONCURRENCY)))
    return statuses, served_by
