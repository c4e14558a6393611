"""Fixtures for real services.

Outside CI a test whose server is missing is skipped with a loud reason; under ``CI=true`` a
missing server fails the test, so CI never goes green on skipped integration tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from workbench.redis_adapter import RedisAdapter
from workbench.testing import postgres_answers, redis_answers

_IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _missing(service: str, url: str, var: str) -> None:
    message = (
        f"{service} does not answer at {url}; start it or set {var} (tests that need it cannot run)"
    )
    if _IN_CI:
        pytest.fail(message)
    pytest.skip(f"SKIPPED FOR A MISSING SERVICE: {message}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a Redis that answers (see the root conftest for the throwaway server)."""
    url = os.environ.get("WORKBENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    if not redis_answers(url):
        _missing("Redis", url, "WORKBENCH_REDIS_URL")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a PostgreSQL that answers."""
    url = os.environ.get("WORKBENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
    if not postgres_answers(url):
        _missing("PostgreSQL", url, "WORKBENCH_POSTGRES_URL")
    return url


@pytest.fixture
def redis_adapter(redis_url: str) -> Iterator[RedisAdapter]:
    """A RedisAdapter with a unique key prefix; every key under it is deleted afterwards."""
    adapter = RedisAdapter(redis_url, prefix=f"wbtest:{uuid.uuid4().hex[:12]}:")
    yield adapter
    adapter.delete_prefixed()


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped (with its tables) afterwards."""
    import psycopg

    name = f"wbtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
