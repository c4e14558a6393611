"""The public surface of workbench.optimize, pinned."""

from __future__ import annotations

import workbench.optimize as api

PUBLIC = [
    "Best",
    "Categorical",
    "Fixed",
    "Int",
    "LinearConstraint",
    "Optimizer",
    "Real",
    "STRATEGIES",
    "SearchSpace",
    "Trial",
    "get_strategy",
    "register_strategy",
]


def test_exported_members() -> None:
    assert list(api.__all__) == sorted(api.__all__)
    assert sorted(api.__all__) == sorted(PUBLIC)
    for name in api.__all__:
        assert hasattr(api, name)
