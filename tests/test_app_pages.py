"""Every page of the app through Streamlit's AppTest, including the error paths users hit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from prediff.app import state as keys
from prediff.data.geo import SEVIR_PROJ, corners_for_center
from prediff.data.layout import EventRecord, write_sevir_tree

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(scope="module")
def sevir_tree(tmp_path_factory):
    rows, columns = np.mgrid[0:48, 0:48]
    events = []
    for index, (lat, lon, kind, time_utc) in enumerate([(35.2, -97.4, "Hail", "2019-05-20 22:00"),
                                                         (41.9, -87.6, "Thunderstorm Wind", "2019-07-02 18:30"),
                                                         (30.3, -90.0, "", "2018-08-11 12:00"),
                                                         (60.2, 24.9, "Imported radar (FMI PGM)", "2019-08-01 20:00")]):
        vil = np.stack([np.clip(220 * np.exp(-((columns - 10 - t) ** 2 + (rows - 20) ** 2) / 60.0), 0, 254)
                        for t in range(25)], axis=-1).astype(np.uint8)
        if index == 3:
            vil[:5] = 255  # partly outside radar coverage
        corners = corners_for_center(SEVIR_PROJ, lat, lon, 144000.0, 144000.0)
        events.append(EventRecord(id=f"S7{index}", time_utc=pd.Timestamp(time_utc), vil=vil,
                                  minute_offsets=list(range(-120, 130, 10)), llcrnrlat=corners[0],
                                  llcrnrlon=corners[1], urcrnrlat=corners[2], urcrnrlon=corners[3], proj=SEVIR_PROJ,
                                  width_m=144000.0, height_m=144000.0, event_type=kind,
                                  episode_id=index if index < 2 else None, event_id=index if index < 2 else None))
    return write_sevir_tree(tmp_path_factory.mktemp("sevir") / "tree", events)


def _app(page: str, **state) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=180)
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    if page != "pages/events.py":
        app.switch_page(page).run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def _sevir(root) -> dict:
    return {keys.DATA_KIND: "sevir", keys.SEVIR_ROOT: str(root)}


def _texts(app) -> str:
    parts = [m.value for m in app.markdown] + [e.value for e in app.error] + [i.value for i in app.info]
    parts += [w.value for w in app.warning] + [c.value for c in app.caption] + [s.value for s in app.success]
    return "\n".join(str(p) for p in parts)


# --- events -------------------------------------------------------------------------------------------------

def test_events_page_shows_catalog_map_and_event(sevir_tree):
    app = _app("pages/events.py", **_sevir(sevir_tree))
    assert not app.error
    assert app.title[0].value == "Storm events"
    assert app.query_params["event"] == ["S70"] or app.query_params["event"] == "S70"
    assert [m.value for m in app.metric][:2] == ["2019-05-20", "22:00 UTC"]
    assert len(app.get("plotly_chart")) == 2
    assert "3 of 3 events" in _texts(app) and "1 more event(s) with missing pixels" in _texts(app)
    app.selectbox(key="prediff.events.picker").select("S71").run()
    assert app.session_state[keys.EVENT_ID] == "S71"
    assert [m.value for m in app.metric][0] == "2019-07-02"
    app.toggle[0].set_value(True).run()
    assert not app.exception
    download = app.get("download_button")
    assert len(download) == 2 and ".gif" in str(download[0].proto) and ".png" in str(download[1].proto)


def test_events_catalog_is_an_interactive_table_and_a_row_choice_picks_the_event(sevir_tree):
    app = _app("pages/events.py", **_sevir(sevir_tree))
    table = app.dataframe[0]
    assert list(table.value["id"]) == ["S70", "S71", "S72"]
    assert table.proto.selection_mode == [table.proto.SelectionMode.SINGLE_ROW]
    columns = json.loads(table.proto.columns)
    assert columns["max VIL (kg m-2)"]["label"] == "Max VIL (kg m⁻²)"
    assert columns["time (UTC)"]["type_config"]["type"] == "datetime"


def test_imported_source_keeps_events_with_missing_pixels(sevir_tree):
    app = _app("pages/events.py", **{keys.DATA_KIND: "imported", keys.IMPORTED_ROOT: str(sevir_tree)})
    assert "4 of 4 events" in _texts(app) and "missing pixels" not in _texts(app)
    app.selectbox(key="prediff.events.picker").select("S73").run()
    assert not app.exception and not app.error
    assert "Finnish Meteorological Institute (FMI), CC BY 4.0" in _texts(app)


def test_events_page_filters(sevir_tree):
    app = _app("pages/events.py", **_sevir(sevir_tree))
    app.text_input[0].input("wind").run()
    assert "1 of 3 events" in _texts(app)
    assert app.session_state[keys.EVENT_ID] == "S71"
    app.text_input[0].input("no such storm").run()
    assert "No event matches" in _texts(app)


def test_events_page_link_to_event_and_unknown_id(sevir_tree):
    app = AppTest.from_file(APP, default_timeout=180)
    for key, value in _sevir(sevir_tree).items():
        app.session_state[key] = value
    app.query_params["event"] = "S72"
    app.run()
    assert app.session_state[keys.EVENT_ID] == "S72" and not app.error
    app.query_params["event"] = "S999"
    app.run()
    assert not app.exception
    assert "unknown event id 'S999'" in app.error[0].value
    assert app.session_state[keys.EVENT_ID] == "S72"


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp, "has no CATALOG.csv"),
    (lambda tmp: tmp / "does-not-exist", "does not exist"),
])
def test_events_page_bad_folders(tmp_path, make, message):
    app = _app("pages/events.py", **_sevir(make(tmp_path)))
    assert message in app.error[0].value
    assert not app.get("plotly_chart")


def test_events_page_missing_folder_entry_and_missing_hdf5(sevir_tree, tmp_path):
    app = _app("pages/events.py", **{keys.DATA_KIND: "imported", keys.IMPORTED_ROOT: ""})
    assert "no imported radar folder entered" in app.error[0].value
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "CATALOG.csv").write_text((sevir_tree / "CATALOG.csv").read_text())
    app = _app("pages/events.py", **_sevir(broken))
    assert "not there" in app.error[0].value


def test_pages_explain_an_empty_catalog(sevir_tree, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    header = (sevir_tree / "CATALOG.csv").read_text().splitlines()[0]
    (empty / "CATALOG.csv").write_text(header + "\n")
    app = _app("pages/events.py", **_sevir(empty))
    assert "holds no usable VIL events" in app.warning[0].value
    assert not app.get("plotly_chart")
    for page in ("pages/forecast.py", "pages/verification.py"):
        app = _app(page, **_sevir(empty))
        assert "holds no usable VIL events" in app.warning[0].value


def test_a_remembered_event_that_no_longer_exists_falls_back_to_the_first(sevir_tree):
    app = _app("pages/forecast.py", **_sevir(sevir_tree), **{keys.EVENT_ID: "S404"})
    assert not app.error
    assert app.selectbox(key="prediff.forecast.event").value == "S70"


# --- model pages --------------------------------------------------------------------------------------------

def test_forecast_page_demo_model_not_trained(sevir_tree, tmp_path, monkeypatch):
    monkeypatch.setenv(keys.DEMO_MODEL_DIR_ENV, str(tmp_path))  # an empty folder stands for an untrained demo model
    app = _app("pages/forecast.py", **_sevir(sevir_tree))
    assert "lacks" in _texts(app) and keys.DEMO_MODEL_DIR_ENV in _texts(app)
    assert "Set up a model in the sidebar" in _texts(app)
    assert len(app.get("plotly_chart")) == 1
    assert not app.error


def test_forecast_page_bad_checkpoint_paths(sevir_tree, tmp_path):
    state = dict(_sevir(sevir_tree), **{keys.MODEL_KIND: "checkpoints", keys.MODEL_CONFIG: str(tmp_path / "c.yaml"),
                                         keys.MODEL_VAE: "/nowhere/vae.ckpt", keys.MODEL_DIFFUSION: "",
                                         keys.MODEL_ALIGN: str(tmp_path)})
    app = _app("pages/forecast.py", **state)
    assert "these model files do not exist" in app.error[0].value
    assert "/nowhere/vae.ckpt" in app.error[0].value
    assert not app.button  # nothing to load


@pytest.mark.parametrize("page", ["pages/denoising.py", "pages/scenarios.py"])
def test_model_pages_name_missing_checkpoints(sevir_tree, tmp_path, page):
    state = dict(_sevir(sevir_tree), **{keys.MODEL_KIND: "checkpoints", keys.MODEL_CONFIG: str(tmp_path / "c.yaml"),
                                         keys.MODEL_VAE: str(tmp_path / "vae.ckpt"), keys.MODEL_DIFFUSION: "",
                                         keys.MODEL_ALIGN: ""})
    app = _app(page, **state)
    assert "these model files do not exist" in app.error[0].value and "vae.ckpt" in app.error[0].value
    assert not [button for button in app.button if button.key and button.key.endswith(".run")]


def test_demo_model_from_the_environment_enables_the_run_button(sevir_tree, tmp_path, monkeypatch):
    for name in ("config.yaml", "vae.ckpt", "diffusion.ckpt", "align.ckpt"):
        (tmp_path / name).write_text("x")
    monkeypatch.setenv(keys.DEMO_MODEL_DIR_ENV, str(tmp_path))
    app = _app("pages/forecast.py", **_sevir(sevir_tree))
    assert "Model files found" in _texts(app)
    assert app.button(key="prediff.forecast.run")


def test_forecast_page_window_choice(sevir_tree):
    app = _app("pages/forecast.py", **_sevir(sevir_tree))
    app.radio(key="prediff.forecast.window").set_value(2).run()
    assert not app.exception and not app.error
    assert "ending 2019-05-20 23:00 UTC" in _texts(app)


def test_denoising_page_shows_the_published_schedule(sevir_tree):
    app = _app("pages/denoising.py", **_sevir(sevir_tree))
    assert "1000 training timesteps" in _texts(app)
    assert len(app.get("plotly_chart")) == 1


def test_denoising_page_bad_config_is_readable(sevir_tree, tmp_path):
    for name in ("vae.ckpt", "diffusion.ckpt", "align.ckpt"):
        (tmp_path / name).write_bytes(b"not a checkpoint")
    (tmp_path / "c.yaml").write_text("model: [unclosed\n")
    state = dict(_sevir(sevir_tree), **{keys.MODEL_KIND: "checkpoints", keys.MODEL_CONFIG: str(tmp_path / "c.yaml"),
                                         keys.MODEL_VAE: str(tmp_path / "vae.ckpt"),
                                         keys.MODEL_DIFFUSION: str(tmp_path / "diffusion.ckpt"),
                                         keys.MODEL_ALIGN: str(tmp_path / "align.ckpt")})
    app = _app("pages/denoising.py", **state)
    assert "Model files found" in _texts(app)
    assert app.error and "c.yaml" in app.error[0].value


@pytest.mark.parametrize("page, text", [("pages/scenarios.py", "knowledge control"),
                                        ("pages/dual_pol.py", "NJU-CPOL layout"),
                                        ("pages/about.py", "Veillette")])
def test_static_pages(page, text):
    app = _app(page)
    assert text in _texts(app)
    assert not app.error


def test_verification_page_scores_baselines(sevir_tree):
    app = _app("pages/verification.py", **_sevir(sevir_tree))
    assert not app.error
    assert len(app.get("plotly_chart")) == 1
    tables = "\n".join(frame.value.to_csv() for frame in app.dataframe)
    assert "persistence" in tables and "extrapolation" in tables and "CSI-M" in tables


def test_pages_report_a_bad_dataset_without_traceback(tmp_path):
    for page in ("pages/forecast.py", "pages/verification.py"):
        app = _app(page, **_sevir(tmp_path))
        assert "has no CATALOG.csv" in app.error[0].value


def test_model_check_runs_in_the_worker_and_reports_a_readable_error(sevir_tree, tmp_path):
    """The button starts a job in the session's worker (MindSpore imports there, ~5-10 s); a bad config comes
    back as an error box, not a traceback."""
    for name in ("vae.ckpt", "diffusion.ckpt", "align.ckpt"):
        (tmp_path / name).write_bytes(b"not a checkpoint")
    (tmp_path / "c.yaml").write_text("data: {}\n")
    state = dict(_sevir(sevir_tree), **{keys.MODEL_KIND: "checkpoints", keys.MODEL_CONFIG: str(tmp_path / "c.yaml"),
                                         keys.MODEL_VAE: str(tmp_path / "vae.ckpt"),
                                         keys.MODEL_DIFFUSION: str(tmp_path / "diffusion.ckpt"),
                                         keys.MODEL_ALIGN: str(tmp_path / "align.ckpt")})
    app = _app("pages/forecast.py", **state)
    app.button[0].click().run()
    runner = app.session_state[keys.RUNNER]
    try:
        job_id = app.session_state["prediff.forecast.check_job"]
        status = runner.wait(job_id, timeout=120)
        assert status.state == "failed" and status.error_type == "ConfigError"
        app.run()
        assert not app.exception
        assert any("Loading the model failed" in e.value and "model" in e.value for e in app.error)
    finally:
        runner.shutdown()


def test_the_app_process_never_imports_mindspore(sevir_tree):
    """Streamlit's protobuf breaks a later MindSpore import, so no page may import it (the worker does)."""
    script = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"app = AppTest.from_file({APP!r}, default_timeout=180)\n"
        "app.run()\n"
        "for page in ('pages/forecast.py', 'pages/denoising.py', 'pages/scenarios.py', 'pages/verification.py',\n"
        "             'pages/dual_pol.py', 'pages/about.py'):\n"
        "    app.switch_page(page).run()\n"
        "    assert not app.exception, page\n"
        "print('MINDSPORE' if 'mindspore' in sys.modules else 'CLEAN')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, PREDIFF_DATA=str(sevir_tree)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "CLEAN"


def test_a_running_model_job_can_be_cancelled_from_the_page(sevir_tree, tmp_path):
    for name in ("vae.ckpt", "diffusion.ckpt", "align.ckpt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "c.yaml").write_text("data: {}\n")
    state = dict(_sevir(sevir_tree), **{keys.MODEL_KIND: "checkpoints", keys.MODEL_CONFIG: str(tmp_path / "c.yaml"),
                                         keys.MODEL_VAE: str(tmp_path / "vae.ckpt"),
                                         keys.MODEL_DIFFUSION: str(tmp_path / "diffusion.ckpt"),
                                         keys.MODEL_ALIGN: str(tmp_path / "align.ckpt")})
    app = _app("pages/forecast.py", **state)
    app.button[0].click().run()
    runner = app.session_state[keys.RUNNER]
    try:
        # MindSpore takes seconds to import in the fresh worker, so the job is still queued or running here
        app.button(key="prediff.forecast.check_job.cancel").click().run()
        status = runner.wait(app.session_state["prediff.forecast.check_job"], timeout=120)
        assert status.state == "cancelled"
        app.run()
        assert any("cancelled" in warning.value for warning in app.warning)
        assert not app.exception
    finally:
        runner.shutdown()
