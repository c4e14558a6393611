"""Gaussian-process surrogates with warm-started hyperparameters.

The surrogate is BoTorch's ``SingleTaskGP`` (RBF-ARD kernel with the dimension-scaled
log-normal length-scale prior, ``Standardize`` outcome transform, learned noise) on the
encoded unit cube of :class:`~workbench.optimize.space.SearchSpace`, in float64. Several
outcomes (multi-objective, outcome constraints) use one batched multi-output GP, which fits
every output in one L-BFGS run.

Mixed spaces use the same GP over one-hot categoricals and relaxed integers rather than
``MixedSingleTaskGP``: measured here at n=50 on the LLM space, the mixed kernel with
``optimize_acqf_mixed`` took about 2.3 s per suggestion against under 0.3 s for this model,
and the acquisition optimiser (:mod:`~workbench.optimize.acquisition`) keeps discrete
columns exactly feasible, so the relaxation never proposes a fractional value.

Why warm starts (the main latency lever): a fit from the prior's mode costs tens of L-BFGS
iterations (0.3-0.8 s at n=100); between two suggestions the posterior of the
hyperparameters barely moves, so starting from the previous optimum converges in a few
iterations (~0.03 s). Every ``refit_every`` observations, or when the marginal likelihood
per point falls by more than ``mll_drop`` nats since the last full fit (the data disagree
with the old hyperparameters), the fit restarts from the prior's mode as well and keeps the
better of the two optima.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench._optional import require
from workbench.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from botorch.models import SingleTaskGP

__all__ = ["FitConfig", "FitInfo", "ModelState", "configure_torch", "fit_gp"]

log = logging.getLogger(__name__)
_configured_threads: int | None = None


def configure_torch(num_threads: int | None = 1) -> Any:
    """Import torch for optimisation work and set its intra-op threads (once per value).

    One thread is the default: the GP and acquisition tensors here are small (n <= a few
    hundred), so extra threads buy little and, on a shared machine, a busy neighbour made
    BoTorch steps 5-15x slower with two threads. ``None`` leaves torch's setting alone.
    """
    global _configured_threads
    torch = require("torch", purpose="Bayesian optimisation")
    if num_threads is not None and num_threads != _configured_threads:
        torch.set_num_threads(int(num_threads))
        _configured_threads = int(num_threads)
    return torch


@dataclass(frozen=True)
class FitConfig:
    """How the GP hyperparameters are fitted.

    Attributes:
        refit_every: Refit from the prior's mode once this many observations arrived since
            the last full fit (the warm start is kept too if it fits better).
        warm_maxiter: L-BFGS iterations of a warm-started fit.
        full_maxiter: L-BFGS iterations of a full fit.
        mll_drop: Refit fully when the marginal log-likelihood per point fell this many nats
            below its value at the last full fit.
    """

    refit_every: int = 8
    warm_maxiter: int = 25
    full_maxiter: int = 200
    mll_drop: float = 0.3

    def __post_init__(self) -> None:
        if self.refit_every < 1:
            raise InputError(f"refit_every={self.refit_every} must be >= 1")
        if self.warm_maxiter < 1 or self.full_maxiter < 1:
            raise InputError("warm_maxiter and full_maxiter must be >= 1")


@dataclass
class ModelState:
    """What is carried from one fit to the next (JSON-ready, saved with the study).

    Attributes:
        hyperparameters: Raw GP parameter name -> nested list of floats.
        dim: Input columns the hyperparameters belong to.
        outputs: Number of modelled outcomes.
        n_at_full_fit: Observations at the last full fit.
        mll_at_full_fit: Marginal log-likelihood per point at the last full fit.
    """

    hyperparameters: dict[str, Any] = field(default_factory=dict)
    dim: int = 0
    outputs: int = 0
    n_at_full_fit: int = 0
    mll_at_full_fit: float = -math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "hyperparameters": self.hyperparameters,
            "dim": self.dim,
            "outputs": self.outputs,
            "n_at_full_fit": self.n_at_full_fit,
            "mll_at_full_fit": None if not math.isfinite(self.mll_at_full_fit)
            else self.mll_at_full_fit,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelState | None:
        if not data:
            return None
        mll = data.get("mll_at_full_fit")
        return cls(
            hyperparameters=dict(data.get("hyperparameters") or {}),
            dim=int(data.get("dim", 0)),
            outputs=int(data.get("outputs", 0)),
            n_at_full_fit=int(data.get("n_at_full_fit", 0)),
            mll_at_full_fit=-math.inf if mll is None else float(mll),
        )


@dataclass(frozen=True)
class FitInfo:
    """How one fit went.

    Attributes:
        full: Whether a full (prior-mode) fit ran.
        mll: Marginal log-likelihood per point of the kept hyperparameters.
        seconds: Wall time of the fit.
    """

    full: bool
    mll: float
    seconds: float


def _mll_value(mll: Any, model: Any) -> float:
    torch = require("torch")
    model.train()
    with torch.no_grad():
        out = mll(model(*model.train_inputs), model.train_targets)
    model.eval()
    return float(out.sum())


def _build(x: Any, y: Any, kernel: str = "matern") -> tuple[SingleTaskGP, Any]:
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
    from gpytorch.mlls import ExactMarginalLogLikelihood

    m = y.shape[-1]
    covar = get_covar_module_with_dim_scaled_prior(
        ard_num_dims=x.shape[-1],
        batch_shape=None if m == 1 else __import__("torch").Size([m]),
        use_rbf_kernel=kernel == "rbf",
    )
    model = SingleTaskGP(x, y, covar_module=covar, outcome_transform=Standardize(m=m))
    return model, ExactMarginalLogLikelihood(model.likelihood, model)


def _optimise(mll: Any, maxiter: int) -> None:
    from botorch.optim.fit import fit_gpytorch_mll_scipy

    mll.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit_gpytorch_mll_scipy(mll, options={"maxiter": maxiter})
        except Exception as exc:  # a failed line search keeps the current values
            log.debug("GP hyperparameter fit stopped early: %r", exc)
    mll.eval()


def _snapshot(model: Any) -> dict[str, Any]:
    return {n: p.detach().tolist() for n, p in model.named_parameters()}


def _load(model: Any, hyper: dict[str, Any]) -> bool:
    torch = require("torch")
    params = dict(model.named_parameters())
    if set(params) != set(hyper):
        return False
    with torch.no_grad():
        for name, p in params.items():
            value = torch.as_tensor(hyper[name], dtype=p.dtype)
            if value.shape != p.shape:
                return False
            p.copy_(value)
    return True


def fit_gp(
    x: np.ndarray,
    y: np.ndarray,
    state: ModelState | None = None,
    config: FitConfig | None = None,
) -> tuple[SingleTaskGP, ModelState, FitInfo]:
    """Fit a GP to ``x`` (shape ``(n, d)``, unit cube) and ``y`` (shape ``(n, m)``).

    Args:
        x: Encoded inputs.
        y: Outcomes to model (any scale: standardised inside).
        state: The previous fit's state, used as a warm start when its shapes match.
        config: Fit settings.

    Returns:
        The fitted model (eval mode), the state to pass next time, and fit details.
    """
    import time

    torch = configure_torch(None)
    config = config or FitConfig()
    start = time.perf_counter()
    tx = torch.as_tensor(np.asarray(x, dtype=np.float64))
    ty = torch.as_tensor(np.asarray(y, dtype=np.float64))
    if ty.ndim == 1:
        ty = ty.unsqueeze(-1)
    n, d = tx.shape
    m = ty.shape[-1]
    usable = state is not None and state.hyperparameters and state.dim == d and state.outputs == m
    warm_model = None
    warm_mll = -math.inf
    if usable:
        assert state is not None
        warm_model, mll = _build(tx, ty)
        if _load(warm_model, state.hyperparameters):
            _optimise(mll, config.warm_maxiter)
            warm_mll = _mll_value(mll, warm_model)
        else:
            warm_model = None
    need_full = (
        warm_model is None
        or state is None
        or n - state.n_at_full_fit >= config.refit_every
        or warm_mll < state.mll_at_full_fit - config.mll_drop
    )
    model, mll_kept, full = warm_model, warm_mll, False
    if need_full:
        cold, mll = _build(tx, ty)
        _optimise(mll, config.full_maxiter)
        cold_mll = _mll_value(mll, cold)
        full = True
        if warm_model is None or cold_mll >= warm_mll or not math.isfinite(warm_mll):
            model, mll_kept = cold, cold_mll
    assert model is not None
    new_state = ModelState(
        hyperparameters=_snapshot(model),
        dim=d,
        outputs=m,
        n_at_full_fit=n if full else (state.n_at_full_fit if state else n),
        mll_at_full_fit=mll_kept if full else (state.mll_at_full_fit if state else mll_kept),
    )
    model.eval()
    return model, new_state, FitInfo(full, mll_kept, time.perf_counter() - start)
