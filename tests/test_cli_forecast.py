"""``prediff forecast`` end to end on the demo corpus with a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest

from tiny_model import write_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from prediff.cli import main

    root = tmp_path_factory.mktemp("corpus")
    assert main(["data", "demo", "--events", "4", "--out", str(root), "--force", "--quiet"]) == 0
    return root


def test_forecast_writes_netcdf_with_observed_future(model_dir, corpus, tmp_path, capsys):
    import xarray as xr

    from prediff.cli import main
    from prediff.data.sevir import SevirDataset

    dataset = SevirDataset(corpus)
    event = dataset.event_ids[1]
    out = tmp_path / "forecast.nc"
    status = main(["forecast", "--model", str(model_dir), "--data", str(corpus), "--event", event, "--window", "2",
                   "--members", "3", "--steps", "2", "--seed", "5", "--target", "context*2", "--out", str(out)])
    assert status == 0
    assert "with the observed future" in capsys.readouterr().out
    with xr.open_dataset(out) as forecast:
        assert dict(forecast["vil"].sizes) == {"member": 3, "lead_time": 6, "y": 128, "x": 128}
        np.testing.assert_array_equal(forecast["vil_observed"].values, dataset.read_window(event, 2)[7:])
        assert forecast.attrs["event_id"] == event and forecast.attrs["target"] == "context*2"
        assert forecast.attrs["seed"] == 5 and forecast.attrs["steps"] == 2
        assert forecast["lat"].shape == (128, 128)
    assert [p.name for p in tmp_path.iterdir()] == ["forecast.nc"]


def test_forecast_with_explicit_files_matches_model_folder(model_dir, corpus, tmp_path):
    import xarray as xr

    from prediff.cli import main
    from prediff.data.sevir import SevirDataset

    event = SevirDataset(corpus).event_ids[0]
    common = ["--data", str(corpus), "--event", event, "--members", "1", "--steps", "1", "--quiet"]
    assert main(["forecast", "--model", str(model_dir), *common, "--out", str(tmp_path / "a.nc")]) == 0
    assert main(["forecast", "--config", str(model_dir / "config.yaml"), "--vae", str(model_dir / "vae.ckpt"),
                 "--latent", str(model_dir / "diffusion.ckpt"), "--align", str(model_dir / "align.ckpt"), *common,
                 "--out", str(tmp_path / "b.nc")]) == 0
    with xr.open_dataset(tmp_path / "a.nc") as first, xr.open_dataset(tmp_path / "b.nc") as second:
        np.testing.assert_array_equal(first["vil"].values, second["vil"].values)


def test_forecast_errors(model_dir, corpus, tmp_path, capsys, monkeypatch):
    import prediff.pipeline as pipeline_module
    from prediff.cli import main

    out = str(tmp_path / "f.nc")
    assert main(["forecast", "--model", str(model_dir), "--data", str(corpus), "--event", "S000000",
                 "--out", out]) == 2
    assert "prediff events --data" in capsys.readouterr().err
    assert main(["forecast", "--model", str(model_dir), "--config", str(model_dir / "config.yaml"),
                 "--data", str(corpus), "--event", "x", "--out", out]) == 2
    monkeypatch.setattr(pipeline_module, "DEMO_MODEL_DIR", tmp_path / "absent")
    from prediff.data.sevir import SevirDataset

    event = SevirDataset(corpus).event_ids[0]
    assert main(["forecast", "--data", str(corpus), "--event", event, "--out", out]) == 2
    assert "demo model" in capsys.readouterr().err
    assert main(["forecast", "--config", str(model_dir / "config.yaml"), "--data", str(corpus), "--event", event,
                 "--out", out]) == 2
    assert "--vae, --latent, --align missing" in capsys.readouterr().err
    assert not (tmp_path / "f.nc").exists()
