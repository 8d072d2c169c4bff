"""Exact Shapley values (prediff.dualpol.shapley)."""

import itertools

import numpy as np
import pytest

from prediff.dualpol.shapley import (channel_shapley, coalition_masks, exact_shapley, per_sample_mse,
                                     training_mean_baseline)
from prediff.errors import ConfigError, DataError


def permutation_check(value, n_players):
    """Shapley values as the average marginal contribution over all n! orderings (the definition)."""
    phi = np.zeros(n_players)
    orders = list(itertools.permutations(range(n_players)))
    for order in orders:
        mask = np.zeros(n_players, dtype=bool)
        previous = float(value(mask))
        for player in order:
            mask[player] = True
            current = float(value(mask))
            phi[player] += current - previous
            previous = current
    return phi / len(orders)


def _game(mask):
    # additive weights 1, 2, 3 on players 0-2, an interaction 4 between players 3 and 4, player 5 a dummy
    x = mask.astype(float)
    return 1 * x[0] + 2 * x[1] + 3 * x[2] + 4 * x[3] * x[4] + 10.0


def test_known_values_efficiency_symmetry_dummy():
    phi = exact_shapley(_game, 6)
    assert phi == pytest.approx([1, 2, 3, 2, 2, 0])
    assert phi.sum() == pytest.approx(_game(np.ones(6, bool)) - _game(np.zeros(6, bool)))
    assert coalition_masks(6).shape == (64, 6)


def test_matches_permutation_definition_on_a_random_game():
    table = np.random.default_rng(0).normal(size=2 ** 5)

    def value(mask):
        return table[int((mask * (1 << np.arange(5))).sum())]

    assert exact_shapley(value, 5) == pytest.approx(permutation_check(value, 5))
    with pytest.raises(ConfigError):
        exact_shapley(value, 13)


def test_channel_shapley_of_a_linear_model_per_sample():
    rng = np.random.default_rng(1)
    fields = {k: rng.normal(size=(4, 3, 3)) for k in ("a", "b", "c")}
    observation = 2 * fields["a"] + fields["b"]

    def predict(inputs):
        return 2 * inputs["a"] + inputs["b"] + 0 * inputs["c"]

    baseline = {"a": 0.0, "b": 0.0, "c": 5.0}
    result = channel_shapley(predict, fields, ["a", "b", "c"], observation, baseline)
    assert result["per_sample"].shape == (4, 3)
    assert result["per_sample"][:, 2] == pytest.approx(np.zeros(4))        # c is a dummy
    assert result["per_sample"].sum(axis=1) == pytest.approx(result["error_all"] - result["error_none"])
    assert np.all(result["error_all"] == 0) and np.all(result["mean"][:2] < 0)
    assert result["mean"] == pytest.approx(result["per_sample"].mean(axis=0))
    with pytest.raises(DataError):
        channel_shapley(predict, fields, ["a", "d"], observation, baseline)


def test_helpers():
    prediction = np.array([[1.0, np.nan], [3.0, 3.0]])
    assert per_sample_mse(prediction, np.array([[0.0, 0.0], [1.0, 3.0]])).tolist() == [1.0, 2.0]
    assert training_mean_baseline({"x": np.array([1.0, np.nan, 3.0])}, ["x"]) == {"x": 2.0}
