"""NJU-CPOL reader: layout, windows, invalid-value policy, errors (prediff.dualpol.reader)."""

import numpy as np
import pytest

from prediff.dualpol.reader import (NjuCpolDataset, clean_frame, denormalise, field_directory, frame_name,
                                    normalise, process_name, split_processes)
from prediff.dualpol.synthetic import save_frame
from prediff.errors import ConfigError, DataError

KEYS = ("dBZ@1.0km", "ZDR@1.0km", "rain")


def _write_tree(root, n_frames=24, processes=(0, 1), size=8, keys=KEYS):
    for process in processes:
        for key in keys:
            for frame in range(n_frames):
                values = np.full((size, size), 10.0 + frame, dtype=np.float32)
                if key.startswith("ZDR"):
                    values[:] = 1.0
                save_frame(field_directory(root, key) / process_name(process) / frame_name(frame), values)


def test_windows_cover_processes_with_stride(tmp_path):
    _write_tree(tmp_path)
    dataset = NjuCpolDataset(tmp_path, keys=KEYS, stride=2)
    # 24 frames, windows of 20 starting at 0, 2, 4 in each of 2 processes
    assert dataset.window_index == [(0, 0), (0, 2), (0, 4), (1, 0), (1, 2), (1, 4)]
    window = dataset[1]
    assert window.inputs("dBZ@1.0km").shape == (10, 8, 8)
    assert window.targets("dBZ@1.0km")[0, 0, 0] == pytest.approx(10.0 + 2 + 10)
    assert window.fields["rain"].dtype == np.float32


def test_missing_variable_height_and_frame_are_reported(tmp_path):
    _write_tree(tmp_path)
    with pytest.raises(DataError, match="KDP@1.0km"):
        NjuCpolDataset(tmp_path, keys=("dBZ@1.0km", "KDP@1.0km"))
    with pytest.raises(DataError, match="dBZ@7.0km"):
        NjuCpolDataset(tmp_path, keys=("dBZ@7.0km",))
    with pytest.raises(ConfigError):
        NjuCpolDataset(tmp_path, keys=("dBZ@2.0km",))
    (field_directory(tmp_path, "ZDR@1.0km") / process_name(1) / frame_name(5)).unlink()
    dataset = NjuCpolDataset(tmp_path, keys=KEYS)
    with pytest.raises(DataError, match="frame_005"):
        dataset.frame_count(1)
    with pytest.raises(DataError, match="data_dir_009"):
        NjuCpolDataset(tmp_path, keys=KEYS, processes=[9])


def test_mismatched_frame_counts_between_variables(tmp_path):
    _write_tree(tmp_path)
    (field_directory(tmp_path, "rain") / process_name(0) / frame_name(23)).unlink()
    dataset = NjuCpolDataset(tmp_path, keys=KEYS)
    with pytest.raises(DataError, match="different frame counts"):
        len(dataset)


def test_invalid_values_policy_and_scan(tmp_path):
    _write_tree(tmp_path, processes=(0,))
    bad = np.full((8, 8), 20.0, dtype=np.float32)
    bad[0, 0], bad[0, 1], bad[0, 2], bad[0, 3] = np.nan, np.inf, 80.0, -5.0
    directory = field_directory(tmp_path, "dBZ@1.0km") / process_name(0)
    save_frame(directory / frame_name(3), bad)
    save_frame(directory / frame_name(4), np.zeros((8, 8), np.float32))
    clipped = NjuCpolDataset(tmp_path, keys=KEYS).read_frame("dBZ@1.0km", 0, 3)
    assert np.isnan(clipped[0, :2]).all() and clipped[0, 2] == 65.0 and clipped[0, 3] == 0.0
    masked = NjuCpolDataset(tmp_path, keys=KEYS, out_of_range="mask").read_frame("dBZ@1.0km", 0, 3)
    assert np.isnan(masked[0, :4]).all() and masked[1, 1] == 20.0
    reports = {(r.key, r.frame): r for r in NjuCpolDataset(tmp_path, keys=KEYS).scan()}
    assert reports[("dBZ@1.0km", 3)].n_nonfinite == 2 and reports[("dBZ@1.0km", 3)].n_out_of_range == 2
    assert reports[("dBZ@1.0km", 4)].all_zero and not reports[("dBZ@1.0km", 3)].all_zero
    with pytest.raises(ConfigError):
        clean_frame(bad, "dBZ", out_of_range="drop")


def test_all_zero_target_windows_can_be_skipped(tmp_path):
    _write_tree(tmp_path, processes=(0,), n_frames=20)
    directory = field_directory(tmp_path, "dBZ@1.0km") / process_name(0)
    for frame in range(10, 20):
        save_frame(directory / frame_name(frame), np.zeros((8, 8), np.float32))
    assert len(NjuCpolDataset(tmp_path, keys=KEYS)) == 1
    assert len(NjuCpolDataset(tmp_path, keys=KEYS, skip_all_zero_targets=True)) == 0


def test_corrupt_and_non_square_frames(tmp_path):
    _write_tree(tmp_path, processes=(0,))
    directory = field_directory(tmp_path, "rain") / process_name(0)
    (directory / frame_name(2)).write_bytes(b"not a numpy file")
    save_frame(directory / frame_name(3), np.zeros((8, 6), np.float32))
    dataset = NjuCpolDataset(tmp_path, keys=KEYS)
    with pytest.raises(DataError, match="corrupt"):
        dataset.read_frame("rain", 0, 2)
    with pytest.raises(DataError, match="square"):
        dataset.read_frame("rain", 0, 3)


def test_normalisation_round_trip_and_split():
    values = np.array([-3.0, 0.0, 32.5, 65.0, np.nan], dtype=np.float32)
    scaled = normalise(values, "dBZ")
    assert scaled[:4].tolist() == [0.0, 0.0, 0.5, 1.0] and np.isnan(scaled[4])
    assert denormalise(normalise(np.array([2.0]), "ZDR@3.0km"), "ZDR")[0] == pytest.approx(2.0)
    assert normalise(np.array([100.0]), "rain")[0] == pytest.approx(0.5)
    train, test = split_processes(range(14))
    assert test == list(range(11)) and train == [11, 12, 13]


def test_unpadded_frame_names_are_read(tmp_path):
    for frame in range(3):
        save_frame(field_directory(tmp_path, "dBZ@1.0km") / process_name(0) / f"frame_{frame}.npy",
                   np.full((4, 4), float(frame), np.float32))
    dataset = NjuCpolDataset(tmp_path, n_input=2, n_target=1, stride=1)
    assert dataset[0].targets("dBZ@1.0km")[0, 0, 0] == 2.0
