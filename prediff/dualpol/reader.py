"""Reader for the NJU-CPOL dual-polarisation radar release (S-band, Nanjing) and its normalisation ranges.

On-disk layout (the public release used in the 2023 competition; the synthetic corpus of
:mod:`prediff.dualpol.synthetic` writes the same)::

    <root>/NJU_CPOL_update2308/<variable>/<height>/data_dir_NNN/frame_MMM.npy
    <root>/NJU_CPOL_kdpRain/data_dir_NNN/frame_MMM.npy

with ``<variable>`` in ``dBZ`` (horizontal reflectivity ZH, dBZ), ``ZDR`` (differential reflectivity, dB) and
``KDP`` (specific differential phase, deg/km), ``<height>`` in ``1.0km``, ``3.0km``, ``7.0km``, and the rain
directory holding the rain rate (mm/h). One ``data_dir`` is one precipitation process; each frame is one square
float array, frames 6 minutes apart. The release is 256 x 256 pixels; any square grid is accepted (the shipped
synthetic corpus is 64 x 64, see ``docs/dualpol.md``).

Field keys: a radar variable at a height is named ``"<variable>@<height>"`` (e.g. ``"dBZ@1.0km"``), the rain
rate ``"rain"``.

Invalid values (the policy every reader path applies, see :func:`clean_frame`):

* NaN / +-inf become NaN (= missing) and stay NaN; scores and the networks' input filling treat them explicitly.
* Finite values outside the customary range (:data:`VALID_RANGES`) are clipped to the range
  (``out_of_range="clip"``, default: reflectivity below 0 dBZ is "no echo", and a few values above the top are
  saturations) or set to NaN (``out_of_range="mask"``).
* A frame whose finite values are all zero is *flagged* (``all_zero``), not removed: a dry frame is valid data,
  but a process made only of such frames is usually a hole in the archive; callers choose with
  ``skip_all_zero_targets``.
"""

from __future__ import annotations

import dataclasses
import re
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from prediff.errors import ConfigError, DataError

VARIABLES: tuple[str, ...] = ("dBZ", "ZDR", "KDP")
HEIGHTS: tuple[str, ...] = ("1.0km", "3.0km", "7.0km")
RAIN = "rain"
#: Customary normalisation ranges (physical units): ZH dBZ, ZDR dB, KDP deg/km, rain rate mm/h.
VALID_RANGES: dict[str, tuple[float, float]] = {"dBZ": (0.0, 65.0), "ZDR": (-1.0, 5.0), "KDP": (-1.0, 6.0),
                                                RAIN: (0.0, 200.0)}
UNITS: dict[str, str] = {"dBZ": "dBZ", "ZDR": "dB", "KDP": "deg/km", RAIN: "mm/h"}
RADAR_DIR = "NJU_CPOL_update2308"
RAIN_DIR = "NJU_CPOL_kdpRain"
#: Minutes between consecutive frames.
FRAME_MINUTES = 6
#: Processes customarily held out for testing (data_dir_000 ... data_dir_010).
DEFAULT_TEST_PROCESSES: tuple[int, ...] = tuple(range(11))
OUT_OF_RANGE_POLICIES = ("clip", "mask")

_PROCESS_PATTERN = re.compile(r"^data_dir_(\d+)$")
_FRAME_PATTERN = re.compile(r"^frame_(\d+)\.npy$")


def field_key(variable: str, height: str) -> str:
    """Return the field key ``"<variable>@<height>"`` after checking both names."""
    if variable not in VARIABLES:
        raise ConfigError(f"unknown dual-pol variable {variable!r}; choose from {', '.join(VARIABLES)}")
    if height not in HEIGHTS:
        raise ConfigError(f"unknown height {height!r}; choose from {', '.join(HEIGHTS)}")
    return f"{variable}@{height}"


def variable_of(key: str) -> str:
    """Return the variable name of a field key: ``"dBZ@1.0km"`` -> ``"dBZ"``, ``"rain"`` -> ``"rain"``."""
    variable = key.split("@", 1)[0]
    if variable not in VALID_RANGES:
        raise ConfigError(f"unknown field key {key!r}; write '<variable>@<height>' (e.g. 'dBZ@1.0km') or 'rain'")
    return variable


def process_name(process: int) -> str:
    """Directory name of a precipitation process: 7 -> ``"data_dir_007"``."""
    return f"data_dir_{int(process):03d}"


def frame_name(frame: int) -> str:
    """File name of a frame: 12 -> ``"frame_012.npy"``."""
    return f"frame_{int(frame):03d}.npy"


def field_directory(root: str | Path, key: str) -> Path:
    """Directory holding the ``data_dir_NNN`` folders of one field key under a dataset root."""
    root = Path(root)
    if key == RAIN:
        return root / RAIN_DIR
    variable, _, height = key.partition("@")
    field_key(variable, height)
    return root / RADAR_DIR / variable / height


def normalise(values: np.ndarray, variable: str) -> np.ndarray:
    """Map physical values to [0, 1] with the customary range of ``variable`` (values outside are clipped).

    Parameters
    ----------
    values : array, any shape, physical units of ``variable`` (dBZ, dB, deg/km or mm/h); NaN = missing.
    variable : ``"dBZ"``, ``"ZDR"``, ``"KDP"`` or ``"rain"`` (a field key such as ``"dBZ@1.0km"`` also works).

    Returns
    -------
    float32 array, same shape, in [0, 1]; NaN stays NaN.
    """
    low, high = VALID_RANGES[variable_of(variable)]
    scaled = (np.asarray(values, dtype=np.float32) - low) / (high - low)
    return np.clip(scaled, 0.0, 1.0)


def denormalise(values: np.ndarray, variable: str) -> np.ndarray:
    """Inverse of :func:`normalise`: [0, 1] -> physical units of ``variable`` (float32, NaN stays NaN)."""
    low, high = VALID_RANGES[variable_of(variable)]
    return np.asarray(values, dtype=np.float32) * (high - low) + low


def clean_frame(values: np.ndarray, variable: str, out_of_range: str = "clip") -> np.ndarray:
    """Apply the invalid-value policy to one frame (see the module docstring).

    Parameters
    ----------
    values : (H, W) or any shape, physical units of ``variable``.
    variable : ``"dBZ"``, ``"ZDR"``, ``"KDP"`` or ``"rain"``.
    out_of_range : ``"clip"`` (default) or ``"mask"`` (out-of-range values become NaN).

    Returns
    -------
    float32 array, same shape; NaN = missing.
    """
    if out_of_range not in OUT_OF_RANGE_POLICIES:
        raise ConfigError(f"out_of_range must be one of {OUT_OF_RANGE_POLICIES}, got {out_of_range!r}")
    low, high = VALID_RANGES[variable_of(variable)]
    frame = np.asarray(values, dtype=np.float32)
    frame = np.where(np.isfinite(frame), frame, np.float32(np.nan))
    if out_of_range == "clip":
        return np.clip(frame, low, high)
    with np.errstate(invalid="ignore"):
        outside = (frame < low) | (frame > high)
    return np.where(outside, np.float32(np.nan), frame)


@dataclasses.dataclass(frozen=True)
class FrameReport:
    """Quality of one stored frame.

    Attributes
    ----------
    key : field key, process : process index, frame : frame index.
    n_nonfinite : number of NaN / inf pixels; n_out_of_range : finite pixels outside :data:`VALID_RANGES`.
    all_zero : True when every finite pixel is exactly 0 (or none is finite).
    """

    key: str
    process: int
    frame: int
    n_nonfinite: int
    n_out_of_range: int
    all_zero: bool


@dataclasses.dataclass
class DualpolWindow:
    """One forecast window: ``n_input`` context frames followed by ``n_target`` frames of several fields.

    Attributes
    ----------
    process : process index (``data_dir_NNN``); start : index of the first frame.
    n_input : number of context frames.
    fields : field key -> (n_input + n_target, H, W) float32, physical units, NaN = missing.
    """

    process: int
    start: int
    n_input: int
    fields: dict[str, np.ndarray]

    def inputs(self, key: str) -> np.ndarray:
        """Context frames of ``key``: (n_input, H, W) float32, physical units."""
        return self.fields[key][: self.n_input]

    def targets(self, key: str) -> np.ndarray:
        """Target frames of ``key``: (n_target, H, W) float32, physical units."""
        return self.fields[key][self.n_input:]


def _indexed_entries(directory: Path, pattern: re.Pattern, want_dirs: bool) -> dict[int, Path]:
    entries = {}
    for path in directory.iterdir():
        match = pattern.match(path.name)
        if match and path.is_dir() == want_dirs:
            entries[int(match.group(1))] = path
    return entries


class NjuCpolDataset:
    """Lazy, windowed access to an NJU-CPOL tree (real or synthetic).

    Nothing is read at construction except directory listings; frames are loaded when a window or a frame is
    requested, and only for the requested fields.

    Parameters
    ----------
    root : dataset root holding ``NJU_CPOL_update2308/`` (and ``NJU_CPOL_kdpRain/`` when rain is used).
    keys : field keys to read, e.g. ``("dBZ@3.0km", "ZDR@3.0km", "KDP@3.0km", "rain")``.
    n_input, n_target : context and target frames per window (10 and 10 by default).
    stride : frames between the starts of consecutive windows of one process.
    processes : process indices to use (default: every ``data_dir`` of the first key).
    out_of_range : ``"clip"`` or ``"mask"``, see :func:`clean_frame`.
    skip_all_zero_targets : leave out windows whose target frames of the first key are all zero (dry windows).

    Raises
    ------
    DataError when a field directory, a process or a frame is missing, or frame counts differ between fields.
    """

    def __init__(self, root: str | Path, keys: Sequence[str] = ("dBZ@1.0km",), n_input: int = 10,
                 n_target: int = 10, stride: int = 10, processes: Iterable[int] | None = None,
                 out_of_range: str = "clip", skip_all_zero_targets: bool = False):
        self.root = Path(root)
        self.keys = tuple(keys)
        if not self.keys:
            raise ConfigError("give at least one field key, e.g. 'dBZ@1.0km'")
        for key in self.keys:
            variable_of(key)
        if n_input < 1 or n_target < 0 or stride < 1:
            raise ConfigError(f"need n_input >= 1, n_target >= 0 and stride >= 1, got {n_input}, {n_target}, "
                              f"{stride}")
        if out_of_range not in OUT_OF_RANGE_POLICIES:
            raise ConfigError(f"out_of_range must be one of {OUT_OF_RANGE_POLICIES}, got {out_of_range!r}")
        self.n_input, self.n_target, self.stride = int(n_input), int(n_target), int(stride)
        self.out_of_range = out_of_range
        self.skip_all_zero_targets = skip_all_zero_targets
        if not self.root.is_dir():
            raise DataError(f"dual-pol dataset root {self.root} does not exist; pass the folder holding "
                            f"{RADAR_DIR}/ (create a synthetic one with `prediff dualpol demo --out DIR`)")
        for key in self.keys:
            directory = field_directory(self.root, key)
            if not directory.is_dir():
                raise DataError(f"field {key!r} is missing: no folder {directory}; check the variable / height "
                                f"names ({', '.join(VARIABLES)} at {', '.join(HEIGHTS)}) or drop the field")
        available = sorted(_indexed_entries(field_directory(self.root, self.keys[0]), _PROCESS_PATTERN, True))
        if processes is None:
            self.processes = available
        else:
            self.processes = sorted(int(p) for p in processes)
            absent = sorted(set(self.processes) - set(available))
            if absent:
                raise DataError(f"process(es) {', '.join(process_name(p) for p in absent)} not found under "
                                f"{field_directory(self.root, self.keys[0])}; available: {len(available)} "
                                "processes")
        if not self.processes:
            raise DataError(f"no data_dir_NNN folders under {field_directory(self.root, self.keys[0])}")
        self._frame_counts: dict[int, int] = {}
        # file of each frame as found on disk (frame numbers may be zero-padded to any width)
        self._frame_paths: dict[tuple[str, int], dict[int, Path]] = {}

    def frame_count(self, process: int) -> int:
        """Number of frames of a process, checked to be the same contiguous ``0..n-1`` set for every field."""
        if process in self._frame_counts:
            return self._frame_counts[process]
        counts = {}
        for key in self.keys:
            directory = field_directory(self.root, key) / process_name(process)
            if not directory.is_dir():
                raise DataError(f"field {key!r} has no folder {directory}; every field needs the same processes")
            self._frame_paths[key, process] = _indexed_entries(directory, _FRAME_PATTERN, False)
            frames = sorted(self._frame_paths[key, process])
            if not frames:
                raise DataError(f"{directory} holds no frame_MMM.npy files")
            gaps = sorted(set(range(frames[-1] + 1)) - set(frames))
            if gaps:
                raise DataError(f"{directory} is missing frame(s) {', '.join(frame_name(g) for g in gaps[:5])}"
                                f"{' ...' if len(gaps) > 5 else ''}; frames must be numbered 0..n-1 without "
                                "holes (restore the files or drop the process)")
            counts[key] = len(frames)
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{key}: {count}" for key, count in counts.items())
            raise DataError(f"{process_name(process)} has different frame counts per field ({detail}); every "
                            "variable, height and the rain rate must hold the same frames")
        self._frame_counts[process] = next(iter(counts.values()))
        return self._frame_counts[process]

    def read_frame(self, key: str, process: int, frame: int) -> np.ndarray:
        """Read one frame: (H, W) float32 in the physical units of ``key``, invalid values per the policy."""
        return clean_frame(self._load(key, process, frame), variable_of(key), self.out_of_range)

    def _load(self, key: str, process: int, frame: int) -> np.ndarray:
        """The stored (H, W) array of one frame, as written (no cleaning)."""
        self.frame_count(process)
        path = self._frame_paths.get((key, process), {}).get(frame)
        if path is None:
            path = field_directory(self.root, key) / process_name(process) / frame_name(frame)
        if not path.is_file():
            raise DataError(f"frame file {path} is missing; restore it or drop {process_name(process)}")
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read {path} as a .npy array ({error}); the file is corrupt") from None
        if values.ndim != 2 or values.shape[0] != values.shape[1] or values.dtype.kind not in "fiu":
            raise DataError(f"{path} holds a {values.dtype} array of shape {values.shape}; expected one square "
                            "(H, W) float frame")
        return values

    def read_frames(self, key: str, process: int, start: int, stop: int) -> np.ndarray:
        """Read frames ``start..stop-1`` of one field: (stop - start, H, W) float32, physical units."""
        count = self.frame_count(process)
        if not 0 <= start < stop <= count:
            raise DataError(f"frames {start}..{stop - 1} are outside {process_name(process)} (it has {count} "
                            "frames)")
        frames = [self.read_frame(key, process, f) for f in range(start, stop)]
        shapes = {frame.shape for frame in frames}
        if len(shapes) > 1:
            raise DataError(f"{key} frames of {process_name(process)} have different shapes {sorted(shapes)}")
        return np.stack(frames)

    def frame_report(self, key: str, process: int, frame: int) -> FrameReport:
        """Quality of one stored frame (before the invalid-value policy is applied)."""
        raw = np.asarray(self._load(key, process, frame), dtype=np.float64)
        finite = np.isfinite(raw)
        low, high = VALID_RANGES[variable_of(key)]
        values = raw[finite]
        return FrameReport(key=key, process=int(process), frame=int(frame), n_nonfinite=int((~finite).sum()),
                           n_out_of_range=int(((values < low) | (values > high)).sum()),
                           all_zero=bool(np.all(values == 0.0)))

    def scan(self) -> list[FrameReport]:
        """Report every frame of every field and process that has non-finite, out-of-range or all-zero values."""
        problems = []
        for process in self.processes:
            for key in self.keys:
                for frame in range(self.frame_count(process)):
                    report = self.frame_report(key, process, frame)
                    if report.n_nonfinite or report.n_out_of_range or report.all_zero:
                        problems.append(report)
        return problems

    @cached_property
    def window_index(self) -> list[tuple[int, int]]:
        """(process, start frame) of every window, in process order."""
        length = self.n_input + self.n_target
        index = []
        for process in self.processes:
            for start in range(0, self.frame_count(process) - length + 1, self.stride):
                if self.skip_all_zero_targets and self._targets_all_zero(process, start):
                    continue
                index.append((process, start))
        return index

    def _targets_all_zero(self, process: int, start: int) -> bool:
        first_target = start + self.n_input
        return all(self.frame_report(self.keys[0], process, f).all_zero
                   for f in range(first_target, first_target + self.n_target))

    def __len__(self) -> int:
        return len(self.window_index)

    def __getitem__(self, index: int) -> DualpolWindow:
        """Read window ``index`` (every field of :attr:`keys`)."""
        return self.window(index)

    def window(self, index: int, keys: Sequence[str] | None = None) -> DualpolWindow:
        """Read window ``index`` for ``keys`` (default every key of the dataset)."""
        if not 0 <= index < len(self):
            raise DataError(f"window {index} does not exist; the dataset has {len(self)} windows")
        process, start = self.window_index[index]
        stop = start + self.n_input + self.n_target
        fields = {key: self.read_frames(key, process, start, stop) for key in (keys or self.keys)}
        return DualpolWindow(process=process, start=start, n_input=self.n_input, fields=fields)


def split_processes(processes: Iterable[int], test_processes: Iterable[int] = DEFAULT_TEST_PROCESSES
                    ) -> tuple[list[int], list[int]]:
    """Split process indices into (train, test); by convention data_dir_000-010 are the test split."""
    test_set = {int(p) for p in test_processes}
    processes = sorted(int(p) for p in processes)
    return [p for p in processes if p not in test_set], [p for p in processes if p in test_set]


def list_processes(root: str | Path, key: str = "dBZ@1.0km") -> list[int]:
    """Process indices present for ``key`` under a dataset root (sorted)."""
    directory = field_directory(root, key)
    if not directory.is_dir():
        raise DataError(f"no folder {directory}; is {root} an NJU-CPOL root?")
    return sorted(_indexed_entries(directory, _PROCESS_PATTERN, True))


def load_frames(root: str | Path, keys: Iterable[str], processes: Iterable[int], out_of_range: str = "clip",
                frame_step: int = 1) -> dict[str, np.ndarray]:
    """Read every ``frame_step``-th frame of the given processes for several fields (pixel-wise analyses, QPE).

    Returns
    -------
    dict key -> (N, H, W) float32 in physical units (N frames over all processes, same order for every key).
    """
    keys = tuple(keys)
    if frame_step < 1:
        raise ConfigError(f"frame_step must be >= 1, got {frame_step}")
    dataset = NjuCpolDataset(root, keys=keys, n_input=1, n_target=0, processes=processes, out_of_range=out_of_range)
    frames: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    for process in dataset.processes:
        count = dataset.frame_count(process)
        for key in keys:
            frames[key].extend(dataset.read_frame(key, process, f) for f in range(0, count, frame_step))
    return {key: np.stack(values) for key, values in frames.items()}
