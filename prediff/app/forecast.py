"""App-side logic of the Forecast, Denoising and Scenarios pages: job arguments, result summaries and caches.

The pages stay thin views: they collect the user's choices, hand them to :func:`forecast_job_kwargs` (and its
siblings) to build the arguments of the worker jobs in :mod:`prediff.app.jobs`, and turn the jobs' results into
tables and figures with the functions below. Nothing here imports MindSpore; the heavy work runs in the
session's worker process.

Units: VIL fields are VIL pixels 0-255 (255 = missing in observations, never in forecasts); intensities are
[0, 1] units (VIL pixel / 255 averaged over lead times and pixels); areas are km^2.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Mapping, MutableMapping, Sequence

import numpy as np
import pandas as pd

from prediff.app.state import ModelSource
from prediff.data.layout import MISSING_PIXEL
from prediff.data.vil import SEVIR_THRESHOLDS
from prediff.errors import ConfigError

#: Guidance choices of the Forecast page: key -> label. The value each takes is explained in :func:`guidance_target`.
GUIDANCE_MODES = {"off": "Off (unguided)", "climatology": "Target μ + k·σ (climatology)",
                  "absolute": "Absolute mean VIL (pixels)", "context": "Context mean × factor",
                  "oracle": "Observed future × factor (evaluation only)"}
#: Baselines the Forecast page can run next to PreDiff (names of :func:`prediff.verify.get_baseline`).
BASELINE_NAMES = ("persistence", "extrapolation", "steps")
#: Thresholds of the scenario curves (VIL pixels): heavy, very heavy and extreme VIL.
SCENARIO_THRESHOLDS = (133, 181, 219)
#: Most steps the denoising view keeps decoded frames of; longer runs show every k-th step.
MAX_SHOWN_STEPS = 50
#: Session-state key under which finished results are kept, per page, keyed by their run parameters.
RESULTS_KEY = "prediff.forecast.results"


def guidance_target(mode: str, value: float) -> str | None:
    """The guidance target text (:func:`prediff.diffusion.parse_target` spelling) of a page choice.

    Parameters
    ----------
    mode : a key of :data:`GUIDANCE_MODES`.
    value : k of μ + k·σ; the absolute mean in VIL pixels (0-254); or the factor of the context / observed
        future mean intensity.

    Returns
    -------
    e.g. ``"mu+2sigma"``, ``"mean=40px"``, ``"context*1.5"``, ``"oracle*2"``; None for unguided sampling.

    Raises
    ------
    ConfigError : unknown mode, or a value outside its range.
    """
    if mode == "off":
        return None
    value = float(value)
    if mode == "climatology":
        return f"mu{value:+g}sigma"
    if mode == "absolute":
        if not 0.0 <= value <= MISSING_PIXEL - 1:
            raise ConfigError(f"the absolute target must be a VIL pixel value in 0..254, got {value:g}")
        return f"mean={value:g}px"
    if mode in ("context", "oracle"):
        if value <= 0.0:
            raise ConfigError(f"the {mode} factor must be > 0, got {value:g}")
        return f"{mode}*{value:g}"
    raise ConfigError(f"unknown guidance mode {mode!r}; choose one of {', '.join(GUIDANCE_MODES)}")


def model_job_kwargs(model: ModelSource) -> dict:
    """The model part of every job's arguments: file paths (str) and the device.

    Raises
    ------
    CheckpointError, ConfigError : the model's files are missing (with what to do), see
        :meth:`prediff.app.state.ModelSource.validate`.
    """
    model.validate()
    return {"config": str(model.config), "vae": str(model.vae), "diffusion": str(model.diffusion),
            "align": str(model.align), "device": model.device}


def window_job_kwargs(window: Mapping) -> dict:
    """The data part of a job's arguments from :func:`prediff.app.data.event_window`.

    Returns
    -------
    dict with ``context`` (C, H, W) uint8 VIL pixels, ``observed`` (T, H, W) uint8 or None when the event ends
    before the full observed hour, ``times`` (C,) datetime64 of the context frames and ``grid``.
    """
    context = np.asarray(window["context"])
    target = np.asarray(window["target"])
    observed = target if target.shape[0] > 0 else None
    return {"context": context, "observed": observed, "times": np.asarray(window["times"])[:context.shape[0]],
            "grid": window["grid"]}


def run_key(*parts) -> str:
    """A short stable key of a run's parameters (arrays included), for caching its result."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(pickle.dumps(part, protocol=4))
    return digest.hexdigest()[:16]


def remember(state: MutableMapping, page: str, key: str, result) -> None:
    """Keep ``result`` under ``(page, key)`` in the session; each page keeps its last four results."""
    store = state.setdefault(RESULTS_KEY, {})
    page_results = store.setdefault(page, {})
    page_results.pop(key, None)
    page_results[key] = result
    while len(page_results) > 4:
        page_results.pop(next(iter(page_results)))


def recall(state: Mapping, page: str, key: str):
    """The result kept by :func:`remember`, or None."""
    return state.get(RESULTS_KEY, {}).get(page, {}).get(key)


def lead_time_labels(lead_times: Sequence[int], valid_times: Sequence | None = None) -> list[str]:
    """Slider labels such as ``"+10 min (22:10 UTC)"`` from lead times in minutes (and valid times)."""
    if valid_times is None:
        return [f"+{int(m)} min" for m in lead_times]
    return [f"+{int(m)} min ({pd.Timestamp(t):%H:%M} UTC)" for m, t in zip(lead_times, valid_times)]


def exceedance_probability(vil: np.ndarray, threshold: float) -> np.ndarray:
    """Fraction of members with VIL >= ``threshold``.

    Parameters
    ----------
    vil : (M, T, H, W) VIL pixels of an ensemble.
    threshold : VIL pixel value.

    Returns
    -------
    (T, H, W) float32 probability in [0, 1].
    """
    return (np.asarray(vil) >= float(threshold)).mean(axis=0).astype(np.float32)


def skill_table(forecasts: Mapping[str, np.ndarray], observed: np.ndarray,
                thresholds: Sequence[float] = SEVIR_THRESHOLDS) -> pd.DataFrame:
    """Per-lead-time skill of each method against the observation of one window.

    Parameters
    ----------
    forecasts : method name -> (M, T, H, W) ensemble or (T, H, W) deterministic forecast, VIL pixels.
    observed : (T, H, W) observed VIL pixels, 255 = missing (not scored).
    thresholds : CSI thresholds, VIL pixels.

    Returns
    -------
    DataFrame with columns ``method``, ``lead_time`` (minutes, or "all"), ``CSI-<thr>`` per threshold
    (ensembles: every member scored and pooled, as the paper does), ``MSE`` ([0, 1] units) and ``CRPS``
    ([0, 1] units; ensembles only, empty for a deterministic method). A CSI is NaN when neither forecast nor
    observation reaches the threshold.
    """
    from prediff.verify import ScoreAccumulator

    observed = np.asarray(observed, dtype=np.float32)
    tables = []
    for name, forecast in forecasts.items():
        forecast = np.asarray(forecast, dtype=np.float32)
        members = forecast.shape[0] if forecast.ndim == 4 else None
        accumulator = ScoreAccumulator(n_lead_times=observed.shape[0], thresholds=thresholds, pool_sizes=(1,),
                                       fss_scales=(1,), n_members=members, ssim=False)
        accumulator.update(forecast, observed)
        frame = accumulator.summary_frame()
        columns = [f"CSI-{threshold:g}" for threshold in thresholds] + ["MSE"]
        table = frame[columns].copy()
        table["CRPS"] = frame["CRPS"] if "CRPS" in frame else np.nan
        table.insert(0, "method", name)
        tables.append(table.reset_index().rename(columns={"lead_time_minutes": "lead_time"}))
    return pd.concat(tables, ignore_index=True)


def pixel_area_km2(grid) -> float:
    """Area of one pixel of ``grid`` (:class:`prediff.data.geo.Grid`) in km^2 (projected, so approximate)."""
    dy, dx = grid.pixel_size_m
    return abs(dy * dx) / 1.0e6


def scenario_summary(vil: np.ndarray, pixel_km2: float, thresholds: Sequence[int] = SCENARIO_THRESHOLDS,
                     lead_times: Sequence[int] | None = None) -> pd.DataFrame:
    """Ensemble-mean storm statistics per lead time.

    Parameters
    ----------
    vil : (M, T, H, W) VIL pixels of one scenario's ensemble.
    pixel_km2 : area of one pixel in km^2.
    thresholds : VIL pixel thresholds of the area curves.
    lead_times : (T,) minutes; default 10, 20, ...

    Returns
    -------
    DataFrame indexed by ``lead_time`` (minutes) with ``area_ge_<thr>_km2`` (member-mean area with VIL >= thr),
    ``peak_vil`` (member-mean of each member's maximum, VIL pixels) and ``mean_intensity`` (member-mean
    average VIL / 255, [0, 1] units).
    """
    vil = np.asarray(vil, dtype=np.float32)
    if vil.ndim != 4:
        raise ValueError(f"vil must be (M, T, H, W), got shape {vil.shape}")
    if lead_times is None:
        lead_times = 10 * np.arange(1, vil.shape[1] + 1)
    columns = {f"area_ge_{int(t)}_km2": (vil >= t).sum(axis=(2, 3)).mean(axis=0) * pixel_km2 for t in thresholds}
    columns["peak_vil"] = vil.max(axis=(2, 3)).mean(axis=0)
    columns["mean_intensity"] = vil.mean(axis=(2, 3)).mean(axis=0) / 255.0
    return pd.DataFrame(columns, index=pd.Index(np.asarray(lead_times, dtype=np.int64), name="lead_time"))


def scenario_table(scenarios: Mapping[str, np.ndarray], pixel_km2: float,
                   lead_times: Sequence[int] | None = None) -> pd.DataFrame:
    """:func:`scenario_summary` of every scenario stacked into one long table with a ``scenario`` column."""
    frames = [scenario_summary(vil, pixel_km2, lead_times=lead_times).reset_index().assign(scenario=name)
              for name, vil in scenarios.items()]
    table = pd.concat(frames, ignore_index=True)
    return table[["scenario"] + [c for c in table.columns if c != "scenario"]]


def scenario_figure(table: pd.DataFrame, column: str, title: str):
    """Line plot of ``column`` against lead time, one line per scenario (plotly Figure)."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, rows in table.groupby("scenario", sort=False):
        figure.add_scatter(x=rows["lead_time"], y=rows[column], mode="lines+markers", name=str(name))
    figure.update_layout(title=title, xaxis_title="lead time (min)", height=320, margin={"t": 40, "b": 40},
                         legend={"orientation": "h", "y": -0.3})
    return figure


def skill_figure(table: pd.DataFrame, column: str):
    """Line plot of one skill column (e.g. ``CSI-133``) per lead time, one line per method (plotly Figure)."""
    import plotly.graph_objects as go

    rows = table[table["lead_time"] != "all"]
    figure = go.Figure()
    for name, part in rows.groupby("method", sort=False):
        figure.add_scatter(x=part["lead_time"].astype(int), y=part[column], mode="lines+markers", name=str(name))
    figure.update_layout(title=f"{column} by lead time", xaxis_title="lead time (min)", height=320,
                         margin={"t": 40, "b": 40}, legend={"orientation": "h", "y": -0.3})
    return figure


def intensity_figure(steps: Sequence[int], predicted: np.ndarray, target: np.ndarray | None, current: int,
                     observed: float | None = None):
    """The alignment network's intensity estimate along the sampling run (plotly Figure).

    Parameters
    ----------
    steps : (S,) shown step numbers.
    predicted : (S,) predicted future mean intensity at each shown step, [0, 1] units.
    target : (S,) guidance target, or None when unguided.
    current : step number to mark.
    observed : the observed future's mean intensity, when known.
    """
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_scatter(x=list(steps), y=np.asarray(predicted), mode="lines", name="alignment estimate")
    if target is not None:
        figure.add_scatter(x=list(steps), y=np.asarray(target), mode="lines", name="guidance target",
                           line={"dash": "dash"})
    if observed is not None:
        figure.add_hline(y=observed, line={"dash": "dot", "color": "gray"}, annotation_text="observed")
    figure.add_vline(x=current, line={"color": "red"})
    figure.update_layout(title="Predicted future mean intensity (VIL/255)", xaxis_title="sampler step",
                         height=300, margin={"t": 40, "b": 40}, legend={"orientation": "h", "y": -0.35})
    return figure


def shown_steps(num_steps: int, limit: int = MAX_SHOWN_STEPS) -> list[int]:
    """Step numbers the denoising view keeps: all when ``num_steps <= limit``, else every k-th and the last."""
    every = max(1, -(-int(num_steps) // int(limit)))
    steps = list(range(0, int(num_steps), every))
    if steps[-1] != num_steps - 1:
        steps.append(int(num_steps) - 1)
    return steps


def parse_values(text: str) -> list[float]:
    """Numbers of a comma-separated list such as ``"0, 2, 4"`` (the scenario sweep).

    Raises
    ------
    ConfigError : an entry is not a number, or the list is empty.
    """
    values = []
    for item in str(text).replace(";", ",").split(","):
        if item.strip():
            try:
                values.append(float(item))
            except ValueError:
                raise ConfigError(f"{item.strip()!r} is not a number; list the sweep values separated by commas, "
                                  "e.g. 0, 2, 4") from None
    if not values:
        raise ConfigError("the sweep is empty; list at least one value, e.g. 0, 2, 4")
    return values


def latent_figure(latent: np.ndarray, channel: int, lead_times: Sequence[int]):
    """One latent channel at every latent frame, side by side (plotly Figure).

    The frames share one heatmap (separated by blank columns) rather than one subplot each, so the
    step-through view can redraw it at every step without the cost of building subplots.

    Parameters
    ----------
    latent : (T, h, w, L) float latent (noisy input of a sampler step), network units (~N(0, 1) at the start).
    channel : which of the L channels to show.
    lead_times : (T,) minutes, the panel titles.
    """
    import plotly.graph_objects as go

    values = np.asarray(latent, dtype=np.float32)[..., int(channel)]
    frames, rows, columns = values.shape
    limit = float(np.max(np.abs(values))) or 1.0
    gap = max(1, columns // 8)
    pitch = columns + gap
    blank = np.full((rows, gap), np.nan, dtype=np.float32)
    z = np.concatenate([part for frame in values for part in (frame, blank)][:-1], axis=1)
    figure = go.Figure(go.Heatmap(z=z, zmin=-limit, zmax=limit, colorscale="RdBu_r", hoverongaps=False,
                                  colorbar={"title": {"text": "latent"}, "len": 0.9, "thickness": 12},
                                  hovertemplate="%{z:.2f}<extra></extra>"))
    figure.update_xaxes(visible=False, range=[-0.5, z.shape[1] - 0.5], constrain="domain")
    figure.update_yaxes(visible=False, range=[-0.5, rows - 0.5], scaleanchor="x", scaleratio=1, constrain="domain")
    figure.update_layout(height=220, margin={"t": 30, "b": 10, "l": 10, "r": 10}, plot_bgcolor="white",
                         annotations=[{"text": f"+{int(minutes)} min", "x": index * pitch + (columns - 1) / 2,
                                       "y": rows - 0.5, "xref": "x", "yref": "y", "yanchor": "bottom",
                                       "showarrow": False} for index, minutes in enumerate(lead_times)])
    return figure


def sampler_controls(key_prefix: str, default_members: int | None = 8, guidance: bool = True) -> dict:
    """The sampling widgets shared by the three pages (Streamlit), keyed under ``key_prefix``.

    Returns
    -------
    dict with ``sampler``, ``steps`` (None for DDPM), ``eta``, ``members`` (when ``default_members`` is given)
    and, when ``guidance``, ``target`` (text or None) and ``guidance_scale``.

    Raises
    ------
    ConfigError : an invalid guidance value (shown by the page).
    """
    import streamlit as st

    chosen = {}
    columns = list(st.columns(4 if default_members is not None else 3))
    if default_members is not None:
        chosen["members"] = int(columns.pop(0).number_input("Ensemble members", 1, 64, default_members,
                                                            key=f"{key_prefix}.members"))
    sampler_column, steps_column, eta_column = columns
    chosen["sampler"] = sampler_column.radio(
        "Sampler", ["ddim", "ddpm"], horizontal=True, key=f"{key_prefix}.sampler",
        help="DDIM: any number of strided steps. DDPM: the reference's ancestral chain over all 1000 training "
             "timesteps (slow)")
    if chosen["sampler"] == "ddim":
        chosen["steps"] = int(steps_column.number_input("Steps", 1, 1000, 20, key=f"{key_prefix}.steps"))
        chosen["eta"] = float(eta_column.slider("eta", 0.0, 1.0, 0.0, 0.1, key=f"{key_prefix}.eta",
                                                help="0 = deterministic DDIM; 1 = ancestral sampling"))
    else:
        chosen["steps"], chosen["eta"] = None, 1.0
        steps_column.caption("DDPM visits all 1000 timesteps.")
    if guidance:
        columns = st.columns([2, 1, 1])
        mode = columns[0].selectbox("Knowledge-control guidance", list(GUIDANCE_MODES), format_func=GUIDANCE_MODES.get,
                                    key=f"{key_prefix}.guidance")
        defaults = {"climatology": 2.0, "absolute": 40.0, "context": 1.5, "oracle": 2.0}
        value = 0.0
        if mode != "off":
            label = {"climatology": "k", "absolute": "mean VIL (pixel)"}.get(mode, "factor")
            value = columns[1].number_input(label, value=defaults[mode], step=0.5, key=f"{key_prefix}.value.{mode}")
        chosen["guidance_scale"] = float(columns[2].number_input(
            "Guidance scale", 0.0, 1000.0, 50.0, step=5.0, key=f"{key_prefix}.scale", disabled=mode == "off",
            help="Strength of the alignment term (the reference uses 50 with eta = 1)"))
        chosen["target"] = guidance_target(mode, value)
    return chosen


def collect(state: MutableMapping, job_key: str, page: str, status) -> bool:
    """Move a finished job's result into the session's results (:func:`remember`) under the run key stored
    at ``job_key + ".key"``, so it survives the job being forgotten and is found again by its parameters.

    Returns
    -------
    True when a new result was stored (the page reruns to show it in place of the run controls).
    """
    key = state.get(f"{job_key}.key")
    if status is not None and status.finished_ok and key is not None and recall(state, page, key) is None:
        remember(state, page, key, status.result)
        return True
    return False
