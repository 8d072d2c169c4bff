"""Classic nowcasting baselines, chosen by name: persistence, optical-flow extrapolation and a STEPS ensemble.

``get_baseline("persistence")``, ``get_baseline("extrapolation", motion_method="DARTS")``,
``get_baseline("steps", n_members=8, seed=0)`` return forecasters with
``forecast(context, n_lead_times=6)``. Input: the context frames, (C, H, W) VIL pixels 0-255 (SEVIR-LR: C = 7,
10 minutes apart, oldest first; NaN / 255 = missing). Output: float32 VIL pixels, (T, H, W) for deterministic
baselines and (M, T, H, W) for ensembles, lead time t at (t + 1) * 10 minutes after the last context frame.

Transforms (pysteps conventions, Pulkkinen et al. 2019):

* Motion (``"LK"`` Lucas-Kanade or ``"DARTS"``, :func:`pysteps.motion.get_method`) is estimated on the context
  converted to kg m^-2 (:func:`prediff.data.vil.vil_pixels_to_kg_m2`) and then to decibels,
  ``10 log10(VIL)``, with a rain threshold of :data:`RAIN_THRESHOLD_PIXEL` = 16 (the lowest SEVIR threshold,
  0.154 kg m^-2) and no-rain pixels set 5 dB below it (``pysteps.utils.transformation.dB_transform``).
  Missing context pixels are treated as no rain.
* Extrapolation advects the *last context frame in VIL pixels* along that motion (semi-Lagrangian, bilinear;
  :func:`pysteps.nowcasts.extrapolation.forecast`). Pixel values are already logarithmic in VIL above pixel 18
  (X = 38.9 ln VIL + 83.9), so no further transform is needed; pixels advected in from outside the domain
  are 0 (no VIL).
* STEPS (:func:`pysteps.nowcasts.steps.forecast`) runs on the dB field (a roughly Gaussian, log-transformed
  field, as STEPS needs), with AR(2) on the last 3 context frames, 6 cascade levels, non-parametric noise,
  BPS velocity perturbations (3 km pixels, 10-minute steps), incremental rain mask and CDF probability
  matching. Members are mapped back dB -> kg m^-2 (below the rain threshold: 0) -> VIL pixels
  (:func:`prediff.data.vil.kg_m2_to_vil_pixels`, so member pixels are whole numbers); pixels STEPS advects in
  from outside the domain (NaN) become 0, as in the extrapolation. ``seed`` fixes the ensemble. A context
  without rain in its last 3 frames gives an all-zero ensemble.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from prediff.data.layout import MISSING_PIXEL
from prediff.data.vil import kg_m2_to_vil_pixels, vil_pixels_to_kg_m2
from prediff.errors import ConfigError, DataError

#: VIL pixel below which a pixel is "no rain" for the motion and STEPS transforms (lowest SEVIR threshold).
RAIN_THRESHOLD_PIXEL = 16
#: Distance below the rain threshold (dB) given to no-rain pixels in the dB field (pysteps' convention).
NO_RAIN_OFFSET_DB = 5.0
#: SEVIR-LR grid: 3 km pixels, 10-minute frames.
KILOMETRES_PER_PIXEL = 3.0
FRAME_MINUTES = 10
MOTION_METHODS = ("LK", "DARTS")


def _check_context(context, minimum_frames: int) -> np.ndarray:
    context = np.asarray(context)
    if context.ndim != 3 or context.shape[0] < minimum_frames:
        raise DataError(f"context must be (C, H, W) VIL pixels with at least {minimum_frames} frames, "
                        f"got shape {context.shape}")
    return context


def _check_lead_times(n_lead_times: int) -> int:
    if int(n_lead_times) < 1:
        raise ConfigError(f"n_lead_times must be >= 1, got {n_lead_times}")
    return int(n_lead_times)


def _rain_pixels(context: np.ndarray) -> np.ndarray:
    """Context as float64 VIL pixels with missing pixels (NaN / 255) set to 0 (no rain)."""
    pixels = np.asarray(context, dtype=np.float64)
    return np.where(np.isfinite(pixels) & (pixels != MISSING_PIXEL), pixels, 0.0)


def _rain_threshold_db() -> float:
    return float(10.0 * np.log10(vil_pixels_to_kg_m2(RAIN_THRESHOLD_PIXEL)))


def vil_pixels_to_db(pixels: np.ndarray) -> np.ndarray:
    """VIL pixels (missing already removed) -> dB of kg m^-2, no-rain pixels at threshold - 5 dB; float64."""
    kg_m2 = vil_pixels_to_kg_m2(pixels).astype(np.float64)
    threshold_db = _rain_threshold_db()
    with np.errstate(divide="ignore"):
        decibels = 10.0 * np.log10(kg_m2)
    return np.where(pixels >= RAIN_THRESHOLD_PIXEL, decibels, threshold_db - NO_RAIN_OFFSET_DB)


def db_to_vil_pixels(decibels: np.ndarray) -> np.ndarray:
    """dB of kg m^-2 -> float32 VIL pixels (whole numbers); below the rain threshold or NaN -> 0."""
    # NaN is what STEPS' advection brings in from outside the domain: no information, so no rain
    with np.errstate(invalid="ignore"):
        rain = decibels >= _rain_threshold_db()
    kg_m2 = np.where(rain, 10.0 ** (np.where(rain, decibels, 0.0) / 10.0), 0.0)
    return kg_m2_to_vil_pixels(kg_m2).astype(np.float32)


def estimate_motion(context, motion_method: str = "LK") -> np.ndarray:
    """Advection field of a context sequence.

    Parameters
    ----------
    context : (C, H, W) VIL pixels, oldest first, C >= 2; NaN / 255 = missing (treated as no rain).
    motion_method : ``"LK"`` (Lucas-Kanade, fast) or ``"DARTS"`` (spectral, ~1 s on 128x128).

    Returns
    -------
    (2, H, W) float64 motion in pixels per frame interval: [0] = x (column) component, [1] = y (row) component.
    """
    from pysteps import motion

    method = motion_method.upper()
    if method not in MOTION_METHODS:
        raise ConfigError(f"unknown motion method {motion_method!r}; choose one of {', '.join(MOTION_METHODS)}")
    context = _check_context(context, 2)
    decibels = vil_pixels_to_db(_rain_pixels(context))
    with contextlib.redirect_stdout(io.StringIO()):
        if method == "LK":
            velocity = motion.get_method("LK")(decibels, verbose=False)
        else:
            velocity = motion.get_method("DARTS")(decibels, verbose=False)
    return np.asarray(velocity, dtype=np.float64)


class Persistence:
    """Every lead time repeats the last context frame (exactly, missing pixels included)."""

    name = "persistence"
    is_ensemble = False

    def forecast(self, context, n_lead_times: int = 6) -> np.ndarray:
        """Return (T, H, W) float32 VIL pixels: ``context[-1]`` repeated ``n_lead_times`` times."""
        context = _check_context(context, 1)
        last = context[-1].astype(np.float32)
        return np.repeat(last[None], _check_lead_times(n_lead_times), axis=0)


class Extrapolation:
    """Optical-flow extrapolation: motion from the context, semi-Lagrangian advection of the last frame.

    Parameters
    ----------
    motion_method : ``"LK"`` or ``"DARTS"`` (see :func:`estimate_motion`).
    """

    name = "extrapolation"
    is_ensemble = False

    def __init__(self, motion_method: str = "LK"):
        if motion_method.upper() not in MOTION_METHODS:
            raise ConfigError(f"unknown motion method {motion_method!r}; choose one of {', '.join(MOTION_METHODS)}")
        self.motion_method = motion_method.upper()

    def forecast(self, context, n_lead_times: int = 6) -> np.ndarray:
        """Return (T, H, W) float32 VIL pixels advected from ``context[-1]`` (context (C, H, W), C >= 2)."""
        from pysteps import nowcasts

        context = _check_context(context, 2)
        n_lead_times = _check_lead_times(n_lead_times)
        velocity = estimate_motion(context, self.motion_method)
        advected = nowcasts.get_method("extrapolation")(_rain_pixels(context[-1:])[0], velocity, n_lead_times,
                                                         extrap_kwargs={"outval": 0.0})
        return np.clip(advected, 0.0, MISSING_PIXEL - 1).astype(np.float32)


class StepsEnsemble:
    """STEPS ensemble nowcast (Bowler et al. 2006; Seed et al. 2013) through pysteps.

    Parameters
    ----------
    n_members : ensemble size M.
    seed : seed of all random draws (noise, velocity perturbations); same seed + same context = same ensemble.
    motion_method : ``"LK"`` or ``"DARTS"``.
    n_cascade_levels : number of spatial scales of the cascade.
    """

    name = "steps"
    is_ensemble = True

    def __init__(self, n_members: int = 8, seed: int = 0, motion_method: str = "LK", n_cascade_levels: int = 6):
        if int(n_members) < 1:
            raise ConfigError(f"n_members must be >= 1, got {n_members}")
        if motion_method.upper() not in MOTION_METHODS:
            raise ConfigError(f"unknown motion method {motion_method!r}; choose one of {', '.join(MOTION_METHODS)}")
        self.n_members = int(n_members)
        self.seed = int(seed)
        self.motion_method = motion_method.upper()
        self.n_cascade_levels = int(n_cascade_levels)

    def forecast(self, context, n_lead_times: int = 6) -> np.ndarray:
        """Return (M, T, H, W) float32 VIL pixels (whole numbers) from a (C, H, W) context, C >= 3."""
        from pysteps import nowcasts

        context = _check_context(context, 3)
        n_lead_times = _check_lead_times(n_lead_times)
        pixels = _rain_pixels(context)
        height, width = context.shape[1:]
        if not (pixels[-3:] >= RAIN_THRESHOLD_PIXEL).any():
            return np.zeros((self.n_members, n_lead_times, height, width), dtype=np.float32)
        velocity = estimate_motion(context, self.motion_method)
        decibels = vil_pixels_to_db(pixels[-3:])
        with contextlib.redirect_stdout(io.StringIO()):
            members = nowcasts.get_method("steps")(
                decibels, velocity, n_lead_times, n_ens_members=self.n_members,
                n_cascade_levels=self.n_cascade_levels, precip_thr=_rain_threshold_db(),
                kmperpixel=KILOMETRES_PER_PIXEL, timestep=FRAME_MINUTES, noise_method="nonparametric",
                vel_pert_method="bps", mask_method="incremental", probmatching_method="cdf", seed=self.seed)
        return db_to_vil_pixels(np.asarray(members))


#: Baselines by name; ``get_baseline`` instantiates them.
BASELINES = {"persistence": Persistence, "extrapolation": Extrapolation, "steps": StepsEnsemble}


def get_baseline(name: str, **options):
    """Return the baseline forecaster called ``name`` (persistence, extrapolation, steps), built with ``options``.

    Raises
    ------
    ConfigError for an unknown name or unknown option.
    """
    key = name.lower()
    if key not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    try:
        return BASELINES[key](**options)
    except TypeError as error:
        raise ConfigError(f"bad options {sorted(options)} for baseline {key!r}: {error}") from None
