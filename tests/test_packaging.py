"""The set-up files agree with each other."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_what_pyproject_declares() -> None:
    text = (ROOT / "environment.yml").read_text()
    project = _pyproject()["project"]
    min_python = re.search(r">=\s*(\d+\.\d+)", project["requires-python"]).group(1)
    assert f"python={min_python}" in text, "environment.yml's python differs from requires-python"
    torch_pin = next(
        d for d in project["optional-dependencies"]["optimize"] if d.startswith("torch")
    )
    assert f"- {torch_pin}" in text, "environment.yml's torch pin differs from the optimize extra"
    assert "- -e .[all]" in text, "environment.yml must install workbench with all extras"
    makefile = (ROOT / "Makefile").read_text()
    assert f"TORCH_PIN := {torch_pin}" in makefile, "Makefile's torch pin differs from pyproject"


def test_all_extra_covers_every_other_extra() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    listed = re.search(r"\[(.*)\]", extras["all"][0]).group(1).split(",")
    assert sorted(listed) == sorted(k for k in extras if k != "all")


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().splitlines()[:12]
    commands = [line.split("#")[0].strip() for line in head if line.strip().startswith("make ")]
    assert commands[:2] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
