"""PreDiffPipeline on a tiny random model: shapes, georeferencing, reproducibility, guidance, errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tiny_model import write_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="module")
def pipeline(model_dir):
    from prediff.pipeline import PreDiffPipeline

    return PreDiffPipeline.from_folder(model_dir, batch_size=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from prediff.cli import main

    root = tmp_path_factory.mktemp("corpus")
    assert main(["data", "demo", "--events", "4", "--out", str(root), "--force", "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def context():
    rng = np.random.default_rng(0)
    return rng.integers(0, 200, size=(7, 128, 128)).astype(np.uint8)


def test_forecast_layout_and_attributes(pipeline, model_dir, context):
    forecast = pipeline.forecast(context, members=3, steps=2, seed=4)
    assert dict(forecast["vil"].sizes) == {"member": 3, "lead_time": 6, "y": 128, "x": 128}
    assert forecast["vil"].dtype == np.float32
    assert forecast["vil"].min() >= 0 and forecast["vil"].max() <= 254
    assert forecast["lead_time"].values.tolist() == [10, 20, 30, 40, 50, 60]
    assert forecast["predicted_intensity"].shape == (3,) and forecast["mean_intensity"].shape == (3,)
    np.testing.assert_allclose(forecast["mean_intensity"], forecast["vil"].mean(("lead_time", "y", "x")) / 255,
                               rtol=1e-5)
    attrs = forecast.attrs
    assert (attrs["sampler"], attrs["steps"], attrs["seed"], attrs["guided"], attrs["target"]) == ("ddim", 2, 4, 0, "none")
    assert attrs["diffusion_checkpoint_sha256"] == hashlib.sha256((model_dir / "diffusion.ckpt").read_bytes()).hexdigest()
    assert "vil_observed" not in forecast and "target_intensity" not in forecast


def test_same_seed_same_ensemble_whatever_the_batch_size(pipeline, model_dir, context):
    from prediff.pipeline import PreDiffPipeline

    first = pipeline.forecast(context, members=3, steps=2, seed=1)["vil"].values
    again = pipeline.forecast(context, members=3, steps=2, seed=1)["vil"].values
    np.testing.assert_array_equal(first, again)
    single = PreDiffPipeline.from_folder(model_dir, batch_size=1).forecast(context, members=3, steps=2, seed=1)
    np.testing.assert_allclose(single["vil"].values, first, atol=1e-2)
    other = pipeline.forecast(context, members=3, steps=2, seed=2)["vil"].values
    assert np.abs(other - first).max() > 1.0


def test_missing_context_pixels_are_fed_as_zero(pipeline, context):
    holed = context.copy()
    holed[:, :10, :10] = 255
    zeroed = context.copy()
    zeroed[:, :10, :10] = 0
    as_float = holed.astype(np.float32)
    as_float[0, 20, 20] = np.nan
    as_float_zero = zeroed.astype(np.float32)
    as_float_zero[0, 20, 20] = 0
    for missing, zero in ((holed, zeroed), (as_float, as_float_zero)):
        np.testing.assert_array_equal(pipeline.prepare(missing).context_unit, pipeline.prepare(zero).context_unit)


def test_guided_and_unguided_share_noise_and_guidance_moves_the_forecast(pipeline, context):
    unguided = pipeline.step_through(context, members=2, steps=2, seed=3)
    guided = pipeline.step_through(context, members=2, steps=2, seed=3, target="mean=120", guidance_scale=50)
    np.testing.assert_array_equal(unguided.latent, guided.latent)
    reports = list(guided)
    assert len(reports) == 2 and reports[0].predicted_intensity.shape == (2,)
    np.testing.assert_allclose(reports[0].target_intensity, 120 / 255, rtol=1e-6)
    assert guided.decode_clean(reports[-1]).shape == (2, 6, 128, 128, 1)
    plain = pipeline.forecast(context, members=2, steps=2, seed=3)
    steered = pipeline.forecast(context, members=2, steps=2, seed=3, target="mean=120", guidance_scale=50)
    assert steered.attrs["guided"] == 1 and steered.attrs["target_kind"] == "absolute"
    np.testing.assert_allclose(steered["target_intensity"], 120 / 255, rtol=1e-6)
    assert np.abs(steered["vil"].values - plain["vil"].values).max() > 0.5


def test_xarray_context_carries_georeferencing_and_observed_future(pipeline, corpus):
    from prediff.data.export import event_to_xarray
    from prediff.data.sevir import SevirDataset

    dataset = SevirDataset(corpus)
    event = dataset.event_ids[0]
    window = event_to_xarray(dataset, event, window=1)
    forecast = pipeline.forecast(window, members=2, steps=2, target="oracle*2")
    np.testing.assert_array_equal(forecast["x"], window["x"])
    np.testing.assert_array_equal(forecast["lat"], window["lat"])
    assert forecast["crs"].attrs["proj4"] == window["crs"].attrs["proj4"]
    np.testing.assert_array_equal(forecast["vil_observed"], window["vil"].values[7:])
    assert forecast["time"].values[0] == window["time"].values[6] + np.timedelta64(10, "m")
    expected_target = 2 * (window["vil"].values[7:].astype(np.float64) / 255).mean()
    np.testing.assert_allclose(forecast["target_intensity"], expected_target, rtol=1e-5)
    assert forecast.attrs["event_id"] == event and forecast.attrs["window_index"] == 1


def test_array_context_with_grid_and_times(pipeline, corpus, context):
    from prediff.data.sevir import SevirDataset

    dataset = SevirDataset(corpus)
    event = dataset.event_ids[0]
    grid = dataset.grid(event)
    times = dataset.frame_times(event)[:7]
    forecast = pipeline.forecast(context, members=1, steps=1, context_coords={"grid": grid, "time": times})
    np.testing.assert_array_equal(forecast["y"], grid.y)
    assert forecast["crs"].attrs["grid_mapping_name"] == "lambert_azimuthal_equal_area"
    assert forecast["time"].values[-1] == times[-1] + np.timedelta64(60, "m")


def test_bad_inputs_raise_readable_errors(pipeline, context, tmp_path, monkeypatch):
    import prediff.pipeline as pipeline_module
    from prediff.errors import ConfigError, DataError

    with pytest.raises(DataError, match="context has shape"):
        pipeline.forecast(context[:6], members=1, steps=1)
    with pytest.raises(ConfigError, match="DDPM sampler always visits"):
        pipeline.forecast(context, members=1, sampler="ddpm", steps=20)
    with pytest.raises(DataError, match="climatological intensity statistics"):
        pipeline.forecast(context, members=1, steps=1, target="mu+2sigma")
    with pytest.raises(DataError, match="observed future"):
        pipeline.forecast(context, members=1, steps=1, target="oracle*2")
    with pytest.raises(ConfigError, match="lacks"):
        pipeline_module.PreDiffPipeline.from_folder(tmp_path)
    monkeypatch.setattr(pipeline_module, "DEMO_MODEL_DIR", tmp_path / "demo_model")
    with pytest.raises(ConfigError, match="demo model"):
        pipeline_module.PreDiffPipeline.demo()


def test_cancel_stops_the_forecast(pipeline, context):
    import threading

    from prediff.pipeline import ForecastCancelled

    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        cancel.set()

    with pytest.raises(ForecastCancelled):
        pipeline.forecast(context, members=4, steps=3, progress=progress, cancel=cancel)
    assert seen == [(2, 12)]


def test_climatology_target_uses_the_stats_file(model_dir, context, tmp_path):
    import shutil

    from prediff.diffusion import IntensityStats
    from prediff.pipeline import PreDiffPipeline

    folder = tmp_path / "with_stats"
    shutil.copytree(model_dir, folder)
    IntensityStats(mu=0.1, sigma=0.05, n=10).save(folder)
    forecast = PreDiffPipeline.from_folder(folder).forecast(context, members=1, steps=1, target="mu+2sigma")
    np.testing.assert_allclose(forecast["target_intensity"], 0.2, rtol=1e-6)


def test_scale_factor_maps_vae_latents_to_denoiser_latents_and_back(model_dir, context):
    from prediff.config import load_config
    from prediff.pipeline import PreDiffPipeline

    plain = PreDiffPipeline.from_folder(model_dir)
    config = load_config(model_dir / "config.yaml")
    config["model"]["diffusion"]["scale_factor"] = 0.5
    scaled = PreDiffPipeline(config, plain.vae, plain.latent, plain.align)
    unit = np.asarray(context, dtype=np.float32)[None, ..., None] / 255.0
    np.testing.assert_allclose(scaled.encode_context(unit), 0.5 * plain.encode_context(unit), rtol=1e-6)
    latents = plain.encode_context(unit)[:, :2]
    np.testing.assert_allclose(scaled.decode_unit(0.5 * latents), plain.decode_unit(latents), rtol=1e-5, atol=1e-6)
