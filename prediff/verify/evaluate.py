"""Streaming, resumable evaluation of several forecasting methods over the windows of a dataset split.

:func:`run_evaluation` reads one window at a time, asks every method for its forecast, and feeds the
forecast and the observed future to that method's :class:`~prediff.verify.by_lead_time.ScoreAccumulator`;
memory does not grow with the split. After every window the accumulators and the list of scored windows are
saved atomically to ``state.pkl`` in the output folder, so an interrupted run continues where it stopped
(windows already scored are skipped, and a larger ``limit`` extends an earlier run). At the end
:func:`write_reports` writes ``scores.json``, ``scores.csv`` and the plots (PNG and one HTML page).

A method is any object with ``n_members`` (None for a deterministic method, else the ensemble size) and
``forecast(context, observed, seed)``: ``context`` (T_in, H, W) and ``observed`` (T_out, H, W) uint8 VIL
pixels (255 = missing; ``observed`` is passed only for oracle guidance targets), ``seed`` an int that differs
per window; it returns VIL pixels (T_out, H, W) or (M, T_out, H, W). Nothing here imports MindSpore; the
PreDiff methods come from :mod:`prediff.pipeline`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from prediff.data.vil import SEVIR_THRESHOLDS
from prediff.errors import ConfigError, DataError
from prediff.io_utils import atomic_path
from prediff.verify.baselines import get_baseline
from prediff.verify.by_lead_time import ScoreAccumulator

STATE_FILE = "state.pkl"
#: Version of the state file layout; a different version is not resumed.
STATE_VERSION = 1


class Method(Protocol):
    """A forecasting method as :func:`run_evaluation` drives it."""

    n_members: int | None

    def forecast(self, context: np.ndarray, observed: np.ndarray, seed: int) -> np.ndarray:
        """(T_out, H, W) or (M, T_out, H, W) VIL pixels from (T_in, H, W) context pixels."""


@dataclasses.dataclass
class BaselineMethod:
    """A baseline of :mod:`prediff.verify.baselines` as an evaluation method.

    Attributes
    ----------
    name : ``"persistence"``, ``"extrapolation"`` or ``"steps"``.
    n_lead_times : frames to forecast.
    n_members : ensemble size for ``"steps"`` (None for the deterministic baselines).
    """

    name: str
    n_lead_times: int = 6
    n_members: int | None = None

    def forecast(self, context: np.ndarray, observed: np.ndarray, seed: int) -> np.ndarray:
        """Baseline forecast in VIL pixels; STEPS draws its ensemble from ``seed``."""
        options = {"n_members": self.n_members, "seed": seed} if self.name == "steps" else {}
        return get_baseline(self.name, **options).forecast(context, self.n_lead_times)


@dataclasses.dataclass
class EvaluationState:
    """What a (possibly interrupted) evaluation has done so far.

    Attributes
    ----------
    settings : what defines the run (methods, members, seed, model hashes ...); a rerun must match.
    done : keys ``"<event_id>:<window>"`` of the scored windows, in order.
    accumulators : one ScoreAccumulator per method.
    """

    settings: dict
    done: list[str]
    accumulators: dict[str, ScoreAccumulator]

    def save(self, out_dir: Path) -> None:
        """Write the state atomically to ``out_dir / state.pkl``."""
        with atomic_path(out_dir / STATE_FILE) as temporary:
            with open(temporary, "wb") as handle:
                pickle.dump({"version": STATE_VERSION, "settings": self.settings, "done": self.done,
                             "accumulators": self.accumulators}, handle, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, out_dir: Path) -> "EvaluationState | None":
        """The state saved in ``out_dir``, or None when there is none."""
        path = out_dir / STATE_FILE
        if not path.is_file():
            return None
        try:
            with open(path, "rb") as handle:
                stored = pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as error:
            raise DataError(f"cannot read the evaluation state {path} ({error}); delete it (or pass --restart) "
                            "to start the evaluation again") from None
        if not isinstance(stored, dict) or stored.get("version") != STATE_VERSION:
            raise DataError(f"{path} was written by another version of the evaluation; pass --restart or choose a "
                            "new --out folder")
        return cls(stored["settings"], list(stored["done"]), stored["accumulators"])


def window_key(event_id: str, window: int) -> str:
    """Key of a window in the state: ``"<event_id>:<window>"``."""
    return f"{event_id}:{int(window)}"


def window_seed(seed: int, number: int) -> int:
    """Per-window seed derived from the run seed and the window's position in the split (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])


def _settings_difference(saved: Mapping, wanted: Mapping) -> list[str]:
    keys = sorted(set(saved) | set(wanted))
    return [f"{key}: saved {saved.get(key)!r}, now {wanted.get(key)!r}" for key in keys
            if saved.get(key) != wanted.get(key)]


#: Suffix of the score row of an ensemble method's ensemble mean.
ENSEMBLE_MEAN_SUFFIX = " (ensemble mean)"


def score_rows(methods: Mapping[str, Method]) -> dict[str, tuple[str, str]]:
    """The rows of the score tables: row name -> (method name, deterministic summary).

    Every method gets a row under its own name (an ensemble's members scored one by one and pooled, as the
    PreDiff paper scores them); an ensemble method gets a second row, ``"<name> (ensemble mean)"``, whose
    deterministic scores (CSI, MSE, SSIM, FSS ...) are those of the ensemble-mean field. Probabilistic scores
    (CRPS, rank histogram, reliability) are the same in both rows.
    """
    rows = {}
    for name, method in methods.items():
        rows[name] = (name, "all_members")
        if method.n_members is not None and method.n_members > 1:
            rows[name + ENSEMBLE_MEAN_SUFFIX] = (name, "mean")
    return rows


def run_evaluation(dataset, methods: Mapping[str, Method], out_dir, *, settings: Mapping[str, Any],
                   limit: int | None = None, restart: bool = False, thresholds: Sequence[float] = SEVIR_THRESHOLDS,
                   seed: int = 0, progress: Callable[[int, int], None] | None = None,
                   after_window: Callable[[str], None] | None = None) -> EvaluationState:
    """Score every method on the windows of ``dataset``, resuming an earlier run in ``out_dir``.

    Parameters
    ----------
    dataset : :class:`prediff.data.sevir.SevirDataset` (its ``window`` gives context / target lengths).
    methods : name -> method (see :class:`Method`), scored in this order.
    out_dir : output folder; ``state.pkl`` there is resumed when its ``settings`` equal these.
    settings : JSON-able description of the run; saved and compared on resume (leave ``limit`` out so that a
        larger limit extends a run).
    limit : score at most the first ``limit`` windows of the split (None = all).
    restart : ignore a saved state and start again.
    thresholds : VIL pixel thresholds of the categorical scores.
    seed : run seed; window n gets :func:`window_seed` (seed, n).
    progress : called as ``progress(done, total)`` after every window (including skipped ones).
    after_window : called with the window key after its state was saved (e.g. to stop a test run midway).

    Returns
    -------
    EvaluationState with one accumulator per row of :func:`score_rows`.

    Raises
    ------
    ConfigError when ``out_dir`` holds a state of different settings (and ``restart`` is False).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = json.loads(json.dumps(dict(settings)))
    state = None if restart else EvaluationState.load(out_dir)
    if state is not None and state.settings != settings:
        differences = "; ".join(_settings_difference(state.settings, settings))
        raise ConfigError(f"{out_dir} holds an evaluation with other settings ({differences}); rerun with the same "
                          "options to resume it, pass --restart to start over, or choose a new --out folder")
    n_lead_times = dataset.window.target
    rows = score_rows(methods)
    if state is None:
        state = EvaluationState(settings, [], {
            row: ScoreAccumulator(n_lead_times=n_lead_times, thresholds=thresholds,
                                  n_members=methods[name].n_members, deterministic_summary=summary)
            for row, (name, summary) in rows.items()})
    elif set(state.accumulators) != set(rows):
        raise ConfigError(f"{out_dir} holds an evaluation scored as {sorted(state.accumulators)}, not "
                          f"{sorted(rows)} (an older version of prediff); pass --restart to start over, or choose "
                          "a new --out folder")
    windows = dataset.windows()
    if limit is not None:
        windows = windows[: max(int(limit), 0)]
    done = set(state.done)
    context_frames = dataset.window.context
    for number, (event_id, k) in enumerate(windows):
        key = window_key(event_id, k)
        if key not in done:
            pixels = dataset.read_window(event_id, k)
            context, observed = pixels[:context_frames], pixels[context_frames:]
            for name, method in methods.items():
                forecast = method.forecast(context, observed, window_seed(seed, number))
                for row, (method_name, _) in rows.items():
                    if method_name == name:
                        state.accumulators[row].update(forecast, observed)
            state.done.append(key)
            done.add(key)
            state.save(out_dir)
            if after_window is not None:
                after_window(key)
        if progress is not None:
            progress(number + 1, len(windows))
    return state


# --------------------------------------------------------------------------------------------------- reports

def _json_ready(value):
    """Arrays -> lists, NaN / inf -> None, numpy scalars -> Python numbers (recursively)."""
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def method_scores(accumulator: ScoreAccumulator) -> dict:
    """JSON-able scores of one method.

    Returns
    -------
    dict with ``n_forecasts``, ``lead_time_minutes``, ``thresholds``; ``by_threshold`` {threshold:
    {CSI, POD, SUCR, BIAS: per lead time list, pixel-wise}}; ``all_lead_times`` headline numbers
    (CSI per threshold, CSI-M, MSE, MAE, SSIM, CRPS); and ``details``, the full
    :meth:`ScoreAccumulator.compute` output.
    """
    results = accumulator.compute()
    categorical = results["categorical"]
    pixelwise = list(categorical["pool_sizes"]).index(1) if 1 in list(categorical["pool_sizes"]) else 0
    by_threshold = {
        f"{threshold:g}": {score: categorical["per_lead_time"][score][pixelwise, k]
                           for score in ("CSI", "POD", "SUCR", "BIAS")}
        for k, threshold in enumerate(categorical["thresholds"])}
    headline = {"CSI-M": categorical["all_lead_times"]["CSI-M"][pixelwise],
                "CSI": {f"{t:g}": categorical["all_lead_times"]["CSI"][pixelwise, k]
                        for k, t in enumerate(categorical["thresholds"])}}
    headline.update({name: results["continuous"]["all_lead_times"][name] for name in ("MSE", "MAE", "SSIM")
                     if name in results["continuous"]["all_lead_times"]})
    if "crps" in results:
        headline["CRPS"] = results["crps"]["all_lead_times"]["CRPS"]
    return _json_ready({"n_forecasts": results["n_forecasts"], "n_members": accumulator.n_members,
                        "lead_time_minutes": categorical["lead_time_minutes"],
                        "thresholds": categorical["thresholds"], "by_threshold": by_threshold,
                        "all_lead_times": headline, "details": results})


def write_reports(state: EvaluationState, out_dir) -> dict[str, Path]:
    """Write ``scores.json``, ``scores.csv`` and the plots of an evaluation state into ``out_dir``.

    ``scores.csv`` stacks every method's :meth:`ScoreAccumulator.summary_frame` (one row per lead time in
    minutes and a row ``all``). Plots: ``csi_by_lead_time``, ``crps_by_lead_time`` (a point forecast's CRPS is
    its MAE, so deterministic methods appear too), ``rank_histograms`` and ``reliability`` (ensembles), each as
    ``.png``, and all of them in ``plots.html`` (plotly; its script is written beside it as ``plotly.min.js``).

    Returns
    -------
    dict name -> path of every file written.
    """
    import pandas as pd

    out_dir = Path(out_dir)
    written = {}
    scores = {"settings": state.settings, "windows": len(state.done),
              "methods": {name: method_scores(acc) for name, acc in state.accumulators.items()}}
    written["scores.json"] = out_dir / "scores.json"
    with atomic_path(written["scores.json"]) as temporary:
        temporary.write_text(json.dumps(scores, indent=1) + "\n")
    frames = [acc.summary_frame().reset_index().assign(method=name) for name, acc in state.accumulators.items()]
    table = pd.concat(frames, ignore_index=True)
    table = table[["method"] + [column for column in table.columns if column != "method"]]
    written["scores.csv"] = out_dir / "scores.csv"
    with atomic_path(written["scores.csv"]) as temporary:
        table.to_csv(temporary, index=False)
    written.update(write_plots(scores["methods"], out_dir))
    return written


def _series(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _plot_data(methods: Mapping[str, dict]) -> dict:
    """Curves of every plot, independent of the plotting library."""
    first = next(iter(methods.values()))
    leads = np.asarray(first["lead_time_minutes"])
    thresholds = list(first["by_threshold"])
    csi = {threshold: {name: _series(scores["by_threshold"][threshold]["CSI"]) for name, scores in methods.items()}
           for threshold in thresholds}
    crps = {}
    for name, scores in methods.items():
        details = scores["details"]
        source = details["crps"]["per_lead_time"]["CRPS"] if "crps" in details \
            else details["continuous"]["per_lead_time"]["MAE"]
        crps[name] = _series(source)
    ensembles = {name: scores for name, scores in methods.items() if "rank_histogram" in scores["details"]}
    ranks = {name: _series(scores["details"]["rank_histogram"]["all_lead_times"]["frequency"])
             for name, scores in ensembles.items()}
    reliability = {}
    for name, scores in ensembles.items():
        exceedance = scores["details"]["exceedance"]
        probability = _series(exceedance["all_lead_times"]["forecast_probability"])
        reliability[name] = {f"{t:g}": (probability, _series(exceedance["all_lead_times"]["observed_frequency"][k]))
                             for k, t in enumerate(exceedance["thresholds"])}
    return {"leads": leads, "thresholds": thresholds, "csi": csi, "crps": crps, "ranks": ranks,
            "reliability": reliability}


def write_plots(methods: Mapping[str, dict], out_dir) -> dict[str, Path]:
    """PNG figures (matplotlib) and one interactive HTML page (plotly) from :func:`method_scores` outputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    out_dir = Path(out_dir)
    data = _plot_data(methods)
    leads, thresholds = data["leads"], data["thresholds"]
    written = {}
    figures = []

    def save_png(figure, stem):
        path = out_dir / f"{stem}.png"
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        written[path.name] = path

    columns = min(3, len(thresholds))
    rows = math.ceil(len(thresholds) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False,
                                 layout="constrained")
    html = make_subplots(rows=rows, cols=columns, subplot_titles=[f"CSI, VIL >= {t}" for t in thresholds])
    for index, threshold in enumerate(thresholds):
        axis = axes[index // columns][index % columns]
        for name, values in data["csi"][threshold].items():
            axis.plot(leads, values, marker="o", label=name)
            html.add_trace(go.Scatter(x=leads, y=values, name=name, legendgroup=name, showlegend=index == 0),
                           row=index // columns + 1, col=index % columns + 1)
        axis.set(title=f"VIL >= {threshold}", xlabel="lead time (min)", ylabel="CSI", ylim=(0, 1))
    axes[0][0].legend(fontsize="small")
    save_png(figure, "csi_by_lead_time")
    html.update_layout(title="CSI by lead time (pixel-wise)")
    figures.append(html)

    figure, axis = plt.subplots(figsize=(5, 3.5))
    html = go.Figure()
    for name, values in data["crps"].items():
        axis.plot(leads, values, marker="o", label=name)
        html.add_trace(go.Scatter(x=leads, y=values, name=name))
    axis.set(title="CRPS (MAE for point forecasts)", xlabel="lead time (min)", ylabel="CRPS, [0, 1] scale")
    axis.legend(fontsize="small")
    save_png(figure, "crps_by_lead_time")
    html.update_layout(title="CRPS by lead time ([0, 1] scale; MAE for point forecasts)",
                       xaxis_title="lead time (min)")
    figures.append(html)

    if data["ranks"]:
        count = len(data["ranks"])
        figure, axes = plt.subplots(1, count, figsize=(4 * count, 3), squeeze=False)
        html = make_subplots(rows=1, cols=count, subplot_titles=list(data["ranks"]))
        for index, (name, frequency) in enumerate(data["ranks"].items()):
            ranks = np.arange(frequency.size)
            axes[0][index].bar(ranks, frequency)
            axes[0][index].axhline(1.0 / frequency.size, color="k", linestyle="--", linewidth=1)
            axes[0][index].set(title=name, xlabel="rank of the observation", ylabel="frequency")
            html.add_trace(go.Bar(x=ranks, y=frequency, name=name), row=1, col=index + 1)
        save_png(figure, "rank_histograms")
        html.update_layout(title="Rank histograms (all lead times)")
        figures.append(html)

        figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.5 * rows), squeeze=False,
                                 layout="constrained")
        html = make_subplots(rows=rows, cols=columns, subplot_titles=[f"VIL >= {t}" for t in thresholds])
        for index, threshold in enumerate(thresholds):
            axis = axes[index // columns][index % columns]
            axis.plot([0, 1], [0, 1], color="k", linestyle="--", linewidth=1)
            for name, curves in data["reliability"].items():
                probability, frequency = curves[threshold]
                axis.plot(probability, frequency, marker="o", label=name)
                html.add_trace(go.Scatter(x=probability, y=frequency, name=name, legendgroup=name,
                                          showlegend=index == 0), row=index // columns + 1, col=index % columns + 1)
            axis.set(title=f"VIL >= {threshold}", xlabel="forecast probability", ylabel="observed frequency",
                     xlim=(0, 1), ylim=(0, 1))
        axes[0][0].legend(fontsize="small")
        save_png(figure, "reliability")
        html.update_layout(title="Reliability (all lead times)")
        figures.append(html)

    path = out_dir / "plots.html"
    body = "\n".join(figure.to_html(full_html=False, include_plotlyjs=False) for figure in figures)
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>PreDiff evaluation</title>"
            "<script src='plotly.min.js'></script></head><body>\n" + body + "\n</body></html>\n")
    script = out_dir / "plotly.min.js"
    if not script.is_file():
        from plotly.offline import get_plotlyjs

        with atomic_path(script) as temporary:
            temporary.write_text(get_plotlyjs())
    with atomic_path(path) as temporary:
        temporary.write_text(page)
    written[path.name] = path
    return written
