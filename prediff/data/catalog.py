"""SEVIR / SEVIR-LR ``CATALOG.csv``: parsing, the MindEarth event selection, splits and forecaster filters.

The selection reproduces MindEarth PreDiff's ``SEVIRDataset`` in its order:

1. date range: ``time_utc > start`` and ``time_utc <= end`` (each optional; a split is a date range);
2. ``pct_missing == 0`` (switchable, for imported data that has missing pixels);
3. ``img_type == "vil"``;
4. ids with exactly one remaining row are kept, ids with several are dropped entirely;
5. events ordered by their id string (not by time).

Forecaster filters (event types, minimum ``data_max``, a lat/lon box around the event centre) then narrow
that list; they are not part of the reference.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from prediff.data.layout import CATALOG_COLUMNS
from prediff.errors import DataError

CATALOG_NAME = "CATALOG.csv"
SPLITS = ("train", "val", "test")

_INTEGER_COLUMNS = [name for name, dtype in CATALOG_COLUMNS.items() if dtype in ("int64", "Int64")]
_FLOAT_COLUMNS = [name for name, dtype in CATALOG_COLUMNS.items() if dtype == "float64"]
_STRING_COLUMNS = [name for name, dtype in CATALOG_COLUMNS.items() if dtype == "string"]


def catalog_path(path_or_root: str | os.PathLike) -> Path:
    """Path of the catalog: ``path_or_root`` itself if it is a file, else ``<path_or_root>/CATALOG.csv``."""
    path = Path(path_or_root).expanduser()
    return path if path.is_file() else path / CATALOG_NAME


def read_catalog(path_or_root: str | os.PathLike) -> pd.DataFrame:
    """Read a SEVIR / SEVIR-LR catalog with every one of its 21 columns typed.

    Parameters
    ----------
    path_or_root : the ``CATALOG.csv`` file or the dataset root that holds it.

    Returns
    -------
    pd.DataFrame with the columns of :data:`prediff.data.layout.CATALOG_COLUMNS` (in that order; extra
    columns are kept after them): ``time_utc`` datetime64 (timezone-naive UTC), ``episode_id`` / ``event_id``
    nullable Int64 (empty for random events), ``event_type`` string ("" for random events), ``file_index``,
    ``size_x``, ``size_y`` int64 (nullable Int64 only if some non-VIL row leaves them empty), lat/lon, sizes
    and ``data_min`` / ``data_max`` / ``pct_missing`` float64 (NaN where empty).

    Raises
    ------
    DataError : the file is missing or unreadable, columns are missing, or a value cannot be parsed.
    """
    path = catalog_path(path_or_root)
    if not path.parent.is_dir():
        raise DataError(f"the dataset directory {path.parent} does not exist; pass the folder that holds "
                        f"{CATALOG_NAME} and data/ (download SEVIR-LR with `prediff data download sevir-lr --out DIR` "
                        "or create the demo corpus with `prediff data demo`)")
    if not path.is_file():
        raise DataError(f"{path} is missing; a SEVIR tree has {CATALOG_NAME} beside its data/ folder. "
                        "Point --data at the folder that holds it")
    try:
        # everything as text first, so empty cells stay "" and each column is converted with its own rule
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as error:
        raise DataError(f"cannot read {path} as CSV ({error}); restore the catalog from the original dataset") from None
    missing = [name for name in CATALOG_COLUMNS if name not in raw.columns]
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(missing)}; a SEVIR catalog has the 21 columns "
                        f"{', '.join(CATALOG_COLUMNS)} — restore it from the original dataset or rewrite it "
                        "with prediff.data.layout.write_sevir_tree")
    catalog = pd.DataFrame(index=raw.index)
    for name in CATALOG_COLUMNS:
        text = raw[name]
        if name in _STRING_COLUMNS:
            catalog[name] = text.astype("string")
        elif name == "time_utc":
            catalog[name] = _parse_times(text, path)
        elif name in _INTEGER_COLUMNS:
            catalog[name] = _parse_integers(text, name, path, nullable=CATALOG_COLUMNS[name] == "Int64")
        else:
            catalog[name] = _parse_floats(text, name, path)
    for name in raw.columns:
        if name not in CATALOG_COLUMNS:
            catalog[name] = raw[name]
    return catalog


def _parse_times(text: pd.Series, path: Path) -> pd.Series:
    times = pd.to_datetime(text.where(text != ""), errors="coerce", format="mixed")
    bad = times.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: time_utc {text.iloc[row]!r} in data row {row + 1} is not a date-time; "
                        "write it as 'YYYY-MM-DD HH:MM:SS' (UTC)")
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.astype("datetime64[ns]")


def _parse_floats(text: pd.Series, name: str, path: Path) -> pd.Series:
    values = pd.to_numeric(text.where(text != ""), errors="coerce")
    bad = (values.isna() & (text != "")).to_numpy().copy()
    if bad.any():
        # NaN written out as text is a legitimate empty value
        bad[bad] = text[bad].str.lower().to_numpy() != "nan"
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: column {name} holds {text.iloc[row]!r} in data row {row + 1}, not a number; "
                        "fix or remove that row")
    return values.astype("float64")


def _parse_integers(text: pd.Series, name: str, path: Path, nullable: bool) -> pd.Series:
    # pandas writes nullable ids as "1234.0" when a column also holds NaN, so go through float
    values = _parse_floats(text, name, path)
    fractional = values.notna() & (values != np.round(values))
    if fractional.any():
        row = int(np.flatnonzero(fractional.to_numpy())[0])
        raise DataError(f"{path}: column {name} holds {text.iloc[row]!r} in data row {row + 1}, not a whole number")
    integers = values.round().astype("Int64")
    if nullable or integers.isna().any():
        return integers
    return integers.astype("int64")


@dataclasses.dataclass(frozen=True)
class SplitDates:
    """Boundaries of the date splits (MindEarth's shipped ``diffusion.yaml`` values by default).

    train = time_utc <= ``train_end``; val = ``train_end`` < time_utc <= ``val_end``; test = time_utc > ``val_end``.
    A timestamp exactly on a boundary belongs to the earlier split.
    """

    train_end: pd.Timestamp = pd.Timestamp("2019-03-19")
    val_end: pd.Timestamp = pd.Timestamp("2019-06-01")

    def bounds(self, split: str | None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        """(start, end) of ``split`` — start exclusive, end inclusive, None = open; (None, None) for ``None``."""
        if split is None:
            return (None, None)
        if split == "train":
            return (None, pd.Timestamp(self.train_end))
        if split == "val":
            return (pd.Timestamp(self.train_end), pd.Timestamp(self.val_end))
        if split == "test":
            return (pd.Timestamp(self.val_end), None)
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)} (or none for all events)")


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which catalog events a dataset uses.

    Attributes
    ----------
    start, end : date range, ``start < time_utc <= end``, each optional; intersected with the split's range.
    require_complete : keep only events with ``pct_missing == 0`` (the reference does; switch off for
        imported radar whose patches reach beyond radar coverage).
    event_types : keep only these NOAA event types (e.g. ``("Hail", "Thunderstorm Wind")``); empty = all.
        Random events have the type "".
    min_data_max : keep only events whose ``data_max`` (maximum VIL pixel of the event, 0-254) is at least this.
    bbox : (lat_min, lat_max, lon_min, lon_max) in degrees; keep events whose patch centre lies inside.
    split_dates : boundaries of the train / val / test splits.
    """

    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    require_complete: bool = True
    event_types: tuple[str, ...] = ()
    min_data_max: float | None = None
    bbox: tuple[float, float, float, float] | None = None
    split_dates: SplitDates = SplitDates()


def _later(a: pd.Timestamp | None, b: pd.Timestamp | None) -> pd.Timestamp | None:
    return b if a is None else a if b is None else max(a, b)


def _earlier(a: pd.Timestamp | None, b: pd.Timestamp | None) -> pd.Timestamp | None:
    return b if a is None else a if b is None else min(a, b)


def select_events(catalog: pd.DataFrame, selection: Selection = Selection(), split: str | None = None) -> pd.DataFrame:
    """The catalog rows of the selected VIL events, one row per event, ordered by id string.

    Parameters
    ----------
    catalog : a catalog from :func:`read_catalog`.
    selection : date range, completeness and forecaster filters.
    split : "train", "val", "test" or None (all dates).

    Returns
    -------
    pd.DataFrame, a subset of ``catalog``'s rows with a fresh 0..n-1 index.
    """
    split_start, split_end = selection.split_dates.bounds(split)
    start = _later(split_start, None if selection.start is None else pd.Timestamp(selection.start))
    end = _earlier(split_end, None if selection.end is None else pd.Timestamp(selection.end))
    rows = catalog
    if start is not None:
        rows = rows[rows["time_utc"] > start]
    if end is not None:
        rows = rows[rows["time_utc"] <= end]
    if selection.require_complete:
        rows = rows[rows["pct_missing"] == 0]
    rows = rows[rows["img_type"] == "vil"]
    counts = rows["id"].value_counts()
    rows = rows[rows["id"].map(counts) == 1]
    rows = rows.sort_values("id", kind="stable")
    if selection.event_types:
        rows = rows[rows["event_type"].fillna("").isin(list(selection.event_types))]
    if selection.min_data_max is not None:
        rows = rows[rows["data_max"] >= selection.min_data_max]
    if selection.bbox is not None:
        lat_min, lat_max, lon_min, lon_max = selection.bbox
        lat, lon = event_centers(rows)
        rows = rows[(lat >= lat_min) & (lat <= lat_max) & (lon >= lon_min) & (lon <= lon_max)]
    return rows.reset_index(drop=True)


def event_centers(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Geographic centre of each row's patch: the midpoint of its corners in the row's projection.

    Parameters
    ----------
    rows : catalog rows (``proj``, ``llcrnrlat``, ``llcrnrlon``, ``urcrnrlat``, ``urcrnrlon``).

    Returns
    -------
    (lat, lon) : each (n,) float64 degrees, in the order of ``rows``.
    """
    from prediff.data.geo import project, unproject

    lat = np.full(len(rows), np.nan)
    lon = np.full(len(rows), np.nan)
    projections = rows["proj"].fillna("").to_numpy()
    for proj in np.unique(projections):
        member = projections == proj
        part = rows[member]
        x0, y0 = project(proj, part["llcrnrlon"].to_numpy(), part["llcrnrlat"].to_numpy())
        x1, y1 = project(proj, part["urcrnrlon"].to_numpy(), part["urcrnrlat"].to_numpy())
        lon[member], lat[member] = unproject(proj, (np.asarray(x0) + x1) / 2, (np.asarray(y0) + y1) / 2)
    return lat, lon
