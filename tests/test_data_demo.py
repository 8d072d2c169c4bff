"""The demo storm corpus: CLI, SEVIR-LR layout, determinism, and the plausibility claims of docs/demo_corpus.md."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prediff.cli import main
from prediff.data import demo, storms
from prediff.data.catalog import SplitDates
from prediff.data.layout import CATALOG_COLUMNS
from prediff.errors import ConfigError

NOAA_TYPES = {"Thunderstorm Wind", "Hail", "Tornado", "Heavy Rain", "Flash Flood"}
SHIPPED_EVENTS = 80
SHIPPED_SEED = 2026


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "corpus"
    assert main(["data", "demo", "--out", str(out), "--events", "12", "--seed", "1", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def statistics(corpus) -> dict:
    return demo.corpus_statistics(corpus)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _centroids(vil: np.ndarray) -> np.ndarray:
    """(T, 2) VIL-weighted centroid (x, y) in km of a (T, H, W) field (NaN for empty frames)."""
    centres = (np.arange(vil.shape[-1]) + 0.5) * storms.PIXEL_KM
    weight = vil.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (vil.sum(axis=1) * centres).sum(axis=1) / weight
        y = (vil.sum(axis=2) * centres).sum(axis=1) / weight
    return np.stack([x, y], axis=1)


# --- layout ------------------------------------------------------------------------------------------------

def test_cli_writes_a_sevir_lr_tree_readable_with_h5py_and_pandas(corpus):
    import h5py

    catalog = pd.read_csv(corpus / "CATALOG.csv")
    assert list(catalog.columns) == list(CATALOG_COLUMNS)
    assert len(catalog) == 12 and catalog["id"].is_unique
    assert catalog["id"].str.match(r"^S\d{6}$").all()
    assert (catalog["id"] == "S" + catalog["event_id"].astype(str)).all()
    assert set(catalog["event_type"]) <= NOAA_TYPES
    assert (catalog["img_type"] == "vil").all() and (catalog["pct_missing"] == 0).all()
    assert (catalog["minute_offsets"] == ":".join(str(m) for m in range(-120, 121, 10))).all()
    assert ((catalog["size_x"] == 128) & (catalog["size_y"] == 128)).all()
    assert np.allclose(catalog[["width_m", "height_m"]], 384000.0)
    for file_name, rows in catalog.groupby("file_name"):
        with h5py.File(corpus / "data" / file_name, "r") as handle:
            vil = handle["vil"][...]
            ids = [i.decode() for i in handle["id"][...]]
        assert vil.dtype == np.uint8 and vil.shape == (len(rows), 128, 128, 25)
        assert vil.max() <= 254
        for _, row in rows.iterrows():
            assert ids[row["file_index"]] == row["id"]
            assert vil[row["file_index"]].max() == row["data_max"]


def test_sevir_dataset_reads_every_event_time_first(corpus):
    from prediff.data.sevir import SevirDataset

    dataset = SevirDataset(corpus)
    assert len(dataset.event_ids) == 12
    for event_id in dataset.event_ids:
        vil = dataset.read_event(event_id)
        assert vil.shape == (25, 128, 128) and vil.dtype == np.uint8
    assert len(dataset) == 3 * 12
    sizes = {split: len(SevirDataset(corpus, split=split).event_ids) for split in ("train", "val", "test")}
    assert sum(sizes.values()) == 12 and min(sizes.values()) >= 1


def test_catalog_dates_locations_and_ids_are_plausible(corpus):
    catalog = pd.read_csv(corpus / "CATALOG.csv", parse_dates=["time_utc"])
    assert catalog["time_utc"].dt.year.isin([2018, 2019]).all()
    lat = (catalog["llcrnrlat"] + catalog["urcrnrlat"]) / 2
    lon = (catalog["llcrnrlon"] + catalog["urcrnrlon"]) / 2
    assert lat.between(25.0, 50.0).all() and lon.between(-108.0, -68.0).all()
    # NOAA event ids grow with the date; episode ids too
    times = catalog["time_utc"].astype("int64")
    assert np.corrcoef(times, catalog["event_id"])[0, 1] > 0.95
    assert np.corrcoef(times, catalog["episode_id"])[0, 1] > 0.95


def test_split_shares_follow_70_15_15_for_any_prefix():
    splits = [demo.split_of_index(3, k) for k in range(200)]
    for n in (40, 100, 200):
        shares = pd.Series(splits[:n]).value_counts(normalize=True)
        assert abs(shares["train"] - 0.70) < 0.04
        assert abs(shares["val"] - 0.15) < 0.04
        assert abs(shares["test"] - 0.15) < 0.04


def test_event_dates_fall_in_the_split_they_were_drawn_for():
    dates = SplitDates()
    for event in demo.draw_events(60, 11):
        start, end = dates.bounds(event.split)
        assert start is None or event.time_utc > start
        assert end is None or event.time_utc <= end


# --- determinism -------------------------------------------------------------------------------------------

def test_same_seed_gives_byte_identical_files_and_other_seeds_differ(tmp_path):
    first = demo.generate_demo_corpus(tmp_path / "a", 3, seed=7)
    second = demo.generate_demo_corpus(tmp_path / "b", 3, seed=7)
    other = demo.generate_demo_corpus(tmp_path / "c", 3, seed=8)
    assert _digests(first) == _digests(second)
    assert _digests(first) != _digests(other)
    from prediff.data.sevir import SevirDataset

    a, b = SevirDataset(first), SevirDataset(other)
    assert set(a.event_ids).isdisjoint(b.event_ids)
    for id_a, id_b in zip(a.event_ids, b.event_ids):
        assert not np.array_equal(a.read_event(id_a), b.read_event(id_b))


def test_event_does_not_depend_on_corpus_size():
    small, large = demo.draw_events(2, 5), demo.draw_events(6, 5)
    assert small == large[:2]
    assert np.array_equal(demo.simulate_event(small[1], 5).vil, demo.simulate_event(large[1], 5).vil)


# --- value distribution ------------------------------------------------------------------------------------

def test_statistics_match_a_direct_count(corpus, statistics):
    from prediff.data.sevir import SevirDataset

    dataset = SevirDataset(corpus)
    pixels = np.concatenate([dataset.read_event(i).ravel() for i in dataset.event_ids])
    assert statistics["pixels"] == pixels.size
    assert statistics["zero_fraction"] == pytest.approx(np.mean(pixels == 0))
    assert statistics["fraction_at_or_above"][74] == pytest.approx(np.mean(pixels >= 74))
    assert statistics["percentiles"][99] == int(np.percentile(pixels, 99, method="lower"))
    assert sum(statistics["event_types"].values()) == 12 and sum(statistics["splits"].values()) == 12


def test_most_pixels_are_zero(statistics):
    assert 0.6 <= statistics["zero_fraction"] <= 0.92


def test_vil_has_a_heavy_tail(statistics):
    exceed = statistics["fraction_at_or_above"]
    # each step up the thresholds is much rarer than the last, yet severe pixels exist
    assert exceed[16] > 3 * exceed[133] > 0
    assert exceed[133] > 3 * exceed[219] > 0
    assert exceed[219] < 0.01
    nonzero = statistics["nonzero_percentiles"]
    assert nonzero[99.9] >= 200 and nonzero[50] <= 110


def test_some_but_not_all_events_reach_the_severe_range(statistics):
    assert 0 < statistics["events_reaching"][219] < statistics["events"]


def test_frames_evolve_continuously_and_decorrelate_with_lead_time(corpus):
    from prediff.data.sevir import SevirDataset

    dataset = SevirDataset(corpus)
    for event_id in dataset.event_ids:
        vil = dataset.read_event(event_id).astype(float).reshape(25, -1)
        lag_10_min = np.mean([np.corrcoef(vil[k], vil[k + 1])[0, 1] for k in range(24)])
        lag_60_min = np.mean([np.corrcoef(vil[k], vil[k + 6])[0, 1] for k in range(19)])
        assert lag_10_min > 0.6  # no flicker between 10-minute frames
        assert lag_60_min < lag_10_min - 0.2  # storms move and evolve: persistence loses skill within the hour


# --- storm physics -----------------------------------------------------------------------------------------

def _isolated_cell(seed: int, speed_m_s: float = 12.0, direction_deg: float = 250.0) -> storms.StormSimulation:
    scene = storms.StormScene("isolated", storms.SteeringWind(speed_m_s, direction_deg), peak_vil_kg_m2=30.0)
    return storms.simulate_storm(scene, np.random.default_rng(seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_isolated_cell_grows_matures_and_decays(seed):
    simulation = _isolated_cell(seed)
    peak_per_frame = simulation.vil_kg_m2.max(axis=(1, 2))
    top = int(np.argmax(peak_per_frame))
    assert 0 < top < storms.FRAME_COUNT - 1
    assert peak_per_frame[0] < 0.5 * peak_per_frame[top] and peak_per_frame[-1] < 0.5 * peak_per_frame[top]
    # the cell's core strength (before texture) rises monotonically, then falls monotonically, within 30-90 min
    core = simulation.cell_vil_kg_m2[0]
    lived, strongest = np.flatnonzero(core > 0), int(np.argmax(core))
    assert abs(strongest - top) <= 1
    rise, fall = np.diff(core[lived[0]:strongest + 1]), np.diff(core[strongest:lived[-1] + 1])
    assert (rise >= 0).all() and (fall <= 0).all()
    assert 30 <= (lived[-1] - lived[0] + 2) * storms.FRAME_MINUTES <= 100


def test_an_isolated_cell_moves_with_the_steering_wind():
    simulation = _isolated_cell(4, speed_m_s=15.0, direction_deg=270.0)
    centroid = _centroids(simulation.vil_kg_m2)
    lived = np.flatnonzero(np.isfinite(centroid[:, 0]))
    minutes = (lived[-1] - lived[0]) * storms.FRAME_MINUTES
    velocity_m_s = (centroid[lived[-1]] - centroid[lived[0]]) / minutes / 0.06
    # a wind from the west moves the cell east at about the wind speed (plus its small own deviation)
    assert velocity_m_s[0] == pytest.approx(15.0, abs=3.0)
    assert abs(velocity_m_s[1]) < 3.0


@pytest.mark.parametrize("organisation", ["multicell", "supercell", "squall_line", "training"])
def test_organised_systems_drift_with_the_wind(organisation):
    rng = np.random.default_rng(21)
    wind = storms.SteeringWind.draw(rng, 12.0, 250.0)
    simulation = storms.simulate_storm(storms.StormScene(organisation, wind, 20.0), rng)
    centroid = _centroids(simulation.vil_kg_m2)
    displacement = centroid[-1] - centroid[0]
    mean_wind = simulation.mean_wind_m_s.mean(axis=0)
    cosine = displacement @ mean_wind / np.linalg.norm(displacement) / np.linalg.norm(mean_wind)
    assert cosine > np.cos(np.radians(45.0))


def test_weak_systems_with_scattered_cells_simulate():
    # a system weaker than 5 kg m^-2 once drew its scattered cells' peaks from an empty range (3 .. 0.6 * peak)
    scene = storms.StormScene("multicell", storms.SteeringWind(10.0, 250.0), peak_vil_kg_m2=3.5, scattered_cells=3)
    simulation = storms.simulate_storm(scene, np.random.default_rng(5))
    assert np.isfinite(simulation.vil_kg_m2).all() and simulation.vil_kg_m2.max() > 0


def test_steering_wind_varies_smoothly_in_space_and_time():
    wind = storms.SteeringWind.draw(np.random.default_rng(0), 12.0, 240.0)
    x = np.linspace(0.0, 384.0, 129)
    u, v = wind.velocity(x, 192.0, 60.0)
    assert np.abs(np.diff(u)).max() / 0.06 < 0.1 and np.abs(np.diff(v)).max() / 0.06 < 0.1  # m/s per 3 km
    u_later, v_later = wind.velocity(x, 192.0, 70.0)
    assert np.abs(u_later - u).max() / 0.06 < 0.5 and np.abs(v_later - v).max() / 0.06 < 0.5  # m/s per 10 min
    assert np.hypot(u, v).std() > 0  # not uniform


def test_supercell_scenes_split_and_merge_cells():
    merged, split = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        scene = storms.StormScene("supercell", storms.SteeringWind.draw(rng, 12.0, 240.0), 25.0)
        simulation = storms.simulate_storm(scene, rng)
        merged.append(bool(simulation.cell_merged.any()))
        # deviation to the left of the system's motion (positive cross product) = a left-mover
        deviation = simulation.cell_deviation_m_s[simulation.cell_is_supercell]
        sides = np.cross(simulation.system_motion_m_s, deviation)
        split.append(bool(sides.min() < 0 < sides.max()))
    assert all(merged)  # flanking-line cells merge into the storms
    assert any(split) and not all(split)  # some storms split into right- and left-movers


def test_spectral_noise_is_spatially_correlated():
    field = storms.spectral_noise(np.random.default_rng(0), 128, 3.0, 150.0)
    lag1 = np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1]
    assert field.std() == pytest.approx(1.0) and lag1 > 0.8


# --- errors ------------------------------------------------------------------------------------------------

def test_cli_refuses_a_non_empty_folder_without_force(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["data", "demo", "--out", str(tmp_path), "--events", "1"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "CATALOG.csv").exists()


def test_cli_refuses_a_file_as_output_folder(tmp_path, capsys):
    target = tmp_path / "corpus.h5"
    target.write_bytes(b"")
    assert main(["data", "demo", "--out", str(target), "--events", "1"]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs", [{"n_events": 0, "seed": 1}, {"n_events": 2, "seed": -1},
                                    {"n_events": 2, "seed": 1, "compression_level": 12}])
def test_bad_arguments_raise_config_error(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        demo.generate_demo_corpus(tmp_path / "x", **kwargs)


# --- the shipped corpus ------------------------------------------------------------------------------------

def test_shipped_corpus_is_complete_and_small(repo_root):
    from prediff.data.sevir import SevirDataset

    root = repo_root / "assets" / "demo_corpus"
    assert demo.shipped_corpus() == root
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size <= 8.5e6
    assert len(SevirDataset(root).event_ids) == SHIPPED_EVENTS
    sizes = {split: len(SevirDataset(root, split=split).event_ids) for split in ("train", "val", "test")}
    assert sizes["train"] / SHIPPED_EVENTS == pytest.approx(0.70, abs=0.05)
    assert sizes["val"] / SHIPPED_EVENTS == pytest.approx(0.15, abs=0.05)


@pytest.mark.slow
def test_shipped_corpus_is_reproduced_by_the_documented_command(repo_root, tmp_path):
    out = tmp_path / "corpus"
    assert main(["data", "demo", "--out", str(out), "--events", str(SHIPPED_EVENTS), "--seed", str(SHIPPED_SEED),
                 "--quiet"]) == 0
    assert _digests(out) == _digests(repo_root / "assets" / "demo_corpus")
