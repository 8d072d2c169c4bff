"""All scores of one forecasting method, streamed window by window and reported by lead time.

:class:`ScoreAccumulator` holds one state of every score module (categorical, continuous, FSS and, for
ensembles, CRPS, spread-skill, rank histogram and exceedance-event scores). A CLI or the app feeds it one
forecast window at a time with :meth:`ScoreAccumulator.update`; memory stays constant over a whole test split,
and accumulators of several workers combine with :meth:`ScoreAccumulator.merge`.

For an ensemble, the deterministic scores (CSI ..., MSE, SSIM, FSS) need a choice, set by
``deterministic_summary`` — say which when quoting them:

* ``"all_members"`` (default): every member is scored as a forecast of its own and the counts / sums are pooled
  over members. This is what the public PreDiff code does (each of ``num_samples_per_context`` samples updates
  the same ``SEVIRSkillScore``, MSE and MAE), so these numbers compare with the paper's;
* ``"mean"`` / ``"median"``: the ensemble mean / median is scored (smoother, so lower CSI at high thresholds);
* ``"member0"``: only the first member.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from prediff.data.vil import SEVIR_THRESHOLDS
from prediff.errors import ConfigError
from prediff.verify import categorical, continuous, neighbourhood, probabilistic
from prediff.verify.fields import as_ensemble_frames, valid_pixels

#: Pool sizes of the published CSI variants (pixel-wise, pool 4, pool 16).
DEFAULT_POOL_SIZES: tuple[int, ...] = (1, 4, 16)
DETERMINISTIC_SUMMARIES = ("all_members", "mean", "median", "member0")


class ScoreAccumulator:
    """Every score of one method, by lead time and over all lead times.

    Parameters
    ----------
    n_lead_times : T, the lead-time axis length of every forecast (SEVIR-LR: 6, i.e. 10..60 min).
    thresholds : event thresholds, VIL pixel 0-255 (default the SEVIR ones).
    pool_sizes : max-pool sizes for the categorical scores (1 = pixel-wise).
    fss_scales : FSS neighbourhood sizes in pixels.
    n_members : ensemble size M for an ensemble method, None for a deterministic one.
    ssim : accumulate SSIM.
    rank_histogram_min_value : see :func:`prediff.verify.probabilistic.rank_histogram_init`.
    seed : seed for the rank histogram's tie splitting.
    deterministic_summary : for ensembles, what the deterministic scores see: ``"all_members"`` (every member,
        pooled), ``"mean"`` (ensemble mean), ``"median"`` or ``"member0"`` (the first member only).
    """

    def __init__(self, n_lead_times: int = 6, thresholds: Sequence[float] = SEVIR_THRESHOLDS,
                 pool_sizes: Sequence[int] = DEFAULT_POOL_SIZES,
                 fss_scales: Sequence[int] = neighbourhood.DEFAULT_FSS_SCALES, n_members: int | None = None,
                 ssim: bool = True, rank_histogram_min_value: float | None = None, seed: int = 0,
                 deterministic_summary: str = "all_members"):
        if deterministic_summary not in DETERMINISTIC_SUMMARIES:
            raise ConfigError(f"unknown deterministic summary {deterministic_summary!r}; choose one of "
                              f"{', '.join(DETERMINISTIC_SUMMARIES)}")
        self.n_lead_times = int(n_lead_times)
        self.n_members = None if n_members is None else int(n_members)
        self.deterministic_summary = deterministic_summary
        self.n_forecasts = 0
        self.states = {
            "categorical": categorical.categorical_init(thresholds, n_lead_times, pool_sizes),
            "continuous": continuous.continuous_init(n_lead_times, ssim=ssim),
            "fss": neighbourhood.fss_init(thresholds, fss_scales, n_lead_times),
        }
        if self.n_members is not None:
            self.states["crps"] = probabilistic.crps_init(self.n_members, n_lead_times)
            self.states["rank_histogram"] = probabilistic.rank_histogram_init(
                self.n_members, n_lead_times, rank_histogram_min_value, seed)
            self.states["exceedance"] = probabilistic.exceedance_init(self.n_members, thresholds, n_lead_times)
            if self.n_members >= 2:
                self.states["spread_skill"] = probabilistic.spread_skill_init(self.n_members, n_lead_times)

    @property
    def is_ensemble(self) -> bool:
        """True when the accumulator scores ensembles."""
        return self.n_members is not None

    def _deterministic_pairs(self, ensemble: np.ndarray, observation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, M, T, H, W), (N, T, H, W) pixels -> the (forecast, observation) pairs the deterministic scores see."""
        if self.deterministic_summary == "all_members":
            return ensemble, np.broadcast_to(observation[:, None], ensemble.shape)
        if self.deterministic_summary == "member0":
            return ensemble[:, 0], observation
        members, valid = valid_pixels(ensemble)
        summary = np.mean(members, axis=1) if self.deterministic_summary == "mean" else np.median(members, axis=1)
        return np.where(valid.all(axis=1), summary, np.nan), observation

    def update(self, forecast, observation) -> None:
        """Score one batch of forecasts.

        Parameters
        ----------
        forecast : VIL pixels, (..., T, H, W) for a deterministic method or (..., M, T, H, W) for an ensemble.
        observation : (..., T, H, W) VIL pixels. NaN or 255 = missing in either.
        """
        n_forecasts = int(np.prod(np.shape(observation)[:-3], dtype=np.int64))
        if self.is_ensemble:
            ensemble, observation = as_ensemble_frames(forecast, observation, self.n_lead_times, self.n_members)
            for name, accum in (("crps", probabilistic.crps_accum),
                                ("rank_histogram", probabilistic.rank_histogram_accum),
                                ("exceedance", probabilistic.exceedance_accum),
                                ("spread_skill", probabilistic.spread_skill_accum)):
                if name in self.states:
                    accum(self.states[name], ensemble, observation)
            forecast, observation = self._deterministic_pairs(ensemble, observation)
        categorical.categorical_accum(self.states["categorical"], forecast, observation)
        continuous.continuous_accum(self.states["continuous"], forecast, observation)
        neighbourhood.fss_accum(self.states["fss"], forecast, observation)
        self.n_forecasts += n_forecasts

    _MERGERS = {"categorical": categorical.categorical_merge, "continuous": continuous.continuous_merge,
                "fss": neighbourhood.fss_merge, "crps": probabilistic.crps_merge,
                "rank_histogram": probabilistic.rank_histogram_merge,
                "exceedance": probabilistic.exceedance_merge, "spread_skill": probabilistic.spread_skill_merge}
    _COMPUTERS = {"continuous": continuous.continuous_compute, "fss": neighbourhood.fss_compute,
                  "crps": probabilistic.crps_compute, "rank_histogram": probabilistic.rank_histogram_compute,
                  "exceedance": probabilistic.exceedance_compute,
                  "spread_skill": probabilistic.spread_skill_compute}

    def merge(self, other: "ScoreAccumulator") -> "ScoreAccumulator":
        """Return a new accumulator holding this one's and ``other``'s data (same configuration)."""
        if set(self.states) != set(other.states) or self.n_members != other.n_members \
                or self.deterministic_summary != other.deterministic_summary:
            raise ConfigError("cannot merge score accumulators of different configurations")
        merged = object.__new__(ScoreAccumulator)
        merged.__dict__.update(self.__dict__)
        merged.states = {name: self._MERGERS[name](state, other.states[name]) for name, state in self.states.items()}
        merged.n_forecasts = self.n_forecasts + other.n_forecasts
        return merged

    def compute(self, reference_compatible: bool = False) -> dict:
        """All scores: ``{"categorical": ..., "continuous": ..., "fss": ..., ["crps", "spread_skill",
        "rank_histogram", "exceedance"]}``, each the ``*_compute`` output of its module (tables
        ``per_lead_time`` and ``all_lead_times``), plus ``n_forecasts``.

        ``reference_compatible`` switches the categorical scores to the MindEarth formulas (parity only).
        """
        results = {name: self._COMPUTERS[name](state) for name, state in self.states.items()
                   if name != "categorical"}
        results["categorical"] = categorical.categorical_compute(self.states["categorical"], reference_compatible)
        results["n_forecasts"] = self.n_forecasts
        return results

    def summary_frame(self):
        """Headline scores as a pandas DataFrame: one row per lead time (minutes) plus a row ``"all"``.

        Columns: ``CSI-M``, ``CSI-M-pool<s>`` for every pool size > 1, ``CSI-<threshold>`` (pixel-wise),
        ``MSE``, ``MAE`` ([0, 1] scale), ``SSIM`` (if accumulated), ``FSS-<threshold>-<scale>px`` and, for
        ensembles, ``CRPS``, ``CRPS_fair`` ([0, 1] scale) and ``spread_skill_ratio``.
        """
        import pandas as pd

        results = self.compute()
        rows = [str(int(m)) for m in results["continuous"]["lead_time_minutes"]] + ["all"]

        def column(per_lead_time, all_lead_times):
            return np.append(np.asarray(per_lead_time, dtype=np.float64), float(all_lead_times))

        cat = results["categorical"]
        columns = {}
        for p, size in enumerate(cat["pool_sizes"]):
            name = "CSI-M" if size == 1 else f"CSI-M-pool{size}"
            columns[name] = column(cat["per_lead_time"]["CSI-M"][p], cat["all_lead_times"]["CSI-M"][p])
        if 1 in list(cat["pool_sizes"]):
            p = list(cat["pool_sizes"]).index(1)
            for k, threshold in enumerate(cat["thresholds"]):
                columns[f"CSI-{threshold:g}"] = column(cat["per_lead_time"]["CSI"][p, k],
                                                       cat["all_lead_times"]["CSI"][p, k])
        cont = results["continuous"]
        for name in ("MSE", "MAE", "SSIM"):
            if name in cont["per_lead_time"]:
                columns[name] = column(cont["per_lead_time"][name], cont["all_lead_times"][name])
        fss = results["fss"]
        for s, scale in enumerate(fss["scales"]):
            for k, threshold in enumerate(fss["thresholds"]):
                columns[f"FSS-{threshold:g}-{scale}px"] = column(fss["per_lead_time"]["FSS"][s, k],
                                                                 fss["all_lead_times"]["FSS"][s, k])
        if "crps" in results:
            for name in ("CRPS", "CRPS_fair"):
                columns[name] = column(results["crps"]["per_lead_time"][name], results["crps"]["all_lead_times"][name])
        if "spread_skill" in results:
            columns["spread_skill_ratio"] = column(results["spread_skill"]["per_lead_time"]["spread_skill_ratio"],
                                                   results["spread_skill"]["all_lead_times"]["spread_skill_ratio"])
        return pd.DataFrame(columns, index=pd.Index(rows, name="lead_time_minutes"))
