"""Fixtures of the analytics tests: one store per backend, each in a fresh place.

``store`` is parametrized over every backend (DuckDB and SQLite files in the test's temporary
folder, PostgreSQL in a schema of its own on the shared server, dropped afterwards), so each
contract test runs against all three.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from workbench.analytics import AnalyticsStore

BACKENDS = ("duckdb", "sqlite", "postgresql")
NOW = 1_750_000_000.0  # the injected present, epoch seconds


def make_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, dict]:
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
        return url, {"schema": request.getfixturevalue("postgres_schema")}
    suffix = "duckdb" if backend == "duckdb" else "db"
    return f"{backend}:///{tmp_path / f'analytics.{suffix}'}", {}


@pytest.fixture(params=BACKENDS)
def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., AnalyticsStore]]:
    """Builds stores of one backend on one database; each is closed afterwards."""
    url, base = make_url(request.param, tmp_path, request)
    made: list[AnalyticsStore] = []

    def build(**options: Any) -> AnalyticsStore:
        store = AnalyticsStore(url, clock=lambda: NOW, **{**base, **options})
        made.append(store)
        return store

    yield build
    for store in made:
        store.close()


@pytest.fixture
def store(store_factory: Callable[..., AnalyticsStore]) -> AnalyticsStore:
    return store_factory()


def random_log(n: int, seed: int, *, prefix: str = "ex") -> pd.DataFrame:
    """A random execution log: 3 task types, 2 models, 4 parameter sets, some unknown quality."""
    rng = np.random.default_rng(seed)
    sets = [{"temperature": t, "max_tokens": m} for t, m in ((0.1, 256), (0.7, 512), (1.0, 1024))]
    sets.append({"temperature": 0.5, "top_p": 0.9, "stop": ["\n\n"]})
    quality = rng.random(n)
    quality[rng.random(n) < 0.3] = np.nan
    satisfaction = np.round(rng.random(n) * 5, 1)
    satisfaction[rng.random(n) < 0.8] = np.nan
    return pd.DataFrame(
        {
            "execution_id": [f"{prefix}-{seed}-{i}" for i in range(n)],
            "timestamp": rng.integers(1_700_000_000, 1_740_000_000, n),
            "task_type": np.array(["code", "chat", "summarize"], dtype=object)[
                rng.integers(0, 3, n)
            ],
            "model": np.array(["gpt-4o", "llama3:8b"], dtype=object)[rng.integers(0, 2, n)],
            "provider": np.array(["openai", "ollama"], dtype=object)[rng.integers(0, 2, n)],
            "parameters": [sets[i] for i in rng.integers(0, len(sets), n)],
            "prompt_tokens": rng.integers(0, 4000, n),
            "completion_tokens": rng.integers(0, 2000, n),
            "latency_ms": rng.lognormal(6.5, 1.0, n),
            "cost": rng.random(n) / 100,
            "success": rng.random(n) < 0.85,
            "quality": quality,
            "user_satisfaction": satisfaction,
            "complexity": np.array(["simple", "medium", "complex", ""], dtype=object)[
                rng.integers(0, 4, n)
            ],
        }
    )
