"""The published SEVIR / SEVIR-LR on-disk layout, and a writer for it.

A SEVIR tree is::

    <root>/CATALOG.csv
    <root>/data/<file_name>            e.g. vil/2019/SEVIR_VIL_STORMEVENTS_2019_0101_0630.h5

Each HDF5 file holds ``vil``: (N, H, W, T) uint8 VIL pixels (255 = missing) and, in SEVIR (not always in
SEVIR-LR), ``id``: (N,) byte strings. Catalog row ``file_index`` addresses the first axis.

* SEVIR:    H = W = 384 (1 km), T = 49 frames, 5 min apart, minute_offsets -120 ... +120.
* SEVIR-LR: H = W = 128 (3 km), T = 25 frames, 10 min apart (every second SEVIR frame, 3x3 block max).

The demo corpus, radar import and the SEVIR -> SEVIR-LR downsampler all write through
:func:`write_sevir_tree`, so every reader path sees one format.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from prediff.io_utils import atomic_path

#: Catalog columns in the published order, with the dtype each is parsed to.
CATALOG_COLUMNS: dict[str, str] = {
    "id": "string",
    "file_name": "string",
    "file_index": "int64",
    "img_type": "string",
    "time_utc": "datetime64[ns]",
    "minute_offsets": "string",
    "episode_id": "Int64",
    "event_id": "Int64",
    "event_type": "string",
    "llcrnrlat": "float64",
    "llcrnrlon": "float64",
    "urcrnrlat": "float64",
    "urcrnrlon": "float64",
    "proj": "string",
    "size_x": "int64",
    "size_y": "int64",
    "height_m": "float64",
    "width_m": "float64",
    "data_min": "float64",
    "data_max": "float64",
    "pct_missing": "float64",
}

MISSING_PIXEL = 255


@dataclasses.dataclass
class EventRecord:
    """One event to be written: its VIL movie and its catalog metadata.

    Attributes
    ----------
    id : catalog id, e.g. ``"S728503"`` (storm event) or ``"R18032505027884"`` (random event).
    time_utc : time of the event's reference frame (minute offset 0), timezone-naive UTC, as in SEVIR.
    vil : (H, W, T) uint8 VIL pixels, row 0 = south (see :mod:`prediff.data.geo`), 255 = missing; or a
        zero-argument callable returning them, called once when the event is written (lets a converter
        stream a large tree through :func:`write_sevir_tree` without holding it in memory).
    minute_offsets : (T,) int minutes of each frame relative to ``time_utc``.
    llcrnrlat, llcrnrlon, urcrnrlat, urcrnrlon : outer corners of the patch in degrees.
    proj : PROJ string of the patch's projection.
    width_m, height_m : patch size in metres.
    event_type : NOAA Storm Events type ("Thunderstorm Wind", "Hail", ...), empty for random events.
    episode_id, event_id : NOAA Storm Events ids, None for random events.
    """

    id: str
    time_utc: pd.Timestamp
    vil: np.ndarray
    minute_offsets: Sequence[int]
    llcrnrlat: float
    llcrnrlon: float
    urcrnrlat: float
    urcrnrlon: float
    proj: str
    width_m: float
    height_m: float
    event_type: str = ""
    episode_id: int | None = None
    event_id: int | None = None


def _file_name_for(event: EventRecord) -> str:
    time = pd.Timestamp(event.time_utc)
    half = "0101_0630" if time.month <= 6 else "0701_1231"
    kind = "STORMEVENTS" if event.event_type else "RANDOMEVENTS"
    return f"vil/{time.year}/SEVIR_VIL_{kind}_{time.year}_{half}.h5"


def _catalog_row(event: EventRecord, vil: np.ndarray, file_name: str, file_index: int) -> dict:
    valid = vil[vil != MISSING_PIXEL]
    return {
        "id": event.id,
        "file_name": file_name,
        "file_index": file_index,
        "img_type": "vil",
        "time_utc": pd.Timestamp(event.time_utc).strftime("%Y-%m-%d %H:%M:%S"),
        "minute_offsets": ":".join(str(int(m)) for m in event.minute_offsets),
        "episode_id": event.episode_id,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "llcrnrlat": event.llcrnrlat,
        "llcrnrlon": event.llcrnrlon,
        "urcrnrlat": event.urcrnrlat,
        "urcrnrlon": event.urcrnrlon,
        "proj": event.proj,
        "size_x": vil.shape[1],
        "size_y": vil.shape[0],
        "height_m": event.height_m,
        "width_m": event.width_m,
        "data_min": float(valid.min()) if valid.size else np.nan,
        "data_max": float(valid.max()) if valid.size else np.nan,
        "pct_missing": 100.0 * float((vil == MISSING_PIXEL).mean()),
    }


def write_sevir_tree(root: str | Path, events: Sequence[EventRecord], include_id_dataset: bool = True,
                     compression_level: int = 4, shape: tuple[int, int, int] | None = None) -> Path:
    """Write ``events`` as a SEVIR-format tree under ``root`` (CATALOG.csv + data/vil/YYYY/*.h5).

    Files are grouped as SEVIR groups them (year, half-year, storm vs random events). Every file, the
    catalog last, is written to a temporary name and renamed, so an interrupted run leaves no partial file.
    Writing is deterministic: the same events give byte-identical HDF5 files and catalog.

    Parameters
    ----------
    root : output directory (created).
    events : events to write; all must share one (H, W, T) shape.
    include_id_dataset : write the ``id`` dataset (SEVIR has it; SEVIR-LR files may not).
    compression_level : gzip level of the ``vil`` dataset (chunked per event).
    shape : (H, W, T) of every event; required when events carry a callable ``vil`` (their arrays are then
        checked against it as they are written), else taken from the arrays.

    Returns
    -------
    The root directory.
    """
    import h5py

    root = Path(root)
    if shape is None:
        shapes = {tuple(event.vil.shape) for event in events}
        if len(shapes) != 1:
            raise ValueError(f"all events must share one (H, W, T) shape, got {sorted(shapes)}")
        (shape,) = shapes
    height, width, steps = shape
    by_file: dict[str, list[EventRecord]] = defaultdict(list)
    for event in events:
        by_file[_file_name_for(event)].append(event)
    rows = []
    for file_name in sorted(by_file):
        group = by_file[file_name]
        target = root / "data" / file_name
        with atomic_path(target) as temporary:
            # track_order/fixed times keep the file bytes independent of when it was written
            with h5py.File(temporary, "w", track_order=False, libver="earliest") as handle:
                vil = handle.create_dataset("vil", shape=(len(group), height, width, steps), dtype="uint8",
                                            chunks=(1, height, width, steps), compression="gzip",
                                            compression_opts=compression_level, track_times=False)
                for index, event in enumerate(group):
                    movie = np.asarray(event.vil() if callable(event.vil) else event.vil, dtype=np.uint8)
                    if movie.shape != tuple(shape):
                        raise ValueError(f"event {event.id} has shape {movie.shape}, expected {tuple(shape)}")
                    vil[index] = movie
                    rows.append(_catalog_row(event, movie, file_name, index))
                if include_id_dataset:
                    handle.create_dataset("id", data=np.array([e.id.encode() for e in group]), track_times=False)
    catalog = pd.DataFrame(rows, columns=list(CATALOG_COLUMNS))
    with atomic_path(root / "CATALOG.csv") as temporary:
        catalog.to_csv(temporary, index=False)
    return root
