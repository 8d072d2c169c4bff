"""VIL encodings: the only place that converts between SEVIR's VIL pixels, kg m^-2 and the model's [0, 1] scale.

Three scales appear in the workbench:

* **VIL pixel** — uint8 0-254 as stored in SEVIR / SEVIR-LR HDF5 files; 255 means *missing* (outside radar
  coverage). The thresholds of the published scores (:data:`SEVIR_THRESHOLDS`) are on this scale.
* **kg m^-2** — physical vertically integrated liquid. SEVIR's piecewise encoding (from the SEVIR
  documentation) maps pixel X to

  ====================  =======================
  X <= 5                0
  5 < X <= 18           (X - 2) / 90.66
  18 < X <= 254         exp((X - 83.9) / 38.9)
  X = 255               missing (NaN here)
  ====================  =======================

* **unit** — X / 255 as float32, the scaling PreDiff's networks read and write (MindEarth's
  ``rescale_method "01"``). Model outputs on this scale are not clamped and may leave [0, 1].
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from prediff.data.layout import MISSING_PIXEL

#: Thresholds of the published SEVIR scores (CSI/POD/SUCR/BIAS), VIL pixel 0-255.
SEVIR_THRESHOLDS: tuple[int, ...] = (16, 74, 133, 160, 181, 219)

_LOW_EDGE = 5          # pixels at or below this are "no VIL"
_LINEAR_EDGE = 18      # pixels above this use the exponential branch
_LINEAR_SCALE = 90.66
_LINEAR_OFFSET = 2.0
_EXP_OFFSET = 83.9
_EXP_SCALE = 38.9
_MAX_VALID_PIXEL = 254


def _decode_float64(pixels: np.ndarray) -> np.ndarray:
    """SEVIR's piecewise decoding in float64, without the missing-pixel rule (used to build the encoder table)."""
    x = np.asarray(pixels, dtype=np.float64)
    linear = (x - _LINEAR_OFFSET) / _LINEAR_SCALE
    exponential = np.exp((x - _EXP_OFFSET) / _EXP_SCALE)
    return np.where(x <= _LOW_EDGE, 0.0, np.where(x <= _LINEAR_EDGE, linear, exponential))


def vil_pixels_to_kg_m2(pixels) -> np.ndarray:
    """Decode VIL pixels to vertically integrated liquid.

    Parameters
    ----------
    pixels : array_like, any shape, VIL pixel 0-255 (integer or float; floats are used as given, so
        interpolated pixels decode continuously within each branch). 255 = missing.

    Returns
    -------
    np.ndarray, same shape, float32, kg m^-2; NaN where the pixel is 255 (missing) or NaN.
    """
    x = np.asarray(pixels, dtype=np.float64)
    values = np.where((x == MISSING_PIXEL) | np.isnan(x), np.nan, _decode_float64(x))
    return values.astype(np.float32)


#: Pixels an encoder may produce (1-5 decode to 0 like 0) and their decoded values, strictly increasing.
_ENCODABLE_PIXELS = np.concatenate([[0], np.arange(_LOW_EDGE + 1, _MAX_VALID_PIXEL + 1)])
_ENCODABLE_VALUES = _decode_float64(_ENCODABLE_PIXELS)


def kg_m2_to_vil_pixels(values) -> np.ndarray:
    """Encode vertically integrated liquid as VIL pixels (inverse of :func:`vil_pixels_to_kg_m2`).

    Each value becomes the pixel whose decoded value is nearest to it (pixels 1-5 decode to 0 like pixel 0,
    so they are never produced); values at or below 0 give 0, values above the top of the scale
    (~79 kg m^-2, pixel 254) give 254. Every pixel 0, 6-254 survives a decode/encode round trip.

    Parameters
    ----------
    values : array_like, any shape, kg m^-2; NaN = missing.

    Returns
    -------
    np.ndarray, same shape, uint8 VIL pixels 0, 6-254, and 255 where the input is NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    missing = np.isnan(v)
    v = np.where(missing, 0.0, v)
    upper = np.clip(np.searchsorted(_ENCODABLE_VALUES, v), 1, _ENCODABLE_VALUES.size - 1)
    lower = upper - 1
    nearer_upper = np.abs(_ENCODABLE_VALUES[upper] - v) < np.abs(v - _ENCODABLE_VALUES[lower])
    pixels = _ENCODABLE_PIXELS[np.where(nearer_upper, upper, lower)]
    return np.where(missing, MISSING_PIXEL, pixels).astype(np.uint8)


def pixels_to_unit(pixels, missing: Literal["nan", "keep", "zero"] = "nan") -> np.ndarray:
    """Scale VIL pixels to the model's [0, 1] scale (X / 255).

    Parameters
    ----------
    pixels : array_like, any shape, VIL pixel 0-255 (255 = missing).
    missing : what a missing pixel (255) becomes:
        ``"nan"`` (default) NaN, so it cannot pass as heavy precipitation;
        ``"keep"`` 1.0, i.e. plain X / 255 exactly as the MindEarth reference does (its selection keeps only
        events with ``pct_missing == 0``, so it never sees 255);
        ``"zero"`` 0.0, for feeding a network, which cannot take NaN.

    Returns
    -------
    np.ndarray, same shape, float32 on the unit scale.
    """
    x = np.asarray(pixels)
    unit = x.astype(np.float32) / np.float32(255.0)
    if missing == "keep":
        return unit
    if missing not in ("nan", "zero"):
        raise ValueError(f"missing must be 'nan', 'keep' or 'zero', got {missing!r}")
    fill = np.float32(np.nan) if missing == "nan" else np.float32(0.0)
    return np.where(x == MISSING_PIXEL, fill, unit).astype(np.float32)


def unit_to_pixels(values, as_uint8: bool = False) -> np.ndarray:
    """Scale values on the model's [0, 1] scale back to VIL pixels (x * 255, clipped to 0..255).

    Parameters
    ----------
    values : array_like, any shape, unit scale (model output; may leave [0, 1], may hold NaN).
    as_uint8 : False (default) returns float32 pixels, the form thresholds and scores use; True rounds to the
        nearest pixel and returns uint8, with NaN mapped to 255 (missing).

    Returns
    -------
    np.ndarray, same shape: float32 VIL pixels in [0, 255] (NaN kept), or uint8 VIL pixels 0-255.
    """
    pixels = np.clip(np.asarray(values, dtype=np.float32) * np.float32(255.0), 0.0, 255.0)
    if not as_uint8:
        return pixels.astype(np.float32)
    return np.where(np.isnan(pixels), MISSING_PIXEL, np.rint(np.nan_to_num(pixels))).astype(np.uint8)
