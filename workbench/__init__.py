"""workbench: the compute-heavy services of an AI orchestration platform, built, measured and
validated in one place.

Subsystems live in their own packages and are imported on demand, so ``import workbench``
stays light (numpy, numba, torch and friends load only when a subsystem needs them):

- :mod:`workbench.mcts`: adaptive-branching Monte Carlo tree search and agent orchestration;
- :mod:`workbench.optimize`: Bayesian optimisation of LLM/agent parameters on BoTorch;
- :mod:`workbench.analytics`: ingestion and statistics of execution records;
- :mod:`workbench.router`: an HTTP router in front of LLM backends;
- :mod:`workbench.cache`: Redis cache with an in-memory fallback;
- :mod:`workbench.gpu`: GPU monitors and a VRAM allocator.
"""

from __future__ import annotations

from workbench.config import Settings, load_settings
from workbench.errors import (
    BackendUnavailable,
    CapacityError,
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDenied,
    RateLimited,
    StorageFormatError,
    WaitTimeout,
    WorkbenchError,
    WorkbenchWarning,
)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "CapacityError",
    "ConfigError",
    "ConflictError",
    "InputError",
    "NotFoundError",
    "PermissionDenied",
    "RateLimited",
    "Settings",
    "StorageFormatError",
    "WaitTimeout",
    "WorkbenchError",
    "WorkbenchWarning",
    "__version__",
    "load_settings",
]
