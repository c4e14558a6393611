"""The GPU check script runs end to end against the simulated backend (as CI does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from workbench.gpu.check import main


def test_check_script_passes_on_the_simulated_backend(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.gpu.check",
            "--simulated",
            "--quick",
            "--seconds",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RESULT: PASS" in proc.stdout
    results = json.loads(out.read_text())
    assert results["ok"] and results["version"] == 1
    steps = results["steps"]
    assert steps["reconcile"]["checks"] == {
        "matched_has_no_device_finding": True,
        "unreserved_use_is_flagged": True,
        "unused_reservation_is_flagged": True,
        "released_has_no_device_finding": True,
    }
    assert steps["allocator"]["leaked_bytes"] == 0
    assert steps["scheduler"]["completed"] == steps["scheduler"]["jobs"]


def test_check_without_a_gpu_fails_cleanly(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import workbench.gpu._nvml as nvml_mod
    from workbench.errors import BackendUnavailable

    def no_gpu(**kw: object) -> None:
        raise BackendUnavailable("NVML could not be initialised (test)")

    monkeypatch.setattr(nvml_mod, "NvmlBackend", no_gpu)
    out = tmp_path / "none.json"
    assert main(["--out", str(out), "--seconds", "0.1", "--quick"]) == 1
    assert "NVML could not be initialised" in json.loads(out.read_text())["error"]
