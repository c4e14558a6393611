"""Atomic ask and tell on a study that several processes drive at once (Redis, PostgreSQL).

Several workers, on one host or many, may ask and tell the same study through a shared store
(:class:`~workbench.optimize.storage.RedisStudyStore`,
:class:`~workbench.optimize.storage.PostgresStudyStore`). Every change is an optimistic
read-modify-write:

1. read the study and its version (:meth:`read`);
2. change a private copy: :meth:`Optimizer.ask_batch` (GP fit and acquisition included) or
   :meth:`Optimizer.tell`;
3. commit the copy only if the stored version is still the one read (:meth:`commit`: one Lua
   script in Redis, one ``UPDATE ... WHERE version = %s`` in PostgreSQL);
4. when another writer came first, start again from 1 on the new state, at most ``retries``
   times, then raise :class:`~workbench.errors.ConflictError`.

What this guarantees. A committed suggestion was computed on the study exactly as it is
stored at the commit, so it accounts for every pending trial of every process (they are the
fantasies of its acquisition and the points it avoids); trial ids are given from that state,
so no two processes are handed the same trial or a suggestion made blind to the other's; no
told trial is lost or recorded twice (a tell that lost the race is redone on the new state,
and telling the same result again is a no-op).

Why optimistic and not a lock held around the ask: the expensive part, the model fit and the
acquisition (up to ``ask_time_limit_s``), runs on the private copy outside any critical
section; only the commit is atomic, so a slow ask holds nothing that others wait for, and a
worker that dies mid-ask leaves no lock behind. Each conflict means another writer's commit
succeeded, so the study always progresses; ``retries`` only bounds how long one caller may
keep losing. The price is that an ask that loses the race redoes its fit: with four processes
asking and telling one study back to back, ``tests/optimize/test_shared_concurrency.py``
measures the rate (reported with each run). Unrelated studies are separate keys or rows,
so they never wait on each other and never conflict.

Counters: ``workbench_optimize_store_commits_total`` and
``workbench_optimize_store_conflicts_total`` (labels ``store`` and ``operation``); their
ratio is the conflict rate.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from workbench.errors import ConflictError, InputError
from workbench.metrics import counter
from workbench.optimize.optimizer import Optimizer, Trial
from workbench.optimize.storage import StudySnapshot

__all__ = [
    "DEFAULT_RETRIES",
    "Asked",
    "Committed",
    "SharedStudyStore",
    "ask",
    "is_shared",
    "tell",
    "update_study",
]

log = logging.getLogger(__name__)

#: Conflicting writes one change tolerates before :class:`ConflictError`.
DEFAULT_RETRIES = 16
#: The least share of ``time_limit_s`` an ask redone after a conflict still gets.
MIN_RETRY_SHARE = 0.1

_COMMITS = counter(
    "workbench_optimize_store_commits_total",
    "Changes of a shared study committed",
    ["store", "operation"],
)
_CONFLICTS = counter(
    "workbench_optimize_store_conflicts_total",
    "Commits of a shared study refused because another writer came first (the change is redone)",
    ["store", "operation"],
)

T = TypeVar("T")


@runtime_checkable
class SharedStudyStore(Protocol):
    """A store whose studies carry a version and accept conditional writes."""

    kind: str

    def read(self, name: str) -> StudySnapshot: ...

    def commit(self, opt: Optimizer, version: int) -> int | None: ...


def is_shared(store: Any) -> bool:
    """Whether ``store`` supports atomic updates (Redis and PostgreSQL do, files do not)."""
    return isinstance(store, SharedStudyStore)


@dataclass(frozen=True)
class Committed(Generic[T]):
    """The outcome of one committed change.

    Attributes:
        value: What the change returned on the state that was committed.
        study: The study as committed (a private copy).
        version: The study's version after the commit.
        attempts: Reads and changes it took (1: no conflict; ``attempts - 1`` other writers
            came first).
    """

    value: T
    study: Optimizer
    version: int
    attempts: int

    @property
    def conflicts(self) -> int:
        """Commits refused before this one succeeded."""
        return self.attempts - 1


@dataclass(frozen=True)
class Asked:
    """The result of a shared ask.

    Attributes:
        trials: The new pending trials.
        info: The suggestion's diagnostics (:attr:`Optimizer.last_info`).
        pending_seen: Ids of the trials that were pending, in any process, when the
            committed suggestion was computed (it accounted for each of them).
    """

    trials: list[Trial]
    info: dict[str, Any]
    pending_seen: tuple[int, ...]


def update_study(
    store: SharedStudyStore,
    name: str,
    change: Callable[[Optimizer], T],
    *,
    retries: int = DEFAULT_RETRIES,
    operation: str = "update",
) -> Committed[T]:
    """Apply ``change`` to the study ``name`` atomically (see the module docstring).

    Args:
        store: A shared store.
        name: The study.
        change: Changes the study it is given in place and returns a value. It may run
            several times, each time on a fresh copy of the latest state, so it must have no
            other effect; an exception it raises ends the update with nothing written.
        retries: Conflicting writes to tolerate (>= 0).
        operation: Label of the metrics (``ask``, ``tell``, ...).

    Raises:
        NotFoundError: the study does not exist (or was deleted meanwhile).
        ConflictError: other writers came first ``retries + 1`` times.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InputError(f"retries={retries!r} must be an integer >= 0")
    kind = getattr(store, "kind", type(store).__name__)
    for attempt in range(1, retries + 2):
        snapshot = store.read(name)
        value = change(snapshot.study)
        version = store.commit(snapshot.study, snapshot.version)
        if version is not None:
            _COMMITS.labels(kind, operation).inc()
            return Committed(value, snapshot.study, version, attempt)
        _CONFLICTS.labels(kind, operation).inc()
        log.debug("study %r: %s lost to another writer (attempt %d)", name, operation, attempt)
    raise ConflictError(
        f"study {name!r} changed under each of {retries + 1} {operation} attempts (other "
        "processes write it faster than this one can); retry later or raise "
        "[optimize] update_retries",
        details={"study": name, "attempts": retries + 1},
    )


def ask(
    store: SharedStudyStore,
    name: str,
    n: int = 1,
    *,
    time_limit_s: float | None = None,
    retries: int = DEFAULT_RETRIES,
) -> Committed[Asked]:
    """Suggest ``n`` configurations of a shared study and commit them as pending trials.

    Args:
        store: A shared store.
        name: The study.
        n: Number of configurations.
        time_limit_s: Wall-time bound of the whole call (seconds, ``None``: unbounded). An
            ask redone after a conflict gets what is left of it, but at least
            ``MIN_RETRY_SHARE`` of it, so a call may overrun by that share per conflict.
        retries: Conflicting writes to tolerate.
    """
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    floor = None if time_limit_s is None else MIN_RETRY_SHARE * time_limit_s

    def change(opt: Optimizer) -> Asked:
        limit = None
        if deadline is not None and floor is not None:
            limit = max(deadline - time.monotonic(), floor)
        seen = tuple(t.id for t in opt.pending)
        trials = opt.ask_batch(n, time_limit_s=limit)
        return Asked(trials, dict(opt.last_info), seen)

    if time_limit_s is not None and not (0 < time_limit_s < math.inf):
        raise InputError(f"time_limit_s={time_limit_s!r} must be a positive number or None")
    return update_study(store, name, change, retries=retries, operation="ask")


def tell(
    store: SharedStudyStore,
    name: str,
    trial: Trial | int | Mapping[str, Any],
    outcomes: Mapping[str, Any] | None = None,
    *,
    failed: bool = False,
    retries: int = DEFAULT_RETRIES,
) -> Committed[Trial]:
    """Report a trial of a shared study (see :meth:`Optimizer.tell`) and commit it."""
    target: int | Mapping[str, Any] = trial.id if isinstance(trial, Trial) else trial

    def change(opt: Optimizer) -> Trial:
        return opt.tell(target, outcomes, failed=failed)

    return update_study(store, name, change, retries=retries, operation="tell")
