"""Session set-up shared by the unit tests (tests/) and the notebook tests (notebooks/).

Where no Redis answers at ``WORKBENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and
``redis-server`` is on PATH, a throwaway server is started on a free port for the session and
``WORKBENCH_REDIS_URL`` points at it, so notebook kernels started later see it too. Tests marked
``gpu`` are deselected where NVML is absent.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest

from workbench.testing import nvml_available, redis_answers, throwaway_redis

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_stack = contextlib.ExitStack()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("WORKBENCH_SMOKE", "1")
    url = os.environ.get("WORKBENCH_REDIS_URL", DEFAULT_REDIS_URL)
    if not redis_answers(url) and shutil.which("redis-server"):
        started = _stack.enter_context(throwaway_redis())
        os.environ["WORKBENCH_REDIS_URL"] = started
        config.stash[_redis_note] = f"no Redis at {url}; started a throwaway one at {started}"


def pytest_unconfigure(config: pytest.Config) -> None:
    _stack.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    note = config.stash.get(_redis_note, None)
    return [note] if note else []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if nvml_available():
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]


_redis_note = pytest.StashKey[str]()
