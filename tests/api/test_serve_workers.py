"""``workbench serve --workers 2`` with the default configuration gives one state.

Each request opens a new connection, so the kernel's ``SO_REUSEPORT`` hashing spreads them over
both workers; ``X-Workbench-Worker`` names the worker that produced each answer. For every
stateful route family the interleaved requests must see one state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench.testing import ServeProcess, free_port

TOKEN = "workers-api-token"
ADMIN = "workers-admin-token"
GIB = 1024**3


class Server(ServeProcess):
    data_dir: Path

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = TOKEN
    ) -> tuple[int, dict[str, str], Any]:
        """One request on a new connection: status, headers, decoded body."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path), data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw, status, headers = r.read(), r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            raw, status, headers = e.read(), e.code, dict(e.headers)
        ctype = headers.get("Content-Type", "")
        return status, headers, json.loads(raw) if "json" in ctype else raw.decode()


def _start(tmp: Path, *extra_env: tuple[str, str]) -> Server:
    env = dict(
        os.environ,
        WORKBENCH_API_TOKEN=TOKEN,
        WORKBENCH_ADMIN_TOKEN=ADMIN,
        WORKBENCH_DATA_DIR=str(tmp),
        WORKBENCH_GPU__BACKEND="simulated",
        WORKBENCH_MCTS__RUST_RECOMMEND_PER_MIN="4",
    )
    env.update(dict(extra_env))
    server = Server(workers=2, env=env, log=tmp / "serve.log")
    server.data_dir = tmp
    try:
        # A forwarded route answers only once its owner is up: wait for both owners.
        server.wait_ready(("/api/v1/vision/status", "/api/v1/parameters/analytics"), token=TOKEN)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _start(tmp_path_factory.mktemp("serve-workers")) as s:
        yield s


def test_connections_land_on_both_workers(server: Server) -> None:
    seen = Counter(server.call("GET", "/health")[1]["X-Workbench-Worker"] for _ in range(40))
    assert set(seen) == {"0", "1"}, seen
    pids = {server.call("GET", "/health")[2]["data"]["pid"] for _ in range(20)}
    assert len(pids) == 2


def test_vram_reservations_are_one_ledger(server: Server) -> None:
    base = "/api/v1/vision/reservations"
    answers = [
        server.call("POST", base, {"owner": f"job-{i}", "sizeGB": 20, "timeoutS": 0})
        for i in range(4)
    ]
    granted = [body["data"] for status, _, body in answers if status == 201]
    assert len(granted) == 1, [a[0] for a in answers]  # one 20 GiB budget, not one per worker
    rid = granted[0]["id"]
    for _ in range(10):
        status, _, body = server.call("GET", base)
        assert status == 200 and [r["id"] for r in body["data"]] == [rid]
    owners = {server.call("GET", f"{base}/{rid}")[1]["X-Workbench-Worker"] for _ in range(6)}
    assert len(owners) == 1  # always the vision owner
    owner = granted[0]["owner"]
    assert server.call("DELETE", f"{base}/{rid}")[0] == 403  # only its owner, or an admin
    assert server.call("DELETE", f"{base}/{rid}?owner={owner}")[0] == 200
    for _ in range(6):
        assert server.call("GET", base)[2]["data"] == []
    status, _, body = server.call("POST", base, {"owner": "next", "sizeGB": 20, "timeoutS": 0})
    assert status == 201 and body["data"]["id"] != rid


def test_vision_jobs_are_one_queue(server: Server) -> None:
    ids = [
        server.call("POST", "/api/v1/vision/jobs", {"model": "clip-vit-b32", "priority": i})[2][
            "data"
        ]["id"]
        for i in range(3)
    ]
    for _ in range(6):
        listed = {j["id"] for j in server.call("GET", "/api/v1/vision/jobs")[2]["data"]}
        assert set(ids) <= listed


def test_a_study_told_from_many_connections_keeps_every_trial(server: Server) -> None:
    base = "/api/v1/optimize/shared-study"
    space = {"x": {"type": "real", "low": 0, "high": 1}}
    assert server.call("POST", base, {"space": space, "seed": 1})[0] == 201
    assert server.call("POST", base, {"space": space})[0] == 409  # one namespace of studies
    ids = []
    for i in range(10):
        status, _, body = server.call("POST", f"{base}/ask", {"n": 1})
        assert status == 200, body
        trial = body["data"]["trials"][0]
        status, _, body = server.call(
            "POST", f"{base}/tell", {"trialId": trial["id"], "outcomes": {"y": float(i)}}
        )
        assert status == 200, body
        ids.append(trial["id"])
    assert ids == list(range(10))
    answers = [server.call("GET", f"{base}/best")[2]["data"] for _ in range(6)]
    assert all(a["best_observed"]["value"] == 0.0 for a in answers)  # every tell was seen
    assert len({json.dumps(a, sort_keys=True) for a in answers}) == 1  # one recommendation
    saved = json.loads((server.data_dir / "optimize" / "studies" / "shared-study.json").read_text())
    assert len(saved["study"]["trials"]) == 10


def test_parameter_feedback_is_learnt_once_for_all_workers(server: Server) -> None:
    def record(i: int) -> dict[str, Any]:
        return {
            "taskType": "summarization",
            "parameters": {"temperature": 0.1 * i},
            "latencyMs": 100.0,
            "success": True,
            "quality": 0.5,
        }

    for i in range(4):
        status, _, body = server.call(
            "POST", "/api/v1/parameters/feedback", {"executions": [record(i)]}
        )
        assert status == 200, body
    for _ in range(6):
        body = server.call("GET", "/api/v1/parameters/analytics")[2]
        assert body["taskTypes"]["summarization"]["observations"] == 4


def test_orchestrations_feedback_and_autopilot_are_one_state(server: Server) -> None:
    status, _, body = server.call(
        "POST",
        "/api/v1/ab-mcts/orchestrate",
        {"userRequest": "plan a trip", "options": {"maxIterations": 50, "seed": 1}},
    )
    assert status == 200, body
    oid = body["data"]["orchestrationId"]
    for _ in range(8):
        assert server.call("GET", f"/api/v1/ab-mcts/visualization/{oid}")[0] == 200
    status, _, body = server.call(
        "POST", "/api/v1/ab-mcts/feedback", {"orchestrationId": oid, "rating": 5}
    )
    assert status == 200, body
    totals = {
        server.call("GET", "/api/v1/ab-mcts/metrics")[2]["data"]["feedback"]["totalProcessed"]
        for _ in range(6)
    }
    assert totals == {1}
    for i in range(3):
        status, _, _ = server.call(
            "POST", "/api/v1/ab-mcts/auto-pilot/submit", {"userRequest": f"task {i}"}
        )
        assert status == 200
    queued = {
        server.call("GET", "/api/v1/ab-mcts/auto-pilot/status")[2]["data"]["queue"]["queued"]
        for _ in range(6)
    }
    assert queued == {3}


def test_a_rate_limit_holds_in_total(server: Server) -> None:
    body = {
        "context": {"task": "t", "executionContext": {"sessionId": "s"}},
        "availableAgents": ["a", "b"],
    }
    statuses = [server.call("POST", "/api/v1/ab-mcts-rust/recommend", body)[0] for _ in range(10)]
    assert statuses.count(200) == 4 and statuses.count(429) == 6, statuses


def test_metrics_sum_every_worker(server: Server) -> None:
    def health_count() -> float:
        text = server.call("GET", "/metrics")[2]
        total = 0.0
        for line in text.splitlines():
            if line.startswith("workbench_api_requests_total{") and 'route="/health"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    before = health_count()
    workers = Counter(server.call("GET", "/health")[1]["X-Workbench-Worker"] for _ in range(30))
    assert set(workers) == {"0", "1"}
    assert health_count() == before + 30  # both workers' counters, summed


def test_bad_settings_stop_serve_before_it_binds(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, WORKBENCH_GPU__BUDGET_FRACTION="5", WORKBENCH_DATA_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out
    assert "budget_fraction" in out.stderr + out.stdout
