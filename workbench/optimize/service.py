"""The optimizer as the HTTP service runs it: named studies, the per-task feedback learners,
and where both persist.

:class:`OptimizeService` is built once from an :class:`OptimizeConfig` (the ``[optimize]``
settings). It keeps the ask/tell studies by name and the
:class:`~workbench.optimize.feedback.FeedbackLearner` behind ``/api/v1/parameters``, whose
per-task optimizers are the studies ``parameters-<task_type>`` of the same store, so a
restarted service resumes both where they were (and proposes the same next point).

Model work runs in a worker thread under the service's lock, so the event loop keeps
answering while a GP is fitted. With ``workbench serve --workers K`` one worker owns this
service and the others forward to it (:mod:`workbench.api.workers`), so every store kind,
``memory`` included, gives every worker the same studies.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from workbench.config import Settings, from_section
from workbench.errors import ConfigError, ConflictError, InputError, NotFoundError
from workbench.optimize.feedback import STUDY_PREFIX, FeedbackLearner
from workbench.optimize.optimizer import Optimizer
from workbench.optimize.storage import check_study_name

__all__ = ["STORES", "OptimizeConfig", "OptimizeService"]

#: Where studies persist: ``file`` (``<data_dir>/optimize/studies/<name>.json``, written
#: atomically), ``redis`` (``optimize:study:<name>`` through the Redis adapter) or
#: ``memory`` (nothing survives a restart).
STORES = ("file", "redis", "memory")


@dataclass(frozen=True)
class OptimizeConfig:
    """Knobs of the optimizer service (``[optimize]`` in workbench.toml).

    Attributes:
        store: Where studies persist, one of :data:`STORES`.
    """

    store: str = "file"

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", str(self.store).lower())
        if self.store not in STORES:
            raise ConfigError(
                f"invalid setting optimize.store={self.store!r}: use 'file', 'redis' or 'memory'",
                details={"key": "optimize.store"},
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> OptimizeConfig:
        """Build from the settings' ``[optimize]`` section, refusing unknown keys."""
        return from_section(cls, settings.section("optimize"), "optimize")


def make_store(config: OptimizeConfig, settings: Settings) -> Any:
    """The study store the config names (``None`` for memory)."""
    if config.store == "file":
        from workbench.optimize.storage import FileStudyStore

        return FileStudyStore(settings.data_dir / "optimize" / "studies")
    if config.store == "redis":
        from workbench.optimize.storage import RedisStudyStore
        from workbench.redis_adapter import RedisAdapter

        return RedisStudyStore(RedisAdapter.from_settings(settings))
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
        self.studies: dict[str, Optimizer] = {}
        self.lock = asyncio.Lock()
        # The per-task learners live in the same store, as parameters-<task_type> studies.
        self.learner = FeedbackLearner(store=self.store)

    async def save(self, opt: Optimizer) -> None:
        """Persist ``opt`` (nothing with the memory store)."""
        if self.store is not None:
            await asyncio.to_thread(self.store.save, opt)

    async def study(self, name: str) -> Optimizer:
        """The study ``name``, loaded from the store on first use.

        Raises:
            NotFoundError: no such study (or no feedback yet for a ``parameters-`` study).
        """
        if name.startswith(STUDY_PREFIX):
            # One object per study: the learner's own optimizer, never a second copy.
            task = name[len(STUDY_PREFIX) :]
            opt = self.learner.optimizers.get(task)
            if opt is None:
                raise NotFoundError(
                    f"study {name!r} does not exist: no feedback for task type {task!r} yet",
                    details={"study": name},
                )
            return opt
        found = self.studies.get(name)
        if found is None and self.store is not None:
            check_study_name(name)
            if await asyncio.to_thread(self.store.exists, name):
                found = self.studies[name] = await asyncio.to_thread(self.store.load, name)
        if found is None:
            raise NotFoundError(
                f"study {name!r} does not exist; create it with POST /api/v1/optimize/{name}",
                details={"study": name},
            )
        return found

    async def create(self, name: str, make: Any) -> Optimizer:
        """Create the study ``name`` with ``make(name) -> Optimizer`` and persist it.

        Raises:
            InputError: a reserved or invalid name.
            ConflictError: the study exists.
        """
        name = check_study_name(name)
        if name.startswith(STUDY_PREFIX):
            raise InputError(
                f"study names starting with {STUDY_PREFIX!r} are the per-task studies "
                "of /api/v1/parameters; choose another name",
                details={"field": "study"},
            )
        async with self.lock:
            stored = self.store is not None and await asyncio.to_thread(self.store.exists, name)
            if name in self.studies or stored:
                raise ConflictError(f"study {name!r} already exists", details={"study": name})
            opt: Optimizer = make(name)
            await self.save(opt)
            self.studies[name] = opt
        return opt
