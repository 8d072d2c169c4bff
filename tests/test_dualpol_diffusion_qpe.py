"""Conditional diffusion QPE (prediff.dualpol.diffusion_qpe), its learned merge and `qpe --method diffusion`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from prediff.dualpol.diffusion_qpe import (CONDITION_KEYS, DiffusionQpeConfig, RainDiffusionModel, condition_array,
                                           ensemble_mean, fit_prior, load_qpe_config, load_qpe_model,
                                           qpe_config_from_dict, rain_to_residual, rain_to_state, residual_to_rain,
                                           sample_ensemble, save_qpe_model, score_rain_estimates, state_to_rain,
                                           timestep_embedding, train_denoiser)
from prediff.dualpol.qpe import marshall_palmer
from prediff.errors import CheckpointError, ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "assets" / "dualpol_corpus"
SHIPPED_MODEL = REPO / "assets" / "dualpol_diffusion_qpe"


def _tiny_config(**train) -> DiffusionQpeConfig:
    config = DiffusionQpeConfig()
    return dataclasses.replace(config, model=dataclasses.replace(config.model, width=4, time_embedding=8),
                               diffusion=dataclasses.replace(config.diffusion, prior="R(Z, ZDR)"),
                               sampling=dataclasses.replace(config.sampling, num_steps=4, members=3),
                               train=dataclasses.replace(config.train, **{"steps": 4, "batch_size": 2, "crop": 8,
                                                                          **train}))


def _synthetic_frames(n=6, size=16, seed=0):
    """ZH / ZDR condition and a rain rate that follows Marshall-Palmer from ZH at 1 km."""
    rng = np.random.default_rng(seed)
    fields = {key: rng.uniform(0, 50 if key.startswith("dBZ") else 3, (n, size, size)).astype(np.float32)
              for key in CONDITION_KEYS}
    rain = (10 ** (fields["dBZ@1.0km"] / 10) / 200) ** (1 / 1.6)
    return condition_array(fields), rain.astype(np.float32), fields


def _untrained_model(config):
    from prediff.dualpol.diffusion_qpe import build_denoiser
    from prediff.runtime import mindspore_module

    mindspore_module().set_seed(0)
    return RainDiffusionModel(build_denoiser(config), marshall_palmer())


def test_rain_state_transform_round_trips_and_spans_minus_one_to_one():
    rain = np.array([0.0, 0.1, 1.0, 30.0, 200.0, np.nan])
    state = rain_to_state(rain)
    assert state[0] == pytest.approx(-1.0) and state[4] == pytest.approx(1.0) and np.isnan(state[5])
    np.testing.assert_allclose(state_to_rain(state[:5]), rain[:5], rtol=1e-5, atol=1e-5)
    assert state_to_rain(np.array([-3.0, 3.0])).tolist() == pytest.approx([0.0, 200.0])


def test_config_is_strict_and_shipped_config_loads():
    config = load_qpe_config(REPO / "configs" / "dualpol_diffusion_qpe.yaml")
    assert config.diffusion.timesteps == 1000 and config.sampling.num_steps == 20
    with pytest.raises(ConfigError, match="unknown key"):
        qpe_config_from_dict({"model": {"widht": 8}})
    with pytest.raises(ConfigError, match="wrong type"):
        qpe_config_from_dict({"train": {"steps": "many"}})
    assert config.diffusion.prior == "R(Z, ZDR)" and DiffusionQpeConfig().diffusion.prior == "none"
    with pytest.raises(ConfigError, match="diffusion.prior"):
        qpe_config_from_dict({"diffusion": {"prior": "Marshall-Palmer"}})
    with pytest.raises(ConfigError, match="num_steps"):
        qpe_config_from_dict({"diffusion": {"timesteps": 10}, "sampling": {"num_steps": 20}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_qpe_config(REPO / "configs" / "missing.yaml")


def test_condition_channels_are_normalised_and_named():
    condition, _, fields = _synthetic_frames()
    assert condition.shape == (6, 6, 16, 16) and condition.min() >= 0 and condition.max() <= 1
    fields["dBZ@1.0km"][0, 0, 0] = np.nan
    assert condition_array(fields)[0, 0, 0, 0] == 0.0
    with pytest.raises(DataError, match="ZDR@7.0km"):
        condition_array({k: v for k, v in fields.items() if k != "ZDR@7.0km"})


def test_clean_state_clipping_only_acts_outside_the_state_range():
    from prediff.dualpol.diffusion_qpe import _clipped_eps

    abar = 0.3
    clean = np.array([[-0.5, 0.9, 3.0, -4.0]], np.float32)
    eps = np.array([[0.1, -0.2, 0.3, 0.4]], np.float32)
    sample = np.sqrt(abar) * clean + np.sqrt(1 - abar) * eps
    clipped = _clipped_eps(sample, eps, abar, -1.0, 1.0)
    np.testing.assert_allclose(clipped[0, :2], eps[0, :2], atol=1e-5)
    recovered = (sample - np.sqrt(1 - abar) * clipped) / np.sqrt(abar)
    np.testing.assert_allclose(recovered[0], [-0.5, 0.9, 1.0, -1.0], atol=1e-5)


def test_residual_round_trips_and_the_prior_law_is_recovered():
    prior = np.array([0.0, 1.0, 10.0, 50.0], np.float32)
    rain = np.array([0.0, 1.3, 8.0, np.nan], np.float32)
    residual = rain_to_residual(rain, prior, 0.02)
    assert residual[0] == 0.0 and residual[1] > 0 > residual[2] and np.isnan(residual[3])
    np.testing.assert_allclose(residual_to_rain(residual[:3], prior[:3], 0.02), rain[:3], rtol=1e-4, atol=1e-4)
    # a rain field made by an exact R(Z, ZDR) law gives that law back
    condition, _, fields = _synthetic_frames()
    law = 0.01 * (10 ** (fields["dBZ@1.0km"] / 10)) ** 0.9 * (10 ** (fields["ZDR@1.0km"] / 10)) ** -2.0
    fitted = fit_prior(condition, law.astype(np.float32))
    assert fitted.coefficients == pytest.approx((0.9, -2.0), abs=1e-3)
    assert 10 ** fitted.intercept == pytest.approx(0.01, rel=1e-2)


def test_members_are_dry_without_echo_and_stay_near_the_prior_law():
    condition, _, fields = _synthetic_frames()
    fields["dBZ@1.0km"][:, :4] = 0.0
    config = _tiny_config()
    model = _untrained_model(config)
    condition = condition_array(fields)[:2]
    ensemble = sample_ensemble(model, config, condition, seed=1)
    prior = model.prior_rain(condition)
    assert np.all(ensemble[:, :, :4] == 0.0) and ensemble.min() >= 0 and ensemble.max() <= 200
    # 0.1 below the state of 1 mm/h is still above the dry state -1
    assert np.all((ensemble > 0) | (prior[:, None] < 1.0))
    # even an untrained denoiser stays within residual_clip x residual_scale of the law in the rain state
    distance = np.abs(rain_to_state(ensemble) - rain_to_state(prior)[:, None])
    limit = config.sampling.residual_clip * config.diffusion.residual_scale
    assert distance.max() <= limit + 1e-4 and distance.max() > 0.5 * limit
    with pytest.raises(ConfigError, match="residual_clip"):
        qpe_config_from_dict({"sampling": {"residual_clip": 0}})


def test_without_a_prior_the_rain_state_itself_is_diffused(tmp_path):
    condition, _, _ = _synthetic_frames()
    config = dataclasses.replace(_tiny_config(), diffusion=DiffusionQpeConfig().diffusion)
    plain = RainDiffusionModel(_untrained_model(config).network, None)
    assert plain.prior_rain(condition) is None
    ensemble = sample_ensemble(plain, config, condition[:2], seed=3)
    assert ensemble.shape == (2, 3, 16, 16) and ensemble.min() >= 0 and ensemble.max() <= 200
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "prior_law.yaml").write_text("stale")
    save_qpe_model(tmp_path / "model", config, plain)
    assert not (tmp_path / "model" / "prior_law.yaml").exists()
    loaded, _, _ = load_qpe_model(tmp_path / "model")
    assert loaded.prior is None
    np.testing.assert_array_equal(sample_ensemble(loaded, config, condition[:2], seed=3), ensemble)


def test_timestep_embedding_distinguishes_timesteps():
    embedding = timestep_embedding(np.array([0, 1, 999]), 8)
    assert embedding.shape == (3, 8) and embedding.dtype == np.float32
    assert not np.allclose(embedding[1], embedding[2])


def test_sampling_is_seeded_and_checkpoints_round_trip(tmp_path):
    condition, _, _ = _synthetic_frames()
    config = _tiny_config()
    network = _untrained_model(config)
    ensemble = sample_ensemble(network, config, condition[:2], seed=3)
    assert ensemble.shape == (2, 3, 16, 16) and ensemble.min() >= 0 and ensemble.max() <= 200
    np.testing.assert_array_equal(ensemble, sample_ensemble(network, config, condition[:2], seed=3))
    assert not np.array_equal(ensemble[:, 0], ensemble[:, 1])
    assert ensemble_mean(ensemble).shape == (2, 16, 16)

    save_qpe_model(tmp_path / "model", config, network)
    loaded, merge, loaded_config = load_qpe_model(tmp_path / "model")
    assert merge is None and loaded_config == config and loaded.prior == network.prior
    (tmp_path / "model" / "prior_law.yaml").unlink()
    with pytest.raises(CheckpointError, match="prior"):
        load_qpe_model(tmp_path / "model")
    save_qpe_model(tmp_path / "model", config, network)
    np.testing.assert_array_equal(sample_ensemble(loaded, config, condition[:2], seed=3), ensemble)
    wider = dataclasses.replace(config, model=dataclasses.replace(config.model, width=6))
    (tmp_path / "model" / "config.yaml").write_text(yaml.safe_dump(wider.to_dict()))
    with pytest.raises(CheckpointError, match="does not match"):
        load_qpe_model(tmp_path / "model")


@pytest.mark.slow
def test_training_lowers_the_loss():
    condition, rain, _ = _synthetic_frames()
    config = _tiny_config(steps=20, learning_rate=1e-2)
    _, history = train_denoiser(config, condition, rain, log=lambda _: None, log_every=10)
    assert history[-1][1] < history[0][1]


def test_merge_weights_are_convex():
    from prediff.dualpol.merge import build_merge, ensemble_features, merge_ensemble

    rng = np.random.default_rng(0)
    ensemble = rng.uniform(0, 40, (8, 4, 8, 8)).astype(np.float32)
    reflectivity = rng.uniform(0, 50, (8, 8, 8)).astype(np.float32)
    features, ordered = ensemble_features(ensemble, reflectivity)
    assert features.shape == (8, 7, 8, 8) and np.all(np.diff(ordered, axis=1) >= 0)
    merged = merge_ensemble(build_merge(4), ensemble, reflectivity)
    assert np.all(merged >= ordered[:, 0] - 1e-4) and np.all(merged <= ordered[:, -1] + 1e-4)
    with pytest.raises(DataError, match="members"):
        merge_ensemble(build_merge(3), ensemble, reflectivity)


@pytest.mark.slow
def test_merge_learns_to_pick_the_right_member():
    from prediff.dualpol.merge import merge_ensemble, train_merge

    rng = np.random.default_rng(0)
    ensemble = rng.uniform(0, 40, (8, 4, 8, 8)).astype(np.float32)
    reflectivity = rng.uniform(0, 50, (8, 8, 8)).astype(np.float32)
    truth = np.sort(ensemble, axis=1)[:, -1]
    network, _ = train_merge(ensemble, reflectivity, truth, steps=60, learning_rate=0.1, log=lambda _: None)
    learned = merge_ensemble(network, ensemble, reflectivity)
    assert np.mean((learned - truth) ** 2) < 0.2 * np.mean((ensemble.mean(axis=1) - truth) ** 2)


def test_score_rain_estimates_perfect_and_biased():
    truth = np.zeros((2, 8, 8), dtype=np.float32)
    truth[:, :4] = 40.0
    scores = score_rain_estimates({"perfect": truth, "double": 2 * truth}, truth)
    assert scores["perfect"]["continuous"]["all"]["MSE"] == 0.0
    assert scores["double"]["continuous"]["all"]["RBIAS"] == pytest.approx(1.0)
    csi = scores["perfect"]["categorical"]["all_lead_times"]["CSI"][0]
    assert csi[1] == pytest.approx(1.0)


def test_shipped_model_runs_on_the_shipped_corpus():
    from prediff.dualpol.diffusion_qpe import diffusion_qpe_experiment

    result = diffusion_qpe_experiment(CORPUS, SHIPPED_MODEL, [0, 1], frame_step=10, members=2)
    assert set(result["scores"]) == {"Marshall-Palmer", "fitted Z-R", "R(Z, ZDR)", "diffusion mean"}
    assert result["ensemble"].shape == (6, 2, 64, 64)      # frames 0, 10, 20 of the two test processes
    assert np.isfinite(result["scores"]["diffusion mean"]["continuous"]["all"]["MSE"])


def test_cli_qpe_diffusion(tmp_path, capsys):
    from prediff.cli import main

    out = tmp_path / "scores.json"
    assert main(["dualpol", "qpe", "--data", str(CORPUS), "--method", "diffusion", "--model", str(SHIPPED_MODEL),
                 "--frame-step", "10", "--members", "2", "--json", str(out)]) == 0
    assert "diffusion mean" in capsys.readouterr().out and "Marshall-Palmer" in out.read_text()
    assert main(["dualpol", "qpe", "--data", str(CORPUS), "--method", "diffusion", "--height", "3.0km"]) != 0
    assert "1 km" in capsys.readouterr().err
    assert main(["dualpol", "qpe", "--data", str(CORPUS)]) == 0
    assert "diffusion" not in capsys.readouterr().out
