from __future__ import annotations

from pathlib import Path

import pytest

from workbench.config import Settings
from workbench.errors import InputError
from workbench.reports import demo


def test_environment_part_writes_a_self_contained_report(tmp_path: Path, redis_url: str) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=redis_url, smoke=True)
    result = demo.run_demo(["environment"], settings=settings)
    assert result.failed == []
    assert result.report == tmp_path / "reports" / "demo.html"
    html = result.report.read_text()
    assert "Environment" in html and "plotly" in html and "<table" in html


def test_a_failing_part_is_reported_and_the_rest_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(demo.DEMO_PARTS, "broken", "workbench.no_such_module")
    result = demo.run_demo(["broken"], settings=Settings(data_dir=tmp_path))
    assert result.failed == ["broken"]
    assert "FAILED" in result.report.read_text()


def test_unknown_parts_are_refused() -> None:
    with pytest.raises(InputError, match="known"):
        demo.run_demo(["nope"], settings=Settings())
