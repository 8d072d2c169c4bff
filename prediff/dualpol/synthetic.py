"""Synthetic dual-polarisation corpus: drop size distributions in evolving storms -> ZH, ZDR, KDP, rain rate.

Physics (S-band, wavelength 10.7 cm; every relation is evaluated per drop size and integrated over the drop
size distribution, diameters 0.05-8 mm in 0.05 mm bins; formulas and sources in ``docs/dualpol.md``):

* **DSD** — normalised gamma (Testud et al. 2001; Bringi & Chandrasekar 2001, eq. 7.62):
  ``N(D) = Nw f(mu) (D/D0)^mu exp(-(3.67 + mu) D/D0)``, ``f(mu) = 6 (3.67 + mu)^(mu+4) / (3.67^4 Gamma(mu+4))``,
  D in mm, N in mm^-1 m^-3, Nw in mm^-1 m^-3, D0 the median volume diameter (mm).
* **Drop shape** — Brandes et al. (2002) axis ratio ``r(D) = 0.9951 + 0.0251 D - 0.03644 D^2 + 0.005303 D^3
  - 0.0002492 D^4`` (capped at 1), oblate spheroids with vertical symmetry axis.
* **Scattering** — Rayleigh scattering by spheroids (Bringi & Chandrasekar 2001, sec. 2.2): depolarisation
  factors ``L_v`` (symmetry axis) and ``L_h = (1 - L_v) / 2``; polarisability ``alpha_j = 1 / (L_j + 1/(eps-1))``.
  Reflectivity factor ``Z_j = int N(D) D^6 (V_p/V_D)^2 |alpha_j|^2 / (9 |K_w|^2) dD`` (mm^6 m^-3), which is the
  sixth moment for water spheres; ``ZH = 10 log10 Z_h`` and ``ZDR = 10 log10 (Z_h / Z_v)``.
  ``KDP = (180/pi) 1e3 lambda Re int N(D) (k^2 / 4 pi) V_p (alpha_h - alpha_v) dD`` (deg/km), the Rayleigh
  forward-scattering amplitudes; for rain it reproduces Bringi & Chandrasekar's ``KDP ~ (180/lambda) 1e-3 C W
  (1 - r_m)`` with ``C ~ 3.75`` (tested).
* **Rain rate** — ``R = 6 pi 1e-4 int v(D) D^3 N(D) dD`` (mm/h) with the Atlas et al. (1973) fall speed
  ``v(D) = 9.65 - 10.3 exp(-0.6 D)`` m/s; liquid water content ``W = (pi/6) 1e-3 int D^3 N(D) dD`` (g m^-3).
* **Ice aloft (7 km, above the ~4.5 km summer melting layer of Nanjing)** — low-density snow aggregates:
  melted-equivalent DSD, density 0.2 g cm^-3, axis ratio 0.8, Maxwell Garnett ice-in-air permittivity. This gives
  ZH about 6.5 dB below the melted equivalent (Smith 1984), ZDR ~ 0.2 dB and KDP near 0.

Storms (one *process* per ``data_dir``): convective cells (Gaussian cores, radius 6-20 km) that are born, grow
and decay (``sin`` life cycle of 60-240 minutes) while moving with a steering wind plus their own drift, over
advected, slowly evolving stratiform rain (smooth random fields). Storm intensity sets the DSD (stronger rain:
larger D0 and Nw), with independent smooth DSD fluctuations so that ZDR carries information that ZH alone does
not. Each cell's **updraft** starts 18 minutes before its rain reaches 1 km and dies when the rain peaks; its
strength is the cell's peak intensity. The updraft leaves two dual-pol signatures that precede the reflectivity
growth (Kumjian et al. 2014, J. Appl. Meteor. Climatol. 53, 1820; Snyder et al. 2015, Wea. Forecasting 30,
1819): a **ZDR / KDP column** at 7 km (supercooled drops lofted above the melting layer, :func:`lofted_drops`)
and **size sorting** in the rain below (larger, fewer drops at nearly the same ZH: a high ZDR for the ZH,
:func:`size_sorted_dsd`). The ice aloft of a cell leads its rain below by 12 minutes. Heights: 1 km rain, 3 km
rain with on average slightly smaller and more numerous drops plus independent smooth DSD changes (evaporation,
coalescence, break-up between the two levels), 7 km snow (plus the lofted drops). The rain rate file is the 1 km
rain rate.

Determinism: process ``p`` of a seed draws from ``SeedSequence(seed, spawn_key=(p,))``, so a corpus of 4
processes is the first 4 processes of a corpus of 40 with the same seed, grid size and frame count.
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.special import gamma as gamma_function

from prediff.dualpol.reader import (FRAME_MINUTES, HEIGHTS, RAIN, VALID_RANGES, VARIABLES, field_directory,
                                    field_key, frame_name, process_name)
from prediff.errors import ConfigError
from prediff.io_utils import atomic_path

#: S-band radar wavelength (m) of NJU-CPOL.
WAVELENGTH_M = 0.107
#: Complex permittivity of liquid water at S-band near 10 degC (Ray 1972).
WATER_PERMITTIVITY = complex(80.2, 17.3)
#: Complex permittivity of solid ice at S-band (Warren 1984).
ICE_PERMITTIVITY = complex(3.17, 0.003)
ICE_DENSITY_G_CM3 = 0.917
#: Drop diameter bins (mm): centres and width.
DIAMETER_STEP_MM = 0.05
DIAMETERS_MM = np.arange(DIAMETER_STEP_MM, 8.0 + 1e-9, DIAMETER_STEP_MM)
#: Side of the simulated domain (km); a grid of n pixels has pixels of DOMAIN_KM / n km (release: 1 km).
DOMAIN_KM = 256.0
#: Pixels below this storm intensity are dry ("no echo": 0 dBZ, 0 dB, 0 deg/km, 0 mm/h).
RAIN_THRESHOLD_INTENSITY = 0.06
#: Frames (6 min each) by which a cell's updraft precedes its rain at 1 km: ZDR / KDP columns appear 10-20 min
#: before the reflectivity core intensifies (Kumjian et al. 2014; Snyder et al. 2015).
UPDRAFT_LEAD_FRAMES = 3
#: Updraft core radius as a fraction of the rain core's.
UPDRAFT_RADIUS_FRACTION = 0.6
#: Relative D0 increase of size-sorted rain per unit updraft strength (at constant reflectivity, see
#: :func:`size_sorted_dsd`).
SIZE_SORTING_D0_GAIN = 0.4
#: Updraft strength above which supercooled drops are lofted to 7 km (a ZDR column is drawn).
COLUMN_UPDRAFT_MIN = 0.1


def dielectric_factor(permittivity: complex) -> complex:
    """``K = (eps - 1) / (eps + 2)``; ``|K_w|^2 ~ 0.93`` for water."""
    return (permittivity - 1.0) / (permittivity + 2.0)


def snow_permittivity(density_g_cm3: float) -> complex:
    """Maxwell Garnett permittivity of ice inclusions in air at bulk density ``density_g_cm3`` (g cm^-3)."""
    fraction = density_g_cm3 / ICE_DENSITY_G_CM3
    beta = dielectric_factor(ICE_PERMITTIVITY)
    return (1.0 + 2.0 * fraction * beta) / (1.0 - fraction * beta)


def normalised_gamma_dsd(diameters_mm, nw, d0_mm, mu) -> np.ndarray:
    """Normalised gamma drop size distribution N(D) (mm^-1 m^-3).

    Parameters
    ----------
    diameters_mm : array of drop (melted-equivalent) diameters D in mm.
    nw : normalised intercept Nw (mm^-1 m^-3); d0_mm : median volume diameter D0 (mm); mu : shape (-).
        All four broadcast together.
    """
    diameters_mm, nw, d0_mm, mu = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64)
                                                        for a in (diameters_mm, nw, d0_mm, mu)))
    f_mu = 6.0 * (3.67 + mu) ** (mu + 4.0) / (3.67 ** 4 * gamma_function(mu + 4.0))
    ratio = diameters_mm / d0_mm
    return nw * f_mu * ratio ** mu * np.exp(-(3.67 + mu) * ratio)


def brandes_axis_ratio(diameters_mm) -> np.ndarray:
    """Raindrop axis ratio (vertical / horizontal) of Brandes et al. (2002), capped at 1; D in mm."""
    d = np.asarray(diameters_mm, dtype=np.float64)
    ratio = 0.9951 + 0.02510 * d - 0.03644 * d ** 2 + 0.005303 * d ** 3 - 0.0002492 * d ** 4
    return np.minimum(ratio, 1.0)


def atlas_fall_speed(diameters_mm) -> np.ndarray:
    """Raindrop terminal fall speed (m/s) of Atlas et al. (1973), ``9.65 - 10.3 exp(-0.6 D)``, >= 0; D in mm."""
    return np.maximum(9.65 - 10.3 * np.exp(-0.6 * np.asarray(diameters_mm, dtype=np.float64)), 0.0)


def spheroid_depolarisation(axis_ratio) -> tuple[np.ndarray, np.ndarray]:
    """Depolarisation factors (L_h, L_v) of oblate spheroids with vertical symmetry axis; L_h = L_v = 1/3 at r = 1."""
    r = np.clip(np.asarray(axis_ratio, dtype=np.float64), 1e-3, 1.0)
    eccentricity = np.sqrt(np.maximum(1.0 / r ** 2 - 1.0, 0.0))
    safe = np.where(eccentricity > 1e-6, eccentricity, 1.0)
    l_v = np.where(eccentricity > 1e-6,
                   (1.0 + safe ** 2) / safe ** 2 * (1.0 - np.arctan(safe) / safe), 1.0 / 3.0)
    return (1.0 - l_v) / 2.0, l_v


@dataclasses.dataclass(frozen=True)
class Hydrometeor:
    """Scattering properties of one hydrometeor type.

    Attributes
    ----------
    name : ``"rain"`` or ``"snow"``.
    permittivity : complex relative permittivity at S-band.
    density_g_cm3 : bulk density; particles of melted diameter D have diameter D (1 / density)^(1/3).
    axis_ratio : fixed axis ratio, or None for the Brandes et al. (2002) raindrop shapes.
    """

    name: str
    permittivity: complex
    density_g_cm3: float
    axis_ratio: float | None


RAIN_DROPS = Hydrometeor("rain", WATER_PERMITTIVITY, 1.0, None)
SNOW_AGGREGATES = Hydrometeor("snow", snow_permittivity(0.2), 0.2, 0.8)
HYDROMETEORS = {h.name: h for h in (RAIN_DROPS, SNOW_AGGREGATES)}


def _per_particle(hydrometeor: Hydrometeor, diameters_mm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-particle weights that turn N(D) dD into each observable (before summation)."""
    ratio = (brandes_axis_ratio(diameters_mm) if hydrometeor.axis_ratio is None
             else np.full_like(diameters_mm, hydrometeor.axis_ratio))
    l_h, l_v = spheroid_depolarisation(ratio)
    inverse_susceptibility = 1.0 / (hydrometeor.permittivity - 1.0)
    alpha_h = 1.0 / (l_h + inverse_susceptibility)
    alpha_v = 1.0 / (l_v + inverse_susceptibility)
    volume_ratio = 1.0 / hydrometeor.density_g_cm3
    k_water_sq = abs(dielectric_factor(WATER_PERMITTIVITY)) ** 2
    sixth = diameters_mm ** 6 * volume_ratio ** 2 / (9.0 * k_water_sq)
    particle_volume_m3 = math.pi / 6.0 * (diameters_mm * 1e-3) ** 3 * volume_ratio
    wavenumber = 2.0 * math.pi / WAVELENGTH_M
    kdp_weight = (180.0 / math.pi) * 1e3 * WAVELENGTH_M * wavenumber ** 2 / (4.0 * math.pi) * particle_volume_m3
    water = math.pi / 6.0 * 1e-3 * diameters_mm ** 3
    fall = atlas_fall_speed(diameters_mm) if hydrometeor.name == "rain" else np.zeros_like(diameters_mm)
    return {"z_h": sixth * np.abs(alpha_h) ** 2, "z_v": sixth * np.abs(alpha_v) ** 2,
            "kdp": kdp_weight * np.real(alpha_h - alpha_v), "water_content": water,
            "rain_rate": 6.0 * math.pi * 1e-4 * fall * diameters_mm ** 3}


def dsd_observables(nw, d0_mm, mu, hydrometeor: str = "rain") -> dict[str, np.ndarray]:
    """Integrate the scattering relations over a normalised gamma DSD (exact per bin; slow for large fields).

    Parameters
    ----------
    nw, d0_mm, mu : arrays (broadcast together) of Nw (mm^-1 m^-3), D0 (mm), mu (-).
    hydrometeor : ``"rain"`` or ``"snow"`` (melted-equivalent DSD).

    Returns
    -------
    dict of float64 arrays of the broadcast shape: ``z_h``, ``z_v`` (mm^6 m^-3), ``zh_dbz``, ``zdr_db``,
    ``kdp`` (deg/km), ``water_content`` (g m^-3, liquid or ice), ``rain_rate`` (mm/h, 0 for snow).
    """
    if hydrometeor not in HYDROMETEORS:
        raise ConfigError(f"unknown hydrometeor {hydrometeor!r}; choose from {', '.join(HYDROMETEORS)}")
    weights = _per_particle(HYDROMETEORS[hydrometeor], DIAMETERS_MM)
    nw, d0_mm, mu = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (nw, d0_mm, mu)))
    spectrum = normalised_gamma_dsd(DIAMETERS_MM, nw[..., None], d0_mm[..., None], mu[..., None])
    out = {name: (spectrum * weight).sum(axis=-1) * DIAMETER_STEP_MM for name, weight in weights.items()}
    with np.errstate(divide="ignore"):
        out["zh_dbz"] = 10.0 * np.log10(out["z_h"])
        out["zdr_db"] = 10.0 * np.log10(out["z_h"] / out["z_v"])
    return out


#: Grid of the observable look-up tables: D0 (mm) and mu (-).
_TABLE_D0_MM = np.arange(0.5, 3.5 + 1e-9, 0.05)
_TABLE_MU = np.arange(-1.0, 8.0 + 1e-9, 0.5)


@lru_cache(maxsize=None)
def _observable_tables(hydrometeor: str) -> dict[str, RegularGridInterpolator]:
    """Observables per unit Nw on the (D0, mu) grid: every observable is linear in Nw, so Nw factors out."""
    d0, mu = np.meshgrid(_TABLE_D0_MM, _TABLE_MU, indexing="ij")
    values = dsd_observables(1.0, d0, mu, hydrometeor)
    return {name: RegularGridInterpolator((_TABLE_D0_MM, _TABLE_MU), values[name])
            for name in ("z_h", "z_v", "kdp", "water_content", "rain_rate")}


def radar_observables(nw, d0_mm, mu, hydrometeor: str = "rain") -> dict[str, np.ndarray]:
    """Fast :func:`dsd_observables` for fields: bilinear look-up in (D0, mu) tables times Nw.

    Parameters
    ----------
    nw, d0_mm, mu : arrays of one shape (e.g. (H, W)); D0 is clipped to 0.5-3.5 mm and mu to -1-8.

    Returns
    -------
    dict of float64 arrays of that shape: ``z_h``, ``z_v`` (mm^6 m^-3), ``zh_dbz``, ``zdr_db``, ``kdp`` (deg/km),
    ``water_content`` (g m^-3), ``rain_rate`` (mm/h).
    """
    tables = _observable_tables(hydrometeor)
    nw = np.asarray(nw, dtype=np.float64)
    points = np.stack([np.clip(d0_mm, _TABLE_D0_MM[0], _TABLE_D0_MM[-1]),
                       np.clip(mu, _TABLE_MU[0], _TABLE_MU[-1])], axis=-1)
    per_nw = {name: table(points) for name, table in tables.items()}
    with np.errstate(divide="ignore"):
        return {"z_h": nw * per_nw["z_h"], "z_v": nw * per_nw["z_v"],
                "zh_dbz": 10.0 * np.log10(nw * per_nw["z_h"]), "zdr_db": 10.0 * np.log10(per_nw["z_h"] / per_nw["z_v"]),
                "kdp": nw * per_nw["kdp"], "water_content": nw * per_nw["water_content"],
                "rain_rate": nw * per_nw["rain_rate"]}


def combine_populations(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Observables of two particle populations in the same volume (e.g. snow and lofted drops).

    Reflectivity factors (linear, mm^6 m^-3), KDP, water content and rain rate add; ZH and ZDR are recomputed
    from the summed ``z_h`` and ``z_v``. Inputs and output: dicts as returned by :func:`radar_observables`.
    """
    total = {name: first[name] + second[name] for name in ("z_h", "z_v", "kdp", "water_content", "rain_rate")}
    with np.errstate(divide="ignore", invalid="ignore"):
        total["zh_dbz"] = 10.0 * np.log10(total["z_h"])
        total["zdr_db"] = 10.0 * np.log10(total["z_h"] / total["z_v"])
    return total


def size_sorted_dsd(log_nw, d0_mm, updraft) -> tuple[np.ndarray, np.ndarray]:
    """Size sorting under an updraft: larger and fewer drops at (nearly) the same reflectivity.

    Young cells rain few large drops first: the updraft holds the small ones aloft, so the surface DSD has a
    large D0 and a low Nw, i.e. a high ZDR for its ZH (Kumjian & Ryzhkov 2012, J. Atmos. Sci. 69, 2042:
    ZDR enhanced by up to ~1 dB where sparse large drops dominate;
    Kumjian et al. 2014). D0 grows by ``1 + SIZE_SORTING_D0_GAIN updraft`` (0.4) and, since ``Z ~ Nw D0^7`` for a
    normalised gamma DSD, ``log10 Nw`` drops by 7 times the log of that factor, which keeps ZH within a few tenths
    of a dB while ZDR rises (about +0.7 dB at full updraft) and the rain rate falls (``R ~ Nw D0^4.67``).

    Parameters
    ----------
    log_nw : log10 Nw (Nw in mm^-1 m^-3); d0_mm : D0 (mm); updraft : strength in [0, 1]. Arrays broadcast.

    Returns
    -------
    (log_nw, d0_mm) float64 arrays of the broadcast shape.
    """
    factor = 1.0 + SIZE_SORTING_D0_GAIN * np.asarray(updraft, dtype=np.float64)
    return np.asarray(log_nw, dtype=np.float64) - 7.0 * np.log10(factor), np.asarray(d0_mm, dtype=np.float64) * factor


def lofted_drops(updraft) -> dict[str, np.ndarray]:
    """Observables of the supercooled raindrops an updraft lofts above the melting layer (a ZDR column at 7 km).

    Few, large drops (``log10 Nw = 2.0 + 0.6 w``, ``D0 = 1.6 + 1.2 w`` mm, mu = 1; w the updraft strength) give
    ZDR of 2-3 dB and a KDP of a few tenths of deg/km at moderate ZH, where the snow around them has ZDR ~ 0.2 dB
    (ZDR and KDP columns: Kumjian et al. 2014; Snyder et al. 2015). Where ``w < COLUMN_UPDRAFT_MIN`` there are
    none (all observables 0).

    Parameters
    ----------
    updraft : (H, W) updraft strength in [0, 1].

    Returns
    -------
    dict as :func:`radar_observables` (rain rate 0: the drops are held aloft).
    """
    updraft = np.asarray(updraft, dtype=np.float64)
    present = updraft >= COLUMN_UPDRAFT_MIN
    drops = radar_observables(np.where(present, 10.0 ** (2.0 + 0.6 * updraft), 0.0), 1.6 + 1.2 * updraft,
                              np.ones_like(updraft), "rain")
    drops["rain_rate"] = np.zeros_like(updraft)
    return drops


@dataclasses.dataclass(frozen=True)
class ConvectiveCell:
    """One convective cell: an updraft, then a Gaussian rain core with a ``sin`` life cycle, moving at constant velocity.

    Attributes
    ----------
    x0_km, y0_km : position at frame 0 (km from the domain's lower-left corner).
    u_km_frame, v_km_frame : displacement per frame (km).
    birth_frame : frame index at which rain starts at 1 km (may be negative); lifetime_frames : duration of the rain
        life cycle.
    peak : peak intensity in (0, 1], also the peak updraft strength; radius_km : Gaussian e-folding radius of the
        rain core (the updraft core is ``UPDRAFT_RADIUS_FRACTION`` of it).
    """

    x0_km: float
    y0_km: float
    u_km_frame: float
    v_km_frame: float
    birth_frame: float
    lifetime_frames: float
    peak: float
    radius_km: float

    def amplitude(self, frame: float) -> float:
        """Rain-core intensity in [0, peak] at ``frame``: ``peak sin(pi phase)``, 0 outside the life cycle."""
        phase = (frame - self.birth_frame) / self.lifetime_frames
        if not 0.0 <= phase <= 1.0:
            return 0.0
        return self.peak * math.sin(math.pi * phase)

    def updraft(self, frame: float) -> float:
        """Updraft strength in [0, peak] at ``frame``.

        The updraft starts ``UPDRAFT_LEAD_FRAMES`` before the rain reaches 1 km and dies when the rain core peaks
        (the mature stage, when the downdraft takes over): ``peak sin(pi phase)`` over that span. A strong updraft
        announces a strong cell, so its strength is the cell's peak intensity.
        """
        start = self.birth_frame - UPDRAFT_LEAD_FRAMES
        phase = (frame - start) / (UPDRAFT_LEAD_FRAMES + 0.5 * self.lifetime_frames)
        if not 0.0 <= phase <= 1.0:
            return 0.0
        return self.peak * math.sin(math.pi * phase)


def _smooth_noise(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ``sigma_px`` (float64)."""
    field = gaussian_filter(rng.standard_normal((size, size)), sigma_px, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-12)


class _AdvectedNoise:
    """A smooth random field moving with the steering wind and slowly changing (two fields rotated in time)."""

    def __init__(self, rng: np.random.Generator, grid: int, canvas: int, sigma_px: float, period_frames: float):
        self.first = _smooth_noise(rng, canvas, sigma_px)
        self.second = _smooth_noise(rng, canvas, sigma_px)
        self.grid, self.period = grid, period_frames
        self.origin = rng.uniform(0, canvas, size=2)

    def at(self, frame: int, shift_px: tuple[float, float]) -> np.ndarray:
        rows, cols = np.mgrid[0:self.grid, 0:self.grid].astype(np.float64)
        coords = [rows + self.origin[0] - shift_px[1] * frame, cols + self.origin[1] - shift_px[0] * frame]
        angle = 2.0 * math.pi * frame / self.period
        first = map_coordinates(self.first, coords, order=1, mode="grid-wrap")
        second = map_coordinates(self.second, coords, order=1, mode="grid-wrap")
        return math.cos(angle) * first + math.sin(angle) * second


def simulate_process(process: int, n_frames: int = 40, grid_size: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """Simulate one precipitation process.

    Parameters
    ----------
    process : process index (selects the random stream).
    n_frames : frames, 6 minutes apart; grid_size : pixels per side (pixel = 256 km / grid_size).
    seed : corpus seed.

    Returns
    -------
    dict field key -> (n_frames, grid_size, grid_size) float32 in physical units: ``"dBZ@<h>"``, ``"ZDR@<h>"``,
    ``"KDP@<h>"`` for the three heights and ``"rain"`` (1 km rain rate, mm/h). Dry pixels are 0 everywhere.
    """
    if n_frames < 1 or grid_size < 8:
        raise ConfigError(f"need n_frames >= 1 and grid_size >= 8, got {n_frames} and {grid_size}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(process),)))
    pixel_km = DOMAIN_KM / grid_size
    frame_seconds = FRAME_MINUTES * 60.0
    steering = rng.uniform(-14.0, 14.0, size=2) * frame_seconds / 1000.0     # km per frame
    shift_px = (steering[0] / pixel_km, steering[1] / pixel_km)
    cells = []
    for _ in range(1 + rng.poisson(4)):
        lifetime = rng.uniform(10, 40)
        birth = rng.uniform(-0.7 * lifetime, n_frames - 0.3 * lifetime)
        drift = steering + rng.normal(0.0, 2.0, size=2) * frame_seconds / 1000.0
        # place the cell so that it is inside the domain at the middle of its life
        middle = birth + lifetime / 2.0
        centre = rng.uniform(0.15 * DOMAIN_KM, 0.85 * DOMAIN_KM, size=2) - drift * middle
        cells.append(ConvectiveCell(centre[0], centre[1], drift[0], drift[1], birth, lifetime,
                                    rng.uniform(0.55, 1.0), rng.uniform(6.0, 20.0)))
    canvas = grid_size * 2
    stratiform_noise = _AdvectedNoise(rng, grid_size, canvas, 24.0 / pixel_km, rng.uniform(60, 120))
    stratiform_level = rng.uniform(-0.4, 0.6)
    nw_noise = _AdvectedNoise(rng, grid_size, canvas, 10.0 / pixel_km, rng.uniform(40, 80))
    d0_noise = _AdvectedNoise(rng, grid_size, canvas, 8.0 / pixel_km, rng.uniform(40, 80))
    mu_noise = _AdvectedNoise(rng, grid_size, canvas, 16.0 / pixel_km, rng.uniform(40, 80))
    # independent DSD changes between 1 and 3 km (evaporation, coalescence, break-up on the way down)
    fall_nw_noise = _AdvectedNoise(rng, grid_size, canvas, 6.0 / pixel_km, rng.uniform(30, 60))
    fall_d0_noise = _AdvectedNoise(rng, grid_size, canvas, 6.0 / pixel_km, rng.uniform(30, 60))
    mean_mu = rng.uniform(1.5, 4.0)

    centres_km = (np.arange(grid_size) + 0.5) * pixel_km
    x_km, y_km = np.meshgrid(centres_km, centres_km)
    keys = [field_key(v, h) for h in HEIGHTS for v in VARIABLES] + [RAIN]
    out = {key: np.zeros((n_frames, grid_size, grid_size), dtype=np.float32) for key in keys}

    def convective(frame: float) -> tuple[np.ndarray, np.ndarray]:
        intensity = np.zeros((grid_size, grid_size))
        updraft = np.zeros((grid_size, grid_size))
        for cell in cells:
            amplitude, strength = cell.amplitude(frame), cell.updraft(frame)
            if amplitude <= 0.0 and strength <= 0.0:
                continue
            distance_sq = ((x_km - cell.x0_km - cell.u_km_frame * frame) ** 2
                           + (y_km - cell.y0_km - cell.v_km_frame * frame) ** 2)
            intensity = np.maximum(intensity, amplitude * np.exp(-distance_sq / (2.0 * cell.radius_km ** 2)))
            updraft_radius_km = UPDRAFT_RADIUS_FRACTION * cell.radius_km
            updraft = np.maximum(updraft, strength * np.exp(-distance_sq / (2.0 * updraft_radius_km ** 2)))
        return intensity, updraft

    for frame in range(n_frames):
        stratiform = 0.35 * np.clip(stratiform_noise.at(frame, shift_px) * 0.5 + stratiform_level, 0.0, 1.0)
        fields_by_height = {}
        # ice aloft of a cell leads its rain below: the upper level sees the life cycle 12 minutes (2 frames) ahead;
        # the updraft (one field for all heights) leads the rain by UPDRAFT_LEAD_FRAMES
        (conv_now, updraft), (conv_ahead, _) = convective(frame), convective(frame + 2.0)
        for height in HEIGHTS:
            conv = conv_ahead if height == "7.0km" else conv_now
            intensity = 1.0 - (1.0 - conv) * (1.0 - stratiform)
            convective_share = conv / np.maximum(conv + stratiform, 1e-6)
            log_nw = 3.1 + 0.9 * intensity + 0.25 * nw_noise.at(frame, shift_px)
            d0 = 0.85 + 1.2 * intensity + 0.12 * d0_noise.at(frame, shift_px)
            mu = mean_mu + 1.0 * mu_noise.at(frame, shift_px)
            wet = intensity > RAIN_THRESHOLD_INTENSITY
            if height == "7.0km":
                # the share of condensate lofted above the melting layer grows with the updraft (convective share)
                snow = radar_observables(10.0 ** log_nw * (0.15 + 0.5 * convective_share), d0, mu, "snow")
                obs = combine_populations(snow, lofted_drops(updraft))
                wet = wet | (updraft >= COLUMN_UPDRAFT_MIN)
            else:
                log_nw, d0 = size_sorted_dsd(log_nw, d0, updraft)
                if height == "3.0km":
                    log_nw = log_nw + 0.05 + 0.15 * fall_nw_noise.at(frame, shift_px)
                    d0 = d0 * (0.95 + 0.06 * fall_d0_noise.at(frame, shift_px))
                obs = radar_observables(10.0 ** log_nw, d0, mu, "rain")
            fields_by_height[height] = (obs, wet)
        for height, (obs, wet) in fields_by_height.items():
            for variable, name in (("dBZ", "zh_dbz"), ("ZDR", "zdr_db"), ("KDP", "kdp")):
                low, high = VALID_RANGES[variable]
                values = np.where(wet, np.clip(obs[name], low, high), 0.0)
                out[field_key(variable, height)][frame] = values
        rain_obs, rain_wet = fields_by_height["1.0km"]
        out[RAIN][frame] = np.where(rain_wet, np.clip(rain_obs["rain_rate"], *VALID_RANGES[RAIN]), 0.0)
    return out


def save_frame(path: Path, frame: np.ndarray) -> None:
    """Write one (H, W) frame as a ``.npy`` file atomically."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, frame, allow_pickle=False)


def write_corpus(root: str | Path, processes: Iterable[int] = range(4), n_frames: int = 40, grid_size: int = 256,
                 seed: int = 0, dtype: str = "float32") -> list[int]:
    """Simulate processes and write them in the NJU-CPOL layout (see :mod:`prediff.dualpol.reader`).

    Parameters
    ----------
    root : dataset root to create (``NJU_CPOL_update2308/`` and ``NJU_CPOL_kdpRain/`` go inside).
    processes : process indices to simulate (``data_dir_NNN``).
    n_frames, grid_size, seed : see :func:`simulate_process`.
    dtype : ``"float32"`` (as the release) or ``"float16"`` (half the size; the shipped corpus).

    Returns
    -------
    The process indices written.
    """
    if dtype not in ("float32", "float16"):
        raise ConfigError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    written = []
    for process in processes:
        fields = simulate_process(process, n_frames=n_frames, grid_size=grid_size, seed=seed)
        for key, frames in fields.items():
            directory = field_directory(root, key) / process_name(process)
            for index, frame in enumerate(frames):
                save_frame(directory / frame_name(index), frame.astype(dtype))
        written.append(int(process))
    return written
