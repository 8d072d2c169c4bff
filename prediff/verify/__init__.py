"""Verification: scores of deterministic and ensemble nowcasts, and the classic baselines to compare with.

One module per concern (formulas and conventions in ``docs/verification.md``):

* :mod:`~prediff.verify.fields` — array conventions: VIL pixels, NaN / 255 = missing, ``(..., T, H, W)``;
* :mod:`~prediff.verify.categorical` — contingency counts and CSI / POD / SUCR / BIAS / HSS / ETS / HK, pooled;
* :mod:`~prediff.verify.continuous` — MSE, MAE, SSIM;
* :mod:`~prediff.verify.probabilistic` — CRPS, spread-skill, rank histogram, Brier / reliability / ROC;
* :mod:`~prediff.verify.neighbourhood` — block max-pooling ("any event in the window") and FSS;
* :mod:`~prediff.verify.by_lead_time` — :class:`ScoreAccumulator`, every score of one method, streamed;
* :mod:`~prediff.verify.baselines` — persistence, optical-flow extrapolation, STEPS (``get_baseline``);
* :mod:`~prediff.verify.reference` — the MindEarth reference's metrics, for parity.

Every score streams as ``*_init`` / ``*_accum`` / ``*_merge`` / ``*_compute`` (the pysteps pattern). Nothing here
imports MindSpore; pysteps is imported only when a baseline runs.
"""

from prediff.verify.baselines import BASELINES, get_baseline
from prediff.verify.by_lead_time import ScoreAccumulator
from prediff.verify.categorical import (categorical_accum, categorical_compute, categorical_init, categorical_merge,
                                        contingency_scores, reference_legacy_bias)
from prediff.verify.continuous import continuous_accum, continuous_compute, continuous_init, continuous_merge
from prediff.verify.neighbourhood import fss_accum, fss_compute, fss_init, fss_merge
from prediff.verify.probabilistic import (crps_accum, crps_compute, crps_init, crps_merge, ensemble_mean,
                                          ensemble_spread, exceedance_accum, exceedance_compute, exceedance_init,
                                          exceedance_merge, exceedance_probability, rank_histogram_accum,
                                          rank_histogram_compute, rank_histogram_init, rank_histogram_merge,
                                          spread_skill_accum, spread_skill_compute, spread_skill_init,
                                          spread_skill_merge)
from prediff.verify.reference import reference_metric_outputs

__all__ = [
    "BASELINES", "ScoreAccumulator", "categorical_accum", "categorical_compute", "categorical_init",
    "categorical_merge", "contingency_scores", "continuous_accum", "continuous_compute", "continuous_init",
    "continuous_merge", "crps_accum", "crps_compute", "crps_init", "crps_merge", "ensemble_mean", "ensemble_spread",
    "exceedance_accum", "exceedance_compute", "exceedance_init", "exceedance_merge", "exceedance_probability",
    "fss_accum", "fss_compute", "fss_init", "fss_merge", "get_baseline", "rank_histogram_accum",
    "rank_histogram_compute", "rank_histogram_init", "rank_histogram_merge", "reference_legacy_bias",
    "reference_metric_outputs", "spread_skill_accum", "spread_skill_compute", "spread_skill_init",
    "spread_skill_merge",
]
