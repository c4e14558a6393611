"""The mutation harness (``tests/mutants/run.py``).

Its own behaviour is checked on a throwaway project of a few lines (header parsing, kills,
survivors, a survivor that flips, a stale patch, a broken check, an import from the wrong
tree); then the quick mutants run against the real package and must match their headers.
"""

from __future__ import annotations

import difflib
import json
import time
from pathlib import Path

import pytest

from tests.mutants import run as mutants

ROOT = Path(__file__).resolve().parents[1]
QUICK_LIMIT_S = 180.0

TINY_SOURCE = """\
def add(a, b):
    return a + b


def sub(a, b):
    return a - b
"""

TINY_TESTS = """\
import sys

import workbench


def test_add():
    assert workbench.add(2, 3) == 5


def test_sub_runs():
    workbench.sub(2, 3)


def test_broken():
    assert workbench.add(1, 1) == 3
"""


def _patch(root: Path, rel: str, old: str, new: str) -> str:
    text = (root / rel).read_text()
    assert text.count(old) == 1
    lines = difflib.unified_diff(
        text.splitlines(True),
        text.replace(old, new).splitlines(True),
        f"a/{rel}",
        f"b/{rel}",
    )
    return f"diff --git a/{rel} b/{rel}\n" + "".join(lines)


def _write(directory: Path, name: str, header: dict[str, str | list[str]], diff: str) -> Path:
    lines = [f"# mutant: {name}"]
    for key, value in header.items():
        for v in [value] if isinstance(value, str) else value:
            lines.append(f"# {key}: {v}")
    path = directory / f"{name}.patch"
    path.write_text("\n".join(lines) + "\n" + diff)
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A project with the layout the runner copies: workbench/, tests/, conftest.py, ..."""
    root = tmp_path / "project"
    (root / "workbench").mkdir(parents=True)
    (root / "workbench" / "__init__.py").write_text(TINY_SOURCE)
    (root / "tests").mkdir()
    (root / "tests" / "test_tiny.py").write_text(TINY_TESTS)
    (root / "conftest.py").write_text("")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (root / "mutants").mkdir()
    return root


def test_header_parsing(tmp_path: Path) -> None:
    text = (
        "# mutant: mcts-example\n"
        "# what: a first line\n"
        "#   and its continuation\n"
        "# check: tests/a.py::test_x\n"
        "# check: notebooks/01_ab_mcts.ipynb::Cell 7\n"
        "# expect: survives\n"
        "# why: tests/a.py::test_x should, with a harder case\n"
        "# quick: yes\n"
        "diff --git a/workbench/x.py b/workbench/x.py\n"
        "# not header: after the diff starts\n"
    )
    fields = mutants.parse_header(text)
    assert fields["what"] == ["a first line and its continuation"]
    assert fields["check"] == ["tests/a.py::test_x", "notebooks/01_ab_mcts.ipynb::Cell 7"]
    path = tmp_path / "mcts-example.patch"
    path.write_text(text)
    m = mutants.load_mutant(path)
    assert (m.subsystem, m.expected, m.quick) == ("mcts", mutants.SURVIVED, True)
    assert m.checks[1] == "notebooks/01_ab_mcts.ipynb::Cell 7"

    bad = {
        "mcts-other": "must match the file name",
        "mcts-example\n# colour: red": "unknown header keys",
        "mcts-example\n# what: twice": "more than once",
    }
    for first, message in bad.items():
        path.write_text(text.replace("mcts-example", first, 1))
        with pytest.raises(mutants.HeaderError, match=message):
            mutants.load_mutant(path)
    path.write_text(text.replace("# why: tests/a.py::test_x should, with a harder case\n", ""))
    with pytest.raises(mutants.HeaderError, match="known survivor needs"):
        mutants.load_mutant(path)
    path.write_text(text.replace("# expect: survives", "# expect: maybe"))
    with pytest.raises(mutants.HeaderError, match="killed or survives"):
        mutants.load_mutant(path)
    path.write_text(text)
    (tmp_path / "mcts-second.patch").write_text(text.replace("mcts-example", "mcts-second"))
    with pytest.raises(mutants.HeaderError, match="at most one per subsystem"):
        mutants.load_mutants(tmp_path)


def test_check_matching_and_targets() -> None:
    outcomes = {
        "tests/a.py::test_x[1]": "passed",
        "tests/a.py::test_x[2]": "failed",
        "tests/a.py::test_xy": "passed",
        "nb.ipynb::Cell 1": "passed",
        "nb.ipynb::Cell 10": "failed",
    }
    assert mutants.check_status("tests/a.py::test_x", outcomes, {})[0] == "failed"
    assert mutants.check_status("tests/a.py::test_xy", outcomes, {})[0] == "passed"
    assert mutants.check_status("nb.ipynb::Cell 1", outcomes, {})[0] == "passed"
    assert mutants.check_status("tests/b.py", outcomes, {})[0] == "missing"
    assert mutants.check_status("tests/b.py::t", outcomes, {"tests/b.py": "E"})[0] == "failed"
    assert mutants.pytest_targets(["nb.ipynb::Cell 1", "nb.ipynb::Cell 3", "tests/a.py::t"]) == [
        "nb.ipynb",
        "tests/a.py::t",
    ]


def test_outcomes_on_a_throwaway_project(tiny: Path, tmp_path: Path) -> None:
    """Every kind of outcome, through the command line, on synthetic patches."""
    src, d = "workbench/__init__.py", tiny / "mutants"
    kill = _patch(tiny, src, "return a + b", "return a * b")
    harmless = _patch(tiny, src, "return a - b", "return b - a")
    t_add, t_sub = "tests/test_tiny.py::test_add", "tests/test_tiny.py::test_sub_runs"
    _write(d, "mcts-kill", {"what": "w", "check": t_add, "expect": "killed"}, kill)
    _write(
        d, "mcts-survive", {"what": "w", "check": t_sub, "expect": "survives", "why": "y"}, harmless
    )
    _write(d, "gpu-flip", {"what": "w", "check": t_add, "expect": "survives", "why": "y"}, kill)
    _write(d, "gpu-missed", {"what": "w", "check": t_sub, "expect": "killed"}, harmless)
    stale = kill.replace("return a + b", "return a + b + 0")
    _write(d, "cache-stale", {"what": "w", "check": t_add, "expect": "killed"}, stale)
    broken = {"what": "w", "check": [t_add, "tests/test_tiny.py::test_broken"], "expect": "killed"}
    _write(d, "router-broken", broken, kill)
    _write(
        d,
        "router-unknown",
        {"what": "w", "check": "tests/test_tiny.py::nope", "expect": "killed"},
        kill,
    )
    outside = _patch(tiny, "tests/test_tiny.py", "== 5", "== 6")
    _write(d, "analytics-outside", {"what": "w", "check": t_add, "expect": "killed"}, outside)

    out = tmp_path / "results.json"
    args = [
        "--all",
        "--jobs",
        "2",
        "--root",
        str(tiny),
        "--mutants-dir",
        str(d),
        "--json",
        str(out),
    ]
    assert mutants.main(args) == 1
    doc = json.loads(out.read_text())
    got = {m["name"]: m for m in doc["mutants"]}
    assert {n: (m["outcome"], m["as_expected"]) for n, m in got.items()} == {
        "analytics-outside": ("error", False),
        "cache-stale": ("error", False),
        "gpu-flip": ("killed", False),
        "gpu-missed": ("survived", False),
        "mcts-kill": ("killed", True),
        "mcts-survive": ("survived", True),
        "router-broken": ("error", False),
        "router-unknown": ("error", False),
    }
    assert list(got["mcts-kill"]["failed_checks"]) == [t_add]
    assert "assert 6 == 5" in got["mcts-kill"]["failed_checks"][t_add]
    assert "now killed" in got["gpu-flip"]["message"]
    assert "does not apply" in got["cache-stale"]["message"]
    assert "outside workbench/" in got["analytics-outside"]["message"]
    assert "broken check" in got["router-broken"]["message"]
    assert "test_broken: failed" in got["router-broken"]["message"]
    assert "nope: missing" in got["router-unknown"]["message"]
    assert doc["counts"] == {"killed": 2, "survived": 2, "error": 4}
    assert doc["format"] == "workbench-mutants" and not doc["ok"]
    assert all(m["seconds"] >= 0 for m in doc["mutants"]) and doc["total_seconds"] > 0


def test_an_import_from_another_tree_is_an_error(tiny: Path, tmp_path: Path) -> None:
    """A check that picks up ``workbench`` from anywhere but the copy makes the run an error
    (here a decoy on sys.path; in real life the editable install of the checkout)."""
    decoy = tmp_path / "decoy"
    (decoy / "workbench").mkdir(parents=True)
    (decoy / "workbench" / "__init__.py").write_text(TINY_SOURCE)
    (tiny / "tests" / "test_tiny.py").write_text(
        TINY_TESTS.replace("import sys\n", f"import sys\n\nsys.path.insert(0, {str(decoy)!r})\n")
    )
    kill = _patch(tiny, "workbench/__init__.py", "return a + b", "return a * b")
    path = _write(
        tiny / "mutants",
        "mcts-kill",
        {"what": "w", "check": "tests/test_tiny.py::test_add", "expect": "killed"},
        kill,
    )
    (result,) = mutants.run_mutants([mutants.load_mutant(path)], root=tiny, jobs=2)
    assert result.outcome == "error"
    assert "not from the copy" in result.message and str(decoy) in result.message


def test_the_collection_is_valid(tmp_path: Path) -> None:
    """Every mutant's header parses, its checks exist, and its patch applies to the code."""
    import subprocess

    import nbformat

    copy = tmp_path / "repo"
    mutants.copy_tree(ROOT, copy)
    found = mutants.load_mutants()
    assert len(found) >= 4
    assert {m.expected for m in found} <= {mutants.KILLED, mutants.SURVIVED}
    assert any(m.expected == mutants.KILLED for m in found)
    for m in found:
        for check in m.checks:
            file_part, _, rest = check.partition("::")
            assert (ROOT / file_part).is_file(), f"{m.name}: no {file_part}"
            if file_part.endswith(".ipynb") and rest:
                nb = nbformat.read(ROOT / file_part, as_version=4)
                cells = sum(1 for c in nb.cells if c.cell_type == "code")
                assert rest.startswith("Cell ") and int(rest[5:]) < cells, f"{m.name}: {check}"
            elif rest:
                name = rest.split("::")[0].split("[")[0]
                assert f"def {name}(" in (ROOT / file_part).read_text(), f"{m.name}: {check}"
        applies = subprocess.run(
            ["git", "apply", "--check", str(m.path)],
            cwd=copy,
            env={**mutants._git_env(copy)},
            capture_output=True,
            text=True,
        )
        assert applies.returncode == 0, f"{m.name} no longer applies: {applies.stderr}"


@pytest.mark.slow
@pytest.mark.timeout(QUICK_LIMIT_S + 120)
def test_quick_mutants_match_their_headers(tmp_path: Path) -> None:
    """One mutant per subsystem against the real package, baselines included, in 3 minutes."""
    out = tmp_path / "quick.json"
    start = time.perf_counter()
    code = mutants.main(["--quick", "--jobs", "2", "--json", str(out)])
    elapsed = time.perf_counter() - start
    doc = json.loads(out.read_text())
    results = {m["name"]: m for m in doc["mutants"]}
    assert results, "no quick mutants"
    wrong = {n: (m["outcome"], m["message"]) for n, m in results.items() if not m["as_expected"]}
    assert not wrong and code == 0, wrong
    subsystems = [n.split("-", 1)[0] for n in results]
    assert len(subsystems) == len(set(subsystems))
    assert set(subsystems) == {m.subsystem for m in mutants.load_mutants()}
    assert elapsed < QUICK_LIMIT_S, f"the quick mutants took {elapsed:.0f} s"
