"""PreDiff Workbench: ``streamlit run app.py``.

Sets up the navigation over the pages in pages/ and the global sidebar (dataset, model, device, seed). Pages
are thin views over :mod:`prediff` and :mod:`prediff.app`; model work runs in a worker process, so this process
never imports MindSpore.
"""

import streamlit as st

from prediff.app.ui import render_sidebar

st.set_page_config(page_title="PreDiff Workbench", page_icon=":material/rainy:", layout="wide")

PAGES = [
    st.Page("pages/events.py", title="Events", icon=":material/map:", default=True),
    st.Page("pages/forecast.py", title="Forecast", icon=":material/thunderstorm:"),
    st.Page("pages/denoising.py", title="Denoising steps", icon=":material/animation:"),
    st.Page("pages/scenarios.py", title="Scenarios", icon=":material/alt_route:"),
    st.Page("pages/verification.py", title="Verification", icon=":material/analytics:"),
    st.Page("pages/dual_pol.py", title="Dual-pol", icon=":material/radar:"),
    st.Page("pages/about.py", title="About", icon=":material/info:"),
]

navigation = st.navigation(PAGES)
render_sidebar()
navigation.run()
