"""Rain-rate estimation from reflectivity and differential reflectivity (no KDP): power laws in Z and ZDR.

Every estimator here is one generalised power law

    ``R = 10^intercept * prod_i x_i^{c_i}``,  i.e.  ``log10 R = intercept + sum_i c_i * (value_i / 10)``

where each feature is a field key in dB (``"dBZ@1.0km"``: ``value / 10 = log10 Z`` with Z in mm^6 m^-3;
``"ZDR@1.0km"``: ``value / 10 = log10 zdr`` with zdr the *linear* differential reflectivity). Hence

* **Marshall-Palmer** ``Z = 200 R^1.6`` is ``c = 1/1.6``, ``intercept = -log10(200)/1.6``;
* a **fitted Z-R** ``Z = a R^b`` comes from least squares of log10 R on log10 Z over the training pixels
  (the estimator's own direction, which minimises the log error of R), reported as ``a = 10^(-intercept/c)``,
  ``b = 1/c``;
* **R(Z, ZDR)** ``R = a Z^b zdr^c`` is least squares of log10 R on (log10 Z, log10 zdr);
* the **multi-height** law over ZH and ZDR at 1, 3 and 7 km (six features) is what the Shapley analysis explains.

Pixels used for fitting: every feature finite, ZH > 0 dBZ and observed rain >= ``min_rain`` (0.1 mm/h).
Prediction: NaN where a feature is NaN, 0 mm/h where the first reflectivity feature is <= 0 dBZ ("no echo"),
clipped to the customary 0-200 mm/h range.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from prediff.dualpol.reader import (DEFAULT_TEST_PROCESSES, HEIGHTS, RAIN, VALID_RANGES, list_processes,
                                    load_frames, split_processes, variable_of)
from prediff.dualpol.scores import (RAIN_CLASSES, categorical_accum, categorical_compute, categorical_init,
                                    continuous_accum, continuous_compute, continuous_init)
from prediff.errors import ConfigError, DataError

#: Default lowest observed rain rate (mm/h) that takes part in fitting.
MIN_RAIN_MM_H = 0.1


@dataclasses.dataclass(frozen=True)
class PowerLawRain:
    """``log10 R = intercept + sum_i coefficients[i] * fields[features[i]] / 10`` (R in mm/h, fields in dB).

    Attributes
    ----------
    name : label used in tables.
    features : field keys in dB, the first one a reflectivity (``dBZ@...``).
    coefficients : exponent of each feature's linear quantity (Z in mm^6 m^-3, zdr linear).
    intercept : log10 of the prefactor.
    """

    name: str
    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float

    def __post_init__(self):
        if not self.features or variable_of(self.features[0]) != "dBZ":
            raise ConfigError(f"the first feature of a rain power law must be a reflectivity 'dBZ@<height>', got "
                              f"{self.features}")
        for key in self.features:
            if variable_of(key) not in ("dBZ", "ZDR"):
                raise ConfigError(f"feature {key!r} is not in dB; rain power laws use ZH and ZDR only")
        if len(self.coefficients) != len(self.features):
            raise ConfigError("give one coefficient per feature")

    def predict(self, fields: Mapping[str, np.ndarray]) -> np.ndarray:
        """Rain rate (mm/h) from fields: dict key -> array (any shape, one for all) in dB; returns float64."""
        missing = [key for key in self.features if key not in fields]
        if missing:
            raise DataError(f"{self.name} needs field(s) {', '.join(missing)}; read them with the dataset keys")
        values = [np.asarray(fields[key], dtype=np.float64) for key in self.features]
        log_rain = self.intercept + sum(c * v / 10.0 for c, v in zip(self.coefficients, values))
        with np.errstate(over="ignore"):
            rain = np.clip(10.0 ** log_rain, *VALID_RANGES[RAIN])
        return np.where(values[0] > 0.0, rain, np.where(np.isnan(log_rain), np.nan, 0.0))

    def zr_form(self) -> tuple[float, float]:
        """(a, b) of ``Z = a R^b`` for a single-reflectivity law."""
        if len(self.features) != 1:
            raise ConfigError(f"{self.name} has {len(self.features)} features; the Z-R form needs exactly one")
        c = self.coefficients[0]
        return 10.0 ** (-self.intercept / c), 1.0 / c

    def describe(self) -> str:
        """Human-readable law, e.g. ``R = 0.0365 Z^0.625 zdr^-1.2``."""
        terms = " ".join(f"{'Z' if variable_of(k) == 'dBZ' else 'zdr'}[{k.split('@')[-1]}]^{c:.3g}"
                         for k, c in zip(self.features, self.coefficients))
        return f"R = {10.0 ** self.intercept:.4g} {terms}"


def marshall_palmer(reflectivity_key: str = "dBZ@1.0km") -> PowerLawRain:
    """The Marshall-Palmer law ``Z = 200 R^1.6`` on ``reflectivity_key``."""
    return PowerLawRain("Marshall-Palmer", (reflectivity_key,), (1.0 / 1.6,), -math.log10(200.0) / 1.6)


def fitting_pixels(fields: Mapping[str, np.ndarray], features: Sequence[str], min_rain: float = MIN_RAIN_MM_H
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Design matrix and target of the log-log least squares.

    Parameters
    ----------
    fields : key -> array (one shape) in physical units, including ``"rain"`` (mm/h).
    features : field keys in dB (the first a reflectivity).

    Returns
    -------
    design : (P, 1 + F) float64, a column of ones then value / 10 of each feature; target : (P,) log10 R.
    """
    rain = np.asarray(fields[RAIN], dtype=np.float64).ravel()
    values = np.stack([np.asarray(fields[key], dtype=np.float64).ravel() for key in features], axis=1)
    usable = np.isfinite(rain) & (rain >= min_rain) & np.isfinite(values).all(axis=1) & (values[:, 0] > 0)
    if usable.sum() <= len(features):
        raise DataError(f"only {int(usable.sum())} pixels with rain >= {min_rain} mm/h and valid "
                        f"{', '.join(features)}; "
                        "fit on more (or wetter) processes")
    design = np.concatenate([np.ones((int(usable.sum()), 1)), values[usable] / 10.0], axis=1)
    return design, np.log10(rain[usable])


def fit_power_law(fields: Mapping[str, np.ndarray], features: Sequence[str], name: str,
                  min_rain: float = MIN_RAIN_MM_H) -> PowerLawRain:
    """Least-squares fit of ``log10 R`` on the features' ``value / 10`` over the usable pixels (see module doc)."""
    design, target = fitting_pixels(fields, features, min_rain)
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    return PowerLawRain(name, tuple(features), tuple(float(c) for c in solution[1:]), float(solution[0]))


def fit_estimators(fields: Mapping[str, np.ndarray], height: str = "1.0km",
                   min_rain: float = MIN_RAIN_MM_H) -> list[PowerLawRain]:
    """Marshall-Palmer, the fitted Z-R and the fitted R(Z, ZDR) at one height, for side-by-side evaluation."""
    zh, zdr = f"dBZ@{height}", f"ZDR@{height}"
    return [marshall_palmer(zh), fit_power_law(fields, (zh,), "fitted Z-R", min_rain),
            fit_power_law(fields, (zh, zdr), "R(Z, ZDR)", min_rain)]


def score_estimators(estimators: Sequence[PowerLawRain], fields: Mapping[str, np.ndarray],
                     window_sizes: Sequence[int] = (1,)) -> dict[str, dict]:
    """MSE, MRE, RBIAS and the rain-class CSI of each estimator against ``fields["rain"]``.

    Parameters
    ----------
    estimators : the laws to compare; fields : key -> (N, H, W) physical units, with ``"rain"`` (mm/h).
    window_sizes : neighbourhood windows of the categorical scores (1 = pixel-wise).

    Returns
    -------
    name -> {"continuous": :func:`~prediff.dualpol.scores.continuous_compute` output (MRE over rain >= 0.1
    mm/h), "categorical": :func:`~prediff.dualpol.scores.categorical_compute` output for :data:`RAIN_CLASSES`}.
    """
    observation = np.asarray(fields[RAIN], dtype=np.float64)[:, None]
    results = {}
    for law in estimators:
        prediction = law.predict(fields)[:, None]
        continuous = continuous_init(1, min_observation=MIN_RAIN_MM_H)
        continuous_accum(continuous, prediction, observation)
        categorical = categorical_init(RAIN_CLASSES, 1, window_sizes)
        categorical_accum(categorical, prediction, observation)
        results[law.name] = {"continuous": continuous_compute(continuous),
                             "categorical": categorical_compute(categorical)}
    return results


def qpe_experiment(root, height: str = "1.0km", test_processes: Iterable[int] = DEFAULT_TEST_PROCESSES,
                   min_rain: float = MIN_RAIN_MM_H) -> dict:
    """Fit the three estimators on the train processes of ``root`` and score them on the test processes.

    Returns
    -------
    dict: ``estimators`` (list of :class:`PowerLawRain`), ``scores`` (:func:`score_estimators` on the test
    split), ``train_processes`` and ``test_processes`` (lists).
    """
    if height not in HEIGHTS:
        raise ConfigError(f"unknown height {height!r}; choose from {', '.join(HEIGHTS)}")
    keys = (f"dBZ@{height}", f"ZDR@{height}", RAIN)
    train, test = split_processes(list_processes(root, keys[0]), test_processes)
    if not train or not test:
        raise DataError(f"{root} needs processes in both splits (test = {sorted(test_processes)}), found "
                        f"{len(train)} train and {len(test)} test processes")
    estimators = fit_estimators(load_frames(root, keys, train), height, min_rain)
    return {"estimators": estimators, "scores": score_estimators(estimators, load_frames(root, keys, test)),
            "train_processes": train, "test_processes": test}
