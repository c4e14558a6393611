"""``workbench serve`` stops within 10 s of SIGTERM, whatever is in flight.

In flight: a VRAM reservation waiting for memory that will not free up, a vision job waiting
for its model's memory, and a running auto-pilot with a queue. Each worker must stop by
itself (the parent's kill after ``STOP_TIMEOUT_S`` is a last resort the test also rules out).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from workbench.testing import ServeProcess

TOKEN = "shutdown-test-token"


def _call(port: int, method: str, path: str, body: Any = None, timeout: float = 30) -> int:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _waiting(port: int) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/vision/metrics")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return int(json.loads(r.read())["data"]["waitingReservations"])


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_serve_within_ten_seconds(workers: int, tmp_path: Path) -> None:
    env = dict(
        os.environ,
        WORKBENCH_API_TOKEN=TOKEN,
        WORKBENCH_DATA_DIR=str(tmp_path),
        WORKBENCH_GPU__BACKEND="simulated",
    )
    server = ServeProcess(workers=workers, env=env, log=tmp_path / "serve.log")
    proc, port = server.proc, server.port
    try:
        server.wait_ready(("/api/v1/vision/status",), token=TOKEN, every_worker=False)
        # The whole budget (20 of 24 GiB) is held ...
        assert (
            _call(port, "POST", "/api/v1/vision/reservations", {"owner": "holder", "sizeGB": 20})
            == 201
        )
        # ... so this reservation waits, and so does a job for a model that needs memory.
        waiter = threading.Thread(
            target=lambda: _call(
                port,
                "POST",
                "/api/v1/vision/reservations",
                {"owner": "waiter", "sizeGB": 10, "timeoutS": 5},
            ),
            daemon=True,
        )
        waiter.start()
        assert _call(port, "POST", "/api/v1/vision/jobs", {"model": "clip-vit-b32"}) == 201
        assert _call(port, "POST", "/api/v1/ab-mcts/auto-pilot/start") == 200
        for i in range(20):
            _call(port, "POST", "/api/v1/ab-mcts/auto-pilot/submit", {"userRequest": f"task {i}"})
        # The point is a wait in flight: poll until the allocator reports the waiter.
        deadline = time.monotonic() + 30
        while _waiting(port) < 1:
            assert time.monotonic() < deadline, "the reservation never started waiting"
            time.sleep(0.05)  # polling the server's state, not papering over a race
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        elapsed = time.monotonic() - t0
    finally:
        server.stop()  # a no-op once it has exited; kills it otherwise
    text = server.output()
    assert elapsed < 10, f"serve took {elapsed:.1f} s to stop:\n{text[-3000:]}"
    assert "killing it" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
