"""``prediff data import``: met-service radar composites -> a SEVIR-LR tree of VIL-equivalent events.

The module is called ``importer`` because ``import`` is a Python keyword; the sub-command is ``import``.
"""

from __future__ import annotations

import argparse

from prediff.data.radar_conversion import DEFAULT_COLUMN_DEPTH_KM, QUANTITIES


def register(data_subparsers) -> None:
    parser = data_subparsers.add_parser(
        "import", help="import radar composites (FMI PGM, KNMI/ODIM HDF5, NetCDF) as SEVIR-LR events",
        description="Regrid radar composites to a 128x128 window of 3 km cells around a centre, keep 10-minute "
                    "frames, convert reflectivity or rain rate to VIL-equivalent pixels and write a SEVIR-LR "
                    "tree (CATALOG.csv + data/). See docs/radar_import.md for the assumptions.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="radar files, directories (searched recursively) or quoted glob patterns")
    parser.add_argument("--out", required=True, help="output folder of the SEVIR-LR tree")
    parser.add_argument("--center-lat", type=float, required=True, help="latitude of the window centre, degrees")
    parser.add_argument("--center-lon", type=float, required=True, help="longitude of the window centre, degrees")
    parser.add_argument("--format", dest="file_format", default="auto",
                        choices=["auto", "fmi-pgm", "knmi-hdf5", "odim-hdf5", "netcdf"], help="input format")
    parser.add_argument("--quantity", default="auto", choices=["auto", *QUANTITIES],
                        help="what the files hold (auto: from their units); rainrate in mm/h, accumulation in mm "
                             "per source time step")
    parser.add_argument("--column-depth-km", type=float, default=DEFAULT_COLUMN_DEPTH_KM,
                        help="assumed depth of the uniform reflectivity column of the VIL-equivalent, km")
    parser.add_argument("--start", help="first time to import (ISO 8601, UTC), inclusive")
    parser.add_argument("--end", help="last time to import (ISO 8601, UTC), inclusive")
    parser.add_argument("--first-time",
                        help="time of the first file (ISO 8601, UTC) when file names carry no time stamp; "
                             "files are then taken in name order, --timestep apart")
    parser.add_argument("--timestep", type=float, help="minutes between consecutive files (with --first-time)")
    parser.add_argument("--variable", help="NetCDF variable holding the radar field (default: the only 3-D one)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing tree in --out")
    parser.set_defaults(handler=run_import)


def run_import(args: argparse.Namespace) -> int:
    """Run the import and print one line per written event."""
    from prediff.data.layout import MISSING_PIXEL
    from prediff.data.radar_import import import_radar

    result = import_radar(args.sources, args.out, args.center_lat, args.center_lon, file_format=args.file_format,
                          quantity=args.quantity, column_depth_km=args.column_depth_km, start=args.start,
                          end=args.end, first_time=args.first_time, timestep_minutes=args.timestep,
                          variable=args.variable, overwrite=args.overwrite)
    print(f"imported {result.frames_read} ten-minute frames of {result.source} ({result.quantity}) into "
          f"{len(result.events)} event(s) under {result.root}"
          + (f"; dropped the {result.frames_dropped} oldest frames that did not fill a 25-frame event"
             if result.frames_dropped else ""))
    for event in result.events:
        missing = 100.0 * float((event.vil == MISSING_PIXEL).mean())
        print(f"  {event.id}  {event.time_utc:%Y-%m-%d %H:%M} UTC  {event.vil.shape[-1]} frames  "
              f"max VIL pixel {int(event.vil[event.vil != MISSING_PIXEL].max(initial=0))}  missing {missing:.1f} %")
    return 0
