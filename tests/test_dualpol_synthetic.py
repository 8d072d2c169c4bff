"""DSD physics and the synthetic NJU-CPOL corpus (prediff.dualpol.synthetic)."""

import math

import numpy as np
import pytest
from scipy.special import gamma as gamma_function

from prediff.dualpol.reader import NjuCpolDataset
from prediff.dualpol.synthetic import (COLUMN_UPDRAFT_MIN, DIAMETER_STEP_MM, DIAMETERS_MM, UPDRAFT_LEAD_FRAMES,
                                       WAVELENGTH_M, ConvectiveCell, brandes_axis_ratio, combine_populations,
                                       dsd_observables, lofted_drops, normalised_gamma_dsd, radar_observables,
                                       simulate_process, size_sorted_dsd, spheroid_depolarisation, write_corpus)


def test_reflectivity_is_the_sixth_moment_of_the_gamma_dsd():
    nw, mu = 8000.0, np.array([0.0, 2.0, 5.0])
    d0 = np.array([1.0, 1.8, 2.2])
    lam = (3.67 + mu) / d0
    f_mu = 6.0 * (3.67 + mu) ** (mu + 4) / (3.67 ** 4 * gamma_function(mu + 4))
    analytic_z = nw * f_mu * d0 ** (-mu) * gamma_function(mu + 7) / lam ** (mu + 7)
    analytic_w = math.pi / 6 * 1e-3 * nw * f_mu * d0 ** (-mu) * gamma_function(mu + 4) / lam ** (mu + 4)
    observed = dsd_observables(nw, d0, mu)
    # z_h of oblate drops exceeds the sphere moment a little; the vertical one is below it
    assert np.all(observed["z_h"] > analytic_z * 0.98) and np.all(observed["z_v"] < analytic_z * 1.01)
    assert observed["z_h"] / analytic_z == pytest.approx([1.0, 1.1, 1.2], abs=0.12)
    assert observed["water_content"] == pytest.approx(analytic_w, rel=0.01)
    # median volume diameter: half of the water mass is in drops below D0
    spectrum = normalised_gamma_dsd(DIAMETERS_MM, nw, 1.6, 3.0) * DIAMETERS_MM ** 3
    assert np.interp(0.5, np.cumsum(spectrum) / spectrum.sum(), DIAMETERS_MM) == pytest.approx(1.6, abs=0.05)


def test_shapes_and_depolarisation():
    assert brandes_axis_ratio([0.1, 1.0, 4.0, 6.0]) == pytest.approx([0.99725, 0.98876, 0.78806, 0.65634], abs=1e-4)
    l_h, l_v = spheroid_depolarisation([1.0, 0.7])
    assert l_h[0] == pytest.approx(1 / 3) and l_v[0] == pytest.approx(1 / 3)
    assert l_v[1] > 1 / 3 > l_h[1] and 2 * l_h[1] + l_v[1] == pytest.approx(1.0)


def test_zdr_rises_with_d0_and_kdp_with_water_content():
    d0 = np.linspace(0.8, 3.0, 12)
    rain = dsd_observables(5000.0, d0, 2.0)
    assert np.all(np.diff(rain["zdr_db"]) > 0) and rain["zdr_db"][0] < 0.5 < 2.0 < rain["zdr_db"][-1]
    nw = np.array([1e3, 3e3, 1e4, 3e4])
    by_water = dsd_observables(nw, 1.8, 2.0)
    assert np.all(np.diff(by_water["water_content"]) > 0) and np.all(np.diff(by_water["kdp"]) > 0)
    assert by_water["kdp"] / by_water["water_content"] == pytest.approx(np.full(4, by_water["kdp"][0]
                                                                              / by_water["water_content"][0]))
    # Bringi & Chandrasekar (2001): KDP ~ (180 / lambda) 1e-3 C W (1 - r_m), C ~ 3.75, r_m mass-weighted
    mass = normalised_gamma_dsd(DIAMETERS_MM, 1e4, 1.8, 2.0) * DIAMETERS_MM ** 3
    r_m = (mass * brandes_axis_ratio(DIAMETERS_MM)).sum() / mass.sum()
    approximation = 180.0 / WAVELENGTH_M * 1e-3 * 3.75 * by_water["water_content"][2] * (1 - r_m)
    assert by_water["kdp"][2] == pytest.approx(approximation, rel=0.15)


def test_rain_rate_and_marshall_palmer_consistency():
    # exponential DSD with Nw = 8000 (Marshall-Palmer's N0) must sit near Z = 200 R^1.6
    d0 = np.linspace(0.9, 2.2, 8)
    obs = dsd_observables(8000.0, d0, 0.0)
    mp_dbz = 10 * np.log10(200 * obs["rain_rate"] ** 1.6)
    assert np.abs(obs["zh_dbz"] - mp_dbz).max() < 3.0
    assert np.all(np.diff(obs["rain_rate"]) > 0)
    assert DIAMETER_STEP_MM * len(DIAMETERS_MM) == pytest.approx(8.0)


def test_snow_aloft_has_low_zdr_kdp_and_lower_z():
    rain, snow = dsd_observables(5000.0, 1.8, 2.0), dsd_observables(5000.0, 1.8, 2.0, "snow")
    assert rain["zh_dbz"] - snow["zh_dbz"] == pytest.approx(6.5, abs=1.0)
    assert 0 < snow["zdr_db"] < 0.4 and snow["kdp"] < 0.2 * rain["kdp"] and snow["rain_rate"] == 0


def test_lookup_tables_match_exact_integration():
    rng = np.random.default_rng(1)
    nw, d0, mu = 10 ** rng.uniform(3, 4.5, 50), rng.uniform(0.7, 3.0, 50), rng.uniform(0, 6, 50)
    fast, exact = radar_observables(nw, d0, mu), dsd_observables(nw, d0, mu)
    assert fast["zh_dbz"] == pytest.approx(exact["zh_dbz"], abs=0.15)
    assert fast["zdr_db"] == pytest.approx(exact["zdr_db"], abs=0.03)
    assert fast["rain_rate"] == pytest.approx(exact["rain_rate"], rel=0.02)


def test_simulation_is_deterministic_and_physically_consistent():
    first = simulate_process(3, n_frames=6, grid_size=32, seed=5)
    again = simulate_process(3, n_frames=6, grid_size=32, seed=5)
    other = simulate_process(4, n_frames=6, grid_size=32, seed=5)
    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert not np.array_equal(first["dBZ@1.0km"], other["dBZ@1.0km"])
    wet = first["rain"] > 0.5
    assert wet.any() and np.all((first["dBZ@1.0km"] > 0) == (first["rain"] > 0))
    # Z-R consistency: log Z and log R are tightly related, with a power-law slope in the usual range
    slope, _ = np.polyfit(np.log10(first["rain"][wet]), first["dBZ@1.0km"][wet] / 10, 1)
    assert 1.2 < slope < 1.9
    # snow aloft has low ZDR except in the ZDR columns of updrafts
    assert np.median(first["ZDR@7.0km"][first["dBZ@7.0km"] > 0]) < 0.4 < first["ZDR@1.0km"].max()


def test_written_corpus_reads_back(tmp_path):
    write_corpus(tmp_path, processes=[0, 2], n_frames=20, grid_size=16, seed=1, dtype="float16")
    dataset = NjuCpolDataset(tmp_path, keys=("dBZ@1.0km", "KDP@7.0km", "rain"))
    assert dataset.processes == [0, 2] and len(dataset) == 2
    window = dataset[1]
    expected = simulate_process(2, n_frames=20, grid_size=16, seed=1)["rain"]
    assert window.fields["rain"] == pytest.approx(expected.astype(np.float16).astype(np.float32))


def test_size_sorting_raises_zdr_at_nearly_constant_reflectivity():
    log_nw, d0 = np.full(3, 3.6), np.full(3, 1.5)
    sorted_nw, sorted_d0 = size_sorted_dsd(log_nw, d0, np.array([0.0, 0.5, 1.0]))
    obs = radar_observables(10 ** sorted_nw, sorted_d0, np.full(3, 2.5))
    assert sorted_d0[0] == 1.5 and np.all(np.diff(sorted_d0) > 0)
    assert np.ptp(obs["zh_dbz"]) < 0.5
    assert np.all(np.diff(obs["zdr_db"]) > 0.25) and np.all(np.diff(obs["rain_rate"]) < 0)


def test_lofted_drops_make_a_zdr_column_in_snow():
    snow = radar_observables(np.full(3, 10 ** 3.5 * 0.4), np.full(3, 1.6), np.full(3, 2.5), "snow")
    updraft = np.array([0.0, 0.5, 1.0])
    column = combine_populations(snow, lofted_drops(updraft))
    assert column["zh_dbz"][0] == pytest.approx(snow["zh_dbz"][0]) and column["zdr_db"][0] < 0.4
    assert np.all(np.diff(column["zdr_db"]) > 0) and column["zdr_db"][2] > 1.5
    assert np.all(np.diff(column["kdp"]) > 0) and column["rain_rate"].max() == 0
    assert lofted_drops(np.array([0.5 * COLUMN_UPDRAFT_MIN]))["z_h"][0] == 0


def test_updraft_leads_the_rain_of_a_cell_and_announces_its_strength():
    weak = ConvectiveCell(0, 0, 0, 0, birth_frame=10, lifetime_frames=20, peak=0.5, radius_km=10)
    strong = ConvectiveCell(0, 0, 0, 0, birth_frame=10, lifetime_frames=20, peak=1.0, radius_km=10)
    assert strong.amplitude(9) == 0 < strong.updraft(10 - UPDRAFT_LEAD_FRAMES + 1)
    assert strong.updraft(21) == 0 < strong.amplitude(21)          # the updraft is gone once the rain peaks
    assert strong.updraft(12) == pytest.approx(2 * weak.updraft(12))


def _best_shift(before, after, reach=6):
    """Integer (rows, cols) displacement that best maps ``before`` onto ``after`` (least squares, interior)."""
    errors = {(dy, dx): np.mean((np.roll(before, (dy, dx), (0, 1)) - after)[reach:-reach, reach:-reach] ** 2)
              for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)}
    return min(errors, key=errors.get)


def test_zdr_columns_announce_reflectivity_growth():
    """ZDR at 7 km at t correlates with the change of ZH at 1 km from t to t + 12 min, following the storm
    motion, and more than ZH at 7 km does: the column carries information about the future that ZH lacks."""
    lead, interior = 2, slice(8, -8)
    zdr_aloft, zh_aloft, change = [], [], []
    for process in range(4):
        fields = simulate_process(process, n_frames=24, grid_size=64, seed=0)
        zh = fields["dBZ@1.0km"]
        shift = _best_shift(zh[10], zh[10 + lead])
        for t in range(len(zh) - lead):
            future = np.roll(zh[t + lead], (-shift[0], -shift[1]), (0, 1))
            change.append((future - zh[t])[interior, interior].ravel())
            zdr_aloft.append(fields["ZDR@7.0km"][t][interior, interior].ravel())
            zh_aloft.append(fields["dBZ@7.0km"][t][interior, interior].ravel())
    change = np.concatenate(change)
    by_zdr = np.corrcoef(np.concatenate(zdr_aloft), change)[0, 1]
    by_zh = np.corrcoef(np.concatenate(zh_aloft), change)[0, 1]
    assert by_zdr > 0.08 and by_zdr > by_zh + 0.03     # measured: 0.11 vs 0.05
