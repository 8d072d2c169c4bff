"""Probabilistic scores of an ensemble forecast: CRPS, spread-skill, rank histogram, Brier / reliability / ROC.

Ensembles are ``(..., M, T, H, W)`` VIL pixels with the member axis right before lead time; the observation is
``(..., T, H, W)``. A pixel takes part only where the observation and *every* member are valid (not NaN, not
255). Each score streams with ``*_init`` / ``*_accum`` / ``*_merge`` / ``*_compute`` and reports per lead time
and over all lead times, like the deterministic scores.

* CRPS (Hersbach 2000; Gneiting & Raftery 2007) of the ensemble's empirical distribution,
  ``CRPS = 1/M sum_i |x_i - y| - 1/(2 M^2) sum_{i,j} |x_i - x_j|`` (what pysteps ``probscores.CRPS`` computes),
  and the *fair* CRPS (Ferro 2014) with ``1/(2 M (M - 1))`` in the second term, which does not reward small
  ensembles. Reported on the [0, 1] scale (``CRPS``, ``CRPS_fair``) and in VIL pixels (``*_pixel``).
* Spread-skill: ``spread`` = sqrt(mean unbiased ensemble variance), ``skill`` = RMSE of the ensemble mean,
  ``spread_skill_ratio`` = sqrt((M + 1) / M) * spread / skill (Fortin et al. 2014), ~1 for a reliable ensemble.
* Rank histogram (Hamill 2001): rank = number of members below the observation, ties split uniformly at random
  (seeded), optional ``min_value`` as pysteps' ``X_min``.
* Exceedance events (``value >= threshold``): the forecast probability is the fraction of members at or above
  the threshold, ``k / M``. Counts of events / non-events per ``k`` give exactly the Brier score and its
  decomposition (reliability - resolution + uncertainty), the reliability diagram (one point per ``k``) and the
  ROC curve at the probability thresholds ``k / M`` with its trapezoidal area.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from prediff.data.vil import SEVIR_THRESHOLDS
from prediff.errors import ConfigError, DataError
from prediff.verify.fields import as_ensemble_frames, lead_times_minutes, safe_ratio, valid_pixels


def _valid_ensemble(ensemble: np.ndarray, observation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, M, T, H, W) and (N, T, H, W) pixels -> float64 values and the (N, T, H, W) joint validity."""
    members, members_valid = valid_pixels(ensemble)
    observed, observed_valid = valid_pixels(observation)
    return members, observed, observed_valid & members_valid.all(axis=1)


def ensemble_mean(ensemble) -> np.ndarray:
    """Ensemble mean, (..., M, T, H, W) VIL pixels -> (..., T, H, W) float64; NaN where any member is missing."""
    members, valid = valid_pixels(ensemble)
    return np.where(valid.all(axis=-4), members.mean(axis=-4), np.nan)


def ensemble_spread(ensemble) -> np.ndarray:
    """Ensemble standard deviation (unbiased, ddof=1), (..., M, T, H, W) -> (..., T, H, W) float64 VIL pixels.

    NaN where any member is missing. Needs M >= 2.
    """
    members, valid = valid_pixels(ensemble)
    if members.ndim < 4 or members.shape[-4] < 2:
        raise DataError(f"ensemble spread needs at least 2 members on axis -4, got shape {members.shape}")
    return np.where(valid.all(axis=-4), members.std(axis=-4, ddof=1), np.nan)


def exceedance_probability(ensemble, thresholds: Sequence[float] = SEVIR_THRESHOLDS) -> np.ndarray:
    """Probability of ``value >= threshold``: the fraction of members at or above each threshold.

    Parameters
    ----------
    ensemble : (..., M, T, H, W) VIL pixels; NaN / 255 = missing.
    thresholds : (K,) VIL pixel thresholds.

    Returns
    -------
    (K, ..., T, H, W) float64 in [0, 1] (multiples of 1/M); NaN where any member is missing.
    """
    members, valid = valid_pixels(ensemble)
    all_valid = valid.all(axis=-4)
    return np.stack([np.where(all_valid, (members >= threshold).mean(axis=-4), np.nan)
                     for threshold in np.asarray(thresholds, dtype=np.float64).reshape(-1)])


def _check_merge(first: dict, second: dict, keys: Sequence[str], what: str) -> dict:
    for key in keys:
        if not np.array_equal(np.asarray(first[key]), np.asarray(second[key])):
            raise ConfigError(f"cannot merge {what} states with different {key}")
    return dict(first)


def _lead_time_tables(n_lead_times: int, per_lead_time: dict, all_lead_times: dict) -> dict:
    return {"lead_time_minutes": lead_times_minutes(n_lead_times),
            "per_lead_time": per_lead_time, "all_lead_times": all_lead_times}


# ---------------------------------------------------------------- CRPS
def crps_init(n_members: int, n_lead_times: int = 6) -> dict:
    """Start a CRPS accumulation for ``n_members``-member ensembles.

    Returns
    -------
    dict state with (T,) sums: ``crps_sum`` and ``crps_fair_sum`` (float64, VIL pixel units), ``pairs`` (int64).
    """
    if n_members < 1 or n_lead_times < 1:
        raise ConfigError(f"need n_members >= 1 and n_lead_times >= 1, got {n_members} and {n_lead_times}")
    return {"n_members": int(n_members), "n_lead_times": int(n_lead_times), "crps_sum": np.zeros(n_lead_times),
            "crps_fair_sum": np.zeros(n_lead_times), "pairs": np.zeros(n_lead_times, dtype=np.int64)}


def crps_pixelwise(ensemble: np.ndarray, observation: np.ndarray, fair: bool = False) -> np.ndarray:
    """Pixel-wise ensemble CRPS.

    Parameters
    ----------
    ensemble : (N, M, ...) float64 members (member axis 1).
    observation : (N, ...) float64.
    fair : False = CRPS of the empirical distribution; True = fair CRPS (needs M >= 2).

    Returns
    -------
    (N, ...) float64 CRPS in the input's units.
    """
    n_members = ensemble.shape[1]
    absolute_error = np.abs(ensemble - observation[:, None]).mean(axis=1)
    ordered = np.sort(ensemble, axis=1)
    # sum_{i<j} |x_i - x_j| over sorted members = sum_i (2 i - M + 1) x_(i), i = 0..M-1
    weights = (2.0 * np.arange(n_members) - n_members + 1.0).reshape((1, n_members) + (1,) * (ensemble.ndim - 2))
    pair_sum = (weights * ordered).sum(axis=1)
    denominator = n_members * (n_members - 1) if fair else n_members ** 2
    if denominator == 0:
        raise DataError("the fair CRPS needs at least 2 ensemble members")
    return absolute_error - pair_sum / denominator


def crps_accum(state: dict, ensemble, observation) -> None:
    """Add ensemble/observation pairs (in place).

    Parameters
    ----------
    state : from :func:`crps_init`.
    ensemble : (..., M, T, H, W) VIL pixels; observation : (..., T, H, W) VIL pixels.
    """
    ensemble, observation = as_ensemble_frames(ensemble, observation, state["n_lead_times"], state["n_members"])
    members, observed, valid = _valid_ensemble(ensemble, observation)
    crps = np.where(valid, crps_pixelwise(members, observed), 0.0)
    state["crps_sum"] += crps.sum(axis=(0, 2, 3))
    if state["n_members"] >= 2:
        fair = np.where(valid, crps_pixelwise(members, observed, fair=True), 0.0)
        state["crps_fair_sum"] += fair.sum(axis=(0, 2, 3))
    state["pairs"] += np.count_nonzero(valid, axis=(0, 2, 3))


def crps_merge(first: dict, second: dict) -> dict:
    """Return a new CRPS state holding both accumulations."""
    merged = _check_merge(first, second, ("n_members", "n_lead_times"), "CRPS")
    for key in ("crps_sum", "crps_fair_sum", "pairs"):
        merged[key] = first[key] + second[key]
    return merged


def crps_compute(state: dict) -> dict:
    """Mean CRPS per lead time and over all lead times.

    Returns
    -------
    dict with ``lead_time_minutes`` and tables ``per_lead_time`` ((T,) arrays) / ``all_lead_times`` (scalars) of
    ``CRPS``, ``CRPS_fair`` ([0, 1] scale), ``CRPS_pixel``, ``CRPS_fair_pixel`` (VIL pixels) and ``pairs``.
    ``CRPS_fair*`` is NaN for a one-member "ensemble"; everything is NaN without valid pairs.
    """
    def table(crps_sum, fair_sum, pairs):
        crps = safe_ratio(crps_sum, pairs)
        fair = safe_ratio(fair_sum, pairs) if state["n_members"] >= 2 else np.full_like(crps, np.nan)
        return {"CRPS": crps / 255.0, "CRPS_fair": fair / 255.0, "CRPS_pixel": crps, "CRPS_fair_pixel": fair,
                "pairs": pairs}

    sums = (state["crps_sum"], state["crps_fair_sum"], state["pairs"])
    return _lead_time_tables(state["n_lead_times"], table(*sums), table(*(s.sum() for s in sums)))


# ---------------------------------------------------------------- spread-skill
def spread_skill_init(n_members: int, n_lead_times: int = 6) -> dict:
    """Start a spread-skill accumulation (needs M >= 2).

    Returns
    -------
    dict state with (T,) float64 sums ``sum_variance`` (unbiased ensemble variance), ``sum_squared_error`` (of
    the ensemble mean), both in VIL pixel^2, and int64 ``pairs``.
    """
    if n_members < 2 or n_lead_times < 1:
        raise ConfigError(f"spread-skill needs n_members >= 2 and n_lead_times >= 1, got {n_members}, "
                          f"{n_lead_times}")
    return {"n_members": int(n_members), "n_lead_times": int(n_lead_times), "sum_variance": np.zeros(n_lead_times),
            "sum_squared_error": np.zeros(n_lead_times), "pairs": np.zeros(n_lead_times, dtype=np.int64)}


def spread_skill_accum(state: dict, ensemble, observation) -> None:
    """Add ensemble/observation pairs (in place); shapes as in :func:`crps_accum`."""
    ensemble, observation = as_ensemble_frames(ensemble, observation, state["n_lead_times"], state["n_members"])
    members, observed, valid = _valid_ensemble(ensemble, observation)
    variance = np.where(valid, members.var(axis=1, ddof=1), 0.0)
    squared_error = np.where(valid, (members.mean(axis=1) - observed) ** 2, 0.0)
    state["sum_variance"] += variance.sum(axis=(0, 2, 3))
    state["sum_squared_error"] += squared_error.sum(axis=(0, 2, 3))
    state["pairs"] += np.count_nonzero(valid, axis=(0, 2, 3))


def spread_skill_merge(first: dict, second: dict) -> dict:
    """Return a new spread-skill state holding both accumulations."""
    merged = _check_merge(first, second, ("n_members", "n_lead_times"), "spread-skill")
    for key in ("sum_variance", "sum_squared_error", "pairs"):
        merged[key] = first[key] + second[key]
    return merged


def spread_skill_compute(state: dict) -> dict:
    """Spread, skill and their ratio per lead time and over all lead times.

    Returns
    -------
    dict with ``lead_time_minutes`` and tables of ``spread_pixel`` (sqrt of the mean unbiased variance),
    ``ensemble_mean_rmse_pixel`` (VIL pixels) and ``spread_skill_ratio`` = sqrt((M+1)/M) spread / RMSE
    (NaN where the RMSE is 0 or nothing was seen).
    """
    factor = np.sqrt((state["n_members"] + 1.0) / state["n_members"])

    def table(sum_variance, sum_squared_error, pairs):
        spread = np.sqrt(safe_ratio(sum_variance, pairs))
        rmse = np.sqrt(safe_ratio(sum_squared_error, pairs))
        return {"spread_pixel": spread, "ensemble_mean_rmse_pixel": rmse,
                "spread_skill_ratio": factor * safe_ratio(spread, rmse), "pairs": pairs}

    sums = (state["sum_variance"], state["sum_squared_error"], state["pairs"])
    return _lead_time_tables(state["n_lead_times"], table(*sums), table(*(s.sum() for s in sums)))


# ---------------------------------------------------------------- rank histogram
def rank_histogram_init(n_members: int, n_lead_times: int = 6, min_value: float | None = None,
                        seed: int = 0) -> dict:
    """Start a rank-histogram accumulation.

    Parameters
    ----------
    n_members : M; the histogram has M + 1 bins.
    n_lead_times : length of the lead-time axis.
    min_value : VIL pixel; pairs where the observation and all members are below it are skipped, and values
        below it are treated as equal (pysteps ``X_min``). None keeps every pair.
    seed : seed of the generator that splits ties; results are reproducible for a fixed order of ``accum``.

    Returns
    -------
    dict state with int64 ``counts`` (T, M + 1).
    """
    if n_members < 1 or n_lead_times < 1:
        raise ConfigError(f"need n_members >= 1 and n_lead_times >= 1, got {n_members} and {n_lead_times}")
    return {"n_members": int(n_members), "n_lead_times": int(n_lead_times), "min_value": min_value,
            "rng": np.random.default_rng(seed), "counts": np.zeros((n_lead_times, n_members + 1), dtype=np.int64)}


def rank_histogram_accum(state: dict, ensemble, observation) -> None:
    """Add ensemble/observation pairs (in place); shapes as in :func:`crps_accum`."""
    ensemble, observation = as_ensemble_frames(ensemble, observation, state["n_lead_times"], state["n_members"])
    members, observed, valid = _valid_ensemble(ensemble, observation)
    min_value = state["min_value"]
    if min_value is not None:
        valid &= (observed >= min_value) | (members >= min_value).any(axis=1)
        # everything below min_value is "dry": make it one value so that dry members and observation tie
        members = np.where(members < min_value, min_value - 1.0, members)
        observed = np.where(observed < min_value, min_value - 1.0, observed)
    below = (members < observed[:, None]).sum(axis=1)
    tied = (members == observed[:, None]).sum(axis=1)
    uniform = state["rng"].random(observed.shape)
    rank = below + np.floor(uniform * (tied + 1)).astype(np.int64)
    n_bins = state["n_members"] + 1
    for t in range(state["n_lead_times"]):
        state["counts"][t] += np.bincount(rank[:, t][valid[:, t]], minlength=n_bins)


def rank_histogram_merge(first: dict, second: dict) -> dict:
    """Return a new rank-histogram state holding both counts (the first state's generator is kept)."""
    merged = _check_merge(first, second, ("n_members", "n_lead_times"), "rank-histogram")
    merged["counts"] = first["counts"] + second["counts"]
    return merged


def rank_histogram_compute(state: dict) -> dict:
    """Rank histograms per lead time and over all lead times.

    Returns
    -------
    dict with ``lead_time_minutes`` and tables of ``counts`` (int64, (T, M + 1) / (M + 1,)) and ``frequency``
    (counts normalised to sum 1; NaN without pairs).
    """
    counts = state["counts"]
    total = counts.sum(axis=0)
    return _lead_time_tables(
        state["n_lead_times"],
        {"counts": counts, "frequency": safe_ratio(counts, counts.sum(axis=1, keepdims=True))},
        {"counts": total, "frequency": safe_ratio(total, total.sum())})


# ---------------------------------------------------------------- exceedance events: Brier, reliability, ROC
def exceedance_init(n_members: int, thresholds: Sequence[float] = SEVIR_THRESHOLDS, n_lead_times: int = 6) -> dict:
    """Start the accumulation behind Brier score, reliability diagram and ROC for exceedance events.

    Returns
    -------
    dict state with int64 ``events`` and ``non_events`` of shape (K, T, M + 1): how often the observation did /
    did not reach the threshold when ``k`` of the M members did.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if n_members < 1 or n_lead_times < 1 or thresholds.size == 0:
        raise ConfigError("need n_members >= 1, n_lead_times >= 1 and at least one threshold")
    shape = (thresholds.size, n_lead_times, n_members + 1)
    return {"n_members": int(n_members), "n_lead_times": int(n_lead_times), "thresholds": thresholds,
            "events": np.zeros(shape, dtype=np.int64), "non_events": np.zeros(shape, dtype=np.int64)}


def exceedance_accum(state: dict, ensemble, observation) -> None:
    """Add ensemble/observation pairs (in place); shapes as in :func:`crps_accum`."""
    ensemble, observation = as_ensemble_frames(ensemble, observation, state["n_lead_times"], state["n_members"])
    members, observed, valid = _valid_ensemble(ensemble, observation)
    n_bins = state["n_members"] + 1
    for k, threshold in enumerate(state["thresholds"]):
        members_above = (members >= threshold).sum(axis=1)
        observed_event = observed >= threshold
        for t in range(state["n_lead_times"]):
            used = valid[:, t]
            event = observed_event[:, t][used]
            above = members_above[:, t][used]
            state["events"][k, t] += np.bincount(above[event], minlength=n_bins)
            state["non_events"][k, t] += np.bincount(above[~event], minlength=n_bins)


def exceedance_merge(first: dict, second: dict) -> dict:
    """Return a new exceedance state holding both accumulations."""
    merged = _check_merge(first, second, ("n_members", "n_lead_times", "thresholds"), "exceedance")
    merged["events"] = first["events"] + second["events"]
    merged["non_events"] = first["non_events"] + second["non_events"]
    return merged


def _exceedance_scores(events: np.ndarray, non_events: np.ndarray, n_members: int) -> dict:
    """Scores from (..., M + 1) event / non-event counts indexed by the number of members above threshold."""
    probability = np.arange(n_members + 1) / n_members
    in_bin = events + non_events
    total = in_bin.sum(axis=-1)
    total_events = events.sum(axis=-1)
    climatology = safe_ratio(total_events, total)
    observed_frequency = safe_ratio(events, in_bin)
    filled_frequency = np.nan_to_num(observed_frequency)
    brier = safe_ratio((events * (1.0 - probability) ** 2 + non_events * probability ** 2).sum(axis=-1), total)
    reliability = safe_ratio((in_bin * (probability - filled_frequency) ** 2).sum(axis=-1), total)
    resolution = safe_ratio((in_bin * (filled_frequency - climatology[..., None]) ** 2).sum(axis=-1), total)
    uncertainty = climatology * (1.0 - climatology)
    # ROC: "yes" when at least j members exceed, j = 0..M, then the (0, 0) end point
    hits = np.flip(np.cumsum(np.flip(events, -1), -1), -1)
    false_alarms = np.flip(np.cumsum(np.flip(non_events, -1), -1), -1)
    pod = safe_ratio(hits, total_events[..., None])
    pofd = safe_ratio(false_alarms, (total - total_events)[..., None])
    pod_closed = np.concatenate([pod, np.zeros(pod.shape[:-1] + (1,))], axis=-1)
    pofd_closed = np.concatenate([pofd, np.zeros(pofd.shape[:-1] + (1,))], axis=-1)
    auc = (0.5 * (pofd_closed[..., :-1] - pofd_closed[..., 1:]) * (pod_closed[..., :-1] + pod_closed[..., 1:])).sum(-1)
    return {"brier_score": brier, "brier_reliability": reliability, "brier_resolution": resolution,
            "brier_uncertainty": uncertainty, "brier_skill_score": 1.0 - safe_ratio(brier, uncertainty),
            "forecast_probability": probability, "observed_frequency": observed_frequency, "bin_count": in_bin,
            "roc_pod": pod, "roc_pofd": pofd, "roc_auc": auc, "base_rate": climatology}


def exceedance_compute(state: dict) -> dict:
    """Brier score (with decomposition), reliability diagram and ROC per threshold and lead time.

    Returns
    -------
    dict with ``thresholds`` (K,), ``lead_time_minutes`` (T,) and tables ``per_lead_time`` (leading axes (K, T))
    and ``all_lead_times`` (leading axis (K,)) holding:

    * ``brier_score``, ``brier_reliability``, ``brier_resolution``, ``brier_uncertainty`` (BS = REL - RES + UNC),
      ``brier_skill_score`` = 1 - BS / UNC, ``base_rate`` (observed event frequency);
    * reliability diagram: ``forecast_probability`` (M + 1,) = k / M, ``observed_frequency`` (..., M + 1) (NaN
      for an empty bin), ``bin_count`` (..., M + 1) for the sharpness histogram;
    * ROC: ``roc_pod``, ``roc_pofd`` (..., M + 1) for "at least k members exceed", k = 0..M (probability
      threshold k / M), and ``roc_auc``, the trapezoidal area including the (0, 0) and (1, 1) corners.

    Undefined values (no event / no non-event observed) are NaN.
    """
    events, non_events = state["events"], state["non_events"]
    return {"thresholds": state["thresholds"], "lead_time_minutes": lead_times_minutes(state["n_lead_times"]),
            "per_lead_time": _exceedance_scores(events, non_events, state["n_members"]),
            "all_lead_times": _exceedance_scores(events.sum(axis=1), non_events.sum(axis=1), state["n_members"])}
