"""Forecast, Denoising and Scenarios pages: their app-side logic, the worker jobs and the pages through AppTest."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from prediff.app import forecast as logic
from prediff.app import state as keys
from prediff.data.geo import SEVIR_PROJ, Grid, corners_for_center
from prediff.data.layout import EventRecord, write_sevir_tree
from prediff.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_model import write_tiny_model  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _storm(size: int, frames: int = 13) -> np.ndarray:
    rows, columns = np.mgrid[0:size, 0:size]
    return np.stack([np.clip(240 * np.exp(-((columns - 25 - 3 * t) ** 2 + (rows - 40 - 2 * t) ** 2) / 400.0), 0, 254)
                     for t in range(frames)]).astype(np.uint8)


def _tree(root: Path, size: int) -> Path:
    corners = corners_for_center(SEVIR_PROJ, 35.2, -97.4, 3000.0 * size, 3000.0 * size)
    vil = np.moveaxis(_storm(size, 25), 0, -1)
    event = EventRecord(id="S1", time_utc=pd.Timestamp("2019-05-20 22:00"), vil=vil,
                        minute_offsets=list(range(-120, 130, 10)), llcrnrlat=corners[0], llcrnrlon=corners[1],
                        urcrnrlat=corners[2], urcrnrlon=corners[3], proj=SEVIR_PROJ, width_m=3000.0 * size,
                        height_m=3000.0 * size, event_type="Hail", episode_id=1, event_id=1)
    return write_sevir_tree(root, [event])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="module")
def storm_tree(tmp_path_factory) -> Path:
    return _tree(tmp_path_factory.mktemp("storm") / "tree", 128)


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    return _tree(tmp_path_factory.mktemp("small") / "tree", 48)


def _model_state(folder: Path) -> dict:
    return {keys.MODEL_KIND: "checkpoints", keys.MODEL_CONFIG: str(folder / "config.yaml"),
            keys.MODEL_VAE: str(folder / "vae.ckpt"), keys.MODEL_DIFFUSION: str(folder / "diffusion.ckpt"),
            keys.MODEL_ALIGN: str(folder / "align.ckpt")}


def _app(page: str, **state) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120)
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    app.switch_page(page).run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def _finish(app: AppTest, job_key: str, timeout: float = 240) -> object:
    """Wait for the page's job, rerun the page and return the job's status."""
    status = app.session_state[keys.RUNNER].wait(app.session_state[job_key], timeout=timeout)
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return status


def _texts(app) -> str:
    parts = [e.value for e in app.error] + [i.value for i in app.info] + [w.value for w in app.warning]
    parts += [c.value for c in app.caption] + [s.value for s in app.success] + [m.value for m in app.markdown]
    return "\n".join(str(p) for p in parts)


# --- app-side logic -----------------------------------------------------------------------------------------

def test_guidance_target_spellings_and_errors():
    assert logic.guidance_target("off", 3) is None
    assert logic.guidance_target("climatology", 2) == "mu+2sigma"
    assert logic.guidance_target("climatology", -1.5) == "mu-1.5sigma"
    assert logic.guidance_target("absolute", 40) == "mean=40px"
    assert logic.guidance_target("context", 1.5) == "context*1.5"
    assert logic.guidance_target("oracle", 2) == "oracle*2"
    from prediff.diffusion.targets import parse_target

    assert parse_target(logic.guidance_target("climatology", 4)).kind == "climatology"
    with pytest.raises(ConfigError, match="0..254"):
        logic.guidance_target("absolute", 300)
    with pytest.raises(ConfigError, match="> 0"):
        logic.guidance_target("context", 0)
    with pytest.raises(ConfigError, match="unknown guidance mode"):
        logic.guidance_target("sideways", 1)


def test_parse_values():
    assert logic.parse_values("0, 2,4") == [0.0, 2.0, 4.0]
    with pytest.raises(ConfigError, match="'two' is not a number"):
        logic.parse_values("0, two")
    with pytest.raises(ConfigError, match="empty"):
        logic.parse_values(" , ")


def test_exceedance_probability_counts_members():
    vil = np.zeros((4, 2, 3, 3), dtype=np.float32)
    vil[:3, 0, 1, 1] = 140
    probability = logic.exceedance_probability(vil, 133)
    assert probability.shape == (2, 3, 3) and probability[0, 1, 1] == pytest.approx(0.75)
    assert probability.sum() == pytest.approx(0.75)


def test_skill_table_scores_ensembles_and_deterministic_forecasts():
    observed = _storm(64, 6)
    perfect = observed.astype(np.float32)
    table = logic.skill_table({"ens": np.stack([perfect, perfect]), "det": perfect + 20}, observed)
    assert list(table.columns[:2]) == ["lead_time", "method"]
    ens = table[table["method"] == "ens"]
    assert list(ens["lead_time"]) == ["10", "20", "30", "40", "50", "60", "all"]
    assert np.allclose(ens["MSE"], 0.0) and np.allclose(ens["CRPS"], 0.0) and np.allclose(ens["CSI-133"], 1.0)
    det = table[table["method"] == "det"]
    assert det["CRPS"].isna().all() and (det["MSE"] > 0).all()
    assert logic.skill_figure(table, "CSI-133").data[0].name == "ens"


def test_scenario_summary_areas_peaks_and_intensity():
    vil = np.zeros((2, 3, 4, 4), dtype=np.float32)
    vil[0, 0, :2, :2] = 200  # 4 pixels >= 133 and >= 181 in member 0 at 10 min
    vil[1, 0, 0, 0] = 220
    table = logic.scenario_summary(vil, pixel_km2=9.0)
    assert list(table.index) == [10, 20, 30]
    assert table.loc[10, "area_ge_133_km2"] == pytest.approx((4 + 1) / 2 * 9.0)
    assert table.loc[10, "area_ge_219_km2"] == pytest.approx(0.5 * 9.0)
    assert table.loc[10, "peak_vil"] == pytest.approx(210.0)
    assert table.loc[20, "peak_vil"] == 0.0
    assert table.loc[10, "mean_intensity"] == pytest.approx((800 + 220) / 16 / 2 / 255.0)
    both = logic.scenario_table({"a": vil, "b": vil * 0}, 9.0)
    assert list(both["scenario"].unique()) == ["a", "b"] and len(both) == 6
    assert len(logic.scenario_figure(both, "peak_vil", "peak").data) == 2
    grid = Grid(SEVIR_PROJ, np.arange(4) * 3000.0, np.arange(4) * 3000.0)
    assert logic.pixel_area_km2(grid) == pytest.approx(9.0)


def test_shown_steps_keeps_every_kth_and_the_last():
    assert logic.shown_steps(20) == list(range(20))
    ddpm = logic.shown_steps(1000)
    assert ddpm[:3] == [0, 20, 40] and ddpm[-1] == 999 and len(ddpm) <= 51


def test_results_are_remembered_by_run_parameters():
    state = {}
    first = logic.run_key("forecast", "S1", {"context": np.zeros(3)})
    assert first == logic.run_key("forecast", "S1", {"context": np.zeros(3)})
    assert first != logic.run_key("forecast", "S1", {"context": np.ones(3)})
    for index in range(6):
        logic.remember(state, "forecast", f"k{index}", index)
    assert logic.recall(state, "forecast", "k5") == 5 and logic.recall(state, "forecast", "k0") is None
    assert logic.recall(state, "denoising", "k5") is None


def test_model_job_kwargs_says_what_to_do_when_the_model_is_missing(tmp_path, monkeypatch):
    from prediff.app.state import model_source

    monkeypatch.setenv(keys.DEMO_MODEL_DIR_ENV, str(tmp_path))  # an empty folder stands for an untrained demo model
    with pytest.raises(Exception, match="which lacks align, config, diffusion, vae"):
        logic.model_job_kwargs(model_source({keys.MODEL_KIND: "demo"}))
    with pytest.raises(Exception, match="these model files do not exist"):
        logic.model_job_kwargs(model_source({keys.MODEL_KIND: "checkpoints", keys.MODEL_CONFIG: "/x/c.yaml"}))


# --- jobs (in this process, tiny model) ---------------------------------------------------------------------

def _job_inputs():
    frames = _storm(128)
    grid = Grid(SEVIR_PROJ, np.arange(128) * 3000.0, np.arange(128) * 3000.0)
    times = np.datetime64("2019-05-20T22:00") + np.arange(7) * np.timedelta64(10, "m")
    return {"context": frames[:7], "observed": frames[7:], "times": times, "grid": grid}


def _model(folder: Path) -> dict:
    return {"config": str(folder / "config.yaml"), "vae": str(folder / "vae.ckpt"),
            "diffusion": str(folder / "diffusion.ckpt"), "align": str(folder / "align.ckpt"), "device": "CPU"}


def test_jobs_forecast_denoise_and_scenarios_with_the_tiny_model(tiny, tmp_path):
    import xarray as xr

    from prediff.app import jobs

    reports = []
    result = jobs.run_forecast(lambda f, m="": reports.append(f), _model(tiny), members=2, steps=2,
                               target="context*2", baselines=("persistence",), **_job_inputs())
    assert result["vil"].shape == (2, 6, 128, 128) and result["vil"].max() <= 254
    assert list(result["lead_times"]) == [10, 20, 30, 40, 50, 60]
    assert result["target_intensity"].shape == (2,) and result["attrs"]["target"] == "context*2"
    assert set(result["skill"]["method"]) == {"PreDiff", "persistence"}
    assert reports == sorted(reports) and reports[-1] > 0.9
    (tmp_path / "forecast.nc").write_bytes(result["netcdf"])
    opened = xr.load_dataset(tmp_path / "forecast.nc")
    assert opened["vil"].shape == (2, 6, 128, 128) and "vil_observed" in opened
    run = jobs.run_denoising(lambda f, m="": None, _model(tiny), steps=3, **_job_inputs())
    assert list(run["steps"]) == [0, 1, 2] and run["clean"].shape == (3, 6, 128, 128)
    assert run["clean"].dtype == np.uint8 and run["latent"].shape == (3, 6, 16, 16, 4)
    assert run["noise_level"][0] > run["noise_level"][-1] and run["target_intensity"] is None
    scenarios = jobs.run_scenarios(lambda f, m="": None, _model(tiny), targets=(None, "context*2"), members=1,
                                   steps=1, **_job_inputs())
    assert list(scenarios["scenarios"]) == ["unguided", "context*2"]
    assert scenarios["target_intensity"]["unguided"] is None


def test_forecast_job_reports_a_context_the_model_cannot_take(tiny):
    from prediff.app import jobs
    from prediff.errors import DataError

    inputs = _job_inputs()
    inputs["context"] = inputs["context"][:, :48, :48]
    with pytest.raises(DataError, match="this model needs"):
        jobs.run_forecast(lambda f, m="": None, _model(tiny), members=1, steps=1, **inputs)


# --- pages --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", ["pages/forecast.py", "pages/denoising.py", "pages/scenarios.py"])
def test_pages_without_a_model_say_what_to_do(storm_tree, page, tmp_path, monkeypatch):
    monkeypatch.setenv(keys.DEMO_MODEL_DIR_ENV, str(tmp_path))  # an empty folder stands for an untrained demo model
    app = _app(page, **{keys.DATA_KIND: "sevir", keys.SEVIR_ROOT: str(storm_tree)})
    assert "which lacks" in _texts(app) and "Set up a model in the sidebar" in _texts(app)
    assert not any(b.label.startswith("Run") for b in app.button)


def test_forecast_page_bad_checkpoint_path(storm_tree, tiny):
    state = dict(_model_state(tiny), **{keys.DATA_KIND: "sevir", keys.SEVIR_ROOT: str(storm_tree),
                                        keys.MODEL_VAE: "/nowhere/vae.ckpt"})
    app = _app("pages/forecast.py", **state)
    assert "these model files do not exist" in app.error[0].value and "/nowhere/vae.ckpt" in app.error[0].value


def test_forecast_page_unknown_event_falls_back_to_a_real_one(storm_tree):
    app = _app("pages/forecast.py", **{keys.DATA_KIND: "sevir", keys.SEVIR_ROOT: str(storm_tree),
                                       keys.EVENT_ID: "NO_SUCH_EVENT"})
    assert app.selectbox(key="prediff.forecast.event").value == "S1" and not app.error


def test_unknown_event_id_is_a_readable_error(storm_tree):
    from prediff.app.data import event_window
    from prediff.app.state import data_source
    from prediff.errors import DataError

    with pytest.raises(DataError, match="NO_SUCH_EVENT"):
        event_window(data_source({keys.DATA_KIND: "sevir", keys.SEVIR_ROOT: str(storm_tree)}), "NO_SUCH_EVENT", 0)


@pytest.mark.slow
def test_forecast_page_runs_shows_results_and_survives_a_failure(storm_tree, tiny):
    state = dict(_model_state(tiny), **{keys.DATA_KIND: "sevir", keys.SEVIR_ROOT: str(storm_tree)})
    app = _app("pages/forecast.py", **state)
    app.number_input(key="prediff.forecast.members").set_value(2)
    app.number_input(key="prediff.forecast.steps").set_value(2)
    app.selectbox(key="prediff.forecast.guidance").select("climatology").run()
    app.button(key="prediff.forecast.run").click().run()
    runner = app.session_state[keys.RUNNER]
    try:
        status = _finish(app, "prediff.forecast.run_job")
        # the tiny model has no intensity_stats.json, so mu+k*sigma cannot be resolved: a readable error
        assert status.state == "failed" and status.error_type == "DataError" and not status.traceback
        assert "intensity" in status.error
        assert any("Ensemble forecast failed" in e.value for e in app.error)
        assert len(app.get("plotly_chart")) == 1  # the preview stays
        app.selectbox(key="prediff.forecast.guidance").select("context").run()
        app.button(key="prediff.forecast.run").click().run()
        status = _finish(app, "prediff.forecast.run_job")
        assert status.state == "done", status.error
        assert len(app.get("plotly_chart")) == 2  # synchronized maps + skill plot
        assert "sampling took" in _texts(app)
        downloads = [str(d.proto) for d in app.get("download_button")]
        assert any(".cdf" in d for d in downloads)
        # GIF and PNG strip are generated when clicked (deferred), so only their buttons are checked here
        assert any("animated GIF" in d and "deferred_file_id" in d for d in downloads)
        assert any("PNG strip" in d and "deferred_file_id" in d for d in downloads)
        app.selectbox(key="prediff.forecast.member").select(1).run()
        app.select_slider(key="prediff.forecast.threshold").set_value(181).run()
        assert not app.exception
    finally:
        runner.shutdown()


@pytest.mark.slow
def test_forecast_page_cancel(storm_tree, tiny):
    state = dict(_model_state(tiny), **{keys.DATA_KIND: "sevir", keys.SEVIR_ROOT: str(storm_tree)})
    app = _app("pages/forecast.py", **state)
    app.number_input(key="prediff.forecast.steps").set_value(500).run()
    app.button(key="prediff.forecast.run").click().run()
    runner = app.session_state[keys.RUNNER]
    try:
        app.button(key="prediff.forecast.run_job.cancel").click().run()
        status = _finish(app, "prediff.forecast.run_job")
        assert status.state == "cancelled"
        assert any("cancelled" in w.value for w in app.warning)
        assert len(app.get("plotly_chart")) == 1  # still the preview, no partial result
    finally:
        runner.shutdown()


@pytest.mark.slow
def test_denoising_and_scenarios_pages_run_in_the_worker(storm_tree, tiny):
    state = dict(_model_state(tiny), **{keys.DATA_KIND: "sevir", keys.SEVIR_ROOT: str(storm_tree)})
    app = _app("pages/denoising.py", **state)
    app.number_input(key="prediff.denoising.steps").set_value(3).run()
    app.button(key="prediff.denoising.run").click().run()
    runner = app.session_state[keys.RUNNER]
    try:
        assert _finish(app, "prediff.denoising.run_job").state == "done"
        assert [m.value for m in app.metric][0] == "1 of 3"
        app.select_slider(key="prediff.denoising.step").set_value(2).run()
        assert [m.value for m in app.metric][0] == "3 of 3"
        # the decoded clean forecast of the step is one heatmap strip with a panel title per lead time
        strip = app.get("plotly_chart")[0]
        assert "+60 min" in strip.proto.spec and '"heatmap"' in strip.proto.spec
        assert not app.get("button") or "prediff.denoising.run" not in [b.key for b in app.button]
        app.button(key="prediff.denoising.play").click().run()
        assert app.session_state["prediff.denoising.playing"] and app.session_state["prediff.denoising.step"] in (0, 1)

        app.switch_page("pages/scenarios.py").run()
        app.text_input(key="prediff.scenarios.values").input("1, 2")
        app.selectbox(key="prediff.scenarios.sweep").select("context")
        app.number_input(key="prediff.scenarios.members").set_value(1)
        app.number_input(key="prediff.scenarios.steps").set_value(1).run()
        app.button(key="prediff.scenarios.run").click().run()
        assert _finish(app, "prediff.scenarios.run_job").state == "done"
        assert len(app.get("plotly_chart")) == 6
        csv = [d for d in app.get("download_button") if "csv" in str(d.proto)]
        assert csv
        app.text_input(key="prediff.scenarios.values").input("1, x").run()
        assert "'x' is not a number" in app.error[0].value
    finally:
        runner.shutdown()
