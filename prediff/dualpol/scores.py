"""Scores of dual-pol nowcasts and rain-rate estimates, in physical units (dBZ, mm/h).

Definitions (``p`` prediction, ``o`` observation; sums over the pixels where both are finite, aggregated over
the whole evaluated set, not averaged per sample):

* ``MSE = sum (p - o)^2 / n``.
* ``MRE = sum_{o >= o_min} |p - o| / o  /  n_{o >= o_min}``: mean relative error over the pixels whose
  observation reaches ``o_min`` (default 0.1 mm/h for rain); smaller observations, zeros included, are left out
  because the ratio is undefined or explodes there. NaN when no pixel qualifies.
* ``RBIAS = sum (p - o) / sum o``: relative bias over all valid pixels (NaN if ``sum o == 0``).
* **Categorical scores** for events defined as intervals ``low <= value < high``: a threshold (``ZH >= 35
  dBZ``) is ``[35, inf)``; the QPE rain-rate classes are ``[0.1, 30)``, ``[30, 50)``, ``[50, inf)`` mm/h (the
  lowest class starts at 0.1 mm/h so that dry pixels are not counted as hits of "< 30"). CSI, POD, F (false
  alarm rate) and HK = POD - F come from :func:`prediff.verify.categorical.contingency_scores` (NaN when
  undefined).
* **Neighbourhood (fuzzy) scores**: with window size ``s > 1`` the event fields are max-pooled over
  non-overlapping ``s x s`` windows (:func:`prediff.verify.neighbourhood.block_max`, "any event in the
  window", partial windows at the edge dropped) before counting, for forecast and observation alike.

States stream like :mod:`prediff.verify`: ``*_init`` / ``*_accum`` / ``*_merge`` / ``*_compute``; fields are
``(..., T, H, W)`` with the lead-time axis third from last (give ``n_lead_times=1`` and ``(..., 1, H, W)``
fields for QPE).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from prediff.errors import ConfigError, DataError
from prediff.verify.categorical import contingency_scores
from prediff.verify.fields import safe_ratio
from prediff.verify.neighbourhood import block_max

#: ZH event threshold of the nowcasts (dBZ): ``[35, inf)``.
NOWCAST_EVENTS: tuple[tuple[float, float], ...] = ((35.0, np.inf),)
#: Rain-rate classes of the QPE evaluation (mm/h).
RAIN_CLASSES: tuple[tuple[float, float], ...] = ((0.1, 30.0), (30.0, 50.0), (50.0, np.inf))
COUNT_NAMES = ("hits", "misses", "false_alarms", "correct_negatives")
#: Per-lead-time sums of the continuous scores' state.
CONTINUOUS_SUMS = ("count", "sum_squared_error", "sum_error", "sum_observation", "sum_relative_error",
                   "count_relative")


def _pair(prediction, observation, n_lead_times: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prediction = np.asarray(prediction, dtype=np.float64)
    observation = np.asarray(observation, dtype=np.float64)
    if prediction.shape != observation.shape:
        raise DataError(f"prediction shape {prediction.shape} differs from observation shape {observation.shape}")
    if prediction.ndim < 3 or prediction.shape[-3] != n_lead_times:
        raise DataError(f"fields of shape {prediction.shape} must be (..., T, H, W) with T = {n_lead_times}")
    shape = (-1,) + prediction.shape[-3:]
    prediction, observation = prediction.reshape(shape), observation.reshape(shape)
    valid = np.isfinite(prediction) & np.isfinite(observation)
    return np.where(valid, prediction, 0.0), np.where(valid, observation, 0.0), valid


def continuous_init(n_lead_times: int = 1, min_observation: float = 0.1) -> dict:
    """Start MSE / MRE / RBIAS sums (float64, shape (T,)); ``min_observation`` is MRE's ``o_min``."""
    zeros = np.zeros(n_lead_times)
    return {"n_lead_times": int(n_lead_times), "min_observation": float(min_observation),
            "count": zeros.copy(), "sum_squared_error": zeros.copy(), "sum_error": zeros.copy(),
            "sum_observation": zeros.copy(), "sum_relative_error": zeros.copy(), "count_relative": zeros.copy()}


def continuous_accum(state: dict, prediction, observation) -> None:
    """Add (..., T, H, W) prediction / observation pairs (physical units, NaN = missing) to the sums."""
    prediction, observation, valid = _pair(prediction, observation, state["n_lead_times"])
    error = prediction - observation
    axes = (0, 2, 3)
    state["count"] += valid.sum(axis=axes)
    state["sum_squared_error"] += (error ** 2).sum(axis=axes)
    state["sum_error"] += error.sum(axis=axes)
    state["sum_observation"] += observation.sum(axis=axes)
    relative = valid & (observation >= state["min_observation"])
    state["sum_relative_error"] += np.where(relative, np.abs(error) / np.where(relative, observation, 1.0),
                                            0.0).sum(axis=axes)
    state["count_relative"] += relative.sum(axis=axes)


def _merged(first: dict, second: dict, summed: Sequence[str]) -> dict:
    """A state whose ``summed`` arrays are the sums of both; every other entry (the settings) must agree."""
    different = sorted(key for key in first.keys() - set(summed) if not np.array_equal(first[key], second[key]))
    if different or first.keys() != second.keys():
        raise ConfigError(f"cannot merge score states with different settings ({', '.join(different) or 'keys'}); "
                          "accumulate both with the same *_init arguments")
    return {**first, **{name: first[name] + second[name] for name in summed}}


def continuous_merge(first: dict, second: dict) -> dict:
    """Return a state holding both accumulations (same lead times and ``min_observation``)."""
    return _merged(first, second, CONTINUOUS_SUMS)


def continuous_compute(state: dict) -> dict:
    """MSE, MRE, RBIAS per lead time (``per_lead_time``, shape (T,)) and over all (``all``, scalars)."""
    def scores(count, sse, se, so, sre, cr):
        return {"MSE": safe_ratio(sse, count), "MRE": safe_ratio(sre, cr), "RBIAS": safe_ratio(se, so),
                "count": count}

    return {"per_lead_time": scores(*(state[k] for k in CONTINUOUS_SUMS)),
            "all": {name: float(value) for name, value in scores(*(state[k].sum() for k in CONTINUOUS_SUMS)).items()}}


def categorical_init(events: Sequence[tuple[float, float]], n_lead_times: int = 1,
                     window_sizes: Sequence[int] = (1,)) -> dict:
    """Start contingency counts for interval events ``[low, high)`` and neighbourhood windows.

    Returns
    -------
    dict with ``events`` (K, 2) float64, ``window_sizes`` tuple (S), and int64 counts of shape (S, K, T).
    """
    events = np.asarray(events, dtype=np.float64).reshape(-1, 2)
    window_sizes = tuple(int(s) for s in window_sizes)
    if events.shape[0] == 0 or np.any(events[:, 1] <= events[:, 0]):
        raise ConfigError(f"events must be non-empty intervals (low, high) with low < high, got {events.tolist()}")
    if not window_sizes or min(window_sizes) < 1:
        raise ConfigError(f"window sizes must be positive integers (pixels), got {window_sizes}")
    shape = (len(window_sizes), events.shape[0], int(n_lead_times))
    state = {"events": events, "window_sizes": window_sizes, "n_lead_times": int(n_lead_times)}
    state.update({name: np.zeros(shape, dtype=np.int64) for name in COUNT_NAMES})
    return state


def categorical_accum(state: dict, prediction, observation) -> None:
    """Add (..., T, H, W) prediction / observation pairs (physical units, NaN = missing) to the counts."""
    prediction, observation, valid = _pair(prediction, observation, state["n_lead_times"])
    for k, (low, high) in enumerate(state["events"]):
        forecast_event = ((prediction >= low) & (prediction < high)).astype(np.float64)
        observed_event = ((observation >= low) & (observation < high)).astype(np.float64)
        for s, size in enumerate(state["window_sizes"]):
            pooled_forecast, pooled_valid = block_max(forecast_event, valid, size)
            pooled_observed, _ = block_max(observed_event, valid, size)
            yes_f, yes_o = pooled_forecast > 0.5, pooled_observed > 0.5
            axes = (0, 2, 3)
            state["hits"][s, k] += np.count_nonzero(yes_f & yes_o & pooled_valid, axis=axes)
            state["misses"][s, k] += np.count_nonzero(~yes_f & yes_o & pooled_valid, axis=axes)
            state["false_alarms"][s, k] += np.count_nonzero(yes_f & ~yes_o & pooled_valid, axis=axes)
            state["correct_negatives"][s, k] += np.count_nonzero(~yes_f & ~yes_o & pooled_valid, axis=axes)


def categorical_merge(first: dict, second: dict) -> dict:
    """Return a state holding the counts of both (same events, windows and lead times)."""
    return _merged(first, second, COUNT_NAMES)


def categorical_compute(state: dict) -> dict:
    """CSI, POD, F, HK (and the other textbook scores) per window, event and lead time, and over all lead times.

    Returns
    -------
    dict with ``events`` (K, 2), ``window_sizes`` (S,), ``per_lead_time``: scores and counts of shape (S, K, T),
    ``all_lead_times``: the same from the counts summed over lead time, shape (S, K).
    """
    counts = {name: state[name] for name in COUNT_NAMES}
    totals = {name: value.sum(axis=-1) for name, value in counts.items()}
    return {"events": state["events"], "window_sizes": np.asarray(state["window_sizes"]),
            "per_lead_time": dict(counts, **contingency_scores(*counts.values())),
            "all_lead_times": dict(totals, **contingency_scores(*totals.values()))}


def event_label(event: Sequence[float], units: str) -> str:
    """Readable name of an interval event: (35, inf) -> ``">=35 dBZ"``, (30, 50) -> ``"30-50 mm/h"``."""
    low, high = event
    if np.isinf(high):
        return f">={low:g} {units}"
    return f"{low:g}-{high:g} {units}"
