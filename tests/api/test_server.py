from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest

from workbench.api.server import check_bind_allowed
from workbench.config import Settings
from workbench.errors import ConfigError
from workbench.testing import ServeProcess


def test_refuses_public_bind_without_token() -> None:
    with pytest.raises(ConfigError, match="WORKBENCH_API_TOKEN"):
        check_bind_allowed(Settings(host="0.0.0.0"))
    check_bind_allowed(Settings(host="0.0.0.0"), insecure=True)
    check_bind_allowed(Settings(host="0.0.0.0", api_token="long-enough-token"))
    check_bind_allowed(Settings(host="127.0.0.1"))
    check_bind_allowed(Settings(host="::1"))


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_health_within_five_seconds(workers: int) -> None:
    env = dict(os.environ, WORKBENCH_API_TOKEN="serve-test-token")
    with ServeProcess(workers=workers, env=env) as server:
        port = server.port
        server.wait_ready(("/health",), timeout_s=5.0, every_worker=False)
        status, body = _get(server.url("/health"))
        assert status == 200
        assert body["data"]["status"] == "healthy"
        assert _get(f"http://127.0.0.1:{port}/openapi.json")[0] == 401
        status, doc = _get(f"http://127.0.0.1:{port}/openapi.json", "serve-test-token")
        assert status == 200 and doc["openapi"].startswith("3.")
        pids = {_get(f"http://127.0.0.1:{port}/health")[1]["data"]["pid"] for _ in range(40)}
        assert len(pids) <= workers
