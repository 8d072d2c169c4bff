"""Exact Shapley values of input channels on a model's error (all 2^n coalitions; n <= ~12 players).

For players ``N = {1..n}`` and a value function ``v`` on coalitions,

    ``phi_i = sum_{S subset N \\ {i}} |S|! (n - |S| - 1)! / n!  (v(S + {i}) - v(S))``,

which satisfies efficiency (``sum_i phi_i = v(N) - v({})``), symmetry, the dummy property and linearity. Here a
coalition is the set of input channels the model *sees*; an absent channel is replaced by a constant baseline
field (default: its training mean, :func:`training_mean_baseline`; the "no echo" alternative is
:data:`NO_ECHO_BASELINE`), and ``v(S)`` is the model's error (per-sample MSE by default) with only ``S`` present.
A negative ``phi_i`` therefore means channel ``i`` *reduces* the error. Because the error is evaluated per
sample, Shapley values come per sample and their average equals the Shapley value of the average error
(linearity).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from prediff.dualpol.qpe import fit_power_law
from prediff.dualpol.reader import (DEFAULT_TEST_PROCESSES, RAIN, list_processes, load_frames, split_processes,
                                    variable_of)
from prediff.errors import ConfigError, DataError

#: Baseline of absent channels meaning "no echo": 0 dBZ, 0 dB, 0 deg/km.
NO_ECHO_BASELINE = {"dBZ": 0.0, "ZDR": 0.0, "KDP": 0.0}
#: Largest number of players evaluated exactly (2^12 = 4096 coalitions).
MAX_PLAYERS = 12


def coalition_masks(n_players: int) -> np.ndarray:
    """All coalitions as a (2^n, n) bool array; row ``m`` has player ``i`` present iff bit ``i`` of ``m`` is set."""
    if not 1 <= n_players <= MAX_PLAYERS:
        raise ConfigError(f"exact Shapley values need 1..{MAX_PLAYERS} players, got {n_players}")
    codes = np.arange(2 ** n_players)
    return ((codes[:, None] >> np.arange(n_players)) & 1).astype(bool)


def shapley_from_values(values: np.ndarray) -> np.ndarray:
    """Shapley values from the values of all coalitions.

    Parameters
    ----------
    values : (2^n, ...) float, ``values[m]`` = v(coalition m) in the order of :func:`coalition_masks`; trailing
        axes (e.g. samples) are kept.

    Returns
    -------
    (..., n) float64 Shapley values, the player axis last.
    """
    values = np.asarray(values, dtype=np.float64)
    n_players = int(round(math.log2(values.shape[0])))
    if 2 ** n_players != values.shape[0]:
        raise ConfigError(f"need 2^n coalition values, got {values.shape[0]}")
    masks = coalition_masks(n_players)
    sizes = masks.sum(axis=1)
    weights = np.array([math.factorial(s) * math.factorial(n_players - s - 1) / math.factorial(n_players)
                        if s < n_players else 0.0 for s in sizes])
    phi = np.zeros(values.shape[1:] + (n_players,))
    for player in range(n_players):
        without = np.flatnonzero(~masks[:, player])
        with_player = without | (1 << player)
        marginal = values[with_player] - values[without]
        phi[..., player] = np.tensordot(weights[without], marginal, axes=(0, 0))
    return phi


def exact_shapley(value: Callable[[np.ndarray], np.ndarray | float], n_players: int) -> np.ndarray:
    """Shapley values of a value function: ``value(mask)`` with mask (n,) bool -> float or array (...).

    Returns
    -------
    (..., n) float64, the player axis last.
    """
    masks = coalition_masks(n_players)
    return shapley_from_values(np.stack([np.asarray(value(mask), dtype=np.float64) for mask in masks]))


def per_sample_mse(prediction: np.ndarray, observation: np.ndarray) -> np.ndarray:
    """Mean squared error of each sample over the pixels where both are finite: (N, ...) -> (N,) float64."""
    prediction = np.asarray(prediction, dtype=np.float64).reshape(len(prediction), -1)
    observation = np.asarray(observation, dtype=np.float64).reshape(len(observation), -1)
    valid = np.isfinite(prediction) & np.isfinite(observation)
    squared = np.where(valid, prediction - observation, 0.0) ** 2
    with np.errstate(invalid="ignore"):
        return squared.sum(axis=1) / valid.sum(axis=1)


def training_mean_baseline(fields: Mapping[str, np.ndarray], keys: Sequence[str]) -> dict[str, float]:
    """Baseline value of each channel: its mean over the finite training pixels (dry pixels included)."""
    return {key: float(np.nanmean(np.asarray(fields[key], dtype=np.float64))) for key in keys}


def channel_shapley(predict: Callable[[dict[str, np.ndarray]], np.ndarray], fields: Mapping[str, np.ndarray],
                    players: Sequence[str], observation: np.ndarray, baseline: Mapping[str, float],
                    error: Callable[[np.ndarray, np.ndarray], np.ndarray] = per_sample_mse) -> dict:
    """Exact Shapley values of input channels on a model's per-sample error.

    Parameters
    ----------
    predict : model, dict key -> (N, ...) fields -> (N, ...) prediction in the observation's units.
    fields : the model's inputs, key -> (N, ...) array in physical units (keys not in ``players`` stay as given).
    players : channel keys whose contribution is measured, e.g. ZH and ZDR at 1, 3, 7 km.
    observation : (N, ...) the truth.
    baseline : key -> value used for an absent channel (a constant field).
    error : (prediction, observation) -> (N,) per-sample error (default :func:`per_sample_mse`).

    Returns
    -------
    dict: ``players`` (list), ``per_sample`` (N, n) float64, ``mean`` (n,), ``error_all`` and ``error_none``
    (N,) — the errors with every / no channel present (``per_sample.sum(1) == error_all - error_none``).
    """
    players = list(players)
    absent = [key for key in players if key not in fields or key not in baseline]
    if absent:
        raise DataError(f"channel(s) {', '.join(absent)} lack an input field or a baseline value")

    def value(mask: np.ndarray) -> np.ndarray:
        masked = dict(fields)
        for key, present in zip(players, mask):
            if not present:
                masked[key] = np.full_like(np.asarray(fields[key], dtype=np.float64), baseline[key])
        return error(predict(masked), observation)

    masks = coalition_masks(len(players))
    values = np.stack([value(mask) for mask in masks])
    per_sample = shapley_from_values(values)
    return {"players": players, "per_sample": per_sample, "mean": per_sample.mean(axis=0),
            "error_all": values[-1], "error_none": values[0]}



def rain_channel_shapley(root, players: Sequence[str] = ("dBZ@1.0km", "dBZ@3.0km", "dBZ@7.0km", "ZDR@1.0km",
                                                          "ZDR@3.0km", "ZDR@7.0km"),
                         test_processes: Sequence[int] = DEFAULT_TEST_PROCESSES, baseline: str = "mean",
                         frame_step: int = 5) -> dict:
    """Shapley values of ZH / ZDR channels on the MSE (mm^2 h^-2) of a multi-height R(Z, ZDR) power law.

    The law (:func:`prediff.dualpol.qpe.fit_power_law` over all ``players``) is fitted on the train processes;
    the value of a coalition is the per-frame MSE of its rain rate on the test processes (every
    ``frame_step``-th frame) with absent channels set to their ``baseline``: ``"mean"`` (training mean,
    dry pixels included) or ``"no-echo"`` (0 dBZ / 0 dB).

    Returns
    -------
    :func:`channel_shapley` output plus ``law`` (the fitted :class:`~prediff.dualpol.qpe.PowerLawRain`),
    ``baseline`` (key -> value) and ``n_frames``.
    """
    players = list(players)
    if not players or variable_of(players[0]) != "dBZ":
        raise ConfigError("the first player must be a reflectivity channel 'dBZ@<height>' (the law's echo gate)")
    keys = players + [RAIN]
    train, test = split_processes(list_processes(root, players[0]), test_processes)
    if not train or not test:
        raise DataError(f"{root} needs processes in both splits, found {len(train)} train and {len(test)} test")
    training = load_frames(root, keys, train, frame_step=frame_step)
    law = fit_power_law(training, players, "multi-height R(Z, ZDR)")
    if baseline == "mean":
        values = training_mean_baseline(training, players)
    elif baseline == "no-echo":
        values = {key: NO_ECHO_BASELINE[variable_of(key)] for key in players}
    else:
        raise ConfigError(f"baseline must be 'mean' or 'no-echo', got {baseline!r}")
    testing = load_frames(root, keys, test, frame_step=frame_step)
    result = channel_shapley(law.predict, testing, players, testing[RAIN], values)
    result.update(law=law, baseline=values, n_frames=len(testing[RAIN]))
    return result
