"""The events browser's table and filters."""

import numpy as np
import pandas as pd

from prediff.app.events import (RANDOM_EVENT_TYPE, TABLE_COLUMNS, attribution, event_table, filter_events, hover_lines,
                                split_of)
from prediff.data.geo import SEVIR_PROJ, corners_for_center


def _catalog():
    rows = []
    for event_id, kind, time, lat, lon, data_max in [("S1", "Hail", "2019-03-19 00:00:00", 35.0, -97.0, 200.0),
                                                     ("S2", "Flood", "2019-05-01 12:00:00", 41.9, -87.6, 60.0),
                                                     ("R3", "", "2019-06-01 00:00:01", 30.0, -90.0, 18.0)]:
        ll_lat, ll_lon, ur_lat, ur_lon = corners_for_center(SEVIR_PROJ, lat, lon, 384000.0, 384000.0)
        rows.append({"id": event_id, "event_type": kind, "time_utc": pd.Timestamp(time), "llcrnrlat": ll_lat,
                     "llcrnrlon": ll_lon, "urcrnrlat": ur_lat, "urcrnrlon": ur_lon, "proj": SEVIR_PROJ,
                     "data_max": data_max})
    return pd.DataFrame(rows)


def test_event_table_columns_centres_and_splits():
    table = event_table(_catalog())
    assert tuple(table.columns) == TABLE_COLUMNS
    assert list(table["split"]) == ["train", "val", "test"]
    assert list(table["type"]) == ["Hail", "Flood", RANDOM_EVENT_TYPE]
    assert np.allclose(table["lat"], [35.0, 41.9, 30.0], atol=1e-3)
    assert np.allclose(table["lon"], [-97.0, -87.6, -90.0], atol=1e-3)
    assert np.isclose(table.loc[0, "max VIL (kg m-2)"], round(np.exp((200 - 83.9) / 38.9), 2))
    assert event_table(_catalog().iloc[:0]).empty


def test_split_boundaries_go_to_the_earlier_split():
    times = pd.Series(pd.to_datetime(["2019-03-19 00:00:00", "2019-03-19 00:00:01", "2019-06-01 00:00:00",
                                     "2019-06-02 00:00:00"]))
    assert list(split_of(times)) == ["train", "val", "val", "test"]


def test_filters_combine():
    table = event_table(_catalog())
    assert list(filter_events(table, text="hail")["id"]) == ["S1"]
    assert list(filter_events(table, text="2019-05")["id"]) == ["S2"]
    assert list(filter_events(table, types=["Flood", RANDOM_EVENT_TYPE])["id"]) == ["S2", "R3"]
    assert list(filter_events(table, splits=["test", "train"])["id"]) == ["S1", "R3"]
    assert list(filter_events(table, min_max_vil=50)["id"]) == ["S1", "S2"]
    assert filter_events(table, text="hail", splits=["val"]).empty
    assert "<b>S1</b>" in hover_lines(table)[0] and "max VIL 200 px" in hover_lines(table)[0]


def test_imported_radar_is_credited():
    assert "FMI" in attribution("Imported radar (FMI PGM)") and "CC BY 4.0" in attribution("Imported radar (FMI PGM)")
    assert "KNMI" in attribution("Imported radar (KNMI HDF5)")
    assert attribution("Hail") is None and attribution("Imported radar (NetCDF)") is None
