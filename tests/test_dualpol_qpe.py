"""Power-law rain-rate estimators (prediff.dualpol.qpe)."""

import numpy as np
import pytest

from prediff.dualpol.qpe import PowerLawRain, fit_estimators, fit_power_law, marshall_palmer
from prediff.dualpol.reader import load_frames
from prediff.dualpol.synthetic import write_corpus
from prediff.errors import ConfigError, DataError


def _exact_fields(rng, n=5000):
    rain = 10 ** rng.uniform(-0.5, 2.0, n)
    zdr_db = rng.uniform(0.1, 3.0, n)
    # R = 0.02 Z^0.7 zdr^-1.5  <=>  log10 Z = (log10 R - log10 0.02 + 1.5 zdr_db / 10) / 0.7
    dbz = 10 * (np.log10(rain) - np.log10(0.02) + 1.5 * zdr_db / 10) / 0.7
    return {"dBZ@1.0km": dbz, "ZDR@1.0km": zdr_db, "rain": rain}


def test_marshall_palmer_inverts_z_200_r_16():
    law = marshall_palmer()
    rain = np.array([1.0, 10.0, 50.0])
    dbz = 10 * np.log10(200 * rain ** 1.6)
    assert law.predict({"dBZ@1.0km": dbz}) == pytest.approx(rain)
    assert law.zr_form() == pytest.approx((200.0, 1.6))
    out = law.predict({"dBZ@1.0km": np.array([0.0, -3.0, np.nan, 90.0])})
    assert out[:2].tolist() == [0.0, 0.0] and np.isnan(out[2]) and out[3] == 200.0


def test_power_laws_are_fitted_back_from_exact_data():
    fields = _exact_fields(np.random.default_rng(0))
    law = fit_power_law(fields, ("dBZ@1.0km", "ZDR@1.0km"), "R(Z, ZDR)")
    assert law.coefficients == pytest.approx((0.7, -1.5), abs=1e-9)
    assert 10 ** law.intercept == pytest.approx(0.02, rel=1e-9)
    assert law.predict(fields) == pytest.approx(np.clip(fields["rain"], 0, 200), rel=1e-9)
    # a pure Z-R world: the fitted Z-R is exact
    rain = 10 ** np.random.default_rng(1).uniform(-0.5, 2, 1000)
    zr = fit_power_law({"dBZ@1.0km": 10 * np.log10(300 * rain ** 1.4), "rain": rain}, ("dBZ@1.0km",), "Z-R")
    assert zr.zr_form() == pytest.approx((300.0, 1.4), rel=1e-9)


def test_fit_ignores_dry_and_invalid_pixels_and_checks_features():
    fields = _exact_fields(np.random.default_rng(2), 500)
    fields["rain"][:50] = 0.0
    fields["dBZ@1.0km"][50:60] = np.nan
    law = fit_power_law(fields, ("dBZ@1.0km", "ZDR@1.0km"), "R(Z, ZDR)")
    assert law.coefficients == pytest.approx((0.7, -1.5), abs=1e-9)
    with pytest.raises(DataError):
        fit_power_law({"dBZ@1.0km": np.ones(3), "rain": np.zeros(3)}, ("dBZ@1.0km",), "Z-R")
    with pytest.raises(ConfigError):
        PowerLawRain("bad", ("ZDR@1.0km",), (1.0,), 0.0)
    with pytest.raises(ConfigError):
        PowerLawRain("bad", ("dBZ@1.0km", "KDP@1.0km"), (1.0, 1.0), 0.0)
    with pytest.raises(DataError, match="ZDR@1.0km"):
        law.predict({"dBZ@1.0km": np.ones(2)})


def test_estimators_on_synthetic_corpus_rank_as_physics_says(tmp_path):
    write_corpus(tmp_path, processes=[0, 1], n_frames=8, grid_size=32, seed=3)
    fields = load_frames(tmp_path, ("dBZ@1.0km", "ZDR@1.0km", "rain"), [0, 1])
    assert fields["rain"].shape == (16, 32, 32)
    mp, zr, rzzdr = fit_estimators(fields)
    wet = fields["rain"] >= 0.1

    def log_error(law):
        return np.mean((np.log10(law.predict(fields)[wet]) - np.log10(fields["rain"][wet])) ** 2)

    # least squares is optimal in log space on its own data, and ZDR adds DSD information
    assert log_error(rzzdr) < log_error(zr) <= log_error(mp)
    assert rzzdr.coefficients[1] < 0      # larger drops (higher ZDR) mean less rain for the same Z
