"""GP fitting: warm starts, full refits, the lean posterior."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.optimize.models import FitConfig, ModelState, fit_gp, lean_posterior_model
from workbench.optimize.problems import hartmann6_array


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).random((n, 6))
    return x, hartmann6_array(x)[:, None]


def test_warm_start_reuses_hyperparameters_and_refits_periodically() -> None:
    x, y = data(30)
    _, state, info = fit_gp(x[:20], y[:20])
    assert info.full and state.n_at_full_fit == 20
    _, state2, info2 = fit_gp(x[:22], y[:22], state, FitConfig(refit_every=5))
    assert not info2.full and state2.n_at_full_fit == 20
    _, state3, info3 = fit_gp(x[:26], y[:26], state2, FitConfig(refit_every=5))
    assert info3.full and state3.n_at_full_fit == 26
    restored = ModelState.from_dict(state3.to_dict())
    assert restored is not None and restored.hyperparameters == state3.hyperparameters


def test_warm_fit_is_as_good_as_a_full_fit() -> None:
    x, y = data(40, seed=1)
    _, state, _ = fit_gp(x[:38], y[:38])
    _, _, warm = fit_gp(x, y, state, FitConfig(refit_every=100))
    _, _, full = fit_gp(x, y)
    assert warm.mll > full.mll - 0.05


def test_a_warm_fit_moves_hyperparameters_fitted_to_other_data() -> None:
    """Warm-started from a fit of different data (Hartmann6 on 20 points), the fit of a smooth
    function of two of the six inputs must reach a full fit's likelihood: it can only do so by
    optimising the loaded hyperparameters (stale ones cost about 0.5 nats per point; the
    margin is 0.05). No refit is allowed by count or by likelihood drop."""
    x_old, y_old = data(20, seed=3)
    _, state, _ = fit_gp(x_old, y_old)
    x = np.random.default_rng(4).random((40, 6))
    y = (np.sin(3 * x[:, 0]) + x[:, 1])[:, None]
    config = FitConfig(refit_every=100, mll_drop=1e9)
    _, _, warm = fit_gp(x, y, state, config)
    _, _, full = fit_gp(x, y)
    assert not warm.full
    assert warm.mll > full.mll - 0.05, (warm.mll, full.mll)


def test_lean_posterior_matches_gpytorch() -> None:
    import torch

    x, y = data(25, seed=2)
    model, _, _ = fit_gp(x, y)
    lean = lean_posterior_model(model)
    assert lean is not None
    xt = torch.rand(5, 3, 6, dtype=torch.float64)
    with torch.no_grad():
        a, b = model.posterior(xt), lean.posterior(xt)
        assert torch.allclose(a.mean, b.mean, atol=1e-9)
        assert torch.allclose(a.mvn.covariance_matrix, b.mvn.covariance_matrix, atol=1e-7)
        an = model.posterior(xt, observation_noise=True).variance
        bn = lean.posterior(xt, observation_noise=True).variance
        assert torch.allclose(an, bn, atol=1e-7)
    multi, _, _ = fit_gp(x, np.hstack([y, -y]))
    assert lean_posterior_model(multi) is None


def test_fit_config_validation() -> None:
    with pytest.raises(InputError, match="noise_prior"):
        FitConfig(noise_prior="flat")
    with pytest.raises(InputError):
        FitConfig(refit_every=0)
    with pytest.raises(InputError):
        FitConfig(kernel="linear")
