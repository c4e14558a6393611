"""Streaming detectors against their run-length theory.

Statistical checks compare a mean run length simulated with a fixed seed against the theory,
with a tolerance of 4.5 standard errors of the simulated mean (plus the theory's own stated
error). For a correct detector each such check fails with probability about 7e-6; the file
holds eight, so a false failure of the file has probability below 1e-4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from workbench.analytics.detectors import (
    BernoulliCusum,
    CusumDetector,
    EwmaDetector,
    cusum_arl,
    cusum_h_for_arl,
    ewma_arl,
    ewma_limit_for_arl,
    warmup,
)
from workbench.analytics.synthetic import Shift, generate_log
from workbench.errors import InputError

Z = 4.5  # two-sided tail 6.8e-6 per check


def run_lengths(alarms: np.ndarray, count: int) -> np.ndarray:
    """Observations up to and including each alarm (renewals: the detector restarts)."""
    lengths = np.diff(np.concatenate([[-1], alarms]))
    assert len(lengths) >= count, f"only {len(lengths)} alarms in the stream"
    return lengths[:count]


def assert_mean_matches(lengths: np.ndarray, theory: float, theory_rel_error: float) -> None:
    se = lengths.std(ddof=1) / math.sqrt(len(lengths))
    tolerance = Z * se + theory_rel_error * theory
    assert abs(lengths.mean() - theory) <= tolerance, (lengths.mean(), theory, tolerance)


# -- closed forms and published values ----------------------------------------------------------


def test_siegmund_matches_the_textbook_example() -> None:
    # Montgomery, Statistical Quality Control, sec. 9.1.8: k = 0.5, h = 5 gives
    # ARL0+ = 938.2 and the two-sided ARL0 = 469.1.
    assert cusum_arl(0.0, 0.5, 5.0) == pytest.approx(938.2, abs=0.05)
    assert cusum_arl(0.0, 0.5, 5.0, sides=2) == pytest.approx(469.1, abs=0.05)
    # D = 0 (delta = k): b^2.
    assert cusum_arl(0.5, 0.5, 4.0) == pytest.approx((4.0 + 1.166) ** 2)
    d, b = 1.0 - 0.5, 4.0 + 1.166
    assert cusum_arl(1.0, 0.5, 4.0) == pytest.approx(
        (math.exp(-2 * d * b) + 2 * d * b - 1) / (2 * d * d)
    )
    # Two-sided: 1/ARL = 1/ARL+ + 1/ARL-, with ARL-(delta) = ARL+(-delta).
    up, down = cusum_arl(0.7, 0.5, 4.0), cusum_arl(-0.7, 0.5, 4.0)
    assert cusum_arl(0.7, 0.5, 4.0, sides=2) == pytest.approx(1 / (1 / up + 1 / down))


def test_markov_chains_match_published_exact_values() -> None:
    # Two-sided CUSUM k = 0.5, h = 4: ARL0 = 168, ARL(1 sigma) = 8.38 (Montgomery, Table 9.3).
    assert cusum_arl(0.0, 0.5, 4.0, sides=2, method="markov") == pytest.approx(168, rel=0.005)
    assert cusum_arl(1.0, 0.5, 4.0, sides=2, method="markov") == pytest.approx(8.38, rel=0.002)
    # EWMA lam = 0.1, L = 2.814: ARL0 = 500, ARL(1 sigma) = 10.3 (Lucas & Saccucci 1990).
    assert ewma_arl(0.0, 0.1, 2.814) == pytest.approx(500, rel=0.005)
    assert ewma_arl(1.0, 0.1, 2.814) == pytest.approx(10.3, rel=0.005)


@pytest.mark.parametrize("h", [4.0, 5.0])
@pytest.mark.parametrize("delta", [0.0, 1.0, 2.0])
def test_siegmund_is_close_to_the_markov_chain(h: float, delta: float) -> None:
    siegmund = cusum_arl(delta, 0.5, h)
    markov = cusum_arl(delta, 0.5, h, method="markov")
    assert abs(siegmund - markov) / markov < (0.01 if delta == 0 else 0.05)


def test_solving_for_the_limits_inverts_the_arl() -> None:
    h = cusum_h_for_arl(500.0, 0.5)
    assert cusum_arl(0.0, 0.5, h) == pytest.approx(500.0, rel=1e-8)
    h2 = cusum_h_for_arl(500.0, 0.5, sides=2)
    assert cusum_arl(0.0, 0.5, h2, sides=2) == pytest.approx(500.0, rel=1e-8)
    assert h2 > h
    L = ewma_limit_for_arl(370.0, 0.2)
    assert ewma_arl(0.0, 0.2, L, states=75) == pytest.approx(370.0, rel=1e-6)
    det = CusumDetector(10.0, 2.0, k=0.5, h=h)
    assert det.false_alarm_rate() == pytest.approx(1 / 500.0)
    assert det.average_run_length(2.0) == pytest.approx(cusum_arl(1.0, 0.5, h))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InputError, match="sigma"):
        CusumDetector(0.0, 0.0)
    with pytest.raises(InputError, match="sides"):
        CusumDetector(0.0, 1.0, sides=3)
    with pytest.raises(InputError, match="lam"):
        EwmaDetector(0.0, 1.0, lam=1.5)
    with pytest.raises(InputError, match="p0"):
        BernoulliCusum(0.2, 0.1, threshold=10)
    with pytest.raises(InputError, match="threshold= or arl0="):
        BernoulliCusum(0.05, 0.1)
    with pytest.raises(InputError, match="method"):
        cusum_arl(0.0, 0.5, 4.0, method="exact")
    with pytest.raises(InputError, match="NaN"):
        CusumDetector(0.0, 1.0).run([0.0, math.nan])


# -- the kernels against the plain-Python update ------------------------------------------------


def _stream(seed: int, n: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    x[n // 3 : n // 2] += 1.5
    x[2 * n // 3 :] -= 1.0
    return x


@pytest.mark.parametrize(
    "make",
    [
        lambda: CusumDetector(0.0, 1.0, k=0.5, h=4.0),
        lambda: CusumDetector(0.2, 1.3, k=0.25, h=6.0, sides=2),
        lambda: EwmaDetector(0.0, 1.0, lam=0.2, L=2.9),
    ],
)
def test_run_gives_the_alarms_of_update(make) -> None:
    warmup()
    x = _stream(1)
    slow = make()
    expected = [i for i, v in enumerate(x) if slow.update(v)]
    fast = make()
    first = fast.run(x[:7_001])
    second = fast.run(x[7_001:]) + 7_001  # the state carries over between calls
    assert len(expected) > 20
    assert np.concatenate([first, second]).tolist() == expected
    assert fast.count == slow.count


def test_bernoulli_run_gives_the_alarms_of_update() -> None:
    rng = np.random.default_rng(2)
    x = rng.random(50_000) < np.where(np.arange(50_000) < 25_000, 0.05, 0.12)
    slow = BernoulliCusum(0.05, 0.10, threshold=300)
    expected = [i for i, v in enumerate(x) if slow.update(bool(v))]
    fast = BernoulliCusum(0.05, 0.10, threshold=300)
    got = np.concatenate([fast.run(x[:100]), fast.run(x[100:]) + 100])
    assert len(expected) > 20
    assert got.tolist() == expected
    assert fast.statistic == slow.statistic


# -- simulated run lengths against the theory ---------------------------------------------------


def test_cusum_arl_by_simulation() -> None:
    """One-sided CUSUM k = 0.5, h = 4: ARL0 = 335.4 and ARL(1 sigma) = 8.38 (Markov chain).

    4,000 in-control runs give a standard error near 5.3, so the band is about +-24 (7 %).
    Power: the same detector with a wrong k = 0.4 has ARL0 = 178 and with k = 0.6 665, both
    about 30 standard errors away (power ~1); one that never resets alarms again at once
    after its first alarm (mean run length far below 100; power 1). At 1 sigma the band is
    about +-0.35 (4 %): k = 0.4 gives 7.27 and k = 0.6 gives 9.87, both outside.
    """
    rng = np.random.default_rng(20240601)
    det = CusumDetector(0.0, 1.0, k=0.5, h=4.0)
    arl0 = cusum_arl(0.0, 0.5, 4.0, method="markov")
    lengths = run_lengths(det.run(rng.standard_normal(1_700_000)), 4_000)
    assert_mean_matches(lengths, arl0, 0.002)
    det.reset()
    arl1 = cusum_arl(1.0, 0.5, 4.0, method="markov")
    lengths = run_lengths(det.run(1.0 + rng.standard_normal(60_000)), 4_000)
    assert_mean_matches(lengths, arl1, 0.002)


def test_two_sided_cusum_and_ewma_arl_by_simulation() -> None:
    """Two-sided CUSUM k = 0.5, h = 4 (ARL0 = 167.7, Markov chain and 1/ARL = 1/ARL+ +
    1/ARL-, whose error we allow as 1 %) and EWMA lam = 0.1, L = 2.814 (ARL0 = 499.6).

    Standard errors: about 2.7 over 4,000 CUSUM runs (band +-14, 8 %) and 7.9 over 4,000
    EWMA runs (band +-36, 7 %). Power: an EWMA with L = 2.7 has ARL0 = 369 (16 standard
    errors away) and lam = 0.12 gives 442 (7 away): both caught; a CUSUM with k = 0.4 on
    both sides has ARL0 near 89 (power ~1).
    """
    rng = np.random.default_rng(7)
    cusum = CusumDetector(0.0, 1.0, k=0.5, h=4.0, sides=2)
    lengths = run_lengths(cusum.run(rng.standard_normal(900_000)), 4_000)
    assert_mean_matches(lengths, cusum_arl(0.0, 0.5, 4.0, sides=2, method="markov"), 0.01)
    ewma = EwmaDetector(0.0, 1.0, lam=0.1, L=2.814)
    lengths = run_lengths(ewma.run(rng.standard_normal(2_500_000)), 4_000)
    assert_mean_matches(lengths, ewma_arl(0.0, 0.1, 2.814), 0.002)


def test_bernoulli_cusum_exact_arl_by_simulation() -> None:
    """Error rate 5 % vs 10 %, threshold chosen for ARL0 >= 1000 (exact chain: 1013.0 at
    p = 0.05, 101.9 at p = 0.10).

    Standard errors: about 18 over 3,000 in-control runs (band +-83, 8 %) and 1.5 over 3,000
    runs at 10 % (band +-7). Power: threshold 900 gives ARL0 = 665 (19 standard errors
    away); an ARL computed for p = 0.06 instead of 0.05 (480) is far outside.
    """
    det = BernoulliCusum(0.05, 0.10, arl0=1000.0)
    assert det.average_run_length() >= 1000.0
    assert BernoulliCusum(0.05, 0.10, threshold=det.threshold - 1).average_run_length() < 1000
    rng = np.random.default_rng(99)
    lengths = run_lengths(det.run(rng.random(3_400_000) < 0.05), 3_000)
    assert_mean_matches(lengths, det.average_run_length(), 0.0)
    det.reset()
    lengths = run_lengths(det.run(rng.random(400_000) < 0.10), 3_000)
    assert_mean_matches(lengths, det.average_run_length(0.10), 0.0)
    assert det.false_alarm_rate() == pytest.approx(1 / det.average_run_length())


# -- detection delay on shifts injected into a synthetic log ------------------------------------


def test_latency_shift_in_a_synthetic_log_is_detected_promptly() -> None:
    """A 1-sigma rise of log latency from the middle of a log.

    The residual ``log(latency) - mu(task, set, model)`` is N(0, sigma^2) before the shift
    (the generator's truth) and N(sigma, sigma^2) after. Restarted at the shift, the CUSUM
    (k = 0.5, h = 5) is at least the sum of ``z - k`` since the shift, which after 100
    records is N(50, 100): it has missed with probability at most Phi(-4.5) = 3.4e-6. Its
    mean delay is ARL(1) = 10.4. Before the shift the detector, watching from the start,
    may raise false alarms at rate 1/938 per record; the check only bounds their number by
    the Poisson(10000/938) upper 1e-6 tail (35).
    """
    sigma = 0.45
    frame, truth = generate_log(20_000, seed=5, shift=Shift(at=0.5, metric="latency", size=sigma))
    assert truth.shift_index is not None
    task = {t: i for i, t in enumerate(truth.task_types)}
    model = {m: i for i, m in enumerate(truth.models)}
    sets = {(t, h): j for t in truth.task_types for j, h in enumerate(truth.parameter_hashes[t])}
    ti = frame["task_type"].map(task).to_numpy()
    keys = zip(frame["task_type"], frame["parameter_hash"], strict=True)
    si = np.array([sets[key] for key in keys])
    mi = frame["model"].map(model).to_numpy()
    resid = np.log(frame["latency_ms"].to_numpy()) - truth.latency_log_mean[ti, si, mi]
    k = truth.shift_index
    before = CusumDetector(0.0, truth.latency_log_sigma, k=0.5, h=5.0).run(resid[:k])
    assert len(before) <= 35
    after = CusumDetector(0.0, truth.latency_log_sigma, k=0.5, h=5.0).run(resid[k:])
    assert len(after) > 0 and after[0] < 100
    assert norm.cdf((5.0 - 100 * 0.5) / 10.0) < 1e-5  # the bound quoted above


def test_error_rate_shift_in_a_synthetic_log_is_detected_promptly() -> None:
    """The error rate rises by 0.1 from 70 % of the log on.

    Rows are independent draws of (task, set, model), so the failure indicator is i.i.d.
    Bernoulli with the mixture's error rate ``p0`` before the shift and ``p0 + 0.1`` after,
    and the Bernoulli CUSUM's exact theory applies to the raw log. After the shift each step
    adds ``up`` with probability p or subtracts ``down``; by Hoeffding the sum over n = 3000
    steps stays below the threshold with probability at most exp(-2 (n m - H)^2 /
    (n (up + down)^2)) (m the mean step), computed below: 2.6e-7 at n = 3000.
    """
    frame, truth = generate_log(30_000, seed=11, shift=Shift(at=0.7, metric="error_rate", size=0.1))
    assert truth.shift_index is not None
    weights = (
        truth.task_weights[:, None, None]
        * truth.set_weights[:, :, None]
        * truth.model_weights[None, None, :]
    )
    p0 = float(((1.0 - truth.success_probability) * weights).sum())
    p1 = p0 + 0.1
    det = BernoulliCusum(p0, p1, arl0=5_000.0)
    failed = ~frame["success"].to_numpy()
    k = truth.shift_index
    assert len(det.run(failed[:k])) <= 20  # Poisson(21000/5000) upper tail below 1e-7
    det.reset()
    after = det.run(failed[k:])
    n = 3_000
    drift = p1 * det.up - (1 - p1) * det.down
    assert det.threshold is not None
    bound = math.exp(-2 * (n * drift - det.threshold) ** 2 / (n * (det.up + det.down) ** 2))
    assert bound < 1e-5
    assert len(after) > 0 and after[0] < n
    assert det.average_run_length(p1) < 200  # the mean delay (122 here)
