"""Continuous scores of a deterministic forecast: MSE, MAE (VIL pixels and [0, 1] scale) and SSIM.

Streamed with ``continuous_init`` / ``continuous_accum`` / ``continuous_merge`` / ``continuous_compute``; sums are
float64 per lead time, so the scores over a whole split equal those of one pass over all pixels.

* ``MSE_pixel`` = mean (F - O)^2 and ``MAE_pixel`` = mean |F - O| over valid pixel pairs, VIL pixel units;
  ``MSE`` = MSE_pixel / 255^2 and ``MAE`` = MAE_pixel / 255 are the same on the model's [0, 1] scale — the
  numbers the MindEarth reference and the PreDiff paper report (the reference averages per-batch means, which is
  the same for equal-size batches).
* ``SSIM`` (Wang et al. 2004), as the MindEarth reference computes it: per frame on the [0, 1] scale, an 11 x 11
  Gaussian window (sigma 1.5, normalised), C1 = 0.01^2, C2 = 0.03^2, the SSIM map averaged over the interior
  ``[5:-5, 5:-5]`` (pixels whose whole window lies inside the image, so no border mode is involved), then the
  mean over frames. With missing pixels, a map pixel counts only when its whole 11 x 11 window is valid in both
  fields; a frame with no such pixel is skipped (``SSIM_frames`` counts the frames used).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

from prediff.errors import ConfigError, DataError
from prediff.verify.fields import as_frames, lead_times_minutes, safe_ratio, valid_pixels

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2

_SUM_NAMES = ("pairs", "sum_squared_error", "sum_absolute_error", "ssim_sum", "ssim_frames")


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps, (size,) float64 (what ``cv2.getGaussianKernel`` returns for sigma > 0)."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-offsets ** 2 / (2.0 * sigma ** 2))
    return taps / taps.sum()


def _filter_interior(frames: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable correlation of (F, H, W) frames, kept only where the window lies inside the image."""
    half = taps.size // 2
    filtered = correlate1d(correlate1d(frames, taps, axis=-2, mode="constant"), taps, axis=-1, mode="constant")
    return filtered[:, half:-half, half:-half]


def ssim_frames(forecast_unit: np.ndarray, observation_unit: np.ndarray,
                valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean SSIM of each frame pair.

    Parameters
    ----------
    forecast_unit, observation_unit : (F, H, W) float64 on the [0, 1] scale (values at invalid pixels ignored).
    valid : (F, H, W) bool, True where both fields are valid; None = all valid.

    Returns
    -------
    ssim : (F,) float64 mean of the SSIM map over the interior pixels whose 11 x 11 window is fully valid
        (NaN for a frame without such pixels).
    used : (F,) bool, True where the frame had at least one such pixel.
    """
    if min(forecast_unit.shape[-2:]) <= SSIM_WINDOW - 1:
        raise DataError(f"SSIM needs frames larger than {SSIM_WINDOW - 1} x {SSIM_WINDOW - 1} pixels, got "
                        f"{forecast_unit.shape[-2:]}; pass ssim=False for smaller fields")
    taps = gaussian_window_1d()
    x, y = forecast_unit, observation_unit
    mean_x, mean_y = _filter_interior(x, taps), _filter_interior(y, taps)
    var_x = _filter_interior(x * x, taps) - mean_x ** 2
    var_y = _filter_interior(y * y, taps) - mean_y ** 2
    cov_xy = _filter_interior(x * y, taps) - mean_x * mean_y
    ssim_map = (((2.0 * mean_x * mean_y + SSIM_C1) * (2.0 * cov_xy + SSIM_C2))
                / ((mean_x ** 2 + mean_y ** 2 + SSIM_C1) * (var_x + var_y + SSIM_C2)))
    if valid is None:
        return ssim_map.mean(axis=(-2, -1)), np.ones(x.shape[0], dtype=bool)
    # a window is usable only if it holds no invalid pixel; the box filter counts them
    invalid_in_window = _filter_interior((~valid).astype(np.float64), np.ones(SSIM_WINDOW))
    usable = invalid_in_window < 0.5
    used_pixels = usable.sum(axis=(-2, -1))
    ssim = safe_ratio(np.where(usable, ssim_map, 0.0).sum(axis=(-2, -1)), used_pixels)
    return ssim, used_pixels > 0


def continuous_init(n_lead_times: int = 6, ssim: bool = True) -> dict:
    """Start an MSE / MAE / SSIM accumulation.

    Parameters
    ----------
    n_lead_times : length of the lead-time axis of the fields to come.
    ssim : also accumulate SSIM (costs a few Gaussian filters per frame).

    Returns
    -------
    dict state with per-lead-time (T,) sums: ``pairs`` (int64 valid pixel pairs), ``sum_squared_error`` and
    ``sum_absolute_error`` (float64, VIL pixel units), ``ssim_sum`` (float64), ``ssim_frames`` (int64).
    """
    if n_lead_times < 1:
        raise ConfigError(f"n_lead_times must be >= 1, got {n_lead_times}")
    state = {"n_lead_times": int(n_lead_times), "ssim": bool(ssim)}
    for name in _SUM_NAMES:
        dtype = np.int64 if name in ("pairs", "ssim_frames") else np.float64
        state[name] = np.zeros(n_lead_times, dtype=dtype)
    return state


def continuous_accum(state: dict, forecast, observation) -> None:
    """Add forecast/observation pairs (in place).

    Parameters
    ----------
    state : from :func:`continuous_init`.
    forecast, observation : (..., T, H, W) VIL pixels (uint8 or float, not clipped); NaN or 255 = missing.
    """
    forecast, observation = as_frames(forecast, observation, state["n_lead_times"])
    forecast, forecast_valid = valid_pixels(forecast)
    observation, observation_valid = valid_pixels(observation)
    valid = forecast_valid & observation_valid
    error = np.where(valid, forecast - observation, 0.0)
    state["pairs"] += np.count_nonzero(valid, axis=(0, 2, 3))
    state["sum_squared_error"] += (error ** 2).sum(axis=(0, 2, 3))
    state["sum_absolute_error"] += np.abs(error).sum(axis=(0, 2, 3))
    if state["ssim"]:
        n_windows, n_lead_times, height, width = forecast.shape
        flat = (n_windows * n_lead_times, height, width)
        ssim, used = ssim_frames(np.where(valid, forecast, 0.0).reshape(flat) / 255.0,
                                 np.where(valid, observation, 0.0).reshape(flat) / 255.0,
                                 None if valid.all() else valid.reshape(flat))
        ssim = np.where(used, ssim, 0.0).reshape(n_windows, n_lead_times)
        state["ssim_sum"] += ssim.sum(axis=0)
        state["ssim_frames"] += used.reshape(n_windows, n_lead_times).sum(axis=0)


def continuous_merge(first: dict, second: dict) -> dict:
    """Return a new state holding both accumulations (same lead times and SSIM setting)."""
    if first["n_lead_times"] != second["n_lead_times"] or first["ssim"] != second["ssim"]:
        raise ConfigError("cannot merge continuous-score states with different lead times or SSIM settings")
    merged = dict(first)
    for name in _SUM_NAMES:
        merged[name] = first[name] + second[name]
    return merged


def continuous_compute(state: dict) -> dict:
    """MSE / MAE (pixel and [0, 1] scale) and SSIM per lead time and over all lead times.

    Returns
    -------
    dict with ``lead_time_minutes`` (T,), ``per_lead_time`` {score: (T,) float64} and ``all_lead_times``
    {score: float64 scalar} for ``MSE``, ``MAE`` ([0, 1] scale), ``MSE_pixel``, ``MAE_pixel``, ``RMSE_pixel``,
    ``pairs`` and, if accumulated, ``SSIM`` and ``SSIM_frames``. NaN where no valid pair / frame was seen.
    """
    def table(sums):
        mse_pixel = safe_ratio(sums["sum_squared_error"], sums["pairs"])
        mae_pixel = safe_ratio(sums["sum_absolute_error"], sums["pairs"])
        scores = {"MSE": mse_pixel / 255.0 ** 2, "MAE": mae_pixel / 255.0, "MSE_pixel": mse_pixel,
                  "MAE_pixel": mae_pixel, "RMSE_pixel": np.sqrt(mse_pixel), "pairs": sums["pairs"]}
        if state["ssim"]:
            scores["SSIM"] = safe_ratio(sums["ssim_sum"], sums["ssim_frames"])
            scores["SSIM_frames"] = sums["ssim_frames"]
        return scores

    sums = {name: state[name] for name in _SUM_NAMES}
    return {"lead_time_minutes": lead_times_minutes(state["n_lead_times"]),
            "per_lead_time": table(sums),
            "all_lead_times": table({name: value.sum() for name, value in sums.items()})}
