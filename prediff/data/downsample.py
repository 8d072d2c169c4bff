"""SEVIR (384 x 384 x 49 frames @ 5 min) -> SEVIR-LR (128 x 128 x 25 frames @ 10 min).

Space: the maximum over each 3 x 3 pixel block (keeps storm cores, as SEVIR-LR does), ignoring missing
pixels (255); a block with only missing pixels stays missing. Time: every second frame starting with the
first, so minute offsets -120, -110, ..., +120. The result is written through
:func:`prediff.data.layout.write_sevir_tree`; catalog rows keep their metadata (corners, projection, patch
size in metres, NOAA ids and type) with sizes, minute offsets and statistics recomputed.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from prediff.data.catalog import Selection
from prediff.data.layout import MISSING_PIXEL, EventRecord, write_sevir_tree
from prediff.data.sevir import SevirDataset
from prediff.errors import DataError


def block_max(frames: np.ndarray, factor: int = 3) -> np.ndarray:
    """Spatial downsampling by the maximum over ``factor`` x ``factor`` blocks, ignoring missing pixels.

    Parameters
    ----------
    frames : (..., H, W) uint8 VIL pixels, 255 = missing; H and W divisible by ``factor``.
    factor : block edge in pixels.

    Returns
    -------
    np.ndarray, (..., H // factor, W // factor) uint8 VIL pixels; 255 only where the whole block is missing.
    """
    frames = np.asarray(frames)
    height, width = frames.shape[-2:]
    if height % factor or width % factor:
        raise DataError(f"frames of {height} x {width} pixels cannot be cut into {factor} x {factor} blocks; "
                        f"the source must be SEVIR's 384 x 384 patches (or any size divisible by {factor})")
    # missing becomes -1 so it never wins a max against a valid pixel, and marks all-missing blocks
    values = np.where(frames == MISSING_PIXEL, -1, frames.astype(np.int16))
    blocks = values.reshape(*frames.shape[:-2], height // factor, factor, width // factor, factor)
    reduced = blocks.max(axis=(-3, -1))
    return np.where(reduced < 0, MISSING_PIXEL, reduced).astype(np.uint8)


def downsample_event(vil: np.ndarray, spatial_factor: int = 3, temporal_factor: int = 2) -> np.ndarray:
    """One SEVIR event as SEVIR-LR.

    Parameters
    ----------
    vil : (T, H, W) uint8 VIL pixels (time-first, as :class:`SevirDataset` returns), 255 = missing.
    spatial_factor : block edge of the block maximum.
    temporal_factor : keep every ``temporal_factor``-th frame, starting with the first.

    Returns
    -------
    np.ndarray, (ceil(T / temporal_factor), H // spatial_factor, W // spatial_factor) uint8 VIL pixels.
    """
    return block_max(np.asarray(vil)[::temporal_factor], spatial_factor)


def downsample_tree(source: str | os.PathLike, destination: str | os.PathLike, spatial_factor: int = 3,
                    temporal_factor: int = 2, include_id_dataset: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> Path:
    """Convert a SEVIR tree into a SEVIR-LR tree, one event in memory at a time.

    Every VIL event with a unique id is converted, including events with missing pixels (the
    ``pct_missing == 0`` selection is applied when reading, not here).

    Parameters
    ----------
    source : SEVIR root (``CATALOG.csv`` + ``data/``).
    destination : output root (created; its ``CATALOG.csv`` and files are replaced).
    spatial_factor, temporal_factor : see :func:`downsample_event`.
    include_id_dataset : write the ``id`` dataset into the HDF5 files (SEVIR-LR files lack it).
    progress : called as ``progress(done, total)`` after each event is converted.

    Returns
    -------
    The destination root.
    """
    if Path(source).expanduser().resolve() == Path(destination).expanduser().resolve():
        raise DataError(f"source and destination are both {source}; write SEVIR-LR into a new folder")
    dataset = SevirDataset(source, selection=Selection(require_complete=False))
    event_ids = dataset.event_ids
    if not event_ids:
        raise DataError(f"{source} holds no VIL events to downsample; check its CATALOG.csv")
    shapes = {dataset.event_shape(event_id) for event_id in event_ids}
    if len(shapes) != 1:
        raise DataError(f"the events of {source} do not share one size (T, H, W): {sorted(shapes)}; "
                        "downsample each size into its own tree")
    (frames, height, width), = shapes
    if height % spatial_factor or width % spatial_factor:
        raise DataError(f"{height} x {width} frames cannot be cut into {spatial_factor} x {spatial_factor} blocks; "
                        f"the source must be SEVIR's 384 x 384 patches (or any size divisible by {spatial_factor})")
    shape = (height // spatial_factor, width // spatial_factor, len(range(0, frames, temporal_factor)))
    done = 0

    def load(event_id: str) -> np.ndarray:
        nonlocal done
        movie = downsample_event(dataset.read_event(event_id), spatial_factor, temporal_factor)
        done += 1
        if progress is not None:
            progress(done, len(event_ids))
        return np.moveaxis(movie, 0, -1)

    records = [_record(dataset, event_id, functools.partial(load, event_id), temporal_factor)
               for event_id in event_ids]
    return write_sevir_tree(destination, records, include_id_dataset=include_id_dataset, shape=shape)


def _record(dataset: SevirDataset, event_id: str, load: Callable[[], np.ndarray], temporal_factor: int) -> EventRecord:
    """The output record of one event: source metadata, thinned minute offsets and a deferred VIL loader."""
    row = dataset.row(event_id)
    time_utc = pd.Timestamp(row["time_utc"])
    offsets = (dataset.frame_times(event_id) - time_utc.to_datetime64()) // np.timedelta64(1, "m")
    return EventRecord(
        id=event_id, time_utc=time_utc, vil=load, minute_offsets=[int(m) for m in offsets[::temporal_factor]],
        llcrnrlat=float(row["llcrnrlat"]), llcrnrlon=float(row["llcrnrlon"]),
        urcrnrlat=float(row["urcrnrlat"]), urcrnrlon=float(row["urcrnrlon"]), proj=str(row["proj"]),
        width_m=float(row["width_m"]), height_m=float(row["height_m"]),
        event_type=str(row["event_type"]) if pd.notna(row["event_type"]) else "",
        episode_id=None if pd.isna(row["episode_id"]) else int(row["episode_id"]),
        event_id=None if pd.isna(row["event_id"]) else int(row["event_id"]),
    )
