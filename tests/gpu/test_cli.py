"""``workbench gpu status|watch|check`` on the simulated backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.cli import SUBSYSTEM_COMMANDS, main


def test_gpu_group_is_registered() -> None:
    assert "gpu" in SUBSYSTEM_COMMANDS


def test_status_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpu", "status", "--json", "--simulated"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backend"] == "simulated"
    dev = data["devices"][0]
    assert dev["memory_total_bytes"] == 24 * 1024**3
    assert dev["budget_bytes"] == 20 * 1024**3
    assert data["health"]["status"] == "healthy"


def test_status_table_shows_health_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpu", "status", "--scenario", "thermal"]) == 0
    out = capsys.readouterr().out
    assert "health: healthy" in out  # the scenario throttles only after 20 s


def test_watch_ends_after_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpu", "watch", "--simulated", "--count", "3", "--hz", "50"]) == 0
    assert "sample 3/3" in capsys.readouterr().out


def test_watch_ends_after_duration() -> None:
    assert main(["gpu", "watch", "--simulated", "--duration", "0.1", "--hz", "50"]) == 0


def test_watch_refuses_a_bad_rate() -> None:
    with pytest.raises(SystemExit):
        main(["gpu", "watch", "--hz", "0"])


def test_check_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.json"
    assert main(["gpu", "check", "--simulated", "--seconds", "0.5", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["ok"] is True
    assert "RESULT: PASS" in capsys.readouterr().out


def test_check_verb_fails_when_the_check_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import workbench.gpu._nvml as nvml_mod
    from workbench.errors import BackendUnavailable

    def no_gpu(**kw: object) -> None:
        raise BackendUnavailable("NVML could not be initialised (test)")

    monkeypatch.setattr(nvml_mod, "NvmlBackend", no_gpu)
    out = tmp_path / "none.json"
    assert main(["gpu", "check", "--seconds", "0.1", "--out", str(out)]) != 0
    assert json.loads(out.read_text())["ok"] is False
    assert "could not start" in capsys.readouterr().err


def test_check_verb_follows_the_configured_simulated_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_GPU__BACKEND", "simulated")
    out = tmp_path / "c.json"
    assert main(["gpu", "check", "--seconds", "0.2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["backend"].startswith("simulated")
