"""Dual-pol: ZH / ZDR / KDP at three heights, ZH nowcasts, rain-rate estimates, scores and Shapley values."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from prediff.app import dualpol as logic
from prediff.app.ui import cached_figure, job_panel, session_runner, show_error, show_table
from prediff.dualpol.reader import HEIGHTS, UNITS, VARIABLES
from prediff.errors import PreDiffError
from prediff.viz.dualpol import FieldPanel, small_multiples

KEY = "prediff.dualpol"
NOWCAST_JOB = f"{KEY}.nowcast_job"
QPE_JOB = f"{KEY}.qpe_job"
#: Every QPE_FRAME_STEP-th frame of the window is estimated (the diffusion ensemble costs ~1 s per member-frame).
QPE_FRAME_STEP = 4
SOURCES = {"shipped": "Shipped synthetic corpus", "folder": "Folder in the NJU-CPOL layout"}
CHART_CONFIG = {"displaylogo": False}


@st.cache_data(show_spinner="Opening the dataset ...", max_entries=8)
def _dataset(root: str) -> dict:
    return logic.check_dataset(root)


@st.cache_data(show_spinner="Reading the window ...", max_entries=16)
def _window(root: str, process: int, start: int) -> dict:
    return logic.read_window(root, process, start)


@st.cache_data(show_spinner="Fitting the Z-R and R(Z, ZDR) laws ...", max_entries=8)
def _classic_laws(root: str):
    return logic.fit_classic_laws(root)


@st.cache_data(show_spinner="Exact Shapley values (64 coalitions) ...", max_entries=16)
def _shapley(root: str, process: int, start: int, baseline: str) -> dict:
    return logic.window_shapley(root, _window(root, process, start), baseline)


def _job_result(job_key: str, inputs: tuple):
    """Result of the last job under ``job_key`` when it was run for ``inputs`` (results kept per input set)."""
    results = st.session_state.setdefault(f"{job_key}.results", {})
    status = job_panel(job_key) if st.session_state.get(f"{job_key}.inputs") == inputs else None
    if status is not None and status.finished_ok:
        results[inputs] = status.result
    return results.get(inputs)


def _submit(job_key: str, inputs: tuple, function, label: str, **kwargs) -> None:
    st.session_state[job_key] = session_runner().submit(function, label=label, **kwargs)
    st.session_state[f"{job_key}.inputs"] = inputs


st.title("Dual-polarisation radar")
st.write("S-band dual-polarisation radar in the NJU-CPOL layout: horizontal reflectivity **ZH**, differential "
         "reflectivity **ZDR** and specific differential phase **KDP** at 1, 3 and 7 km, and the KDP-based rain "
         "rate at 1 km. The page shows one 2-hour window, nowcasts ZH with the multi-branch U-Nets, estimates rain "
         "from ZH and ZDR (no KDP) with classic laws and a conditional diffusion ensemble, and scores them. "
         "Physics, formulas and the whole-test-split tables are in docs/dualpol.md.")

with st.container(border=True):
    kind = st.radio("Dataset", list(SOURCES), format_func=SOURCES.get, horizontal=True, key=f"{KEY}.source")
    root = str(logic.SHIPPED_CORPUS)
    if kind == "folder":
        root = st.text_input("Dataset root", key=f"{KEY}.root", placeholder="/data/NJU-CPOL",
                             help="The folder holding NJU_CPOL_update2308/ and NJU_CPOL_kdpRain/")
    try:
        info = _dataset(root)
    except PreDiffError as error:
        show_error(error)
        st.stop()
    usable = [p for p in info["processes"] if logic.window_starts(info["frames"][p])]
    if not usable:
        st.error(f"No process of {info['root']} has the 20 frames of one window (10 context + 10 to nowcast).",
                 icon=":material/error:")
        st.stop()
    columns = st.columns([2, 3])
    process = columns[0].selectbox(
        "Precipitation process", usable, key=f"{KEY}.process",
        format_func=lambda p: f"data_dir_{p:03d} ({'test' if p in info['test_processes'] else 'train'}, "
                              f"{info['frames'][p]} frames)")
    starts = logic.window_starts(info["frames"][process])
    start = columns[1].select_slider("First frame of the window", starts, key=f"{KEY}.start") if len(starts) > 1 \
        else starts[0]
    st.caption(f"{info['root']}: {len(info['processes'])} process(es), {info['grid']} x {info['grid']} pixels. "
               "Frames are 6 minutes apart; the window is 10 context frames (1 hour) and the next hour.")

try:
    fields = _window(info["root"], process, start)
except PreDiffError as error:
    show_error(error)
    st.stop()
labels = logic.time_labels(start)
# every NJU-CPOL grid covers the same 256 km square (256 x 256 at 1 km in the release, 64 x 64 at 4 km shipped)
pixel_km = 256.0 / info["grid"]

st.subheader("ZH, ZDR and KDP at three heights")
shown_fields = logic.echo_masked(fields)
panels = [FieldPanel(f"{'ZH' if variable == 'dBZ' else variable} @ {height}", shown_fields[f"{variable}@{height}"],
                     variable, row=r + 1, col=c + 1)
          for r, variable in enumerate(VARIABLES) for c, height in enumerate(HEIGHTS)]
fields_title = f"data_dir_{process:03d}"
st.plotly_chart(cached_figure(lambda: small_multiples(panels, labels, pixel_km=pixel_km, title=fields_title),
                              "dual-pol fields", panels, labels, pixel_km, fields_title),
                theme=None, config=CHART_CONFIG, key=f"{KEY}.fields_map")
scale_names = ", ".join(f"{'ZH' if v == 'dBZ' else v} in {UNITS[v]}" for v in VARIABLES)
st.caption(f"Each variable has its own discrete scale ({scale_names}); blank = no echo (ZDR and KDP are "
           "blanked where ZH < 5 dBZ) or missing. Negative minutes are the context, positive the hour to nowcast.")

st.subheader("ZH nowcast at 1 km: dual-pol vs ZH-only U-Net")
st.write("Both networks see the 10 context frames at 1, 3 and 7 km (the dual-pol one ZH, ZDR and KDP, the other "
         "ZH only) and output the next 10 frames of ZH at 1 km; persistence repeats the last context frame.")
nowcast_inputs = (info["root"], process, start)
if st.button("Run the nowcasts", key=f"{KEY}.run_nowcast", help="Runs both U-Nets in the worker process"):
    _submit(NOWCAST_JOB, nowcast_inputs, logic.nowcast_job, "Nowcasting ZH", root=info["root"], process=process,
            start=start, checkpoints={name: str(path) for name, path in logic.NOWCAST_CHECKPOINTS.items()})
nowcasts = _job_result(NOWCAST_JOB, nowcast_inputs)
if nowcasts is not None:
    methods = [name for name in (*logic.NOWCAST_CHECKPOINTS, "persistence") if name in nowcasts]
    order = methods + ["observed"]
    nowcast_panels = [FieldPanel(name, nowcasts[name], "dBZ", col=k + 1) for k, name in enumerate(order)]
    st.plotly_chart(cached_figure(lambda: small_multiples(nowcast_panels, labels[logic.N_INPUT:], pixel_km=pixel_km),
                                  "dual-pol nowcasts", nowcast_panels, labels, pixel_km),
                    theme=None, config=CHART_CONFIG, key=f"{KEY}.nowcast_map")
    show_table(logic.nowcast_score_table({m: nowcasts[m] for m in methods}, nowcasts["observed"])
               .rename_axis("method").reset_index(), key=f"{KEY}.nowcast_scores")
    st.caption("Scores over the 10 lead times of this window; s = neighbourhood window (pixels) of the fuzzy CSI. "
               "One window is a small sample: the test-split tables are in docs/dualpol.md.")

st.subheader("Rain rate at 1 km from ZH and ZDR (no KDP)")
qpe_frames = list(range(0, len(labels), QPE_FRAME_STEP))
try:
    laws, fit_note = _classic_laws(info["root"])
except PreDiffError as error:
    show_error(error)
    st.stop()
subset = {key: values[qpe_frames] for key, values in fields.items()}
estimates = logic.classic_qpe(laws, subset)
st.write("Classic laws: " + "; ".join(f"**{law.name}** `{law.describe()}`" for law in laws) + f" ({fit_note}). "
         "The conditional diffusion model draws an ensemble of rain fields given ZH and ZDR at the three heights "
         "(DDIM, 20 steps); its mean and a learned per-pixel merge of the members are scored next to them.")
qpe_inputs = (info["root"], process, start, QPE_FRAME_STEP)
if st.button("Run the diffusion QPE", key=f"{KEY}.run_qpe",
             help=f"Samples the ensemble for {len(qpe_frames)} frames in the worker process (about a minute)"):
    _submit(QPE_JOB, qpe_inputs, logic.diffusion_qpe_job, "Diffusion QPE",
            condition_fields={key: subset[key] for key in logic.RADAR_KEYS if not key.startswith("KDP")},
            model_dir=str(logic.DIFFUSION_QPE_DIR))
diffusion = _job_result(QPE_JOB, qpe_inputs)
if diffusion is not None:
    estimates.update({name: diffusion[name] for name in ("diffusion mean", "diffusion merge") if name in diffusion})
names = list(estimates) + ["rain truth (KDP-based)"]
shown = {**estimates, "rain truth (KDP-based)": subset["rain"]}
qpe_columns = 4
qpe_panels = [FieldPanel(name, shown[name], "rain", row=k // qpe_columns + 1, col=k % qpe_columns + 1)
              for k, name in enumerate(names)]
qpe_labels = [labels[k] for k in qpe_frames]
st.plotly_chart(cached_figure(lambda: small_multiples(qpe_panels, qpe_labels, pixel_km=pixel_km, panel_height=240),
                              "dual-pol rain", qpe_panels, qpe_labels, pixel_km),
                theme=None, config=CHART_CONFIG, key=f"{KEY}.qpe_map")
scores, fuzzy = logic.qpe_score_tables(estimates, subset["rain"])
show_table(scores.rename_axis("method").reset_index(), key=f"{KEY}.qpe_scores")
st.caption(f"Scores over the {len(qpe_frames)} frames shown (every {QPE_FRAME_STEP}th of the window): MSE in "
           "(mm/h)², MRE over pixels with rain ≥ 0.1 mm/h, RBIAS = Σ(p − o) / Σo, CSI per rain class.")
with st.expander("Fuzzy CSI vs neighbourhood window size"):
    show_table(fuzzy.rename_axis("method").reset_index(), key=f"{KEY}.fuzzy_scores")
    st.caption("Event fields max-pooled over s × s pixel windows before counting (Ebert 2008, upscaling).")

st.subheader("What each channel contributes (Shapley values)")
baseline = st.radio("Value of an absent channel", ["mean", "no-echo"], horizontal=True, key=f"{KEY}.baseline",
                    format_func={"mean": "training mean", "no-echo": "no echo (0 dBZ, 0 dB)"}.get)
try:
    shapley = _shapley(info["root"], process, start, baseline)
except PreDiffError as error:
    show_error(error)
    st.stop()
values = shapley["values"]
bars = go.Figure(go.Bar(x=list(values.index), y=values.to_numpy(),
                        marker_color=np.where(values.to_numpy() < 0, "#1b7837", "#b2182b")))
bars.update_layout(height=320, margin={"l": 60, "r": 20, "t": 30, "b": 40}, yaxis_title="Shapley value ((mm/h)²)",
                   title={"text": "Mean over the 20 frames of the window"})
st.plotly_chart(bars, theme=None, config=CHART_CONFIG, key=f"{KEY}.shapley")
st.caption(f"Model: the six-channel law `{shapley['law']}`. Value of a coalition = the MSE of its rain rate with "
           f"the other channels replaced by the baseline ({'training mean' if baseline == 'mean' else 'no echo'}); "
           f"MSE with every channel {shapley['error_all']:.2f}, with none {shapley['error_none']:.2f} (mm/h)². "
           "Negative (green) = the channel reduces the error.")
