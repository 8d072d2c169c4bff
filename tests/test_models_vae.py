"""prediff.models.vae: parity with the MindEarth reference, published parameter names, frame-sequence helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prediff.config import load_config, vae_network_kwargs
from prediff.errors import ConfigError, DataError
from prediff.runtime import mindspore_module

ms = mindspore_module()

from prediff.models.build import build_vae  # noqa: E402  (after the runtime is configured)
from prediff.models.checkpoint import load_network  # noqa: E402
from prediff.models.vae import AutoencoderKL, DiagonalGaussian  # noqa: E402

TOLERANCE = 1e-4  # x max|reference|, the parity README's acceptance for re-ordered float32 code


def _assert_close(actual, reference, name):
    actual = actual.asnumpy() if hasattr(actual, "asnumpy") else actual
    assert actual.shape == reference.shape, name
    error = np.abs(actual - reference).max() / np.abs(reference).max()
    assert error <= TOLERANCE, f"{name}: max |diff| / max |ref| = {error:.2e}"


@pytest.fixture(scope="module")
def small_config(repo_root):
    return load_config(repo_root / "configs" / "prediff_small.yaml")


@pytest.fixture(scope="module")
def parity_vae(small_config, parity_dir):
    vae = build_vae(small_config)
    load_network(vae, parity_dir / "vae_small.ckpt", "vae")
    vae.set_train(False)
    return vae


@pytest.fixture(scope="module")
def tiny_vae(small_config):
    ms.set_seed(3)
    vae = build_vae(small_config)
    vae.set_train(False)
    return vae


@pytest.mark.shared
def test_frame_level_parity(parity_vae, parity_arrays):
    frames = ms.Tensor(parity_arrays["seq"][0, :7].transpose(0, 3, 1, 2))
    posterior = parity_vae.encode(frames)
    _assert_close(posterior.moments, parity_arrays["vae_enc_moments"], "vae_enc_moments")
    _assert_close(posterior.mean, parity_arrays["vae_post_mean"], "vae_post_mean")
    _assert_close(posterior.logvar, parity_arrays["vae_post_logvar"], "vae_post_logvar")
    _assert_close(parity_vae(frames), parity_arrays["vae_recon"], "vae_recon")
    _assert_close(parity_vae.decode(ms.Tensor(parity_arrays["vae_dec_in"])), parity_arrays["vae_dec_out"],
                  "vae_dec_out")


@pytest.mark.shared
def test_sequence_helpers_parity(parity_vae, parity_arrays):
    context = parity_arrays["seq"][:, :7]
    _assert_close(parity_vae.encode_frames(ms.Tensor(context), chunk_size=8), parity_arrays["cond_zc"], "cond_zc")
    decoded = parity_vae.decode_latents(parity_arrays["decode_first_stage_in"], chunk_size=5)
    _assert_close(decoded, parity_arrays["decode_first_stage_out"], "decode_first_stage_out")


@pytest.mark.shared
def test_full_published_vae_matches_manifest(reference_dir):
    manifest = json.loads((reference_dir / "manifests" / "manifest_vae.json").read_text())
    vae = build_vae(reference_dir / "diffusion_full.yaml")
    ours = [(name, list(p.shape), str(p.dtype)) for name, p in vae.parameters_and_names()]
    published = [(p["name"], p["shape"], p["dtype"]) for p in manifest["parameters"]]
    assert ours == published  # names, shapes, dtypes and order (the checkpoint's order)
    assert len(ours) == 248
    assert sum(p.size for p in vae.get_parameters()) == manifest["total_elements_all_parameters"] == 84_499_393


def test_posterior_clamps_logvar_and_samples_with_given_noise():
    mean = np.zeros((1, 2, 2, 2), np.float32)
    mean[0, 0] = 1.5
    logvar = np.array([-40.0, 25.0], np.float32).reshape(1, 2, 1, 1) * np.ones((1, 2, 2, 2), np.float32)
    posterior = DiagonalGaussian(ms.Tensor(np.concatenate([mean, logvar], axis=1)))
    np.testing.assert_array_equal(posterior.logvar.asnumpy()[0, :, 0, 0], [-30.0, 20.0])
    np.testing.assert_array_equal(posterior.mode().asnumpy(), mean)
    noise = np.full(mean.shape, 0.5, np.float32)
    expected = mean + np.exp(0.5 * np.clip(logvar, -30, 20)) * noise
    np.testing.assert_allclose(posterior.sample(ms.Tensor(noise)).asnumpy(), expected, rtol=1e-5)
    assert posterior.sample().shape == mean.shape


def test_kl_is_zero_for_the_prior_and_positive_otherwise():
    prior = DiagonalGaussian(ms.Tensor(np.zeros((2, 4, 3, 3), np.float32)))
    np.testing.assert_allclose(prior.kl().asnumpy(), [0.0, 0.0], atol=1e-6)
    moments = np.zeros((1, 4, 3, 3), np.float32)
    moments[:, :2] = 1.0  # mean 1, unit variance: KL = 0.5 * 1 per element
    np.testing.assert_allclose(DiagonalGaussian(ms.Tensor(moments)).kl().asnumpy(), [0.5 * 18], rtol=1e-6)


def test_sequence_shapes_and_chunking_agree(tiny_vae):
    rng = np.random.default_rng(0)
    frames = rng.random((2, 3, 32, 24, 1), dtype=np.float32)
    latents = tiny_vae.encode_frames(frames)
    assert latents.shape == (2, 3, 4, 3, 4) and latents.dtype == ms.float32
    np.testing.assert_allclose(tiny_vae.encode_frames(frames, chunk_size=4).asnumpy(), latents.asnumpy(),
                               rtol=0, atol=1e-6)
    # Folding time into the batch must keep each frame's latent in its own (n, t) slot.
    single = tiny_vae.encode(ms.Tensor(frames[1, 2].transpose(2, 0, 1)[None])).mode().asnumpy()
    np.testing.assert_allclose(latents.asnumpy()[1, 2], single[0].transpose(1, 2, 0), rtol=0, atol=1e-6)
    decoded = tiny_vae.decode_latents(latents, chunk_size=1)
    assert decoded.shape == (2, 3, 32, 24, 1)
    single_frame = tiny_vae.decode(ms.Tensor(latents.asnumpy()[0, 1].transpose(2, 0, 1)[None])).asnumpy()
    np.testing.assert_allclose(decoded.asnumpy()[0, 1], single_frame[0].transpose(1, 2, 0), rtol=0, atol=1e-6)
    sampled = tiny_vae.encode_frames(frames, sample_posterior=True)
    assert sampled.shape == latents.shape and not np.allclose(sampled.asnumpy(), latents.asnumpy())


def test_bad_frames_raise_data_errors(tiny_vae):
    with pytest.raises(DataError, match="NTHWC"):
        tiny_vae.encode_frames(np.zeros((3, 32, 32, 1), np.float32))
    with pytest.raises(DataError, match="divide uint8 VIL pixels by 255"):
        tiny_vae.encode_frames(np.zeros((1, 1, 32, 32, 1), np.uint8))
    with pytest.raises(DataError, match="divide uint8 VIL pixels by 255"):
        tiny_vae.encode_frames(ms.Tensor(np.zeros((1, 1, 32, 32, 1), np.int32)))
    with pytest.raises(DataError, match="in_channels = 1"):
        tiny_vae.encode_frames(np.zeros((1, 1, 32, 32, 3), np.float32))
    with pytest.raises(DataError, match="not divisible"):
        tiny_vae.encode_frames(np.zeros((1, 1, 30, 32, 1), np.float32))
    with pytest.raises(DataError, match="latent_channels = 4"):
        tiny_vae.decode_latents(np.zeros((1, 1, 4, 4, 3), np.float32))
    with pytest.raises(ConfigError, match="chunk_size"):
        tiny_vae.encode_frames(np.zeros((1, 2, 32, 32, 1), np.float32), chunk_size=0)


def test_unsupported_architectures_are_config_errors(small_config):
    kwargs = vae_network_kwargs(small_config)
    with pytest.raises(ConfigError, match="act_fn"):
        AutoencoderKL(**{**kwargs, "act_fn": "relu"})
    with pytest.raises(ConfigError, match="DownEncoderBlock2D"):
        AutoencoderKL(**{**kwargs, "down_block_types": ["DownBlock2D"] * 4})
    with pytest.raises(ConfigError, match="multiples of norm_num_groups"):
        AutoencoderKL(**{**kwargs, "block_out_channels": [6, 16, 32, 32]})


def test_compiled_inference_decode_follows_weights_loaded_after_it_was_compiled(small_config, tmp_path):
    from prediff.models.checkpoint import save_network

    ms.set_seed(5)
    vae = build_vae(small_config)
    vae.set_train(False)
    latents = np.random.default_rng(0).standard_normal((1, 3, 4, 4, vae.latent_channels)).astype(np.float32)
    first = vae.decode_latents(latents).asnumpy()  # compiles the inference decode
    ms.set_seed(6)
    other = build_vae(small_config)
    save_network(other, tmp_path / "other.ckpt", "vae")
    load_network(vae, tmp_path / "other.ckpt", "vae")
    again = vae.decode_latents(latents).asnumpy()
    flat = ms.Tensor(latents[0].transpose(0, 3, 1, 2))
    expected = other.decode(flat).asnumpy().transpose(0, 2, 3, 1)
    assert np.abs(again - first).max() > 1e-3
    np.testing.assert_allclose(again[0], expected, rtol=1e-5, atol=1e-5)
