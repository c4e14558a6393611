"""``workbench serve`` stops within 10 s of SIGTERM, whatever is in flight.

In flight: a VRAM reservation waiting for memory that will not free up, a vision job waiting
for its model's memory, and a running auto-pilot with a queue. Each worker must stop by
itself (the parent's kill after ``STOP_TIMEOUT_S`` is a last resort the test also rules out).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from workbench.testing import free_port

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


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_serve_within_ten_seconds(workers: int, tmp_path: Path) -> None:
    port = free_port()
    env = dict(
        os.environ,
        WORKBENCH_API_TOKEN=TOKEN,
        WORKBENCH_DATA_DIR=str(tmp_path),
        WORKBENCH_GPU__BACKEND="simulated",
    )
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _call(port, "GET", "/api/v1/vision/status", timeout=5) == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.2)  # still starting
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
        time.sleep(0.5)  # let the waiter reach the server: the point is a wait in flight
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "serve.log").read_text(errors="replace")
    assert elapsed < 10, f"serve took {elapsed:.1f} s to stop:\n{text[-3000:]}"
    assert "killing it" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
