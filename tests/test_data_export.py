"""CF-1.8 export of events and windows (prediff.data.export) and `prediff data export`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyproj
import pytest
import xarray as xr

from prediff.cli import main
from prediff.data.catalog import Selection
from prediff.data.export import event_to_xarray, grid_mapping_attrs, write_netcdf
from prediff.data.geo import SEVIR_PROJ, corners_for_center
from prediff.data.layout import EventRecord, write_sevir_tree
from prediff.data.sevir import SevirDataset
from prediff.data.vil import vil_pixels_to_kg_m2
from prediff.errors import DataError


@pytest.fixture
def dataset(tmp_path):
    vil = np.random.default_rng(1).integers(0, 255, (64, 64, 25), dtype=np.uint8)
    vil[:4, :4, :] = 255
    corners = corners_for_center(SEVIR_PROJ, 36.5, -95.0, 192e3, 192e3)
    write_sevir_tree(tmp_path / "tree", [EventRecord(
        id="S835047", time_utc=pd.Timestamp("2019-06-12 18:00"), vil=vil, minute_offsets=range(-120, 121, 10),
        llcrnrlat=corners[0], llcrnrlon=corners[1], urcrnrlat=corners[2], urcrnrlon=corners[3], proj=SEVIR_PROJ,
        width_m=192e3, height_m=192e3, event_type="Flash Flood", episode_id=140000, event_id=835047)])
    return SevirDataset(tmp_path / "tree", selection=Selection(require_complete=False))


def test_event_dataset_structure(dataset):
    ds = event_to_xarray(dataset, "S835047")
    assert dict(ds.sizes) == {"time": 25, "y": 64, "x": 64}
    assert ds["vil"].dims == ("time", "y", "x") and ds["vil"].dtype == np.uint8
    np.testing.assert_array_equal(ds["vil"].values, dataset.read_event("S835047"))
    assert ds["vil"].attrs["units"] == "1" and "exp((X - 83.9) / 38.9)" in ds["vil"].attrs["description"]
    assert ds["vil"].encoding["_FillValue"] == 255
    np.testing.assert_array_equal(ds["vil"].attrs["valid_range"], [0, 254])
    assert ds["vil_kg_m2"].dtype == np.float32 and ds["vil_kg_m2"].attrs["units"] == "kg m-2"
    np.testing.assert_array_equal(ds["vil_kg_m2"].values, vil_pixels_to_kg_m2(ds["vil"].values))
    assert np.isnan(ds["vil_kg_m2"].values[:, 0, 0]).all()
    np.testing.assert_array_equal(ds["time"].values, dataset.frame_times("S835047"))
    assert ds["y"].attrs["standard_name"] == "projection_y_coordinate" and ds["y"].attrs["units"] == "m"
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate"
    assert ds["lat"].dims == ("y", "x") and ds["lat"].attrs == {"standard_name": "latitude", "units": "degrees_north"}
    assert ds["lon"].attrs["units"] == "degrees_east"
    lat, lon = dataset.grid("S835047").latlon()
    np.testing.assert_array_equal(ds["lat"].values, lat)
    assert ds["vil"].attrs["grid_mapping"] == "crs" and ds["vil_kg_m2"].attrs["grid_mapping"] == "crs"
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert ds.attrs["event_id"] == "S835047" and ds.attrs["event_type"] == "Flash Flood"
    assert "S835047" in ds.attrs["title"] and "source" in ds.attrs


def test_grid_mapping_parameters_describe_the_projection():
    attrs = grid_mapping_attrs(SEVIR_PROJ)
    assert attrs["grid_mapping_name"] == "lambert_azimuthal_equal_area"
    assert attrs["latitude_of_projection_origin"] == 38.0 and attrs["longitude_of_projection_origin"] == -98.0
    assert attrs["earth_radius"] == 6370997.0 and attrs["proj4"] == SEVIR_PROJ
    # the CF parameters alone (without the WKT) must rebuild the same projection
    cf_only = {k: v for k, v in attrs.items() if k not in ("crs_wkt", "proj4")}
    rebuilt = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_cf(cf_only), always_xy=True)
    reference = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_proj4(SEVIR_PROJ), always_xy=True)
    np.testing.assert_allclose(rebuilt.transform(-90.0, 42.0), reference.transform(-90.0, 42.0), atol=1e-3)
    ellipsoidal = grid_mapping_attrs("+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80")
    assert ellipsoidal["false_easting"] == 4321000.0 and ellipsoidal["inverse_flattening"] == pytest.approx(298.257222)


def test_window_export(dataset):
    ds = event_to_xarray(dataset, "S835047", window=2)
    assert ds.sizes["time"] == 13
    np.testing.assert_array_equal(ds["time"].values, dataset.frame_times("S835047")[12:25])
    np.testing.assert_array_equal(ds["vil"].values, dataset.read_window("S835047", 2))
    assert ds.attrs["window_index"] == 2 and ds.attrs["window_start_frame"] == 12
    assert (ds.attrs["context_frames"], ds.attrs["target_frames"]) == (7, 6)
    with pytest.raises(DataError, match="window 3 does not exist"):
        event_to_xarray(dataset, "S835047", window=3)


def test_netcdf_round_trip(dataset, tmp_path):
    ds = event_to_xarray(dataset, "S835047")
    path = write_netcdf(ds, tmp_path / "out" / "event.nc")
    assert path.is_file() and not list(path.parent.glob("*.part"))
    with xr.open_dataset(path, mask_and_scale=False) as raw:
        assert raw["vil"].dtype == np.uint8 and raw["vil"].attrs["_FillValue"] == 255
        np.testing.assert_array_equal(raw["vil"].values, ds["vil"].values)
    with xr.open_dataset(path) as cf:
        # a CF reader masks the missing pixels
        assert np.isnan(cf["vil"].values[:, 0, 0]).all()
        np.testing.assert_array_equal(cf["vil_kg_m2"].values, ds["vil_kg_m2"].values)
        np.testing.assert_array_equal(cf["time"].values, ds["time"].values)
        np.testing.assert_array_equal(cf["lat"].values, ds["lat"].values)
        np.testing.assert_array_equal(cf["y"].values, ds["y"].values)
        assert cf["crs"].attrs["grid_mapping_name"] == "lambert_azimuthal_equal_area"
        assert pyproj.CRS.from_cf(cf["crs"].attrs) == pyproj.CRS.from_wkt(ds["crs"].attrs["crs_wkt"])
        assert cf.attrs["Conventions"] == "CF-1.8" and cf.attrs["event_id"] == "S835047"


def test_failed_write_leaves_no_file(dataset, tmp_path):
    ds = event_to_xarray(dataset, "S835047")
    ds.attrs["bad"] = {"nested": "dict"}   # netCDF attributes cannot hold a dict
    with pytest.raises((TypeError, ValueError)):
        write_netcdf(ds, tmp_path / "event.nc")
    assert list(tmp_path.glob("*event.nc*")) == []


def test_export_command(dataset, tmp_path, capsys):
    out = tmp_path / "window.nc"
    assert main(["data", "export", "--data", str(dataset.root), "--event", "S835047", "--window", "1",
                 "--out", str(out)]) == 0
    with xr.open_dataset(out) as ds:
        assert ds.sizes["time"] == 13 and ds.attrs["window_index"] == 1
    assert main(["data", "export", "--data", str(dataset.root), "--event", "S1", "--out", str(out)]) == 2
    assert "prediff events --data" in capsys.readouterr().err
