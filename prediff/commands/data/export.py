"""``prediff data export``: write one event (or one forecast window) as a CF-1.8 NetCDF file."""

from __future__ import annotations

import argparse


def register(data_subparsers) -> None:
    parser = data_subparsers.add_parser(
        "export", help="export an event as CF-1.8 NetCDF (VIL pixels, kg m-2, lat/lon, projection)",
        description="Write an event of a SEVIR-format tree, or one of its forecast windows, as NetCDF-4.")
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset folder (CATALOG.csv + data/)")
    parser.add_argument("--event", required=True, metavar="ID", help="event id (see `prediff events --data DIR`)")
    parser.add_argument("--window", type=int, metavar="K", help="export only forecast window K (0-based)")
    parser.add_argument("--out", required=True, metavar="FILE.nc", help="NetCDF file to write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from prediff.data.catalog import Selection
    from prediff.data.export import event_to_xarray, write_netcdf
    from prediff.data.sevir import SevirDataset

    # any event of the tree may be exported, including ones the forecast selection leaves out
    dataset = SevirDataset(args.data, selection=Selection(require_complete=False))
    path = write_netcdf(event_to_xarray(dataset, args.event, window=args.window), args.out)
    print(f"wrote {path}")
    return 0
