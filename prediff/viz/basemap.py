"""Offline map outlines (coastlines, country and state borders, lakes) projected onto a radar grid.

The outlines come from ``assets/basemap/natural_earth_subset.npz`` (Natural Earth 1:10m, public domain,
simplified to ~1 km and clipped to North America and Europe; built by ``scripts/make_basemap.py``), so maps
need neither internet nor cartopy's data cache. Each layer is a list of polylines stored as one (N, 2)
lon/lat array in which a NaN row ends every polyline, which is also the form plotly and matplotlib draw as
separate line pieces.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from prediff.data.geo import Grid, project
from prediff.errors import DataError

BASEMAP_PATH = Path(__file__).resolve().parents[2] / "assets" / "basemap" / "natural_earth_subset.npz"

#: Layers in drawing order (bottom first).
LAYERS: tuple[str, ...] = ("lakes", "state_borders", "country_borders", "coastline")


@lru_cache(maxsize=2)
def load_basemap(path: str | Path = BASEMAP_PATH) -> dict[str, np.ndarray]:
    """Read the basemap layers.

    Parameters
    ----------
    path : the ``.npz`` written by ``scripts/make_basemap.py``.

    Returns
    -------
    dict layer name -> (N, 2) float32 (lon, lat) degrees; NaN rows separate polylines. The arrays are
    shared between callers (cached): do not modify them.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"the basemap {path} is missing; rebuild it with `python scripts/make_basemap.py` "
                        "(needs PyPI access once) or restore it from the repository")
    with np.load(path) as data:
        missing = [layer for layer in LAYERS if layer not in data.files]
        if missing:
            raise DataError(f"the basemap {path} lacks the layers {missing}; rebuild it with "
                            "`python scripts/make_basemap.py`")
        return {layer: data[layer] for layer in LAYERS}


def _compact_nans(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop NaN rows that follow another NaN row, and a leading NaN row (fewer points to send)."""
    gap = np.isnan(x)
    keep = ~(gap & np.concatenate([[True], gap[:-1]]))
    return x[keep], y[keep]


@lru_cache(maxsize=16)
def _projected_layers(proj: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    projected = {}
    for layer, lonlat in load_basemap().items():
        with np.errstate(invalid="ignore"):
            x, y = project(proj, lonlat[:, 0].astype(np.float64), lonlat[:, 1].astype(np.float64))
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        # points on the far side of the globe project to inf in azimuthal projections
        invalid = ~(np.isfinite(x) & np.isfinite(y))
        x[invalid] = np.nan
        y[invalid] = np.nan
        projected[layer] = (x, y)
    return projected


def basemap_lines(proj: str, extent: tuple[float, float, float, float], margin: float = 0.1,
                  layers: tuple[str, ...] = LAYERS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Outlines projected into ``proj`` and cut to a rectangle.

    Vertices farther than ``margin`` (a fraction of the rectangle's size) outside ``extent`` are dropped and
    the polyline is broken there; the margin keeps lines continuous up to the edge, where a plot's axis
    range clips them exactly.

    Parameters
    ----------
    proj : PROJ string of the target projection (e.g. ``Grid.proj``).
    extent : (x_min, x_max, y_min, y_max) in metres of the area shown.
    margin : extra border kept around ``extent``, as a fraction of its width / height.
    layers : layer names to return, from :data:`LAYERS`.

    Returns
    -------
    dict layer -> (x, y), each (N,) float64 metres, NaN separating polylines; empty arrays when nothing
    of the layer lies in the rectangle.
    """
    unknown = set(layers) - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown basemap layers {sorted(unknown)}; choose from {LAYERS}")
    x_min, x_max, y_min, y_max = extent
    pad_x = (x_max - x_min) * margin
    pad_y = (y_max - y_min) * margin
    projected = _projected_layers(proj)
    result = {}
    for layer in layers:
        x, y = projected[layer]
        with np.errstate(invalid="ignore"):
            inside = (x >= x_min - pad_x) & (x <= x_max + pad_x) & (y >= y_min - pad_y) & (y <= y_max + pad_y)
        cut_x = np.where(inside, x, np.nan)
        cut_y = np.where(inside, y, np.nan)
        result[layer] = _compact_nans(cut_x, cut_y)
    return result


def basemap_for_grid(grid: Grid, margin: float = 0.1,
                     layers: tuple[str, ...] = LAYERS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Outlines in the projected x/y (metres) of ``grid``, cut to its extent plus ``margin``.

    See :func:`basemap_lines`; row 0 of the grid is its southern edge, so the returned y grows northward
    like ``grid.y``.
    """
    return basemap_lines(grid.proj, grid.extent(), margin=margin, layers=layers)
