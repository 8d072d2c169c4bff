"""Guidance targets: parsing, units, climatology statistics and their JSON file."""

import json

import numpy as np
import pytest

from prediff.diffusion.targets import (INTENSITY_STATS_FILE, IntensityStats, TargetSpec, absolute_target_value,
                                       intensity_stats_from_windows, parse_target)
from prediff.errors import ConfigError, DataError


@pytest.mark.parametrize("text, kind, value", [
    ("mu+4sigma", "climatology", 4.0), ("mu-1sigma", "climatology", -1.0), ("MU + 0.5 * sigma", "climatology", 0.5),
    ("mu", "climatology", 0.0), ("mu+sigma", "climatology", 1.0),
    ("mean=51", "absolute", 51 / 255), ("mean=51px", "absolute", 51 / 255), ("mean=0.2unit", "absolute", 0.2),
    ("context*2", "context", 2.0), ("context", "context", 1.0),
    ("oracle*2", "oracle", 2.0), ("oracle*1.5", "oracle", 1.5),
])
def test_parse_target(text, kind, value):
    spec = parse_target(text)
    assert spec.kind == kind
    assert spec.value == pytest.approx(value)
    assert parse_target(spec.describe()) == spec


def test_kg_target_goes_through_sevir_encoding():
    spec = parse_target("mean=2.5kg")
    pixel = 83.9 + 38.9 * np.log(2.5)  # SEVIR's exponential branch, inverted
    assert spec.value * 255 == pytest.approx(round(pixel))
    assert parse_target("mean=2.5 kg/m2") == spec
    assert absolute_target_value(0.0, "kg") == 0.0


@pytest.mark.parametrize("text", ["mu+4", "mean=", "sigma", "oracle*-2", "median*2", ""])
def test_unreadable_targets_raise_config_error(text):
    with pytest.raises(ConfigError, match="mu\\+4sigma"):
        parse_target(text)


def test_resolve_every_kind_and_clip():
    stats = IntensityStats(mu=0.1, sigma=0.05, n=100, source="test")
    context = np.full((2, 7, 4, 4, 1), 0.1, np.float32)
    context[1] = 0.3
    future = np.full((2, 6, 4, 4, 1), 0.2, np.float32)
    np.testing.assert_allclose(parse_target("mu+4sigma").resolve(2, stats=stats), [0.3, 0.3])
    np.testing.assert_allclose(parse_target("mu-4sigma").resolve(2, stats=stats), [0.0, 0.0])
    np.testing.assert_allclose(parse_target("context*2").resolve(2, context=context), [0.2, 0.6], rtol=1e-6)
    np.testing.assert_allclose(parse_target("context*4").resolve(2, context=context), [0.4, 1.0], rtol=1e-6)
    np.testing.assert_allclose(parse_target("oracle*2").resolve(2, future=future), [0.4, 0.4], rtol=1e-6)
    np.testing.assert_allclose(parse_target("oracle*2").resolve(3, future=future[:1]), [0.4] * 3, rtol=1e-6)
    np.testing.assert_allclose(parse_target("mean=300").resolve(2), [1.0, 1.0])
    with pytest.raises(DataError, match="statistics"):
        parse_target("mu+1sigma").resolve(2)
    with pytest.raises(DataError, match="context"):
        parse_target("context*2").resolve(2)
    with pytest.raises(DataError, match="one per member"):
        parse_target("oracle*2").resolve(3, future=future)
    with pytest.raises(ConfigError):
        TargetSpec("median", 1.0)


@pytest.mark.shared
def test_oracle_target_matches_reference_fixture(parity_arrays):
    future = parity_arrays["seq"][:, 7:]
    np.testing.assert_allclose(parse_target("oracle*2").resolve(2, future=future),
                               parity_arrays["align_avg_x_gt"].reshape(-1), rtol=1e-5)


def test_stats_from_windows_pixels_batches_and_units():
    rng = np.random.default_rng(0)
    windows = [rng.integers(0, 255, (6, 8, 8)).astype(np.uint8) for _ in range(5)]
    batch = np.stack(windows)[..., None]
    averages = np.array([w.mean() / 255 for w in windows])
    stats = intensity_stats_from_windows(windows, source="unit test")
    assert stats.n == 5 and stats.source == "unit test"
    assert stats.mu == pytest.approx(averages.mean())
    assert stats.sigma == pytest.approx(averages.std(ddof=1))
    from_batches = intensity_stats_from_windows([batch[:2], batch[2:]])
    assert from_batches.mu == pytest.approx(stats.mu) and from_batches.sigma == pytest.approx(stats.sigma)
    from_units = intensity_stats_from_windows([w / 255.0 for w in windows], units="unit")
    assert from_units.mu == pytest.approx(stats.mu)
    with pytest.raises(DataError):
        intensity_stats_from_windows([])
    with pytest.raises(DataError):
        intensity_stats_from_windows([np.zeros(5)])


def test_stats_json_round_trip_and_errors(tmp_path):
    stats = IntensityStats(mu=0.12, sigma=0.04, n=2000, source="sevirlr train 2017-2019")
    written = stats.save(tmp_path)
    assert written == tmp_path / INTENSITY_STATS_FILE
    assert json.loads(written.read_text())["n"] == 2000
    assert IntensityStats.load(tmp_path) == stats
    assert IntensityStats.load(written) == stats
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(DataError, match="does not exist"):
        IntensityStats.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"mu": 0.1}')
    with pytest.raises(DataError, match="unreadable"):
        IntensityStats.load(tmp_path / "bad.json")
    (tmp_path / "nan.json").write_text('{"mu": NaN, "sigma": 0.1, "n": 3}')
    with pytest.raises(DataError, match="finite"):
        IntensityStats.load(tmp_path / "nan.json")
