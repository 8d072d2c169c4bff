"""Forecast: PreDiff ensemble nowcasts of a chosen event window, with baselines and skill."""

import numpy as np
import pandas as pd
import streamlit as st

from prediff.app.forecast import (BASELINE_NAMES, collect, exceedance_probability, lead_time_labels,
                                  model_job_kwargs, recall, run_key, sampler_controls, skill_figure,
                                  window_job_kwargs)
from prediff.app.jobs import check_model, run_forecast
from prediff.app.ui import (cached_figure, choose_window, current_model, job_panel, model_status, session_runner,
                            show_error)
from prediff.data.vil import SEVIR_THRESHOLDS
from prediff.errors import PreDiffError
from prediff.viz.animation import vil_gif, vil_strip_png
from prediff.viz.maps import MapPanel, multi_panel_map

CHECK_JOB = "prediff.forecast.check_job"
RUN_JOB = "prediff.forecast.run_job"
PAGE = "forecast"

st.title("Ensemble forecast")
st.write("PreDiff turns 7 observed VIL frames (70 min) into an ensemble of possible next 6 frames (60 min); "
         "the page shows context, ensemble members, the ensemble mean, the probability of exceeding a VIL "
         "threshold, what was observed and classical baselines.")

model = current_model()
with st.container(border=True):
    st.markdown("**Model**")
    ready = model_status(model)
    if ready:
        if st.button("Load and check the model", help="Builds the networks in the worker process and loads the "
                                                      "three checkpoints strictly"):
            st.session_state[CHECK_JOB] = session_runner().submit(
                check_model, label="Loading the model", config=str(model.config), vae=str(model.vae),
                diffusion=str(model.diffusion), align=str(model.align), device=model.device)
        status = job_panel(CHECK_JOB)
        if status is not None and status.finished_ok:
            st.write(f"MindSpore {status.result['mindspore']} on {status.result['device']}:")
            for line in status.result["networks"]:
                st.write(f"- {line}")

chosen = choose_window("prediff.forecast")
if chosen is None:
    st.stop()
_, event_id, window = chosen
context, target = window["context"], window["target"]
times = pd.to_datetime(window["times"])
last_context = times[len(context) - 1]

with st.container(border=True):
    st.markdown("**Sampling**")
    try:
        settings = sampler_controls("prediff.forecast")
    except PreDiffError as error:
        show_error(error)
        st.stop()
    baselines = st.multiselect("Baselines (run in the worker on the same context)", BASELINE_NAMES,
                               default=["persistence", "extrapolation"], key="prediff.forecast.baselines",
                               help="STEPS uses the same number of members and seed as PreDiff")
    if ready:
        if st.button("Run the forecast", type="primary", key="prediff.forecast.run"):
            try:
                kwargs = dict(model=model_job_kwargs(model), **window_job_kwargs(window), seed=model.seed,
                              baselines=tuple(baselines), **settings)
                st.session_state[f"{RUN_JOB}.key"] = run_key(PAGE, event_id, kwargs)
                st.session_state[f"{RUN_JOB}.window"] = run_key(event_id, context)
                st.session_state[f"{RUN_JOB}.title"] = (f"Event {event_id}, context ending "
                                                        f"{last_context:%Y-%m-%d %H:%M} UTC")
                st.session_state[RUN_JOB] = session_runner().submit(run_forecast, label="Ensemble forecast",
                                                                    **kwargs)
            except PreDiffError as error:
                show_error(error)
    else:
        st.info("Set up a model in the sidebar to run forecasts (see the message above).", icon=":material/info:")
    status = job_panel(RUN_JOB)
    collect(st.session_state, RUN_JOB, PAGE, status)

result = recall(st.session_state, PAGE, st.session_state.get(f"{RUN_JOB}.key", ""))
if result is not None and st.session_state.get(f"{RUN_JOB}.window") != run_key(event_id, context):
    st.info("The last forecast was made for another event or window; run the forecast again for this one.",
            icon=":material/info:")
    result = None
if result is None:
    # before the first run: the real context and observation of the chosen window
    labels = [f"+{int((t - last_context).total_seconds() // 60)} min ({t:%H:%M} UTC)" for t in times[len(context):]]
    panels = [MapPanel("Last context frame", context[-1:]), MapPanel("Observed", target)]
    title = f"Event {event_id}: last observation and the observed next hour"
    st.plotly_chart(cached_figure(lambda: multi_panel_map(panels, window["grid"], times=labels, title=title),
                                  "window maps", panels, window["grid"], labels, title),
                    theme=None, config={"displaylogo": False}, key="prediff.forecast.map")
    st.caption(f"Context: {len(context)} frames ending {last_context:%Y-%m-%d %H:%M} UTC; "
               f"max VIL in the observed hour: {int(np.max(np.where(target == 255, 0, target)))} (pixel). "
               "Run a forecast to add the ensemble, its probability and the baselines.")
    st.stop()

vil = result["vil"]
attrs = result["attrs"]
st.subheader(st.session_state.get(f"{RUN_JOB}.title", "Forecast"))
st.caption(f"{attrs['members']} members, {attrs['sampler'].upper()} {attrs['steps']} steps, eta {attrs['eta']:g}, "
           f"seed {attrs['seed']}, target {attrs['target']}"
           + (f" (scale {attrs['guidance_scale']:g})" if attrs["guided"] else "")
           + f"; sampling took {result['seconds']:.1f} s in the worker.")
columns = st.columns([2, 2, 3])
options = ["mean"] + list(range(vil.shape[0]))
shown = columns[0].selectbox("Forecast panel", options, key="prediff.forecast.member",
                             format_func=lambda m: "Ensemble mean" if m == "mean" else f"Member {m}")
threshold = columns[1].select_slider("Probability of VIL ≥", [int(t) for t in SEVIR_THRESHOLDS], value=133,
                                     key="prediff.forecast.threshold")
extra = columns[2].multiselect("Baseline panels", list(result["baselines"]), default=list(result["baselines"])[:1],
                               key="prediff.forecast.baseline_panels")
forecast_frames = vil.mean(axis=0) if shown == "mean" else vil[shown]
forecast_title = "Ensemble mean" if shown == "mean" else f"Member {shown}"
labels = lead_time_labels(result["lead_times"], result["valid_times"])
panels = [MapPanel("Last context frame", context[-1:]), MapPanel(forecast_title, forecast_frames),
          MapPanel(f"P(VIL ≥ {threshold})", exceedance_probability(vil, threshold), kind="probability",
                   label=f"P(VIL ≥ {threshold})")]
if window["target"].shape[0]:
    panels.append(MapPanel("Observed", window["target"]))
for name in extra:
    field = result["baselines"][name]
    panels.append(MapPanel(f"{name} (mean)" if field.ndim == 4 else name, field.mean(axis=0) if field.ndim == 4
                           else field))
title = "Synchronized maps: press play or drag the lead-time slider"
st.plotly_chart(cached_figure(lambda: multi_panel_map(panels, window["grid"], times=labels, title=title,
                                                      threshold_label=f"P(VIL ≥ {threshold})"),
                              "forecast maps", panels, window["grid"], labels, title, threshold),
                theme=None, config={"displaylogo": False}, key="prediff.forecast.result_map")
intensity = pd.DataFrame({"member": np.arange(vil.shape[0]), "mean intensity (VIL/255)": result["mean_intensity"],
                          "alignment estimate": result["predicted_intensity"]})
if result["target_intensity"] is not None:
    intensity["guidance target"] = result["target_intensity"]
with st.expander("Members' average intensity"):
    st.dataframe(intensity, hide_index=True)

st.subheader("Skill against the observation")
if result["skill"] is None:
    st.info("The event ends before the full observed hour, so this window cannot be scored.")
else:
    skill = result["skill"]
    scores = [column for column in skill.columns if column not in ("method", "lead_time")]
    # shown as text: the table widget draws missing numbers as "None", and a blank reads better
    skill_text = skill.assign(**{column: skill[column].map(lambda value: "" if pd.isna(value) else f"{value:.4f}")
                                 for column in scores})
    st.dataframe(skill_text, hide_index=True, key="prediff.forecast.skill_table")
    st.caption("CSI per VIL threshold (pixel-wise; an ensemble's members are scored and pooled, as in the paper), "
               "MSE and CRPS in [0, 1] units (VIL/255). CRPS is blank for deterministic baselines; a CSI is blank "
               "when neither forecast nor observation reaches the threshold.")
    metric = st.selectbox("Plot", scores,
                          index=list(skill.columns).index(f"CSI-{threshold}") - 2, key="prediff.forecast.metric")
    st.plotly_chart(skill_figure(skill, metric), key="prediff.forecast.skill_plot")

st.subheader("Downloads")
stem = f"prediff_{event_id}_{last_context:%Y%m%d%H%M}"
columns = st.columns(3)
columns[0].download_button("Forecast (NetCDF)", result["netcdf"], file_name=f"{stem}.nc",
                           mime="application/x-netcdf", key="prediff.forecast.download_nc")
gif_frames = np.asarray(forecast_frames, dtype=np.float32)
# GIF and PNG are drawn only when their button is clicked (matplotlib takes seconds), not at every rerun
columns[1].download_button(f"{forecast_title} (animated GIF)",
                           lambda: vil_gif(gif_frames, labels=list(labels), grid=window["grid"]),
                           file_name=f"{stem}_{shown}.gif", mime="image/gif", key="prediff.forecast.download_gif")
columns[2].download_button(f"{forecast_title} (PNG strip)",
                           lambda: vil_strip_png(gif_frames, labels=list(labels), grid=window["grid"], columns=3),
                           file_name=f"{stem}_{shown}.png", mime="image/png", key="prediff.forecast.download_png")
