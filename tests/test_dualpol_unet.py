"""Multi-branch residual U-Net, its training loop and checkpoints (prediff.dualpol.unet, prediff.dualpol.train)."""

import dataclasses

import numpy as np
import pytest

from prediff.dualpol.synthetic import write_corpus
from prediff.dualpol.train import (NowcastConfig, build_network, config_from_dict, load_config, load_nowcaster,
                                   load_split, persistence, predict, save_nowcaster, score_nowcasts, train_network)
from prediff.errors import CheckpointError, ConfigError

TINY = {"data": {"input_heights": ["1.0km", "7.0km"], "target": "dBZ@1.0km", "n_input": 3, "n_target": 2,
                 "stride": 2, "test_processes": [0]},
        "model": {"variables": ["dBZ", "ZDR", "KDP"], "width": 2, "levels": 2, "se_reduction": 2},
        "train": {"seed": 0, "steps": 2, "batch_size": 2, "learning_rate": 0.01, "crop": 8}}


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("dualpol")
    write_corpus(root, processes=[0, 11], n_frames=7, grid_size=16, seed=2)
    return root


def test_config_checks_keys_and_values(repo_root):
    config = config_from_dict(TINY)
    assert config.branch_keys == ["dBZ@1.0km", "dBZ@7.0km", "ZDR@1.0km", "ZDR@7.0km", "KDP@1.0km", "KDP@7.0km"]
    assert config.channels_per_branch == 6 and config.last_frame_channel == 2
    assert load_config(repo_root / "configs" / "dualpol.yaml").model.variables == ("dBZ", "ZDR", "KDP")
    assert load_config(repo_root / "configs" / "dualpol_zh_only.yaml").model.variables == ("dBZ",)
    for bad in ({"model": {"widht": 4}}, {"model": {"variables": ["ZDR"]}}, {"data": {"target": "dBZ@3.0km",
                                                                                  "input_heights": ["1.0km"]}},
                {"train": {"crop": 6}}, {"train": {"steps": "many"}}, {"train": {"steps": 2.5}},
                {"data": {"test_processes": [0, 1.5]}}, {"data": {"input_heights": "1.0km"}}, {"optim": {}},
                {"train": {"loss_thresholds_dbz": [35.0], "loss_weights": [1.0]}},
                {"train": {"loss_thresholds_dbz": [40.0, 35.0], "loss_weights": [1, 2, 3]}},
                {"train": {"loss_thresholds_dbz": [35.0], "loss_weights": [1, -2]}},
                {"train": {"loss_thresholds_dbz": ["heavy"], "loss_weights": [1, 2]}},
                {"train": {"val_every": 5}}, {"data": {"val_processes": [0]}}, {"train": {"val_every": -1}}):
        with pytest.raises(ConfigError):
            config_from_dict(bad)


def test_loss_weights_follow_the_observed_zh_classes(repo_root):
    settings = load_config(repo_root / "configs" / "dualpol.yaml").train
    target = np.array([[0.0, 27.7, 28.0, 35.0], [39.0, 50.0, 65.0, np.nan]], dtype=np.float32)
    assert settings.pixel_weights(target).tolist() == [[1, 1, 2, 5], [10, 30, 30, 0]]
    plain = config_from_dict(TINY).train
    assert plain.pixel_weights(target).tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_forward_shapes_and_persistence_start(tiny_corpus):
    config = config_from_dict(TINY)
    inputs, targets, windows = load_split(tiny_corpus, config, "train")
    assert inputs.shape == (2, 18, 16, 16) and targets.shape == (2, 2, 16, 16) and windows == [(11, 0), (11, 2)]
    assert 0.0 <= inputs.min() and inputs.max() <= 1.0
    network = build_network(config)
    for parameter in network.head.get_parameters():
        parameter.set_data(parameter * 0)
    # with a zero head the residual output is the last context frame at the target height: persistence
    assert predict(network, inputs) == pytest.approx(persistence(inputs, config), abs=1e-4)
    zh_only = build_network(dataclasses.replace(config, model=dataclasses.replace(config.model, variables=("dBZ",))))
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    assert zh_only(ms.Tensor(inputs[:, :6])).shape == (2, 2, 16, 16)


def test_one_training_step_is_deterministic_and_checkpoints_round_trip(tiny_corpus, tmp_path):
    config = config_from_dict(TINY)
    inputs, targets, _ = load_split(tiny_corpus, config, "train")
    first, result = train_network(config, inputs, targets, log=lambda _: None)
    second, _ = train_network(config, inputs, targets, log=lambda _: None)
    assert result.history[-1][0] == 2 and np.isfinite(result.history[-1][1])
    assert result.validation == [] and result.kept_step == 2
    weights = {n: p.asnumpy() for n, p in first.parameters_and_names()}
    assert all(np.array_equal(weights[n], p.asnumpy()) for n, p in second.parameters_and_names())
    fresh = {n: p.asnumpy() for n, p in build_network(config).parameters_and_names()}
    assert any(not np.array_equal(weights[n], fresh[n]) for n in weights)
    path = save_nowcaster(first, config, tmp_path / "tiny.ckpt")
    loaded, loaded_config = load_nowcaster(path)
    assert loaded_config == config
    assert predict(loaded, inputs) == pytest.approx(predict(first, inputs))
    other = dataclasses.replace(config, model=dataclasses.replace(config.model, width=3))
    with pytest.raises(CheckpointError, match="does not match"):
        load_nowcaster(path, other)
    (tmp_path / "tiny.yaml").unlink()
    with pytest.raises(CheckpointError, match="yaml"):
        load_nowcaster(path)


def test_score_nowcasts_ranks_a_perfect_forecast_first():
    rng = np.random.default_rng(0)
    observation = rng.uniform(0, 60, size=(2, 3, 8, 8))
    scores = score_nowcasts({"perfect": observation, "noisy": observation + rng.normal(0, 5, observation.shape)},
                            observation, window_sizes=(1, 2))
    assert scores["perfect"]["continuous"]["all"]["MSE"] == 0.0
    assert scores["noisy"]["continuous"]["all"]["MSE"] > 10
    assert np.all(scores["perfect"]["categorical"]["all_lead_times"]["CSI"] == 1.0)
    assert isinstance(NowcastConfig().data.test_processes, tuple)


def test_snapshot_after_k_steps_equals_a_k_step_training(tiny_corpus):
    config = config_from_dict(TINY)
    inputs, targets, _ = load_split(tiny_corpus, config, "train")
    snapshots = {}

    def snapshot(step, network):
        snapshots[step] = {n: p.asnumpy().copy() for n, p in network.parameters_and_names()}

    train_network(config, inputs, targets, log=lambda _: None, log_every=1, snapshot=snapshot)
    assert sorted(snapshots) == [1, 2]
    one_step = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=1))
    short, _ = train_network(one_step, inputs, targets, log=lambda _: None)
    assert all(np.array_equal(snapshots[1][n], p.asnumpy()) for n, p in short.parameters_and_names())
    assert any(not np.array_equal(snapshots[1][n], snapshots[2][n]) for n in snapshots[1])


def test_validation_keeps_the_best_weights_and_the_cli_records_their_step(tmp_path, capsys):
    from prediff.cli import main
    from prediff.dualpol.train import validation_loss

    root = tmp_path / "corpus"
    write_corpus(root, processes=[0, 11, 12], n_frames=7, grid_size=16, seed=2)
    raw = {**TINY, "data": {**TINY["data"], "val_processes": [12]},
           "train": {**TINY["train"], "steps": 6, "val_every": 2, "learning_rate": 0.05}}
    config = config_from_dict(raw)
    inputs, targets, windows = load_split(root, config, "train")
    val_inputs, val_targets, val_windows = load_split(root, config, "val")
    assert {w[0] for w in windows} == {11} and {w[0] for w in val_windows} == {12}
    network, result = train_network(config, inputs, targets, log=lambda _: None,
                                    validation=(val_inputs, val_targets))
    assert [step for step, _ in result.validation] == [2, 4, 6]
    best_step, best_loss = min(result.validation, key=lambda pair: pair[1])
    assert result.kept_step == best_step
    assert validation_loss(network, config, val_inputs, val_targets) == pytest.approx(best_loss, rel=1e-5)
    # the kept weights are those of a training that stops at the kept step (constant learning rate)
    short, _ = train_network(dataclasses.replace(config, train=dataclasses.replace(config.train, steps=best_step,
                                                                                   val_every=0)),
                             inputs, targets, log=lambda _: None)
    assert all(np.array_equal(p.asnumpy(), dict(short.parameters_and_names())[n].asnumpy())
               for n, p in network.parameters_and_names())

    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(__import__("yaml").safe_dump(raw))
    assert main(["dualpol", "train", "--data", str(root), "--config", str(config_path),
                 "--out", str(tmp_path / "net.ckpt")]) == 0
    assert f"the weights after {best_step} steps" in capsys.readouterr().out
    assert load_nowcaster(tmp_path / "net.ckpt")[1].train.steps == best_step
