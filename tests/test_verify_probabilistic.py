"""Ensemble scores (prediff.verify.probabilistic), checked by hand and against pysteps."""

import numpy as np
import pytest
from pysteps.verification import probscores
from pysteps.verification.ensscores import rankhist_accum, rankhist_init

from prediff.errors import DataError
from prediff.verify.probabilistic import (crps_accum, crps_compute, crps_init, crps_merge, ensemble_mean,
                                          ensemble_spread, exceedance_accum, exceedance_compute, exceedance_init,
                                          exceedance_merge, exceedance_probability, rank_histogram_accum,
                                          rank_histogram_compute, rank_histogram_init, spread_skill_accum,
                                          spread_skill_compute, spread_skill_init)


def _random_ensemble(seed=0, members=5, shape=(2, 3, 16, 16)):
    rng = np.random.default_rng(seed)
    observation = rng.uniform(0, 254, size=shape)
    ensemble = observation[:, None] + rng.normal(0, 40, size=(shape[0], members) + shape[1:])
    return np.clip(ensemble, 0, 254), observation


def test_crps_equals_pysteps_per_lead_time():
    ensemble, observation = _random_ensemble()
    state = crps_init(5, n_lead_times=3)
    crps_accum(state, ensemble, observation)
    result = crps_compute(state)
    for t in range(3):
        theirs = probscores.CRPS(np.moveaxis(ensemble[:, :, t], 1, 0), observation[:, t])
        assert result["per_lead_time"]["CRPS_pixel"][t] == pytest.approx(theirs, rel=1e-10)
        assert result["per_lead_time"]["CRPS"][t] == pytest.approx(theirs / 255, rel=1e-10)
    everything = probscores.CRPS(np.moveaxis(ensemble, 1, 0), observation)
    assert result["all_lead_times"]["CRPS_pixel"] == pytest.approx(everything, rel=1e-10)


def test_fair_crps_by_hand_and_one_member_crps_is_mae():
    ensemble = np.array([0.0, 2.0]).reshape(1, 2, 1, 1, 1)
    observation = np.ones((1, 1, 1, 1))
    state = crps_init(2, n_lead_times=1)
    crps_accum(state, ensemble, observation)
    result = crps_compute(state)["all_lead_times"]
    assert result["CRPS_pixel"] == pytest.approx(1.0 - 4.0 / 8.0)   # mean|x-y| - sum|xi-xj| / (2 M^2)
    assert result["CRPS_fair_pixel"] == pytest.approx(1.0 - 4.0 / 4.0)  # ... / (2 M (M-1))
    single = crps_init(1, n_lead_times=1)
    crps_accum(single, np.full((1, 1, 1, 2, 2), 30.0), np.full((1, 1, 2, 2), 10.0))
    result = crps_compute(single)["all_lead_times"]
    assert result["CRPS_pixel"] == 20.0
    assert np.isnan(result["CRPS_fair_pixel"])


def test_crps_ignores_pixels_with_any_missing_member_and_merges():
    ensemble, observation = _random_ensemble(members=3)
    holey = ensemble.copy()
    holey[0, 1, 0, 0, 0] = np.nan
    holey[1, 2, 2, 5, 5] = 255
    state = crps_init(3, n_lead_times=3)
    crps_accum(state, holey, observation)
    assert crps_compute(state)["per_lead_time"]["pairs"].tolist() == [511, 512, 511]
    first, second, whole = crps_init(3, 3), crps_init(3, 3), crps_init(3, 3)
    crps_accum(first, ensemble[:1], observation[:1])
    crps_accum(second, ensemble[1:], observation[1:])
    crps_accum(whole, ensemble, observation)
    merged = crps_compute(crps_merge(first, second))["per_lead_time"]["CRPS"]
    np.testing.assert_allclose(merged, crps_compute(whole)["per_lead_time"]["CRPS"], rtol=1e-12)


def test_rank_histogram_equals_pysteps_without_ties_and_splits_ties_reproducibly():
    ensemble, observation = _random_ensemble(members=4)
    ensemble = ensemble + 1e-3 * np.random.default_rng(9).random(ensemble.shape)  # no ties at the clip edges
    state = rank_histogram_init(4, n_lead_times=3)
    rank_histogram_accum(state, ensemble, observation)
    theirs = rankhist_init(4)
    rankhist_accum(theirs, np.moveaxis(ensemble, 1, 0), observation)
    result = rank_histogram_compute(state)
    np.testing.assert_array_equal(result["all_lead_times"]["counts"], theirs["n"])
    assert result["per_lead_time"]["counts"].sum() == observation.size
    # all-dry pixels: every member ties with the observation -> ranks spread over all M + 1 bins
    dry = np.zeros((1, 4, 1, 50, 50))
    counts = []
    for _ in range(2):
        tied = rank_histogram_init(4, n_lead_times=1, seed=11)
        rank_histogram_accum(tied, dry, np.zeros((1, 1, 50, 50)))
        counts.append(tied["counts"][0])
    np.testing.assert_array_equal(counts[0], counts[1])
    assert counts[0].min() > 0.15 * 2500
    skipped = rank_histogram_init(4, n_lead_times=1, min_value=16)
    rank_histogram_accum(skipped, dry, np.zeros((1, 1, 50, 50)))
    assert skipped["counts"].sum() == 0
    # below min_value everything is equally dry: an observation of 15.5 ties with members at 0, not above them
    one_wet = np.zeros((1, 4, 1, 50, 50))
    one_wet[:, 3] = 20
    drizzle = rank_histogram_init(4, n_lead_times=1, min_value=16)
    rank_histogram_accum(drizzle, one_wet, np.full((1, 1, 50, 50), 15.5))
    assert drizzle["counts"][0, 4] == 0 and (drizzle["counts"][0, :4] > 0.15 * 2500).all()


def test_exceedance_probability_and_brier_decomposition():
    ensemble = np.array([0, 20, 100, 255]).reshape(1, 4, 1, 1, 1).repeat(2, axis=-1).astype(float)
    ensemble[0, 3, 0, 0, 1] = 50
    probability = exceedance_probability(ensemble, (16, 74))
    assert probability.shape == (2, 1, 1, 1, 2)
    assert np.isnan(probability[:, 0, 0, 0, 0]).all()   # member 3 missing there
    assert probability[:, 0, 0, 0, 1].tolist() == [0.75, 0.25]
    ensemble, observation = _random_ensemble(members=4)
    state = exceedance_init(4, (16, 133), n_lead_times=3)
    exceedance_accum(state, ensemble, observation)
    result = exceedance_compute(state)["all_lead_times"]
    for k, threshold in enumerate((16, 133)):
        p = (ensemble >= threshold).mean(axis=1)
        o = observation >= threshold
        assert result["brier_score"][k] == pytest.approx(np.mean((p - o) ** 2), rel=1e-12)
        assert result["brier_score"][k] == pytest.approx(
            result["brier_reliability"][k] - result["brier_resolution"][k] + result["brier_uncertainty"][k], rel=1e-10)
        assert result["base_rate"][k] == pytest.approx(o.mean())


def test_reliability_and_roc_equal_pysteps():
    ensemble, observation = _random_ensemble(members=4, shape=(2, 2, 24, 24))
    state = exceedance_init(4, (74, 181), n_lead_times=2)
    exceedance_accum(state, ensemble, observation)
    result = exceedance_compute(state)
    for k, threshold in enumerate((74, 181)):
        for t in range(2):
            p = (ensemble[:, :, t] >= threshold).mean(axis=1)
            # pysteps returns (POFD, POD, area) despite its docstring saying (POD, POFD)
            pofd, pod, area = probscores.ROC_curve(p, observation[:, t], threshold, n_prob_thrs=5, compute_area=True)
            np.testing.assert_allclose(result["per_lead_time"]["roc_pod"][k, t], pod, rtol=1e-12)
            np.testing.assert_allclose(result["per_lead_time"]["roc_pofd"][k, t], pofd, rtol=1e-12)
            assert result["per_lead_time"]["roc_auc"][k, t] == pytest.approx(area, rel=1e-12)
            forecast_probability, observed_frequency = probscores.reldiag(p, observation[:, t], threshold,
                                                                          n_bins=5, min_count=1)
            ours = result["per_lead_time"]["observed_frequency"][k, t]
            filled = ~np.isnan(ours)
            np.testing.assert_allclose(ours[filled], observed_frequency[filled], rtol=1e-12)
            np.testing.assert_allclose(result["per_lead_time"]["forecast_probability"][filled],
                                       forecast_probability[filled], rtol=1e-12)


def test_exceedance_merge_and_perfect_forecast_auc():
    observation = np.zeros((2, 1, 8, 8))
    observation[:, :, :4] = 200
    perfect = np.repeat(observation[:, None], 3, axis=1)
    first, second = exceedance_init(3, (74,), 1), exceedance_init(3, (74,), 1)
    exceedance_accum(first, perfect[:1], observation[:1])
    exceedance_accum(second, perfect[1:], observation[1:])
    result = exceedance_compute(exceedance_merge(first, second))["all_lead_times"]
    assert result["roc_auc"][0] == 1.0
    assert result["brier_score"][0] == 0.0
    assert result["bin_count"][0].tolist() == [64, 0, 0, 64]


def test_ensemble_mean_spread_and_spread_skill_ratio():
    observation = np.full((1, 1, 4, 4), 100.0)
    ensemble = np.stack([observation - 10, observation + 10], axis=1)
    np.testing.assert_allclose(ensemble_mean(ensemble), observation)
    np.testing.assert_allclose(ensemble_spread(ensemble), np.full((1, 1, 4, 4), np.sqrt(200.0)))
    with pytest.raises(DataError):
        ensemble_spread(ensemble[:, :1])
    shifted = ensemble + 5.0
    state = spread_skill_init(2, n_lead_times=1)
    spread_skill_accum(state, shifted, observation)
    result = spread_skill_compute(state)["all_lead_times"]
    assert result["spread_pixel"] == pytest.approx(np.sqrt(200.0))
    assert result["ensemble_mean_rmse_pixel"] == pytest.approx(5.0)
    assert result["spread_skill_ratio"] == pytest.approx(np.sqrt(1.5) * np.sqrt(200.0) / 5.0)


def test_ensemble_shape_errors():
    state = crps_init(3, n_lead_times=2)
    with pytest.raises(DataError, match="members"):
        crps_accum(state, np.zeros((4, 2, 8, 8)), np.zeros((2, 8, 8)))
    with pytest.raises(DataError, match="does not match"):
        crps_accum(state, np.zeros((3, 2, 8, 8)), np.zeros((2, 8, 7)))
