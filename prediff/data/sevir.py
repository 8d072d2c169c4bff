"""Lazy reader of a SEVIR / SEVIR-LR tree: events, frame times, grids and forecast windows.

Frames come out **time-first**, (T, H, W) uint8 VIL pixels (255 = missing), although the HDF5 files store
(N, H, W, T). Each read opens the HDF5 file, reads one event (or one window) and closes it, so no file handle
outlives a call and the object can be shared between threads (e.g. Streamlit sessions).

Windows follow MindEarth PreDiff's ``sample_mode "sequent"``: length ``context + target`` (7 + 6 = 13),
starting every ``stride`` (6) frames while the window fits, so a 25-frame SEVIR-LR event gives windows
starting at frames 0, 6 and 12 and a 49-frame SEVIR event gives 7 windows.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from prediff.data.catalog import Selection, read_catalog, select_events
from prediff.data.geo import Grid, grid_from_corners
from prediff.data.layout import MISSING_PIXEL
from prediff.errors import DataError


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """How events are cut into forecast windows.

    Attributes
    ----------
    context : number of observed (input) frames, 7 in PreDiff.
    target : number of frames to forecast, 6 in PreDiff.
    stride : frames between the starts of consecutive windows, 6 in PreDiff.
    """

    context: int = 7
    target: int = 6
    stride: int = 6

    def __post_init__(self):
        if self.context < 1 or self.target < 0 or self.stride < 1:
            raise DataError(f"invalid window: context={self.context}, target={self.target}, stride={self.stride}; "
                            "context and stride must be >= 1 and target >= 0")

    @property
    def length(self) -> int:
        """Frames per window, context + target."""
        return self.context + self.target

    def starts(self, frames: int) -> list[int]:
        """First frame of every window that fits in an event of ``frames`` frames."""
        return list(range(0, frames - self.length + 1, self.stride))


@dataclasses.dataclass(frozen=True)
class _FileLayout:
    events: int
    height: int
    width: int
    frames: int
    has_id: bool


class SevirDataset:
    """Events of a SEVIR-format tree (``CATALOG.csv`` + ``data/<file_name>``), read lazily.

    Parameters
    ----------
    root : dataset folder holding ``CATALOG.csv`` and ``data/``.
    split : "train", "val", "test" (by date, see :class:`prediff.data.catalog.SplitDates`) or None for all.
    selection : event selection and filters; the default is MindEarth's (complete VIL events, unique ids).
    window : context / target / stride of the forecast windows.

    Attributes
    ----------
    root, split, selection, window : as given (``root`` as a Path).
    catalog : pd.DataFrame, the selected catalog rows, one per event, ordered by id (see
        :func:`prediff.data.catalog.select_events`).

    Raises
    ------
    DataError : the root or catalog is missing, the catalog is malformed, or a selected event's HDF5 file is
        absent.

    Notes
    -----
    Any number of frames T and any square size H = W are accepted; T and H, W come from each HDF5 file,
    not from the catalog (SEVIR-LR catalogs may still describe the 384x384 SEVIR patches).
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None, selection: Selection = Selection(),
                 window: WindowSpec = WindowSpec()):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"the dataset folder {self.root} does not exist; download SEVIR-LR with "
                            "`prediff data download sevir-lr --out DIR`, create the demo corpus with "
                            "`prediff data demo`, or pass the right --data folder")
        self.split = split
        self.selection = selection
        self.window = window
        self.catalog = select_events(read_catalog(self.root), selection, split)
        self._rows = {event_id: index for index, event_id in enumerate(self.catalog["id"])}
        self._layouts: dict[str, _FileLayout] = {}
        self._lock = threading.Lock()
        self._windows: list[tuple[str, int]] | None = None
        missing = sorted({name for name in self.catalog["file_name"] if not self._path(name).is_file()})
        if missing:
            shown = ", ".join(str(self._path(name)) for name in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise DataError(f"the catalog refers to HDF5 file(s) that are not there: {shown}{more}; "
                            "the download or copy is incomplete — fetch the missing files, or remove their rows "
                            "from CATALOG.csv")

    # --- catalog --------------------------------------------------------------------------------------

    @property
    def event_ids(self) -> list[str]:
        """Ids of the selected events, ordered by id string."""
        return list(self._rows)

    def row(self, event_id: str) -> pd.Series:
        """The catalog row of ``event_id`` (all 21 columns)."""
        index = self._rows.get(str(event_id))
        if index is None:
            split = f" in the {self.split} split" if self.split else ""
            option = f" --split {self.split}" if self.split else ""
            raise DataError(f"unknown event id {event_id!r}{split} of {self.root}; list the available ids with "
                            f"`prediff events --data {self.root}{option}`")
        return self.catalog.iloc[index]

    # --- files ----------------------------------------------------------------------------------------

    def _path(self, file_name: str) -> Path:
        return self.root / "data" / file_name

    def _layout(self, file_name: str) -> _FileLayout:
        with self._lock:
            cached = self._layouts.get(file_name)
        if cached is not None:
            return cached
        path = self._path(file_name)
        with self._open(path) as handle:
            try:
                layout = self._inspect(handle, path)
            except OSError as error:
                raise DataError(f"cannot read {path} as HDF5 ({error}); the file is corrupt or truncated — "
                                "download or copy it again") from None
        with self._lock:
            self._layouts[file_name] = layout
        return layout

    @staticmethod
    def _inspect(handle, path: Path) -> _FileLayout:
        if "vil" not in handle:
            raise DataError(f"{path} has no 'vil' dataset (it holds {', '.join(handle.keys()) or 'nothing'}); "
                            "it is not a SEVIR VIL file — check the catalog's file_name column")
        vil = handle["vil"]
        if vil.ndim != 4 or vil.shape[1] != vil.shape[2] or vil.shape[3] < 1:
            raise DataError(f"{path}: 'vil' has shape {vil.shape}, expected (N, H, W, T) with H = W; "
                            "rewrite the file in the SEVIR layout (prediff.data.layout.write_sevir_tree)")
        if not (np.issubdtype(vil.dtype, np.integer) or np.issubdtype(vil.dtype, np.floating)):
            raise DataError(f"{path}: 'vil' has dtype {vil.dtype}, expected uint8 VIL pixels; rewrite the "
                            "file with prediff.data.layout.write_sevir_tree")
        return _FileLayout(events=vil.shape[0], height=vil.shape[1], width=vil.shape[2], frames=vil.shape[3],
                           has_id="id" in handle)

    @staticmethod
    def _open(path: Path):
        import h5py

        if not path.is_file():
            raise DataError(f"{path} is missing; the download or copy is incomplete — fetch it again")
        try:
            return h5py.File(path, "r")
        except OSError as error:
            raise DataError(f"cannot open {path} as HDF5 ({error}); the file is corrupt or truncated — "
                            "download or copy it again") from None

    def _locate(self, event_id: str) -> tuple[pd.Series, Path, _FileLayout]:
        row = self.row(event_id)
        layout = self._layout(row["file_name"])
        path = self._path(row["file_name"])
        if not 0 <= int(row["file_index"]) < layout.events:
            raise DataError(f"event {event_id}: file_index {int(row['file_index'])} is out of range for {path}, "
                            f"which holds {layout.events} events; the catalog does not belong to this file — "
                            "restore the matching CATALOG.csv")
        return row, path, layout

    def _read(self, event_id: str, frames: slice) -> np.ndarray:
        row, path, layout = self._locate(event_id)
        index = int(row["file_index"])
        with self._open(path) as handle:
            try:
                if layout.has_id:
                    stored = handle["id"][index]
                    stored = stored.decode() if isinstance(stored, bytes) else str(stored)
                    if stored != event_id:
                        raise DataError(f"{path}: event {index} is {stored!r}, but the catalog says {event_id!r}; "
                                        "the catalog does not belong to this file — restore the matching CATALOG.csv")
                block = handle["vil"][index, :, :, frames]
            except OSError as error:
                raise DataError(f"cannot read event {event_id} from {path} ({error}); the file is corrupt or "
                                "truncated — download or copy it again") from None
        if block.dtype != np.uint8:
            block = self._as_pixels(block, path)
        return np.ascontiguousarray(np.moveaxis(block, -1, 0))

    @staticmethod
    def _as_pixels(block: np.ndarray, path: Path) -> np.ndarray:
        # some converted trees store VIL pixels as float or wider ints; accept them only if they are pixels
        finite = np.isfinite(block) if np.issubdtype(block.dtype, np.floating) else np.ones(block.shape, bool)
        values = np.where(finite, block, MISSING_PIXEL)
        if values.min() < 0 or values.max() > MISSING_PIXEL or not np.array_equal(values, np.round(values)):
            raise DataError(f"{path}: 'vil' ({block.dtype}) holds values that are not VIL pixels 0-255; convert "
                            "the data to uint8 VIL pixels (prediff.data.vil.kg_m2_to_vil_pixels for kg m-2)")
        return values.astype(np.uint8)

    # --- events ---------------------------------------------------------------------------------------

    def read_event(self, event_id: str) -> np.ndarray:
        """All frames of one event.

        Returns
        -------
        np.ndarray, (T, H, W) uint8 VIL pixels, row 0 = south, 255 = missing.
        """
        return self._read(str(event_id), slice(None))

    def event_shape(self, event_id: str) -> tuple[int, int, int]:
        """(T, H, W) of the event as stored in its HDF5 file, without reading the pixels."""
        layout = self._locate(str(event_id))[2]
        return (layout.frames, layout.height, layout.width)

    def frame_times(self, event_id: str) -> np.ndarray:
        """Valid time of every frame: ``time_utc`` + ``minute_offsets``.

        When the catalog lists more offsets than the file has frames (a SEVIR catalog beside temporally
        downsampled files), the offsets are thinned evenly to the frame count.

        Returns
        -------
        np.ndarray, (T,) datetime64[ns], UTC.
        """
        row, path, layout = self._locate(str(event_id))
        offsets = _parse_offsets(row["minute_offsets"], event_id)
        frames = layout.frames
        if offsets.size != frames:
            step = (offsets.size - 1) // (frames - 1) if frames > 1 else 0
            if frames == 1 or step < 1 or (frames - 1) * step != offsets.size - 1:
                raise DataError(f"event {event_id}: the catalog lists {offsets.size} minute_offsets but {path} has "
                                f"{frames} frames; fix the minute_offsets column")
            offsets = offsets[::step]
        base = np.datetime64(pd.Timestamp(row["time_utc"]).to_datetime64(), "ns")
        return base + offsets.astype("timedelta64[m]").astype("timedelta64[ns]")

    def grid(self, event_id: str) -> Grid:
        """Georeferencing of the event's patch (pixel-centre x/y in its projection; row 0 = south)."""
        row, _, layout = self._locate(str(event_id))
        return grid_from_corners(str(row["proj"]), float(row["llcrnrlat"]), float(row["llcrnrlon"]),
                                 float(row["urcrnrlat"]), float(row["urcrnrlon"]), layout.height, layout.width)

    # --- windows --------------------------------------------------------------------------------------

    def window_starts(self, event_id: str) -> list[int]:
        """First frame index of every window of the event (e.g. [0, 6, 12] for SEVIR-LR)."""
        return self.window.starts(self.event_shape(event_id)[0])

    def read_window(self, event_id: str, k: int) -> np.ndarray:
        """Window ``k`` of the event: frames ``starts[k] .. starts[k] + L - 1``.

        Returns
        -------
        np.ndarray, (L, H, W) uint8 VIL pixels with L = context + target; the first ``window.context`` frames
        are the observations, the rest the target.
        """
        event_id = str(event_id)
        starts = self.window_starts(event_id)
        if not 0 <= k < len(starts):
            raise DataError(f"event {event_id} has {len(starts)} window(s) of {self.window.length} frames; "
                            f"window {k} does not exist — choose 0..{len(starts) - 1}")
        return self._read(event_id, slice(starts[k], starts[k] + self.window.length))

    def windows(self) -> list[tuple[str, int]]:
        """Every (event_id, k) window of the selected events, events in id order."""
        if self._windows is None:
            self._windows = [(event_id, k) for event_id in self._rows
                             for k in range(len(self.window_starts(event_id)))]
        return list(self._windows)

    def __len__(self) -> int:
        """Number of windows (MindEarth's dataset length: windows per event x events)."""
        return len(self.windows())

    def __repr__(self) -> str:
        split = self.split or "all"
        return f"SevirDataset({str(self.root)!r}, split={split}, events={len(self._rows)})"


def _parse_offsets(text, event_id: str) -> np.ndarray:
    try:
        return np.array([int(float(part)) for part in str(text).split(":") if part.strip() != ""], dtype=np.int64)
    except ValueError:
        raise DataError(f"event {event_id}: minute_offsets {text!r} is not a ':'-separated list of minutes, "
                        "e.g. '-120:-115:...:120'; fix the catalog") from None
