"""Persistence, optical-flow extrapolation and STEPS baselines (prediff.verify.baselines)."""

import time

import numpy as np
import pytest

from prediff.errors import ConfigError, DataError
from prediff.verify.baselines import BASELINES, db_to_vil_pixels, estimate_motion, get_baseline, vil_pixels_to_db

#: Blob motion per 10-minute frame, pixels: +3 columns (x), +1 row (y).
STEP_X, STEP_Y = 3, 1


def _translating_storm(n_frames=7, size=96):
    rows, columns = np.mgrid[0:size, 0:size]
    frames = []
    for t in range(n_frames):
        cx, cy = 30 + STEP_X * t, 40 + STEP_Y * t
        storm = 200 * np.exp(-((columns - cx) ** 2 + (rows - cy) ** 2) / (2 * 10 ** 2))
        cell = 140 * np.exp(-((columns - cx - 25) ** 2 + (rows - cy + 15) ** 2) / (2 * 6 ** 2))
        frames.append(np.clip(storm + cell, 0, 254))
    return np.array(frames, dtype=np.float32)


def _centroid(frame, threshold=100):
    weight = np.where(frame >= threshold, frame, 0.0)
    rows, columns = np.mgrid[0:frame.shape[0], 0:frame.shape[1]]
    return (weight * columns).sum() / weight.sum(), (weight * rows).sum() / weight.sum()


def test_registry_names_and_errors():
    assert set(BASELINES) == {"persistence", "extrapolation", "steps"}
    assert get_baseline("STEPS", n_members=2).n_members == 2
    with pytest.raises(ConfigError, match="unknown baseline"):
        get_baseline("climatology")
    with pytest.raises(ConfigError, match="bad options"):
        get_baseline("persistence", n_members=3)
    with pytest.raises(ConfigError, match="motion method"):
        get_baseline("extrapolation", motion_method="farneback")


def test_persistence_repeats_the_last_frame_exactly():
    context = np.random.default_rng(0).integers(0, 256, size=(7, 16, 16)).astype(np.uint8)
    forecast = get_baseline("persistence").forecast(context, n_lead_times=6)
    assert forecast.shape == (6, 16, 16) and forecast.dtype == np.float32
    for t in range(6):
        np.testing.assert_array_equal(forecast[t], context[-1])
    with pytest.raises(DataError):
        get_baseline("persistence").forecast(context[0])


def test_db_transform_round_trips_whole_pixels():
    pixels = np.arange(0, 255, dtype=np.float64)
    back = db_to_vil_pixels(vil_pixels_to_db(pixels))
    np.testing.assert_array_equal(back[16:], pixels[16:])
    assert (back[:16] == 0).all()  # below the rain threshold is no rain


@pytest.mark.parametrize("motion_method", ["LK", "DARTS"])
def test_extrapolation_moves_a_translating_storm_the_right_way(motion_method):
    context = _translating_storm()
    velocity = estimate_motion(context, motion_method)
    assert velocity.shape == (2, 96, 96)
    forecast = get_baseline("extrapolation", motion_method=motion_method).forecast(context, n_lead_times=4)
    assert forecast.shape == (4, 96, 96) and forecast.dtype == np.float32
    x0, y0 = _centroid(context[-1])
    shifts = np.array([_centroid(frame) for frame in forecast]) - (x0, y0)
    expected = np.outer(np.arange(1, 5), (STEP_X, STEP_Y))
    if motion_method == "LK":
        np.testing.assert_allclose(shifts, expected, atol=0.5)
    else:
        # DARTS' smooth low-order spectral motion underestimates an isolated blob's speed (about 1/3 here),
        # but it must move it downstream, further at every lead time
        assert np.all(np.diff(shifts[:, 0]) > 0.5) and np.all(shifts[:, 1] >= 0)
        assert np.all(shifts[:, 0] <= expected[:, 0] + 0.5)


def test_steps_ensemble_shape_speed_and_motion():
    context = _translating_storm(size=128)
    start = time.perf_counter()
    members = get_baseline("steps", n_members=8, seed=1).forecast(context, n_lead_times=6)
    elapsed = time.perf_counter() - start
    assert members.shape == (8, 6, 128, 128) and members.dtype == np.float32
    assert np.isfinite(members).all() and members.max() <= 254 and members.min() >= 0
    assert np.array_equal(members, np.rint(members))
    assert elapsed < 20, f"STEPS took {elapsed:.1f} s"
    assert not np.array_equal(members[0], members[1])
    # the ensemble follows the storm
    x0, _ = _centroid(context[-1])
    x_mean, _ = _centroid(members[:, 2].mean(axis=0), threshold=60)
    assert x_mean - x0 == pytest.approx(3 * STEP_X, abs=2.0)


def test_steps_is_reproducible_for_a_seed():
    context = _translating_storm(size=64)
    first = get_baseline("steps", n_members=3, seed=5, n_cascade_levels=4).forecast(context, n_lead_times=2)
    again = get_baseline("steps", n_members=3, seed=5, n_cascade_levels=4).forecast(context, n_lead_times=2)
    other = get_baseline("steps", n_members=3, seed=6, n_cascade_levels=4).forecast(context, n_lead_times=2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_steps_without_rain_gives_zeros_and_tolerates_missing_pixels():
    dry = np.zeros((7, 32, 32), dtype=np.uint8)
    dry[:, 0, 0] = 255
    forecast = get_baseline("steps", n_members=3).forecast(dry, n_lead_times=2)
    assert forecast.shape == (3, 2, 32, 32) and not forecast.any()
