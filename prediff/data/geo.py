"""Georeferencing of SEVIR-style image patches: the one place that maps pixels to map coordinates.

A SEVIR catalog row carries a PROJ string (``proj``, for SEVIR always the Lambert azimuthal equal-area
projection ``+proj=laea +lat_0=38 +lon_0=-98 +units=m +a=6370997.0 +ellps=sphere``) and the geographic
coordinates of the patch's lower-left and upper-right *corners*. The patch is a regular grid in that
projection; pixel centres sit half a pixel inside the corners.

Row order follows SEVIR (its tutorial draws frames with ``origin="lower"``): **row 0 is the southern
edge**, so ``y`` increases with the row index and ``x`` with the column index.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from prediff.errors import DataError

SEVIR_PROJ = "+proj=laea +lat_0=38 +lon_0=-98 +units=m +a=6370997.0 +ellps=sphere"
EARTH_RADIUS_M = 6370997.0


def laea_proj_for_center(center_lat: float, center_lon: float) -> str:
    """PROJ string of a LAEA projection on SEVIR's sphere centred on (``center_lat``, ``center_lon``) in degrees.

    Used for imported radar outside SEVIR's domain, where a projection centred far away would distort shapes.
    """
    return (f"+proj=laea +lat_0={center_lat:.6f} +lon_0={center_lon:.6f} +units=m "
            f"+a={EARTH_RADIUS_M} +ellps=sphere")


@lru_cache(maxsize=32)
def _transformer(proj: str, inverse: bool):
    import pyproj

    try:
        crs = pyproj.CRS.from_proj4(proj)
    except pyproj.exceptions.CRSError as error:
        raise DataError(f"cannot interpret the projection {proj!r} ({error}); the catalog's 'proj' column "
                        "must be a PROJ string such as " + SEVIR_PROJ) from None
    geographic = crs.geodetic_crs
    if inverse:
        return pyproj.Transformer.from_crs(crs, geographic, always_xy=True)
    return pyproj.Transformer.from_crs(geographic, crs, always_xy=True)


def project(proj: str, lon, lat):
    """Geographic (lon, lat) in degrees -> projected (x, y) in metres."""
    return _transformer(proj, False).transform(lon, lat)


def unproject(proj: str, x, y):
    """Projected (x, y) in metres -> geographic (lon, lat) in degrees."""
    return _transformer(proj, True).transform(x, y)


@dataclass(frozen=True)
class Grid:
    """A regular patch in a projection.

    Attributes
    ----------
    proj : PROJ string of the projection.
    x : (W,) float64, projected x of the pixel-column centres, metres, increasing eastward.
    y : (H,) float64, projected y of the pixel-row centres, metres, increasing northward (row 0 = south).
    """

    proj: str
    x: np.ndarray
    y: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y.size, self.x.size)

    @property
    def pixel_size_m(self) -> tuple[float, float]:
        """(dy, dx) in metres."""
        return (float(self.y[1] - self.y[0]), float(self.x[1] - self.x[0]))

    def latlon(self) -> tuple[np.ndarray, np.ndarray]:
        """Latitude and longitude of every pixel centre, each (H, W) float64 degrees."""
        xx, yy = np.meshgrid(self.x, self.y)
        lon, lat = unproject(self.proj, xx, yy)
        return np.asarray(lat), np.asarray(lon)

    def extent(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) of the patch's outer edges in metres."""
        dy, dx = self.pixel_size_m
        return (self.x[0] - dx / 2, self.x[-1] + dx / 2, self.y[0] - dy / 2, self.y[-1] + dy / 2)


def grid_from_corners(proj: str, llcrnrlat: float, llcrnrlon: float, urcrnrlat: float, urcrnrlon: float,
                      height: int, width: int) -> Grid:
    """Grid of a ``height`` x ``width`` patch whose outer corners are given in degrees (catalog columns)."""
    x0, y0 = project(proj, llcrnrlon, llcrnrlat)
    x1, y1 = project(proj, urcrnrlon, urcrnrlat)
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        raise DataError(f"the catalog corners ll=({llcrnrlat}, {llcrnrlon}) ur=({urcrnrlat}, {urcrnrlon}) do not "
                        f"span a patch in {proj!r}; check the llcrnr*/urcrnr* columns")
    dx = (x1 - x0) / width
    dy = (y1 - y0) / height
    return Grid(proj, x0 + dx * (np.arange(width) + 0.5), y0 + dy * (np.arange(height) + 0.5))


def corners_for_center(proj: str, center_lat: float, center_lon: float, width_m: float,
                       height_m: float) -> tuple[float, float, float, float]:
    """Corner coordinates (llcrnrlat, llcrnrlon, urcrnrlat, urcrnrlon) in degrees of a ``width_m`` x
    ``height_m`` patch centred on (``center_lat``, ``center_lon``) in projection ``proj``."""
    cx, cy = project(proj, center_lon, center_lat)
    ll_lon, ll_lat = unproject(proj, cx - width_m / 2, cy - height_m / 2)
    ur_lon, ur_lat = unproject(proj, cx + width_m / 2, cy + height_m / 2)
    return float(ll_lat), float(ll_lon), float(ur_lat), float(ur_lon)
