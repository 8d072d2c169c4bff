"""VIL encodings of prediff.data.vil: SEVIR pixel <-> kg m^-2 <-> model unit scale."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prediff.data.vil import (MISSING_PIXEL, SEVIR_THRESHOLDS, kg_m2_to_vil_pixels, pixels_to_unit,
                              unit_to_pixels, vil_pixels_to_kg_m2)


def test_constants():
    assert SEVIR_THRESHOLDS == (16, 74, 133, 160, 181, 219)
    assert MISSING_PIXEL == 255


@pytest.mark.parametrize("pixel, expected", [
    (0, 0.0), (5, 0.0), (6, 4 / 90.66), (12, 10 / 90.66), (18, 16 / 90.66),
    (19, math.exp((19 - 83.9) / 38.9)), (133, math.exp((133 - 83.9) / 38.9)), (254, math.exp((254 - 83.9) / 38.9)),
])
def test_pixel_decoding_branches(pixel, expected):
    value = vil_pixels_to_kg_m2(np.array([pixel], dtype=np.uint8))
    assert value.dtype == np.float32
    assert value[0] == pytest.approx(expected, rel=1e-6)


def test_missing_pixel_decodes_to_nan_and_shape_is_kept():
    pixels = np.array([[0, 255], [255, 100]], dtype=np.uint8)
    values = vil_pixels_to_kg_m2(pixels)
    assert values.shape == (2, 2)
    assert np.isnan(values[0, 1]) and np.isnan(values[1, 0])
    assert np.isfinite(values[0, 0]) and np.isfinite(values[1, 1])


def test_decoding_is_monotonic_over_valid_pixels():
    values = vil_pixels_to_kg_m2(np.arange(255))
    assert np.all(np.diff(values[5:]) > 0)
    assert np.all(values[:6] == 0)


def test_round_trip_of_every_encodable_pixel():
    pixels = np.concatenate([[0], np.arange(6, 255)]).astype(np.uint8)
    back = kg_m2_to_vil_pixels(vil_pixels_to_kg_m2(pixels))
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, pixels)


def test_pixels_1_to_5_encode_back_to_0_and_missing_survives():
    back = kg_m2_to_vil_pixels(vil_pixels_to_kg_m2(np.array([1, 2, 3, 4, 5, 255], dtype=np.uint8)))
    np.testing.assert_array_equal(back, [0, 0, 0, 0, 0, 255])


def test_encoding_picks_the_nearest_pixel_and_clips():
    v18, v19 = 16 / 90.66, math.exp((19 - 83.9) / 38.9)
    values = [-3.0, 0.0, 0.01, 0.03, v18 + 0.3 * (v19 - v18), v18 + 0.7 * (v19 - v18), 1e6, np.nan]
    np.testing.assert_array_equal(kg_m2_to_vil_pixels(values), [0, 0, 0, 6, 18, 19, 254, 255])


def test_kg_round_trip_error_is_below_half_a_pixel_step():
    values = np.linspace(0.2, 70.0, 500)
    decoded = vil_pixels_to_kg_m2(kg_m2_to_vil_pixels(values))
    # exponential branch: neighbouring pixels differ by a factor r = exp(1/38.9); choosing the nearer one
    # (by value) leaves at most a factor (1 + r) / 2
    ratio = math.exp(1 / 38.9)
    assert np.max(np.abs(np.log(decoded / values))) <= math.log((1 + ratio) / 2) + 1e-6


def test_pixels_to_unit_missing_modes():
    pixels = np.array([0, 51, 255], dtype=np.uint8)
    nan_mode = pixels_to_unit(pixels)
    assert nan_mode.dtype == np.float32
    assert nan_mode[0] == 0 and nan_mode[1] == pytest.approx(0.2) and np.isnan(nan_mode[2])
    np.testing.assert_allclose(pixels_to_unit(pixels, missing="keep"), [0, 0.2, 1.0], rtol=1e-6)
    np.testing.assert_allclose(pixels_to_unit(pixels, missing="zero"), [0, 0.2, 0.0], rtol=1e-6)
    with pytest.raises(ValueError):
        pixels_to_unit(pixels, missing="drop")


def test_unit_to_pixels_float_and_uint8():
    values = np.array([-0.1, 0.0, 0.5, 1.0, 1.3, np.nan], dtype=np.float32)
    as_float = unit_to_pixels(values)
    assert as_float.dtype == np.float32
    np.testing.assert_allclose(as_float[:5], [0, 0, 127.5, 255, 255])
    assert np.isnan(as_float[5])
    as_uint8 = unit_to_pixels(values, as_uint8=True)
    assert as_uint8.dtype == np.uint8
    np.testing.assert_array_equal(as_uint8, [0, 0, 128, 255, 255, 255])


def test_unit_round_trip_of_all_pixels():
    pixels = np.arange(255, dtype=np.uint8)
    np.testing.assert_array_equal(unit_to_pixels(pixels_to_unit(pixels), as_uint8=True), pixels)
