"""``prediff dualpol ...`` commands end to end on tiny corpora (prediff.commands.dualpol)."""

import json

import numpy as np
import pytest
import yaml

from prediff.cli import main

TINY_CONFIG = {"data": {"input_heights": ["1.0km"], "target": "dBZ@1.0km", "n_input": 3, "n_target": 2,
                        "stride": 3, "test_processes": [0]},
               "model": {"variables": ["dBZ", "ZDR"], "width": 2, "levels": 2, "se_reduction": 2},
               "train": {"steps": 1, "batch_size": 2, "crop": 8}}


def test_demo_qpe_and_shapley(tmp_path, capsys):
    root = tmp_path / "corpus"
    assert main(["dualpol", "demo", "--out", str(root), "--processes", "0", "11", "--frames", "6", "--grid", "24",
                 "--dtype", "float16"]) == 0
    assert len(list(root.rglob("*.npy"))) == 2 * 6 * 10
    assert main(["dualpol", "qpe", "--data", str(root), "--test-processes", "0", "--json",
                 str(tmp_path / "qpe.json")]) == 0
    table = json.loads((tmp_path / "qpe.json").read_text())
    assert set(table) == {"Marshall-Palmer", "fitted Z-R", "R(Z, ZDR)"} and table["fitted Z-R"]["MSE"] >= 0
    assert main(["dualpol", "shapley", "--data", str(root), "--test-processes", "0", "--frame-step", "2",
                 "--json", str(tmp_path / "shapley.json")]) == 0
    values = json.loads((tmp_path / "shapley.json").read_text())
    assert len(values["mean"]) == 6
    gap = np.mean(values["error_all"]) - np.mean(values["error_none"])
    assert sum(values["mean"]) == pytest.approx(gap, rel=1e-6)
    assert "Marshall-Palmer" in capsys.readouterr().out


def test_train_nowcast_evaluate_and_user_errors(tmp_path, capsys):
    root = tmp_path / "corpus"
    main(["dualpol", "demo", "--out", str(root), "--processes", "0", "11", "--frames", "5", "--grid", "16"])
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    checkpoint = tmp_path / "model" / "tiny.ckpt"
    assert main(["dualpol", "train", "--data", str(root), "--config", str(config), "--out", str(checkpoint)]) == 0
    assert checkpoint.is_file() and checkpoint.with_suffix(".yaml").is_file()
    reseeded = tmp_path / "model" / "reseeded.ckpt"
    assert main(["dualpol", "train", "--data", str(root), "--config", str(config), "--out", str(reseeded),
                 "--seed", "3", "--steps", "2"]) == 0
    assert yaml.safe_load(reseeded.with_suffix(".yaml").read_text())["train"] == {
        "seed": 3, "steps": 2, "batch_size": 2, "learning_rate": 0.001, "crop": 8, "loss_thresholds_dbz": [],
        "loss_weights": [1.0], "val_every": 0}
    out = tmp_path / "nowcast.npy"
    assert main(["dualpol", "nowcast", "--data", str(root), "--checkpoint", str(checkpoint), "--process", "0",
                 "--out", str(out)]) == 0
    forecast = np.load(out)
    assert forecast.shape == (2, 16, 16) and forecast.dtype == np.float32
    assert 0 <= forecast.min() <= forecast.max() <= 65
    assert main(["dualpol", "evaluate", "--data", str(root), "--checkpoint", str(checkpoint), "--windows", "1", "2",
                 "--json", str(tmp_path / "eval.json")]) == 0
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert set(scores) == {"persistence", "tiny"} and len(scores["tiny"]["CSI"]) == 2
    capsys.readouterr()
    assert main(["dualpol", "nowcast", "--data", str(root), "--checkpoint", str(checkpoint), "--process", "0",
                 "--start", "4", "--out", str(out)]) == 2
    assert main(["dualpol", "qpe", "--data", str(tmp_path / "nowhere")]) == 2
    assert main(["dualpol", "train", "--data", str(root), "--config", str(tmp_path / "none.yaml"), "--out",
                 str(checkpoint)]) == 2
    errors = capsys.readouterr().err
    assert "no window starting at frame 4" in errors and "does not exist" in errors


def test_shipped_corpus_and_checkpoints_work_together(repo_root, tmp_path):
    corpus = repo_root / "assets" / "dualpol_corpus"
    assert sum(p.stat().st_size for p in corpus.rglob("*.npy")) < 6e6
    for name in ("dualpol", "dualpol_zh_only"):
        checkpoint = repo_root / "assets" / "dualpol_unet" / f"{name}.ckpt"
        out = tmp_path / f"{name}.npy"
        assert main(["dualpol", "nowcast", "--data", str(corpus), "--checkpoint", str(checkpoint), "--process", "0",
                     "--out", str(out)]) == 0
        assert np.load(out).shape == (10, 64, 64)
