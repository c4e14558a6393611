"""The router's platform and admin routes fuzzed by schemathesis from its own ``/openapi.json``.

``workbench router serve`` runs in a subprocess with an API token and an admin token, in front
of two emulated backends (one tagged ``fast``, one ``code``, so decisions reach both), and
``st run`` sends it every phase (examples, coverage, fuzzing, stateful) with every check: no
5xx, responses conforming to the document (status codes, content types, headers, bodies),
invalid data rejected, valid data accepted, authentication enforced. It sends the admin
token, which the platform routes accept too, so ``POST /admin/reload`` really reloads (the
file stays valid). Fixed seed and time budget: one CI run covers the same ground each time.

The ``/v1/*`` proxy routes are not in the document: they forward the client's body to the
backend as it comes, so fuzzing them would fuzz the emulated backend; OpenAI's reference is
their contract, and the OpenAI SDK drives them in ``test_openai_sdk.py``.

Checks deliberately not run are listed in :data:`EXCLUDED` with the reason; the one check
narrowed, for three operations only, is in :data:`CONFIG`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.router.fake_backend import run_fake_backend
from workbench.testing import ServeProcess, junit_results

TOKEN = "fuzz-router-api-token-0123"
ADMIN = "fuzz-router-admin-token-0123"
SEED = 20261201
#: Seconds schemathesis may spend; server start and the report come on top.
BUDGET_S = 60

#: Checks not run, and why (none: every check runs).
EXCLUDED: dict[str, str] = {}
#: The one narrowing of a check: the three routes the router does not implement answer 501,
#: as they must, and only they may; ``not_a_server_error`` still holds everywhere else.
CONFIG = """
[[operations]]
include-path-regex = "/api/v1/fast-coordinator/(lfm2/quick|optimize|auto-tune)$"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "501"]
"""


def _st() -> str:
    exe = shutil.which("st", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("schemathesis is not installed: pip install 'workbench[dev]'")
    return exe


def test_schemathesis_finds_no_failure_on_the_platform_routes(tmp_path: Path) -> None:
    empty = tmp_path / "workbench.toml"
    empty.write_text("")
    env = dict(
        os.environ,
        WORKBENCH_API_TOKEN=TOKEN,
        WORKBENCH_ADMIN_TOKEN=ADMIN,
        WORKBENCH_CONFIG=str(empty),
        WORKBENCH_LOG_LEVEL="WARNING",
    )
    report = tmp_path / "junit.xml"
    with (
        run_fake_backend(name="fast", models=("m",)) as fast,
        run_fake_backend(name="coder", models=("c",)) as coder,
    ):
        config = tmp_path / "router.toml"
        config.write_text(
            f'[[backends]]\nname = "fast"\nurl = "{fast.openai_url}"\nmodels = ["m"]\n'
            'tags = ["fast"]\n'
            f'[[backends]]\nname = "coder"\nurl = "{coder.openai_url}"\nmodels = ["c"]\n'
            'tags = ["code"]\n'
        )
        serve = [sys.executable, "-m", "workbench.cli", "router", "serve"]
        serve += ["--config", str(config), "--port", "{port}"]
        with ServeProcess(args=serve, env=env, log=tmp_path / "router.log") as server:
            server.wait_ready(["/openapi.json"], every_worker=False, timeout_s=60)
            settings = tmp_path / "schemathesis.toml"
            settings.write_text(CONFIG)
            cmd = [
                _st(),
                "--config-file",
                str(settings),
                "run",
                server.url("/openapi.json"),
                "--header",
                f"Authorization: Bearer {ADMIN}",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--mode",
                "all",
                "--seed",
                str(SEED),
                "--max-time",
                str(BUDGET_S),
                "--request-timeout",
                "30",
                # Answers must come; how fast is for `workbench bench`, not asserted here.
                "--max-response-time",
                "30",
                # One generating thread: hypothesis describes strategies with ast.parse, which
                # on CPython 3.11 fails spuriously when two threads parse at once.
                "--workers",
                "1",
                "--report",
                "junit",
                "--report-junit-path",
                str(report),
                "--no-color",
            ]
            for check in EXCLUDED:
                cmd += ["--exclude-checks", check]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=BUDGET_S + 120)
            server_log = server.output()
    text = out.stdout + out.stderr
    assert "Traceback" not in server_log, server_log[-4000:]
    assert "Error handling request" not in server_log, server_log[-4000:]
    assert report.exists(), text[-4000:]
    tested, failures = junit_results(report)
    assert tested >= 10, f"only {tested} operations were tested:\n{text[-3000:]}"
    assert not failures, "\n".join(failures) + "\n" + text[-6000:]
    assert out.returncode == 0, text[-6000:]
    assert fast.stats.requests["/v1/chat/completions"] > 0  # execute really forwarded
    assert coder.stats.requests["/v1/chat/completions"] > 0
