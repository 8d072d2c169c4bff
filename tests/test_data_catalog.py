"""CATALOG.csv parsing, the MindEarth selection, date splits and forecaster filters (prediff.data.catalog)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prediff.data.catalog import SPLITS, Selection, SplitDates, event_centers, read_catalog, select_events
from prediff.data.geo import SEVIR_PROJ, corners_for_center
from prediff.data.layout import CATALOG_COLUMNS
from prediff.errors import DataError

HEADER = ",".join(CATALOG_COLUMNS)
OFFSETS_49 = ":".join(str(m) for m in range(-120, 121, 5))


def catalog_line(id_, time, img_type="vil", pct_missing=0.0, event_type="Hail", episode="112543.0",
                 event="674521.0", data_max=200.0, center=(38.0, -98.0), file_name="vil/2019/F.h5", file_index=0):
    """One row written as SEVIR writes it (ids as floats, empty cells for random events)."""
    ll_lat, ll_lon, ur_lat, ur_lon = corners_for_center(SEVIR_PROJ, center[0], center[1], 384e3, 384e3)
    return (f"{id_},{file_name},{file_index},{img_type},{time},{OFFSETS_49},{episode},{event},{event_type},"
            f"{ll_lat},{ll_lon},{ur_lat},{ur_lon},{SEVIR_PROJ},384,384,384000.0,384000.0,0.0,{data_max},{pct_missing}")


def write_catalog(path, lines, header=HEADER):
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_read_catalog_types(tmp_path):
    write_catalog(tmp_path / "CATALOG.csv", [
        catalog_line("S1", "2019-05-01 12:30:00"),
        catalog_line("R19050101", "2019-05-02 00:00:00", event_type="", episode="", event=""),
    ])
    catalog = read_catalog(tmp_path)
    assert list(catalog.columns) == list(CATALOG_COLUMNS)
    assert catalog["time_utc"].dtype == "datetime64[ns]"
    assert catalog["time_utc"][0] == pd.Timestamp("2019-05-01 12:30:00")
    assert str(catalog["episode_id"].dtype) == "Int64" and str(catalog["event_id"].dtype) == "Int64"
    assert catalog["episode_id"][0] == 112543 and pd.isna(catalog["episode_id"][1])
    assert catalog["event_type"][1] == "" and catalog["event_type"][0] == "Hail"
    assert catalog["file_index"].dtype == np.int64 and catalog["size_x"].dtype == np.int64
    for name in ("llcrnrlat", "height_m", "data_max", "pct_missing"):
        assert catalog[name].dtype == np.float64
    assert catalog["minute_offsets"][0] == OFFSETS_49
    # the file path itself works as well as its folder
    pd.testing.assert_frame_equal(read_catalog(tmp_path / "CATALOG.csv"), catalog)


def test_read_catalog_keeps_extra_columns_and_nullable_sizes(tmp_path):
    line = catalog_line("S1", "2019-05-01 00:00:00", img_type="lght").replace(",384,384,", ",,,")
    write_catalog(tmp_path / "CATALOG.csv", [l + ",x" for l in [line, catalog_line("S2", "2019-05-01")]],
                  header=HEADER + ",note")
    catalog = read_catalog(tmp_path)
    assert list(catalog.columns)[-1] == "note"
    assert str(catalog["size_x"].dtype) == "Int64" and pd.isna(catalog["size_x"][0])


def test_read_catalog_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_catalog(tmp_path / "nowhere")
    with pytest.raises(DataError, match="CATALOG.csv is missing"):
        read_catalog(tmp_path)
    write_catalog(tmp_path / "CATALOG.csv", ["S1,vil/x.h5,0,vil"], header="id,file_name,file_index,img_type")
    with pytest.raises(DataError, match="lacks the column.*time_utc.*pct_missing"):
        read_catalog(tmp_path)
    write_catalog(tmp_path / "CATALOG.csv", [catalog_line("S1", "yesterday")])
    with pytest.raises(DataError, match="time_utc 'yesterday'"):
        read_catalog(tmp_path)
    write_catalog(tmp_path / "CATALOG.csv", [catalog_line("S1", "2019-01-01", data_max="lots")])
    with pytest.raises(DataError, match="data_max holds 'lots'"):
        read_catalog(tmp_path)
    write_catalog(tmp_path / "CATALOG.csv", [catalog_line("S1", "2019-01-01", episode="1.5")])
    with pytest.raises(DataError, match="not a whole number"):
        read_catalog(tmp_path)


def split_catalog(tmp_path):
    return read_catalog(write_catalog(tmp_path / "CATALOG.csv", [
        catalog_line("A", "2019-03-18 23:55:00"),
        catalog_line("B", "2019-03-19 00:00:00"),   # boundary -> train
        catalog_line("C", "2019-03-19 00:00:01"),
        catalog_line("D", "2019-06-01 00:00:00"),   # boundary -> val
        catalog_line("E", "2019-06-01 00:05:00"),
    ]))


def test_split_boundaries_go_to_the_earlier_split(tmp_path):
    catalog = split_catalog(tmp_path)
    ids = {split: list(select_events(catalog, split=split)["id"]) for split in SPLITS}
    assert ids == {"train": ["A", "B"], "val": ["C", "D"], "test": ["E"]}
    assert list(select_events(catalog)["id"]) == ["A", "B", "C", "D", "E"]
    with pytest.raises(DataError, match="unknown split 'dev'"):
        select_events(catalog, split="dev")


def test_split_dates_are_configurable_and_intersect_with_start_end(tmp_path):
    catalog = split_catalog(tmp_path)
    dates = SplitDates(train_end=pd.Timestamp("2019-03-18 23:55:00"), val_end=pd.Timestamp("2019-03-19 00:00:01"))
    selection = Selection(split_dates=dates)
    assert list(select_events(catalog, selection, "train")["id"]) == ["A"]
    assert list(select_events(catalog, selection, "val")["id"]) == ["B", "C"]
    narrowed = Selection(start=pd.Timestamp("2019-03-19"), end=pd.Timestamp("2019-06-01 00:05"))
    assert list(select_events(catalog, narrowed)["id"]) == ["C", "D", "E"]
    assert list(select_events(catalog, narrowed, "val")["id"]) == ["C", "D"]


def test_reference_selection_order_duplicates_and_id_ordering(tmp_path):
    catalog = read_catalog(write_catalog(tmp_path / "CATALOG.csv", [
        catalog_line("S9", "2019-01-01"),
        catalog_line("S10", "2019-01-02"),
        catalog_line("S10", "2019-01-02", img_type="ir069"),                 # other image type: no duplicate
        catalog_line("DUP", "2019-01-03"), catalog_line("DUP", "2019-01-03", file_index=1),
        catalog_line("HALFDUP", "2019-01-04"),
        catalog_line("HALFDUP", "2019-01-04", pct_missing=3.0, file_index=1),  # dropped first, so HALFDUP stays
        catalog_line("DATEDUP", "2019-01-05"),
        catalog_line("DATEDUP", "2018-01-05", file_index=1),                   # outside the date range
        catalog_line("GAPS", "2019-01-06", pct_missing=0.5),
        catalog_line("IR", "2019-01-07", img_type="ir107"),
    ]))
    selection = Selection(start=pd.Timestamp("2018-12-31"))
    # ordered by id string: "S10" < "S9"
    assert list(select_events(catalog, selection)["id"]) == ["DATEDUP", "HALFDUP", "S10", "S9"]
    assert list(select_events(catalog, Selection(start=pd.Timestamp("2018-12-31"), require_complete=False))["id"]) \
        == ["DATEDUP", "GAPS", "S10", "S9"]
    selected = select_events(catalog, selection)
    assert list(selected.index) == [0, 1, 2, 3]
    assert (selected["img_type"] == "vil").all()


def test_forecaster_filters(tmp_path):
    catalog = read_catalog(write_catalog(tmp_path / "CATALOG.csv", [
        catalog_line("H1", "2019-01-01", event_type="Hail", data_max=250, center=(35.0, -97.0)),
        catalog_line("W1", "2019-01-01", event_type="Thunderstorm Wind", data_max=120, center=(42.0, -90.0)),
        catalog_line("R1", "2019-01-01", event_type="", episode="", event="", data_max=40, center=(30.0, -85.0)),
    ]))
    pick = lambda **kwargs: list(select_events(catalog, Selection(**kwargs))["id"])  # noqa: E731
    assert pick(event_types=("Hail", "Thunderstorm Wind")) == ["H1", "W1"]
    assert pick(event_types=("",)) == ["R1"]
    assert pick(min_data_max=120) == ["H1", "W1"]
    assert pick(bbox=(34.0, 36.0, -98.0, -96.0)) == ["H1"]
    assert pick(bbox=(29.0, 43.0, -91.0, -84.0)) == ["R1", "W1"]
    assert pick(event_types=("Hail",), min_data_max=251) == []


def test_event_centers_match_the_patch_centre(tmp_path):
    catalog = read_catalog(write_catalog(tmp_path / "CATALOG.csv", [
        catalog_line("A", "2019-01-01", center=(47.5, -120.25)), catalog_line("B", "2019-01-01", center=(27.0, -80.0)),
    ]))
    lat, lon = event_centers(catalog)
    np.testing.assert_allclose(lat, [47.5, 27.0], atol=1e-9)
    np.testing.assert_allclose(lon, [-120.25, -80.0], atol=1e-9)
