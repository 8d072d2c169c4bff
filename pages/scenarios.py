"""Scenarios: steer the ensemble with knowledge control (e.g. "more" or "less" total precipitation)."""

import streamlit as st

from prediff.app.ui import current_model, model_status

st.title("Scenarios")
st.write("PreDiff's knowledge control adds a guidance term during sampling: an alignment network estimates, "
         "from the noisy latent, how far the forecast is from a physical constraint — in the paper the future "
         "average intensity — and the sampler is nudged towards forecasts that satisfy it. Changing the target "
         "(e.g. the observed average ± a few percent) turns one forecast into explicit what-if scenarios.")

with st.container(border=True):
    st.markdown("**Model**")
    ready = model_status(current_model())
st.info("Guided sampling needs the trained denoiser and alignment network and the sampling pipeline, which is not "
        "connected to the app yet. This page will let you set the target intensity and guidance scale and compare "
        "the guided ensembles side by side.", icon=":material/construction:")
if ready:
    st.write("Your model files are in place; use **Forecast → Load and check the model** to verify that the "
             "alignment checkpoint matches the config.")
