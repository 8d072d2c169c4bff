"""``prediff data download``: fetch and unpack a published dataset (SEVIR-LR)."""

from __future__ import annotations

import argparse


def register(data_subparsers) -> None:
    parser = data_subparsers.add_parser(
        "download", help="download SEVIR-LR (resumable) and unpack it as a dataset folder",
        description="Download the SEVIR-LR archive (or a SEVIR-format zip at --url), resuming an interrupted "
                    "download, check its size / SHA-256 / CRCs and unpack it as DIR/CATALOG.csv + DIR/data/.")
    parser.add_argument("dataset", choices=("sevir-lr",), help="dataset to fetch")
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset folder to create")
    parser.add_argument("--url", help="archive URL (default: the published sevir_lr.zip)")
    parser.add_argument("--sha256", metavar="H", help="expected SHA-256 of the archive")
    parser.add_argument("--keep-archive", action="store_true", help="keep the zip after unpacking")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from prediff.data.download import SEVIR_LR_URL, download_sevir_lr

    root = download_sevir_lr(args.out, url=args.url or SEVIR_LR_URL, sha256=args.sha256,
                             keep_archive=args.keep_archive)
    print(f"SEVIR-LR is ready in {root}; list its events with `prediff events --data {root}`")
    return 0
