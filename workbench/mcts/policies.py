"""Search algorithms as stateless configuration objects, and their name-keyed registry.

An algorithm only holds knobs; :func:`workbench.mcts.search.init` turns it into a
caller-owned :class:`~workbench.mcts.search.SearchState`, and the kernels read the knobs from
the flat ``params`` vector that :meth:`Algorithm.params` builds.

Registered names (``ALGORITHMS``):

``"uct"``
    UCB1 with ``C = sqrt(2)``: descend by UCB1 through nodes that already have
    ``samples_per_action * n_generators`` children, expand the first one that has fewer,
    cycling through the generators (TreeQuest's ``StandardMCTS`` without its softmax prior).
``"thompson"``
    The same tree policy with Thompson sampling of each child's mean score: Beta posteriors
    (platform prior Beta(1, 1)) or Normal-Inverse-chi^2 ones (``dist="gaussian"``).
``"ab-mcts-a"``
    AB-MCTS with node aggregation (Inoue et al. 2025): every expanded node has a GEN arm
    (posterior over its direct children's scores) and a CONT arm (posterior over the scores
    found below its children); Thompson sampling between them decides wider or deeper, and
    CONT picks a child by Thompson sampling over node-level posteriors (own score and every
    score below). Generators are chosen at each GEN decision by Thompson sampling over
    **tree-wide** per-generator posteriors (TreeQuest's ``multiarm_bandit_thompson``).
``"multi-model"``
    AB-MCTS-A with the paper's **per-node** generator choice: at a GEN decision each
    generator's posterior holds only the scores of the children it made under that node.
    Pass ``model_choice="tree"`` to either name to switch.
``"ab-mcts-m"``
    A mixed-model variant: children's mean scores are drawn from a hierarchical Normal model
    (``theta_i ~ N(mu, tau^2)``) fitted per node in closed form by empirical Bayes, so
    siblings share strength and a new child (GEN) is a draw from the fitted population.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from workbench.errors import ConfigError, InputError
from workbench.mcts.types import (
    ALGO_AB_MCTS_A,
    ALGO_AB_MCTS_M,
    ALGO_THOMPSON,
    ALGO_UCT,
    DIST_BETA,
    DIST_GAUSSIAN,
    N_PARAMS,
    P_ALGO,
    P_C,
    P_DIST,
    P_MAX_DEPTH,
    P_MODEL_CHOICE,
    P_N_ACTIONS,
    P_PRIOR_A,
    P_PRIOR_B,
    P_PRIOR_KAPPA,
    P_PRIOR_M,
    P_PRIOR_NU,
    P_PRIOR_TAU2,
    P_SIGMA0,
    P_TAU_MIN,
    P_TWO_PLAYER,
    P_VIRTUAL,
    P_WIDTH,
    UNLIMITED_DEPTH,
)

if TYPE_CHECKING:
    from workbench.mcts.search import SearchState, Trial

__all__ = [
    "ABMCTSA",
    "ABMCTSM",
    "ALGORITHMS",
    "UCT",
    "Algorithm",
    "ThompsonMCTS",
    "get_algorithm",
    "register_algorithm",
]

Dist = Literal["gaussian", "beta"]
ModelChoice = Literal["tree", "node"]
Pending = Literal["virtual-loss", "ignore"]


@dataclass(frozen=True)
class Algorithm:
    """Knobs shared by every algorithm.

    Attributes:
        pending: How trials asked but not yet told (a batch from ``ask_batch``, or the calls
            in flight of ``search_async``) shape the next ask. ``"virtual-loss"`` (default):
            each adds one pessimistic pseudo-observation of value ``virtual_loss`` to every
            posterior on its path until it is told or abandoned, so trials asked together
            spread over the tree instead of piling onto the currently best node.
            ``"ignore"``: every ask sees only told results (independent Thompson draws
            from the same posteriors; asks in one batch may expand the same node, and UCT's
            per-node width may be exceeded by the trials in flight).
        virtual_loss: Value of the pseudo-observation of a pending trial under
            ``pending="virtual-loss"`` (0.0: the worst score).
        dist: Score model: ``"beta"`` or ``"gaussian"`` (Normal-Inverse-chi^2). Either
            way scores lie in [0, 1] (``tell`` refuses others): AB-MCTS-A's exact fast
            sampler bounds its leaf children's posteriors over that range.
        prior_mean, prior_kappa, prior_nu, prior_tau2: Normal-Inverse-chi^2 prior.
        prior_alpha, prior_beta: Beta prior.
    """

    name: str = dataclasses.field(default="", init=False)
    _code: int = dataclasses.field(default=-1, init=False, repr=False)
    pending: Pending = "virtual-loss"
    virtual_loss: float = 0.0
    dist: Dist = "gaussian"
    prior_mean: float = 0.0
    prior_kappa: float = 1.0
    prior_nu: float = 1.0
    prior_tau2: float = 0.1
    prior_alpha: float = 0.5
    prior_beta: float = 0.5

    def __post_init__(self) -> None:
        if self.dist not in ("gaussian", "beta"):
            raise ConfigError(f"dist={self.dist!r}: use 'gaussian' or 'beta'")
        for key in ("prior_kappa", "prior_nu", "prior_tau2", "prior_alpha", "prior_beta"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{key}={value!r}: must be a positive finite number")
        if self.pending not in ("virtual-loss", "ignore"):
            raise ConfigError(f"pending={self.pending!r}: use 'virtual-loss' or 'ignore'")
        if not math.isfinite(self.virtual_loss):
            raise ConfigError(f"virtual_loss={self.virtual_loss!r}: must be finite")

    @property
    def per_node_actions(self) -> bool:
        """Whether the tree must keep per-node per-generator statistics."""
        return False

    def params(
        self, n_actions: int, *, max_depth: int | None = None, two_player: bool = False
    ) -> np.ndarray:
        """The flat ``float64[N_PARAMS]`` vector the kernels read."""
        p = np.zeros(N_PARAMS, dtype=np.float64)
        p[P_ALGO] = self._code
        p[P_DIST] = DIST_BETA if self.dist == "beta" else DIST_GAUSSIAN
        p[P_MAX_DEPTH] = UNLIMITED_DEPTH if max_depth is None else max_depth
        p[P_VIRTUAL] = self.virtual_loss
        p[P_N_ACTIONS] = n_actions
        p[P_PRIOR_M] = self.prior_mean
        p[P_PRIOR_KAPPA] = self.prior_kappa
        p[P_PRIOR_NU] = self.prior_nu
        p[P_PRIOR_TAU2] = self.prior_tau2
        p[P_PRIOR_A] = self.prior_alpha
        p[P_PRIOR_B] = self.prior_beta
        p[P_TWO_PLAYER] = 1.0 if two_player else 0.0
        p[P_WIDTH] = 1.0
        return p

    # TreeQuest-shaped verbs: the algorithm holds no state; the caller owns what they return.
    def init_tree(
        self, actions: list[str] | tuple[str, ...], *, seed: int = 0, max_depth: int | None = None
    ) -> SearchState:
        """A fresh caller-owned search state (see :func:`workbench.mcts.search.init`)."""
        from workbench.mcts.search import init

        return init(actions, algorithm=self, seed=seed, max_depth=max_depth)

    def step(self, state: SearchState, generate_fns: Mapping[str, Callable[[Any], Any]]) -> int:
        """Ask, generate and tell once (always in place); returns the new node's id."""
        from workbench.mcts.search import step

        return step(state, generate_fns)

    def ask(self, state: SearchState) -> Trial:
        from workbench.mcts.search import ask

        return ask(state)

    def ask_batch(self, state: SearchState, batch_size: int) -> list[Trial]:
        from workbench.mcts.search import ask_batch

        return ask_batch(state, batch_size)

    def tell(self, state: SearchState, trial: Trial | int, result: tuple[Any, float]) -> int:
        from workbench.mcts.search import tell

        return tell(state, trial, result)

    def to_dict(self) -> dict[str, Any]:
        """Name and knobs (JSON-ready; :func:`get_algorithm` rebuilds it)."""
        out = dataclasses.asdict(self)
        out.pop("_code", None)
        return out


@dataclass(frozen=True)
class UCT(Algorithm):
    """UCB1 tree policy (``exploration`` is C; the platform default is sqrt(2)).

    Attributes:
        exploration: UCB1 exploration constant C.
        samples_per_action: Children each node gets per generator before the search
            descends through it.
    """

    exploration: float = math.sqrt(2.0)
    samples_per_action: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "name", "uct")
        object.__setattr__(self, "_code", ALGO_UCT)
        if not (math.isfinite(self.exploration) and self.exploration >= 0):
            raise ConfigError(f"exploration={self.exploration!r}: must be >= 0")
        if self.samples_per_action < 1:
            raise ConfigError(f"samples_per_action={self.samples_per_action!r}: must be >= 1")

    def params(
        self, n_actions: int, *, max_depth: int | None = None, two_player: bool = False
    ) -> np.ndarray:
        p = super().params(n_actions, max_depth=max_depth, two_player=two_player)
        p[P_C] = self.exploration
        p[P_WIDTH] = self.samples_per_action * n_actions
        return p


@dataclass(frozen=True)
class ThompsonMCTS(UCT):
    """Thompson-sampling tree policy; Beta(1, 1) prior by default (the platform's)."""

    dist: Dist = "beta"
    prior_alpha: float = 1.0
    prior_beta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "name", "thompson")
        object.__setattr__(self, "_code", ALGO_THOMPSON)


@dataclass(frozen=True)
class ABMCTSA(Algorithm):
    """AB-MCTS-A (see the module docstring). Priors default to TreeQuest's.

    Attributes:
        model_choice: ``"tree"``: generators chosen from tree-wide posteriors (TreeQuest);
            ``"node"``: from the node's own children (the paper's multi-LLM AB-MCTS).
    """

    model_choice: ModelChoice = "tree"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model_choice not in ("tree", "node"):
            raise ConfigError(f"model_choice={self.model_choice!r}: use 'tree' or 'node'")
        object.__setattr__(self, "name", "ab-mcts-a")
        object.__setattr__(self, "_code", ALGO_AB_MCTS_A)

    @property
    def per_node_actions(self) -> bool:
        return self.model_choice == "node"

    def params(
        self, n_actions: int, *, max_depth: int | None = None, two_player: bool = False
    ) -> np.ndarray:
        p = super().params(n_actions, max_depth=max_depth, two_player=two_player)
        p[P_MODEL_CHOICE] = 1.0 if self.model_choice == "node" else 0.0
        return p


@dataclass(frozen=True)
class ABMCTSM(ABMCTSA):
    """AB-MCTS-M-style search with a closed-form hierarchical model (see module docstring).

    Attributes:
        prior_mean: Prior mean of a node's children's mean scores.
        sigma0: Prior within-child variance of scores (one pseudo degree of freedom).
        tau_min: Floor of the between-sibling standard deviation (keeps GEN alive). GEN
            wins only when a fresh draw of the population beats every child's draw, so the
            spread of that population decides how often the search goes wider. The
            method-of-moments spread of a node's children shrinks as refinements pull their
            subtree means together, and with a floor of 0.05 AB-MCTS-M stopped going wider
            where only fresh answers pay (0.17 behind repeated sampling at mix 0 of notebook
            01's check (d)); 0.3, about the spread of the scores of fresh answers on that
            task family, keeps it level with repeated sampling there and ahead of both
            baselines elsewhere.
    """

    prior_mean: float = 0.5
    sigma0: float = 0.05
    tau_min: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "name", "ab-mcts-m")
        object.__setattr__(self, "_code", ALGO_AB_MCTS_M)
        if not (self.sigma0 > 0 and self.tau_min > 0):
            raise ConfigError("sigma0 and tau_min: must be positive")

    def params(
        self, n_actions: int, *, max_depth: int | None = None, two_player: bool = False
    ) -> np.ndarray:
        p = super().params(n_actions, max_depth=max_depth, two_player=two_player)
        p[P_SIGMA0] = self.sigma0
        p[P_TAU_MIN] = self.tau_min
        return p


_REGISTRY: dict[str, Callable[..., Algorithm]] = {}
#: Read-only view of the registered algorithm factories, by name.
ALGORITHMS: Mapping[str, Callable[..., Algorithm]] = MappingProxyType(_REGISTRY)


def register_algorithm(name: str, factory: Callable[..., Algorithm]) -> None:
    """Register ``factory(**knobs) -> Algorithm`` under ``name``; duplicates are refused."""
    if name in _REGISTRY:
        raise ConfigError(f"algorithm {name!r} is already registered")
    _REGISTRY[name] = factory


def get_algorithm(algorithm: str | Algorithm, **knobs: Any) -> Algorithm:
    """An algorithm by name (with knobs) or the object itself (knobs replace its fields)."""
    if isinstance(algorithm, Algorithm):
        return dataclasses.replace(algorithm, **knobs) if knobs else algorithm
    factory = _REGISTRY.get(algorithm)
    if factory is None:
        raise InputError(
            f"algorithm={algorithm!r} is unknown; known algorithms: {', '.join(sorted(_REGISTRY))}"
        )
    try:
        return factory(**knobs)
    except TypeError as exc:
        raise InputError(f"algorithm {algorithm!r}: {exc}") from None


def _multi_model(**knobs: Any) -> ABMCTSA:
    knobs.setdefault("model_choice", "node")
    return ABMCTSA(**knobs)


register_algorithm("uct", UCT)
register_algorithm("thompson", ThompsonMCTS)
register_algorithm("ab-mcts-a", ABMCTSA)
register_algorithm("multi-model", _multi_model)
register_algorithm("ab-mcts-m", ABMCTSM)
