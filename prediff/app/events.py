"""The events browser's logic: the searchable catalog table and its filters (no Streamlit here)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from prediff.data.catalog import SplitDates, event_centers
from prediff.data.vil import vil_pixels_to_kg_m2

#: Columns of :func:`event_table`, in display order.
TABLE_COLUMNS = ("id", "type", "time (UTC)", "lat", "lon", "max VIL (pixel)", "max VIL (kg m-2)", "split")
RANDOM_EVENT_TYPE = "(random event)"


def split_of(times: pd.Series, split_dates: SplitDates = SplitDates()) -> np.ndarray:
    """The date split ("train", "val" or "test") of each time, with the boundaries of :class:`SplitDates`.

    Parameters
    ----------
    times : (n,) datetime64 reference times (catalog ``time_utc``).
    split_dates : split boundaries (a boundary timestamp belongs to the earlier split).

    Returns
    -------
    (n,) object array of split names.
    """
    times = pd.to_datetime(times)
    return np.where(times <= split_dates.train_end, "train",
                    np.where(times <= split_dates.val_end, "val", "test")).astype(object)


def event_table(catalog: pd.DataFrame, split_dates: SplitDates = SplitDates()) -> pd.DataFrame:
    """One row per event for the catalog browser.

    Parameters
    ----------
    catalog : selected catalog rows (``SevirDataset.catalog``), one per event.
    split_dates : split boundaries used for the ``split`` column.

    Returns
    -------
    pd.DataFrame with the columns :data:`TABLE_COLUMNS`: ``type`` is the NOAA event type or
    "(random event)"; ``lat`` / ``lon`` the patch centre in degrees; ``max VIL`` the catalog's ``data_max``
    (VIL pixel 0-254, nullable Int64) and its decoded value in kg m^-2; ``split`` the date split.
    """
    if catalog.empty:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in TABLE_COLUMNS})
    lat, lon = event_centers(catalog)
    data_max = catalog["data_max"].to_numpy(dtype=np.float64)
    types = catalog["event_type"].fillna("").astype(str).replace("", RANDOM_EVENT_TYPE)
    return pd.DataFrame({
        "id": catalog["id"].astype(str).to_numpy(),
        "type": types.to_numpy(),
        "time (UTC)": pd.to_datetime(catalog["time_utc"]).to_numpy(),
        "lat": np.round(lat, 3),
        "lon": np.round(lon, 3),
        "max VIL (pixel)": pd.array(np.where(np.isfinite(data_max), np.rint(data_max), np.nan), dtype="Int64"),
        "max VIL (kg m-2)": np.round(vil_pixels_to_kg_m2(data_max).astype(np.float64), 2),
        "split": split_of(catalog["time_utc"], split_dates),
    }, columns=list(TABLE_COLUMNS))


def filter_events(table: pd.DataFrame, text: str = "", types: Sequence[str] = (), splits: Sequence[str] = (),
                  min_max_vil: float | None = None) -> pd.DataFrame:
    """Rows of an :func:`event_table` matching the browser's search controls.

    Parameters
    ----------
    table : from :func:`event_table`.
    text : case-insensitive substring searched in id, type and time ("2019-06", "hail", "S7285").
    types : keep only these types (empty = all).
    splits : keep only these splits (empty = all).
    min_max_vil : keep events whose max VIL (pixel) is at least this.

    Returns
    -------
    pd.DataFrame, the matching rows in their original order (index kept).
    """
    keep = np.ones(len(table), dtype=bool)
    text = text.strip().lower()
    if text:
        haystack = (table["id"].astype(str) + " " + table["type"].astype(str) + " "
                    + table["time (UTC)"].astype(str)).str.lower()
        keep &= haystack.str.contains(text, regex=False).to_numpy()
    if types:
        keep &= table["type"].isin(list(types)).to_numpy()
    if splits:
        keep &= table["split"].isin(list(splits)).to_numpy()
    if min_max_vil is not None:
        keep &= (table["max VIL (pixel)"] >= min_max_vil).to_numpy()
    return table[keep]


#: Credit lines required by the licences of imported open radar data, by a word of the event type.
RADAR_ATTRIBUTIONS = {
    "fmi": "Radar data © Finnish Meteorological Institute (FMI), CC BY 4.0",
    "knmi": "Radar data © Royal Netherlands Meteorological Institute (KNMI), CC BY 4.0",
}


def attribution(event_type: str) -> str | None:
    """The credit line to show with an event's maps: the radar institute for imported FMI / KNMI data (their
    CC BY 4.0 licence asks for it), None for other events (SEVIR and the synthetic demo corpus are credited on
    the About page)."""
    words = str(event_type).lower().replace("(", " ").replace(")", " ").split()
    for word, credit in RADAR_ATTRIBUTIONS.items():
        if word in words:
            return credit
    return None


def hover_lines(table: pd.DataFrame) -> list[str]:
    """One hover text per row: id, type, time and max VIL (for :func:`prediff.viz.maps.events_map`)."""
    return [f"<b>{row['id']}</b><br>{row['type']}<br>{pd.Timestamp(row['time (UTC)']):%Y-%m-%d %H:%M} UTC"
            f"<br>max VIL {row['max VIL (pixel)']:.0f} px ({row['max VIL (kg m-2)']:.1f} kg m<sup>-2</sup>)"
            for _, row in table.iterrows()]
