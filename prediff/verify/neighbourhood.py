"""Neighbourhood verification: block max-pooling ("any event in the window") and the fractions skill score.

Two neighbourhood views of a forecast that is roughly right but slightly misplaced:

* **Block max-pooling** (:func:`block_max`): the field is cut into non-overlapping ``s x s`` blocks
  (kernel = stride = s, rows/columns beyond the last whole block are dropped, as ``max_pool2d`` without
  padding does). A block's value is the maximum of its valid pixels, so after thresholding a block is an event
  when *any* valid pixel in it reaches the threshold. Applied to forecast and observation alike, it gives the
  pooled CSI of the Earthformer / PreDiff papers (pool 4 and 16) and the fuzzy "upscaling, any event in the
  window" POD / F / HK: both come from :mod:`prediff.verify.categorical` with ``pool_sizes``.
* **Fractions skill score** (FSS, Roberts & Lean 2008), streamed with ``fss_init`` / ``fss_accum`` /
  ``fss_merge`` / ``fss_compute`` like :mod:`pysteps.verification.spatialscores`.

Missing pixels (NaN or 255): a pixel counts only where forecast and observation are both valid. In a pooled
block, invalid pixels are skipped; a block with no valid pixel is missing. In FSS windows, invalid pixels count
as non-events (the window is still divided by its full area, ``s * s``, and zero-padded at the domain edge,
exactly as pysteps does), and window centres where either field is invalid are left out of the sums.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.ndimage import uniform_filter

from prediff.data.vil import SEVIR_THRESHOLDS
from prediff.errors import ConfigError
from prediff.verify.fields import as_frames, lead_times_minutes, safe_ratio, valid_pixels

#: Neighbourhood sizes (pixels) used by default for FSS; on SEVIR-LR one pixel is 3 km.
DEFAULT_FSS_SCALES: tuple[int, ...] = (1, 5, 9, 17, 33)


def block_max(values: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool a field over non-overlapping ``size x size`` blocks, skipping invalid pixels.

    Parameters
    ----------
    values : (..., H, W) float64 VIL pixels (values at invalid pixels are ignored).
    valid : (..., H, W) bool, True where the pixel takes part.
    size : block edge in pixels (kernel = stride); 1 returns the inputs unchanged.

    Returns
    -------
    pooled : (..., H // size, W // size) float64, maximum over the valid pixels of each block (0 where none).
    pooled_valid : (..., H // size, W // size) bool, True where the block holds at least one valid pixel.
    """
    if size == 1:
        return values, valid
    height, width = values.shape[-2] // size, values.shape[-1] // size
    if height == 0 or width == 0:
        raise ConfigError(f"pool size {size} is larger than the field ({values.shape[-2]}x{values.shape[-1]} "
                          "pixels); choose pool sizes no larger than the image")
    crop = (..., slice(0, height * size), slice(0, width * size))
    block_shape = values.shape[:-2] + (height, size, width, size)
    blocks = np.where(valid[crop], values[crop], -np.inf).reshape(block_shape)
    pooled_valid = valid[crop].reshape(block_shape).any(axis=(-3, -1))
    pooled = blocks.max(axis=(-3, -1))
    return np.where(pooled_valid, pooled, 0.0), pooled_valid


def _check_sizes(sizes: Sequence[int], what: str) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in sizes)
    if not sizes or any(s < 1 for s in sizes):
        raise ConfigError(f"{what} must be a non-empty list of positive integers (pixels), got {sizes}")
    return sizes


def fss_init(thresholds: Sequence[float] = SEVIR_THRESHOLDS, scales: Sequence[int] = DEFAULT_FSS_SCALES,
             n_lead_times: int = 6) -> dict:
    """Start an FSS accumulation.

    Parameters
    ----------
    thresholds : event thresholds, VIL pixel 0-255; an event is ``value >= threshold``.
    scales : neighbourhood (square window) edges in pixels; 1 = pixel-wise.
    n_lead_times : length of the lead-time axis of the fields to come.

    Returns
    -------
    dict state with float64 sums of shape (n_scales, n_thresholds, n_lead_times):
    ``sum_forecast_sq``, ``sum_forecast_observation``, ``sum_observation_sq``.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    scales = _check_sizes(scales, "FSS scales")
    shape = (len(scales), thresholds.size, n_lead_times)
    return {"thresholds": thresholds, "scales": scales, "n_lead_times": n_lead_times,
            "sum_forecast_sq": np.zeros(shape), "sum_forecast_observation": np.zeros(shape),
            "sum_observation_sq": np.zeros(shape)}


def fss_accum(state: dict, forecast, observation) -> None:
    """Add forecast/observation pairs to an FSS state (in place).

    Parameters
    ----------
    state : from :func:`fss_init`.
    forecast, observation : (..., T, H, W) VIL pixels (uint8 or float; NaN / 255 = missing).
    """
    forecast, observation = as_frames(forecast, observation, state["n_lead_times"])
    forecast, forecast_valid = valid_pixels(forecast)
    observation, observation_valid = valid_pixels(observation)
    valid = forecast_valid & observation_valid
    for k, threshold in enumerate(state["thresholds"]):
        forecast_event = ((forecast >= threshold) & valid).astype(np.float64)
        observation_event = ((observation >= threshold) & valid).astype(np.float64)
        for s, scale in enumerate(state["scales"]):
            if scale > 1:
                # only the image axes are smoothed: size 1 on the window and lead-time axes
                window = (1, 1, scale, scale)
                forecast_fraction = uniform_filter(forecast_event, size=window, mode="constant", cval=0.0)
                observation_fraction = uniform_filter(observation_event, size=window, mode="constant", cval=0.0)
            else:
                forecast_fraction, observation_fraction = forecast_event, observation_event
            forecast_fraction = np.where(valid, forecast_fraction, 0.0)
            observation_fraction = np.where(valid, observation_fraction, 0.0)
            state["sum_forecast_sq"][s, k] += (forecast_fraction ** 2).sum(axis=(0, 2, 3))
            state["sum_forecast_observation"][s, k] += (forecast_fraction * observation_fraction).sum(axis=(0, 2, 3))
            state["sum_observation_sq"][s, k] += (observation_fraction ** 2).sum(axis=(0, 2, 3))


def fss_merge(first: dict, second: dict) -> dict:
    """Return a new FSS state holding both accumulations (same thresholds, scales and lead times)."""
    if (not np.array_equal(first["thresholds"], second["thresholds"]) or first["scales"] != second["scales"]
            or first["n_lead_times"] != second["n_lead_times"]):
        raise ConfigError("cannot merge FSS states with different thresholds, scales or lead times")
    merged = dict(first)
    for key in ("sum_forecast_sq", "sum_forecast_observation", "sum_observation_sq"):
        merged[key] = first[key] + second[key]
    return merged


def fss_compute(state: dict) -> dict:
    """Compute FSS per scale, threshold and lead time, and over all lead times.

    ``FSS = 1 - sum (F - O)^2 / (sum F^2 + sum O^2)`` with F, O the event fractions in each window; NaN when
    neither field has an event anywhere (denominator 0).

    Returns
    -------
    dict with ``thresholds`` (K,), ``scales`` (S,), ``lead_time_minutes`` (T,),
    ``per_lead_time``: {``"FSS"``: (S, K, T) float64} and ``all_lead_times``: {``"FSS"``: (S, K) float64, from
    the sums over every lead time}.
    """
    def score(sum_ff, sum_fo, sum_oo):
        return 1.0 - safe_ratio(sum_ff - 2.0 * sum_fo + sum_oo, sum_ff + sum_oo)

    sums = (state["sum_forecast_sq"], state["sum_forecast_observation"], state["sum_observation_sq"])
    return {"thresholds": state["thresholds"], "scales": np.asarray(state["scales"]),
            "lead_time_minutes": lead_times_minutes(state["n_lead_times"]),
            "per_lead_time": {"FSS": score(*sums)},
            "all_lead_times": {"FSS": score(*(total.sum(axis=-1) for total in sums))}}
