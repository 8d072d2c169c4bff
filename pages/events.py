"""Events: search the catalog, see where the events are, and play the chosen one on a georeferenced map."""

import pandas as pd
import streamlit as st

from prediff.app import state as keys
from prediff.app.data import event_gif, event_strip, events_table, incomplete_event_count, load_event
from prediff.app.events import attribution, filter_events, hover_lines
from prediff.app.state import data_source
from prediff.app.ui import cached_figure, show_error, show_table
from prediff.errors import DataError, PreDiffError
from prediff.viz.maps import events_map, vil_map

PICKER_KEY = "prediff.events.picker"
MAP_KEY = "prediff.events.map"
TABLE_KEY = "prediff.events.table"
SHOWN_IDS = "prediff.events.shown_ids"

#: How the catalog table shows its columns (units in the titles, help on hover).
CATALOG_COLUMNS = {
    "id": st.column_config.TextColumn("Event id", help="SEVIR event id (S + NOAA storm-event number)"),
    "type": st.column_config.TextColumn("Type", help="NOAA storm-event type; '(random event)' for SEVIR's "
                                                     "randomly sampled patches"),
    "time (UTC)": st.column_config.DatetimeColumn("Time (UTC)", format="YYYY-MM-DD HH:mm",
                                                  help="Reference time of the event"),
    "lat": st.column_config.NumberColumn("Lat (°N)", format="%.1f", width="small", help="Patch centre latitude"),
    "lon": st.column_config.NumberColumn("Lon (°E)", format="%.1f", width="small", help="Patch centre longitude"),
    "max VIL (pixel)": st.column_config.NumberColumn("Max VIL (px)", format="%d", width="small",
                                                     help="Largest VIL pixel value of the event, 0-254"),
    "max VIL (kg m-2)": st.column_config.NumberColumn("Max VIL (kg m⁻²)", format="%.1f", width="small",
                                                      help="Largest VIL pixel decoded to kg m⁻²"),
    "split": st.column_config.TextColumn("Split", width="small",
                                         help="Date split of the reference (train / val / test)"),
}

st.title("Storm events")

try:
    source = data_source(st.session_state)
    table = events_table(source)
except PreDiffError as error:
    show_error(error)
    if st.session_state.get(keys.DATA_KIND) == "demo":
        st.info("The demo storm corpus ships in assets/demo_corpus; if it is missing, create it with "
                "`prediff data demo --out assets/demo_corpus` (see docs/demo_corpus.md).")
    st.stop()

if table.empty:
    st.warning(f"{source.root} holds no usable VIL events (the catalog is empty, or every event has missing "
               "pixels and the reference selection keeps only complete ones; for radar with gaps use "
               "'Imported radar folder').")
    st.stop()

with st.container(border=True):
    search, types, splits, strength = st.columns([3, 3, 2, 2])
    text = search.text_input("Search", placeholder="id, type or date, e.g. hail, 2019-06, S7")
    chosen_types = types.multiselect("Event type", sorted(table["type"].unique()))
    chosen_splits = splits.multiselect("Split", ["train", "val", "test"])
    min_vil = strength.slider("Min. max VIL (pixel)", 0, 254, 0)
shown = filter_events(table, text, chosen_types, chosen_splits, min_vil if min_vil > 0 else None)
incomplete = incomplete_event_count(source)
note = (f"; {incomplete} more event(s) with missing pixels are left out by the reference selection (the "
        "'Imported radar folder' source keeps them)") if incomplete else ""
st.caption(f"{len(shown)} of {len(table)} events in {source.label}{note}")
if shown.empty:
    st.info("No event matches the search; clear a filter.")
    st.stop()

# the chosen event: a click in the table or on the map, else ?event=<id> in the URL, else the first event
requested = st.query_params.get("event")
if requested and requested not in set(table["id"]):
    show_error(DataError(f"unknown event id {requested!r} in the link; it is not in {source.root}. "
                         "Choose an event from the table instead."))
    requested = None
current = st.session_state.get(keys.EVENT_ID)
if requested:
    current = requested
if current not in set(shown["id"]):
    current = shown["id"].iloc[0]


def _choose_from_map() -> None:
    points = [p for p in st.session_state[MAP_KEY].selection.points if p.get("curve_number", 0) == 0]
    if points:
        st.session_state[keys.EVENT_ID] = st.session_state[SHOWN_IDS][points[0]["point_index"]]
        st.query_params["event"] = st.session_state[keys.EVENT_ID]


def _choose_from_table() -> None:
    rows = st.session_state[TABLE_KEY].selection.rows
    if rows:
        st.session_state[keys.EVENT_ID] = st.session_state[SHOWN_IDS][rows[0]]
        st.query_params["event"] = st.session_state[keys.EVENT_ID]


def _choose_from_list() -> None:
    st.session_state[keys.EVENT_ID] = st.session_state[PICKER_KEY]
    st.query_params["event"] = st.session_state[PICKER_KEY]


ids = list(shown["id"])
st.session_state[SHOWN_IDS] = ids
st.session_state[keys.EVENT_ID] = current
st.session_state[PICKER_KEY] = current
st.query_params["event"] = current
position = ids.index(current)

left, right = st.columns([3, 2])
with left:
    st.selectbox("Event shown below (or select a row of the table, or click an event on the map)", ids,
                 key=PICKER_KEY,
                 on_change=_choose_from_list,
                 format_func=lambda i: f"{i} — {shown['type'].iloc[ids.index(i)]}, "
                                       f"{pd.Timestamp(shown['time (UTC)'].iloc[ids.index(i)]):%Y-%m-%d %H:%M} UTC")
    show_table(shown, height=360, key=TABLE_KEY, on_select=_choose_from_table, selection_mode="single-row",
               column_config=CATALOG_COLUMNS)
with right:
    figure = events_map(shown["lat"], shown["lon"], hover_text=hover_lines(shown),
                        max_vil=shown["max VIL (pixel)"], highlight=position, height=440)
    st.plotly_chart(figure, key=MAP_KEY, on_select=_choose_from_map, selection_mode="points",
                    theme=None, config={"displaylogo": False, "scrollZoom": True})

row = shown.iloc[position]
st.subheader(f"{row['id']} — {row['type']}")
try:
    frames, times, grid = load_event(source, current)
except PreDiffError as error:
    show_error(error)
    st.stop()

facts = st.columns(5)
facts[0].metric("Date", f"{pd.Timestamp(row['time (UTC)']):%Y-%m-%d}")
facts[1].metric("Reference time", f"{pd.Timestamp(row['time (UTC)']):%H:%M} UTC")
facts[2].metric("Frames", f"{len(frames)} × {frames.shape[1]}²")
facts[3].metric("Max VIL (kg m⁻²)", f"{row['max VIL (kg m-2)']:.1f}", help=f"VIL pixel {row['max VIL (pixel)']:.0f}")
facts[4].metric("Centre (lat, lon)", f"{row['lat']:.1f}, {row['lon']:.1f}")
labels = [f"{pd.Timestamp(t):%Y-%m-%d %H:%M} UTC" for t in times]
title = f"VIL, event {current}, {pd.Timestamp(times[0]):%Y-%m-%d %H:%M} – {pd.Timestamp(times[-1]):%H:%M} UTC"
st.plotly_chart(cached_figure(lambda: vil_map(frames, grid, times=times, title=title, height=640), "event map",
                              frames, times, grid, title),
                theme=None, config={"displaylogo": False, "scrollZoom": True}, key="prediff.events.vil_map")
st.caption("Colours: the SEVIR VIL scale (VIL pixel levels 16, 31, 59, 74, 100, 133, 160, 181, 219); grey "
           "background = missing (outside radar coverage; hover shows pixel 255). Hover a pixel for "
           "latitude/longitude and VIL in pixel and kg m⁻².")
credit = attribution(row["type"])
if credit:
    st.caption(credit)
if st.toggle("Prepare downloads (animated GIF, PNG strip)"):
    gif_column, strip_column = st.columns(2)
    gif = event_gif(frames, tuple(labels), grid, f"{source.root}|{current}")
    gif_column.download_button("Download GIF", gif, file_name=f"{current}.gif", mime="image/gif")
    strip = event_strip(frames, tuple(labels), grid, f"{source.root}|{current}")
    strip_column.download_button("Download PNG strip", strip, file_name=f"{current}.png", mime="image/png")
