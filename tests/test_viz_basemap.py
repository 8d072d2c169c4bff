"""Offline Natural Earth outlines and their projection onto radar grids."""

import numpy as np
import pytest

from prediff.data.geo import SEVIR_PROJ, corners_for_center, grid_from_corners, laea_proj_for_center, unproject
from prediff.errors import DataError
from prediff.viz.basemap import BASEMAP_PATH, LAYERS, basemap_for_grid, basemap_lines, load_basemap


def _grid(lat, lon, proj=SEVIR_PROJ, size=128):
    return grid_from_corners(proj, *corners_for_center(proj, lat, lon, 384000.0, 384000.0), size, size)


def test_asset_is_small_and_complete():
    assert BASEMAP_PATH.stat().st_size < 2_000_000
    layers = load_basemap()
    assert set(layers) == set(LAYERS)
    for lonlat in layers.values():
        assert lonlat.ndim == 2 and lonlat.shape[1] == 2 and np.isnan(lonlat[-1]).all()


def test_chicago_patch_has_lake_michigan_shore_and_state_lines():
    grid = _grid(41.88, -87.63)
    lines = basemap_for_grid(grid)
    x, y = lines["lakes"]
    assert x.size > 20
    lon, lat = unproject(SEVIR_PROJ, x[np.isfinite(x)], y[np.isfinite(y)])
    # the Lake Michigan shore passes within 10 km of downtown Chicago
    distance_deg = np.hypot(np.asarray(lon) + 87.62, np.asarray(lat) - 41.88)
    assert distance_deg.min() < 0.1
    assert lines["state_borders"][0].size > 10
    x_min, x_max, y_min, y_max = grid.extent()
    finite = np.isfinite(lines["state_borders"][0])
    assert (lines["state_borders"][0][finite] > x_min - 0.11 * (x_max - x_min)).all()


def test_kansas_has_no_coast_and_europe_is_covered():
    assert basemap_for_grid(_grid(38.5, -98.5))["coastline"][0].size == 0
    helsinki = _grid(60.17, 24.94, proj=laea_proj_for_center(60.17, 24.94))
    assert basemap_for_grid(helsinki)["coastline"][0].size > 50


def test_far_side_of_the_globe_is_dropped_not_infinite():
    lines = basemap_lines(SEVIR_PROJ, (-5e6, 5e6, -5e6, 5e6))
    for x, y in lines.values():
        assert not np.isinf(x).any() and not np.isinf(y).any()
        assert not (np.isnan(x[1:]) & np.isnan(x[:-1])).any()


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown basemap layers"):
        basemap_lines(SEVIR_PROJ, (0, 1, 0, 1), layers=("rivers",))
    with pytest.raises(DataError, match="make_basemap.py"):
        load_basemap(tmp_path / "missing.npz")
    broken = tmp_path / "broken.npz"
    np.savez(broken, coastline=np.zeros((2, 2)))
    with pytest.raises(DataError, match="lacks the layers"):
        load_basemap(broken)


def _make_basemap_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "make_basemap.py"
    spec = importlib.util.spec_from_file_location("make_basemap", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_basemap_clips_simplifies_and_filters(tmp_path):
    import shapefile

    make_basemap = _make_basemap_module()
    with shapefile.Writer(str(tmp_path / "lines"), shapeType=shapefile.POLYLINE) as writer:
        writer.field("name", "C")
        # a wiggly line crossing the North America box edge at lon -55, and one in the Pacific (dropped)
        wiggle = [[lon, 40.0 + 0.001 * (index % 2)] for index, lon in enumerate(np.arange(-60.0, -50.0, 0.05))]
        writer.line([wiggle])
        writer.record("crossing")
        writer.line([[[-170.0, 0.0], [-160.0, 1.0]]])
        writer.record("pacific")
        writer.null()
        writer.record("empty")
    with shapefile.Writer(str(tmp_path / "lakes"), shapeType=shapefile.POLYGON) as writer:
        writer.field("name", "C")
        writer.poly([[[-90.0, 45.0], [-89.0, 45.0], [-89.0, 46.0], [-90.0, 46.0], [-90.0, 45.0]]])
        writer.record("big")
        writer.poly([[[-91.0, 45.0], [-90.99, 45.0], [-90.99, 45.01], [-91.0, 45.0]]])
        writer.record("tiny")
    lines = make_basemap.build_layer(tmp_path / "lines.shp", ("north_america",), 0.0, tolerance=0.01)
    finite = lines[np.isfinite(lines[:, 0])]
    assert lines.dtype == np.float32 and np.isnan(lines[-1]).all()
    assert finite[:, 0].max() <= -55.0 + 1e-4 and finite[:, 0].min() >= -60.0 - 1e-4
    assert len(finite) < 10  # the 0.001 deg wiggle is simplified away
    lakes = make_basemap.build_layer(tmp_path / "lakes.shp", ("north_america",), 0.02, tolerance=0.01)
    assert int(np.isnan(lakes[:, 0]).sum()) == 1  # only the big lake's ring is kept
