"""Array conventions shared by every score: VIL pixel fields, missing pixels and the lead-time axis.

* Fields are VIL pixels 0-255 (uint8 or float). A pixel is *missing* when it is NaN or exactly 255
  (:data:`prediff.data.layout.MISSING_PIXEL`); missing pixels are ignored by every score. A pair
  (forecast, observation) is used only where both are valid. Note that 255.0 is missing even in a forecast:
  keep forecast pixels in 0-254 (SEVIR's valid range) or NaN.
* Deterministic fields have layout ``(..., T, H, W)``: any leading axes (batch, ...), then lead time, then
  the image rows and columns. Lead time index ``t`` is ``(t + 1) * 10`` minutes after the last context frame.
* Ensembles have layout ``(..., M, T, H, W)`` with the ensemble-member axis right before lead time; their
  observation has the same shape without ``M``.
"""

from __future__ import annotations

import numpy as np

from prediff.data.layout import MISSING_PIXEL
from prediff.errors import DataError

#: Minutes between SEVIR-LR frames, i.e. between consecutive lead times.
LEAD_TIME_STEP_MINUTES = 10


def lead_times_minutes(n_lead_times: int) -> np.ndarray:
    """Return the lead times ``10, 20, ...`` in minutes, shape (n_lead_times,), int64."""
    return LEAD_TIME_STEP_MINUTES * np.arange(1, n_lead_times + 1, dtype=np.int64)


def valid_pixels(pixels) -> tuple[np.ndarray, np.ndarray]:
    """Split a VIL pixel array into float64 values and a validity mask.

    Parameters
    ----------
    pixels : array_like, any shape, VIL pixel 0-255 (uint8 or float); NaN or 255 = missing.

    Returns
    -------
    values : np.ndarray, same shape, float64 VIL pixels with missing pixels set to 0 (so they never
        propagate NaN through filters; callers must use ``valid``).
    valid : np.ndarray, same shape, bool, True where the pixel is neither NaN nor 255.
    """
    values = np.asarray(pixels, dtype=np.float64)
    valid = np.isfinite(values) & (values != MISSING_PIXEL)
    return np.where(valid, values, 0.0), valid


def as_frames(forecast, observation, n_lead_times: int, what: str = "forecast") -> tuple[np.ndarray, np.ndarray]:
    """Check a deterministic forecast against its observation and fold the leading axes into one.

    Parameters
    ----------
    forecast, observation : array_like, (..., T, H, W) VIL pixels, same shape.
    n_lead_times : T the score state was initialised for.
    what : name used in error messages.

    Returns
    -------
    forecast, observation : np.ndarray, (N, T, H, W), dtypes unchanged, N = product of the leading axes.

    Raises
    ------
    DataError if the shapes differ, have fewer than 3 axes or a T axis of the wrong length.
    """
    forecast = np.asarray(forecast)
    observation = np.asarray(observation)
    if forecast.shape != observation.shape:
        raise DataError(f"{what} shape {forecast.shape} differs from observation shape {observation.shape}; "
                        "pass both as (..., T, H, W) VIL pixels on the same grid")
    _check_lead_time_axis(forecast.shape, n_lead_times, what)
    return forecast.reshape((-1,) + forecast.shape[-3:]), observation.reshape((-1,) + observation.shape[-3:])


def as_ensemble_frames(ensemble, observation, n_lead_times: int,
                       n_members: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Check an ensemble forecast against its observation and fold the leading axes into one.

    Parameters
    ----------
    ensemble : array_like, (..., M, T, H, W) VIL pixels.
    observation : array_like, (..., T, H, W) VIL pixels (the ensemble's shape without M).
    n_lead_times : T the score state was initialised for.
    n_members : M the score state was initialised for, or None to accept any M >= 1.

    Returns
    -------
    ensemble : np.ndarray, (N, M, T, H, W); observation : np.ndarray, (N, T, H, W).

    Raises
    ------
    DataError on any shape mismatch.
    """
    ensemble = np.asarray(ensemble)
    observation = np.asarray(observation)
    if ensemble.ndim < 4 or ensemble.shape[:-4] + ensemble.shape[-3:] != observation.shape:
        raise DataError(f"ensemble shape {ensemble.shape} does not match observation shape {observation.shape}; "
                        "pass the ensemble as (..., M, T, H, W) and the observation as (..., T, H, W)")
    _check_lead_time_axis(observation.shape, n_lead_times, "observation")
    members = ensemble.shape[-4]
    if n_members is not None and members != n_members:
        raise DataError(f"ensemble has {members} members but the score was initialised for {n_members}; "
                        "initialise one score state per ensemble size")
    if members < 1:
        raise DataError("ensemble has no members; pass at least one member on axis -4")
    return (ensemble.reshape((-1,) + ensemble.shape[-4:]),
            observation.reshape((-1,) + observation.shape[-3:]))


def _check_lead_time_axis(shape: tuple[int, ...], n_lead_times: int, what: str) -> None:
    if len(shape) < 3:
        raise DataError(f"{what} has shape {shape}; expected (..., T, H, W) with T = {n_lead_times} lead times")
    if shape[-3] != n_lead_times:
        raise DataError(f"{what} has {shape[-3]} lead times on axis -3 (shape {shape}) but the score was "
                        f"initialised for {n_lead_times}; lead time must be the third-last axis (..., T, H, W)")


def safe_ratio(numerator, denominator) -> np.ndarray:
    """Return ``numerator / denominator`` as float64, NaN where the denominator is 0 (no warning)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator != 0, numerator / np.where(denominator != 0, denominator, 1.0), np.nan)
