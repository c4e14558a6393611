"""The proxy over real loopback HTTP: emulated backends behind a router in a thread."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from workbench.errors import ConfigError
from workbench.router.config import RouterConfig
from workbench.router.fake_backend import FakeBackendServer, run_fake_backend
from workbench.router.server import SERVICE, RetryBudget, run_router, serve
from workbench.testing import ServeProcess

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
CHAT_PATH = "/v1/chat/completions"


def backend_entry(fake: FakeBackendServer | str, name: str, **kw: Any) -> dict[str, Any]:
    url = fake if isinstance(fake, str) else fake.openai_url
    return {"name": name, "url": url, "models": ["m"], **kw}


@contextmanager
def router(
    backends: list[dict[str, Any]], env: dict[str, str] | None = None, **settings: Any
) -> Iterator[str]:
    settings.setdefault("strategy", "round-robin")
    doc = {"router": settings, "backends": backends}
    thread = run_router(RouterConfig.from_mapping(doc, environ=env or {}))
    try:
        yield thread.url
    finally:
        thread.stop()


@contextmanager
def fakes(*knobs: dict[str, Any]) -> Iterator[list[FakeBackendServer]]:
    with ExitStack() as stack:
        servers = []
        for i, k in enumerate(knobs):
            k = {"name": f"f{i}", "models": ("m",), **k}
            servers.append(stack.enter_context(run_fake_backend(**k)))
        yield servers


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there any more


def wait_for(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def err(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_non_streaming_chat_is_proxied_with_request_id_and_alias() -> None:
    with fakes({}) as (f,), router([backend_entry(f, "a", aliases=["nick"])]) as url:
        r = httpx.post(
            url + "/v1/chat/completions",
            json={**CHAT, "model": "nick"},
            headers={"x-request-id": "rid-1"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == "rid-1" and r.headers["x-workbench-backend"] == "a"
        assert r.json()["choices"][0]["message"]["content"].startswith("f0 says")
        assert f.stats.last_headers["x-request-id"] == "rid-1"
        assert f.stats.last_body["model"] == "m"  # the alias is resolved for the backend
        r = httpx.post(url + "/v1/chat/completions", json=CHAT)
        assert len(r.headers["x-request-id"]) == 32


def test_streaming_is_passed_through_chunk_by_chunk() -> None:
    """The first chunk reaches the client while the backend is still generating: with 4
    chunks 250 ms apart, buffering would hold the first until >= 750 ms."""
    with (
        fakes({"stream_chunks": 4, "chunk_interval_ms": 250}) as (f,),
        router([backend_entry(f, "a")]) as url,
    ):
        t0 = time.monotonic()
        arrivals = []
        body = b""
        with httpx.stream("POST", url + "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for data in r.iter_raw():
                arrivals.append(time.monotonic() - t0)
                body += data
        assert arrivals[0] < 0.5 and arrivals[-1] >= 0.75
        frames = [x[6:] for x in body.decode().split("\n\n") if x.startswith("data: ")]
        assert frames[-1] == "[DONE]" and len(frames) == 5


def test_a_stream_s_headers_leave_with_its_first_event() -> None:
    """The status line and headers of a streamed answer go out in the same write as the
    first event, so a client's first read holds both (aiohttp's ``StreamResponse`` sends
    headers on their own unless told otherwise; see ``server._EventStream``). Over loopback
    one small write arrives as one segment, so every first read must hold an event."""
    from aiohttp import web

    assert web.StreamResponse._send_headers_immediately is True  # what aiohttp does today
    body = json.dumps({**CHAT, "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    with (
        fakes({"stream_chunks": 3, "chunk_interval_ms": 20}) as (f,),
        router([backend_entry(f, "a")]) as url,
    ):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for _ in range(20):
                sock.sendall(request)
                first = sock.recv(65536)
                assert first.startswith(b"HTTP/1.1 200") and b"\r\n\r\n" in first
                assert b"data: " in first.split(b"\r\n\r\n", 1)[1], first
                rest = first
                while not rest.endswith(b"0\r\n\r\n"):
                    rest += sock.recv(65536)
                assert b"data: [DONE]" in rest


def test_client_keys_and_backend_keys() -> None:
    env = {"CLIENT_K": "client-secret", "BACKEND_K": "sk-backend-secret"}
    with (
        fakes({"api_key": "sk-backend-secret"}) as (f,),
        router(
            [backend_entry(f, "a", api_key_env="BACKEND_K")], env, client_keys_env=["CLIENT_K"]
        ) as url,
    ):
        chat = url + "/v1/chat/completions"
        assert err(httpx.post(chat, json=CHAT))["code"] == "invalid_api_key"
        r = httpx.post(chat, json=CHAT, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        assert httpx.get(url + "/v1/models").status_code == 401
        ok = {"Authorization": "Bearer client-secret"}
        r = httpx.post(chat, json=CHAT, headers=ok)
        assert r.status_code == 200, r.text
        # The backend got its own key, not the client's.
        assert f.stats.last_headers["authorization"] == "Bearer sk-backend-secret"
        f.configure(error_rate=1.0)
        r = httpx.post(chat, json=CHAT, headers=ok)
        assert r.status_code == 502 and "sk-backend-secret" not in r.text
        assert "sk-backend-secret" not in httpx.get(url + "/health").text


def test_malformed_unknown_and_oversize_requests() -> None:
    with fakes({}) as (f,), router([backend_entry(f, "a")], max_body_bytes=2048) as url:
        chat = url + "/v1/chat/completions"
        r = httpx.post(chat, content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "JSON" in err(r)["message"]
        assert httpx.post(chat, json=[1, 2]).status_code == 400
        r = httpx.post(chat, json={"messages": []})
        assert r.status_code == 400 and err(r)["param"] == "model"
        r = httpx.post(chat, json={**CHAT, "model": "ghost"})
        assert r.status_code == 404 and err(r)["code"] == "model_not_found"
        r = httpx.get(chat)
        assert r.status_code == 405 and r.headers["allow"] == "POST" and err(r)
        r = httpx.post(url + "/v1/responses", json=CHAT)
        assert r.status_code == 404 and err(r)["code"] == "unknown_url"
        r = httpx.post(chat, json=CHAT, headers={"x-request-id": "x" * 500})
        assert r.status_code == 200 and len(r.headers["x-request-id"]) == 32
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
        r = httpx.post(chat, json=big)
        assert r.status_code == 413 and err(r)["type"] == "invalid_request_error"
        assert f.stats.requests[CHAT_PATH] == 1  # only the well-formed one reached it


def test_large_and_chunked_bodies_are_read_whole() -> None:
    """A body larger than one socket read (1 MiB here) reaches the backend whole: one read
    call returns only what has arrived, which cut such bodies into malformed JSON. A chunked
    body (no Content-Length) is read to its end, and refused with 413 once past the limit."""
    limit = 2 * 1024 * 1024
    with fakes({}) as (f,), router([backend_entry(f, "a")], max_body_bytes=limit) as url:
        chat = url + "/v1/chat/completions"
        text = "word " * 200_000  # 1 MB of content
        r = httpx.post(chat, json={**CHAT, "messages": [{"role": "user", "content": text}]})
        assert r.status_code == 200, r.text
        assert f.stats.last_body["messages"][0]["content"] == text  # whole, as sent

        def chunks(total: int) -> Iterator[bytes]:
            doc = json.dumps({**CHAT, "messages": [{"role": "user", "content": "y" * total}]})
            data = doc.encode()
            for i in range(0, len(data), 65536):
                yield data[i : i + 65536]

        r = httpx.post(chat, content=chunks(300_000), headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        r = httpx.post(
            chat, content=chunks(limit + 10), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413, r.text
        assert f.stats.requests[CHAT_PATH] == 2


def test_failed_backend_falls_back_to_a_healthy_one() -> None:
    with (
        fakes({"error_rate": 1.0}, {}) as (bad, good),
        router([backend_entry(bad, "bad"), backend_entry(good, "good")]) as url,
    ):
        for _ in range(6):
            r = httpx.post(url + "/v1/chat/completions", json=CHAT)
            assert r.status_code == 200 and r.headers["x-workbench-backend"] == "good"
        assert bad.stats.statuses[500] >= 1  # round-robin sent some there first


@pytest.mark.parametrize("stream", [False, True])
def test_dead_garbage_closing_and_truncating_backends_are_retried_elsewhere(stream: bool) -> None:
    """Round-robin over backends that are all broken but one: every request gets the good
    one's answer. Streams too, for the failures that sent the client nothing (garbage, a
    dropped connection); a truncated stream has started and is not retried (next tests)."""
    modes = ["garbage", "close"] if stream else ["garbage", "close", "truncate"]
    with (
        fakes(*[{"fail_mode": m} for m in modes], {}) as servers,
        router(
            [backend_entry(dead_url(), "dead")]
            + [backend_entry(s, m) for s, m in zip(servers, [*modes, "good"], strict=True)],
            retries=len(modes) + 1,
        ) as url,
    ):
        for _ in range(len(modes) + 2):
            r = httpx.post(url + "/v1/chat/completions", json={**CHAT, "stream": stream})
            assert r.status_code == 200 and r.headers["x-workbench-backend"] == "good", r.text
            if stream:
                assert r.text.endswith("data: [DONE]\n\n")
        assert all(s.stats.requests[CHAT_PATH] >= 1 for s in servers)


def test_every_backend_rate_limited_gives_429_with_retry_after() -> None:
    with (
        fakes({"rate_429": 1.0, "retry_after_s": 3}, {"rate_429": 1.0, "retry_after_s": 5}) as (
            a,
            b,
        ),
        router([backend_entry(a, "a"), backend_entry(b, "b")]) as url,
    ):
        r = httpx.post(url + "/v1/chat/completions", json=CHAT)
        assert r.status_code == 429 and r.headers["retry-after"] == "3"
        assert err(r)["type"] == "rate_limit_error"
        assert a.stats.requests[CHAT_PATH] == 1 and b.stats.requests[CHAT_PATH] == 1


def test_retries_are_bounded_and_5xx_gives_502() -> None:
    with fakes({"error_rate": 1.0}) as (f,), router([backend_entry(f, "a")], retries=2) as url:
        r = httpx.post(url + "/v1/chat/completions", json=CHAT)
        assert r.status_code == 502 and err(r)["code"] == "upstream_error"
        assert f.stats.requests[CHAT_PATH] == 3  # the first attempt and two retries after a backoff
    with fakes({"error_rate": 1.0}) as (f,), router([backend_entry(f, "a")], retries=0) as url:
        assert httpx.post(url + "/v1/chat/completions", json=CHAT).status_code == 502
        assert f.stats.requests[CHAT_PATH] == 1


def test_deadline_ends_a_slow_request_with_504() -> None:
    with (
        fakes({"latency_ms": 3000}) as (f,),
        router([backend_entry(f, "a")], deadline_s=0.4, retries=0) as url,
    ):
        t0 = time.monotonic()
        r = httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=10)
        assert r.status_code == 504 and err(r)["code"] == "timeout"
        assert 0.35 <= time.monotonic() - t0 < 2.0


def test_stream_broken_mid_way_ends_with_an_error_event_and_no_retry() -> None:
    with (
        fakes({"fail_mode": "truncate", "stream_chunks": 4}, {}) as (broken, spare),
        router([backend_entry(broken, "broken"), backend_entry(spare, "spare")]) as url,
    ):
        seen = set()
        for _ in range(2):  # round-robin: one of the two goes to the broken backend
            r = httpx.post(url + "/v1/chat/completions", json={**CHAT, "stream": True})
            assert r.status_code == 200
            seen.add(r.headers["x-workbench-backend"])
            if r.headers["x-workbench-backend"] == "broken":
                assert '"error"' in r.text and "[DONE]" not in r.text
        assert seen == {"broken", "spare"}
        assert spare.stats.requests[CHAT_PATH] == 1  # the broken stream was not retried there


def test_client_disconnect_ends_the_forwarded_request() -> None:
    with (
        fakes({"latency_ms": 400}) as (f,),
        router([backend_entry(f, "a")]) as url,
    ):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=0.1)
        wait_for(lambda: f.stats.requests[CHAT_PATH] == 1)
        # The router took no verdict on the backend and holds nothing for it.
        wait_for(lambda: httpx.get(url + "/health").json()["backends"]["a"]["outstanding"] == 0)
        assert httpx.get(url + "/health").json()["backends"]["a"]["requests"] == 0


def test_client_disconnect_ends_the_forwarded_stream() -> None:
    with (
        fakes({"stream_chunks": 50, "chunk_interval_ms": 40}) as (f,),
        router([backend_entry(f, "a")]) as url,
    ):
        with httpx.stream("POST", url + "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            next(r.iter_raw())
        wait_for(lambda: f.stats.aborted_streams == 1)


def test_cooling_backend_is_waited_for_within_the_deadline() -> None:
    breaker = {"size": 2, "min_calls": 2, "open_s": 0.5}
    with (
        fakes({"error_rate": 1.0}) as (f,),
        router([backend_entry(f, "a")], retries=0, breaker=breaker, deadline_s=5) as url,
    ):
        chat = url + "/v1/chat/completions"
        for _ in range(2):
            assert httpx.post(chat, json=CHAT).status_code == 502
        f.configure(error_rate=0.0)
        t0 = time.monotonic()
        r = httpx.post(chat, json=CHAT)
        assert r.status_code == 200 and time.monotonic() - t0 >= 0.3
    with (
        fakes({"error_rate": 1.0}) as (f,),
        router(
            [backend_entry(f, "a")], retries=0, breaker={**breaker, "open_s": 30}, deadline_s=1
        ) as url,
    ):
        for _ in range(2):
            httpx.post(url + "/v1/chat/completions", json=CHAT)
        r = httpx.post(url + "/v1/chat/completions", json=CHAT)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 29
        assert err(r)["code"] == "no_backend_available" and f.stats.requests[CHAT_PATH] == 2


def test_active_probes_mark_a_dead_backend_unhealthy_and_route_around_it() -> None:
    with (
        fakes({}) as (good,),
        router(
            [backend_entry(dead_url(), "dead"), backend_entry(good, "good")],
            probe_interval_s=0.05,
        ) as url,
    ):

        def state() -> str:
            return str(httpx.get(url + "/health").json()["backends"]["dead"]["state"])

        wait_for(lambda: state() == "unhealthy")
        assert httpx.get(url + "/health").json()["status"] == "degraded"
        for _ in range(4):
            r = httpx.post(url + "/v1/chat/completions", json=CHAT)
            assert r.headers["x-workbench-backend"] == "good"
        assert httpx.get(url + "/health").json()["backends"]["dead"]["requests"] == 0
        assert good.stats.requests["/v1/models"] >= 1  # the healthy one is probed too


def test_models_health_metrics_completions_embeddings() -> None:
    with fakes({}) as (f,), router([backend_entry(f, "a", aliases=["nick"])]) as url:
        ids = [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]]
        assert ids == ["m", "nick"]
        r = httpx.post(url + "/v1/completions", json={"model": "m", "prompt": "p"})
        assert r.status_code == 200 and r.json()["object"] == "text_completion"
        r = httpx.post(url + "/v1/embeddings", json={"model": "nick", "input": "p"})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 8
        h = httpx.get(url + "/health").json()
        assert h["status"] == "ok" and h["backends"]["a"]["state"] == "available"
        text = httpx.get(url + "/metrics").text
        assert 'workbench_router_requests_total{route="embeddings",status="200"}' in text
        assert "workbench_router_upstream_latency_seconds_bucket" in text


def test_retry_budget_spends_what_requests_earn() -> None:
    now = [0.0]
    budget = RetryBudget(0.2, min_per_s=1.0, clock=lambda: now[0])
    assert budget.withdraw()  # the floor: one a second
    assert not budget.withdraw()
    for _ in range(10):
        budget.deposit()
    assert budget.withdraw() and budget.withdraw() and not budget.withdraw()
    now[0] = 1.0
    assert budget.withdraw() and not budget.withdraw()


def test_serve_refuses_an_open_bind_without_client_keys() -> None:
    cfg = RouterConfig.from_mapping({"backends": [backend_entry("http://h/v1", "a")]})
    with pytest.raises(ConfigError, match="client_keys_env"):
        serve(cfg, host="0.0.0.0", port=1)


def test_cli_serve_status_and_fake_backend(tmp_path: Path) -> None:
    import subprocess
    import sys

    cli = [sys.executable, "-m", "workbench.cli", "router"]
    fake_cmd = [*cli, "fake-backend", "--port", "{port}", "--name", "cli-fake", "--models", "m"]
    with ServeProcess(args=fake_cmd, log=tmp_path / "fake.log") as fake:
        fake.wait_ready(["/v1/models"], every_worker=False, timeout_s=30)
        config = tmp_path / "router.toml"
        config.write_text(f'[[backends]]\nname = "a"\nurl = "{fake.url("/v1")}"\nmodels = ["m"]\n')
        serve_cmd = [*cli, "serve", "--config", str(config), "--port", "{port}"]
        with ServeProcess(args=serve_cmd, log=tmp_path / "router.log") as proc:
            proc.wait_ready(["/health"], every_worker=False, timeout_s=30)
            r = httpx.post(proc.url("/v1/chat/completions"), json=CHAT)
            assert r.status_code == 200 and r.headers["x-workbench-backend"] == "a"
            assert r.json()["choices"][0]["message"]["content"].startswith("cli-fake says")
            out = subprocess.run(
                [*cli, "status", "--url", proc.url(), "--json"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["backends"]["a"]["requests"] == 1


def test_reload_switches_backends_without_dropping_a_stream_in_flight() -> None:
    import threading

    with fakes({"stream_chunks": 5, "chunk_interval_ms": 80}, {}) as (old, new):
        first = RouterConfig.from_mapping({"backends": [backend_entry(old, "old")]}, environ={})
        second = RouterConfig.from_mapping({"backends": [backend_entry(new, "new")]}, environ={})
        thread = run_router(first)
        try:
            service = thread.app[SERVICE]
            got: list[str] = []

            def stream() -> None:
                with httpx.stream(
                    "POST", thread.url + CHAT_PATH, json={**CHAT, "stream": True}
                ) as r:
                    got.append(r.read().decode())

            client = threading.Thread(target=stream)
            client.start()
            wait_for(lambda: old.stats.requests[CHAT_PATH] == 1)
            thread.call(lambda: service.reload(second, grace_s=0.5))
            r = httpx.post(thread.url + CHAT_PATH, json=CHAT)
            assert r.headers["x-workbench-backend"] == "new"
            client.join(10)
            assert got and got[0].endswith("data: [DONE]\n\n") and "f0 says" in got[0]
            assert service.reloads == 1 and [
                m["id"] for m in httpx.get(thread.url + "/v1/models").json()["data"]
            ] == ["m"]
        finally:
            thread.stop()


def test_sighup_reloads_every_worker_and_a_bad_file_keeps_the_old_config(
    tmp_path: Path,
) -> None:
    import signal
    import sys

    with fakes({}, {}) as (a, b):
        config = tmp_path / "router.toml"

        def write(fake: FakeBackendServer, name: str) -> None:
            config.write_text(
                f'[[backends]]\nname = "{name}"\nurl = "{fake.openai_url}"\nmodels = ["m"]\n'
            )

        write(a, "a")
        cmd = [sys.executable, "-m", "workbench.cli", "router", "serve", "--config", str(config)]
        cmd += ["--port", "{port}", "--workers", "2"]
        with ServeProcess(args=cmd, log=tmp_path / "router.log") as proc:
            proc.wait_ready(["/health"], every_worker=False, timeout_s=30)

            def served_by() -> set[str]:
                return {
                    httpx.post(proc.url(CHAT_PATH), json=CHAT).headers["x-workbench-backend"]
                    for _ in range(12)
                }

            assert served_by() == {"a"}
            write(b, "b")
            proc.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: served_by() == {"b"}, timeout_s=10)
            config.write_text("[[backends]]\nname = 'broken'\n")
            proc.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: proc.output().count("reload from") >= 2, timeout_s=10)
            assert served_by() == {"b"}
            assert proc.stop() == 0, proc.output()
        assert a.stats.requests[CHAT_PATH] == 12
