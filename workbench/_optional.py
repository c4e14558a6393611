"""Import optional dependencies with an error that names the extra to install.

``import workbench`` works with only the core dependencies. Code that needs an extra calls
:func:`require` at use time, never at import time of a core module.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "available", "require"]

#: Which extra of ``pyproject.toml`` provides each optional top-level module.
EXTRAS: dict[str, str] = {
    "torch": "optimize",
    "botorch": "optimize",
    "gpytorch": "optimize",
    "pynvml": "gpu",
    "aiohttp": "service",
    "pydantic": "service",
    "nbval": "notebooks",
    "treequest": "dev",
    "optuna": "dev",
    "hypothesis": "dev",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra."""


def available(module: str) -> bool:
    """Return whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, *, purpose: str = "") -> ModuleType:
    """Import and return ``module`` or raise :class:`MissingExtraError` naming the extra.

    Args:
        module: Importable module name, e.g. ``"botorch"``.
        purpose: What the caller wanted it for, shown in the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = EXTRAS.get(top, "all")
        what = f" for {purpose}" if purpose else ""
        raise MissingExtraError(
            f"{module!r} is needed{what} but is not installed; "
            f"install it with: pip install 'workbench[{extra}]'"
        ) from exc
