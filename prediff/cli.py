"""The ``prediff`` command line.

Each module in :mod:`prediff.commands` exposes ``register(subparsers)`` that adds one command group
(``data``, ``events``, ``checkpoint``, ``parity``, ``forecast``, ...). Modules are discovered, so a new
command is one new file. Handlers import heavy libraries (MindSpore, pysteps) lazily, so
``prediff --help`` stays fast.

User errors (:class:`prediff.errors.PreDiffError`) are printed as one readable message and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from prediff import __version__
from prediff.errors import PreDiffError


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every command group of :mod:`prediff.commands` registered."""
    parser = argparse.ArgumentParser(
        prog="prediff",
        description="PreDiff Workbench: probabilistic precipitation nowcasting with latent diffusion.",
    )
    parser.add_argument("--version", action="version", version=f"prediff {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    import prediff.commands as command_package

    for module_info in sorted(pkgutil.iter_modules(command_package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"prediff.commands.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.handler(args)
    except PreDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


if __name__ == "__main__":
    sys.exit(main())
