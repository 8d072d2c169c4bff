"""Sidebar settings: defaults, data sources and model files (plain dicts stand in for st.session_state)."""

import pytest

from prediff.app import state as keys
from prediff.app.state import DEMO_CORPUS_DIR, data_source, init_state, model_source
from prediff.errors import CheckpointError, ConfigError, DataError


def test_defaults_and_environment_preset(monkeypatch, tmp_path):
    monkeypatch.delenv("PREDIFF_DATA", raising=False)
    monkeypatch.setenv("PREDIFF_DEVICE", "GPU")
    state = {}
    init_state(state)
    assert state[keys.DATA_KIND] == "demo" and state[keys.DEVICE] == "GPU" and state[keys.SEED] == 0
    assert data_source(state).root == DEMO_CORPUS_DIR
    monkeypatch.setenv("PREDIFF_DATA", str(tmp_path))
    preset = {}
    init_state(preset)
    assert data_source(preset).kind == "sevir" and data_source(preset).root == tmp_path
    chosen = {keys.DATA_KIND: "imported", keys.IMPORTED_ROOT: str(tmp_path)}
    init_state(chosen)
    assert chosen[keys.DATA_KIND] == "imported"
    assert data_source(chosen).require_complete is False


def test_folder_kinds_need_a_folder():
    with pytest.raises(DataError, match="no SEVIR / SEVIR-LR folder entered"):
        data_source({keys.DATA_KIND: "sevir", keys.SEVIR_ROOT: "  "})
    with pytest.raises(DataError, match="unknown dataset kind"):
        data_source({keys.DATA_KIND: "ftp"})


def test_demo_model_not_trained_is_explained(monkeypatch, tmp_path):
    monkeypatch.setattr(keys, "DEMO_MODEL_DIR", tmp_path)
    source = model_source({keys.MODEL_KIND: "demo"})
    assert source.config == tmp_path / "config.yaml" and source.align == tmp_path / "align.ckpt"
    with pytest.raises(CheckpointError, match="demo model is not trained yet"):
        model_source({keys.MODEL_KIND: "demo"}).validate()


def test_demo_model_folder_can_be_overridden(monkeypatch, tmp_path):
    monkeypatch.setenv(keys.DEMO_MODEL_DIR_ENV, str(tmp_path))
    assert keys.demo_model_dir() == tmp_path
    source = model_source({keys.MODEL_KIND: "demo"})
    assert source.vae == tmp_path / "vae.ckpt"
    with pytest.raises(CheckpointError, match=r"\$PREDIFF_DEMO_MODEL_DIR points to .*lacks align, config"):
        source.validate()
    for name in ("config.yaml", "vae.ckpt", "diffusion.ckpt", "align.ckpt"):
        (tmp_path / name).write_text("x")
    model_source({keys.MODEL_KIND: "demo"}).validate()
    monkeypatch.setenv(keys.DEMO_MODEL_DIR_ENV, "  ")
    assert keys.demo_model_dir() == keys.DEMO_MODEL_DIR


def test_checkpoint_paths_are_checked(tmp_path):
    files = {name: tmp_path / name for name in ("c.yaml", "vae.ckpt", "diffusion.ckpt", "align.ckpt", "x.txt")}
    for path in files.values():
        path.write_text("x")
    state = {keys.MODEL_KIND: "checkpoints", keys.MODEL_CONFIG: str(files["c.yaml"]),
             keys.MODEL_VAE: str(files["vae.ckpt"]), keys.MODEL_DIFFUSION: str(tmp_path / "nope.ckpt"),
             keys.MODEL_ALIGN: "", keys.DEVICE: "CPU", keys.SEED: 3}
    with pytest.raises(CheckpointError, match=r"diffusion: .*nope\.ckpt; align: \(empty\)"):
        model_source(state).validate()
    state[keys.MODEL_DIFFUSION] = str(files["diffusion.ckpt"])
    state[keys.MODEL_ALIGN] = str(files["x.txt"])
    with pytest.raises(CheckpointError, match="not a .ckpt"):
        model_source(state).validate()
    state[keys.MODEL_ALIGN] = str(files["align.ckpt"])
    state[keys.MODEL_CONFIG] = str(files["x.txt"])
    with pytest.raises(ConfigError, match="not a YAML"):
        model_source(state).validate()
    state[keys.MODEL_CONFIG] = str(files["c.yaml"])
    source = model_source(state)
    source.validate()
    assert source.seed == 3 and source.diffusion == files["diffusion.ckpt"]
