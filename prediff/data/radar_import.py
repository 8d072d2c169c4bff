"""Bring your own radar: met-service composites -> SEVIR-LR events (``prediff data import``).

Pipeline (assumptions and limits in ``docs/radar_import.md``):

1. **Files and times.** Sources are files, directories or globs. Each pysteps-readable file (FMI PGM, KNMI
   HDF5, ODIM HDF5) is one frame whose time comes from the file name (:data:`FILE_TIME_PATTERN`), from
   ODIM's ``/what`` date/time, or from ``first_time`` + ``timestep_minutes``; a NetCDF file holds many frames
   along its time axis.
2. **Temporal.** Frames on the 10-minute marks (:00, :10, ...) are kept and the others skipped, as
   SEVIR-LR kept every second 5-minute SEVIR frame. The source step must divide 10 minutes and the kept
   frames must be gap-free.
3. **Spatial.** The target is a 128 x 128 grid of 3 km cells in a LAEA projection centred on the user's
   centre. Each cell is sampled at n x n points spaced half a source pixel apart (n = 2 * 3 km / source
   spacing, 6 for 1 km sources), so every source pixel overlapping the cell is hit even when the grids are
   rotated against each other; each point takes its nearest source pixel and the cell keeps the
   **maximum** VIL-equivalent of its points, the aggregation SEVIR-LR applied to 1 km VIL (3 x 3 block
   max). A cell with any point outside the source domain or on a nodata pixel is missing (255), as a block
   max over a 255 pixel is in SEVIR-LR.
4. **Quantity.** dBZ, rain rate or accumulation (over one source time step) -> VIL-equivalent kg m^-2
   (:mod:`prediff.data.radar_conversion`) -> VIL pixels (:func:`prediff.data.vil.kg_m2_to_vil_pixels`).
5. **Events.** 25-frame (4 h) events, counted back from the last frame so the most recent data is always
   in an event; leading frames that do not fill an event are dropped. Shorter sequences (13-24 frames)
   give one event with all frames. Written only through :func:`prediff.data.layout.write_sevir_tree`.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import re
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from prediff.data import geo
from prediff.data.layout import EventRecord, write_sevir_tree
from prediff.data.radar_conversion import (DEFAULT_COLUMN_DEPTH_KM, MARSHALL_PALMER_A, MARSHALL_PALMER_B,
                                           QUANTITIES, quantity_from_units, to_vil_kg_m2)
from prediff.data.vil import kg_m2_to_vil_pixels
from prediff.errors import DataError

FORMATS: tuple[str, ...] = ("fmi-pgm", "knmi-hdf5", "odim-hdf5", "netcdf")
SOURCE_LABELS = {"fmi-pgm": "FMI PGM", "knmi-hdf5": "KNMI HDF5", "odim-hdf5": "ODIM HDF5", "netcdf": "NetCDF"}

#: SEVIR-LR target: 128 x 128 cells of 3 km, 10-minute frames, 25-frame events; readers accept T >= 13.
TARGET_SIZE = 128
TARGET_PIXEL_M = 3000.0
TARGET_EXTENT_M = TARGET_SIZE * TARGET_PIXEL_M
TARGET_STEP = pd.Timedelta(minutes=10)
EVENT_FRAMES = 25
MIN_EVENT_FRAMES = 13
#: Upper bound on sample points per target-cell edge (memory/time: 128^2 * 12^2 points).
MAX_SAMPLES_PER_AXIS = 12

#: A time stamp in a file name: YYYYMMDD, an optional '_', '-' or 'T', HHMM and optional SS, not inside a
#: longer run of digits (e.g. ``201609281445_fmi...``, ``RAD_NL25_RAP_5min_201008260000.h5``).
FILE_TIME_PATTERN = re.compile(r"(?<!\d)(\d{8})[_T-]?(\d{4})(\d{2})?(?!\d)")

_PGM_SUFFIXES = (".pgm", ".pgm.gz")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
#: File-name endings searched for in source directories.
RADAR_SUFFIXES = _PGM_SUFFIXES + _HDF5_SUFFIXES + _NETCDF_SUFFIXES


# ----------------------------------------------------------------------------------------------- source grids

def _great_circle_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lon1, lat1, lon2, lat2))
    haversine = (np.sin((lat2 - lat1) / 2) ** 2
                 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 2 * geo.EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(haversine, 0.0, 1.0)))


@dataclasses.dataclass(frozen=True)
class ProjectedSourceGrid:
    """A source radar grid that is regular in a projection (pysteps importers, CF NetCDF, lat/lon NetCDF).

    Attributes
    ----------
    proj : PROJ string of the source projection (its own length unit, e.g. km for KNMI).
    x : (W,) float64, projected x of the pixel-column centres, in the projection's unit, in file order.
    y : (H,) float64, projected y of the pixel-row centres, in file order (decreasing when row 0 is north).
    """

    proj: str
    x: np.ndarray
    y: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y.size, self.x.size)

    def same_as(self, other) -> bool:
        """True when ``other`` is the same grid (same projection, shape and pixel centres)."""
        return (isinstance(other, ProjectedSourceGrid) and other.proj == self.proj and other.shape == self.shape
                and np.allclose(other.x, self.x) and np.allclose(other.y, self.y))

    def locate(self, lon, lat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest source pixel of each geographic point.

        Parameters
        ----------
        lon, lat : arrays of one shape S, degrees.

        Returns
        -------
        rows, cols : S int64 pixel indices into the (H, W) source array (0 where outside).
        inside : S bool, False where the point lies outside the source grid.
        """
        source_x, source_y = geo.project(self.proj, np.asarray(lon), np.asarray(lat))
        cols = np.rint((np.asarray(source_x) - self.x[0]) / (self.x[1] - self.x[0]))
        rows = np.rint((np.asarray(source_y) - self.y[0]) / (self.y[1] - self.y[0]))
        inside = (np.isfinite(cols) & np.isfinite(rows) & (cols >= 0) & (cols < self.x.size)
                  & (rows >= 0) & (rows < self.y.size))
        return np.where(inside, rows, 0).astype(np.int64), np.where(inside, cols, 0).astype(np.int64), inside

    def spacing_m(self, lon: float, lat: float) -> float:
        """Pixel spacing of the source grid near (``lon``, ``lat``) in metres (mean of both axes)."""
        (row,), (col,), _ = self.locate([lon], [lat])
        row, col = min(row, self.y.size - 2), min(col, self.x.size - 2)
        xs = self.x[[col, col + 1, col]]
        ys = self.y[[row, row, row + 1]]
        lons, lats = geo.unproject(self.proj, xs, ys)
        return float(np.mean(_great_circle_m(lons[0], lats[0], lons[1:], lats[1:])))

    def describe_extent(self) -> str:
        """Human-readable latitude/longitude range covered by the grid, for error messages."""
        xx, yy = np.meshgrid(self.x[[0, -1]], self.y[[0, -1]])
        lons, lats = geo.unproject(self.proj, xx, yy)
        return (f"latitudes {np.nanmin(lats):.2f} to {np.nanmax(lats):.2f}, "
                f"longitudes {np.nanmin(lons):.2f} to {np.nanmax(lons):.2f} (corners)")


@dataclasses.dataclass(eq=False)
class CurvilinearSourceGrid:
    """A source grid given by 2-D latitude/longitude of every pixel centre (NetCDF without a projection).

    Attributes
    ----------
    lat, lon : (H, W) float64 degrees of the pixel centres.
    """

    lat: np.ndarray
    lon: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.lat.shape

    def same_as(self, other) -> bool:
        """True when ``other`` is the same grid (same shape and pixel-centre coordinates)."""
        return (isinstance(other, CurvilinearSourceGrid) and other.shape == self.shape
                and np.allclose(other.lat, self.lat, equal_nan=True)
                and np.allclose(other.lon, self.lon, equal_nan=True))

    @staticmethod
    def _unit_vectors(lon, lat) -> np.ndarray:
        lon, lat = np.radians(np.asarray(lon, dtype=np.float64)), np.radians(np.asarray(lat, dtype=np.float64))
        return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)

    @functools.cached_property
    def _index(self):
        # a k-d tree on unit-sphere vectors finds nearest pixels without choosing a projection
        from scipy.spatial import cKDTree

        flat_index = np.flatnonzero(np.isfinite(self.lat) & np.isfinite(self.lon))
        tree = cKDTree(self._unit_vectors(self.lon.ravel()[flat_index], self.lat.ravel()[flat_index]))
        distances, _ = tree.query(tree.data[:: max(1, flat_index.size // 2000)], k=2)
        spacing_m = float(np.median(distances[:, 1])) * geo.EARTH_RADIUS_M
        return tree, flat_index, spacing_m

    def locate(self, lon, lat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest source pixel of each geographic point; points farther than one pixel spacing from every
        pixel centre are outside. Same contract as :meth:`ProjectedSourceGrid.locate`."""
        tree, flat_index, spacing = self._index
        lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        distances, nearest = tree.query(self._unit_vectors(lon.ravel(), lat.ravel()))
        inside = (distances * geo.EARTH_RADIUS_M <= spacing).reshape(lon.shape)
        rows, cols = np.unravel_index(flat_index[np.minimum(nearest, flat_index.size - 1)], self.shape)
        return (np.where(inside, rows.reshape(lon.shape), 0).astype(np.int64),
                np.where(inside, cols.reshape(lon.shape), 0).astype(np.int64), inside)

    def spacing_m(self, lon: float, lat: float) -> float:
        """Median distance between neighbouring pixel centres, metres."""
        return self._index[2]

    def describe_extent(self) -> str:
        """Human-readable latitude/longitude range covered by the grid, for error messages."""
        return (f"latitudes {np.nanmin(self.lat):.2f} to {np.nanmax(self.lat):.2f}, "
                f"longitudes {np.nanmin(self.lon):.2f} to {np.nanmax(self.lon):.2f}")


@dataclasses.dataclass
class RadarField:
    """One frame as read from a source file.

    Attributes
    ----------
    values : (H, W) float64 in the source's unit (dBZ, mm h^-1 or mm after ``factor``); NaN = nodata.
    grid : the source grid; ``values[i, j]`` sits at its pixel (i, j).
    units : units string of the values (``"dBZ"``, ``"mm/h"``, ``"mm"``, NetCDF ``units`` ...), or None.
    zr_a, zr_b : Z-R coefficients the met service uses (pysteps metadata), else Marshall-Palmer.
    """

    values: np.ndarray
    grid: ProjectedSourceGrid | CurvilinearSourceGrid
    units: str | None
    zr_a: float = MARSHALL_PALMER_A
    zr_b: float = MARSHALL_PALMER_B


# ----------------------------------------------------------------------------------------------- files, formats

def find_source_files(sources: Sequence[str | Path]) -> list[Path]:
    """Expand files, directories and glob patterns into a sorted list of files.

    Directories are searched recursively for radar file names (:data:`RADAR_SUFFIXES`), so a README or a
    quick-look image beside the data is ignored; files named explicitly or by a glob are all kept.

    Raises
    ------
    DataError
        When nothing matches.
    """
    found: set[Path] = set()
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found.update(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                         and p.name.lower().endswith(RADAR_SUFFIXES))
        elif path.is_file():
            found.add(path)
        else:
            found.update(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not found:
        raise DataError(f"no radar files found in {', '.join(str(s) for s in sources) or '(no sources)'}; "
                        "give existing files, a directory holding " + ", ".join(RADAR_SUFFIXES)
                        + " files, or a quoted glob such as 'radar/*.h5'")
    return sorted(found)


def detect_format(path: Path) -> str:
    """Guess the format of a radar file from its name and, for HDF5, its groups.

    Returns
    -------
    One of :data:`FORMATS`.

    Raises
    ------
    DataError
        When the format is not recognised; the message names ``--format``.
    """
    name = path.name.lower()
    if name.endswith(_PGM_SUFFIXES):
        return "fmi-pgm"
    if name.endswith(_NETCDF_SUFFIXES):
        return "netcdf"
    if name.endswith(_HDF5_SUFFIXES):
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                if "geographic" in handle and "image1" in handle:
                    return "knmi-hdf5"
                if "dataset1" in handle and "where" in handle:
                    return "odim-hdf5"
        except OSError as error:
            raise DataError(f"{path} is not a readable HDF5 file ({error}); remove it from the sources") from None
    raise DataError(f"unknown radar file format of {path}; supported are FMI PGM (.pgm, .pgm.gz), KNMI HDF5, "
                    "ODIM HDF5 (.h5) and NetCDF (.nc). Choose one with --format "
                    + "|".join(FORMATS))


def time_from_file_name(path: Path) -> pd.Timestamp | None:
    """The UTC time stamp in a file name (see :data:`FILE_TIME_PATTERN`), or None when it has none."""
    for match in FILE_TIME_PATTERN.finditer(path.name):
        day, clock, seconds = match.groups()
        if not 1900 <= int(day[:4]) <= 2199:
            continue
        try:
            return pd.Timestamp(f"{day[:4]}-{day[4:6]}-{day[6:]} {clock[:2]}:{clock[2:]}:{seconds or '00'}")
        except ValueError:
            continue
    return None


def _odim_time(path: Path) -> pd.Timestamp | None:
    import h5py

    with h5py.File(path, "r") as handle:
        what = handle.get("what")
        if what is None or "date" not in what.attrs or "time" not in what.attrs:
            return None
        date, clock = (what.attrs[key] for key in ("date", "time"))
    date, clock = (v.decode() if isinstance(v, bytes) else str(v) for v in (date, clock))
    return pd.Timestamp(f"{date[:4]}-{date[4:6]}-{date[6:8]} {clock[:2]}:{clock[2:4]}:{clock[4:6] or '00'}")


@dataclasses.dataclass(frozen=True)
class FrameRef:
    """Where one source frame lives: ``path``, its format, the index along the file's time axis, its time."""

    time: pd.Timestamp
    path: Path
    file_format: str
    index: int = 0


# ----------------------------------------------------------------------------------------------- readers

def _pysteps_field(path: Path, file_format: str, quantity: str) -> RadarField:
    from pysteps import io as pysteps_io

    try:
        if file_format == "fmi-pgm":
            values, _, metadata = pysteps_io.import_fmi_pgm(str(path), gzipped=path.name.lower().endswith(".gz"))
        elif file_format == "knmi-hdf5":
            qty = "DBZH" if quantity == "dbz" else "ACRR"
            values, _, metadata = pysteps_io.import_knmi_hdf5(str(path), qty=qty)
        else:
            wanted = {"dbz": ["DBZH"], "rainrate": ["RATE"], "accumulation": ["ACRR"]}.get(
                quantity, ["DBZH", "RATE", "ACRR"])
            for position, qty in enumerate(wanted):
                try:
                    values, _, metadata = pysteps_io.import_odim_hdf5(str(path), qty=qty)
                    break
                except OSError:
                    if position == len(wanted) - 1:
                        raise
    except Exception as error:  # pysteps raises many types for a corrupt or foreign file
        raise DataError(f"pysteps could not read {path} as {SOURCE_LABELS[file_format]} ({error!r}); "
                        "check the file or choose another --format") from None
    if metadata.get("transform") not in (None, "dB") or (metadata.get("transform") == "dB"
                                                          and metadata.get("unit") != "dBZ"):
        raise DataError(f"{path}: unsupported pysteps transform {metadata.get('transform')!r} "
                        f"for unit {metadata.get('unit')!r}; only dBZ, mm/h and mm fields can be imported")
    values = np.asarray(values, dtype=np.float64)
    height, width = values.shape
    x_size = (metadata["x2"] - metadata["x1"]) / width
    y_size = (metadata["y2"] - metadata["y1"]) / height
    x = metadata["x1"] + x_size * (np.arange(width) + 0.5)
    if metadata.get("yorigin", "upper") == "upper":
        y = metadata["y2"] - y_size * (np.arange(height) + 0.5)
    else:
        y = metadata["y1"] + y_size * (np.arange(height) + 0.5)
    grid = ProjectedSourceGrid(metadata["projection"], x, y)
    return RadarField(values, grid, metadata.get("unit"), float(metadata.get("zr_a", MARSHALL_PALMER_A)),
                      float(metadata.get("zr_b", MARSHALL_PALMER_B)))


_LAT_NAMES = ("lat", "latitude", "nav_lat")
_LON_NAMES = ("lon", "longitude", "nav_lon")
_KM_UNITS = ("km", "kilometre", "kilometer", "kilometres", "kilometers")


def _open_netcdf(path: Path):
    import xarray

    try:
        return xarray.open_dataset(path)
    except Exception as error:  # xarray/netCDF4 raise many types for a foreign file
        raise DataError(f"cannot open {path} as NetCDF ({error}); check the file or choose another "
                        "--format") from None


def _time_dimension(variable) -> str:
    for dim in variable.dims:
        if dim.lower() in ("time", "t") or np.issubdtype(variable[dim].dtype, np.datetime64):
            return dim
    raise DataError(f"NetCDF variable {variable.name!r} has no time dimension (dims {variable.dims}); "
                    "it must be (time, y, x) with a decodable CF time coordinate")


def _netcdf_variable(dataset, path: Path, variable: str | None):
    if variable is not None:
        if variable not in dataset.data_vars:
            raise DataError(f"{path} has no variable {variable!r}; it has {sorted(dataset.data_vars)}")
        return dataset[variable]
    candidates = [name for name, var in dataset.data_vars.items() if var.ndim == 3]
    if len(candidates) != 1:
        raise DataError(f"{path} has {len(candidates)} three-dimensional variables {candidates}; "
                        "name the radar field with --variable")
    return dataset[candidates[0]]


def _netcdf_projection(dataset, variable) -> str | None:
    for holder in (variable, dataset):
        for key in ("proj4", "proj4_params", "proj4text", "proj4_string"):
            if key in holder.attrs:
                return str(holder.attrs[key])
    mapping_name = variable.attrs.get("grid_mapping") or variable.encoding.get("grid_mapping")
    if mapping_name and mapping_name in dataset.variables:
        import pyproj

        attrs = dict(dataset[mapping_name].attrs)
        for key in ("proj4", "proj4_params", "proj4text"):
            if key in attrs:
                return str(attrs[key])
        try:
            with warnings.catch_warnings():
                # PROJ strings drop datum details we do not need: geographic coordinates are shared as-is
                warnings.simplefilter("ignore", UserWarning)
                return pyproj.CRS.from_cf(attrs).to_proj4()
        except pyproj.exceptions.CRSError as error:
            raise DataError(f"cannot interpret the grid mapping {mapping_name!r} ({error}); give it CF "
                            "attributes or a proj4 attribute") from None
    return None


def _netcdf_grid(dataset, variable, path: Path) -> ProjectedSourceGrid | CurvilinearSourceGrid:
    time_dim = _time_dimension(variable)
    y_dim, x_dim = [dim for dim in variable.dims if dim != time_dim]
    coords = {name.lower(): name for name in list(dataset.coords) + list(dataset.data_vars)}
    lat_name = next((coords[n] for n in _LAT_NAMES if n in coords), None)
    lon_name = next((coords[n] for n in _LON_NAMES if n in coords), None)
    projection = _netcdf_projection(dataset, variable)
    if projection is None and lat_name and lon_name and dataset[lat_name].ndim == 2:
        lat = np.asarray(dataset[lat_name].transpose(y_dim, x_dim).values, dtype=np.float64)
        lon = np.asarray(dataset[lon_name].transpose(y_dim, x_dim).values, dtype=np.float64)
        return CurvilinearSourceGrid(lat, lon)
    if x_dim not in dataset.coords or y_dim not in dataset.coords:
        raise DataError(f"{path}: variable {variable.name!r} has no coordinates along {y_dim!r}/{x_dim!r} and no "
                        "2-D lat/lon; add projected x/y coordinates with a grid_mapping (or proj4 attribute), "
                        "or 2-D lat/lon coordinates")
    x = np.asarray(dataset[x_dim].values, dtype=np.float64)
    y = np.asarray(dataset[y_dim].values, dtype=np.float64)
    if projection is None:
        if x_dim.lower() in _LON_NAMES and y_dim.lower() in _LAT_NAMES:
            projection = f"+proj=longlat +a={geo.EARTH_RADIUS_M} +ellps=sphere"
        else:
            raise DataError(f"{path}: the x/y coordinates of {variable.name!r} carry no projection; add a CF "
                            "grid_mapping variable or a proj4 attribute, or use 2-D lat/lon coordinates")
    elif str(dataset[x_dim].attrs.get("units", "m")).lower() in _KM_UNITS and "+units=km" not in projection:
        # CF grid mappings are in metres; coordinates stored in km must follow
        x, y = x * 1000.0, y * 1000.0
    if x.size < 2 or y.size < 2:
        raise DataError(f"{path}: the radar grid must be at least 2 x 2 pixels, got {y.size} x {x.size}")
    return ProjectedSourceGrid(projection, x, y)


def netcdf_frames(path: Path, variable: str | None = None) -> list[FrameRef]:
    """One :class:`FrameRef` per time step of a (time, y, x) NetCDF radar file."""
    with _open_netcdf(path) as dataset:
        field = _netcdf_variable(dataset, path, variable)
        times = pd.DatetimeIndex(field[_time_dimension(field)].values)
    return [FrameRef(pd.Timestamp(t), path, "netcdf", index) for index, t in enumerate(times)]


def _netcdf_field(frame: FrameRef, variable: str | None) -> RadarField:
    with _open_netcdf(frame.path) as dataset:
        field = _netcdf_variable(dataset, frame.path, variable)
        time_dim = _time_dimension(field)
        grid = _netcdf_grid(dataset, field, frame.path)
        y_dim, x_dim = [dim for dim in field.dims if dim != time_dim]
        description = f"{field.name} {field.attrs.get('long_name', '')} {field.attrs.get('standard_name', '')}"
        if "vertically integrated liquid" in description.lower() or str(field.name).lower().startswith("vil"):
            # kg m-2 would otherwise read as a precipitation accumulation
            raise DataError(f"{frame.path}: {field.name!r} already holds VIL; the import converts reflectivity "
                            "or rain rate. Pick another field with --variable")
        values = np.asarray(field.isel({time_dim: frame.index}).transpose(y_dim, x_dim).values, dtype=np.float64)
        units = field.attrs.get("units")
    return RadarField(values, grid, units)


def read_field(frame: FrameRef, quantity: str = "auto", variable: str | None = None) -> RadarField:
    """Read one frame.

    Parameters
    ----------
    frame : which file / time index.
    quantity : ``"auto"`` or one of :data:`prediff.data.radar_conversion.QUANTITIES`; picks the product in
        multi-product files (KNMI DBZH vs ACRR, ODIM DBZH / RATE / ACRR).
    variable : NetCDF variable name (None: the only 3-D variable).
    """
    if frame.file_format == "netcdf":
        return _netcdf_field(frame, variable)
    return _pysteps_field(frame.path, frame.file_format, quantity)


# ----------------------------------------------------------------------------------------------- time handling

def list_frames(files: Sequence[Path], file_format: str = "auto", variable: str | None = None,
                first_time: pd.Timestamp | None = None, timestep_minutes: float | None = None) -> list[FrameRef]:
    """Every frame of ``files`` with its time, sorted by time.

    Parameters
    ----------
    files : radar files (one frame each, or a NetCDF time series).
    file_format : ``"auto"`` (per file, :func:`detect_format`) or one of :data:`FORMATS`.
    variable : NetCDF variable name.
    first_time, timestep_minutes : when given, frames are taken in file-name order and timed
        ``first_time + k * timestep_minutes`` (for files whose names carry no time stamp).

    Raises
    ------
    DataError
        Unknown format, a file without a time, duplicate times.
    """
    if file_format != "auto" and file_format not in FORMATS:
        raise DataError(f"unknown --format {file_format!r}; choose auto or one of {', '.join(FORMATS)}")
    frames: list[FrameRef] = []
    for path in files:
        fmt = detect_format(path) if file_format == "auto" else file_format
        if fmt == "netcdf":
            if first_time is not None:
                raise DataError(f"{path} is NetCDF, whose frames carry their own times; drop --first-time")
            frames.extend(netcdf_frames(path, variable))
            continue
        time = None if first_time is not None else time_from_file_name(path)
        if time is None and first_time is None and fmt == "odim-hdf5":
            time = _odim_time(path)
        if time is None and first_time is None:
            raise DataError(f"no time stamp (YYYYMMDDHHMM) in the file name {path.name}; give the time of the "
                            "first file with --first-time and the step with --timestep")
        frames.append(FrameRef(time, path, fmt))
    if first_time is not None:
        if not timestep_minutes:
            raise DataError("--first-time needs --timestep (minutes between consecutive files)")
        step = pd.Timedelta(minutes=float(timestep_minutes))
        frames = [dataclasses.replace(f, time=pd.Timestamp(first_time) + k * step) for k, f in enumerate(frames)]
    frames.sort(key=lambda f: f.time)
    times = pd.DatetimeIndex([f.time for f in frames])
    if times.has_duplicates:
        duplicate = times[times.duplicated()][0]
        clashing = [str(f.path) for f in frames if f.time == duplicate]
        raise DataError(f"several frames share the time {duplicate} ({', '.join(clashing[:3])}); "
                        "give each time once")
    return frames


def source_step(frames: Sequence[FrameRef]) -> pd.Timedelta:
    """The source time step: the most common difference between consecutive frame times."""
    if len(frames) < 2:
        raise DataError(f"only {len(frames)} radar frame found; an event needs at least {MIN_EVENT_FRAMES} "
                        "10-minute frames")
    steps = pd.Series([b.time - a.time for a, b in zip(frames, frames[1:])])
    return pd.Timedelta(steps.mode().iloc[0])


def select_ten_minute_frames(frames: Sequence[FrameRef], start: pd.Timestamp | None = None,
                             end: pd.Timestamp | None = None) -> list[FrameRef]:
    """Keep the frames on the 10-minute marks between ``start`` and ``end`` (inclusive).

    The marks are :00, :10, ... past the hour; a source whose frames never fall on them (e.g. 10-minute data
    at :05, :15, ...) keeps its own phase. Frames are subsampled, never averaged or interpolated, as
    SEVIR-LR subsampled SEVIR.

    Raises
    ------
    DataError
        The source step does not divide 10 minutes, a 10-minute frame is missing, or fewer than 13 remain.
    """
    frames = [f for f in frames if (start is None or f.time >= start) and (end is None or f.time <= end)]
    if len(frames) < MIN_EVENT_FRAMES:
        raise DataError(f"only {len(frames)} radar frames in the selected time range; an event needs at least "
                        f"{MIN_EVENT_FRAMES} frames 10 minutes apart (over 2 h); add files or widen --start/--end")
    step = source_step(frames)
    if step <= pd.Timedelta(0) or TARGET_STEP % step != pd.Timedelta(0):
        raise DataError(f"the radar frames are {step} apart, which does not divide 10 minutes; SEVIR-LR frames "
                        "are 10 minutes apart and the import subsamples without interpolating. Use data with "
                        "1, 2, 5 or 10-minute steps")
    phase = min(f.time.value % TARGET_STEP.value for f in frames)
    on_marks = [f for f in frames if f.time.value % TARGET_STEP.value == phase]
    gaps = [(a.time, b.time) for a, b in zip(on_marks, on_marks[1:]) if b.time - a.time != TARGET_STEP]
    if gaps:
        first, after = gaps[0]
        raise DataError(f"the 10-minute frames have {len(gaps)} gap(s), the first between {first} and {after}; "
                        "add the missing files or choose a gap-free range with --start/--end")
    if len(on_marks) < MIN_EVENT_FRAMES:
        raise DataError(f"only {len(on_marks)} frames on the 10-minute marks ({on_marks[0].time} to "
                        f"{on_marks[-1].time}); an event needs at least {MIN_EVENT_FRAMES}; add files")
    return on_marks


def split_into_events(count: int) -> list[slice]:
    """Frame ranges of the events made from ``count`` consecutive 10-minute frames.

    Events of :data:`EVENT_FRAMES` frames are counted back from the last frame (the newest data is always
    kept); leading frames that do not fill an event are dropped. ``MIN_EVENT_FRAMES <= count < EVENT_FRAMES``
    gives one event of all frames.
    """
    if count < MIN_EVENT_FRAMES:
        raise DataError(f"{count} frames are too few for an event (at least {MIN_EVENT_FRAMES})")
    if count < EVENT_FRAMES:
        return [slice(0, count)]
    first = count % EVENT_FRAMES
    return [slice(begin, begin + EVENT_FRAMES) for begin in range(first, count, EVENT_FRAMES)]


# ----------------------------------------------------------------------------------------------- regridding

def target_grid(center_lat: float, center_lon: float) -> tuple[geo.Grid, tuple[float, float, float, float]]:
    """The SEVIR-LR target: 128 x 128 cells of 3 km in a LAEA projection centred on the given point.

    Returns
    -------
    grid : :class:`prediff.data.geo.Grid`, row 0 = south.
    corners : (llcrnrlat, llcrnrlon, urcrnrlat, urcrnrlon) degrees, as written to the catalog.
    """
    if not (-90.0 < center_lat < 90.0 and -180.0 <= center_lon <= 360.0):
        raise DataError(f"the centre ({center_lat}, {center_lon}) is not a latitude/longitude in degrees; "
                        "give --center-lat in (-90, 90) and --center-lon in [-180, 180]")
    proj = geo.laea_proj_for_center(center_lat, center_lon)
    corners = geo.corners_for_center(proj, center_lat, center_lon, TARGET_EXTENT_M, TARGET_EXTENT_M)
    return geo.grid_from_corners(proj, *corners, TARGET_SIZE, TARGET_SIZE), corners


@dataclasses.dataclass(frozen=True)
class CellSampling:
    """Which source pixels feed each target cell.

    Attributes
    ----------
    rows, cols : (H, W, n*n) int64 source pixel indices of the n x n sample points of every target cell.
    inside : (H, W, n*n) bool, False for sample points outside the source domain.
    """

    rows: np.ndarray
    cols: np.ndarray
    inside: np.ndarray

    @property
    def samples_per_axis(self) -> int:
        """n, the number of sample points along each edge of a target cell."""
        return int(round(np.sqrt(self.rows.shape[-1])))

    def cell_max(self, source_values: np.ndarray) -> np.ndarray:
        """Block maximum of a source field over each target cell.

        Parameters
        ----------
        source_values : (H_src, W_src) float, NaN = nodata.

        Returns
        -------
        (H, W) float64; NaN where any sample point is outside or on a nodata pixel.
        """
        samples = np.where(self.inside, source_values[self.rows, self.cols], np.nan)
        return samples.max(axis=-1)


def cell_sampling(grid: geo.Grid, source_grid, samples_per_axis: int | None = None) -> CellSampling:
    """Map every target cell to its ``samples_per_axis`` x ``samples_per_axis`` nearest source pixels.

    ``samples_per_axis`` defaults to 2 * round(3 km / source spacing at the centre), between 2 and
    :data:`MAX_SAMPLES_PER_AXIS`: points half a source pixel apart, so every source pixel overlapping a cell
    (an s x s square holds a disc of radius s/2, larger than the s/(2 sqrt 2) covering radius of a lattice of
    spacing s/2) is sampled at least once. Sources finer than 500 m hit the cap and are thinned.

    Raises
    ------
    DataError
        When the target centre lies outside the source domain.
    """
    center_lon, center_lat = geo.unproject(grid.proj, float(np.mean(grid.x)), float(np.mean(grid.y)))
    _, _, center_inside = source_grid.locate(np.array([center_lon]), np.array([center_lat]))
    if not center_inside[0]:
        raise DataError(f"the centre ({center_lat:.3f}, {center_lon:.3f}) lies outside the radar domain "
                        f"({source_grid.describe_extent()}); choose --center-lat/--center-lon inside it")
    if samples_per_axis is None:
        spacing = source_grid.spacing_m(center_lon, center_lat)
        samples_per_axis = min(MAX_SAMPLES_PER_AXIS, 2 * max(1, int(round(TARGET_PIXEL_M / spacing))))
    dy, dx = grid.pixel_size_m
    offsets = (np.arange(samples_per_axis) + 0.5) / samples_per_axis - 0.5
    sub_x = grid.x[None, :, None, None] + dx * offsets[None, None, None, :]
    sub_y = grid.y[:, None, None, None] + dy * offsets[None, None, :, None]
    sub_x, sub_y = np.broadcast_arrays(sub_x, sub_y)
    shape = (grid.shape[0], grid.shape[1], samples_per_axis * samples_per_axis)
    lon, lat = geo.unproject(grid.proj, sub_x.reshape(shape), sub_y.reshape(shape))
    rows, cols, inside = source_grid.locate(np.asarray(lon), np.asarray(lat))
    return CellSampling(rows, cols, inside)


# ----------------------------------------------------------------------------------------------- the import

@dataclasses.dataclass
class ImportResult:
    """What :func:`import_radar` wrote.

    Attributes
    ----------
    root : the SEVIR tree written (CATALOG.csv + data/).
    events : the written events (VIL (H, W, T) uint8, row 0 = south, plus catalog metadata).
    source : source label, e.g. ``"FMI PGM"``.
    quantity : the radar quantity that was converted (``"dbz"``, ``"rainrate"``, ``"accumulation"``).
    frames_read : number of 10-minute frames converted.
    frames_dropped : leading 10-minute frames that did not fill a 25-frame event.
    samples_per_axis : source sample points per target cell edge.
    """

    root: Path
    events: list[EventRecord]
    source: str
    quantity: str
    frames_read: int
    frames_dropped: int
    samples_per_axis: int


def _resolve_quantity(field: RadarField, requested: str, path: Path) -> tuple[str, float]:
    try:
        detected, factor = quantity_from_units(field.units)
    except DataError:
        if requested == "auto":
            raise
        return requested, 1.0
    if requested not in ("auto", detected):
        raise DataError(f"{path} holds {detected} (units {field.units!r}) but --quantity says {requested}; "
                        "drop --quantity or pass --quantity auto")
    return detected, factor


def import_radar(sources: Sequence[str | Path], out_dir: str | Path, center_lat: float, center_lon: float, *,
                 file_format: str = "auto", quantity: str = "auto",
                 column_depth_km: float = DEFAULT_COLUMN_DEPTH_KM, start=None, end=None, first_time=None,
                 timestep_minutes: float | None = None, variable: str | None = None, overwrite: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> ImportResult:
    """Import radar composites as a SEVIR-LR tree of VIL-equivalent events.

    Parameters
    ----------
    sources : files, directories or glob patterns.
    out_dir : output SEVIR tree (CATALOG.csv + data/vil/YYYY/*.h5).
    center_lat, center_lon : centre of the 384 km x 384 km window, degrees.
    file_format : ``"auto"`` or one of :data:`FORMATS`.
    quantity : ``"auto"`` (from the units) or ``"dbz"``, ``"rainrate"`` (mm h^-1), ``"accumulation"`` (mm per
        source time step).
    column_depth_km : assumed column depth of the VIL-equivalent, km.
    start, end : optional time window (anything :class:`pandas.Timestamp` parses, UTC), inclusive.
    first_time, timestep_minutes : time the files in name order when their names carry no time stamp.
    variable : NetCDF variable holding the radar field.
    overwrite : replace an existing tree at ``out_dir``.
    progress : called as ``progress(done, total)`` after each frame.

    Returns
    -------
    :class:`ImportResult`.

    Raises
    ------
    DataError
        No files, unknown format, centre outside the domain, too few or gappy frames, inconsistent grids
        between files, unknown units, an existing output tree without ``overwrite``.
    """
    if quantity != "auto" and quantity not in QUANTITIES:
        raise DataError(f"unknown --quantity {quantity!r}; choose auto, {', '.join(QUANTITIES)}")
    if not column_depth_km > 0:
        raise DataError(f"--column-depth-km must be positive, got {column_depth_km!r}")
    grid, corners = target_grid(center_lat, center_lon)
    out_dir = Path(out_dir)
    if (out_dir / "CATALOG.csv").exists() and not overwrite:
        raise DataError(f"{out_dir} already holds a SEVIR tree (CATALOG.csv); choose a new --out directory or "
                        "pass --overwrite to replace it")
    start, end, first_time = (None if t is None else _utc_timestamp(t) for t in (start, end, first_time))
    all_frames = list_frames(find_source_files(sources), file_format, variable, first_time, timestep_minutes)
    frames = select_ten_minute_frames(all_frames, start, end)
    dropped = split_into_events(len(frames))[0].start
    frames = frames[dropped:]
    accumulation_minutes = source_step(all_frames).total_seconds() / 60.0

    first_field = read_field(frames[0], quantity, variable)
    sampling = cell_sampling(grid, first_field.grid)
    resolved, factor = _resolve_quantity(first_field, quantity, frames[0].path)
    pixels = np.empty((len(frames), TARGET_SIZE, TARGET_SIZE), dtype=np.uint8)
    for position, frame in enumerate(frames):
        field = first_field if position == 0 else read_field(frame, quantity, variable)
        if not field.grid.same_as(first_field.grid):
            raise DataError(f"the radar grid of {frame.path} differs from that of {frames[0].path} (projection, "
                            "size or pixel positions); import files of one product and domain together")
        if field.units != first_field.units:
            raise DataError(f"{frame.path} is in {field.units!r} but {frames[0].path} in {first_field.units!r}; "
                            "import one quantity at a time")
        vil = to_vil_kg_m2(sampling.cell_max(field.values * factor), resolved, column_depth_km,
                           accumulation_minutes=accumulation_minutes, zr_a=field.zr_a, zr_b=field.zr_b)
        pixels[position] = kg_m2_to_vil_pixels(vil)
        if progress is not None:
            progress(position + 1, len(frames))

    label = SOURCE_LABELS[frames[0].file_format]
    times = [frame.time for frame in frames]
    events = [_event_record(pixels[span], times[span], grid.proj, corners, label)
              for span in split_into_events(len(frames))]
    write_sevir_tree(out_dir, events)
    return ImportResult(out_dir, events, label, resolved, len(frames), dropped, sampling.samples_per_axis)


def _event_record(pixels: np.ndarray, times: Sequence[pd.Timestamp], proj: str,
                  corners: tuple[float, float, float, float], label: str) -> EventRecord:
    # the reference frame (offset 0) is the middle one, as SEVIR's -120 ... +120 minute offsets have it
    reference = times[len(times) // 2]
    return EventRecord(
        id=f"I{reference:%Y%m%d%H%M}",
        time_utc=reference,
        vil=np.ascontiguousarray(np.moveaxis(pixels, 0, -1)),
        minute_offsets=[int((time - reference) / pd.Timedelta(minutes=1)) for time in times],
        llcrnrlat=corners[0], llcrnrlon=corners[1], urcrnrlat=corners[2], urcrnrlon=corners[3],
        proj=proj, width_m=TARGET_EXTENT_M, height_m=TARGET_EXTENT_M,
        event_type=f"Imported radar ({label})",
    )


def _utc_timestamp(value) -> pd.Timestamp:
    try:
        time = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise DataError(f"cannot read the time {value!r}; use ISO 8601 such as 2016-09-28T15:00") from None
    if time.tzinfo is not None:
        time = time.tz_convert("UTC").tz_localize(None)
    return time

