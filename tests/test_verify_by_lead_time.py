"""ScoreAccumulator: every score of one method, streamed (prediff.verify.by_lead_time)."""

import numpy as np
import pytest

from prediff.errors import ConfigError, DataError
from prediff.verify import ScoreAccumulator, categorical_accum, categorical_compute, categorical_init


def _tables_equal(left, right):
    for key, value in left.items():
        if isinstance(value, dict):
            _tables_equal(value, right[key])
        elif not isinstance(value, np.random.Generator):
            np.testing.assert_allclose(np.asarray(value, dtype=float), np.asarray(right[key], dtype=float),
                                       rtol=1e-12, equal_nan=True, err_msg=key)


def _windows(seed, members=None, n=4, size=32):
    rng = np.random.default_rng(seed)
    observation = rng.uniform(0, 254, size=(n, 6, size, size))
    if members is None:
        return np.clip(observation + rng.normal(0, 30, observation.shape), 0, 254), observation
    return np.clip(observation[:, None] + rng.normal(0, 30, (n, members, 6, size, size)), 0, 254), observation


@pytest.mark.parametrize("members", [None, 3])
def test_streaming_and_merging_equal_one_pass(members):
    forecast, observation = _windows(0, members)
    options = dict(pool_sizes=(1, 4), fss_scales=(1, 5), n_members=members)
    whole = ScoreAccumulator(**options)
    whole.update(forecast, observation)
    streamed = ScoreAccumulator(**options)
    for window in range(4):
        streamed.update(forecast[window], observation[window])
    first, second = ScoreAccumulator(**options), ScoreAccumulator(**options)
    first.update(forecast[:3], observation[:3])
    second.update(forecast[3:], observation[3:])
    merged = first.merge(second)
    expected = whole.compute()
    for candidate in (streamed, merged):
        result = candidate.compute()
        assert result["n_forecasts"] == 4
        for group in ("categorical", "continuous", "fss", "crps", "spread_skill", "exceedance"):
            if group in expected:
                _tables_equal(result[group], expected[group])
    assert ("crps" in expected) == (members is not None)


def test_ensemble_deterministic_scores_follow_the_chosen_summary():
    ensemble, observation = _windows(1, members=4, n=2)

    def hits(summary):
        accumulator = ScoreAccumulator(n_members=4, pool_sizes=(1,), deterministic_summary=summary)
        accumulator.update(ensemble, observation)
        return accumulator.compute()["categorical"]["all_lead_times"]["hits"]

    def direct_hits(forecast, verifying):
        state = categorical_init(n_lead_times=6)
        categorical_accum(state, forecast, verifying)
        return categorical_compute(state)["all_lead_times"]["hits"]

    np.testing.assert_array_equal(hits("mean"), direct_hits(ensemble.mean(axis=1), observation))
    np.testing.assert_array_equal(hits("median"), direct_hits(np.median(ensemble, axis=1), observation))
    np.testing.assert_array_equal(hits("member0"), direct_hits(ensemble[:, 0], observation))
    # default: every member scored on its own, counts pooled (as the public PreDiff code does)
    pooled = sum(direct_hits(ensemble[:, m], observation) for m in range(4))
    np.testing.assert_array_equal(hits("all_members"), pooled)
    np.testing.assert_array_equal(hits(ScoreAccumulator().deterministic_summary), pooled)


def test_summary_frame_has_one_row_per_lead_time_and_the_paper_columns():
    ensemble, observation = _windows(2, members=2, n=1)
    accumulator = ScoreAccumulator(n_members=2, fss_scales=(1,))
    accumulator.update(ensemble, observation)
    frame = accumulator.summary_frame()
    assert list(frame.index) == ["10", "20", "30", "40", "50", "60", "all"]
    for column in ("CSI-M", "CSI-M-pool4", "CSI-M-pool16", "CSI-16", "CSI-219", "MSE", "MAE", "SSIM", "FSS-74-1px",
                   "CRPS", "CRPS_fair", "spread_skill_ratio"):
        assert column in frame.columns, column
    assert frame.loc["all", "MSE"] == pytest.approx(accumulator.compute()["continuous"]["all_lead_times"]["MSE"])


def test_bad_configuration_and_shapes():
    with pytest.raises(ConfigError):
        ScoreAccumulator(deterministic_summary="mode")
    with pytest.raises(ConfigError):
        ScoreAccumulator().merge(ScoreAccumulator(n_members=2))
    with pytest.raises(DataError):
        ScoreAccumulator(n_members=2).update(np.zeros((3, 6, 16, 16)), np.zeros((6, 16, 16)))


def test_importing_prediff_verify_loads_neither_mindspore_nor_pysteps():
    import subprocess
    import sys

    code = ("import sys, prediff.verify; "
            "print(sorted(m for m in ('mindspore', 'pysteps') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
