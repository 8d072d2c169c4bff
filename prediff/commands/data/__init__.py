"""``prediff data ...``: the data command group.

Each module of this package adds one sub-command through ``register(data_subparsers)``
(``demo``, ``download``, ``import``, ``downsample``, ``export``); they are discovered like the
top-level groups in :mod:`prediff.cli`.
"""

from __future__ import annotations

import importlib
import pkgutil


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="create, download, import, convert and export radar data")
    data_subparsers = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_subparsers.required = True
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module_info.name}").register(data_subparsers)
