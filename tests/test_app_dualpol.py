"""The Dual-pol page (AppTest) and its app-side logic (prediff.app.dualpol)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from prediff.app import dualpol as logic
from prediff.errors import DataError

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/dual_pol.py"
KEY = "prediff.dualpol"


def _page(**state) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=90)
    app.run()
    for key, value in state.items():
        app.session_state[key] = value
    app.switch_page(PAGE).run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def _tables(app) -> str:
    """Every table of the page as CSV text (column titles included)."""
    return "\n".join(frame.value.to_csv() for frame in app.dataframe)


def _never_cancelled(fraction, message=""):
    return None


def test_page_shows_fields_classic_qpe_scores_and_shapley():
    app = _page()
    assert not app.error
    assert app.title[0].value == "Dual-polarisation radar"
    assert [s.value for s in app.subheader] == ["ZH, ZDR and KDP at three heights",
                                                "ZH nowcast at 1 km: dual-pol vs ZH-only U-Net",
                                                "Rain rate at 1 km from ZH and ZDR (no KDP)",
                                                "What each channel contributes (Shapley values)"]
    assert len(app.get("plotly_chart")) == 3  # fields, QPE maps, Shapley bars (nowcast waits for its button)
    tables = _tables(app)
    assert "Marshall-Palmer" in tables and "R(Z, ZDR)" in tables and "CSI 30-50 mm/h" in tables
    assert "diffusion mean" not in tables  # the diffusion rows appear only after its worker job
    assert "training mean" in "\n".join(c.value for c in app.caption)
    app.radio(key=f"{KEY}.baseline").set_value("no-echo").run()
    assert not app.exception and "no echo" in "\n".join(c.value for c in app.caption)


def test_page_shows_worker_results_when_they_exist():
    info = logic.check_dataset(logic.SHIPPED_CORPUS)
    process = info["processes"][0]
    shape = (5, info["grid"], info["grid"])
    diffusion = {"diffusion mean": np.full(shape, 3.0, np.float32), "diffusion merge": np.full(shape, 4.0, np.float32)}
    nowcast = {name: np.full((10,) + shape[1:], 30.0, np.float32)
               for name in ("dual-pol U-Net", "ZH-only U-Net", "persistence", "observed")}
    app = _page(**{f"{KEY}.qpe_job.results": {(info["root"], process, 0, 4): diffusion},
                   f"{KEY}.nowcast_job.results": {(info["root"], process, 0): nowcast}})
    tables = _tables(app)
    assert "diffusion merge" in tables and "ZH-only U-Net" in tables and "dBZ²" in tables
    assert len(app.get("plotly_chart")) == 4


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "absent", "is not a folder"),
    (lambda tmp: tmp, "not in the NJU-CPOL layout"),
    (lambda tmp: "", "no dataset folder given"),
])
def test_bad_dataset_folder_shows_an_error_not_a_traceback(tmp_path, make, message):
    app = _page(**{f"{KEY}.source": "folder", f"{KEY}.root": str(make(tmp_path))})
    assert app.error and message in app.error[0].value
    assert not app.get("plotly_chart")


def test_folder_with_broken_process_is_a_data_error(tmp_path):
    from prediff.dualpol.synthetic import write_corpus

    write_corpus(tmp_path, processes=[0], n_frames=20, grid_size=16, seed=0)
    (tmp_path / "NJU_CPOL_kdpRain" / "data_dir_000" / "frame_005.npy").unlink()
    with pytest.raises(DataError, match="frame_005"):
        logic.check_dataset(tmp_path)
    app = _page(**{f"{KEY}.source": "folder", f"{KEY}.root": str(tmp_path)})
    assert "frame_005" in app.error[0].value


def test_window_reading_and_labels():
    info = logic.check_dataset(logic.SHIPPED_CORPUS)
    assert info["processes"] == [0, 1, 11] and info["grid"] == 64 and info["test_processes"] == [0, 1]
    fields = logic.read_window(info["root"], 11, 0)
    assert set(fields) == set(logic.RADAR_KEYS) | {"rain"} and fields["KDP@3.0km"].shape == (20, 64, 64)
    labels = logic.time_labels(0)
    assert labels[9].startswith("+0 min") and labels[0].startswith("-54 min") and labels[-1].startswith("+60 min")
    with pytest.raises(DataError, match="valid starts"):
        logic.read_window(info["root"], 11, 5)


def test_echo_mask_blanks_zdr_and_kdp_without_echo():
    fields = {"dBZ@1.0km": np.array([[[0.0, 20.0]]]), "ZDR@1.0km": np.array([[[0.0, 1.5]]]),
              "KDP@1.0km": np.array([[[0.0, 0.3]]]), "rain": np.array([[[0.0, 2.0]]])}
    masked = logic.echo_masked(fields)
    assert np.isnan(masked["ZDR@1.0km"][0, 0, 0]) and masked["ZDR@1.0km"][0, 0, 1] == 1.5
    assert np.isnan(masked["KDP@1.0km"][0, 0, 0]) and masked["rain"][0, 0, 0] == 0.0


def test_score_tables_perfect_and_wrong():
    truth = np.zeros((2, 8, 8), np.float32)
    truth[:, :4] = 40.0
    scores, fuzzy = logic.qpe_score_tables({"perfect": truth, "dry": np.zeros_like(truth)}, truth)
    assert scores.loc["perfect", "MSE ((mm/h)²)"] == 0.0 and scores.loc["dry", "MSE ((mm/h)²)"] == 800.0
    assert [c for c in scores.columns if c.startswith("CSI")][1].startswith("CSI 30")
    assert fuzzy.loc["perfect"].dropna().eq(1.0).all() and fuzzy.loc["dry"].dropna().eq(0.0).all()
    dbz = np.zeros((10, 8, 8), np.float32)
    dbz[:, 2:6, 2:6] = 45.0
    table = logic.nowcast_score_table({"perfect": dbz, "shifted": np.roll(dbz, 1, axis=-1)}, dbz)
    assert table.loc["perfect", "CSI ≥35 dBZ, s=1"] == 1.0 and table.loc["shifted", "CSI ≥35 dBZ, s=1"] < 1.0
    assert table.loc["shifted", "MSE (dBZ²)"] > 0


def test_window_shapley_is_efficient():
    fields = logic.read_window(logic.SHIPPED_CORPUS, 0, 0)
    result = logic.window_shapley(logic.SHIPPED_CORPUS, fields, "mean")
    assert list(result["values"].index)[:2] == ["dBZ@1.0km", "dBZ@3.0km"]
    assert result["values"].sum() == pytest.approx(result["error_all"] - result["error_none"], rel=1e-6)


def test_nowcast_job_returns_every_method():
    result = logic.nowcast_job(_never_cancelled, str(logic.SHIPPED_CORPUS), 0, 0,
                               {name: str(path) for name, path in logic.NOWCAST_CHECKPOINTS.items()})
    assert list(result) == ["dual-pol U-Net", "persistence", "observed", "ZH-only U-Net"]
    fields = logic.read_window(logic.SHIPPED_CORPUS, 0, 0)
    np.testing.assert_allclose(result["persistence"][3], fields["dBZ@1.0km"][9], atol=1e-3)
    np.testing.assert_allclose(result["observed"], fields["dBZ@1.0km"][10:], atol=1e-3)
    assert all(v.shape == (10, 64, 64) for v in result.values())


def test_diffusion_qpe_job_mean_spread_and_merge():
    fields = logic.read_window(logic.SHIPPED_CORPUS, 0, 0)
    condition = {key: fields[key][:1] for key in logic.RADAR_KEYS if not key.startswith("KDP")}
    small = logic.diffusion_qpe_job(_never_cancelled, condition, str(logic.DIFFUSION_QPE_DIR), members=2)
    assert "diffusion merge" not in small and small["members"] == 2
    assert small["diffusion mean"].shape == (1, 64, 64) and np.all(small["ensemble spread"] >= 0)
    full = logic.diffusion_qpe_job(_never_cancelled, condition, str(logic.DIFFUSION_QPE_DIR))
    assert full["diffusion merge"].shape == (1, 64, 64)


def test_app_side_modules_do_not_import_mindspore():
    import subprocess
    import sys

    code = ("import sys, prediff.app.dualpol, prediff.viz.dualpol, prediff.dualpol.diffusion_qpe; "
            "print('mindspore' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"


def test_discrete_scales_and_small_multiples():
    from prediff.viz.dualpol import SCALES, FieldPanel, small_multiples

    assert SCALES["dBZ"].bin_index([2.0, 5.0, 37.0, 80.0, np.nan]).tolist()[1:4] == [0.0, 6.0, 13.0]
    assert np.isnan(SCALES["dBZ"].bin_index([2.0])[0])
    assert SCALES["rain"].bin_index([30.0, 49.9, 50.0]).tolist() == [7.0, 7.0, 8.0]
    frames = np.random.default_rng(0).uniform(0, 60, (3, 8, 8))
    figure = small_multiples([FieldPanel("ZH", frames, "dBZ"), FieldPanel("ZDR", frames / 20, "ZDR", col=2),
                              FieldPanel("still", frames[:1], "dBZ", row=2)], ["a", "b", "c"])
    assert len(figure.frames) == 3 and len(figure.data) == 3
    assert figure.layout.coloraxis.colorbar.ticktext[0] == "5" and figure.layout.coloraxis2.cmax == 11.5
    with pytest.raises(ValueError, match="time labels"):
        small_multiples([FieldPanel("ZH", frames, "dBZ")], ["a"])
