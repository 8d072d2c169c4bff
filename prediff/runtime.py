"""MindSpore runtime setup: one place that chooses the device and execution mode.

Import MindSpore through :func:`mindspore_module` (never ``import mindspore`` at module top level in
code that the app may import): it first makes protobuf use its pure-Python implementation, which is
what keeps MindSpore's generated protobuf files importable after Streamlit has already loaded protobuf
("Descriptors cannot be created directly"), and then configures the context once.

The device comes from one setting: the ``device`` argument, else the ``PREDIFF_DEVICE`` environment
variable, else ``"CPU"``. Valid values: ``CPU``, ``GPU``, ``Ascend``.
"""

from __future__ import annotations

import os

from prediff.errors import ConfigError

DEVICES = ("CPU", "GPU", "Ascend")
_configured_device: str | None = None


def _ensure_protobuf_compatible() -> None:
    os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")


def resolve_device(device: str | None = None) -> str:
    """Return the canonical device name for ``device`` (case-insensitive), ``$PREDIFF_DEVICE`` or CPU."""
    requested = device or os.environ.get("PREDIFF_DEVICE") or "CPU"
    for name in DEVICES:
        if requested.lower() == name.lower():
            return name
    raise ConfigError(f"unknown device {requested!r}; choose one of {', '.join(DEVICES)} "
                      "(argument --device or environment variable PREDIFF_DEVICE)")


def mindspore_module(device: str | None = None):
    """Import MindSpore, set PYNATIVE mode on the chosen device (first call wins), and return the module.

    Later calls with a different device raise :class:`ConfigError`, because MindSpore cannot switch
    devices inside one process.
    """
    global _configured_device
    _ensure_protobuf_compatible()
    import mindspore

    wanted = resolve_device(device)
    if _configured_device is None:
        mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
        mindspore.set_device(wanted)
        if wanted == "CPU":
            # The networks hand data between MindSpore and numpy kernels dozens of times per forward pass, and
            # every hand-over waits for MindSpore's asynchronous launch queue: ~1 ms per wait (a reshape followed
            # by asnumpy), 0.01 ms when operators launch synchronously (docs/architecture.md, "CPU speed").
            mindspore.runtime.launch_blocking()
        _configured_device = wanted
    elif device is not None and wanted != _configured_device:
        raise ConfigError(f"MindSpore already runs on {_configured_device} in this process; "
                          f"cannot switch to {wanted}. Start a new process with --device {wanted}.")
    return mindspore
