"""Contingency counts and categorical scores (prediff.verify.categorical)."""

import numpy as np
import pytest
from pysteps.verification import det_cat_fct

from prediff.errors import DataError
from prediff.verify.categorical import (categorical_accum, categorical_compute, categorical_init, categorical_merge,
                                        contingency_scores, reference_legacy_bias)


def _one_lead(values):
    """(H, W) list -> (1, 1, H, W) array: one window, one lead time."""
    return np.asarray(values, dtype=np.float64)[None, None]


def test_counts_on_a_hand_computed_example_with_ties_at_the_threshold():
    observation = _one_lead([[16, 15, 74], [0, 20, 100]])
    forecast = _one_lead([[20, 16, 73], [16, 0, 74]])
    state = categorical_init((16, 74), n_lead_times=1)
    categorical_accum(state, forecast, observation)
    # threshold 16: obs events (16, 74, 20, 100), fcst events (20, 16, 73, 16, 74)
    # pixel-wise: (16,20) hit, (15,16) fa, (74,73) hit, (0,16) fa, (20,0) miss, (100,74) hit
    assert state["hits"][0, :, 0].tolist() == [3, 1]
    assert state["false_alarms"][0, :, 0].tolist() == [2, 0]
    assert state["misses"][0, :, 0].tolist() == [1, 1]
    assert state["correct_negatives"][0, :, 0].tolist() == [0, 4]
    scores = categorical_compute(state)["all_lead_times"]
    assert scores["CSI"][0, 0] == pytest.approx(3 / 6)
    assert scores["POD"][0, 0] == pytest.approx(3 / 4)
    assert scores["SUCR"][0, 0] == pytest.approx(3 / 5)
    assert scores["FAR"][0, 0] == pytest.approx(2 / 5)
    assert scores["BIAS"][0, 0] == pytest.approx(5 / 4)
    assert scores["F"][0, 0] == 1.0  # both observed non-events (15, 0) were forecast at 16
    assert scores["CSI"][0, 1] == pytest.approx(1 / 2)
    assert scores["F"][0, 1] == 0.0
    # h=1 m=1 f=0 r=4, n=6: h_r = 2*1/6, ETS = (1 - 1/3) / (2 - 1/3)
    assert scores["ETS"][0, 1] == pytest.approx((2 / 3) / (5 / 3))
    assert scores["HSS"][0, 1] == pytest.approx(2 * (1 * 4 - 0) / (2 * 5 + 1 * 4))
    assert scores["CSI-M"][0] == pytest.approx((0.5 + 0.5) / 2)


def test_empty_events_give_nan_and_correct_negatives_only():
    state = categorical_init((16,), n_lead_times=2)
    categorical_accum(state, np.zeros((3, 2, 4, 4)), np.full((3, 2, 4, 4), 5.0))
    scores = categorical_compute(state)["per_lead_time"]
    assert scores["correct_negatives"][0, 0].tolist() == [48, 48]
    for name in ("CSI", "POD", "SUCR", "FAR", "BIAS", "HSS", "ETS", "HK"):
        assert np.isnan(scores[name]).all(), name
    assert (scores["F"] == 0).all()


def test_missing_pixels_nan_and_255_are_ignored_in_either_field():
    rng = np.random.default_rng(1)
    observation = rng.integers(0, 255, size=(2, 3, 8, 8)).astype(np.float64)
    forecast = rng.integers(0, 255, size=(2, 3, 8, 8)).astype(np.float64)
    missing_obs = rng.random(observation.shape) < 0.2
    missing_fct = rng.random(observation.shape) < 0.2
    holey_obs = np.where(missing_obs, 255.0, observation)
    holey_fct = np.where(missing_fct, np.nan, forecast)
    state = categorical_init(n_lead_times=3)
    categorical_accum(state, holey_fct, holey_obs)
    keep = ~(missing_obs | missing_fct)
    expected = categorical_init(n_lead_times=3)
    for t in range(3):
        one = categorical_init(n_lead_times=1)
        categorical_accum(one, forecast[:, t][keep[:, t]].reshape(1, 1, 1, -1),
                          observation[:, t][keep[:, t]].reshape(1, 1, 1, -1))
        for name in ("hits", "misses", "false_alarms", "correct_negatives"):
            expected[name][..., t] = one[name][..., 0]
    for name in ("hits", "misses", "false_alarms", "correct_negatives"):
        np.testing.assert_array_equal(state[name], expected[name])
    total = state["hits"] + state["misses"] + state["false_alarms"] + state["correct_negatives"]
    assert (total[0, 0] == keep.sum(axis=(0, 2, 3))).all()


def test_uint8_input_with_missing_255():
    observation = np.array([[[[255, 20], [0, 100]]]], dtype=np.uint8)
    forecast = np.array([[[[30, 20], [255, 10]]]], dtype=np.uint8)
    state = categorical_init((16,), n_lead_times=1)
    categorical_accum(state, forecast, observation)
    assert (state["hits"].item(), state["misses"].item(), state["false_alarms"].item(),
            state["correct_negatives"].item()) == (1, 1, 0, 0)


@pytest.mark.parametrize("integer_valued", [False, True])
def test_scores_equal_pysteps_det_cat_fct_with_the_threshold_convention_handled(integer_valued):
    rng = np.random.default_rng(7)
    observation = rng.uniform(0, 254, size=(2, 3, 32, 32))
    forecast = np.clip(observation + rng.normal(0, 40, size=observation.shape), 0, 254)
    if integer_valued:  # many exact ties with the thresholds
        observation, forecast = np.rint(observation), np.rint(forecast)
    state = categorical_init(n_lead_times=3)
    categorical_accum(state, forecast, observation)
    ours = categorical_compute(state)["all_lead_times"]
    for k, threshold in enumerate(state["thresholds"]):
        # pysteps' event is value > thr; the largest float below thr turns it into value >= thr
        theirs = det_cat_fct(forecast, observation, np.nextafter(threshold, -np.inf))
        for our_name, their_name in [("POD", "POD"), ("FAR", "FAR"), ("F", "FA"), ("CSI", "CSI"), ("BIAS", "BIAS"),
                                     ("HSS", "HSS"), ("ETS", "GSS"), ("HK", "HK")]:
            assert ours[our_name][0, k] == pytest.approx(theirs[their_name], rel=1e-12, abs=1e-12), our_name
    if integer_valued:
        strict = det_cat_fct(forecast, observation, 16.0)
        assert strict["POD"] != pytest.approx(ours["POD"][0, 0], abs=1e-9)  # the conventions really differ


def test_merge_of_two_partial_accumulations_equals_one_pass():
    rng = np.random.default_rng(3)
    observation = rng.uniform(0, 254, size=(4, 6, 32, 32))
    forecast = rng.uniform(0, 254, size=(4, 6, 32, 32))
    whole = categorical_init(n_lead_times=6, pool_sizes=(1, 4, 16))
    categorical_accum(whole, forecast, observation)
    first, second = categorical_init(n_lead_times=6, pool_sizes=(1, 4, 16)), \
        categorical_init(n_lead_times=6, pool_sizes=(1, 4, 16))
    categorical_accum(first, forecast[:1], observation[:1])
    categorical_accum(second, forecast[1:], observation[1:])
    merged = categorical_merge(first, second)
    for name in ("hits", "misses", "false_alarms", "correct_negatives"):
        np.testing.assert_array_equal(merged[name], whole[name])
    assert merged["hits"].dtype == np.int64


def test_pooled_counts_use_any_event_in_each_block():
    observation = np.zeros((1, 1, 8, 8))
    forecast = np.zeros((1, 1, 8, 8))
    observation[0, 0, 0, 0] = 100     # block (0, 0)
    forecast[0, 0, 3, 3] = 100        # same 4x4 block, different pixel
    forecast[0, 0, 6, 6] = 100        # block (1, 1): false alarm
    state = categorical_init((74,), n_lead_times=1, pool_sizes=(1, 4, 8))
    categorical_accum(state, forecast, observation)
    assert state["hits"][:, 0, 0].tolist() == [0, 1, 1]
    assert state["misses"][:, 0, 0].tolist() == [1, 0, 0]
    assert state["false_alarms"][:, 0, 0].tolist() == [2, 1, 0]
    assert state["correct_negatives"][:, 0, 0].tolist() == [61, 2, 0]
    fuzzy = categorical_compute(state)["all_lead_times"]  # "any event in the window" POD / F / HK
    assert fuzzy["POD"][:, 0].tolist() == [0.0, 1.0, 1.0]
    assert fuzzy["F"][1, 0] == pytest.approx(1 / 3)
    assert fuzzy["HK"][1, 0] == pytest.approx(2 / 3)
    assert np.isnan(fuzzy["F"][2, 0])  # one 8x8 window, observed: no non-event left


def test_counts_are_kept_per_lead_time():
    observation = np.zeros((2, 6, 4, 4))
    observation[:, 3, 0, 0] = 200
    state = categorical_init(n_lead_times=6)
    categorical_accum(state, observation, observation)
    assert state["hits"][0, 0].tolist() == [0, 0, 0, 2, 0, 0]
    result = categorical_compute(state)
    assert result["lead_time_minutes"].tolist() == [10, 20, 30, 40, 50, 60]
    assert result["per_lead_time"]["CSI"][0, 0, 3] == 1.0
    assert np.isnan(result["per_lead_time"]["CSI"][0, 0, 0])
    assert result["all_lead_times"]["CSI"][0, 0] == 1.0


def test_mean_over_lead_times_differs_from_pooled_counts():
    observation = np.zeros((1, 2, 4, 4))
    observation[0, 0, :, :2] = 100   # 8 events at 10 min
    observation[0, 1, 0, 0] = 100    # 1 event at 20 min
    forecast = observation.copy()
    forecast[0, 1, 0, 0] = 0         # missed at 20 min
    state = categorical_init((74,), n_lead_times=2)
    categorical_accum(state, forecast, observation)
    result = categorical_compute(state)
    assert result["per_lead_time"]["CSI"][0, 0].tolist() == [1.0, 0.0]
    assert result["all_lead_times"]["CSI"][0, 0] == pytest.approx(8 / 9)
    assert result["mean_over_lead_times"]["CSI"][0, 0] == pytest.approx(0.5)
    assert result["mean_over_lead_times"]["CSI-M"][0] == pytest.approx(0.5)


def test_int64_counters_stay_exact_beyond_float32_precision():
    state = categorical_init((16,), n_lead_times=1)
    state["hits"][:] = 2 ** 24
    categorical_accum(state, np.full((1, 1, 1, 3), 50.0), np.full((1, 1, 1, 3), 50.0))
    assert state["hits"].item() == 2 ** 24 + 3
    assert np.float32(2 ** 24) + np.float32(1) == np.float32(2 ** 24)  # what float32 counters would do


def test_reference_compatible_mode_and_legacy_bias():
    scores = contingency_scores(np.array([10]), np.array([5]), np.array([5]), np.array([80]),
                                reference_compatible=True)
    assert scores["CSI"][0] == pytest.approx(10 / (20 + 1e-4))
    assert scores["POD"][0] == pytest.approx(10 / (15 + 1e-4))
    assert scores["BIAS"][0] == 1.0  # textbook frequency bias unchanged
    assert scores["reference_legacy_bias"][0] == pytest.approx((1 / np.log(2)) ** 2, rel=1e-4)
    assert reference_legacy_bias(0, 0, 0) == 0.0
    assert "reference_legacy_bias" not in contingency_scores(1, 1, 1, 1)


def test_wrong_shapes_raise_data_error():
    state = categorical_init(n_lead_times=6)
    with pytest.raises(DataError, match="lead times"):
        categorical_accum(state, np.zeros((5, 8, 8)), np.zeros((5, 8, 8)))
    with pytest.raises(DataError, match="differs"):
        categorical_accum(state, np.zeros((6, 8, 8)), np.zeros((6, 8, 9)))
