"""Test problems with known optima: Branin, Hartmann6, Levy, Ackley, Rosenbrock,
Styblinski-Tang (and a mixed-integer/categorical variant of it), BraninCurrin and an
LLM-parameter simulator over a mixed space.

Each problem is a :class:`Problem`: a search space, objective directions, ``__call__(params)
-> outcomes`` and what is known of its optimum. Pure numpy, so benchmarks of other tools
(Optuna, Ax) evaluate the very same functions.

The LLM simulator (:class:`LLMSimulator`) mimics how sampling parameters of an LLM call move
quality, latency and cost: a model size and a prompt template (categorical), temperature and
top-p (continuous) and a token budget (integer, log scale). Its ``score`` objective has one
best configuration, found once at construction by a dense search, so a test can check that an
optimiser finds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import InputError
from workbench.optimize.space import Categorical, Int, Real, SearchSpace

__all__ = [
    "PROBLEMS",
    "LLMSimulator",
    "Problem",
    "ackley",
    "branin",
    "branin_currin",
    "get_problem",
    "hartmann6",
    "levy",
    "llm_best_within",
    "llm_problem",
    "rosenbrock",
    "styblinski_tang",
    "styblinski_tang_mixed",
]


@dataclass(frozen=True)
class Problem:
    """A benchmark problem.

    Attributes:
        name: Registry name.
        space: The search space.
        objectives: Objective name -> ``"minimize"`` or ``"maximize"``.
        function: ``params -> {objective: value, ...}``.
        optimum: Best objective value (single objective) or ``None``.
        optimal_params: A configuration reaching ``optimum`` (when known).
        ref_point: Hypervolume reference point in the objectives' own units (multi-objective).
        max_hypervolume: Hypervolume of the true Pareto front w.r.t. ``ref_point``.
    """

    name: str
    space: SearchSpace
    objectives: Mapping[str, str]
    function: Callable[[Mapping[str, Any]], dict[str, float]]
    optimum: float | None = None
    optimal_params: Mapping[str, Any] | None = None
    ref_point: Mapping[str, float] | None = None
    max_hypervolume: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, params: Mapping[str, Any]) -> dict[str, float]:
        return self.function(params)

    def regret(self, value: float) -> float:
        """Distance of ``value`` from the optimum (single objective)."""
        if self.optimum is None:
            raise InputError(f"problem {self.name!r} has no single optimum")
        direction = next(iter(self.objectives.values()))
        return value - self.optimum if direction == "minimize" else self.optimum - value


# ----- Branin ------------------------------------------------------------------------------------
def _branin_xy(x1: float, x2: float) -> float:
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


def branin() -> Problem:
    """Branin on ``[-5, 10] x [0, 15]``, minimum 0.397887 at three points."""
    space = SearchSpace({"x1": Real(-5, 10), "x2": Real(0, 15)})
    return Problem(
        "branin",
        space,
        {"y": "minimize"},
        lambda p: {"y": _branin_xy(float(p["x1"]), float(p["x2"]))},
        optimum=0.39788735772973816,
        optimal_params={"x1": math.pi, "x2": 2.275},
    )


# ----- Hartmann6 ----------------------------------------------------------------------------------
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H6_XOPT = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]


def hartmann6_array(x: np.ndarray) -> np.ndarray:
    """Hartmann6 on rows of ``x`` (shape ``(n, 6)``), values of shape ``(n,)``."""
    x = np.atleast_2d(x)
    inner = np.sum(_H6_A[None] * (x[:, None, :] - _H6_P[None]) ** 2, axis=-1)
    return -np.sum(_H6_ALPHA[None] * np.exp(-inner), axis=-1)


def hartmann6() -> Problem:
    """Hartmann6 on ``[0, 1]^6``, minimum -3.32237."""
    names = [f"x{i}" for i in range(6)]
    space = SearchSpace({n: Real(0, 1) for n in names})

    def f(p: Mapping[str, Any]) -> dict[str, float]:
        return {"y": float(hartmann6_array(np.array([[float(p[n]) for n in names]]))[0])}

    return Problem(
        "hartmann6",
        space,
        {"y": "minimize"},
        f,
        optimum=-3.322368011415515,
        optimal_params=dict(zip(names, _H6_XOPT, strict=True)),
    )


# ----- BraninCurrin -------------------------------------------------------------------------------
def _currin(x1: float, x2: float) -> float:
    x2 = max(x2, 1e-12)
    factor = 1 - math.exp(-1 / (2 * x2))
    num = 2300 * x1**3 + 1900 * x1**2 + 2092 * x1 + 60
    den = 100 * x1**3 + 500 * x1**2 + 4 * x1 + 20
    return factor * num / den


def branin_currin() -> Problem:
    """Two objectives on ``[0, 1]^2``, both minimised: a rescaled Branin and Currin.

    Reference point (18, 6) and the Pareto front's hypervolume 59.36 follow the convention
    of BoTorch's test function, so results compare with published figures.
    """
    space = SearchSpace({"x1": Real(0, 1), "x2": Real(0, 1)})

    def f(p: Mapping[str, Any]) -> dict[str, float]:
        x1, x2 = float(p["x1"]), float(p["x2"])
        return {"branin": _branin_xy(15 * x1 - 5, 15 * x2), "currin": _currin(x1, x2)}

    return Problem(
        "branincurrin",
        space,
        {"branin": "minimize", "currin": "minimize"},
        f,
        ref_point={"branin": 18.0, "currin": 6.0},
        max_hypervolume=59.36011874867746,
    )


# ----- LLM-parameter simulator ----------------------------------------------------------------
_MODEL = {  # quality base, best temperature, ms per output token, $ per 1k output tokens
    "small": (0.55, 0.55, 6.0, 0.0004),
    "medium": (0.72, 0.40, 14.0, 0.0020),
    "large": (0.80, 0.30, 35.0, 0.0150),
}
_TEMPLATE = {"plain": (0.0, 1.0), "few_shot": (0.05, 1.2), "chain_of_thought": (0.09, 2.2)}


class LLMSimulator:
    """A deterministic (or noisy) stand-in for LLM executions over a mixed parameter space.

    Outcomes of one call: ``quality`` in [0, 1], ``latency_ms``, ``cost`` (dollars),
    ``success`` (1.0 or 0.0: very small token budgets truncate the answer) and ``score`` =
    quality - latency_weight * latency_s - cost_weight * cost, the objective maximised.

    Args:
        task_type: Shifts the needed answer length and the best temperature (creative tasks
            like higher temperatures, code and factual tasks lower).
        noise: Standard deviation of Gaussian noise on quality (0 = deterministic).
        latency_weight: Score lost per second of latency.
        cost_weight: Score lost per dollar.
    """

    space = SearchSpace(
        {
            "model": Categorical(["small", "medium", "large"]),
            "prompt_template": Categorical(["plain", "few_shot", "chain_of_thought"]),
            "temperature": Real(0.0, 1.5),
            "top_p": Real(0.1, 1.0),
            "max_tokens": Int(64, 4096, log=True),
        }
    )

    def __init__(
        self,
        task_type: str = "reasoning",
        *,
        noise: float = 0.0,
        latency_weight: float = 0.02,
        cost_weight: float = 10.0,
    ) -> None:
        self.task_type = task_type
        self.noise = float(noise)
        self.latency_weight = float(latency_weight)
        self.cost_weight = float(cost_weight)
        creative = any(k in task_type for k in ("creative", "brainstorm", "story", "chat"))
        precise = any(k in task_type for k in ("code", "factual", "translation", "classif"))
        self._t_shift = 0.35 if creative else (-0.15 if precise else 0.0)
        self._need = 250.0 if "factual" in task_type or "classif" in task_type else 420.0
        self._best: tuple[dict[str, Any], float] | None = None

    def evaluate(
        self, params: Mapping[str, Any], rng: np.random.Generator | None = None
    ) -> dict[str, float]:
        """Outcomes of one simulated call with ``params``."""
        base, t_best, ms_tok, usd_k = _MODEL[str(params["model"])]
        bonus, length = _TEMPLATE[str(params["prompt_template"])]
        t = float(params["temperature"])
        top_p = float(params["top_p"])
        max_tokens = float(params["max_tokens"])
        t_best = min(max(t_best + self._t_shift, 0.0), 1.5)
        # Larger models gain more from reasoning templates.
        synergy = 0.04 if (params["model"] != "small" and bonus > 0.08) else 0.0
        need = self._need * length
        quality = base + bonus + synergy
        quality -= 0.35 * (t - t_best) ** 2 + 0.25 * (top_p - 0.85) ** 2
        ratio = max_tokens / need
        if ratio < 1:  # truncated answer
            quality -= 0.45 * math.log(1 / ratio)
        else:  # a generous budget invites rambling
            quality -= 0.03 * math.log(ratio)
        if rng is not None and self.noise > 0:
            quality += float(rng.normal(0.0, self.noise))
        quality = min(max(quality, 0.0), 1.0)
        tokens = min(max_tokens, need * (1.0 + 0.3 * t))
        latency_ms = 180.0 + ms_tok * tokens
        cost = usd_k * tokens / 1000.0
        success = 1.0 if ratio >= 0.25 else 0.0
        score = quality - self.latency_weight * latency_ms / 1000 - self.cost_weight * cost
        return {
            "score": float(score),
            "quality": float(quality),
            "latency_ms": float(latency_ms),
            "cost": float(cost),
            "success": success,
        }

    def __call__(self, params: Mapping[str, Any]) -> dict[str, float]:
        return self.evaluate(params)

    def best(self) -> tuple[dict[str, Any], float]:
        """The best configuration and its score (a dense search, cached)."""
        if self._best is None:
            best_params: dict[str, Any] = {}
            best = -math.inf
            temps = np.linspace(0.0, 1.5, 151)
            tops = np.linspace(0.1, 1.0, 91)
            tokens = np.unique(np.round(np.geomspace(64, 4096, 400)).astype(int))
            for model in _MODEL:
                for tmpl in _TEMPLATE:
                    base = {"model": model, "prompt_template": tmpl}
                    # The objective separates in (temperature, top_p) and max_tokens given
                    # the categoricals up to the token term, so search each axis in turn.
                    fixed = {**base, "temperature": 0.5, "top_p": 0.85}
                    tok = max(
                        tokens, key=lambda m: self.evaluate({**fixed, "max_tokens": m})["score"]
                    )
                    cfg = {**base, "max_tokens": int(tok)}
                    for _ in range(3):
                        t_opt = max(
                            temps,
                            key=lambda v: self.evaluate({**cfg, "temperature": v, "top_p": 0.85})[
                                "score"
                            ],
                        )
                        cfg["temperature"] = float(t_opt)
                        p_opt = max(tops, key=lambda v: self.evaluate({**cfg, "top_p": v})["score"])
                        cfg["top_p"] = float(p_opt)
                        tok = max(
                            tokens, key=lambda m: self.evaluate({**cfg, "max_tokens": m})["score"]
                        )
                        cfg["max_tokens"] = int(tok)
                    value = self.evaluate(cfg)["score"]
                    if value > best:
                        best, best_params = value, cfg
            self._best = (best_params, best)
        return dict(self._best[0]), self._best[1]


def llm_best_within(
    sim: LLMSimulator, space: SearchSpace, fixed: Mapping[str, Any]
) -> tuple[dict[str, Any], float]:
    """The best noise-free ``score`` of ``sim`` over the ``temperature``, ``top_p`` and
    ``max_tokens`` ranges of ``space`` with ``model`` and ``prompt_template`` taken from
    ``fixed`` (how the feedback learner's space meets the simulator), by a dense grid:
    121 temperatures by every 1/200 of the log token range, at each temperature's best top-p
    (the score is separable in top-p, which is best at 0.85 or the nearest bound).
    """
    bounds = {}
    for n in ("temperature", "top_p", "max_tokens"):
        p = space.params[n]
        if not isinstance(p, (Real, Int)):
            raise InputError(f"parameter {n!r} of the space must be Real or Int")
        bounds[n] = (float(p.low), float(p.high))
    top_p = min(max(0.85, bounds["top_p"][0]), bounds["top_p"][1])
    temps = np.linspace(*bounds["temperature"], 121)
    lo, hi = bounds["max_tokens"]
    tokens = np.unique(np.round(np.geomspace(lo, hi, 201)).astype(int))
    best: tuple[dict[str, Any], float] = ({}, -math.inf)
    for t in temps:
        for k in tokens:
            cfg = {**fixed, "temperature": float(t), "top_p": top_p, "max_tokens": int(k)}
            value = sim.evaluate(cfg)["score"]
            if value > best[1]:
                best = (cfg, value)
    return dict(best[0]), best[1]


def llm_problem(task_type: str = "reasoning") -> Problem:
    """The LLM simulator as a single-objective problem (maximise ``score``)."""
    sim = LLMSimulator(task_type)
    params, value = sim.best()
    return Problem(
        "llm",
        sim.space,
        {"score": "maximize"},
        lambda p: {"score": sim.evaluate(p)["score"]},
        optimum=value,
        optimal_params=params,
        # A run whose recommendation has a regret above this is stuck: the best configuration
        # with another prompt template ("plain") is 0.027 short of the optimum.
        extra={"simulator": sim, "stuck_regret": 0.03},
    )


# ----- Levy, Ackley, Rosenbrock, Styblinski-Tang (any dimension) ---------------------------------
def _vector_problem(
    name: str,
    dim: int,
    bounds: tuple[float, float],
    fn: Callable[[np.ndarray], float],
    optimum: float,
    x_opt: float,
) -> Problem:
    """A minimisation problem on ``bounds^dim`` over parameters ``x0 .. x{dim-1}``, whose
    minimum ``optimum`` is at every coordinate equal to ``x_opt``."""
    if not 1 <= dim <= 64:
        raise InputError(f"{name}: dim={dim} must be in [1, 64]", details={"field": "dim"})
    names = [f"x{i}" for i in range(dim)]
    space = SearchSpace({n: Real(*bounds) for n in names})

    def f(p: Mapping[str, Any]) -> dict[str, float]:
        return {"y": float(fn(np.array([float(p[n]) for n in names])))}

    return Problem(
        f"{name}{dim}",
        space,
        {"y": "minimize"},
        f,
        optimum=optimum,
        optimal_params=dict.fromkeys(names, x_opt),
    )


def _levy_array(x: np.ndarray) -> float:
    w = 1 + (x - 1) / 4
    head = np.sin(math.pi * w[0]) ** 2
    body = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2))
    tail = (w[-1] - 1) ** 2 * (1 + np.sin(2 * math.pi * w[-1]) ** 2)
    return float(head + body + tail)


def levy(dim: int = 4) -> Problem:
    """Levy on ``[-10, 10]^dim``, minimum 0 at ``(1, ..., 1)``; many local minima."""
    return _vector_problem("levy", dim, (-10.0, 10.0), _levy_array, 0.0, 1.0)


def _ackley_array(x: np.ndarray) -> float:
    d = len(x)
    a = -20 * math.exp(-0.2 * math.sqrt(float(np.sum(x**2)) / d))
    b = -math.exp(float(np.sum(np.cos(2 * math.pi * x))) / d)
    return a + b + 20 + math.e


def ackley(dim: int = 5) -> Problem:
    """Ackley on ``[-32.768, 32.768]^dim``, minimum 0 at the origin: a nearly flat outer
    region, local minima near every integer point, one narrow central basin."""
    return _vector_problem("ackley", dim, (-32.768, 32.768), _ackley_array, 0.0, 0.0)


def _rosenbrock_array(x: np.ndarray) -> float:
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (x[:-1] - 1) ** 2))


def rosenbrock(dim: int = 4) -> Problem:
    """Rosenbrock on ``[-5, 10]^dim`` (``dim >= 2``), minimum 0 at ``(1, ..., 1)`` at the end
    of a long, curved, flat valley."""
    if dim < 2:
        raise InputError(f"rosenbrock: dim={dim} must be >= 2", details={"field": "dim"})
    return _vector_problem("rosenbrock", dim, (-5.0, 10.0), _rosenbrock_array, 0.0, 1.0)


#: Minimiser and minimum of Styblinski-Tang's one-dimensional term ``(x^4 - 16 x^2 + 5 x) / 2``
#: (the negative root of ``4 x^3 - 32 x + 5``); the other local minimum, at 2.7468, is
#: -25.0294, so each coordinate in the wrong basin costs 14.14.
ST_X_OPT = -2.903534027771178
ST_MIN_PER_DIM = -39.16616570377142


def _st_terms(x: np.ndarray) -> np.ndarray:
    return 0.5 * (x**4 - 16 * x**2 + 5 * x)


def styblinski_tang(dim: int = 8) -> Problem:
    """Styblinski-Tang on ``[-5, 5]^dim``, minimum ``-39.16617 * dim`` at every coordinate
    -2.903534; ``2^dim`` basins, one per choice of sign of each coordinate."""
    return _vector_problem(
        "styblinskitang",
        dim,
        (-5.0, 5.0),
        lambda x: float(np.sum(_st_terms(x))),
        ST_MIN_PER_DIM * dim,
        ST_X_OPT,
    )


#: Per choice of ``scale`` of :func:`styblinski_tang_mixed`: weight of the integer terms and
#: an offset, so the choice with the deepest integer terms is also the most penalised one.
_MIXED_SCALE = {"a": (1.0, 10.0), "b": (0.5, 0.0), "c": (1.5, 20.0)}


def styblinski_tang_mixed() -> Problem:
    """A mixed-integer/categorical Styblinski-Tang: three real coordinates ``x0..x2`` in
    ``[-5, 5]``, two integers ``n0, n1`` in ``[-5, 5]`` and a categorical ``scale`` in
    ``{a, b, c}`` that weights the integer terms and adds an offset.

    ``y = ST(x) + w(scale) * ST(n) + offset(scale)``, minimised. The integer terms are
    smallest at -3 (-39.0 each), so the minimum is ``3 * -39.16617 + 1.5 * 2 * -39 + 20 =
    -214.4985`` with ``scale = c``; the best with ``a`` is 29.0 worse, with ``b`` 58.0.
    """
    reals = ["x0", "x1", "x2"]
    ints = ["n0", "n1"]
    space = SearchSpace(
        {
            **{n: Real(-5.0, 5.0) for n in reals},
            **{n: Int(-5, 5) for n in ints},
            "scale": Categorical(list(_MIXED_SCALE)),
        }
    )

    def f(p: Mapping[str, Any]) -> dict[str, float]:
        weight, offset = _MIXED_SCALE[str(p["scale"])]
        x = np.array([float(p[n]) for n in reals])
        k = np.array([float(p[n]) for n in ints])
        return {"y": float(np.sum(_st_terms(x)) + weight * np.sum(_st_terms(k)) + offset)}

    optimal: dict[str, Any] = {**dict.fromkeys(reals, ST_X_OPT), "n0": -3, "n1": -3, "scale": "c"}
    return Problem(
        "styblinskitang_mixed",
        space,
        {"y": "minimize"},
        f,
        optimum=3 * ST_MIN_PER_DIM + 1.5 * 2 * -39.0 + 20.0,
        optimal_params=optimal,
    )


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "ackley5": ackley,
    "branin": branin,
    "branincurrin": branin_currin,
    "hartmann6": hartmann6,
    "levy4": levy,
    "llm": llm_problem,
    "rosenbrock4": rosenbrock,
    "styblinskitang8": styblinski_tang,
    "styblinskitang_mixed": styblinski_tang_mixed,
}


def get_problem(name: str) -> Problem:
    """A problem by registry name."""
    try:
        return PROBLEMS[name.lower()]()
    except KeyError:
        raise InputError(
            f"unknown problem {name!r}; known problems: {', '.join(sorted(PROBLEMS))}"
        ) from None
