"""The optimizer as the HTTP service runs it: named studies, the per-task feedback learners,
and where both persist.

:class:`OptimizeService` is built once from an :class:`OptimizeConfig` (the ``[optimize]``
settings). It keeps the ask/tell studies by name and the
:class:`~workbench.optimize.feedback.FeedbackLearner` behind ``/api/v1/parameters``, whose
per-task optimizers are the studies ``parameters-<task_type>`` of the same store, so a
restarted service resumes both where they were (and proposes the same next point).

Locking: model work runs in a worker thread, so the event loop keeps answering while a GP is
fitted, under one lock per study (a task type of the learner is the study
``parameters-<task_type>``, so the study routes and ``/api/v1/parameters`` share its lock).
A slow ask on one study never delays another study or another task type; a feedback batch
takes the locks of its task types in name order, so two batches cannot deadlock. Creating,
loading and deleting studies take a short registry lock. With ``workbench serve --workers K``
one worker owns this service and the others forward to it (:mod:`workbench.api.workers`), so
every store kind, ``memory`` included, gives every worker the same studies.

Shared stores (``redis``, ``postgres``): several services (on several hosts, or next to
scripts using :mod:`workbench.optimize.shared`) may drive one study. There every ask and tell
is an atomic read-modify-write of the stored study (:func:`workbench.optimize.shared.ask`,
:func:`~workbench.optimize.shared.tell`): it starts from the stored state, so it sees the
trials others added, and commits only if nobody wrote in between, redoing the change
otherwise (at most ``update_retries`` times). ``best`` and ``pareto`` read the stored state.
The per-study lock still orders the requests of this process, so they do not conflict with
each other; creating a study is one atomic insert, so two services cannot both create it.

Bounds (each a ``[optimize]`` knob, see :class:`OptimizeConfig`): the encoded dimensions of a
study's space, the batch size of one ask, the wall time of one ask (a suggestion that reaches
it returns the best candidates found so far, marked ``"truncated": true`` in its info), the
number of studies, and the learner's task-type slots with their expiry.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from workbench.config import Settings, from_section
from workbench.errors import CapacityError, ConfigError, ConflictError, InputError, NotFoundError
from workbench.optimize import shared
from workbench.optimize.feedback import STUDY_PREFIX, FeedbackLearner
from workbench.optimize.optimizer import Optimizer, Trial
from workbench.optimize.storage import check_study_name

__all__ = ["MAX_BATCH", "STORES", "OptimizeConfig", "OptimizeService", "ParameterSuggestion"]

#: Where studies persist: ``file`` (``<data_dir>/optimize/studies/<name>.json``, written
#: atomically), ``redis`` (``optimize:study:<name>`` through the Redis adapter) or
#: ``memory`` (nothing survives a restart), or ``postgres`` (rows of ``optimize_studies`` in
#: the schema ``postgres_schema`` of the settings' ``postgres_url``). ``redis`` and
#: ``postgres`` are shared: several processes may drive one study (module docstring).
STORES = ("file", "redis", "memory", "postgres")
#: What ``postgres_schema`` may be: a lower-case SQL identifier.
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: The largest ``max_batch`` may be set to (the request schema's bound on ``n``, so that with
#: the default every schema-valid ``n`` is served).
MAX_BATCH = 64
#: The largest ``max_dimensions`` may be set to.
MAX_DIMENSIONS = 1024
#: Share of ``ask_time_limit_s`` a ``/api/v1/parameters`` suggestion gets; the rest bounds
#: the model fit of the recommendation whose score the response reports.
SUGGEST_SHARE = 0.7

# knob -> (smallest, largest) allowed value
_RANGES: dict[str, tuple[float, float]] = {
    "max_dimensions": (1, MAX_DIMENSIONS),
    "max_batch": (1, MAX_BATCH),
    "ask_time_limit_s": (1e-6, 3600.0),
    "lock_wait_s": (1e-3, 600.0),
    "max_studies": (1, 1_000_000),
    "max_task_types": (1, 100_000),
    "task_type_expire_idle_s": (0.0, 10 * 365 * 86400.0),
    "task_type_expire_below": (0, 1_000_000),
    "update_retries": (0, 1000),
}


@dataclass(frozen=True)
class OptimizeConfig:
    """Knobs of the optimizer service (``[optimize]`` in workbench.toml).

    Attributes:
        store: Where studies persist, one of :data:`STORES`.
        max_dimensions: Most encoded dimensions of a study's space (one per real or integer
            parameter, one per choice of a categorical; 1-1024). The GP fit and each
            acquisition step grow with the dimension; 64 keeps one ask within seconds.
        max_batch: Most configurations one ask may request (1-64).
        ask_time_limit_s: Wall-time bound of one ask (seconds, > 0): the acquisition stops
            there and the best candidates found so far are returned, marked truncated.
        lock_wait_s: Longest a request waits for a study busy with other requests before
            it is refused with 409 and ``Retry-After`` (seconds).
        max_studies: Most ask/tell studies held (the learner's task types do not count).
        max_task_types: Most task types the feedback learner holds.
        task_type_expire_idle_s: Idle seconds after which a task type with few observations
            may expire to make room for a new one.
        task_type_expire_below: Task types with fewer completed observations than this may
            expire (0: never).
        postgres_schema: Schema of the ``postgres`` store's table (created on first use).
        update_retries: Conflicting writes by other processes one ask or tell of a shared
            store tolerates before it is refused with 409 (0-1000).
    """

    store: str = "file"
    _: KW_ONLY
    max_dimensions: int = 64
    max_batch: int = 64
    ask_time_limit_s: float = 10.0
    lock_wait_s: float = 5.0
    max_studies: int = 1024
    max_task_types: int = 256
    task_type_expire_idle_s: float = 86400.0
    task_type_expire_below: int = 10
    postgres_schema: str = "workbench_optimize"
    update_retries: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", str(self.store).lower())
        if self.store not in STORES:
            raise ConfigError(
                f"invalid setting optimize.store={self.store!r}: use 'file', 'redis', "
                "'memory' or 'postgres'",
                details={"key": "optimize.store"},
            )
        if not isinstance(self.postgres_schema, str) or not _SCHEMA.fullmatch(self.postgres_schema):
            raise ConfigError(
                f"invalid setting optimize.postgres_schema={self.postgres_schema!r}: use a "
                "lower-case SQL identifier (letters, digits, '_'; at most 63)",
                details={"key": "optimize.postgres_schema"},
            )
        for key, (low, high) in _RANGES.items():
            value = getattr(self, key)
            integer = isinstance(low, int)
            ok = not isinstance(value, bool) and isinstance(value, (int, float))
            ok = ok and (not integer or isinstance(value, int)) and math.isfinite(value)
            if not ok or not low <= value <= high:
                raise ConfigError(
                    f"invalid setting optimize.{key}={value!r}: use "
                    f"{'an integer' if integer else 'a number'} in [{low:g}, {high:g}]",
                    details={"key": f"optimize.{key}"},
                )

    @classmethod
    def from_settings(cls, settings: Settings) -> OptimizeConfig:
        """Build from the settings' ``[optimize]`` section, refusing unknown keys."""
        return from_section(cls, settings.section("optimize"), "optimize")


@dataclass(frozen=True)
class ParameterSuggestion:
    """What ``/api/v1/parameters`` answers for a task type.

    Attributes:
        params: The suggested parameters (the task's profile before any feedback).
        observations: Completed observations of the task type.
        expected_score: Observed score of the recommended configuration
            (:meth:`Optimizer.best`; ``None`` before any observation).
        info: The suggestion's diagnostics (``phase``, ``truncated``, ``reason`` of a
            fallback, ``best_truncated`` when the time bound left no time for the model's
            recommendation, whose score is then the best observed one); empty for a profile.
        expected_basis: How the recommendation was chosen: ``"posterior_mean"`` or
            ``"observed"`` (:attr:`~workbench.optimize.optimizer.Best.basis`).
    """

    params: dict[str, Any]
    observations: int
    expected_score: float | None
    info: dict[str, Any] = field(default_factory=dict)
    expected_basis: str | None = None


def make_store(config: OptimizeConfig, settings: Settings) -> Any:
    """The study store the config names (``None`` for memory)."""
    if config.store == "file":
        from workbench.optimize.storage import FileStudyStore

        return FileStudyStore(settings.data_dir / "optimize" / "studies")
    if config.store == "redis":
        from workbench.optimize.storage import RedisStudyStore
        from workbench.redis_adapter import RedisAdapter

        return RedisStudyStore(RedisAdapter.from_settings(settings))
    if config.store == "postgres":
        from workbench.optimize.storage import PostgresStudyStore
        from workbench.postgres_adapter import PostgresAdapter

        return PostgresStudyStore(
            PostgresAdapter.from_settings(settings, schema=config.postgres_schema)
        )
    return None


class OptimizeService:
    """Named studies and the feedback learner of one server (see the module docstring).

    Args:
        config: Knobs (default :class:`OptimizeConfig`).
        settings: Shared settings (data directory, Redis URL).
    """

    def __init__(self, config: OptimizeConfig | None = None, settings: Settings | None = None):
        self.config = config or OptimizeConfig()
        self.store = make_store(self.config, settings or Settings())
        #: Whether the store is shared with other processes (ask and tell are atomic
        #: read-modify-writes of the stored study; see the module docstring).
        self.shared = shared.is_shared(self.store)
        self.studies: dict[str, Optimizer] = {}
        # One lock per study, alive while someone holds or waits for it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._registry = asyncio.Lock()
        # The per-task learners live in the same store, as parameters-<task_type> studies.
        c = self.config
        self.learner = FeedbackLearner(
            store=self.store,
            max_task_types=c.max_task_types,
            expire_idle_s=c.task_type_expire_idle_s,
            expire_below=c.task_type_expire_below,
            ask_time_limit_s=c.ask_time_limit_s,
        )

    # ----- locks -------------------------------------------------------------------------------
    def lock_for(self, name: str) -> asyncio.Lock:
        """The lock of the study ``name`` (``parameters-<task_type>`` for a task type)."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def locked(self, names: Sequence[str]) -> AsyncIterator[None]:
        """Hold the locks of every study in ``names``, taken in name order.

        Raises:
            CapacityError: a lock stayed taken for ``lock_wait_s`` (the study is busy with
                other requests; ``retry_after_s`` says when to retry), so no request waits
                without bound behind a queue of others.
        """
        async with AsyncExitStack() as stack:
            for name in sorted(set(names)):
                lock = self.lock_for(name)
                try:
                    await asyncio.wait_for(lock.acquire(), self.config.lock_wait_s)
                except TimeoutError:
                    raise CapacityError(
                        f"study {name!r} is busy with other requests (waited "
                        f"{self.config.lock_wait_s:g} s, [optimize] lock_wait_s); retry shortly",
                        details={"study": name},
                        retry_after_s=1.0,
                    ) from None
                stack.callback(lock.release)
            yield

    # ----- studies ---------------------------------------------------------------------------
    async def save(self, opt: Optimizer) -> None:
        """Persist ``opt`` (nothing with the memory store)."""
        if self.store is not None:
            await asyncio.to_thread(self.store.save, opt)

    async def study(self, name: str) -> Optimizer:
        """The study ``name``, loaded from the store on first use.

        Raises:
            InputError: an invalid name.
            NotFoundError: no such study (or no feedback yet for a ``parameters-`` study).
        """
        check_study_name(name)
        if name.startswith(STUDY_PREFIX):
            # One object per study: the learner's own optimizer, never a second copy.
            task = name[len(STUDY_PREFIX) :]
            opt = self.learner.get(task)
            if opt is None:
                raise NotFoundError(
                    f"study {name!r} does not exist: no feedback for task type {task!r} yet",
                    details={"study": name},
                )
            return opt
        if self.shared:
            try:
                snapshot = await asyncio.to_thread(self.store.read, name)
            except NotFoundError:
                self.studies.pop(name, None)
                raise self._missing(name) from None
            self.studies[name] = snapshot.study
            return snapshot.study
        found = self.studies.get(name)
        if found is None and self.store is not None:
            async with self._registry:  # one load per study, never two copies
                found = self.studies.get(name)
                if found is None and await asyncio.to_thread(self.store.exists, name):
                    found = self.studies[name] = await asyncio.to_thread(self.store.load, name)
        if found is None:
            raise self._missing(name)
        return found

    @staticmethod
    def _missing(name: str) -> NotFoundError:
        return NotFoundError(
            f"study {name!r} does not exist; create it with POST /api/v1/optimize/{name}",
            details={"study": name},
        )

    def _study_names(self) -> set[str]:
        names = set(self.studies)
        if self.store is not None:
            names.update(self.store.names())
        return {n for n in names if not n.startswith(STUDY_PREFIX)}

    async def create(self, name: str, make: Callable[[str], Optimizer]) -> Optimizer:
        """Create the study ``name`` with ``make(name) -> Optimizer`` and persist it.

        Raises:
            InputError: a reserved or invalid name, or a space beyond ``max_dimensions``.
            ConflictError: the study exists.
            CapacityError: ``max_studies`` studies exist.
        """
        name = check_study_name(name)
        if name.startswith(STUDY_PREFIX):
            raise InputError(
                f"study names starting with {STUDY_PREFIX!r} are the per-task studies "
                "of /api/v1/parameters; choose another name",
                details={"field": "study"},
            )
        opt = make(name)
        limit = self.config.max_dimensions
        if opt.space.dim > limit:
            raise InputError(
                f"the space has {opt.space.dim} encoded dimensions (one per real or integer "
                f"parameter, one per categorical choice); at most {limit} are allowed "
                "([optimize] max_dimensions)",
                details={"field": "space"},
            )
        async with self._registry:
            if self.shared:
                # One atomic insert: of two services creating the study, one is refused.
                count = len(await asyncio.to_thread(self._study_names))
                self._check_capacity(count)
                await asyncio.to_thread(self.store.create, opt)
                self.studies[name] = opt
                return opt
            stored = self.store is not None and await asyncio.to_thread(self.store.exists, name)
            if name in self.studies or stored:
                raise ConflictError(f"study {name!r} already exists", details={"study": name})
            count = len(await asyncio.to_thread(self._study_names))
            self._check_capacity(count)
            await self.save(opt)
            self.studies[name] = opt
        return opt

    def _check_capacity(self, count: int) -> None:
        if count >= self.config.max_studies:
            raise CapacityError(
                f"{count} studies exist (max_studies={self.config.max_studies}); delete "
                "one (DELETE /api/v1/optimize/{study}) or reuse it",
                details={"field": "study"},
            )

    async def delete(self, name: str) -> None:
        """Delete the study ``name`` from memory and the store.

        Raises:
            InputError: an invalid name or a task type's study.
            NotFoundError: no such study.
        """
        check_study_name(name)
        if name.startswith(STUDY_PREFIX):
            raise InputError(
                f"{name!r} is a task type's study; delete it with "
                f"DELETE /api/v1/parameters/task-types/{name[len(STUDY_PREFIX) :]}",
                details={"field": "study"},
            )
        async with self.locked([name]), self._registry:
            held = self.studies.pop(name, None) is not None
            stored = self.store is not None and await asyncio.to_thread(self.store.delete, name)
        if not (held or stored):
            raise NotFoundError(f"study {name!r} does not exist", details={"study": name})

    def _check_current(self, name: str, opt: Optimizer) -> None:
        """Refuse to work on ``opt`` if the study was deleted while the caller waited."""
        if name.startswith(STUDY_PREFIX):
            current = self.learner.tasks().get(name[len(STUDY_PREFIX) :])
        else:
            current = self.studies.get(name)
        if current is not opt:
            raise NotFoundError(f"study {name!r} was deleted", details={"study": name})

    async def ask(self, name: str, n: int) -> tuple[list[Trial], dict[str, Any]]:
        """Suggest ``n`` configurations of the study ``name`` within ``ask_time_limit_s``.

        Returns:
            The pending trials and the suggestion's info (``truncated`` when the time bound
            was reached).

        Raises:
            InputError: ``n`` beyond ``max_batch``, or an invalid name.
            NotFoundError: no such study.
        """
        if not 1 <= n <= self.config.max_batch:
            raise InputError(
                f"n={n} must be in [1, {self.config.max_batch}] ([optimize] max_batch)",
                details={"field": "n"},
            )
        if self.shared and not name.startswith(STUDY_PREFIX):
            check_study_name(name)
            async with self.locked([name]):
                try:
                    committed = await asyncio.to_thread(
                        shared.ask,
                        self.store,
                        name,
                        n,
                        time_limit_s=self.config.ask_time_limit_s,
                        retries=self.config.update_retries,
                    )
                except NotFoundError:
                    self.studies.pop(name, None)
                    raise self._missing(name) from None
                self.studies[name] = committed.study
            return committed.value.trials, dict(committed.value.info)
        opt = await self.study(name)
        async with self.locked([name]):
            self._check_current(name, opt)
            limit = self.config.ask_time_limit_s
            trials = await asyncio.to_thread(opt.ask_batch, n, time_limit_s=limit)
            info = dict(opt.last_info)
            await self.save(opt)  # pending trials survive a restart too
        return trials, info

    async def tell(
        self,
        name: str,
        trial: int | Mapping[str, Any],
        outcomes: Mapping[str, float] | None,
        *,
        failed: bool = False,
    ) -> Trial:
        """Report a trial of the study ``name`` (see :meth:`Optimizer.tell`) and persist it."""
        if self.shared and not name.startswith(STUDY_PREFIX):
            check_study_name(name)
            async with self.locked([name]):
                try:
                    committed_tell = await asyncio.to_thread(
                        shared.tell,
                        self.store,
                        name,
                        trial,
                        outcomes,
                        failed=failed,
                        retries=self.config.update_retries,
                    )
                except NotFoundError as exc:
                    if isinstance(exc.details, dict) and "trial_id" in exc.details:
                        raise
                    self.studies.pop(name, None)
                    raise self._missing(name) from None
                self.studies[name] = committed_tell.study
            return committed_tell.value
        opt = await self.study(name)
        async with self.locked([name]):
            self._check_current(name, opt)
            told = opt.tell(trial, outcomes, failed=failed)
            await self.save(opt)
        return told

    # ----- the feedback learner ----------------------------------------------------------------
    async def suggest_parameters(self, task_type: str) -> ParameterSuggestion:
        """The learner's suggestion for a task type (see :meth:`FeedbackLearner.suggest`) and
        the score of its recommended configuration, together within ``ask_time_limit_s``:
        the suggestion gets :data:`SUGGEST_SHARE` of it, the recommendation's model fit what
        is left (past that, the best observed score, marked ``best_truncated``)."""
        self.learner.check_task_type(task_type)
        limit = self.config.ask_time_limit_s

        def run() -> ParameterSuggestion:
            start = time.perf_counter()
            params = self.learner.suggest(task_type, time_limit_s=SUGGEST_SHARE * limit)
            opt = self.learner.get(task_type)
            done = opt.completed if opt is not None else []
            if opt is None or not done:
                return ParameterSuggestion(params, 0, None)
            info = dict(opt.last_info)
            best = opt.best(time_limit_s=limit - (time.perf_counter() - start))
            if best.truncated:
                info["best_truncated"] = True
            expected = best.outcomes.get("score")
            return ParameterSuggestion(params, len(done), expected, info, best.basis)

        async with self.locked([STUDY_PREFIX + task_type]):
            return await asyncio.to_thread(run)

    async def observe(self, records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Learn from execution records (see :meth:`FeedbackLearner.observe`)."""
        tasks = {str(r.get("task_type")) for r in records}
        async with self.locked([STUDY_PREFIX + t for t in tasks]):
            return await asyncio.to_thread(self.learner.observe, records)

    async def forget_task_type(self, task_type: str) -> None:
        """Delete a task type and what it learnt (see :meth:`FeedbackLearner.forget`)."""
        self.learner.check_task_type(task_type)
        async with self.locked([STUDY_PREFIX + task_type]):
            await asyncio.to_thread(self.learner.forget, task_type)
