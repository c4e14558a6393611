"""``workbench optimize run`` and ``show``."""

from __future__ import annotations

from workbench.cli import main


def test_run_and_show(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "study.json"
    argv = [
        "optimize",
        "run",
        "branin",
        "--budget",
        "7",
        "--strategy",
        "sobol",
        "--save",
        str(path),
    ]
    assert main(argv) == 0
    assert "regret" in capsys.readouterr().out
    assert main(["optimize", "show", str(path)]) == 0
    assert "completed" in capsys.readouterr().out
    assert main(["optimize", "show", "branin-sobol-0"]) == 0
    assert "'completed': 7" in capsys.readouterr().out
    assert main(["optimize", "show", "missing-study"]) == 2
    assert main(["optimize", "run", "nope"]) == 2
