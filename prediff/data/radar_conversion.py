"""Radar quantity -> VIL-equivalent: the physics of ``prediff data import``.

A 2-D radar composite (reflectivity or surface rain rate) has no vertical profile, so true VIL cannot be
computed from it. We build a *VIL-equivalent*: the Greene & Clark (1972) integral

    VIL [kg m^-2] = 3.44e-6 * integral( Z^(4/7) dh ),   Z in mm^6 m^-3, h in m,

evaluated for a column of depth ``column_depth_km`` in which the reflectivity equals the composite's value
(``VIL = 3.44e-6 * Z^(4/7) * depth_m``). Reflectivity is first capped at 56 dBZ, as the WSR-88D VIL
algorithm does to limit hail contamination. Rain rate enters through Marshall-Palmer ``Z = 200 R^1.6``;
accumulations are turned into a mean rain rate over their accumulation period first.

The result is fine for driving a network trained on SEVIR VIL (it has the right units, range and spatial
structure) but must not be compared with radar-measured VIL: the assumed column depth scales it linearly.
See ``docs/radar_import.md``.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np

from prediff.errors import DataError

Quantity = Literal["dbz", "rainrate", "accumulation"]
QUANTITIES: tuple[str, ...] = ("dbz", "rainrate", "accumulation")

#: Greene & Clark (1972) coefficient, kg m^-2 per (m * (mm^6 m^-3)^(4/7)).
GREENE_CLARK_COEFFICIENT = 3.44e-6
GREENE_CLARK_EXPONENT = 4.0 / 7.0
#: Default depth of the assumed uniform reflectivity column, km.
DEFAULT_COLUMN_DEPTH_KM = 5.0
#: Reflectivity cap against hail contamination (WSR-88D VIL convention), dBZ.
HAIL_CAP_DBZ = 56.0
#: Marshall-Palmer Z-R relation Z = a R^b (Z in mm^6 m^-3, R in mm h^-1).
MARSHALL_PALMER_A = 200.0
MARSHALL_PALMER_B = 1.6

# Units strings, normalised by _normalise_units, -> (quantity, factor to the quantity's canonical unit:
# dBZ, mm h^-1 or mm).
_UNITS: dict[str, tuple[str, float]] = {
    "dbz": ("dbz", 1.0),
    "db": ("dbz", 1.0),
    "mm/h": ("rainrate", 1.0),
    "mmh-1": ("rainrate", 1.0),
    "mm/hr": ("rainrate", 1.0),
    "mmhr-1": ("rainrate", 1.0),
    "mmhour-1": ("rainrate", 1.0),
    "mm/hour": ("rainrate", 1.0),
    "kgm-2s-1": ("rainrate", 3600.0),
    "kg/m2/s": ("rainrate", 3600.0),
    "kgm-2h-1": ("rainrate", 1.0),
    "mms-1": ("rainrate", 3600.0),
    "mm/s": ("rainrate", 3600.0),
    "ms-1": ("rainrate", 3.6e6),
    "m/s": ("rainrate", 3.6e6),
    "mm": ("accumulation", 1.0),
    "kgm-2": ("accumulation", 1.0),
    "kg/m2": ("accumulation", 1.0),
    "m": ("accumulation", 1000.0),
}


def _normalise_units(units: str) -> str:
    text = units.strip().lower().replace("**", "").replace("^", "")
    return re.sub(r"[\s.*]+", "", text)


def quantity_from_units(units: str | None) -> tuple[str, float]:
    """Recognise the radar quantity from a units string (NetCDF ``units`` attribute or pysteps ``unit``).

    Parameters
    ----------
    units : e.g. ``"dBZ"``, ``"mm/h"``, ``"mm h-1"``, ``"kg m-2 s-1"``, ``"mm"``, ``"kg m-2"``.

    Returns
    -------
    (quantity, factor) : quantity is ``"dbz"``, ``"rainrate"`` or ``"accumulation"``; multiplying the data
        by ``factor`` gives dBZ, mm h^-1 or mm respectively.

    Raises
    ------
    DataError
        When the units are missing or unknown; the message tells the user to state ``--quantity``.
    """
    if not units:
        raise DataError("the radar data carry no units, so the quantity cannot be detected; "
                        "state it with --quantity dbz|rainrate|accumulation")
    key = _normalise_units(units)
    if key not in _UNITS:
        raise DataError(f"unrecognised radar units {units!r}; supported are dBZ, mm/h (mm h-1, kg m-2 s-1, ...) "
                        "and mm (kg m-2) accumulations. State the quantity with --quantity "
                        "dbz|rainrate|accumulation (values are then taken as dBZ, mm/h or mm)")
    return _UNITS[key]


def dbz_to_z(dbz) -> np.ndarray:
    """Logarithmic reflectivity to linear reflectivity factor.

    Parameters
    ----------
    dbz : array_like, any shape, dBZ; NaN = missing.

    Returns
    -------
    np.ndarray, same shape, float64, Z in mm^6 m^-3 (NaN kept).
    """
    return np.power(10.0, np.asarray(dbz, dtype=np.float64) / 10.0)


def rainrate_to_dbz(rain_rate, a: float = MARSHALL_PALMER_A, b: float = MARSHALL_PALMER_B) -> np.ndarray:
    """Rain rate to equivalent reflectivity through ``Z = a R^b`` (Marshall-Palmer by default).

    Parameters
    ----------
    rain_rate : array_like, any shape, mm h^-1; NaN = missing. Values <= 0 mean no rain.
    a, b : Z-R coefficients (Z in mm^6 m^-3, R in mm h^-1).

    Returns
    -------
    np.ndarray, same shape, float64 dBZ; -inf where the rain rate is <= 0, NaN where it is NaN.
    """
    rate = np.asarray(rain_rate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = a * np.power(np.where(rate > 0, rate, 0.0), b)
        return np.where(np.isnan(rate), np.nan, 10.0 * np.log10(z))


def accumulation_to_rainrate(accumulation, accumulation_minutes: float) -> np.ndarray:
    """Precipitation accumulated over ``accumulation_minutes`` to the mean rain rate over that period.

    Parameters
    ----------
    accumulation : array_like, any shape, mm (= kg m^-2); NaN = missing.
    accumulation_minutes : length of the accumulation period, minutes (> 0).

    Returns
    -------
    np.ndarray, same shape, float64, mm h^-1.
    """
    if not accumulation_minutes or accumulation_minutes <= 0:
        raise DataError(f"the accumulation period must be positive minutes, got {accumulation_minutes!r}; "
                        "give the time step of the accumulations with --timestep")
    return np.asarray(accumulation, dtype=np.float64) * (60.0 / float(accumulation_minutes))


def dbz_to_vil_kg_m2(dbz, column_depth_km: float = DEFAULT_COLUMN_DEPTH_KM,
                     hail_cap_dbz: float = HAIL_CAP_DBZ) -> np.ndarray:
    """VIL-equivalent of a uniform reflectivity column (Greene & Clark 1972).

    ``VIL = 3.44e-6 * Z^(4/7) * column_depth_m`` with Z from ``min(dbz, hail_cap_dbz)``.
    E.g. 30 dBZ over 5 km gives 0.89 kg m^-2, 50 dBZ gives 12.4 kg m^-2.

    Parameters
    ----------
    dbz : array_like, any shape, dBZ (-inf = no echo); NaN = missing.
    column_depth_km : depth of the assumed column of constant reflectivity, km (> 0).
    hail_cap_dbz : reflectivities above this are taken as this value.

    Returns
    -------
    np.ndarray, same shape, float64, kg m^-2 (NaN kept).
    """
    if not column_depth_km > 0:
        raise DataError(f"--column-depth-km must be positive, got {column_depth_km!r}")
    capped = np.minimum(np.asarray(dbz, dtype=np.float64), hail_cap_dbz)
    return GREENE_CLARK_COEFFICIENT * np.power(dbz_to_z(capped), GREENE_CLARK_EXPONENT) * column_depth_km * 1000.0


def to_vil_kg_m2(values, quantity: Quantity, column_depth_km: float = DEFAULT_COLUMN_DEPTH_KM,
                 accumulation_minutes: float | None = None, zr_a: float = MARSHALL_PALMER_A,
                 zr_b: float = MARSHALL_PALMER_B) -> np.ndarray:
    """Convert a radar field in its canonical unit to VIL-equivalent.

    Parameters
    ----------
    values : array_like, any shape; dBZ (``quantity="dbz"``), mm h^-1 (``"rainrate"``) or mm accumulated over
        ``accumulation_minutes`` (``"accumulation"``). NaN = missing.
    quantity : which of the three the values are.
    column_depth_km : assumed column depth of :func:`dbz_to_vil_kg_m2`, km.
    accumulation_minutes : accumulation period, minutes; required for ``"accumulation"``.
    zr_a, zr_b : Z-R coefficients used for rain rates and accumulations.

    Returns
    -------
    np.ndarray, same shape, float64, VIL-equivalent in kg m^-2; NaN where the input is NaN.
    """
    if quantity == "dbz":
        dbz = np.asarray(values, dtype=np.float64)
    elif quantity == "rainrate":
        dbz = rainrate_to_dbz(values, zr_a, zr_b)
    elif quantity == "accumulation":
        dbz = rainrate_to_dbz(accumulation_to_rainrate(values, accumulation_minutes), zr_a, zr_b)
    else:
        raise DataError(f"unknown radar quantity {quantity!r}; choose one of {', '.join(QUANTITIES)}")
    return dbz_to_vil_kg_m2(dbz, column_depth_km)
