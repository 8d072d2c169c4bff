"""``prediff data downsample``: convert a SEVIR tree into a SEVIR-LR tree."""

from __future__ import annotations

import argparse


def register(data_subparsers) -> None:
    parser = data_subparsers.add_parser(
        "downsample", help="convert SEVIR (384x384, 49 frames @ 5 min) to SEVIR-LR (128x128, 25 frames @ 10 min)",
        description="3x3 block maximum (missing pixels ignored) and every second frame, written as a new "
                    "SEVIR-format tree with an updated catalog.")
    parser.add_argument("--src", required=True, metavar="DIR", help="SEVIR dataset folder (CATALOG.csv + data/)")
    parser.add_argument("--out", required=True, metavar="DIR", help="SEVIR-LR dataset folder to write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from prediff.data.downsample import downsample_tree

    with tqdm(unit="event", desc="downsampling") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        root = downsample_tree(args.src, args.out, progress=progress)
    print(f"SEVIR-LR tree written to {root}")
    return 0
