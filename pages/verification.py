"""Verification: scores of forecasts against what was observed, per event window."""

import pandas as pd
import streamlit as st

from prediff.app.ui import cached_figure, choose_window, show_error, show_table
from prediff.app.verification import DETERMINISTIC_BASELINES, baseline_forecasts, score_table
from prediff.errors import PreDiffError
from prediff.viz.maps import MapPanel, multi_panel_map


@st.cache_data(show_spinner="Running the baselines (optical flow takes a few seconds) ...", max_entries=16)
def _baselines(context, n_lead_times: int) -> dict:
    return baseline_forecasts(context, n_lead_times)


st.title("Verification")
st.write("Scores of the classic baselines on one forecast window: **persistence** (the last frame stays) and "
         "**extrapolation** (the last frame moved along the optical-flow motion of the context). CSI counts hits "
         "/ (hits + misses + false alarms) of VIL ≥ threshold over the 6 lead times; CSI-M is their mean over the "
         "SEVIR thresholds. PreDiff's own skill on a window is on the Forecast page (next to these baselines); "
         "whole test splits are scored with the command line (docs/verification.md).")

chosen = choose_window("prediff.verification")
if chosen is None:
    st.stop()
source, event_id, window = chosen
try:
    forecasts = _baselines(window["context"], len(window["target"]))
    table = score_table(forecasts, window["target"])
except PreDiffError as error:
    show_error(error)
    st.stop()
show_table(table.rename_axis("method").reset_index(), key="prediff.verification.scores")
times = pd.to_datetime(window["times"])
labels = [f"+{10 * (index + 1)} min" for index in range(len(window["target"]))]
panels = [MapPanel(name.capitalize(), forecasts[name]) for name in DETERMINISTIC_BASELINES]
panels.append(MapPanel("Observed", window["target"]))
title = f"Event {event_id}, window from {times[0]:%Y-%m-%d %H:%M} UTC"
st.plotly_chart(cached_figure(lambda: multi_panel_map(panels, window["grid"], times=labels, title=title),
                              "verification maps", panels, window["grid"], labels, title),
                theme=None, config={"displaylogo": False}, key="prediff.verification.map")
