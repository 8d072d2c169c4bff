"""Command groups of the ``prediff`` CLI, one module each; see :mod:`prediff.cli`.

Every module defines ``register(subparsers)``; each sub-command sets ``handler=`` (a function taking
the parsed ``argparse.Namespace`` and returning an exit status or None).
"""
