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
    "ParameterImportance",
    "Real",
    "ResponseSurface",
    "STRATEGIES",
    "SearchSpace",
    "StudySurrogate",
    "Trial",
    "fit_surrogate",
    "get_strategy",
    "parameter_importance",
    "register_strategy",
    "response_surface",
]


def test_exported_members() -> None:
    assert list(api.__all__) == sorted(api.__all__)
    assert sorted(api.__all__) == sorted(PUBLIC)
    for name in api.__all__:
        assert hasattr(api, name)
