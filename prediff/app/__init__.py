"""Support code of the Streamlit workbench (``app.py`` and pages/ stay thin views over it).

* :mod:`~prediff.app.state` — the sidebar's ``st.session_state`` keys, defaults and typed views (no Streamlit);
* :mod:`~prediff.app.worker` — the job runner whose worker process does all MindSpore work;
* :mod:`~prediff.app.jobs` — the job functions run in that worker;
* :mod:`~prediff.app.data` — cached dataset / event access (``st.cache_resource`` / ``st.cache_data``);
* :mod:`~prediff.app.events`, :mod:`~prediff.app.verification`, :mod:`~prediff.app.schedule_view` — page logic
  without Streamlit;
* :mod:`~prediff.app.ui` — Streamlit pieces shared by pages: sidebar, error boxes, job panel, tables.

The app process never imports MindSpore; the worker process never imports Streamlit.
"""
