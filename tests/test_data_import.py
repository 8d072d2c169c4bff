"""``prediff data import``: radar composites -> SEVIR-LR trees (physics, time handling, regridding, CLI, errors).

Real events come from ``../shared/realradar`` (skipped when absent); everything else is synthetic NetCDF / ODIM
written to ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prediff.cli import main as cli_main
from prediff.data import geo
from prediff.data.catalog import Selection
from prediff.data.radar_conversion import (accumulation_to_rainrate, dbz_to_vil_kg_m2, quantity_from_units,
                                           rainrate_to_dbz, to_vil_kg_m2)
from prediff.data.radar_import import (FrameRef, import_radar, read_field, select_ten_minute_frames,
                                       split_into_events, target_grid, time_from_file_name)
from prediff.data.sevir import SevirDataset
from prediff.data.vil import kg_m2_to_vil_pixels
from prediff.errors import DataError

SOURCE_PROJ = "+proj=stere +lat_0=90 +lon_0=10 +lat_ts=60 +ellps=WGS84 +units=m"
CENTER_LAT, CENTER_LON = 52.0, 5.0
TIMES = pd.date_range("2021-06-01 12:00", periods=13, freq="10min")


def _dataset(root: Path) -> SevirDataset:
    return SevirDataset(root, selection=Selection(require_complete=False))


def _projected_axes(half_width_km: int, center=(CENTER_LAT, CENTER_LON)) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres 1 km apart in SOURCE_PROJ around ``center``; y decreasing (row 0 = north, like most
    composites). At 52 N the projection's scale factor makes them ~0.96 km on the ground, and the grid is
    rotated 5 degrees against the target, so covering the 384 km window takes a half width of ~240."""
    cx, cy = geo.project(SOURCE_PROJ, center[1], center[0])
    offsets = np.arange(-half_width_km, half_width_km + 1) * 1000.0
    return cx + offsets, cy - offsets


def _write_projected_netcdf(path: Path, values: np.ndarray, x: np.ndarray, y: np.ndarray, units: str | None,
                            times=TIMES, name: str = "reflectivity") -> Path:
    import pyproj
    import xarray

    attrs = {"grid_mapping": "crs"} | ({"units": units} if units else {})
    dataset = xarray.Dataset(
        {name: (("time", "y", "x"), values.astype(np.float32), attrs),
         "crs": ((), 0, pyproj.CRS.from_proj4(SOURCE_PROJ).to_cf())},
        coords={"time": times, "y": ("y", y, {"units": "m"}), "x": ("x", x, {"units": "m"})})
    dataset.to_netcdf(path)
    return path


def _write_latlon_netcdf(path: Path, values: np.ndarray, lat2d: np.ndarray, lon2d: np.ndarray, units: str) -> Path:
    import xarray

    dataset = xarray.Dataset(
        {"dbz": (("time", "y", "x"), values.astype(np.float32), {"units": units})},
        coords={"time": TIMES, "lat": (("y", "x"), lat2d), "lon": (("y", "x"), lon2d)})
    dataset.to_netcdf(path)
    return path


def _uniform(shape_yx: tuple[int, int], value: float, frames: int = len(TIMES)) -> np.ndarray:
    return np.full((frames, *shape_yx), value, dtype=np.float32)


# ----------------------------------------------------------------------------------------------- physics

def test_30_dbz_over_5_km_is_the_greene_clark_value():
    expected = 3.44e-6 * (10.0 ** 3.0) ** (4.0 / 7.0) * 5000.0
    assert dbz_to_vil_kg_m2(30.0, column_depth_km=5.0) == pytest.approx(expected)
    assert expected == pytest.approx(0.8909, abs=1e-4)
    assert int(kg_m2_to_vil_pixels(expected)) == 79  # round(38.9 ln(0.891) + 83.9)


def test_vil_equivalent_scales_with_column_depth_and_caps_hail():
    assert dbz_to_vil_kg_m2(45.0, 8.0) == pytest.approx(2 * dbz_to_vil_kg_m2(45.0, 4.0))
    assert dbz_to_vil_kg_m2(65.0) == pytest.approx(dbz_to_vil_kg_m2(56.0))
    assert dbz_to_vil_kg_m2(55.0) < dbz_to_vil_kg_m2(56.0)
    assert np.isnan(dbz_to_vil_kg_m2(np.nan))
    with pytest.raises(DataError, match="column-depth"):
        dbz_to_vil_kg_m2(30.0, column_depth_km=0.0)


def test_marshall_palmer_and_accumulations():
    assert rainrate_to_dbz(1.0) == pytest.approx(10 * np.log10(200.0))
    assert rainrate_to_dbz(10.0) == pytest.approx(10 * np.log10(200.0 * 10 ** 1.6))
    assert rainrate_to_dbz(0.0) == -np.inf
    assert accumulation_to_rainrate(1.0, 5.0) == pytest.approx(12.0)
    assert to_vil_kg_m2(0.0, "rainrate") == 0.0
    assert to_vil_kg_m2(1.0, "accumulation", accumulation_minutes=5.0) == pytest.approx(
        dbz_to_vil_kg_m2(rainrate_to_dbz(12.0)))
    with pytest.raises(DataError, match="accumulation period"):
        to_vil_kg_m2(1.0, "accumulation")
    with pytest.raises(DataError, match="unknown radar quantity"):
        to_vil_kg_m2(1.0, "vil")


@pytest.mark.parametrize("units, quantity, factor", [
    ("dBZ", "dbz", 1.0), ("DBZ", "dbz", 1.0), ("mm/h", "rainrate", 1.0), ("mm h-1", "rainrate", 1.0),
    ("mm hr^-1", "rainrate", 1.0), ("kg m-2 s-1", "rainrate", 3600.0), ("kg m**-2 s**-1", "rainrate", 3600.0),
    ("mm", "accumulation", 1.0), ("kg m-2", "accumulation", 1.0)])
def test_quantity_is_recognised_from_units(units, quantity, factor):
    assert quantity_from_units(units) == (quantity, factor)


@pytest.mark.parametrize("units", [None, "", "furlongs"])
def test_unknown_units_ask_for_quantity(units):
    with pytest.raises(DataError, match="--quantity"):
        quantity_from_units(units)


# ----------------------------------------------------------------------------------------------- time handling

def test_time_stamps_are_parsed_from_met_service_file_names():
    assert time_from_file_name(Path("201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz")) == \
        pd.Timestamp("2016-09-28 14:45")
    assert time_from_file_name(Path("RAD_NL25_RAP_5min_201008260035.h5")) == pd.Timestamp("2010-08-26 00:35")
    assert time_from_file_name(Path("radar_20200101T1230.nc")) == pd.Timestamp("2020-01-01 12:30")
    assert time_from_file_name(Path("composite_0001.h5")) is None


def _frames(times) -> list[FrameRef]:
    return [FrameRef(pd.Timestamp(t), Path(f"{k}.h5"), "odim-hdf5") for k, t in enumerate(times)]


def test_five_minute_frames_are_subsampled_on_the_ten_minute_marks():
    frames = _frames(pd.date_range("2020-01-01 00:05", periods=40, freq="5min"))
    kept = select_ten_minute_frames(frames)
    assert [f.time.minute % 10 for f in kept] == [0] * 20
    assert np.all(np.diff([f.time.value for f in kept]) == 600e9)
    window = select_ten_minute_frames(frames, pd.Timestamp("2020-01-01 00:30"), pd.Timestamp("2020-01-01 02:35"))
    assert (window[0].time, window[-1].time, len(window)) == (
        pd.Timestamp("2020-01-01 00:30"), pd.Timestamp("2020-01-01 02:30"), 13)


def test_ten_minute_data_off_the_marks_keeps_its_phase():
    kept = select_ten_minute_frames(_frames(pd.date_range("2020-01-01 00:05", periods=15, freq="10min")))
    assert len(kept) == 15 and kept[0].time.minute == 5


@pytest.mark.parametrize("times, message", [
    (pd.date_range("2020-01-01", periods=30, freq="15min"), "does not divide 10 minutes"),
    (pd.date_range("2020-01-01", periods=30, freq="5min").delete([10, 11]), "gap"),
    (pd.date_range("2020-01-01", periods=12, freq="10min"), "at least 13"),
    (pd.date_range("2020-01-01", periods=24, freq="5min"), "at least 13"),
])
def test_unusable_time_series_are_refused(times, message):
    with pytest.raises(DataError, match=message):
        select_ten_minute_frames(_frames(times))


def test_events_are_counted_back_from_the_newest_frame():
    assert split_into_events(20) == [slice(0, 20)]
    assert split_into_events(25) == [slice(0, 25)]
    assert split_into_events(46) == [slice(21, 46)]
    assert split_into_events(50) == [slice(0, 25), slice(25, 50)]
    with pytest.raises(DataError, match="too few"):
        split_into_events(12)


# ----------------------------------------------------------------------------------------------- regridding

def test_target_grid_is_centred_and_3_km():
    grid, corners = target_grid(CENTER_LAT, CENTER_LON)
    assert grid.shape == (128, 128)
    assert grid.pixel_size_m == pytest.approx((3000.0, 3000.0))
    assert grid.extent() == pytest.approx((-192000.0, 192000.0, -192000.0, 192000.0), abs=1e-3)
    assert corners[0] < CENTER_LAT < corners[2] and corners[1] < CENTER_LON < corners[3]
    with pytest.raises(DataError, match="latitude/longitude"):
        target_grid(95.0, 0.0)


def test_uniform_30_dbz_gives_the_predicted_pixel_everywhere(tmp_path):
    x, y = _projected_axes(240)
    source = _write_projected_netcdf(tmp_path / "uniform.nc", _uniform((y.size, x.size), 30.0), x, y, "dBZ")
    result = import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON)
    dataset = _dataset(tmp_path / "out")
    (event_id,) = dataset.event_ids
    vil = dataset.read_event(event_id)
    assert vil.shape == (13, 128, 128) and vil.dtype == np.uint8
    assert np.all(vil == 79)
    assert result.samples_per_axis == 6 and result.quantity == "dbz"
    row = dataset.row(event_id)
    assert row["pct_missing"] == 0.0 and row["event_type"] == "Imported radar (NetCDF)"
    assert event_id == "I202106011300" and pd.Timestamp(row["time_utc"]) == TIMES[6]
    assert list(dataset.frame_times(event_id)) == list(TIMES.values)


def test_kilometre_coordinates_and_1d_lat_lon_grids_are_understood(tmp_path):
    import xarray

    x, y = _projected_axes(240)
    values = _uniform((y.size, x.size), 30.0)
    in_km = _write_projected_netcdf(tmp_path / "km.nc", values, x, y, "dBZ")
    with xarray.open_dataset(in_km) as dataset:
        scaled = dataset.load().assign_coords(x=("x", x / 1000.0, {"units": "km"}),
                                              y=("y", y / 1000.0, {"units": "km"}))
    scaled.to_netcdf(tmp_path / "km_scaled.nc")
    import_radar([tmp_path / "km_scaled.nc"], tmp_path / "out_km", CENTER_LAT, CENTER_LON)
    assert np.all(_dataset(tmp_path / "out_km").read_event("I202106011300") == 79)

    lat, lon = np.arange(54.0, 50.0, -0.01), np.arange(1.5, 8.5, 0.015)
    regular = xarray.Dataset({"dbz": (("time", "lat", "lon"), _uniform((lat.size, lon.size), 30.0),
                                      {"units": "dBZ"})}, coords={"time": TIMES, "lat": lat, "lon": lon})
    regular.to_netcdf(tmp_path / "regular.nc")
    progress = []
    import_radar([tmp_path / "regular.nc"], tmp_path / "out_ll", CENTER_LAT, CENTER_LON,
                 progress=lambda done, total: progress.append((done, total)))
    assert np.all(_dataset(tmp_path / "out_ll").read_event("I202106011300") == 79)
    assert progress[0] == (1, 13) and progress[-1] == (13, 13)


def test_column_depth_changes_the_pixels(tmp_path):
    x, y = _projected_axes(240)
    source = _write_projected_netcdf(tmp_path / "uniform.nc", _uniform((y.size, x.size), 30.0), x, y, "dBZ")
    import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON, column_depth_km=10.0)
    vil = _dataset(tmp_path / "out").read_event("I202106011300")
    assert np.all(vil == kg_m2_to_vil_pixels(dbz_to_vil_kg_m2(30.0, 10.0)))
    assert int(vil[0, 0, 0]) > 79


def test_rain_rate_in_si_units_is_converted(tmp_path):
    x, y = _projected_axes(240)
    rate_si = _uniform((y.size, x.size), 10.0 / 3600.0)
    source = _write_projected_netcdf(tmp_path / "rate.nc", rate_si, x, y, "kg m-2 s-1", name="precipitation_flux")
    result = import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON)
    vil = _dataset(tmp_path / "out").read_event("I202106011300")
    expected = kg_m2_to_vil_pixels(dbz_to_vil_kg_m2(rainrate_to_dbz(10.0)))
    assert result.quantity == "rainrate"
    assert np.all(vil == expected)


def test_cells_outside_the_source_domain_are_missing(tmp_path):
    x, y = _projected_axes(100)
    source = _write_projected_netcdf(tmp_path / "small.nc", _uniform((y.size, x.size), 30.0), x, y, "dBZ")
    import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON)
    dataset = _dataset(tmp_path / "out")
    vil = dataset.read_event("I202106011300")
    grid = dataset.grid("I202106011300")
    xx, yy = np.meshgrid(grid.x, grid.y)
    distance_km = np.maximum(abs(xx), abs(yy)) / 1000.0
    assert np.all(vil[:, distance_km < 85] == 79)
    assert np.all(vil[:, distance_km > 115] == 255)
    assert dataset.row("I202106011300")["pct_missing"] == pytest.approx(100 * np.mean(vil == 255))


def test_a_feature_on_a_lat_lon_grid_lands_in_its_target_cell(tmp_path):
    lat = np.arange(50.0, 54.0, 0.01)
    lon = np.arange(2.0, 8.0, 0.015)
    lon2d, lat2d = np.meshgrid(lon, lat)
    grid, _ = target_grid(CENTER_LAT, CENTER_LON)
    cell_row, cell_col = 70, 40
    feature_lon, feature_lat = geo.unproject(grid.proj, grid.x[cell_col], grid.y[cell_row])
    values = _uniform(lat2d.shape, 10.0)
    nearest = np.unravel_index(np.argmin((lat2d - feature_lat) ** 2 + ((lon2d - feature_lon) * 0.6) ** 2),
                               lat2d.shape)
    values[:, nearest[0], nearest[1]] = 50.0
    source = _write_latlon_netcdf(tmp_path / "latlon.nc", values, lat2d, lon2d, "dBZ")
    import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON)
    vil = _dataset(tmp_path / "out").read_event("I202106011300")
    high = np.argwhere(vil[0] == kg_m2_to_vil_pixels(dbz_to_vil_kg_m2(50.0)))
    assert high.tolist() == [[cell_row, cell_col]]
    assert np.all(vil[0][vil[0] != 255] <= vil[0, cell_row, cell_col])
    background = kg_m2_to_vil_pixels(dbz_to_vil_kg_m2(10.0))
    assert np.mean(vil[0] == background) > 0.5


def test_a_feature_on_a_projected_grid_lands_in_its_target_cell(tmp_path):
    x, y = _projected_axes(240)
    grid, _ = target_grid(CENTER_LAT, CENTER_LON)
    cell_row, cell_col = 20, 100
    feature_lon, feature_lat = geo.unproject(grid.proj, grid.x[cell_col], grid.y[cell_row])
    fx, fy = geo.project(SOURCE_PROJ, feature_lon, feature_lat)
    values = _uniform((y.size, x.size), 0.0)
    values[:, np.argmin(abs(y - fy)), np.argmin(abs(x - fx))] = 45.0
    source = _write_projected_netcdf(tmp_path / "feature.nc", values, x, y, "dBZ")
    import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON)
    vil = _dataset(tmp_path / "out").read_event("I202106011300")
    assert np.all(vil != 255)
    assert np.argwhere(vil[5] == vil[5].max()).tolist() == [[cell_row, cell_col]]
    assert vil[5, cell_row, cell_col] == kg_m2_to_vil_pixels(dbz_to_vil_kg_m2(45.0))


def test_odim_files_are_read_with_times_from_their_attributes(tmp_path):
    import h5py

    proj = "+proj=laea +lat_0=52 +lon_0=5 +ellps=WGS84"
    half = 200_000.0
    (ll_lon, ur_lon), (ll_lat, ur_lat) = geo.unproject(proj, [-half, half], [-half, half])
    size = 400
    for k, time in enumerate(pd.date_range("2022-07-01 10:00", periods=13, freq="10min")):
        with h5py.File(tmp_path / f"composite_{k:03d}.h5", "w") as handle:
            handle.create_group("what").attrs.update({"date": np.bytes_(f"{time:%Y%m%d}"),
                                                      "time": np.bytes_(f"{time:%H%M%S}")})
            handle.create_group("where").attrs.update({
                "projdef": np.bytes_(proj), "LL_lat": ll_lat, "LL_lon": ll_lon, "UR_lat": ur_lat,
                "UR_lon": ur_lon, "xscale": 2 * half / size, "yscale": 2 * half / size})
            data = handle.create_group("dataset1").create_group("data1")
            data.create_group("what").attrs.update({"quantity": np.bytes_("DBZH"), "gain": 0.5,
                                                    "offset": -32.0, "nodata": 255.0, "undetect": 0.0})
            data.create_dataset("data", data=np.full((size, size), (30.0 + 32.0) / 0.5, dtype=np.uint8))
    result = import_radar([tmp_path], tmp_path / "out", 52.0, 5.0)
    assert result.source == "ODIM HDF5"
    dataset = _dataset(tmp_path / "out")
    assert dataset.event_ids == ["I202207011100"]
    vil = dataset.read_event("I202207011100")
    assert np.all(vil[:, 20:108, 20:108] == 79)


# ----------------------------------------------------------------------------------------------- real events

def _check_georeferencing(dataset: SevirDataset, event_id: str, center_lat: float, center_lon: float):
    grid = dataset.grid(event_id)
    lat, lon = grid.latlon()
    assert _great_circle_km(lat[64, 64], lon[64, 64], center_lat, center_lon) < 2.2
    assert _great_circle_km(lat[63:65, 63:65].mean(), lon[63:65, 63:65].mean(), center_lat, center_lon) < 0.1
    assert grid.pixel_size_m == pytest.approx((3000.0, 3000.0), rel=1e-6)
    assert grid.extent() == pytest.approx((-192000.0, 192000.0, -192000.0, 192000.0), abs=1.0)
    row = dataset.row(event_id)
    assert (row["width_m"], row["height_m"]) == (384000.0, 384000.0)


def _great_circle_km(lat1, lon1, lat2, lon2) -> float:
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return float(2 * 6371.0 * np.arcsin(np.sqrt(h)))


@pytest.mark.shared
def test_fmi_event_becomes_a_georeferenced_sevir_lr_tree(realradar_dir, tmp_path):
    center_lat, center_lon = 65.5, 21.5  # Gulf of Bothnia: the window reaches beyond FMI's coverage
    result = import_radar([realradar_dir / "fmi"], tmp_path / "fmi", center_lat, center_lon)
    assert (result.source, result.quantity, result.frames_read, result.frames_dropped) == ("FMI PGM", "dbz", 20, 0)
    dataset = _dataset(tmp_path / "fmi")
    (event_id,) = dataset.event_ids
    assert event_id == "I201609281630"
    vil = dataset.read_event(event_id)
    assert vil.shape == (20, 128, 128) and vil.dtype == np.uint8
    times = dataset.frame_times(event_id)
    assert np.all(np.diff(times) == np.timedelta64(10, "m"))
    assert (pd.Timestamp(times[0]), pd.Timestamp(times[-1])) == (pd.Timestamp("2016-09-28 14:50"),
                                                                  pd.Timestamp("2016-09-28 18:00"))
    _check_georeferencing(dataset, event_id, center_lat, center_lon)
    valid = vil[vil != 255]
    assert 0.2 < np.mean(vil == 255) < 0.6  # Sweden's side of the window is outside coverage
    assert np.all(vil[:, :, 0] == 255) and np.all(vil[:, 64, 120] != 255)  # west missing, Finnish coast seen
    assert 0.1 < np.mean(valid >= 16) < 0.9 and valid.max() > 133


@pytest.mark.shared
def test_knmi_accumulations_become_a_25_frame_event(realradar_dir, tmp_path):
    center_lat, center_lon = 52.1, 5.18  # De Bilt
    result = import_radar([str(realradar_dir / "KNMI" / "2010" / "08" / "*.h5")], tmp_path / "knmi",
                          center_lat, center_lon)
    assert (result.source, result.quantity, result.frames_read, result.frames_dropped) == (
        "KNMI HDF5", "accumulation", 25, 21)
    dataset = _dataset(tmp_path / "knmi")
    (event_id,) = dataset.event_ids
    assert event_id == "I201008260530"
    row = dataset.row(event_id)
    assert row["minute_offsets"] == ":".join(str(m) for m in range(-120, 121, 10))
    vil = dataset.read_event(event_id)
    assert vil.shape == (25, 128, 128) and vil.dtype == np.uint8
    assert pd.Timestamp(dataset.frame_times(event_id)[-1]) == pd.Timestamp("2010-08-26 07:30")
    _check_georeferencing(dataset, event_id, center_lat, center_lon)
    assert np.all(vil[:, 54:74, 54:74] != 255)  # the radar disc covers the centre ...
    assert np.all(vil[:, 0, 0] == 255) and np.all(vil[:, -1, -1] == 255)  # ... but not the corners
    valid = vil[vil != 255]
    assert 0.05 < np.mean(valid >= 16) < 0.9 and valid.max() >= 74
    assert row["pct_missing"] == pytest.approx(100 * np.mean(vil == 255))


@pytest.mark.shared
def test_files_without_time_stamps_take_first_time_and_timestep(realradar_dir, tmp_path):
    sources = sorted((realradar_dir / "KNMI" / "2010" / "08").glob("*.h5"))[:26]
    linked = tmp_path / "linked"
    linked.mkdir()
    for k, path in enumerate(sources):
        (linked / f"knmi_frame_{k:03d}.h5").symlink_to(path)
    with pytest.raises(DataError, match="--first-time"):
        import_radar([linked], tmp_path / "out", 52.1, 5.18)
    with pytest.raises(DataError, match="--timestep"):
        import_radar([linked], tmp_path / "out", 52.1, 5.18, first_time="2010-08-26T00:00")
    result = import_radar([linked], tmp_path / "out", 52.1, 5.18, first_time="2010-08-26T00:00Z",
                          timestep_minutes=5)
    assert result.frames_read == 13 and result.events[0].id == "I201008260100"


# ----------------------------------------------------------------------------------------------- errors, CLI

def test_error_no_files(tmp_path):
    with pytest.raises(DataError, match="no radar files"):
        import_radar([tmp_path / "nothing-here" / "*.h5"], tmp_path / "out", CENTER_LAT, CENTER_LON)


def test_error_unknown_format(tmp_path):
    text = tmp_path / "radar_202001010000.txt"
    text.write_text("not radar")
    with pytest.raises(DataError, match="unknown radar file format.*--format"):
        import_radar([text], tmp_path / "out", CENTER_LAT, CENTER_LON)
    with pytest.raises(DataError, match="no radar files"):  # directories are searched for radar names only
        import_radar([tmp_path], tmp_path / "out", CENTER_LAT, CENTER_LON)
    with pytest.raises(DataError, match="unknown --format"):
        import_radar([text], tmp_path / "out", CENTER_LAT, CENTER_LON, file_format="gif")
    foreign = tmp_path / "foreign_202001010000.h5"
    import h5py

    with h5py.File(foreign, "w") as handle:
        handle.create_dataset("something", data=np.zeros(3))
    with pytest.raises(DataError, match="unknown radar file format"):
        import_radar([foreign], tmp_path / "out", CENTER_LAT, CENTER_LON)
    with pytest.raises(DataError, match="pysteps could not read"):
        read_field(FrameRef(pd.Timestamp("2020-01-01"), foreign, "knmi-hdf5"))


def test_error_centre_outside_the_domain(tmp_path):
    x, y = _projected_axes(100)
    source = _write_projected_netcdf(tmp_path / "small.nc", _uniform((y.size, x.size), 30.0), x, y, "dBZ")
    with pytest.raises(DataError, match="outside the radar domain"):
        import_radar([source], tmp_path / "out", 45.0, 5.0)


def test_error_too_few_frames(tmp_path):
    x, y = _projected_axes(20)
    source = _write_projected_netcdf(tmp_path / "short.nc", _uniform((y.size, x.size), 30.0, 6), x, y, "dBZ",
                                     times=TIMES[:6])
    with pytest.raises(DataError, match="at least 13"):
        import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON)


def test_error_inconsistent_grids_between_files(tmp_path):
    x, y = _projected_axes(20)
    first = _write_projected_netcdf(tmp_path / "a.nc", _uniform((y.size, x.size), 30.0, 7), x, y, "dBZ",
                                    times=TIMES[:7])
    _write_projected_netcdf(tmp_path / "b.nc", _uniform((y.size, x.size), 30.0, 6), x + 500.0, y, "dBZ",
                            times=TIMES[7:])
    with pytest.raises(DataError, match="differs from that of"):
        import_radar([first.parent], tmp_path / "out", CENTER_LAT, CENTER_LON)


def test_error_unknown_units_and_contradicting_quantity(tmp_path):
    x, y = _projected_axes(20)
    values = _uniform((y.size, x.size), 30.0)
    source = _write_projected_netcdf(tmp_path / "odd.nc", values, x, y, "furlongs")
    with pytest.raises(DataError, match="--quantity"):
        import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON)
    result = import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON, quantity="dbz")
    assert result.quantity == "dbz"
    labelled = _write_projected_netcdf(tmp_path / "labelled.nc", values, x, y, "dBZ")
    with pytest.raises(DataError, match="--quantity says rainrate"):
        import_radar([labelled], tmp_path / "out2", CENTER_LAT, CENTER_LON, quantity="rainrate")
    with pytest.raises(DataError, match="unknown --quantity"):
        import_radar([labelled], tmp_path / "out2", CENTER_LAT, CENTER_LON, quantity="vil")


def test_error_vil_is_not_taken_for_an_accumulation(tmp_path):
    x, y = _projected_axes(20)
    source = _write_projected_netcdf(tmp_path / "vil.nc", _uniform((y.size, x.size), 3.0), x, y, "kg m-2",
                                     name="vil_kg_m2")
    with pytest.raises(DataError, match="already holds VIL"):
        import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON)


def test_error_existing_output_needs_overwrite(tmp_path):
    x, y = _projected_axes(20)
    source = _write_projected_netcdf(tmp_path / "in.nc", _uniform((y.size, x.size), 30.0), x, y, "dBZ")
    import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON)
    with pytest.raises(DataError, match="--overwrite"):
        import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON)
    import_radar([source], tmp_path / "out", CENTER_LAT, CENTER_LON, overwrite=True)


def test_cli_imports_and_reports_errors_without_traceback(tmp_path, capsys):
    x, y = _projected_axes(240)
    source = _write_projected_netcdf(tmp_path / "uniform.nc", _uniform((y.size, x.size), 30.0), x, y, "dBZ")
    status = cli_main(["data", "import", str(source), "--out", str(tmp_path / "out"), "--center-lat", "52",
                       "--center-lon", "5", "--column-depth-km", "5"])
    output = capsys.readouterr()
    assert status == 0 and "I202106011300" in output.out and "NetCDF" in output.out
    assert (tmp_path / "out" / "CATALOG.csv").is_file()
    status = cli_main(["data", "import", str(tmp_path / "missing"), "--out", str(tmp_path / "out2"),
                       "--center-lat", "52", "--center-lon", "5"])
    output = capsys.readouterr()
    assert status == 2 and output.err.startswith("error: no radar files") and "Traceback" not in output.err
