"""``prediff events``: list the events of a SEVIR / SEVIR-LR tree, with the selection and filters of the app."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "events", help="list the events of a SEVIR / SEVIR-LR tree",
        description="List the selected events (MindEarth selection: complete VIL events with a unique id, "
                    "ordered by id) with their time, type, centre, maximum VIL and number of forecast windows.")
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset folder holding CATALOG.csv and data/")
    parser.add_argument("--split", choices=("train", "val", "test"), help="date split (default: all events)")
    parser.add_argument("--type", dest="event_types", action="append", default=[], metavar="T",
                        help="NOAA event type, e.g. Hail (repeat for several; random events have no type)")
    parser.add_argument("--start", metavar="D", help="only events after this date-time (UTC), e.g. 2019-06-01")
    parser.add_argument("--end", metavar="D", help="only events up to and including this date-time (UTC)")
    parser.add_argument("--min-max-vil", type=float, metavar="V",
                        help="only events whose maximum VIL pixel (data_max, 0-254) is at least V")
    parser.add_argument("--bbox", type=float, nargs=4, metavar=("LAT0", "LAT1", "LON0", "LON1"),
                        help="only events whose patch centre lies in this latitude / longitude box (degrees)")
    parser.add_argument("--include-incomplete", action="store_true",
                        help="also list events with missing pixels (pct_missing > 0)")
    parser.add_argument("--limit", type=int, metavar="N", help="print at most N events")
    parser.set_defaults(handler=run)


def _timestamp(text: str | None, option: str):
    import pandas as pd

    from prediff.errors import DataError

    if text is None:
        return None
    try:
        return pd.Timestamp(text)
    except ValueError:
        raise DataError(f"{option} {text!r} is not a date; write it like 2019-06-01 or '2019-06-01 12:30'") from None


def run(args: argparse.Namespace) -> int:
    from prediff.data.catalog import Selection, event_centers
    from prediff.data.sevir import SevirDataset

    bbox = None
    if args.bbox is not None:
        lat0, lat1, lon0, lon1 = args.bbox
        bbox = (min(lat0, lat1), max(lat0, lat1), min(lon0, lon1), max(lon0, lon1))
    selection = Selection(start=_timestamp(args.start, "--start"), end=_timestamp(args.end, "--end"),
                          require_complete=not args.include_incomplete, event_types=tuple(args.event_types),
                          min_data_max=args.min_max_vil, bbox=bbox)
    dataset = SevirDataset(args.data, split=args.split, selection=selection)
    rows = dataset.catalog if args.limit is None else dataset.catalog.head(max(args.limit, 0))
    lat, lon = event_centers(rows)
    header = f"{'id':<16} {'time (UTC)':<19} {'type':<22} {'lat':>7} {'lon':>8} {'max VIL':>7} {'windows':>7}"
    print(header)
    for index, (_, row) in enumerate(rows.iterrows()):
        windows = len(dataset.window_starts(row["id"]))
        event_type = row["event_type"] or "-"
        print(f"{row['id']:<16} {row['time_utc']:%Y-%m-%d %H:%M:%S} {event_type:<22.22} {lat[index]:7.2f} "
              f"{lon[index]:8.2f} {row['data_max']:7.0f} {windows:7d}")
    shown = len(rows)
    total = len(dataset.catalog)
    print(f"{shown} of {total} event(s)" + (f" in the {args.split} split" if args.split else ""))
    return 0
