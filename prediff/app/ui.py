"""Streamlit building blocks shared by the pages: the global sidebar, error boxes, the worker and job panels."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from prediff.app import state as keys
from prediff.app.state import DATA_KINDS, MODEL_KINDS, ModelSource, data_source, init_state, model_source
from prediff.app.worker import CANCELLED, DONE, FAILED, JobRunner, JobStatus
from prediff.errors import PreDiffError
from prediff.runtime import DEVICES


def show_error(error: BaseException) -> None:
    """Show a user error (:class:`PreDiffError`) as an error box with its message, never a traceback."""
    st.error(str(error), icon=":material/error:")


def render_sidebar() -> None:
    """The global sidebar: dataset, model, device and seed, stored under the keys of :mod:`prediff.app.state`."""
    init_state(st.session_state)
    with st.sidebar:
        st.subheader("Dataset")
        st.radio("Source", list(DATA_KINDS), format_func=DATA_KINDS.get, key=keys.DATA_KIND,
                 label_visibility="collapsed")
        kind = st.session_state[keys.DATA_KIND]
        if kind == "sevir":
            st.text_input("SEVIR / SEVIR-LR folder", key=keys.SEVIR_ROOT, placeholder="/data/sevir_lr",
                          help="The folder that holds CATALOG.csv and data/vil/...")
        elif kind == "imported":
            st.text_input("Imported radar folder", key=keys.IMPORTED_ROOT, placeholder="/data/imported_fmi",
                          help="A tree written by `prediff data import` (CATALOG.csv + data/)")
        st.subheader("Model")
        st.radio("Model", list(MODEL_KINDS), format_func=MODEL_KINDS.get, key=keys.MODEL_KIND,
                 label_visibility="collapsed")
        if st.session_state[keys.MODEL_KIND] == "checkpoints":
            st.text_input("Config (YAML)", key=keys.MODEL_CONFIG, placeholder="/ckpt/diffusion.yaml")
            st.text_input("VAE checkpoint", key=keys.MODEL_VAE, placeholder="/ckpt/vae.ckpt")
            st.text_input("Diffusion checkpoint", key=keys.MODEL_DIFFUSION, placeholder="/ckpt/diffusion.ckpt")
            st.text_input("Alignment checkpoint", key=keys.MODEL_ALIGN, placeholder="/ckpt/align.ckpt")
        st.subheader("Run")
        st.selectbox("Device", DEVICES, key=keys.DEVICE, help="MindSpore device of the model worker process")
        st.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key=keys.SEED,
                        help="Seed of the ensemble sampling; the same seed gives the same ensemble")
        try:
            st.caption(f"Data: {data_source(st.session_state).label}")
        except PreDiffError as error:
            st.caption(f"Data: {error}")


def model_status(source: ModelSource) -> bool:
    """Show whether the chosen model can be used; returns True when all its files are in place."""
    try:
        source.validate()
    except PreDiffError as error:
        if source.kind == "demo":
            st.info(str(error), icon=":material/info:")
        else:
            show_error(error)
        return False
    st.success(f"Model files found: {source.config.name}, {source.vae.name}, {source.diffusion.name}, "
               f"{source.align.name} (device {source.device}, seed {source.seed}).")
    return True


def session_runner() -> JobRunner:
    """This browser session's job runner (its own worker process), created on first use and replaced when the
    sidebar's device changes (MindSpore cannot switch devices inside a running process)."""
    device = st.session_state.get(keys.DEVICE, "CPU")
    runner = st.session_state.get(keys.RUNNER)
    if runner is not None and runner.environment.get("PREDIFF_DEVICE") != device:
        runner.shutdown()
        runner = None
    if runner is None:
        runner = JobRunner(env={"PREDIFF_DEVICE": device})
        st.session_state[keys.RUNNER] = runner
    return runner


def current_model() -> ModelSource:
    """The model chosen in the sidebar."""
    return model_source(st.session_state)


def _show_status(status: JobStatus) -> None:
    if status.active:
        st.progress(status.progress, text=f"{status.label}: {status.message or status.state} ...")
    elif status.state == DONE:
        st.success(f"{status.label}: done.")
    elif status.state == CANCELLED:
        st.warning(f"{status.label}: cancelled.")
    elif status.state == FAILED:
        st.error(f"{status.label} failed: {status.error}", icon=":material/error:")
        if status.traceback:
            with st.expander("Details for a bug report"):
                st.code(status.traceback)


def job_panel(job_key: str) -> JobStatus | None:
    """Follow the job whose id is stored in ``st.session_state[job_key]``: progress bar and Cancel button
    while it runs (refreshed every second without rerunning the page), then the outcome.

    Returns
    -------
    The job's status, or None when no job was started under ``job_key``.
    """
    job_id = st.session_state.get(job_key)
    if not job_id:
        return None
    runner = session_runner()
    try:
        status = runner.status(job_id)
    except KeyError:
        st.session_state.pop(job_key, None)
        return None

    @st.fragment(run_every=1.0 if status.active else None)
    def follow() -> None:
        current = runner.status(job_id)
        _show_status(current)
        if current.active:
            cancel, stop = st.columns([1, 4])
            if cancel.button("Cancel", key=f"{job_key}.cancel", help="Stops the job at its next progress report"):
                runner.cancel(job_id)
            if stop.button("Stop the worker now", key=f"{job_key}.stop",
                           help="Ends the worker process at once (for a job that does not respond); "
                                "models loaded in it are lost"):
                runner.stop_worker()
        elif status.active:
            # the job finished while this fragment was polling: rerun the page so it can show the result
            st.rerun()

    follow()
    return runner.status(job_id)


def choose_window(key_prefix: str):
    """Event and forecast-window pickers (defaulting to the event chosen on the Events page).

    Returns
    -------
    (source, event_id, window) : the :class:`prediff.app.state.DataSource`, the event id and the dict of
    :func:`prediff.app.data.event_window`; None when the dataset cannot be used (the error is shown).
    """
    from prediff.app.data import event_window, events_table

    try:
        source = data_source(st.session_state)
        table = events_table(source)
    except PreDiffError as error:
        show_error(error)
        return None
    if table.empty:
        st.warning(f"{source.root} holds no usable VIL events.")
        return None
    ids = list(table["id"])
    chosen = st.session_state.get(keys.EVENT_ID)
    columns = st.columns([3, 2])
    event_id = columns[0].selectbox("Event", ids, index=ids.index(chosen) if chosen in ids else 0,
                                    key=f"{key_prefix}.event",
                                    format_func=lambda i: f"{i} — {table.loc[table['id'] == i, 'type'].iloc[0]}")
    try:
        window = event_window(source, event_id, 0)
        k = 0
        if len(window["starts"]) > 1:
            k = columns[1].radio("Forecast window", list(range(len(window["starts"]))), horizontal=True,
                                 key=f"{key_prefix}.window",
                                 format_func=lambda j: f"frames {window['starts'][j]}–{window['starts'][j] + 12}")
            window = event_window(source, event_id, k)
    except PreDiffError as error:
        show_error(error)
        return None
    return source, event_id, window


_TABLE_STYLE = """<style>
.prediff-table {max-height: %dpx; overflow: auto; border: 1px solid #e6e6e6; border-radius: 6px;}
.prediff-table table {border-collapse: collapse; width: 100%%; font-size: 0.85rem;}
.prediff-table th {position: sticky; top: 0; background: #f4f4f6; text-align: left; padding: 4px 8px;}
.prediff-table td {padding: 3px 8px; border-top: 1px solid #eee; white-space: nowrap;}
.prediff-table tr.chosen td {background: #fff1c2; font-weight: 600;}
</style>"""


def html_table(table, height: int = 420, chosen_row: int | None = None, float_format: str = "{:.3f}") -> None:
    """Show a DataFrame as a scrollable HTML table with a sticky header.

    ``st.dataframe`` / ``st.table`` need pyarrow, whose pinned release does not import with the numpy 1.26 that
    MindSpore requires, so tables are rendered as plain HTML.

    Parameters
    ----------
    table : the DataFrame (its index is not shown).
    height : maximum height in pixels before the table scrolls.
    chosen_row : position of a row to highlight.
    float_format : format of float cells.
    """
    import html

    header = "".join(f"<th>{html.escape(str(column))}</th>" for column in table.columns)
    rows = []
    for position, values in enumerate(table.itertuples(index=False)):
        cells = []
        for value in values:
            if value is None or value is pd.NA or (isinstance(value, float) and value != value):
                text = ""
            elif isinstance(value, float):
                text = float_format.format(value)
            elif hasattr(value, "strftime"):
                text = value.strftime("%Y-%m-%d %H:%M")
            else:
                text = str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        marker = ' class="chosen"' if position == chosen_row else ""
        rows.append(f"<tr{marker}>{''.join(cells)}</tr>")
    st.html(_TABLE_STYLE % height + f'<div class="prediff-table"><table><thead><tr>{header}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")
