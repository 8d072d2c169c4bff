"""Categorical (yes/no) scores at VIL thresholds: the SEVIR CSI / POD / SUCR / BIAS family and friends.

An *event* is ``value >= threshold`` (VIL pixel scale; a pixel exactly at the threshold is an event, as in the
SEVIR / Earthformer / PreDiff code; note pysteps uses ``>``). Contingency counts are int64 and accumulated over
the whole evaluated set (aggregate counts, not per-sample averages), separately per pool size, threshold and
lead time, with ``categorical_init`` / ``categorical_accum`` / ``categorical_merge`` / ``categorical_compute``.

Pooled variants (``pool_sizes``, e.g. ``(1, 4, 16)``) max-pool forecast and observation over non-overlapping
``s x s`` blocks before thresholding (:func:`prediff.verify.neighbourhood.block_max`); pool 1 is pixel-wise.
The same counts give the fuzzy "any event in the window" POD / F / HK.

Scores are the textbook ones (Jolliffe & Stephenson 2012; pysteps ``det_cat_fct``) and are NaN when undefined
(zero denominator), e.g. CSI when ``h + m + f == 0``. ``reference_compatible=True`` reproduces the MindEarth
PreDiff reference instead (``eps = 1e-4`` in the denominators of CSI / POD / SUCR, plus its non-standard
"bias" as ``reference_legacy_bias``); use it only for parity with published MindEarth numbers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from prediff.data.vil import SEVIR_THRESHOLDS
from prediff.errors import ConfigError
from prediff.verify.fields import as_frames, lead_times_minutes, safe_ratio, valid_pixels
from prediff.verify.neighbourhood import block_max

#: Small constant the MindEarth reference adds to the denominators of POD / SUCR / CSI / "BIAS".
REFERENCE_EPS = 1e-4

COUNT_NAMES = ("hits", "misses", "false_alarms", "correct_negatives")


def categorical_init(thresholds: Sequence[float] = SEVIR_THRESHOLDS, n_lead_times: int = 6,
                     pool_sizes: Sequence[int] = (1,)) -> dict:
    """Start a contingency-table accumulation.

    Parameters
    ----------
    thresholds : event thresholds, VIL pixel 0-255 (default the SEVIR ones 16, 74, 133, 160, 181, 219).
    n_lead_times : length of the lead-time axis of the fields to come.
    pool_sizes : block sizes (pixels) to max-pool over before thresholding; 1 = no pooling.

    Returns
    -------
    dict state: ``thresholds`` (K,) float64, ``pool_sizes`` tuple (P), ``n_lead_times``, and int64 counts
    ``hits``, ``misses``, ``false_alarms``, ``correct_negatives`` of shape (P, K, T).
    """
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    pool_sizes = tuple(int(s) for s in pool_sizes)
    if thresholds.size == 0 or not pool_sizes or any(s < 1 for s in pool_sizes):
        raise ConfigError(f"need at least one threshold and positive pool sizes, got thresholds {thresholds} "
                          f"and pool sizes {pool_sizes}")
    if n_lead_times < 1:
        raise ConfigError(f"n_lead_times must be >= 1, got {n_lead_times}")
    shape = (len(pool_sizes), thresholds.size, n_lead_times)
    state = {"thresholds": thresholds, "pool_sizes": pool_sizes, "n_lead_times": int(n_lead_times)}
    state.update({name: np.zeros(shape, dtype=np.int64) for name in COUNT_NAMES})
    return state


def categorical_accum(state: dict, forecast, observation) -> None:
    """Add forecast/observation pairs to the contingency tables (in place).

    Parameters
    ----------
    state : from :func:`categorical_init`.
    forecast, observation : (..., T, H, W) VIL pixels 0-255 (uint8 or float); NaN or 255 = missing. Pixels
        where either is missing are skipped.
    """
    forecast, observation = as_frames(forecast, observation, state["n_lead_times"])
    forecast, forecast_valid = valid_pixels(forecast)
    observation, observation_valid = valid_pixels(observation)
    valid = forecast_valid & observation_valid
    for p, size in enumerate(state["pool_sizes"]):
        pooled_forecast, pooled_valid = block_max(forecast, valid, size)
        pooled_observation, _ = block_max(observation, valid, size)
        for k, threshold in enumerate(state["thresholds"]):
            forecast_event = pooled_forecast >= threshold
            observation_event = pooled_observation >= threshold
            # counts per lead time: sum over windows (axis 0) and the image (axes 2, 3)
            axes = (0, 2, 3)
            state["hits"][p, k] += np.count_nonzero(forecast_event & observation_event & pooled_valid, axis=axes)
            state["misses"][p, k] += np.count_nonzero(~forecast_event & observation_event & pooled_valid, axis=axes)
            state["false_alarms"][p, k] += np.count_nonzero(forecast_event & ~observation_event & pooled_valid,
                                                            axis=axes)
            state["correct_negatives"][p, k] += np.count_nonzero(~forecast_event & ~observation_event & pooled_valid,
                                                                 axis=axes)


def categorical_merge(first: dict, second: dict) -> dict:
    """Return a new state holding the counts of both (same thresholds, pool sizes and lead times)."""
    if (not np.array_equal(first["thresholds"], second["thresholds"])
            or first["pool_sizes"] != second["pool_sizes"] or first["n_lead_times"] != second["n_lead_times"]):
        raise ConfigError("cannot merge contingency tables with different thresholds, pool sizes or lead times")
    merged = dict(first)
    for name in COUNT_NAMES:
        merged[name] = first[name] + second[name]
    return merged


def reference_legacy_bias(hits, misses, false_alarms, eps: float = REFERENCE_EPS) -> np.ndarray:
    """The MindEarth reference's "BIAS": ``((h + f) / (h + m + eps) / ln 2) ** 2`` — not the frequency bias.

    Kept only to reproduce published MindEarth numbers; its value for an unbiased forecast is
    ``1 / ln(2)^2 ~ 2.08``, not 1. Inputs are count arrays of any (equal) shape; returns float64.
    """
    hits, misses, false_alarms = (np.asarray(c, dtype=np.float64) for c in (hits, misses, false_alarms))
    return ((hits + false_alarms) / (hits + misses + eps) / np.log(2.0)) ** 2


def contingency_scores(hits, misses, false_alarms, correct_negatives,
                       reference_compatible: bool = False) -> dict[str, np.ndarray]:
    """Scores of 2x2 contingency tables (any array shape, element-wise).

    Parameters
    ----------
    hits, misses, false_alarms, correct_negatives : count arrays of one shape (h, m, f, r).
    reference_compatible : False (default) gives the textbook scores, NaN where undefined. True gives the
        MindEarth reference's CSI / POD / SUCR with ``eps = 1e-4`` added to the denominators and adds
        ``reference_legacy_bias``; the other scores stay textbook.

    Returns
    -------
    dict of float64 arrays of the input shape:
    ``POD`` = h / (h + m) (NaN if no observed event), ``FAR`` = f / (h + f) and ``SUCR`` = 1 - FAR = h / (h + f)
    (NaN if no forecast event), ``CSI`` = h / (h + m + f) (NaN if neither), ``BIAS`` = (h + f) / (h + m)
    (frequency bias; NaN if no observed event), ``F`` = f / (f + r) (false alarm rate / POFD; NaN if no
    observed non-event), ``HK`` = POD - F, ``HSS`` = 2 (h r - f m) / ((h + m)(m + r) + (h + f)(f + r)),
    ``ETS`` = (h - h_r) / (h + m + f - h_r) with h_r = (h + m)(h + f) / n (NaN where a denominator is 0).
    """
    h, m, f, r = (np.asarray(c, dtype=np.float64) for c in (hits, misses, false_alarms, correct_negatives))
    n = h + m + f + r
    hits_random = safe_ratio((h + m) * (h + f), n)
    scores = {
        "POD": safe_ratio(h, h + m),
        "FAR": safe_ratio(f, h + f),
        "SUCR": safe_ratio(h, h + f),
        "CSI": safe_ratio(h, h + m + f),
        "BIAS": safe_ratio(h + f, h + m),
        "F": safe_ratio(f, f + r),
        "HSS": safe_ratio(2.0 * (h * r - f * m), (h + m) * (m + r) + (h + f) * (f + r)),
        "ETS": safe_ratio(h - hits_random, h + m + f - hits_random),
    }
    scores["HK"] = scores["POD"] - scores["F"]
    if reference_compatible:
        scores["POD"] = h / (h + m + REFERENCE_EPS)
        scores["SUCR"] = h / (h + f + REFERENCE_EPS)
        scores["CSI"] = h / (h + m + f + REFERENCE_EPS)
        scores["reference_legacy_bias"] = reference_legacy_bias(h, m, f)
    return scores


def categorical_compute(state: dict, reference_compatible: bool = False) -> dict:
    """Scores per pool size, threshold and lead time, and over all lead times.

    Parameters
    ----------
    state : from :func:`categorical_init` / :func:`categorical_accum`.
    reference_compatible : see :func:`contingency_scores`.

    Returns
    -------
    dict with coordinates ``thresholds`` (K,), ``pool_sizes`` (P,), ``lead_time_minutes`` (T,) and two tables:

    * ``per_lead_time``: counts (``hits`` ...) and scores (:func:`contingency_scores`) of shape (P, K, T),
      plus ``CSI-M`` (P, T), the mean of CSI over the thresholds (NaN if any threshold's CSI is NaN);
    * ``all_lead_times``: the same from the counts summed over lead time, shapes (P, K) and ``CSI-M`` (P,) —
      Earthformer's ``metrics_mode "0"``, the one MindEarth PreDiff reports. In reference-compatible mode CSI-M
      is the reference's "avg" (mean of its eps-CSI);
    * ``mean_over_lead_times``: every score of ``per_lead_time`` averaged over lead time, shapes (P, K) and
      ``CSI-M`` (P,) — Earthformer's ``metrics_mode "2"`` (the SEVIR challenge's ``mCSI = sum_t mCSI_t / T``).
    """
    counts = {name: state[name] for name in COUNT_NAMES}
    totals = {name: value.sum(axis=-1) for name, value in counts.items()}
    per_lead_time_scores = contingency_scores(*counts.values(), reference_compatible=reference_compatible)
    per_lead_time_scores["CSI-M"] = per_lead_time_scores["CSI"].mean(axis=1)
    all_lead_times = dict(totals, **contingency_scores(*totals.values(), reference_compatible=reference_compatible))
    all_lead_times["CSI-M"] = all_lead_times["CSI"].mean(axis=1)
    return {"thresholds": state["thresholds"], "pool_sizes": np.asarray(state["pool_sizes"]),
            "lead_time_minutes": lead_times_minutes(state["n_lead_times"]),
            "per_lead_time": dict(counts, **per_lead_time_scores), "all_lead_times": all_lead_times,
            "mean_over_lead_times": {name: value.mean(axis=-1) for name, value in per_lead_time_scores.items()}}
