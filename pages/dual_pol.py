"""Dual-pol: polarimetric radar variables next to VIL."""

import streamlit as st

st.title("Dual-polarisation radar")
st.write("Dual-polarisation variables (differential reflectivity Z_DR, specific differential phase K_DP, "
         "correlation coefficient ρ_HV) tell rain from hail and show where updrafts lift large drops — context "
         "that VIL alone does not carry.")
st.info("No dual-pol reader is in the workbench yet, so there is nothing to show on this page. VIL events — "
        "SEVIR, the demo corpus or radar imported with `prediff data import` — are on the Events page.",
        icon=":material/construction:")
