"""``workbench optimize run`` and ``show``."""

from __future__ import annotations

from workbench.cli import main


def test_run_and_show(tmp_path, capsys) -> None:
    path = tmp_path / "study.json"
    assert main(["optimize", "run", "branin", "--budget", "7", "--save", str(path)]) == 0
    assert "regret" in capsys.readouterr().out
    assert main(["optimize", "show", str(path)]) == 0
    assert "completed" in capsys.readouterr().out
    assert main(["optimize", "run", "nope"]) == 2
