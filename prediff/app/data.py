"""Cached data access for the app: opened datasets in ``st.cache_resource``, arrays in ``st.cache_data``.

Cache keys include the catalog's modification time, so a dataset that is (re)written while the app runs
(e.g. the demo corpus being generated) is reopened instead of served stale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from prediff.app.events import event_table
from prediff.app.state import DataSource
from prediff.data.catalog import Selection, catalog_path, read_catalog
from prediff.data.geo import Grid
from prediff.data.sevir import SevirDataset
from prediff.errors import DataError


def _catalog_stamp(root: Path) -> float:
    path = catalog_path(root)
    if not root.is_dir():
        raise DataError(f"the dataset folder {root} does not exist; enter an existing folder in the sidebar "
                        "(it must hold CATALOG.csv and data/), or choose the demo storm corpus")
    if not path.is_file():
        raise DataError(f"{root} has no CATALOG.csv, so it is not a SEVIR-format dataset; point the sidebar at the "
                        "folder that holds CATALOG.csv and data/ (create one with `prediff data demo`, "
                        "`prediff data download sevir-lr` or `prediff data import`)")
    return path.stat().st_mtime


@st.cache_resource(show_spinner="Opening the dataset ...", max_entries=8)
def _open(root: str, require_complete: bool, stamp: float) -> SevirDataset:
    return SevirDataset(root, selection=Selection(require_complete=require_complete))


def open_dataset(source: DataSource) -> SevirDataset:
    """The :class:`SevirDataset` of ``source`` (all splits), shared by every session.

    Raises
    ------
    DataError : missing folder or catalog, malformed catalog, missing HDF5 files.
    """
    stamp = _catalog_stamp(source.root)
    return _open(str(source.root), source.require_complete, stamp)


@st.cache_data(show_spinner=False, max_entries=8)
def _table(root: str, require_complete: bool, stamp: float) -> pd.DataFrame:
    return event_table(_open(root, require_complete, stamp).catalog)


def events_table(source: DataSource) -> pd.DataFrame:
    """The browser table of ``source``'s events (see :func:`prediff.app.events.event_table`)."""
    stamp = _catalog_stamp(source.root)
    return _table(str(source.root), source.require_complete, stamp)


@st.cache_data(show_spinner=False, max_entries=8)
def _incomplete(root: str, require_complete: bool, stamp: float) -> int:
    if not require_complete:
        return 0
    catalog = read_catalog(root)
    vil = catalog[catalog["img_type"] == "vil"]
    return int(vil.loc[vil["pct_missing"] > 0, "id"].nunique())


def incomplete_event_count(source: DataSource) -> int:
    """Number of VIL events of the catalog left out because they have missing pixels (0 when ``source`` keeps
    them)."""
    return _incomplete(str(source.root), source.require_complete, _catalog_stamp(source.root))


@st.cache_data(show_spinner="Reading the event ...", max_entries=32)
def _event(root: str, require_complete: bool, stamp: float, event_id: str):
    dataset = _open(root, require_complete, stamp)
    return dataset.read_event(event_id), dataset.frame_times(event_id), dataset.grid(event_id)


def load_event(source: DataSource, event_id: str) -> tuple[np.ndarray, np.ndarray, Grid]:
    """One event's frames, times and grid.

    Returns
    -------
    frames : (T, H, W) uint8 VIL pixels, 255 = missing.
    times : (T,) datetime64 frame times (UTC).
    grid : the event's :class:`prediff.data.geo.Grid` (row 0 = south).

    Raises
    ------
    DataError : unknown event id, unreadable HDF5.
    """
    stamp = _catalog_stamp(source.root)
    return _event(str(source.root), source.require_complete, stamp, str(event_id))


@st.cache_data(show_spinner="Rendering the GIF ...", max_entries=16)
def event_gif(frames: np.ndarray, labels: tuple[str, ...], _grid: Grid, grid_key: str) -> bytes:
    """Animated GIF bytes of ``frames`` (cached per event: ``grid_key`` identifies ``_grid``, which is not hashed)."""
    from prediff.viz.animation import vil_gif

    return vil_gif(frames, labels=list(labels), grid=_grid)


#: Most panels in a PNG strip; longer events show every k-th frame.
STRIP_PANELS = 8


@st.cache_data(show_spinner="Rendering the PNG strip ...", max_entries=16)
def event_strip(frames: np.ndarray, labels: tuple[str, ...], _grid: Grid, grid_key: str) -> bytes:
    """PNG bytes of at most :data:`STRIP_PANELS` evenly spaced frames in rows of four (cached like
    :func:`event_gif`)."""
    from prediff.viz.animation import vil_strip_png

    chosen = np.unique(np.linspace(0, len(frames) - 1, min(STRIP_PANELS, len(frames))).round().astype(int))
    return vil_strip_png(frames[chosen], labels=[labels[i] for i in chosen], grid=_grid, columns=4)


def event_window(source: DataSource, event_id: str, k: int) -> dict:
    """Window ``k`` of an event split into context and target, with lead-time labels.

    Windows follow :class:`prediff.data.sevir.WindowSpec` (7 context + 6 target frames, stride 6), taken from the
    cached event frames.

    Returns
    -------
    dict with ``context`` (C, H, W) and ``target`` (T, H, W) uint8 VIL pixels (255 = missing), ``times`` (C + T,)
    datetime64, ``starts`` (the window start frames of the event) and ``grid``.

    Raises
    ------
    DataError : unknown event, or window ``k`` does not exist.
    """
    frames, times, grid = load_event(source, event_id)
    dataset = open_dataset(source)
    starts = dataset.window.starts(len(frames))
    if not 0 <= k < len(starts):
        raise DataError(f"event {event_id} has {len(starts)} forecast window(s) of {dataset.window.length} frames; "
                        f"window {k} does not exist")
    first = starts[k]
    split = first + dataset.window.context
    last = first + dataset.window.length
    return {"context": frames[first:split], "target": frames[split:last], "times": times[first:last],
            "starts": starts, "grid": grid}
