"""Block max-pooling and the fractions skill score (prediff.verify.neighbourhood)."""

import numpy as np
import pytest
from pysteps.verification.spatialscores import fss_accum as pysteps_fss_accum
from pysteps.verification.spatialscores import fss_compute as pysteps_fss_compute
from pysteps.verification.spatialscores import fss_init as pysteps_fss_init

from prediff.errors import ConfigError
from prediff.verify.neighbourhood import block_max, fss_accum, fss_compute, fss_init, fss_merge


def test_block_max_skips_invalid_pixels_and_drops_partial_blocks():
    values = np.arange(36, dtype=np.float64).reshape(6, 6)
    valid = np.ones((6, 6), dtype=bool)
    valid[3, 3] = False          # the maximum of block (1, 1) is invalid
    valid[0:3, 0:3] = False      # block (0, 0) fully invalid
    pooled, pooled_valid = block_max(values, valid, 3)
    assert pooled_valid.tolist() == [[False, True], [True, True]]
    assert pooled.tolist() == [[0.0, 17.0], [32.0, 35.0]]
    pooled, _ = block_max(values[:5, :5], np.ones((5, 5), bool), 2)  # 5 // 2 = 2 whole blocks
    assert pooled.tolist() == [[7.0, 9.0], [19.0, 21.0]]
    with pytest.raises(ConfigError):
        block_max(values, valid, 7)


def test_fss_equals_pysteps_on_random_fields():
    rng = np.random.default_rng(0)
    observation = rng.uniform(0, 254, size=(2, 3, 40, 40))
    forecast = np.clip(observation + rng.normal(0, 60, size=observation.shape), 0, 254)
    observation, forecast = np.rint(observation), np.rint(forecast)  # ties: pysteps FSS also uses >=
    thresholds, scales = (16, 133, 219), (1, 3, 10)
    state = fss_init(thresholds, scales, n_lead_times=3)
    fss_accum(state, forecast, observation)
    result = fss_compute(state)
    for s, scale in enumerate(scales):
        for k, threshold in enumerate(thresholds):
            whole = pysteps_fss_init(threshold, scale)
            for t in range(3):
                per_lead = pysteps_fss_init(threshold, scale)
                for n in range(2):
                    pysteps_fss_accum(per_lead, forecast[n, t], observation[n, t])
                    pysteps_fss_accum(whole, forecast[n, t], observation[n, t])
                assert result["per_lead_time"]["FSS"][s, k, t] == pytest.approx(pysteps_fss_compute(per_lead),
                                                                                 rel=1e-10)
            assert result["all_lead_times"]["FSS"][s, k] == pytest.approx(pysteps_fss_compute(whole), rel=1e-10)


def test_fss_perfect_forecast_is_one_and_no_event_is_nan():
    observation = np.zeros((1, 1, 16, 16))
    observation[0, 0, 4:8, 4:8] = 100
    state = fss_init((16, 200), (1, 5), n_lead_times=1)
    fss_accum(state, observation, observation)
    result = fss_compute(state)["all_lead_times"]["FSS"]
    assert result[:, 0].tolist() == [1.0, 1.0]
    assert np.isnan(result[:, 1]).all()


def test_fss_rises_with_scale_for_a_displaced_forecast_and_skips_missing_centres():
    observation = np.zeros((1, 1, 32, 32))
    observation[0, 0, 10:14, 10:14] = 100
    forecast = np.roll(observation, 3, axis=-1)
    state = fss_init((16,), (1, 3, 9, 17), n_lead_times=1)
    fss_accum(state, forecast, observation)
    values = fss_compute(state)["all_lead_times"]["FSS"][:, 0]
    assert values[0] == pytest.approx(0.25)  # 4 of 16 pixels overlap: 1 - 24/32
    assert np.all(np.diff(values) > 0)
    holey = observation.copy()
    holey[0, 0, 0, 0] = np.nan
    missing = fss_init((16,), (1,), n_lead_times=1)
    fss_accum(missing, forecast, holey)
    assert fss_compute(missing)["all_lead_times"]["FSS"][0, 0] == pytest.approx(0.25)


def test_fss_merge_equals_one_pass():
    rng = np.random.default_rng(5)
    observation = rng.uniform(0, 254, size=(3, 2, 20, 20))
    forecast = rng.uniform(0, 254, size=(3, 2, 20, 20))
    whole, first, second = (fss_init(n_lead_times=2) for _ in range(3))
    fss_accum(whole, forecast, observation)
    fss_accum(first, forecast[:1], observation[:1])
    fss_accum(second, forecast[1:], observation[1:])
    np.testing.assert_allclose(fss_compute(fss_merge(first, second))["per_lead_time"]["FSS"],
                               fss_compute(whole)["per_lead_time"]["FSS"], rtol=1e-12)
