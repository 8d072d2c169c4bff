"""Targets for knowledge-alignment guidance: the future average intensity each member is steered to.

Every target is in [0, 1] mean-intensity units — VIL pixel / 255 averaged over the future frames (T, H, W) —
the units the alignment network predicts, and is clipped to [0, 1]. Kinds:

* ``absolute``: a fixed mean intensity, given in VIL pixels, in kg m^-2 (converted through SEVIR's VIL
  encoding, :func:`prediff.data.vil.kg_m2_to_vil_pixels`) or directly in [0, 1] units.
* ``climatology``: mu + k * sigma of the climatological distribution of future-window average intensity
  (:class:`IntensityStats`, computed once from training windows and saved next to the checkpoints).
* ``context``: a multiple of the observed context frames' average intensity (available at forecast time).
* ``oracle``: a multiple of the *observed future's* average intensity — the reference's evaluation target
  ("oracle*2" = 2 x the ground truth mean). It needs the answer, so it is for evaluation only.

:func:`parse_target` reads the command-line spelling of each kind; :meth:`TargetSpec.resolve` turns a
spec into one value per member.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from prediff.errors import ConfigError, DataError
from prediff.io_utils import atomic_path

#: File name of the climatological intensity statistics, saved beside the checkpoints.
INTENSITY_STATS_FILE = "intensity_stats.json"

KINDS = ("absolute", "climatology", "context", "oracle")

# patterns apply to the lower-cased text with all white space removed
_UNSIGNED = r"(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?"
_CLIMATOLOGY = re.compile(rf"^mu(?:(?P<sign>[+-])(?P<k>{_UNSIGNED})?\*?sigma)?$")
_ABSOLUTE = re.compile(rf"^mean=(?P<value>[+-]?{_UNSIGNED})(?P<unit>px|pixels?|kg|kg/?m2|kgm\^?-2|unit)?$")
_MULTIPLE = re.compile(rf"^(?P<kind>context|oracle)(?:\*(?P<factor>{_UNSIGNED}))?$")


@dataclasses.dataclass(frozen=True)
class IntensityStats:
    """Climatology of the average intensity of future windows, [0, 1] units (VIL pixel / 255).

    Attributes
    ----------
    mu : mean over windows of each window's average intensity.
    sigma : standard deviation (ddof = 1) over windows of the average intensity.
    n : number of windows.
    source : where the windows came from (dataset, split, dates), free text.
    """

    mu: float
    sigma: float
    n: int
    source: str = ""

    def __post_init__(self):
        for name in ("mu", "sigma"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataError(f"intensity statistics field {name} must be a finite number, got {value!r}")
        if self.sigma < 0 or int(self.n) < 1:
            raise DataError(f"intensity statistics need sigma >= 0 and n >= 1, got sigma={self.sigma}, n={self.n}")

    def save(self, path) -> Path:
        """Write the statistics as JSON (atomically); ``path`` may be a directory (uses
        :data:`INTENSITY_STATS_FILE` inside it). Returns the file written."""
        path = Path(path)
        if path.is_dir():
            path = path / INTENSITY_STATS_FILE
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path) -> "IntensityStats":
        """Read statistics written by :meth:`save`; ``path`` may be the directory holding the file."""
        path = Path(path)
        if path.is_dir():
            path = path / INTENSITY_STATS_FILE
        if not path.is_file():
            raise DataError(f"intensity statistics file {path} does not exist; compute it with "
                            "prediff.diffusion.targets.intensity_stats_from_windows(...) and save it there")
        try:
            fields = json.loads(path.read_text())
            return cls(mu=float(fields["mu"]), sigma=float(fields["sigma"]), n=int(fields["n"]),
                       source=str(fields.get("source", "")))
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"intensity statistics file {path} is unreadable ({error}); it must be JSON with "
                            "keys mu, sigma, n, source — recompute and save it") from error


def intensity_stats_from_windows(windows: Iterable[np.ndarray], units: str = "pixel",
                                 source: str = "") -> IntensityStats:
    """Climatology of the average intensity of future windows.

    Parameters
    ----------
    windows : iterable of arrays, each one window ``(T, H, W)`` / ``(T, H, W, 1)`` or a batch of windows
        ``(N, T, H, W, 1)`` (NTHWC); values in VIL pixels 0-255 (``units="pixel"``) or [0, 1]
        (``units="unit"``). Every value counts, as in the reference (its windows have no missing pixels).
    units : ``"pixel"`` or ``"unit"``.
    source : description stored with the statistics.

    Returns
    -------
    IntensityStats with mu, sigma (ddof = 1; 0 for a single window) in [0, 1] units.
    """
    if units not in ("pixel", "unit"):
        raise ConfigError(f"units must be 'pixel' (VIL 0-255) or 'unit' ([0, 1]), got {units!r}")
    divisor = 255.0 if units == "pixel" else 1.0
    count, mean, m2 = 0, 0.0, 0.0
    for window in windows:
        values = np.asarray(window, dtype=np.float64)
        if values.ndim == 5:
            averages = values.reshape(values.shape[0], -1).mean(axis=1) / divisor
        elif values.ndim in (3, 4):
            averages = np.array([values.mean() / divisor])
        else:
            raise DataError(f"a target window must be (T, H, W), (T, H, W, 1) or a batch (N, T, H, W, 1), "
                            f"got shape {values.shape}")
        for average in averages:
            # Welford's update: a long stream of windows without a float32 or cancellation-prone sum
            count += 1
            delta = average - mean
            mean += delta / count
            m2 += delta * (average - mean)
    if count == 0:
        raise DataError("no target windows were given; intensity statistics need at least one window")
    sigma = math.sqrt(m2 / (count - 1)) if count > 1 else 0.0
    return IntensityStats(mu=float(mean), sigma=float(sigma), n=count, source=source)


def _mean_intensity(frames: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(frames, dtype=np.float64)
    if values.ndim < 2:
        raise DataError(f"{name} must be a batch of frames (B, T, H, W, C) in [0, 1] units, got shape {values.shape}")
    return values.reshape(values.shape[0], -1).mean(axis=1)


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """How to choose the guidance target.

    Attributes
    ----------
    kind : ``"absolute"``, ``"climatology"``, ``"context"`` or ``"oracle"``.
    value : absolute: the intensity in [0, 1] units; climatology: k in mu + k sigma;
        context / oracle: the multiplication factor.
    """

    kind: str
    value: float

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"unknown target kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if not math.isfinite(self.value):
            raise ConfigError(f"the target value must be finite, got {self.value}")

    def describe(self) -> str:
        """The spec in the command-line spelling (``parse_target(spec.describe()) == spec``)."""
        if self.kind == "absolute":
            return f"mean={self.value!r}unit"
        if self.kind == "climatology":
            return f"mu{'+' if self.value >= 0 else ''}{self.value!r}sigma"
        return f"{self.kind}*{self.value!r}"

    def resolve(self, batch: int, *, stats: IntensityStats | None = None, context: np.ndarray | None = None,
                future: np.ndarray | None = None) -> np.ndarray:
        """One target per member, [0, 1] units, clipped to [0, 1].

        Parameters
        ----------
        batch : number of members B.
        stats : climatology (required for ``"climatology"``).
        context : (B, T_in, H, W, C) observed context frames in [0, 1] units (required for ``"context"``).
        future : (B, T_out, H, W, C) observed future frames in [0, 1] units (required for ``"oracle"``).

        Returns
        -------
        (B,) float32 target average intensity.
        """
        if self.kind == "absolute":
            values = np.full(batch, self.value)
        elif self.kind == "climatology":
            if stats is None:
                raise DataError(f"target {self.describe()!r} needs climatological intensity statistics "
                                f"({INTENSITY_STATS_FILE} beside the checkpoints); compute them or use an "
                                "absolute target such as mean=40")
            values = np.full(batch, stats.mu + self.value * stats.sigma)
        else:
            frames = context if self.kind == "context" else future
            if frames is None:
                what = "context frames" if self.kind == "context" else "observed future frames (evaluation only)"
                raise DataError(f"target {self.describe()!r} needs the {what}")
            values = self.value * _mean_intensity(frames, self.kind)
            if values.shape[0] != batch:
                if values.shape[0] != 1:
                    raise DataError(f"the {self.kind} frames hold {values.shape[0]} sequences for {batch} members; "
                                    "give one sequence or one per member")
                values = np.repeat(values, batch)
        return np.clip(values, 0.0, 1.0).astype(np.float32)


def absolute_target_value(value: float, unit: str = "pixel") -> float:
    """Convert an absolute mean intensity to [0, 1] units (not clipped).

    Parameters
    ----------
    value : the intensity.
    unit : ``"pixel"`` (VIL pixel 0-255), ``"kg"`` (kg m^-2: the VIL pixel level that SEVIR's encoding
        assigns to that value; since the encoding is nonlinear, the mean of the pixels of a field is not
        the pixel of its mean VIL, so read this as "the field averages the pixel level of X kg m^-2"), or
        ``"unit"`` ([0, 1]).
    """
    if unit == "pixel":
        return float(value) / 255.0
    if unit == "kg":
        from prediff.data.vil import kg_m2_to_vil_pixels

        return float(kg_m2_to_vil_pixels(np.array([value]))[0]) / 255.0
    if unit == "unit":
        return float(value)
    raise ConfigError(f"unknown intensity unit {unit!r}; use 'pixel', 'kg' or 'unit'")


def parse_target(text: str) -> TargetSpec:
    """Parse the command-line spelling of a guidance target.

    Accepted forms (spaces and case ignored)::

        mu+4sigma   mu-1sigma   mu+0.5*sigma   mu          climatological mean + k standard deviations
        mean=40     mean=40px                              VIL pixel 0-255
        mean=2.5kg  mean=2.5kg/m2                          kg m^-2 (through SEVIR's VIL encoding)
        mean=0.15unit                                      [0, 1] units
        context*2   context                                2 x (1 x) the context's average intensity
        oracle*2    oracle                                 2 x the observed future (evaluation only)

    Raises
    ------
    ConfigError when the text matches none of the forms.
    """
    cleaned = re.sub(r"\s+", "", str(text).strip().lower())
    match = _CLIMATOLOGY.match(cleaned)
    if match:
        k = float(match.group("k") or 1.0) if match.group("sign") else 0.0
        return TargetSpec("climatology", -k if match.group("sign") == "-" else k)
    match = _ABSOLUTE.match(cleaned)
    if match:
        unit_text = match.group("unit") or "pixel"
        unit = "kg" if unit_text.startswith("kg") else ("unit" if unit_text == "unit" else "pixel")
        return TargetSpec("absolute", absolute_target_value(float(match.group("value")), unit))
    match = _MULTIPLE.match(cleaned)
    if match:
        return TargetSpec(match.group("kind"), float(match.group("factor") or 1.0))
    raise ConfigError(f"cannot read the guidance target {text!r}; use one of mu+4sigma, mu-1sigma, mean=40 "
                      "(VIL pixels), mean=2.5kg (kg m^-2), mean=0.15unit, context*2, oracle*2")
