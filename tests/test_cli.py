from __future__ import annotations

import json
import subprocess
import sys

import pytest

from workbench import __version__
from workbench.cli import build_parser, main
from workbench.testing import nvml_available


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"workbench {__version__}"


def test_every_top_level_verb_is_there() -> None:
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "command").choices
    assert {"doctor", "demo", "serve", "bench"} <= set(verbs)


def test_doctor_tells_the_truth(redis_url: str, postgres_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={
            "PATH": "/usr/bin:/bin",
            "WORKBENCH_REDIS_URL": redis_url,
            "WORKBENCH_POSTGRES_URL": postgres_url,
        },
    )
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert checks["Redis"]["ok"] is True and checks["Redis"]["value"] == redis_url
    assert checks["PostgreSQL"]["ok"] is True
    assert checks["NVML / GPU"]["ok"] is nvml_available()
    assert checks["Python"]["ok"] is True


def test_doctor_reports_unreachable_servers_with_the_url_tried() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={
            "PATH": "/usr/bin:/bin",
            "WORKBENCH_REDIS_URL": "redis://127.0.0.1:1/0",
            "WORKBENCH_POSTGRES_URL": "postgresql://127.0.0.1:1/none",
        },
    )
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert checks["Redis"]["ok"] is False and checks["Redis"]["value"] == "redis://127.0.0.1:1/0"
    assert checks["PostgreSQL"]["ok"] is False


def test_workbench_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "no-such-suite"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark suite 'no-such-suite'" in err and "env" in err
