"""Session set-up shared by the unit tests (tests/) and the notebook tests (notebooks/).

Where no Redis answers at ``WORKBENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and
``redis-server`` is on PATH, a throwaway server is started on a free port for the session and
``WORKBENCH_REDIS_URL`` points at it, so notebook kernels started later see it too. Tests marked
``gpu`` are deselected where NVML is absent.

Notebook kernels are stopped with a bounded teardown: in one CI run nbval's kernel stop
(``stop_channels`` then ``shutdown_kernel``, neither bounded) hung after every cell of the
notebook had passed, and the run sat 600 s on pytest-timeout. By then the notebook's results are
in; its teardown must not be able to hang the suite. The kernel is killed first, the stop is
given ``KERNEL_STOP_TIMEOUT_S``, and a stop that overruns is reported as a warning.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from typing import Any

import pytest

from workbench.testing import kill_then_bounded, nvml_available, redis_answers, throwaway_redis

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
KERNEL_STOP_TIMEOUT_S = 30.0
_stack = contextlib.ExitStack()


def _install_bounded_kernel_stop() -> None:
    try:
        from nbval.kernel import RunningKernel
    except ImportError:  # nbval comes with the notebooks extra
        return
    original = RunningKernel.stop
    if getattr(original, "_workbench_bounded", False):
        return

    def stop(self: Any) -> None:
        process = getattr(getattr(getattr(self, "km", None), "provisioner", None), "process", None)
        pid = getattr(process, "pid", None)
        if not kill_then_bounded(pid, lambda: original(self), KERNEL_STOP_TIMEOUT_S):
            warnings.warn(
                f"notebook kernel pid {pid} was killed, but nbval's channel shutdown did not "
                f"return within {KERNEL_STOP_TIMEOUT_S:.0f} s",
                RuntimeWarning,
                stacklevel=1,
            )

    stop._workbench_bounded = True  # type: ignore[attr-defined]
    RunningKernel.stop = stop  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    _install_bounded_kernel_stop()
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
