"""``workbench doctor``: what this machine offers workbench, checked rather than assumed."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

from workbench.config import Settings, load_settings

__all__ = ["Check", "cpu_model", "run_checks"]


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table.

    Attributes:
        name: What was checked.
        ok: Whether it is usable (``None`` for information only).
        value: The version, URL or reading found.
        detail: Why it is not usable, or extra facts.
    """

    name: str
    ok: bool | None
    value: str
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package(name: str, dist: str, extra: str) -> Check:
    version = _version(dist)
    if version is None:
        return Check(name, False, "not installed", f"pip install 'workbench[{extra}]'")
    return Check(name, True, version)


def _numba_cache() -> Check:
    try:
        from numba.core import config as numba_config
    except ImportError:
        return Check("numba cache dir", False, "numba not installed")
    where = (
        getattr(numba_config, "CACHE_DIR", "")
        or "__pycache__ beside each module (NUMBA_CACHE_DIR unset)"
    )
    return Check("numba cache dir", None, where)


def _nvml() -> Check:
    try:
        import pynvml
    except ImportError:
        return Check(
            "NVML / GPU", False, "nvidia-ml-py not installed", "pip install 'workbench[gpu]'"
        )
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return Check("NVML / GPU", False, "no GPU", f"NVML unavailable: {exc}")
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = []
        for i in range(count):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        return Check(
            "NVML / GPU", True, f"{count} device(s)", f"{', '.join(names)}; driver {driver}"
        )
    finally:
        pynvml.nvmlShutdown()


def _redis(settings: Settings) -> Check:
    from workbench.errors import BackendUnavailable
    from workbench.redis_adapter import RedisAdapter

    adapter = RedisAdapter(settings.redis_url, timeout_s=min(settings.redis_timeout_s, 1.0))
    try:
        latency = adapter.ping()
    except BackendUnavailable as exc:
        return Check("Redis", False, adapter._safe_url(), exc.message)
    return Check("Redis", True, adapter._safe_url(), f"PING {latency * 1000:.2f} ms")


def _postgres(settings: Settings) -> Check:
    try:
        import psycopg
    except ImportError:
        return Check("PostgreSQL", False, settings.postgres_url, "psycopg not installed")
    start = time.perf_counter()
    try:
        with psycopg.connect(settings.postgres_url, connect_timeout=2) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except (psycopg.Error, OSError) as exc:
        return Check("PostgreSQL", False, settings.postgres_url, str(exc).strip().splitlines()[0])
    ms = (time.perf_counter() - start) * 1000
    version = row[0] if row else "?"
    return Check(
        "PostgreSQL", True, settings.postgres_url, f"server {version}; connect {ms:.1f} ms"
    )


def run_checks(settings: Settings | None = None) -> list[Check]:
    """Every check, in display order. Never raises for a missing component."""
    from workbench import __version__

    settings = settings or load_settings()
    torch_threads = os.environ.get("OMP_NUM_THREADS", "default")
    checks = [
        Check("workbench", True, __version__),
        Check("Python", sys.version_info >= (3, 11), platform.python_version(), sys.executable),
        Check("CPU", None, cpu_model(), f"{os.cpu_count()} cores"),
        _package("numpy", "numpy", "core"),
        _package("numba", "numba", "core"),
        _numba_cache(),
        _package("scipy", "scipy", "core"),
        _package("pandas", "pandas", "core"),
        _package("torch", "torch", "optimize"),
        _package("botorch", "botorch", "optimize"),
        Check("torch threads", None, torch_threads, "OMP_NUM_THREADS"),
        _package("aiohttp (service)", "aiohttp", "service"),
        _package("nbval (notebooks)", "nbval", "notebooks"),
        _nvml(),
        _redis(settings),
        _postgres(settings),
    ]
    return checks
