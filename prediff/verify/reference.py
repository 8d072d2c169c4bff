"""The MindEarth PreDiff reference's test metrics, reproduced for parity checks.

:func:`reference_metric_outputs` returns the ``metric_*`` arrays of ``parity_small.npz`` (see
``reference/facts.md`` section 7): contingency counts over the whole input, the reference's eps-formulas for
CSI / POD / SUCR, its legacy "bias" transform, and SSIM / MSE / MAE on the [0, 1] scale. Use it to check our
pipeline against published MindEarth numbers; use :mod:`prediff.verify.categorical` (textbook scores) for
anything else.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from prediff.data.vil import SEVIR_THRESHOLDS
from prediff.errors import DataError
from prediff.verify.categorical import categorical_accum, categorical_compute, categorical_init
from prediff.verify.continuous import continuous_accum, continuous_compute, continuous_init


def _unit_nthwc_to_pixels(values, what: str) -> np.ndarray:
    """[0, 1] NTHWC -> (N, C, T, H, W) float32 pixels, converted exactly as the reference does (x / (1/255))."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 5:
        raise DataError(f"{what} must be NTHWC on the [0, 1] scale, got shape {values.shape}")
    # float32 division by float32(1/255) is what the reference does; it differs from x * 255 in the last bit,
    # which decides threshold ties
    return np.moveaxis(values / np.float32(1.0 / 255.0), -1, 1)


def reference_metric_outputs(pred_unit, target_unit, thresholds: Sequence[float] = SEVIR_THRESHOLDS) -> dict:
    """Compute the MindEarth reference's metrics on one set of predictions.

    Parameters
    ----------
    pred_unit, target_unit : (N, T, H, W, C) float on the [0, 1] scale (VIL / 255), not clipped.
    thresholds : VIL pixel thresholds (the reference's ``data.threshold_list``).

    Returns
    -------
    dict of arrays named like ``parity_small.npz``:
    ``metric_hits``, ``metric_misses``, ``metric_fas`` (K,) int64 counts over N, T, H, W, C;
    ``metric_csi``, ``metric_pod``, ``metric_sucr`` (K,) float64 with ``eps = 1e-4`` in the denominators;
    ``metric_bias`` (K,) the legacy ``((h + f) / (h + m + eps) / ln 2) ** 2``; ``metric_<score>_avg`` their means
    over thresholds; ``metric_ssim``, ``metric_mse``, ``metric_mae`` float64 scalars ([0, 1] scale).

    Differences from the reference, none of which occur in its inputs: a NaN pixel is skipped here (the
    reference counts it as a non-event), and so is a value that converts to exactly 255.0 (missing in SEVIR).
    """
    prediction = _unit_nthwc_to_pixels(pred_unit, "pred_unit")
    target = _unit_nthwc_to_pixels(target_unit, "target_unit")
    if prediction.shape != target.shape:
        raise DataError(f"pred_unit shape {np.shape(pred_unit)} differs from target_unit {np.shape(target_unit)}")
    n_lead_times = prediction.shape[-3]
    counts = categorical_init(thresholds, n_lead_times)
    categorical_accum(counts, prediction, target)
    scores = categorical_compute(counts, reference_compatible=True)["all_lead_times"]
    errors = continuous_init(n_lead_times)
    continuous_accum(errors, prediction, target)
    continuous_scores = continuous_compute(errors)["all_lead_times"]
    outputs = {"metric_hits": scores["hits"][0], "metric_misses": scores["misses"][0],
               "metric_fas": scores["false_alarms"][0], "metric_csi": scores["CSI"][0],
               "metric_pod": scores["POD"][0], "metric_sucr": scores["SUCR"][0],
               "metric_bias": scores["reference_legacy_bias"][0]}
    for name in ("csi", "pod", "sucr", "bias"):
        outputs[f"metric_{name}_avg"] = outputs[f"metric_{name}"].mean()
    outputs.update({"metric_ssim": continuous_scores["SSIM"], "metric_mse": continuous_scores["MSE"],
                    "metric_mae": continuous_scores["MAE"]})
    return outputs
