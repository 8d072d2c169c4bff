"""Shared test fixtures.

``shared_dir`` points at ``../shared`` beside the repository (reference facts, parity fixtures, real radar
events). Tests that need it use the fixtures below and skip cleanly when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

# Before pytest imports any test module: Streamlit tests load protobuf, MindSpore tests need its pure-Python
# implementation in the same process (see prediff/runtime.py).
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("PREDIFF_SHARED_DIR", REPO_ROOT.parent / "shared"))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (needs ../shared beside the repository)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED_DIR)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return _require(SHARED_DIR / "reference")


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return _require(SHARED_DIR / "reference" / "parity")


@pytest.fixture(scope="session")
def parity_arrays(parity_dir):
    """The arrays of ``parity_small.npz`` (inputs and reference outputs), loaded once."""
    import numpy as np

    with np.load(parity_dir / "parity_small.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def realradar_dir() -> Path:
    return _require(SHARED_DIR / "realradar")
