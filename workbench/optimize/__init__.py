"""Bayesian optimisation of LLM/agent parameters on BoTorch.

``import workbench.optimize`` loads numpy only; torch and BoTorch load on the first
model-based suggestion.

Example::

    from workbench.optimize import Optimizer, Real, Int, Categorical

    opt = Optimizer(
        {"x0": Real(0, 1), "n": Int(1, 8), "m": Categorical(["a", "b"])},
        objectives={"y": "minimize"},
        strategy="default",
        seed=0,
    )
    trial = opt.ask()
    opt.tell(trial, {"y": 0.3})
    params, value = opt.best()
"""

from workbench.optimize.importance import (
    ParameterImportance,
    ResponseSurface,
    StudySurrogate,
    fit_surrogate,
    parameter_importance,
    response_surface,
)
from workbench.optimize.optimizer import Best, Optimizer, Trial
from workbench.optimize.space import (
    Categorical,
    Fixed,
    Int,
    LinearConstraint,
    Real,
    SearchSpace,
)
from workbench.optimize.strategies import STRATEGIES, get_strategy, register_strategy

__all__ = [
    "STRATEGIES",
    "Best",
    "Categorical",
    "Fixed",
    "Int",
    "LinearConstraint",
    "Optimizer",
    "ParameterImportance",
    "Real",
    "ResponseSurface",
    "SearchSpace",
    "StudySurrogate",
    "Trial",
    "fit_surrogate",
    "get_strategy",
    "parameter_importance",
    "register_strategy",
    "response_surface",
]
__all__.sort()
