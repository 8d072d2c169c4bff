"""``prediff data demo``: generate the procedural demo storm corpus (SEVIR-LR layout)."""

from __future__ import annotations

import sys


def register(data_subparsers) -> None:
    parser = data_subparsers.add_parser(
        "demo", help="generate demo storm events in the SEVIR-LR layout (no download needed)",
        description="Simulate convective storm events (cells with life cycles, supercells, multicells, squall "
                    "lines, training cells, stratiform rain) and write them as a SEVIR-LR tree: CATALOG.csv and "
                    "data/vil/YYYY/*.h5 with (N, 128, 128, 25) uint8 VIL. The same seed gives identical files.")
    parser.add_argument("--out", required=True, help="output folder (must be empty or absent unless --force)")
    parser.add_argument("--events", type=int, default=12, help="number of events (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--compression-level", type=int, default=None, metavar="0-9",
                        help="gzip level of the HDF5 files (default 9)")
    parser.add_argument("--force", action="store_true",
                        help="write into a folder that already holds files (same-named files are replaced)")
    parser.add_argument("--quiet", action="store_true", help="print only the output path")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from pathlib import Path

    from prediff.data.demo import DEFAULT_COMPRESSION_LEVEL, corpus_statistics, generate_demo_corpus
    from prediff.errors import DataError

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; pass a folder for the corpus")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise DataError(f"--out {out} is not empty; choose a new folder or add --force to write into it")
    level = DEFAULT_COMPRESSION_LEVEL if args.compression_level is None else args.compression_level

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\rsimulated {done}/{total} events", end="" if done < total else "\n", file=sys.stderr,
                  flush=True)

    root = generate_demo_corpus(out, args.events, args.seed, compression_level=level, progress=progress)
    if args.quiet:
        print(root)
        return 0
    stats = corpus_statistics(root)
    size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
    splits = ", ".join(f"{name} {count}" for name, count in stats["splits"].items())
    print(f"wrote {stats['events']} events to {root} ({size_mb:.2f} MB; {splits})")
    print(f"zero pixels {100 * stats['zero_fraction']:.1f} %, events reaching VIL pixel 219: "
          f"{stats['events_reaching'][219]}")
    return 0
