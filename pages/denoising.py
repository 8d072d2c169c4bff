"""Denoising steps: watch the sampler turn noise into a forecast, one step at a time."""

import streamlit as st

from prediff.app.schedule_view import PUBLISHED_CONFIG, schedule_figure, schedule_of
from prediff.app.ui import current_model, model_status, show_error
from prediff.errors import PreDiffError

st.title("Denoising steps")
st.write("PreDiff forecasts in the latent space of its VAE: the sampler starts from pure noise and removes a "
         "little noise at each step, guided by the context frames; decoding the predicted clean latent after each "
         "step shows the forecast taking shape.")

model = current_model()
with st.container(border=True):
    st.markdown("**Model**")
    ready = model_status(model)
st.info("The step-through view needs a trained model and the sampling pipeline, which is not connected to the "
        "app yet; it will show the predicted clean forecast after every sampler step here.", icon=":material/construction:")

st.subheader("The noise schedule")
config = model.config if ready else PUBLISHED_CONFIG
try:
    schedule = schedule_of(config)
except PreDiffError as error:
    show_error(error)
    st.stop()
steps = st.slider("DDIM sampling steps", 10, 250, 50, step=10, key="prediff.denoising.steps")
st.plotly_chart(schedule_figure(schedule, steps), theme=None, config={"displaylogo": False}, key="prediff.denoising.schedule")
st.caption(f"Schedule of {config.name}: {schedule.num_timesteps} training timesteps, β from "
           f"{schedule.betas[0]:.1e} to {schedule.betas[-1]:.1e}. At timestep t the latent is "
           "√ᾱₜ · clean + √(1-ᾱₜ) · noise; the sampler walks the marked timesteps from right to left.")
