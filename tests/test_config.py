"""prediff.config: the published configs load unchanged; bad configs raise ConfigError naming the fix."""

from __future__ import annotations

import copy

import pytest
import yaml

from prediff.config import MODEL_SCHEMA, load_config, vae_network_kwargs
from prediff.errors import ConfigError


@pytest.fixture
def small_raw(repo_root) -> dict:
    with open(repo_root / "configs" / "prediff_small.yaml") as handle:
        return yaml.safe_load(handle)


def test_our_configs_load_with_exponent_strings_as_floats(repo_root):
    full = load_config(repo_root / "configs" / "prediff_sevirlr_full.yaml")
    diffusion = full["model"]["diffusion"]
    assert diffusion["linear_start"] == pytest.approx(1e-4) and isinstance(diffusion["linear_start"], float)
    assert diffusion["linear_end"] == pytest.approx(2e-2)
    assert diffusion["cosine_s"] == pytest.approx(8e-3)
    assert full["model"]["vae"]["block_out_channels"] == [128, 256, 512, 512]
    assert full["model"]["latent_model"]["depth"] == [4, 4]
    assert full["model"]["align"]["model_args"]["base_units"] == 128
    # String-typed values that look numeric stay strings.
    assert full["data"]["metrics_mode"] == "0"
    assert full["model"]["latent_model"]["ffn2_linear_init_mode"] == "2"
    small = load_config(repo_root / "configs" / "prediff_small.yaml")
    assert small["model"]["vae"]["latent_channels"] == 4


@pytest.mark.shared
def test_published_configs_load_unchanged_and_equal_ours(reference_dir, repo_root):
    pairs = ((reference_dir / "diffusion_full.yaml", repo_root / "configs" / "prediff_sevirlr_full.yaml"),
             (reference_dir / "parity" / "small_config.yaml", repo_root / "configs" / "prediff_small.yaml"))
    for published, ours in pairs:
        loaded = load_config(published)
        with open(published) as handle:
            raw = yaml.safe_load(handle)
        assert loaded == load_config(ours)
        # Apart from the exponent strings, every published value comes through as written.
        raw_diffusion = dict(raw["model"]["diffusion"])
        for key in ("linear_start", "linear_end", "cosine_s"):
            assert float(raw_diffusion.pop(key)) == loaded["model"]["diffusion"][key]
        assert {k: v for k, v in loaded["model"]["diffusion"].items() if k in raw_diffusion} == raw_diffusion
        for section in ("vae", "latent_model"):
            assert loaded["model"][section] == raw["model"][section]
        assert loaded["model"]["align"]["model_args"] == raw["model"]["align"]["model_args"]
        assert loaded["data"] == raw["data"] and loaded["eval"] == raw["eval"]


def test_dict_input_is_copied_not_modified(small_raw):
    original = copy.deepcopy(small_raw)
    del small_raw["model"]["latent_model"]["unet_res_connect"]
    before = copy.deepcopy(small_raw)
    loaded = load_config(small_raw)
    assert small_raw == before
    # The optional key left out is filled with the published default.
    assert loaded["model"]["latent_model"]["unet_res_connect"] is True
    assert load_config(original) != before
    assert load_config(loaded) == loaded  # loading a loaded config changes nothing


def test_unknown_model_key_names_nearest_valid_key(small_raw):
    small_raw["model"]["latent_model"]["base_unit"] = small_raw["model"]["latent_model"].pop("base_units")
    with pytest.raises(ConfigError, match=r"model\.latent_model\.base_unit \(did you mean 'base_units'\?\)"):
        load_config(small_raw)


def test_unknown_nested_and_section_keys(small_raw):
    raw = copy.deepcopy(small_raw)
    raw["model"]["align"]["model_args"]["num_head"] = 4
    with pytest.raises(ConfigError, match=r"model\.align\.model_args\.num_head \(did you mean 'num_heads'\?\)"):
        load_config(raw)
    raw = copy.deepcopy(small_raw)
    raw["model"]["vea"] = raw["model"].pop("vae")
    with pytest.raises(ConfigError, match=r"model\.vea \(did you mean 'vae'\?\)"):
        load_config(raw)


def test_missing_required_key_and_section(small_raw):
    raw = copy.deepcopy(small_raw)
    del raw["model"]["vae"]["latent_channels"]
    with pytest.raises(ConfigError, match=r"missing required key\(s\).*model\.vae\.latent_channels"):
        load_config(raw)
    raw = copy.deepcopy(small_raw)
    raw["modle"] = raw.pop("model")
    with pytest.raises(ConfigError, match=r"no 'model' section \(did you mean 'modle'\?\)"):
        load_config(raw)


@pytest.mark.parametrize(("section", "key", "value", "words"), [
    ("vae", "latent_channels", "four", "an integer"),
    ("vae", "layers_per_block", 2.5, "an integer"),
    ("diffusion", "linear_start", "small", "a number"),
    ("latent_model", "depth", [1, "x"], "a list of integers"),
    ("latent_model", "unet_res_connect", "yes", "true or false"),
])
def test_wrongly_typed_values_are_rejected(small_raw, section, key, value, words):
    small_raw["model"][section][key] = value
    with pytest.raises(ConfigError, match=rf"model\.{section}\.{key} .* must be {words}"):
        load_config(small_raw)


def test_numbers_are_converted_where_expected(small_raw):
    small_raw["model"]["diffusion"]["linear_start"] = "5e-5"
    small_raw["model"]["align"]["guide_scale"] = 10
    small_raw["model"]["vae"]["latent_channels"] = 4.0
    loaded = load_config(small_raw)
    assert loaded["model"]["diffusion"]["linear_start"] == 5e-5
    assert loaded["model"]["align"]["guide_scale"] == 10.0 and isinstance(loaded["model"]["align"]["guide_scale"], float)
    assert loaded["model"]["vae"]["latent_channels"] == 4 and isinstance(loaded["model"]["vae"]["latent_channels"], int)


def test_inconsistent_network_shapes_are_reported(small_raw):
    raw = copy.deepcopy(small_raw)
    raw["model"]["vae"]["latent_channels"] = 8
    with pytest.raises(ConfigError, match=r"latent_shape has 4 channels but model\.vae\.latent_channels is 8"):
        load_config(raw)
    raw = copy.deepcopy(small_raw)
    raw["layout"]["t_in"] = 5
    with pytest.raises(ConfigError, match=r"layout\.t_in \(5\) differs"):
        load_config(raw)
    raw = copy.deepcopy(small_raw)
    raw["model"]["vae"]["block_out_channels"] = [8, 16, 32]
    raw["model"]["vae"]["down_block_types"] = raw["model"]["vae"]["down_block_types"][:3]
    raw["model"]["vae"]["up_block_types"] = raw["model"]["vae"]["up_block_types"][:3]
    with pytest.raises(ConfigError, match=r"downsampling factor 4"):
        load_config(raw)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"must hold a mapping"):
        load_config(listing)


def test_vae_network_kwargs_are_the_constructor_keys(repo_root):
    kwargs = vae_network_kwargs(load_config(repo_root / "configs" / "prediff_small.yaml"))
    assert "pretrained_ckpt_path" not in kwargs and "data_channels" not in kwargs
    assert set(kwargs) == set(MODEL_SCHEMA["vae"]) - {"pretrained_ckpt_path", "data_channels"}


def test_overrides_change_values_and_reject_unknown_sections(repo_root):
    from prediff.config import apply_overrides, load_config

    path = repo_root / "configs" / "demo.yaml"
    config = apply_overrides(path, ["train.vae.train_encoder=false", "train.vae.init_checkpoint=runs/x/vae.ckpt",
                                    "train.ldm.lr=1e-4", "model.diffusion.scale_factor=0.5"])
    assert config["train"]["vae"]["train_encoder"] is False
    assert config["train"]["vae"]["init_checkpoint"] == "runs/x/vae.ckpt"
    loaded = load_config(config)
    assert loaded["model"]["diffusion"]["scale_factor"] == 0.5
    assert loaded["train"]["ldm"]["lr"] == 1e-4
    assert "train_encoder" not in load_config(path)["train"]["vae"]
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(path, ["train.vae.lr"])
    with pytest.raises(ConfigError, match="no section modle"):
        apply_overrides(path, ["modle.vae.latent_channels=4"])
