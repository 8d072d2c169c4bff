"""Baseline verification of one forecast window for the app (no Streamlit here).

Runs the classic baselines of :mod:`prediff.verify.baselines` on the context of a window and scores them
against the observed target with :mod:`prediff.verify.categorical` and :mod:`prediff.verify.continuous`. PreDiff
ensembles join the same table once the sampling pipeline is available in the app.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from prediff.data.vil import SEVIR_THRESHOLDS
from prediff.verify.baselines import get_baseline
from prediff.verify.categorical import categorical_accum, categorical_compute, categorical_init
from prediff.verify.continuous import continuous_accum, continuous_compute, continuous_init

DETERMINISTIC_BASELINES = ("persistence", "extrapolation")


def baseline_forecasts(context, n_lead_times: int, methods: Sequence[str] = DETERMINISTIC_BASELINES) -> dict:
    """Forecast a window with deterministic baselines.

    Parameters
    ----------
    context : (C, H, W) VIL pixels 0-255 (255 = missing), oldest first, 10 minutes apart.
    n_lead_times : T, frames to forecast.
    methods : baseline names (see :data:`prediff.verify.baselines.BASELINES`).

    Returns
    -------
    dict method -> (T, H, W) float32 VIL pixels.
    """
    return {name: get_baseline(name).forecast(context, n_lead_times=n_lead_times) for name in methods}


def score_table(forecasts: dict, observation, thresholds: Sequence[float] = SEVIR_THRESHOLDS) -> pd.DataFrame:
    """CSI at each threshold, CSI-M and MSE / MAE (over all lead times) of each forecast.

    Parameters
    ----------
    forecasts : method -> (T, H, W) VIL pixels.
    observation : (T, H, W) observed VIL pixels (255 = missing, ignored).
    thresholds : VIL pixel thresholds.

    Returns
    -------
    pd.DataFrame indexed by method with columns ``CSI-<thr>``, ``CSI-M``, ``MSE (pixel²)``, ``MAE (pixel)``.
    """
    observation = np.asarray(observation)
    rows = {}
    for name, forecast in forecasts.items():
        n_lead_times = forecast.shape[0]
        categorical = categorical_init(thresholds, n_lead_times=n_lead_times)
        categorical_accum(categorical, forecast, observation)
        continuous = continuous_init(n_lead_times=n_lead_times, ssim=False)
        continuous_accum(continuous, forecast, observation)
        scores = categorical_compute(categorical)["all_lead_times"]
        errors = continuous_compute(continuous)
        row = {f"CSI-{int(t)}": float(scores["CSI"][0, k]) for k, t in enumerate(thresholds)}
        row["CSI-M"] = float(scores["CSI-M"][0])
        row["MSE (pixel²)"] = float(np.asarray(errors["all_lead_times"]["MSE_pixel"]))
        row["MAE (pixel)"] = float(np.asarray(errors["all_lead_times"]["MAE_pixel"]))
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
