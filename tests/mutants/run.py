"""Apply each mutant to a temporary copy of the package and run the checks that should kill it.

A mutant is a small patch of the library's own source (``tests/mutants/<name>.patch``, format
in ``tests/mutants/README.md``). For each selected mutant this script

1. copies ``workbench/``, ``tests/``, ``notebooks/``, ``conftest.py`` and ``pyproject.toml``
   to a temporary directory (never ``.venv`` or ``data/``);
2. applies the patch there with ``git apply`` (a patch that no longer applies is an error,
   never a skip);
3. runs the named checks with pytest in that directory (notebooks with ``--nbval-lax``, the
   whole notebook, since a cell depends on the cells before it) and reads each check's
   outcome from a small pytest plugin (:class:`OutcomeRecorder`);
4. compares with a baseline: the same checks on an unmutated copy, once per check set, so a
   check that already fails is reported as broken rather than as a kill.

The copy must really be the code under test. The virtual environment holds an editable
install of the checkout, whose import hook would send ``import workbench`` back to the
original tree; every Python process of a run (pytest and the notebook kernels it starts)
therefore gets a ``sitecustomize`` that removes that hook and logs where ``workbench`` was
imported from, and a run whose log names any other tree is an error. Numba's on-disk cache
is keyed by source path, so each run gets its own ``NUMBA_CACHE_DIR`` (the user's cache
stays clean and a mutated kernel is always recompiled).

Usage::

    python tests/mutants/run.py --all            # every mutant (make mutants)
    python tests/mutants/run.py --quick          # the quick set (run by the test command)
    python tests/mutants/run.py mcts-cont-own-score --jobs 2 --json /tmp/out.json
    python tests/mutants/run.py --list

Exit status 0 when every mutant's outcome matches its header; 1 when a mutant expected to be
killed survived, a known survivor is now killed (update its header), a patch does not apply,
a baseline check fails or a run cannot be trusted; 2 for a bad command line or header.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[2]
MUTANTS_DIR = Path(__file__).resolve().parent
SUBSYSTEMS = ("mcts", "optimize", "gpu", "analytics", "cache", "router")
COPIED = ("workbench", "tests", "notebooks", "conftest.py", "pyproject.toml")
RESULT_FORMAT = "workbench-mutants"
RESULT_VERSION = 1
DEFAULT_TIMEOUT_S = 1800.0
KILLED, SURVIVED, ERROR = "killed", "survived", "error"
_KEYS = {"mutant", "what", "check", "expect", "why", "quick", "note"}
_EXPECT = {"killed": KILLED, "survives": SURVIVED, "survived": SURVIVED}
_IGNORED_IN_COPY = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".ipynb_checkpoints", ".pytest_cache", ".hypothesis", ".mypy_cache"
)

# Loaded by every Python process of a check run (pytest and notebook kernels) through
# PYTHONPATH: drops setuptools' editable-install hook, which would map ``workbench`` back to
# the original checkout, and logs where ``workbench`` is found, so the runner can prove that
# the copy was tested.
_SITECUSTOMIZE = """\
import importlib.machinery
import os
import sys

_LOG = os.environ.get("WORKBENCH_MUTANT_IMPORT_LOG")
_SOURCE = os.environ.get("WORKBENCH_MUTANT_SOURCE_ROOT")
sys.meta_path[:] = [
    f for f in sys.meta_path if not str(getattr(f, "__module__", "")).startswith("__editable__")
]
if _SOURCE:
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _SOURCE]


class _WorkbenchImportLog:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "workbench":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if _LOG:
            with open(_LOG, "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()}\\t{getattr(spec, 'origin', None)}\\n")
        return spec


sys.meta_path.insert(0, _WorkbenchImportLog)
"""


class HeaderError(ValueError):
    """A mutant file whose header is missing a key, has an unknown key or a bad value."""


@dataclass(frozen=True)
class Mutant:
    """One mutant file.

    Attributes:
        name: ``<subsystem>-<name>``, the file name without ``.patch``.
        path: The ``.patch`` file.
        what: The bug it plants, in one sentence.
        checks: Pytest node ids expected to kill it (``path::test``, ``path::test[param]``,
            a whole file, or ``notebook.ipynb::Cell N`` with N counting code cells from 0).
        expected: ``"killed"`` or ``"survived"`` (a known survivor).
        why: For a known survivor: which check should kill it and what must change.
        quick: Whether the test command runs it (at most one per subsystem).
        note: Anything else a reader of the results should know.
    """

    name: str
    path: Path
    what: str
    checks: tuple[str, ...]
    expected: str
    why: str = ""
    quick: bool = False
    note: str = ""

    @property
    def subsystem(self) -> str:
        return self.name.split("-", 1)[0]


def parse_header(text: str) -> dict[str, list[str]]:
    """The ``# key: value`` lines before the diff, as key -> values (``check`` repeats).

    A line ``#`` followed by two or more spaces continues the previous value; the header ends
    at the first line that does not start with ``#``.
    """
    fields: dict[str, list[str]] = {}
    last: str | None = None
    for raw in text.splitlines():
        if not raw.startswith("#"):
            break
        body = raw[1:]
        if not body.strip():
            last = None
            continue
        if body.startswith("  ") and last is not None:
            fields[last][-1] = f"{fields[last][-1]} {body.strip()}".strip()
            continue
        key, sep, value = body.strip().partition(":")
        key = key.strip().lower()
        if not sep or not key or " " in key:
            raise HeaderError(f"header line {raw!r} is not '# key: value'")
        fields.setdefault(key, []).append(value.strip())
        last = key
    return fields


def load_mutant(path: Path) -> Mutant:
    """Read and validate one ``.patch`` file's header."""
    path = Path(path)
    fields = parse_header(path.read_text(encoding="utf-8"))
    where = path.name
    unknown = sorted(set(fields) - _KEYS)
    if unknown:
        raise HeaderError(f"{where}: unknown header keys {unknown}; known: {sorted(_KEYS)}")
    for key in ("mutant", "what", "check", "expect"):
        if not fields.get(key) or not all(fields[key]):
            raise HeaderError(f"{where}: header needs '# {key}: ...'")
    for key in ("mutant", "what", "expect", "why", "quick", "note"):
        if len(fields.get(key, [])) > 1:
            raise HeaderError(f"{where}: '# {key}:' appears more than once")
    name = fields["mutant"][0]
    if name != path.stem:
        raise HeaderError(f"{where}: '# mutant: {name}' must match the file name {path.stem!r}")
    subsystem = name.split("-", 1)[0]
    if subsystem not in SUBSYSTEMS or "-" not in name:
        raise HeaderError(f"{where}: name must be <subsystem>-<name> with one of {SUBSYSTEMS}")
    expect = fields["expect"][0].split()[0].lower() if fields["expect"][0].split() else ""
    if expect not in _EXPECT:
        raise HeaderError(f"{where}: '# expect: {fields['expect'][0]}' must be killed or survives")
    why = fields.get("why", [""])[0]
    if _EXPECT[expect] == SURVIVED and not why:
        raise HeaderError(f"{where}: a known survivor needs '# why: <check that should kill it>'")
    quick = fields.get("quick", ["no"])[0].lower()
    if quick not in ("yes", "no"):
        raise HeaderError(f"{where}: '# quick: {quick}' must be yes or no")
    checks = tuple(fields["check"])
    for check in checks:
        file_part = check.split("::", 1)[0]
        if file_part.startswith("/") or ".." in Path(file_part).parts:
            raise HeaderError(f"{where}: check {check!r} must be relative to the repository")
    return Mutant(
        name=name,
        path=path,
        what=fields["what"][0],
        checks=checks,
        expected=_EXPECT[expect],
        why=why,
        quick=quick == "yes",
        note=fields.get("note", [""])[0],
    )


def load_mutants(directory: Path = MUTANTS_DIR) -> list[Mutant]:
    """Every ``*.patch`` under ``directory``, sorted by name; at most one quick per subsystem."""
    mutants = [load_mutant(p) for p in sorted(Path(directory).glob("*.patch"))]
    quick: dict[str, str] = {}
    for m in mutants:
        if m.quick:
            if m.subsystem in quick:
                raise HeaderError(
                    f"{m.path.name}: {quick[m.subsystem]} is already the quick mutant of "
                    f"{m.subsystem}; at most one per subsystem"
                )
            quick[m.subsystem] = m.name
    return mutants


# --- inside a check run ---------------------------------------------------------------------


class OutcomeRecorder:
    """Pytest plugin: each test's outcome (the worst of its phases) and collection errors,
    written as JSON when the session ends."""

    _RANK: ClassVar[dict[str, int]] = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.outcomes: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        self.collect_errors: dict[str, str] = {}

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collect_errors[report.nodeid] = _tail(str(report.longrepr))

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call":
            outcome = report.outcome
        elif report.failed:
            outcome = "error"
        elif report.skipped:
            outcome = "skipped"
        else:
            outcome = "passed"
        previous = self.outcomes.get(report.nodeid, "passed")
        if self._RANK[outcome] >= self._RANK[previous]:
            self.outcomes[report.nodeid] = outcome
        if report.failed and report.nodeid not in self.messages:
            self.messages[report.nodeid] = _failure_message(report)

    def pytest_sessionfinish(self, session: Any, exitstatus: int) -> None:
        data = {
            "exitstatus": int(exitstatus),
            "outcomes": self.outcomes,
            "messages": self.messages,
            "collect_errors": self.collect_errors,
        }
        self.path.write_text(json.dumps(data, indent=1), encoding="utf-8")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")


def _failure_message(report: Any) -> str:
    """A short reason for a failed test: the crash message, or for a notebook cell the
    exception and the cell line that raised it (nbval reports the whole cell)."""
    text = _ANSI.sub("", str(report.longrepr))
    if "Traceback" in text:
        lines = [line.rstrip() for line in text.splitlines()]
        raised = [line for line in lines if line.lstrip().startswith("--->")]
        errors = [line.strip() for line in lines if _EXCEPTION_LINE.match(line.strip())]
        parts = []
        if errors:
            parts.append(errors[-1])
        if raised:
            code = raised[-1].lstrip()[4:].strip()
            number, _, rest = code.partition(" ")
            parts.append(f"at line {number}: {rest.strip()}" if number.isdigit() else code)
        if parts:
            return _tail(" ".join(parts))
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    return _tail(getattr(crash, "message", None) or text)


def _tail(text: str, limit: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _pytest_worker(out: str, args: list[str]) -> int:
    import importlib.util

    import pytest

    # Property-based checks get a fixed seed, so a mutant's outcome does not depend on luck.
    if importlib.util.find_spec("hypothesis") and not any(
        a.startswith("--hypothesis-seed") for a in args
    ):
        args = ["--hypothesis-seed=0", *args]
    return int(pytest.main(args, plugins=[OutcomeRecorder(out)]))


# --- one check run --------------------------------------------------------------------------


@dataclass
class CheckRun:
    """What one pytest run of a check set gave.

    Attributes:
        status: Per check: ``passed``, ``failed`` (failed, errored or not collected because
            of an error), ``skipped`` or ``missing`` (no such test was collected).
        messages: Per failed check: the first failure's message (shortened).
        seconds: Wall time of the run, copy and patch included.
        problem: Why the run cannot be trusted (``None`` when it can).
        timed_out: The run was stopped after the time limit.
        exitstatus: Pytest's exit status (``None`` when it did not finish).
    """

    status: dict[str, str]
    messages: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    problem: str | None = None
    timed_out: bool = False
    exitstatus: int | None = None


def _matches(check: str, nodeid: str) -> bool:
    return nodeid == check or nodeid.startswith((check + "::", check + "["))


def _is_notebook(check: str) -> bool:
    return check.split("::", 1)[0].endswith(".ipynb")


def pytest_targets(checks: Sequence[str]) -> list[str]:
    """Pytest arguments that run ``checks``: a notebook cell runs its whole notebook."""
    targets: list[str] = []
    for check in checks:
        target = check.split("::", 1)[0] if _is_notebook(check) else check
        if target not in targets:
            targets.append(target)
    return targets


def check_status(
    check: str, outcomes: dict[str, str], collect_errors: dict[str, str]
) -> tuple[str, str]:
    """``(status, message)`` of one check from a run's recorded outcomes."""
    hits = {n: o for n, o in outcomes.items() if _matches(check, n)}
    bad = [n for n, o in hits.items() if o in ("failed", "error")]
    if bad:
        return "failed", bad[0]
    if hits:
        if all(o == "skipped" for o in hits.values()):
            return "skipped", ""
        return "passed", ""
    for nodeid, text in collect_errors.items():
        if not nodeid or check == nodeid or check.startswith((nodeid + "::", nodeid + "/")):
            return "failed", f"collection error in {nodeid or 'the session'}: {text}"
    return "missing", ""


def _write_harness(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")


def copy_tree(root: Path, dest: Path) -> None:
    """Copy what the checks need (see ``COPIED``) from ``root`` to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=_IGNORED_IN_COPY, symlinks=True)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    if not (dest / "workbench").is_dir():
        raise FileNotFoundError(f"{root} has no workbench/ package to copy")


def _git_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The copy lives outside any repository; stop git from finding one above it, where it
    # would apply the patch relative to that repository's top level.
    env["GIT_CEILING_DIRECTORIES"] = str(copy.parent)
    return env


def apply_patch(patch: Path, copy: Path) -> str | None:
    """Apply ``patch`` to ``copy``; the reason it cannot be applied, or ``None``.

    Only files under ``workbench/`` may change: a mutant plants a bug in the library, never in
    its checks.
    """
    env = _git_env(copy)
    try:
        stat = subprocess.run(
            ["git", "apply", "--numstat", str(patch)],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
        )
    except OSError as exc:
        return f"git is needed to apply a mutant: {exc}"
    if stat.returncode != 0:
        return f"git apply --numstat failed: {stat.stderr.strip() or stat.stdout.strip()}"
    paths = [line.split("\t")[-1] for line in stat.stdout.splitlines() if line.strip()]
    if not paths:
        return "the patch changes no file"
    outside = [p for p in paths if not p.startswith("workbench/")]
    if outside:
        return f"the patch changes files outside workbench/: {outside}"
    done = subprocess.run(
        ["git", "apply", "--whitespace=nowarn", str(patch)],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return f"the patch does not apply: {done.stderr.strip() or done.stdout.strip()}"
    return None


def _imports_outside(log: Path, copy: Path) -> str | None:
    """Why the import log does not prove that the copy was tested, or ``None``."""
    if not log.exists() or not log.read_text(encoding="utf-8").strip():
        return "no process of the run imported workbench, so the copy's use cannot be checked"
    package = (copy / "workbench").resolve()
    for line in log.read_text(encoding="utf-8").splitlines():
        pid, _, origin = line.partition("\t")
        if origin in ("", "None"):
            return f"process {pid} did not find workbench in the copy"
        if not Path(origin).resolve().is_relative_to(package):
            return f"process {pid} imported workbench from {origin}, not from the copy {package}"
    return None


def run_checks(
    copy: Path,
    checks: Sequence[str],
    *,
    python: str,
    scratch: Path,
    source_root: Path,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    env_extra: dict[str, str] | None = None,
) -> CheckRun:
    """Run ``checks`` with pytest inside ``copy`` and read each one's outcome."""
    scratch.mkdir(parents=True, exist_ok=True)
    harness = scratch / "harness"
    _write_harness(harness)
    log = scratch / "imports.log"
    log.unlink(missing_ok=True)
    out = scratch / "outcomes.json"
    out.unlink(missing_ok=True)
    numba_cache = scratch / "numba-cache"
    numba_cache.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(harness), str(copy)]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "NUMBA_CACHE_DIR": str(numba_cache),
            "WORKBENCH_MUTANT_IMPORT_LOG": str(log),
            "WORKBENCH_MUTANT_SOURCE_ROOT": os.path.realpath(source_root),
            "WORKBENCH_SMOKE": os.environ.get("WORKBENCH_SMOKE", "1"),
        }
    )
    env.pop("PYTHONSAFEPATH", None)
    if env_extra:
        env.update(env_extra)
    args = ["-q", "-p", "no:cacheprovider", "--rootdir", str(copy)]
    if (copy / "pyproject.toml").exists():
        args += ["-c", str(copy / "pyproject.toml")]
    if any(_is_notebook(c) for c in checks):
        args.append("--nbval-lax")
    else:
        args += ["-p", "no:nbval"]  # its imports cost a second and a half per run
    args += pytest_targets(checks)
    cmd = [python, str(Path(__file__).resolve()), "--pytest-worker", str(out), "--", *args]
    start = time.perf_counter()
    timed_out = False
    proc = subprocess.Popen(
        cmd,
        cwd=copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    (scratch / "pytest-output.txt").write_text(output or "", encoding="utf-8")
    problem = _imports_outside(log, copy)
    if not out.exists():
        status = {c: "failed" for c in checks}
        why = f"timed out after {timeout_s:.0f} s" if timed_out else f"exit {proc.returncode}"
        messages = {
            c: f"the check run did not finish ({why}): {_tail(output or '')}" for c in checks
        }
        if problem and "no process" in problem:
            problem = None  # it may have died before importing anything; judged by the caller
        return CheckRun(status, messages, seconds, problem, timed_out, None)
    data = json.loads(out.read_text(encoding="utf-8"))
    status, messages = {}, {}
    for check in checks:
        status[check], first = check_status(check, data["outcomes"], data["collect_errors"])
        if status[check] == "failed":
            messages[check] = data["messages"].get(first, first)
    return CheckRun(status, messages, seconds, problem, timed_out, data["exitstatus"])


def _kill_group(proc: subprocess.Popen[str]) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


# --- mutants and baselines ------------------------------------------------------------------


@dataclass
class MutantResult:
    """The outcome of one mutant.

    Attributes:
        name, what, checks, expected, why, quick, note: From the header.
        outcome: ``killed``, ``survived`` or ``error``.
        as_expected: The outcome matches the header.
        failed_checks: Checks that failed on the mutant (with a short message each).
        seconds: Wall time of the mutant's run (copy, patch, checks).
        baseline_seconds: Wall time of the baseline run of its check set (shared).
        message: What went wrong or what to do, for an error or a mismatch.
    """

    name: str
    what: str
    checks: list[str]
    expected: str
    why: str
    quick: bool
    note: str
    outcome: str
    as_expected: bool
    failed_checks: dict[str, str]
    seconds: float
    baseline_seconds: float
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "what": self.what,
            "checks": self.checks,
            "expected": self.expected,
            "why": self.why,
            "quick": self.quick,
            "note": self.note,
            "outcome": self.outcome,
            "as_expected": self.as_expected,
            "failed_checks": self.failed_checks,
            "seconds": round(self.seconds, 2),
            "baseline_seconds": round(self.baseline_seconds, 2),
            "message": self.message,
        }


class Runner:
    """Runs mutants against copies of ``root``.

    A mutant's check run and the baseline run of its check set go at the same time, and at
    most ``jobs`` check runs of either kind go at once. Baselines are run once per check set
    (in one unmutated copy shared by all of them).
    """

    def __init__(
        self,
        root: Path = ROOT,
        *,
        jobs: int = 1,
        python: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        keep: bool = False,
        env_extra: dict[str, str] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.python = python or _default_python(self.root)
        self.timeout_s = timeout_s
        self.keep = keep
        self.env_extra = env_extra
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="workbench-mutants-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._slots = threading.Semaphore(max(1, jobs))
        self._baseline_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, jobs), thread_name_prefix="baseline"
        )
        self._baselines: dict[tuple[str, ...], concurrent.futures.Future[CheckRun]] = {}
        self._lock = threading.Lock()
        self._baseline_copy: Path | None = None
        self._count = 0

    def close(self) -> None:
        self._baseline_pool.shutdown(wait=True)
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scratch(self, label: str) -> Path:
        with self._lock:
            self._count += 1
            path = self.workdir / f"{self._count:03d}-{label}"
        path.mkdir(parents=True)
        return path

    def baseline(self, checks: Sequence[str]) -> concurrent.futures.Future[CheckRun]:
        """The checks on the unmutated copy, started once per check set."""
        key = tuple(sorted(set(checks)))
        with self._lock:
            future = self._baselines.get(key)
            if future is None:
                future = self._baseline_pool.submit(self._run_baseline, key)
                self._baselines[key] = future
        return future

    def _run_baseline(self, checks: tuple[str, ...]) -> CheckRun:
        with self._lock:
            if self._baseline_copy is None:
                copy = self.workdir / "baseline" / "repo"
                copy_tree(self.root, copy)
                self._baseline_copy = copy
            copy = self._baseline_copy
        scratch = self._scratch("baseline")
        with self._slots:
            return self._checks(copy, checks, scratch)

    def _checks(self, copy: Path, checks: Sequence[str], scratch: Path) -> CheckRun:
        return run_checks(
            copy,
            checks,
            python=self.python,
            scratch=scratch,
            source_root=self.root,
            timeout_s=self.timeout_s,
            env_extra=self.env_extra,
        )

    def run(self, mutant: Mutant) -> MutantResult:
        """Patch, baseline and mutant run; never raises for a problem of the mutant or its
        checks (those are ``error`` outcomes)."""
        result = MutantResult(
            name=mutant.name,
            what=mutant.what,
            checks=list(mutant.checks),
            expected=mutant.expected,
            why=mutant.why,
            quick=mutant.quick,
            note=mutant.note,
            outcome=ERROR,
            as_expected=False,
            failed_checks={},
            seconds=0.0,
            baseline_seconds=0.0,
        )
        start = time.perf_counter()
        scratch = self._scratch(mutant.name)
        copy = scratch / "repo"
        try:
            copy_tree(self.root, copy)
            problem = apply_patch(mutant.path, copy)
            if problem:
                result.seconds = time.perf_counter() - start
                result.message = problem
                return result
            base_future = self.baseline(mutant.checks)
            with self._slots:
                run = self._checks(copy, mutant.checks, scratch)
            result.seconds = time.perf_counter() - start
        finally:
            if not self.keep:
                shutil.rmtree(copy, ignore_errors=True)
        base = base_future.result()
        result.baseline_seconds = base.seconds
        return _judge(result, mutant, base, run)


def _judge(result: MutantResult, mutant: Mutant, base: CheckRun, run: CheckRun) -> MutantResult:
    """Fill in ``result`` from the baseline run and the mutant's run."""
    if base.problem:
        result.message = f"baseline run cannot be trusted: {base.problem}"
        return result
    broken = {c: s for c, s in base.status.items() if s != "passed"}
    if broken:
        details = "; ".join(
            f"{c}: {s}" + (f" ({base.messages[c]})" if c in base.messages else "")
            for c, s in broken.items()
        )
        result.message = f"broken check(s) on the unmutated code: {details}"
        return result
    if run.problem:
        result.message = f"mutant run cannot be trusted: {run.problem}"
        return result
    result.failed_checks = {
        c: run.messages.get(c, s) for c, s in run.status.items() if s in ("failed", "missing")
    }
    result.outcome = KILLED if result.failed_checks else SURVIVED
    result.as_expected = result.outcome == mutant.expected
    if not result.as_expected:
        if mutant.expected == KILLED:
            result.message = "expected to be killed, but every named check passed"
        else:
            result.message = (
                "a known survivor is now killed: change its header to '# expect: killed' "
                "(and drop '# why:')"
            )
    return result


def _default_python(root: Path) -> str:
    venv = root / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_mutants(
    mutants: Sequence[Mutant],
    *,
    root: Path = ROOT,
    jobs: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    keep: bool = False,
    python: str | None = None,
    env_extra: dict[str, str] | None = None,
    on_result: Callable[[MutantResult], None] | None = None,
    workdir: Path | None = None,
) -> list[MutantResult]:
    """Run ``mutants`` with at most ``jobs`` check runs at once; results in input order."""
    out: list[MutantResult | None] = [None] * len(mutants)
    with (
        Runner(
            root,
            jobs=jobs,
            python=python,
            timeout_s=timeout_s,
            keep=keep,
            env_extra=env_extra,
            workdir=workdir,
        ) as runner,
        concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool,
    ):
        futures = {pool.submit(runner.run, m): i for i, m in enumerate(mutants)}
        for fut in concurrent.futures.as_completed(futures):
            out[futures[fut]] = fut.result()
            if on_result:
                on_result(fut.result())
    return [r for r in out if r is not None]


# --- the report -----------------------------------------------------------------------------


def git_commit(root: Path = ROOT) -> str | None:
    """``git rev-parse --short HEAD``, with ``-dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine_info(root: Path = ROOT) -> dict[str, Any]:
    """The facts that make the timings comparable (the keys of ``workbench bench``'s)."""
    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load: list[float] | None = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git_commit": git_commit(root),
        "loadavg_at_start": load,
    }


def report(
    results: Sequence[MutantResult],
    *,
    selection: str,
    started_at: str,
    seconds: float,
    machine: dict[str, Any],
) -> dict[str, Any]:
    """The JSON document written under ``data/benchmarks/``."""
    return {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "selection": selection,
        "started_at": started_at,
        "git_commit": machine.get("git_commit"),
        "machine": machine,
        "total_seconds": round(seconds, 2),
        "ok": all(r.as_expected for r in results),
        "counts": {k: sum(1 for r in results if r.outcome == k) for k in (KILLED, SURVIVED, ERROR)},
        "mutants": [r.to_dict() for r in results],
    }


def _line(r: MutantResult) -> str:
    mark = "ok  " if r.as_expected else "FAIL"
    expected = "killed" if r.expected == KILLED else "known survivor"
    text = f"{mark} {r.outcome.upper():8s} {r.name:36s} {r.seconds:7.1f} s  (expected {expected})"
    for check, message in r.failed_checks.items():
        first = message.splitlines()[0] if message else ""
        text += f"\n       failed: {check}" + (f"  -- {first[:140]}" if first else "")
    if r.message:
        text += f"\n       {r.message}"
    return text


def select(mutants: Sequence[Mutant], names: Iterable[str], *, all_: bool, quick: bool) -> list:
    """The mutants chosen on the command line (``--all``, ``--quick`` and/or names)."""
    names = list(names)
    by_name = {m.name: m for m in mutants}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise HeaderError(f"unknown mutants {unknown}; known: {', '.join(sorted(by_name))}")
    chosen = [m for m in mutants if all_ or (quick and m.quick) or m.name in names]
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--pytest-worker"]:
        out, rest = argv[1], argv[2:]
        return _pytest_worker(out, rest[1:] if rest[:1] == ["--"] else rest)
    parser = argparse.ArgumentParser(
        prog="tests/mutants/run.py",
        description="Apply mutants to a copy of the package and check that the checks kill them.",
    )
    parser.add_argument("names", nargs="*", help="mutants to run (file names without .patch)")
    parser.add_argument("--all", action="store_true", help="every mutant")
    parser.add_argument("--quick", action="store_true", help="the quick set (one per subsystem)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--jobs", type=int, default=1, help="check runs at once, baselines included (default 1)"
    )
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per check run"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--mutants-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        mutants = load_mutants(args.mutants_dir or root / "tests" / "mutants")
        if args.list:
            for m in mutants:
                flags = ("quick " if m.quick else "") + (
                    "known survivor" if m.expected == SURVIVED else "killed"
                )
                print(f"{m.name:36s} {flags:22s} {m.what}")
            return 0
        if not (args.all or args.quick or args.names):
            parser.error("choose --all, --quick or mutant names (or --list)")
        chosen = select(mutants, args.names, all_=args.all, quick=args.quick)
    except HeaderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    selection = "all" if args.all else "quick" if args.quick and not args.names else "names"
    started = _dt.datetime.now(_dt.UTC)
    machine = machine_info(root)
    print(
        f"{len(chosen)} mutant(s), {args.jobs} check run(s) at a time, "
        f"commit {machine['git_commit']}"
    )
    workdir = None
    if args.keep:
        workdir = Path(tempfile.mkdtemp(prefix="workbench-mutants-"))
        print(f"copies and pytest output kept under {workdir}")
    t0 = time.perf_counter()
    results = run_mutants(
        chosen,
        root=root,
        jobs=args.jobs,
        timeout_s=args.timeout,
        keep=args.keep,
        on_result=lambda r: print(_line(r), flush=True),
        workdir=workdir,
    )
    total = time.perf_counter() - t0
    doc = report(
        results,
        selection=selection,
        started_at=started.isoformat(timespec="seconds"),
        seconds=total,
        machine=machine,
    )
    out = args.json or root / "data" / "benchmarks" / "mutants-latest.json"
    paths = [out]
    if args.all and args.json is None:
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        paths.append(root / "data" / "benchmarks" / f"mutants-{stamp}.json")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    c = doc["counts"]
    bad = [r.name for r in results if not r.as_expected]
    print(
        f"{c[KILLED]} killed, {c[SURVIVED]} survived, {c[ERROR]} error(s) in {total:.1f} s; "
        f"results in {', '.join(str(p) for p in paths)}"
    )
    if bad:
        print(f"not as expected: {', '.join(bad)}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
