"""The demo storm corpus: procedurally generated storm events in the SEVIR-LR layout.

A fresh install has no radar data, yet every part of the workbench (readers, networks, demo training, the
app) needs events. :func:`generate_demo_corpus` writes a SEVIR-LR tree (``CATALOG.csv`` + ``vil`` HDF5,
(N, 128, 128, 25) uint8, 10-minute frames, 3 km pixels) of storm events simulated by
:mod:`prediff.data.storms`, with catalog metadata drawn like NOAA Storm Events rows: event type, a CONUS
location weighted to the Plains, Midwest and Southeast, a date in the convective season of 2018-2019, and
episode / event ids. :func:`corpus_statistics` summarises any SEVIR-format tree the same way SEVIR is
described (zero fraction, percentiles, threshold exceedance). See ``docs/demo_corpus.md``.

Event ``k`` of a seed is drawn from its own random stream (``SeedSequence(seed, spawn_key=(k,))``), so it
does not depend on how many events are generated: a corpus of 12 events is the first 12 events of a corpus
of 100 with the same seed, except where an id collision had to be resolved.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from prediff.data.catalog import SPLITS, SplitDates, read_catalog, select_events
from prediff.data.geo import SEVIR_PROJ, corners_for_center
from prediff.data.layout import MISSING_PIXEL, EventRecord, write_sevir_tree
from prediff.data.sevir import SevirDataset
from prediff.data.storms import (FRAME_COUNT, FRAME_MINUTES, GRID_SIZE, PIXEL_KM, SteeringWind, StormScene,
                                 simulate_storm)
from prediff.data.vil import SEVIR_THRESHOLDS, kg_m2_to_vil_pixels, vil_pixels_to_kg_m2
from prediff.errors import ConfigError, DataError

#: Patch side in metres (128 pixels of 3 km, the same 384 km as SEVIR's 384 pixels of 1 km).
PATCH_SIZE_M = GRID_SIZE * PIXEL_KM * 1000.0
#: Minute offsets of the 25 frames relative to ``time_utc`` (the middle frame), as in SEVIR-LR.
MINUTE_OFFSETS = tuple(int(FRAME_MINUTES * (k - FRAME_COUNT // 2)) for k in range(FRAME_COUNT))
#: Shares of train / val / test events; the dates of each event are drawn inside its split.
SPLIT_SHARES = {"train": 0.70, "val": 0.15, "test": 0.15}
#: gzip level of the shipped corpus (levels above ~6 gain a few per cent on these smooth fields).
DEFAULT_COMPRESSION_LEVEL = 9
#: The corpus shipped with the repository (``prediff data demo --out assets/demo_corpus --events 80 --seed 2026``).
SHIPPED_CORPUS_DIR = Path(__file__).resolve().parents[2] / "assets" / "demo_corpus"


@dataclasses.dataclass(frozen=True)
class EventTypeClimate:
    """How storms of one NOAA Storm Events type are drawn.

    Attributes
    ----------
    share : probability of the type among demo events.
    organisations : probability of each storm organisation (keys of :data:`prediff.data.storms.ORGANISATIONS`).
    median_peak_vil_kg_m2 : median core VIL of mature cells, kg m^-2 (log-normal spread 0.3 around it).
    bow_echo : probability that a squall line develops a bow segment.
    """

    share: float
    organisations: dict[str, float]
    median_peak_vil_kg_m2: float
    bow_echo: float = 0.3


#: NOAA Storm Events types of the demo corpus. Severe hail and tornadoes come from the strongest cores
#: (often past SEVIR's 219 = ~32 kg m^-2 threshold); rain and flood events from long-lived moderate cells.
EVENT_TYPES: dict[str, EventTypeClimate] = {
    "Thunderstorm Wind": EventTypeClimate(0.40, {"squall_line": 0.5, "multicell": 0.35, "supercell": 0.15}, 15.0,
                                          bow_echo=0.6),
    "Hail": EventTypeClimate(0.28, {"supercell": 0.45, "multicell": 0.40, "squall_line": 0.05, "isolated": 0.10},
                             22.0),
    "Flash Flood": EventTypeClimate(0.12, {"training": 0.6, "multicell": 0.25, "squall_line": 0.15}, 11.0),
    "Heavy Rain": EventTypeClimate(0.10, {"training": 0.45, "multicell": 0.35, "squall_line": 0.10,
                                          "isolated": 0.10}, 9.0),
    "Tornado": EventTypeClimate(0.10, {"supercell": 0.6, "squall_line": 0.3, "multicell": 0.1}, 20.0),
}


@dataclasses.dataclass(frozen=True)
class Region:
    """A CONUS area where demo storms are placed: a Gaussian around a centre, active in some months.

    Attributes
    ----------
    name : e.g. "Southern Plains".
    lat, lon : centre, degrees.
    lat_sd, lon_sd : spread of event centres, degrees.
    weight : relative share of events among the regions active in a month.
    months : months (1-12) in which the region has demo events.
    """

    name: str
    lat: float
    lon: float
    lat_sd: float
    lon_sd: float
    weight: float
    months: tuple[int, ...]


_WARM_SEASON = (5, 6, 7, 8, 9)
REGIONS: tuple[Region, ...] = (
    Region("Southern Plains", 34.5, -98.5, 2.0, 2.5, 0.22, (3, 4, 5, 6, 7, 9, 10)),
    Region("Central and Northern Plains", 41.5, -99.0, 2.5, 3.0, 0.18, _WARM_SEASON),
    Region("Upper Midwest", 43.5, -91.0, 2.0, 3.5, 0.12, _WARM_SEASON),
    Region("Ohio and Mid-Mississippi Valleys", 38.5, -87.5, 2.0, 3.0, 0.15, (3, 4, 5, 6, 7, 8, 9, 10)),
    Region("Southeast", 33.0, -86.5, 1.8, 3.5, 0.15, tuple(range(1, 13))),
    Region("Gulf Coast and Florida", 29.8, -86.0, 1.2, 5.0, 0.06, tuple(range(1, 13))),
    Region("Mid-Atlantic and Northeast", 40.5, -76.5, 2.0, 2.5, 0.08, _WARM_SEASON),
    Region("High Plains", 39.5, -103.5, 2.0, 1.5, 0.04, (5, 6, 7, 8)),
)

#: Relative frequency of severe-storm reports by month (January first): a spring-summer peak.
_MONTH_WEIGHTS = np.array([2, 3, 6, 11, 17, 20, 16, 12, 6, 4, 2, 1], dtype=float)
#: Calendar days of each split, so that the reference split dates put an event in the split it was drawn for.
_SPLIT_DAYS = {
    "train": (pd.Timestamp("2018-01-01"), pd.Timestamp("2019-03-18")),
    "val": (pd.Timestamp("2019-03-19"), pd.Timestamp("2019-05-31")),
    "test": (pd.Timestamp("2019-06-01"), pd.Timestamp("2019-12-31")),
}
_ID_EPOCH = pd.Timestamp("2018-01-01")
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclasses.dataclass(frozen=True)
class DemoEvent:
    """Catalog metadata and storm scene of one demo event, before simulation.

    Attributes
    ----------
    index : position of the event in the generation order (its random stream).
    split : "train", "val" or "test", implied by ``time_utc`` and the reference split dates.
    time_utc : time of the middle frame (minute offset 0), timezone-naive UTC.
    event_type : NOAA Storm Events type.
    region : name of the :class:`Region` the location was drawn from.
    center_lat, center_lon : patch centre, degrees.
    episode_id, event_id : NOAA-like Storm Events ids (event ids grow with the date, as NOAA's do).
    scene : the storm system to simulate.
    """

    index: int
    split: str
    time_utc: pd.Timestamp
    event_type: str
    region: str
    center_lat: float
    center_lon: float
    episode_id: int
    event_id: int
    scene: StormScene

    @property
    def id(self) -> str:
        """SEVIR id of a storm event: ``S`` + the Storm Events event id."""
        return f"S{self.event_id}"


def shipped_corpus() -> Path:
    """Root of the demo corpus shipped in the repository's ``assets/demo_corpus``.

    Raises
    ------
    DataError : the corpus is not there (e.g. an installed package without the repository's assets).
    """
    if not (SHIPPED_CORPUS_DIR / "CATALOG.csv").is_file():
        raise DataError(f"the shipped demo corpus is not at {SHIPPED_CORPUS_DIR}; generate one with "
                        "`prediff data demo --out DIR --events 80 --seed 2026` and pass --data DIR")
    return SHIPPED_CORPUS_DIR


def event_stream(seed: int, index: int) -> np.random.Generator:
    """The random stream of event ``index`` of corpus ``seed`` (independent of the corpus size).

    Parameters
    ----------
    seed : corpus seed, >= 0.
    index : event number, 0-based.

    Returns
    -------
    np.random.Generator drawing the event's catalog metadata and storm scene.
    """
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index),)))


def split_of_index(seed: int, index: int) -> str:
    """Split of event ``index``: a golden-ratio sequence, so every prefix of the corpus holds close to
    70 / 15 / 15 % train / val / test events, however many are generated.

    Parameters
    ----------
    seed : corpus seed (sets the sequence's phase).
    index : event number, 0-based.

    Returns
    -------
    "train", "val" or "test".
    """
    phase = np.random.SeedSequence(int(seed)).generate_state(1)[0] / 2.0 ** 32
    position = (phase + index * _GOLDEN) % 1.0
    cumulative = 0.0
    for split in SPLITS:
        cumulative += SPLIT_SHARES[split]
        if position < cumulative:
            return split
    return SPLITS[-1]


def draw_event(seed: int, index: int) -> DemoEvent:
    """Metadata and storm scene of event ``index`` of the corpus ``seed``.

    Parameters
    ----------
    seed : corpus seed.
    index : event number, 0-based.

    Returns
    -------
    DemoEvent (not yet simulated).
    """
    rng = event_stream(seed, index)
    split = split_of_index(seed, index)
    time_utc = _draw_time(rng, split)
    type_names = list(EVENT_TYPES)
    event_type = type_names[rng.choice(len(type_names), p=[EVENT_TYPES[n].share for n in type_names])]
    region = _draw_region(rng, time_utc.month)
    lat = float(np.clip(rng.normal(region.lat, region.lat_sd), 26.0, 48.5))
    lon = float(np.clip(rng.normal(region.lon, region.lon_sd), -106.0, -70.0))
    days = (time_utc.normalize() - _ID_EPOCH).days
    event_id = 728000 + 200 * days + int(rng.integers(0, 200))
    episode_id = 122000 + int(32.5 * days) + int(rng.integers(0, 30))
    scene = _draw_scene(rng, EVENT_TYPES[event_type], time_utc.month)
    return DemoEvent(index=index, split=split, time_utc=time_utc, event_type=event_type, region=region.name,
                     center_lat=lat, center_lon=lon, episode_id=episode_id, event_id=event_id, scene=scene)


def _draw_time(rng: np.random.Generator, split: str) -> pd.Timestamp:
    first, last = _SPLIT_DAYS[split]
    days = pd.date_range(first, last, freq="D")
    weights = _MONTH_WEIGHTS[days.month.to_numpy() - 1]
    day = days[rng.choice(len(days), p=weights / weights.sum())]
    # storms peak in the late afternoon and evening over the central US, about 21-02 UTC; never exactly
    # midnight, where a split boundary would move the event into the previous split
    minute = int(round(rng.normal(22.5 * 60, 210.0))) % (24 * 60)
    return day + pd.Timedelta(minutes=max(minute, 1))


def _draw_region(rng: np.random.Generator, month: int) -> Region:
    weights = np.array([r.weight if month in r.months else 0.0 for r in REGIONS])
    return REGIONS[rng.choice(len(REGIONS), p=weights / weights.sum())]


def _draw_scene(rng: np.random.Generator, climate: EventTypeClimate, month: int) -> StormScene:
    names = list(climate.organisations)
    organisation = names[rng.choice(len(names), p=list(climate.organisations.values()))]
    # steering flow is strongest in the cool season and weakest in mid-summer
    speed = rng.uniform(4.0, 13.0) if month in (6, 7, 8) else rng.uniform(8.0, 21.0)
    wind = SteeringWind.draw(rng, speed_m_s=speed, direction_deg=rng.normal(245.0, 25.0))
    stratiform = {"squall_line": rng.uniform(1.5, 3.5), "training": rng.uniform(2.0, 4.0)}.get(
        organisation, rng.uniform(0.3, 1.0))
    half = GRID_SIZE * PIXEL_KM / 2
    return StormScene(
        organisation=organisation,
        wind=wind,
        peak_vil_kg_m2=float(climate.median_peak_vil_kg_m2 * rng.lognormal(0.0, 0.3)),
        centre_km=(half + rng.normal(0.0, 25.0), half + rng.normal(0.0, 25.0)),
        instability_trend=float(np.clip(rng.normal(0.0, 0.3), -0.6, 0.5)),
        stratiform_vil_kg_m2=float(stratiform),
        scattered_cells=int(rng.poisson(2.0)),
        bow_echo=bool(organisation == "squall_line" and rng.random() < climate.bow_echo),
    )


def simulate_event(event: DemoEvent, seed: int) -> EventRecord:
    """Simulate ``event`` and package it as a SEVIR-LR record.

    Parameters
    ----------
    event : from :func:`draw_event`.
    seed : the corpus seed the event was drawn with (its storm is simulated from a stream derived from it).

    Returns
    -------
    EventRecord with ``vil`` (128, 128, 25) uint8 VIL pixels (0-254, no missing pixels), row 0 = south.
    """
    # a separate stream for the simulation, so changing the metadata draws leaves the storm untouched
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(event.index), 1)))
    simulation = simulate_storm(event.scene, rng)
    pixels = kg_m2_to_vil_pixels(simulation.vil_kg_m2)
    lat0, lon0, lat1, lon1 = corners_for_center(SEVIR_PROJ, event.center_lat, event.center_lon, PATCH_SIZE_M,
                                                PATCH_SIZE_M)
    return EventRecord(
        id=event.id,
        time_utc=event.time_utc,
        vil=np.ascontiguousarray(np.moveaxis(pixels, 0, -1)),
        minute_offsets=MINUTE_OFFSETS,
        llcrnrlat=lat0, llcrnrlon=lon0, urcrnrlat=lat1, urcrnrlon=lon1,
        proj=SEVIR_PROJ,
        width_m=PATCH_SIZE_M,
        height_m=PATCH_SIZE_M,
        event_type=event.event_type,
        episode_id=event.episode_id,
        event_id=event.event_id,
    )


def draw_events(n_events: int, seed: int) -> list[DemoEvent]:
    """The first ``n_events`` events of corpus ``seed``, with unique ids.

    Two events drawn on the same day can draw the same event id (1 in 200); the later one then takes the
    next free id, so only such an event depends on the events before it.

    Returns
    -------
    list of ``n_events`` :class:`DemoEvent`, in generation order.
    """
    events, taken = [], set()
    for index in range(n_events):
        event = draw_event(seed, index)
        event_id = event.event_id
        while event_id in taken:
            event_id += 1
        taken.add(event_id)
        events.append(dataclasses.replace(event, event_id=event_id))
    return events


def generate_demo_corpus(out_dir: str | os.PathLike, n_events: int, seed: int,
                         compression_level: int = DEFAULT_COMPRESSION_LEVEL, progress=None) -> Path:
    """Generate a demo corpus of ``n_events`` storm events and write it as a SEVIR-LR tree.

    Parameters
    ----------
    out_dir : output folder; ``CATALOG.csv`` and ``data/vil/YYYY/SEVIR_VIL_STORMEVENTS_*.h5`` are written in it.
    n_events : number of events (>= 1).
    seed : corpus seed (>= 0); the same seed gives byte-identical files on the same platform.
    compression_level : gzip level 0-9 of the HDF5 ``vil`` datasets.
    progress : optional callable ``progress(done, total)`` called after each simulated event.

    Returns
    -------
    Path of the written tree.

    Raises
    ------
    ConfigError : ``n_events`` < 1, ``seed`` < 0 or ``compression_level`` outside 0-9.
    """
    if int(n_events) < 1:
        raise ConfigError(f"the number of events must be at least 1, got {n_events}; pass e.g. --events 12")
    if int(seed) < 0:
        raise ConfigError(f"the seed must be a non-negative integer, got {seed}; pass e.g. --seed 1")
    if not 0 <= int(compression_level) <= 9:
        raise ConfigError(f"the gzip compression level must be 0-9, got {compression_level}")
    records = []
    events = draw_events(int(n_events), int(seed))
    for done, event in enumerate(events, start=1):
        records.append(simulate_event(event, int(seed)))
        if progress is not None:
            progress(done, len(events))
    return write_sevir_tree(out_dir, records, include_id_dataset=True, compression_level=int(compression_level))


def corpus_statistics(root: str | os.PathLike, split_dates: SplitDates = SplitDates()) -> dict:
    """Summary statistics of the VIL events of a SEVIR-format tree (the demo corpus or any other).

    Pixels equal to 255 (missing) are left out of every pixel statistic.

    Parameters
    ----------
    root : folder holding ``CATALOG.csv`` and ``data/``.
    split_dates : boundaries of the train / val / test splits.

    Returns
    -------
    dict with
        ``events`` : number of VIL events (all dates, complete events, unique ids);
        ``pixels`` : number of valid pixels counted;
        ``zero_fraction`` : fraction of valid pixels equal to 0;
        ``percentiles`` : {p: VIL pixel} for p in 50, 75, 90, 95, 99, 99.9, over all valid pixels;
        ``nonzero_percentiles`` : the same over pixels > 0;
        ``fraction_at_or_above`` : {threshold: fraction of valid pixels >= threshold} for the SEVIR thresholds;
        ``events_reaching`` : {threshold: number of events whose maximum is >= threshold};
        ``event_max`` : {event id: maximum VIL pixel of the event};
        ``mean_vil_kg_m2`` : mean decoded VIL over valid pixels, kg m^-2;
        ``event_types`` : {NOAA event type: number of events} ("" for random events);
        ``splits`` : {"train" / "val" / "test": number of events}.

    Raises
    ------
    DataError : the tree is missing or malformed (from :class:`prediff.data.sevir.SevirDataset`).
    """
    dataset = SevirDataset(root, split=None)
    histogram = np.zeros(256, dtype=np.int64)
    event_max = {}
    for event_id in dataset.event_ids:
        vil = dataset.read_event(event_id)
        histogram += np.bincount(vil.ravel(), minlength=256)
        valid = vil[vil != MISSING_PIXEL]
        event_max[event_id] = int(valid.max()) if valid.size else 0
    counts = histogram[:MISSING_PIXEL]
    total = int(counts.sum())
    levels = np.arange(MISSING_PIXEL)

    def share(count) -> float:
        return float(count / total) if total else float("nan")

    percentiles = (50, 75, 90, 95, 99, 99.9)
    catalog = read_catalog(root)
    with_dates = dataclasses.replace(dataset.selection, split_dates=split_dates)
    types = dataset.catalog["event_type"].fillna("").value_counts().sort_index()
    return {
        "events": len(event_max),
        "pixels": total,
        "zero_fraction": share(counts[0]),
        "percentiles": _histogram_percentiles(counts, percentiles),
        "nonzero_percentiles": _histogram_percentiles(np.where(levels > 0, counts, 0), percentiles),
        "fraction_at_or_above": {t: share(counts[t:].sum()) for t in SEVIR_THRESHOLDS},
        "events_reaching": {t: sum(m >= t for m in event_max.values()) for t in SEVIR_THRESHOLDS},
        "event_max": event_max,
        "mean_vil_kg_m2": share((counts * np.nan_to_num(vil_pixels_to_kg_m2(levels))).sum()),
        "event_types": {str(name): int(count) for name, count in types.items()},
        "splits": {split: len(select_events(catalog, with_dates, split)) for split in SPLITS},
    }


def _histogram_percentiles(counts: np.ndarray, percentiles) -> dict:
    """Percentiles (lower-value convention) of integer pixel values given their (256,) counts."""
    total = counts.sum()
    if total == 0:
        return {p: float("nan") for p in percentiles}
    cumulative = np.cumsum(counts)
    return {p: int(np.searchsorted(cumulative, p / 100.0 * total, side="left")) for p in percentiles}
