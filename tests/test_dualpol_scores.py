"""Dual-pol scores in physical units (prediff.dualpol.scores)."""

import numpy as np
import pytest

from prediff.dualpol.scores import (RAIN_CLASSES, categorical_accum, categorical_compute, categorical_init,
                                    categorical_merge, continuous_accum, continuous_compute, continuous_init,
                                    continuous_merge, event_label)
from prediff.errors import ConfigError, DataError


def test_continuous_scores_by_hand():
    observation = np.array([[[[0.0, 2.0], [4.0, np.nan]]]])     # (1, 1, 2, 2)
    prediction = np.array([[[[1.0, 1.0], [6.0, 3.0]]]])
    state = continuous_init(min_observation=0.1)
    continuous_accum(state, prediction, observation)
    scores = continuous_compute(state)["all"]
    assert scores["MSE"] == pytest.approx((1 + 1 + 4) / 3)
    assert scores["MRE"] == pytest.approx((0.5 + 0.5) / 2)          # the zero observation is left out
    assert scores["RBIAS"] == pytest.approx((1 - 1 + 2) / 6)
    assert scores["count"] == 3
    merged = continuous_compute(continuous_merge(state, state))["all"]
    assert merged["MSE"] == pytest.approx(scores["MSE"]) and merged["count"] == 6
    with pytest.raises(DataError):
        continuous_accum(state, prediction, observation[..., :1])
    with pytest.raises(ConfigError, match="min_observation"):
        continuous_merge(state, continuous_init(min_observation=1.0))


def test_rain_classes_and_threshold_csi_by_hand():
    observation = np.array([0.0, 10.0, 35.0, 60.0, 45.0, 20.0]).reshape(1, 1, 1, 6)
    prediction = np.array([0.0, 12.0, 40.0, 70.0, 55.0, 0.0]).reshape(1, 1, 1, 6)
    state = categorical_init(RAIN_CLASSES)
    categorical_accum(state, prediction, observation)
    csi = categorical_compute(state)["all_lead_times"]["CSI"][0]
    # class <30: obs {10, 20}, pred {12}: h=1 m=1 f=0; 30-50: obs {35, 45}, pred {40}: h=1 m=1;
    # >=50: obs {60}, pred {70, 55}: h=1 f=1
    assert csi == pytest.approx([1 / 2, 1 / 2, 1 / 2])
    assert event_label(RAIN_CLASSES[2], "mm/h") == ">=50 mm/h" and event_label((30, 50), "mm/h") == "30-50 mm/h"
    with pytest.raises(ConfigError):
        categorical_init([(5.0, 1.0)])


def test_fuzzy_pod_far_hk_grow_with_window_on_a_displaced_cell():
    observation = np.zeros((1, 1, 8, 8))
    prediction = np.zeros((1, 1, 8, 8))
    observation[0, 0, 0, 0] = 40.0       # observed cell in the top-left pixel
    prediction[0, 0, 1, 1] = 40.0        # forecast one pixel off, same 2x2 window
    prediction[0, 0, 7, 7] = 40.0        # and a far false alarm
    state = categorical_init([(35.0, np.inf)], window_sizes=(1, 2, 4))
    categorical_accum(state, prediction, observation)
    result = categorical_compute(state)["all_lead_times"]
    # window 1: h=0 m=1 f=2 of 64; window 2: h=1 f=1 of 16; window 4: h=1 f=1 of 4
    assert result["POD"][:, 0].tolist() == [0.0, 1.0, 1.0]
    assert result["F"][:, 0] == pytest.approx([2 / 63, 1 / 15, 1 / 3])
    assert result["HK"][:, 0] == pytest.approx([-2 / 63, 1 - 1 / 15, 1 - 1 / 3])
    assert np.isnan(categorical_compute(categorical_init([(35.0, np.inf)]))["all_lead_times"]["CSI"][0, 0])
    doubled = categorical_merge(state, state)
    assert doubled["hits"][1, 0, 0] == 2 and state["hits"][1, 0, 0] == 1
    with pytest.raises(ConfigError, match="window_sizes"):
        categorical_merge(state, categorical_init([(35.0, np.inf)], window_sizes=(1, 2, 8)))


def test_missing_pixels_are_skipped_per_lead_time():
    observation = np.full((2, 3, 4, 4), 40.0)
    prediction = observation.copy()
    prediction[:, 1] = 0.0
    observation[0, 2] = np.nan
    state = categorical_init([(35.0, np.inf)], n_lead_times=3)
    categorical_accum(state, prediction, observation)
    per_lead = categorical_compute(state)["per_lead_time"]
    assert per_lead["hits"][0, 0].tolist() == [32, 0, 16]
    assert per_lead["CSI"][0, 0].tolist() == [1.0, 0.0, 1.0]
