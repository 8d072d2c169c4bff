"""Forecast: PreDiff ensemble nowcasts of a chosen event window."""

import numpy as np
import pandas as pd
import streamlit as st

from prediff.app.jobs import check_model
from prediff.app.ui import choose_window, current_model, job_panel, model_status, session_runner
from prediff.viz.maps import MapPanel, multi_panel_map

CHECK_JOB = "prediff.forecast.check_job"

st.title("Ensemble forecast")
st.write("PreDiff turns 7 observed VIL frames (70 min) into an ensemble of possible next 6 frames (60 min); "
         "the page shows context, ensemble members, the ensemble mean, the probability of exceeding a VIL "
         "threshold and what was observed.")

model = current_model()
with st.container(border=True):
    st.markdown("**Model**")
    if model_status(model):
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

st.info("Ensemble sampling from this page is not connected yet: the sampling pipeline is still being built. "
        "Until then the page shows the chosen window's real context and observation; the forecast, mean and "
        "probability panels will join them here.", icon=":material/construction:")

chosen = choose_window("prediff.forecast")
if chosen is None:
    st.stop()
source, event_id, window = chosen
context, target = window["context"], window["target"]
times = pd.to_datetime(window["times"])
labels = [f"+{int((t - times[len(context) - 1]).total_seconds() // 60)} min ({t:%H:%M} UTC)"
          for t in times[len(context):]]
panels = [MapPanel("Last context frame", context[-1:]), MapPanel("Observed", target)]
st.plotly_chart(multi_panel_map(panels, window["grid"], times=labels,
                                title=f"Event {event_id}: last observation and the observed next hour"),
                theme=None, config={"displaylogo": False}, key="prediff.forecast.map")
st.caption(f"Context: {len(context)} frames ending {times[len(context) - 1]:%Y-%m-%d %H:%M} UTC; "
           f"max VIL in the observed hour: {int(np.max(np.where(target == 255, 0, target)))} (pixel).")
