"""SevirDataset on trees written by hand (plain h5py + a hand-written CSV) and by layout.write_sevir_tree;
errors, windows, frame times, georeferencing; the SEVIR -> SEVIR-LR downsampler; `prediff events`."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pyproj
import pytest

from prediff.cli import main
from prediff.data.catalog import Selection
from prediff.data.downsample import block_max, downsample_event, downsample_tree
from prediff.data.geo import SEVIR_PROJ
from prediff.data.layout import CATALOG_COLUMNS, EventRecord, write_sevir_tree
from prediff.data.sevir import SevirDataset, WindowSpec
from prediff.errors import DataError

# a 384 km x 384 km patch south-west of the projection centre; corners computed with pyproj directly
_SEVIR_CRS = pyproj.CRS.from_proj4(SEVIR_PROJ)
_TO_LONLAT = pyproj.Transformer.from_crs(_SEVIR_CRS, _SEVIR_CRS.geodetic_crs, always_xy=True)
_LL = _TO_LONLAT.transform(-500_000.0, -400_000.0)
_UR = _TO_LONLAT.transform(-500_000.0 + 384_000.0, -400_000.0 + 384_000.0)
CORNERS = (_LL[1], _LL[0], _UR[1], _UR[0])


def movie(seed: int, height: int, width: int, frames: int) -> np.ndarray:
    """(H, W, T) uint8 pixels whose frame t has t in its corner pixel, so windows are recognisable."""
    vil = np.random.default_rng(seed).integers(0, 255, (height, width, frames), dtype=np.uint8)
    vil[0, 0, :] = np.arange(frames)
    return vil


def hand_written_tree(root, size: int, frames: int, step_min: int, with_id: bool, n_events: int = 2,
                      offsets_frames: int | None = None, catalog_size: int | None = None):
    """A SEVIR tree written without prediff: h5py file(s) + CATALOG.csv built line by line.

    Events S0..S{n-1} share one file; an extra ir069 row points at a file that does not exist (readers must
    ignore other image types). ``offsets_frames`` / ``catalog_size`` write a catalog that describes other
    frames / sizes than the file holds, as the published SEVIR-LR does (its catalog is SEVIR's, copied).
    Returns {id: (H, W, T) movie}.
    """
    file_name = "vil/2018/SEVIR_VIL_STORMEVENTS_2018_0101_0630.h5"
    path = root / "data" / file_name
    path.parent.mkdir(parents=True)
    movies = {f"S{i}": movie(i, size, size, frames) for i in range(n_events)}
    with h5py.File(path, "w") as handle:
        handle.create_dataset("vil", data=np.stack(list(movies.values())))
        if with_id:
            handle.create_dataset("id", data=np.array([k.encode() for k in movies], dtype="S"))
    half = (offsets_frames or frames) // 2
    offsets = ":".join(str(step_min * (k - half)) for k in range(offsets_frames or frames))
    lines = [",".join(CATALOG_COLUMNS)]
    listed = catalog_size or size
    for index, event_id in enumerate(movies):
        lines.append(f"{event_id},{file_name},{index},vil,2018-05-0{index + 1} 21:40:00,{offsets},112543.0,"
                     f"674521.0,Hail,{CORNERS[0]},{CORNERS[1]},{CORNERS[2]},{CORNERS[3]},{SEVIR_PROJ},{listed},{listed},"
                     f"384000.0,384000.0,0.0,254.0,0.0")
    lines.append(f"S0,ir069/2018/SEVIR_IR069_STORMEVENTS_2018_0101_0630.h5,0,ir069,2018-05-01 21:40:00,{offsets},"
                 f"112543.0,674521.0,Hail,{CORNERS[0]},{CORNERS[1]},{CORNERS[2]},{CORNERS[3]},{SEVIR_PROJ},192,192,"
                 f"384000.0,384000.0,-6000.0,-1000.0,0.0")
    (root / "CATALOG.csv").write_text("\n".join(lines) + "\n")
    return movies


def writer_tree(root, movies, step_min: int, with_id: bool):
    """The same events written through prediff.data.layout.write_sevir_tree."""
    records = []
    for index, (event_id, vil) in enumerate(movies.items()):
        frames = vil.shape[-1]
        records.append(EventRecord(
            id=event_id, time_utc=pd.Timestamp(f"2018-05-0{index + 1} 21:40:00"), vil=vil,
            minute_offsets=[step_min * (k - frames // 2) for k in range(frames)],
            llcrnrlat=CORNERS[0], llcrnrlon=CORNERS[1], urcrnrlat=CORNERS[2], urcrnrlon=CORNERS[3], proj=SEVIR_PROJ,
            width_m=384000.0, height_m=384000.0, event_type="Hail", episode_id=112543, event_id=674521))
    write_sevir_tree(root, records, include_id_dataset=with_id)


@pytest.fixture
def sevir_lr(tmp_path):
    """A hand-written SEVIR-LR tree (128 x 128, 25 frames @ 10 min, no id dataset)."""
    root = tmp_path / "sevir_lr"
    movies = hand_written_tree(root, 128, 25, 10, with_id=False)
    return root, movies


@pytest.mark.parametrize("size, frames, step, with_id", [(384, 49, 5, True), (128, 25, 10, False)])
def test_hand_written_and_writer_trees_read_the_same(tmp_path, size, frames, step, with_id):
    movies = hand_written_tree(tmp_path / "hand", size, frames, step, with_id)
    writer_tree(tmp_path / "writer", movies, step, with_id)
    hand, written = SevirDataset(tmp_path / "hand"), SevirDataset(tmp_path / "writer")
    assert hand.event_ids == written.event_ids == ["S0", "S1"]
    assert len(hand) == len(written) == 2 * len(range(0, frames - 12, 6))
    assert hand.windows() == written.windows()
    for event_id, vil in movies.items():
        assert hand.event_shape(event_id) == written.event_shape(event_id) == (frames, size, size)
        event = hand.read_event(event_id)
        assert event.dtype == np.uint8 and event.shape == (frames, size, size) and event.flags.c_contiguous
        np.testing.assert_array_equal(event, np.moveaxis(vil, -1, 0))
        np.testing.assert_array_equal(written.read_event(event_id), event)
        np.testing.assert_array_equal(hand.frame_times(event_id), written.frame_times(event_id))
        np.testing.assert_allclose(hand.grid(event_id).x, written.grid(event_id).x)
        np.testing.assert_allclose(hand.grid(event_id).y, written.grid(event_id).y)
    columns = [c for c in CATALOG_COLUMNS if c not in ("file_name", "file_index")]
    pd.testing.assert_frame_equal(hand.catalog[columns], written.catalog[columns])


def test_sevir_lr_windows_follow_the_reference(sevir_lr):
    root, movies = sevir_lr
    dataset = SevirDataset(root)
    assert dataset.window_starts("S0") == [0, 6, 12]
    assert dataset.windows() == [("S0", 0), ("S0", 1), ("S0", 2), ("S1", 0), ("S1", 1), ("S1", 2)]
    assert len(dataset) == 6
    for k in range(3):
        window = dataset.read_window("S1", k)
        assert window.shape == (13, 128, 128) and window.dtype == np.uint8
        np.testing.assert_array_equal(window[:, 0, 0], np.arange(6 * k, 6 * k + 13))
        np.testing.assert_array_equal(window, np.moveaxis(movies["S1"], -1, 0)[6 * k:6 * k + 13])
    with pytest.raises(DataError, match="window 3 does not exist"):
        dataset.read_window("S1", 3)


def test_configurable_windows(sevir_lr):
    root, _ = sevir_lr
    dataset = SevirDataset(root, window=WindowSpec(context=4, target=2, stride=5))
    assert dataset.window.length == 6
    assert dataset.window_starts("S0") == [0, 5, 10, 15]
    np.testing.assert_array_equal(dataset.read_window("S0", 3)[:, 0, 0], np.arange(15, 21))
    assert len(SevirDataset(root, window=WindowSpec(context=20, target=6))) == 0
    with pytest.raises(DataError, match="invalid window"):
        WindowSpec(stride=0)


def test_frame_times(sevir_lr):
    root, _ = sevir_lr
    dataset = SevirDataset(root)
    times = dataset.frame_times("S0")
    assert times.dtype == np.dtype("datetime64[ns]") and times.shape == (25,)
    assert times[0] == np.datetime64("2018-05-01T19:40:00") and times[12] == np.datetime64("2018-05-01T21:40:00")
    assert np.all(np.diff(times) == np.timedelta64(10, "m"))


def test_published_sevir_lr_layout_with_the_copied_sevir_catalog(tmp_path):
    hand_written_tree(tmp_path, 128, 25, 5, with_id=False, offsets_frames=49, catalog_size=384)
    dataset = SevirDataset(tmp_path)
    assert dataset.row("S0")["size_x"] == 384
    times = dataset.frame_times("S0")
    assert times.shape == (25,) and np.all(np.diff(times) == np.timedelta64(10, "m"))
    assert times[0] == np.datetime64("2018-05-01T19:40:00") and times[-1] == np.datetime64("2018-05-01T23:40:00")
    grid = dataset.grid("S0")
    assert grid.shape == (128, 128) and grid.pixel_size_m == pytest.approx((3000.0, 3000.0))
    assert dataset.window_starts("S0") == [0, 6, 12]


def test_offsets_that_do_not_fit_the_frames(tmp_path):
    hand_written_tree(tmp_path, 128, 25, 5, with_id=False, offsets_frames=30)
    with pytest.raises(DataError, match="lists 30 minute_offsets but .* has 25 frames"):
        SevirDataset(tmp_path).frame_times("S0")


def test_grid_pixel_centres_match_pyproj(sevir_lr):
    root, _ = sevir_lr
    grid = SevirDataset(root).grid("S0")
    assert grid.shape == (128, 128)
    lat, lon = grid.latlon()
    transformer = pyproj.Transformer.from_crs(pyproj.CRS.from_proj4(SEVIR_PROJ).geodetic_crs,
                                              pyproj.CRS.from_proj4(SEVIR_PROJ), always_xy=True)
    x0, y0 = transformer.transform(CORNERS[1], CORNERS[0])
    x1, y1 = transformer.transform(CORNERS[3], CORNERS[2])
    step_x, step_y = (x1 - x0) / 128, (y1 - y0) / 128
    assert step_x == pytest.approx(3000.0, rel=1e-3) and step_y == pytest.approx(3000.0, rel=1e-3)
    for row, col in [(0, 0), (0, 127), (127, 0), (64, 37), (127, 127)]:
        expected_lon, expected_lat = transformer.transform(x0 + (col + 0.5) * step_x, y0 + (row + 0.5) * step_y,
                                                           direction="INVERSE")
        assert lat[row, col] == pytest.approx(expected_lat, abs=1e-9)
        assert lon[row, col] == pytest.approx(expected_lon, abs=1e-9)
    assert lat[0, 64] < lat[127, 64]   # row 0 = south


def test_unknown_event_id_says_how_to_list_ids(sevir_lr):
    root, _ = sevir_lr
    with pytest.raises(DataError, match=r"unknown event id 'S7'.*prediff events --data"):
        SevirDataset(root).read_event("S7")


def test_missing_root_and_catalog(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        SevirDataset(tmp_path / "absent")
    with pytest.raises(DataError, match="CATALOG.csv is missing"):
        SevirDataset(tmp_path)


def test_catalog_missing_columns(sevir_lr):
    root, _ = sevir_lr
    catalog = pd.read_csv(root / "CATALOG.csv").drop(columns=["minute_offsets", "proj"])
    catalog.to_csv(root / "CATALOG.csv", index=False)
    with pytest.raises(DataError, match="lacks the column.*minute_offsets, proj"):
        SevirDataset(root)


def test_row_pointing_at_a_missing_file(sevir_lr):
    root, _ = sevir_lr
    (root / "data/vil/2018/SEVIR_VIL_STORMEVENTS_2018_0101_0630.h5").unlink()
    with pytest.raises(DataError, match="refers to HDF5 file.*not there"):
        SevirDataset(root)


def test_file_index_out_of_range(sevir_lr):
    root, _ = sevir_lr
    (root / "CATALOG.csv").write_text((root / "CATALOG.csv").read_text().replace(",1,vil,", ",5,vil,"))
    dataset = SevirDataset(root)
    dataset.read_event("S0")
    with pytest.raises(DataError, match="file_index 5 is out of range.*holds 2 events"):
        dataset.read_event("S1")


def test_id_dataset_that_disagrees_with_the_catalog(tmp_path):
    hand_written_tree(tmp_path, 128, 25, 10, with_id=True)
    (tmp_path / "CATALOG.csv").write_text((tmp_path / "CATALOG.csv").read_text().replace("S1,", "S5,"))
    with pytest.raises(DataError, match="event 1 is 'S1', but the catalog says 'S5'"):
        SevirDataset(tmp_path).read_event("S5")


def test_corrupt_and_truncated_hdf5(sevir_lr):
    root, _ = sevir_lr
    path = root / "data/vil/2018/SEVIR_VIL_STORMEVENTS_2018_0101_0630.h5"
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        SevirDataset(root).read_event("S1")
    path.write_bytes(b"this is not HDF5" * 100)
    with pytest.raises(DataError, match="corrupt or truncated"):
        SevirDataset(root).read_event("S0")


def rewrite_file(root, **datasets):
    path = root / "data/vil/2018/SEVIR_VIL_STORMEVENTS_2018_0101_0630.h5"
    with h5py.File(path, "w") as handle:
        for name, data in datasets.items():
            handle.create_dataset(name, data=data)


def test_missing_vil_dataset(sevir_lr):
    root, _ = sevir_lr
    rewrite_file(root, ir069=np.zeros((2, 4, 4, 25), np.int16))
    with pytest.raises(DataError, match="no 'vil' dataset.*ir069"):
        SevirDataset(root).read_event("S0")


@pytest.mark.parametrize("data, message", [
    (np.zeros((2, 128, 128), np.uint8), "has shape"),
    (np.zeros((2, 128, 64, 25), np.uint8), "has shape"),
    (np.zeros((2, 16, 16, 25), "S4"), "has dtype"),
    (np.full((2, 16, 16, 25), 300, np.int16), "not VIL pixels"),
    (np.full((2, 16, 16, 25), 0.5, np.float32), "not VIL pixels"),
])
def test_wrong_vil_shape_or_dtype(sevir_lr, data, message):
    root, _ = sevir_lr
    rewrite_file(root, vil=data)
    with pytest.raises(DataError, match=message):
        SevirDataset(root).read_event("S0")


def test_whole_pixel_values_in_wider_dtypes_are_read_as_uint8(sevir_lr):
    root, movies = sevir_lr
    stacked = np.stack(list(movies.values()))
    rewrite_file(root, vil=stacked.astype(np.float32))
    event = SevirDataset(root).read_event("S1")
    assert event.dtype == np.uint8
    np.testing.assert_array_equal(event, np.moveaxis(movies["S1"], -1, 0))


def test_selection_and_split_are_applied(tmp_path):
    hand_written_tree(tmp_path, 128, 25, 10, with_id=False, n_events=3)
    catalog = pd.read_csv(tmp_path / "CATALOG.csv")
    catalog.loc[catalog["id"] == "S2", "pct_missing"] = 1.5
    catalog.to_csv(tmp_path / "CATALOG.csv", index=False)
    assert SevirDataset(tmp_path).event_ids == ["S0", "S1"]
    assert SevirDataset(tmp_path, selection=Selection(require_complete=False)).event_ids == ["S0", "S1", "S2"]
    assert SevirDataset(tmp_path, split="test").event_ids == []
    assert SevirDataset(tmp_path, split="train").row("S1")["event_type"] == "Hail"


# --- SEVIR -> SEVIR-LR ------------------------------------------------------------------------------------

def test_block_max_ignores_missing_pixels():
    frames = np.array([[1, 2, 3, 255, 255, 255],
                       [4, 9, 5, 255, 255, 255],
                       [6, 7, 8, 255, 255, 255],
                       [255, 255, 255, 255, 255, 0],
                       [255, 255, 255, 255, 255, 255],
                       [255, 254, 255, 255, 255, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(block_max(frames), [[9, 255], [254, 0]])
    with pytest.raises(DataError, match="cannot be cut into 3 x 3"):
        block_max(np.zeros((4, 4), np.uint8))


def test_downsample_event_shapes_and_frames():
    vil = np.random.default_rng(3).integers(0, 255, (49, 384, 384), dtype=np.uint8)
    small = downsample_event(vil)
    assert small.shape == (25, 128, 128) and small.dtype == np.uint8
    np.testing.assert_array_equal(small[7], vil[14].reshape(128, 3, 128, 3).max(axis=(1, 3)))


def test_downsample_tree(tmp_path):
    movies = hand_written_tree(tmp_path / "sevir", 384, 49, 5, with_id=True)
    movies["S0"][:3, :3, :] = 255
    with h5py.File(tmp_path / "sevir/data/vil/2018/SEVIR_VIL_STORMEVENTS_2018_0101_0630.h5", "r+") as handle:
        handle["vil"][0] = movies["S0"]
    calls = []
    downsample_tree(tmp_path / "sevir", tmp_path / "lr", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    source, small = SevirDataset(tmp_path / "sevir", selection=Selection(require_complete=False)), \
        SevirDataset(tmp_path / "lr", selection=Selection(require_complete=False))
    assert small.event_ids == ["S0", "S1"] and len(small) == 6
    for event_id, vil in movies.items():
        expected = block_max(np.moveaxis(vil, -1, 0)[::2])
        np.testing.assert_array_equal(small.read_event(event_id), expected)
        np.testing.assert_array_equal(small.frame_times(event_id), source.frame_times(event_id)[::2])
        row, original = small.row(event_id), source.row(event_id)
        assert (row["size_x"], row["size_y"]) == (128, 128)
        assert row["minute_offsets"] == ":".join(str(m) for m in range(-120, 121, 10))
        for name in ("time_utc", "event_type", "episode_id", "event_id", "llcrnrlat", "urcrnrlon", "proj", "width_m"):
            assert row[name] == original[name]
        np.testing.assert_allclose(small.grid(event_id).extent(), source.grid(event_id).extent(), rtol=1e-9)
    assert small.read_event("S0")[0, 0, 0] == 255
    assert small.row("S0")["pct_missing"] == pytest.approx(100 / 128 ** 2)
    with h5py.File(tmp_path / "lr/data/vil/2018/SEVIR_VIL_STORMEVENTS_2018_0101_0630.h5", "r") as handle:
        assert "id" not in handle and handle["vil"].shape == (2, 128, 128, 25)
    with pytest.raises(DataError, match="new folder"):
        downsample_tree(tmp_path / "sevir", tmp_path / "sevir")


# --- CLI ----------------------------------------------------------------------------------------------------

def test_events_command(sevir_lr, capsys):
    root, _ = sevir_lr
    assert main(["events", "--data", str(root), "--type", "Hail", "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["id", "time", "(UTC)"]
    assert out[1].split()[:4] == ["S0", "2018-05-01", "21:40:00", "Hail"]
    assert out[1].split()[-1] == "3"
    assert out[-1] == "1 of 2 event(s)"
    assert main(["events", "--data", str(root), "--split", "test"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 of 0 event(s) in the test split"
    assert main(["events", "--data", str(root), "--bbox", "40", "45", "-100", "-90"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 of 0 event(s)"
    assert main(["events", "--data", str(root / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_downsample_command(tmp_path, capsys):
    hand_written_tree(tmp_path / "sevir", 384, 49, 5, with_id=True, n_events=1)
    assert main(["data", "downsample", "--src", str(tmp_path / "sevir"), "--out", str(tmp_path / "lr")]) == 0
    assert SevirDataset(tmp_path / "lr").read_event("S0").shape == (25, 128, 128)
