"""Streamlit building blocks shared by the pages: the global sidebar, error boxes, the worker and job panels."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from prediff.app import state as keys
from prediff.app.state import DATA_KINDS, MODEL_KINDS, ModelSource, data_source, init_state, model_source
from prediff.app.worker import CANCELLED, DONE, FAILED, JobRunner, JobStatus
from prediff.errors import PreDiffError
from prediff.runtime import DEVICES


#: How often a running job's panel refreshes; also the longest wait between a job's end and its result showing.
JOB_POLL_SECONDS = 0.5


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
    while it runs (refreshed every :data:`JOB_POLL_SECONDS` without rerunning the page), then the outcome alone:
    a finished job shows no buttons.

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

    @st.fragment(run_every=JOB_POLL_SECONDS if status.active else None)
    def follow() -> None:
        current = runner.status(job_id)
        with st.container():
            _show_status(current)
        if current.active:
            cancel, stop = st.columns([1, 4])
            if cancel.button("Cancel", key=f"{job_key}.cancel", help="Stops the job at its next progress report"):
                runner.cancel(job_id)
            if stop.button("Stop the worker now", key=f"{job_key}.stop",
                           help="Ends the worker process at once (for a job that does not respond); "
                                "models loaded in it are lost"):
                runner.stop_worker()
        else:
            # an empty element in the buttons' place: the browser drops the buttons now instead of leaving
            # them disabled until a later page run clears stale elements (a fragment run that ends in st.rerun
            # does not clear them)
            st.empty()
        if status.active and not current.active:
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
    types = dict(zip(table["id"], table["type"]))
    chosen = st.session_state.get(keys.EVENT_ID)
    columns = st.columns([3, 2])
    event_id = columns[0].selectbox("Event", ids, index=ids.index(chosen) if chosen in ids else 0,
                                    key=f"{key_prefix}.event",
                                    format_func=lambda i: f"{i} — {types[i]}")
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


@st.cache_resource(show_spinner=False, max_entries=48)
def _figure_of(key: str, _build):
    return _build()


def cached_figure(build, name: str, *inputs):
    """The figure ``build()`` makes, built once per distinct ``inputs`` and shared by reruns and sessions.

    Building a plotly map with frames costs far more than showing it, and Streamlit reruns the page at every
    widget change; the figure is kept in ``st.cache_resource`` (one object, never copied), which is safe as
    long as nobody modifies it after it is returned (``st.plotly_chart`` does not).

    Parameters
    ----------
    build : function without arguments returning the figure.
    name : what is built (e.g. "forecast maps"), so different figures of equal inputs do not collide.
    inputs : everything the figure depends on (arrays, grids, labels, numbers); hashed through pickle.

    Returns
    -------
    plotly.graph_objects.Figure.
    """
    from prediff.app.forecast import run_key

    return _figure_of(run_key(name, *inputs), _build=build)


def show_table(table: pd.DataFrame, digits: int = 3, column_config: dict | None = None, **options):
    """Show a DataFrame as an interactive table (``st.dataframe``: sortable columns, search, CSV download).

    Parameters
    ----------
    table : the DataFrame; its index is hidden, so put labels such as the method name in a column.
    digits : decimals shown for float columns without an entry in ``column_config`` (values are not rounded).
    column_config : ``st.column_config`` entries by column name (titles with units, formats, help).
    options : passed on to ``st.dataframe`` (``height``, ``key``, ``on_select``, ``selection_mode`` ...).

    Returns
    -------
    What ``st.dataframe`` returns (the selection state when ``on_select`` is given).
    """
    config = {column: st.column_config.NumberColumn(format=f"%.{digits}f") for column in table.columns
              if pd.api.types.is_float_dtype(table[column].dtype)}
    config.update(column_config or {})
    return st.dataframe(table, hide_index=True, column_config=config, **options)
