"""Denoising steps: watch the sampler turn noise into a forecast, one step at a time."""

import streamlit as st

from prediff.app.forecast import (collect, intensity_figure, latent_figure, model_job_kwargs,
                                  recall, run_key, sampler_controls, window_job_kwargs)
from prediff.app.jobs import run_denoising
from prediff.app.schedule_view import PUBLISHED_CONFIG, schedule_figure, schedule_of
from prediff.app.ui import choose_window, current_model, job_panel, model_status, session_runner, show_error
from prediff.errors import PreDiffError
from prediff.viz.maps import vil_strip_figure

RUN_JOB = "prediff.denoising.run_job"
PAGE = "denoising"
STEP = "prediff.denoising.step"
PLAYING = "prediff.denoising.playing"

st.title("Denoising steps")
st.write("PreDiff forecasts in the latent space of its VAE: the sampler starts from pure noise and removes a "
         "little noise at each step, guided by the context frames; decoding the predicted clean latent after each "
         "step shows the forecast taking shape.")

model = current_model()
with st.container(border=True):
    st.markdown("**Model**")
    ready = model_status(model)


def step_through_view(result: dict, grid) -> None:
    """Play / pause and the step slider over the kept steps of a finished run, redrawn as a fragment."""
    steps = [int(s) for s in result["steps"]]
    if st.session_state.get(STEP) not in steps:
        st.session_state[STEP] = steps[0]
    playing = st.session_state.get(PLAYING, False)

    @st.fragment(run_every=1.0 if playing else None)
    def view() -> None:
        if st.session_state.get(PLAYING, False):
            position = steps.index(st.session_state[STEP])
            if position + 1 < len(steps):
                st.session_state[STEP] = steps[position + 1]
            else:
                st.session_state[PLAYING] = False
        controls = st.columns([1, 6])
        if controls[0].button("Pause" if st.session_state.get(PLAYING, False) else "Play",
                              key="prediff.denoising.play", icon=":material/play_pause:"):
            if not st.session_state.get(PLAYING, False) and st.session_state[STEP] == steps[-1]:
                st.session_state[STEP] = steps[0]
            st.session_state[PLAYING] = not st.session_state.get(PLAYING, False)
            st.rerun()
        controls[1].select_slider("Sampler step", steps, key=STEP,
                                  format_func=lambda s: f"{s + 1} / {result['num_steps']}")
        index = steps.index(st.session_state[STEP])
        metrics = st.columns(4)
        metrics[0].metric("Step", f"{steps[index] + 1} of {result['num_steps']}")
        metrics[1].metric("Training timestep t", int(result["timesteps"][index]))
        metrics[2].metric("Noise level √(1-ᾱₜ)", f"{result['noise_level'][index]:.3f}")
        metrics[3].metric("Alignment estimate", f"{result['predicted_intensity'][index]:.4f}")
        labels = [f"+{10 * (i + 1)} min" for i in range(result["clean"].shape[1])]
        st.plotly_chart(vil_strip_figure(result["clean"][index], grid, labels,
                                         title="Predicted clean forecast at this step (decoded)"),
                        theme=None, config={"displaylogo": False}, key="prediff.denoising.clean")
        st.markdown("**The noisy latent the step starts from**")
        channel = st.radio("Latent channel", list(range(result["latent"].shape[-1])), horizontal=True,
                           key="prediff.denoising.channel")
        st.plotly_chart(latent_figure(result["latent"][index], channel, [10 * (i + 1) for i in
                                                                           range(result["latent"].shape[1])]),
                        key="prediff.denoising.latent")
        st.plotly_chart(intensity_figure(steps, result["predicted_intensity"], result["target_intensity"],
                                         steps[index], result["observed_intensity"]),
                        key="prediff.denoising.intensity")

    view()


chosen = choose_window("prediff.denoising") if ready else None
if ready and chosen is not None:
    _, event_id, window = chosen
    with st.container(border=True):
        st.markdown("**Sampling one member**")
        try:
            settings = sampler_controls("prediff.denoising", default_members=None)
        except PreDiffError as error:
            show_error(error)
            st.stop()
        member = int(st.number_input("Member (noise stream)", 0, 63, 0, key="prediff.denoising.member",
                                     help="Member m uses the same noise as member m of a forecast with this seed"))
        kwargs = dict(model=model_job_kwargs(model), **window_job_kwargs(window), seed=model.seed, member=member,
                      **settings)
        key = run_key(PAGE, event_id, kwargs)
        if recall(st.session_state, PAGE, key) is None:
            if st.button("Run the sampler", type="primary", key="prediff.denoising.run"):
                st.session_state[f"{RUN_JOB}.key"] = key
                st.session_state[RUN_JOB] = session_runner().submit(run_denoising, label="Step-through sampling",
                                                                    **kwargs)
        status = job_panel(RUN_JOB)
        if collect(st.session_state, RUN_JOB, PAGE, status):
            st.rerun()
    result = recall(st.session_state, PAGE, key)
    if result is not None:
        every = int(result["steps"][1] - result["steps"][0]) if len(result["steps"]) > 1 else 1
        st.caption(f"Event {event_id}: {result['num_steps']} sampler steps"
                   + (f", every {every}th kept" if every > 1 else ", every step kept")
                   + "; scrubbing reuses the decoded frames kept in this session.")
        step_through_view(result, window["grid"])
elif not ready:
    st.info("Set up a model in the sidebar to step through the sampler (see the message above).",
            icon=":material/info:")

st.subheader("The noise schedule")
config = model.config if ready else PUBLISHED_CONFIG
try:
    schedule = schedule_of(config)
except PreDiffError as error:
    show_error(error)
    st.stop()
steps = st.slider("DDIM sampling steps", 10, 250, 50, step=10, key="prediff.denoising.schedule_steps")
st.plotly_chart(schedule_figure(schedule, steps), theme=None, config={"displaylogo": False},
                key="prediff.denoising.schedule")
st.caption(f"Schedule of {config.name}: {schedule.num_timesteps} training timesteps, β from "
           f"{schedule.betas[0]:.1e} to {schedule.betas[-1]:.1e}. At timestep t the latent is "
           "√ᾱₜ · clean + √(1-ᾱₜ) · noise; the sampler walks the marked timesteps from right to left.")
