"""Errors the workbench reports to users.

Every error raised for bad user input (missing files, corrupt HDF5, wrong shapes, unknown ids,
checkpoint mismatches, wrong config keys) is a :class:`PreDiffError` whose message names the
problem *and* the fix. The CLI prints these without a traceback; the app shows them in an
``st.error`` box.
"""


class PreDiffError(Exception):
    """Base class of all user-facing errors."""


class DataError(PreDiffError):
    """A dataset, catalog, HDF5 file or radar file is missing, corrupt or inconsistent."""


class ConfigError(PreDiffError):
    """A configuration file is missing, unreadable, or has unknown / missing / mistyped keys."""


class CheckpointError(PreDiffError):
    """A checkpoint file is missing, corrupt, or does not match the network built from the config."""
