"""Scenarios: steer the ensemble with knowledge control (e.g. "more" or "less" total precipitation)."""

import streamlit as st

from prediff.app.forecast import (collect, guidance_target, lead_time_labels, model_job_kwargs, parse_values,
                                  pixel_area_km2, recall, run_key, sampler_controls, scenario_figure,
                                  scenario_table, window_job_kwargs)
from prediff.app.jobs import run_scenarios
from prediff.app.ui import (cached_figure, choose_window, current_model, job_panel, model_status, session_runner,
                            show_error)
from prediff.errors import PreDiffError
from prediff.viz.maps import MapPanel, multi_panel_map

RUN_JOB = "prediff.scenarios.run_job"
PAGE = "scenarios"
SWEEPS = {"climatology": "μ + k·σ (k values)", "context": "Context mean × factor", "absolute": "Absolute mean VIL",
          "oracle": "Observed future × factor (evaluation only)"}

st.title("Scenarios")
st.write("PreDiff's knowledge control adds a guidance term during sampling: an alignment network estimates, "
         "from the noisy latent, how far the forecast is from a physical constraint — in the paper the future "
         "average intensity — and the sampler is nudged towards forecasts that satisfy it. Changing the target "
         "(e.g. the climatological mean plus k standard deviations) turns one forecast into explicit what-if "
         "scenarios. Every scenario starts from the same seed, so the differences come from the guidance alone.")

model = current_model()
with st.container(border=True):
    st.markdown("**Model**")
    ready = model_status(model)
if not ready:
    st.info("Set up a model in the sidebar to run scenarios (see the message above).", icon=":material/info:")
    st.stop()

chosen = choose_window("prediff.scenarios")
if chosen is None:
    st.stop()
_, event_id, window = chosen
with st.container(border=True):
    st.markdown("**Scenarios**")
    columns = st.columns([2, 2, 1.3], vertical_alignment="bottom")
    sweep = columns[0].selectbox("Target sweep", list(SWEEPS), format_func=SWEEPS.get, key="prediff.scenarios.sweep",
                                 help="μ + k·σ needs intensity_stats.json next to the model's config")
    values_text = columns[1].text_input("Values", "0, 2, 4", key="prediff.scenarios.values")
    unguided = columns[2].checkbox("Unguided too", True, key="prediff.scenarios.unguided",
                                   help="Also run the ensemble without guidance (same seed), as the reference")
    try:
        settings = sampler_controls("prediff.scenarios", default_members=4, guidance=False)
        scale = float(st.number_input("Guidance scale", 0.0, 1000.0, 50.0, step=5.0, key="prediff.scenarios.scale"))
        targets = ([None] if unguided else []) + [guidance_target(sweep, value) for value in parse_values(values_text)]
    except PreDiffError as error:
        show_error(error)
        st.stop()
    kwargs = dict(model=model_job_kwargs(model), **window_job_kwargs(window), seed=model.seed, targets=tuple(targets),
                  guidance_scale=scale, **settings)
    key = run_key(PAGE, event_id, kwargs)
    if recall(st.session_state, PAGE, key) is None and st.button("Run the scenarios", type="primary",
                                                                  key="prediff.scenarios.run"):
        st.session_state[f"{RUN_JOB}.key"] = key
        st.session_state[RUN_JOB] = session_runner().submit(run_scenarios, label="Scenario ensembles", **kwargs)
    if collect(st.session_state, RUN_JOB, PAGE, job_panel(RUN_JOB)):
        st.rerun()

result = recall(st.session_state, PAGE, key)
if result is None:
    st.stop()
scenarios = result["scenarios"]
labels = lead_time_labels(result["lead_times"], result["valid_times"])
members = next(iter(scenarios.values())).shape[0]
shown = st.selectbox("Show", ["mean"] + list(range(members)), key="prediff.scenarios.member",
                     format_func=lambda m: "Ensemble mean" if m == "mean" else f"Member {m} (same noise in every "
                                                                              "scenario)")
panels = [MapPanel(name, field.mean(axis=0) if shown == "mean" else field[shown]) for name, field in scenarios.items()]
if window["target"].shape[0]:
    panels.append(MapPanel("Observed", window["target"]))
st.plotly_chart(cached_figure(lambda: multi_panel_map(panels, window["grid"], times=labels,
                                                      title="Scenarios side by side"),
                              "scenario maps", panels, window["grid"], labels),
                theme=None, config={"displaylogo": False}, key="prediff.scenarios.map")
targets_text = ", ".join(f"{name}: {values.mean():.4f}" for name, values in result["target_intensity"].items()
                         if values is not None)
if targets_text:
    st.caption(f"Resolved guidance targets (mean intensity, VIL/255): {targets_text}.")

table = scenario_table(scenarios, pixel_area_km2(window["grid"]), lead_times=result["lead_times"])
figures = {column: scenario_figure(table, column, title) for column, title in (
    ("area_ge_133_km2", "Area with VIL ≥ 133 (km²)"), ("area_ge_181_km2", "Area with VIL ≥ 181 (km²)"),
    ("area_ge_219_km2", "Area with VIL ≥ 219 (km²)"), ("peak_vil", "Peak VIL (pixel)"),
    ("mean_intensity", "Average intensity (VIL/255)"))}
for row in (list(figures)[:3], list(figures)[3:]):
    for column, name in zip(st.columns(3), row):
        column.plotly_chart(figures[name], key=f"prediff.scenarios.plot.{name}")
st.caption("Member-mean values per lead time: area of pixels at or above each VIL threshold, each member's peak "
           "VIL and average intensity.")
st.dataframe(table, hide_index=True, key="prediff.scenarios.table")
columns = st.columns(2)
columns[0].download_button("Table (CSV)", table.to_csv(index=False).encode(), file_name=f"scenarios_{event_id}.csv",
                           mime="text/csv", key="prediff.scenarios.csv")
columns[1].download_button("Figures (interactive HTML)",
                           "".join(figure.to_html(full_html=False, include_plotlyjs=index == 0)
                                   for index, figure in enumerate(figures.values())).encode(),
                           file_name=f"scenarios_{event_id}.html", mime="text/html", key="prediff.scenarios.html")
