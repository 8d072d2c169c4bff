"""Export of SEVIR events (or single forecast windows) as CF-1.8 xarray datasets and NetCDF files.

The dataset has dims (time, y, x) with row 0 = south (y increasing), the event's projection as a CF
``grid_mapping`` variable ``crs``, 2-D ``lat`` / ``lon`` of every pixel centre, and VIL both as stored
(``vil``, uint8 pixels, 255 = missing via ``_FillValue``) and decoded (``vil_kg_m2``, float32, NaN = missing).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from prediff.data.geo import Grid
from prediff.data.layout import MISSING_PIXEL
from prediff.data.sevir import SevirDataset
from prediff.data.vil import vil_pixels_to_kg_m2
from prediff.errors import DataError
from prediff.io_utils import atomic_path

VIL_ENCODING_DESCRIPTION = (
    "SEVIR VIL pixel X (uint8): X <= 5 -> 0 kg m-2; 5 < X <= 18 -> (X - 2) / 90.66 kg m-2; "
    "18 < X <= 254 -> exp((X - 83.9) / 38.9) kg m-2; X = 255 -> missing (outside radar coverage)"
)


def grid_mapping_attrs(proj: str) -> dict:
    """CF grid-mapping attributes of a PROJ string (Lambert azimuthal equal-area written explicitly).

    Returns
    -------
    dict with ``grid_mapping_name``, the projection parameters, the figure of the earth, ``crs_wkt`` and
    ``proj4`` (the PROJ string as given).
    """
    import pyproj

    crs = pyproj.CRS.from_proj4(proj)
    operation = crs.coordinate_operation
    if operation is not None and operation.method_name.startswith("Lambert Azimuthal Equal Area"):
        params = {param.name: float(param.value) for param in operation.params}
        attrs = {
            "grid_mapping_name": "lambert_azimuthal_equal_area",
            "latitude_of_projection_origin": params["Latitude of natural origin"],
            "longitude_of_projection_origin": params["Longitude of natural origin"],
            "false_easting": params.get("False easting", 0.0),
            "false_northing": params.get("False northing", 0.0),
        }
        ellipsoid = crs.ellipsoid
        if ellipsoid.inverse_flattening == 0:
            attrs["earth_radius"] = float(ellipsoid.semi_major_metre)
        else:
            attrs["semi_major_axis"] = float(ellipsoid.semi_major_metre)
            attrs["inverse_flattening"] = float(ellipsoid.inverse_flattening)
    else:
        attrs = {key: value for key, value in crs.to_cf().items() if key != "crs_wkt"}
    attrs["crs_wkt"] = crs.to_wkt()
    attrs["proj4"] = proj
    return attrs


def event_to_xarray(dataset: SevirDataset, event_id: str, window: int | None = None) -> xr.Dataset:
    """One event, or one of its forecast windows, as a CF-1.8 dataset.

    Parameters
    ----------
    dataset : the SEVIR tree to read from.
    event_id : catalog id of the event.
    window : index k of a forecast window (see :meth:`SevirDataset.window_starts`), or None for all frames.

    Returns
    -------
    xr.Dataset with dims (time, y, x):

    * ``vil`` (time, y, x) uint8 VIL pixels; 255 = missing (``_FillValue`` in its encoding, so CF readers mask it);
    * ``vil_kg_m2`` (time, y, x) float32 kg m^-2, NaN = missing;
    * coords ``time`` datetime64[ns] (UTC), ``y`` / ``x`` (H,) / (W,) float64 projected metres of pixel
      centres (row 0 = south), ``lat`` / ``lon`` (y, x) float64 degrees;
    * ``crs``: scalar grid-mapping variable;
    * global attributes ``Conventions``, ``title``, ``source``, ``event_id``, ``event_type``, ``time_utc``
      and, for a window, ``window_index``, ``window_start_frame``, ``context_frames``, ``target_frames``.
    """
    event_id = str(event_id)
    row = dataset.row(event_id)
    times = dataset.frame_times(event_id)
    if window is None:
        pixels = dataset.read_event(event_id)
    else:
        pixels = dataset.read_window(event_id, window)
        start = dataset.window_starts(event_id)[window]
        times = times[start:start + dataset.window.length]
    grid: Grid = dataset.grid(event_id)
    lat, lon = grid.latlon()
    proj = str(row["proj"])
    mapping = {"grid_mapping": "crs"}
    vil = xr.Variable(("time", "y", "x"), pixels, attrs={
        "long_name": "vertically integrated liquid, SEVIR pixel encoding",
        "units": "1",
        "valid_range": np.array([0, MISSING_PIXEL - 1], dtype=np.uint8),
        "description": VIL_ENCODING_DESCRIPTION,
        **mapping,
    }, encoding={"_FillValue": np.uint8(MISSING_PIXEL), "zlib": True, "complevel": 4})
    vil_kg_m2 = xr.Variable(("time", "y", "x"), vil_pixels_to_kg_m2(pixels), attrs={
        "long_name": "vertically integrated liquid",
        "units": "kg m-2",
        "description": "decoded from vil; NaN where vil is missing",
        **mapping,
    }, encoding={"_FillValue": np.float32(np.nan), "zlib": True, "complevel": 4})
    coords = {
        "time": ("time", times, {"standard_name": "time", "long_name": "valid time of the frame (UTC)"}),
        "y": ("y", grid.y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y",
                            "long_name": "y of the pixel centre (row 0 = south)"}),
        "x": ("x", grid.x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X",
                            "long_name": "x of the pixel centre"}),
        "lat": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
    }
    event_type = str(row["event_type"]) if pd.notna(row["event_type"]) else ""
    attrs = {
        "Conventions": "CF-1.8",
        "title": f"SEVIR VIL event {event_id}" + (f", forecast window {window}" if window is not None else ""),
        "source": f"SEVIR-format tree {dataset.root} ({row['file_name']}, index {int(row['file_index'])})",
        "event_id": event_id,
        "event_type": event_type,
        "time_utc": str(row["time_utc"]),
    }
    if window is not None:
        attrs.update(window_index=int(window), window_start_frame=int(start),
                     context_frames=int(dataset.window.context), target_frames=int(dataset.window.target))
    return xr.Dataset({"vil": vil, "vil_kg_m2": vil_kg_m2,
                       "crs": xr.Variable((), np.int32(0), attrs=grid_mapping_attrs(proj))},
                      coords=coords, attrs=attrs)


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to a NetCDF-4 file atomically (a reader never sees a half-written file).

    Returns
    -------
    The path written.
    """
    path = Path(path)
    try:
        with atomic_path(path) as temporary:
            ds.to_netcdf(temporary, engine="netcdf4", format="NETCDF4")
    except OSError as error:
        raise DataError(f"cannot write {path} ({error}); check that the folder is writable and has space") from None
    return path
