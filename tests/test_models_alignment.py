"""Tests of the knowledge-alignment network (``NoisyCuboidTransformerEncoder``).

Parity fixtures come from the MindEarth reference run on the small config (../shared/reference/parity); the
gradient fixture ``align_grad_raw_fixed`` is the reference objective's gradient with the shipped
``stop_gradient`` removed, i.e. what guidance is meant to use.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from prediff.config import load_config
from prediff.errors import ConfigError
from prediff.runtime import mindspore_module

ms = mindspore_module()

from prediff.models.alignment import AttentionPool, NoisyCuboidTransformerEncoder  # noqa: E402  (after MindSpore setup)
from prediff.models.checkpoint import load_network  # noqa: E402

Tensor = ms.Tensor


def _relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(actual - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def small_alignment(parity_dir):
    config = load_config(parity_dir / "small_config.yaml")
    net = NoisyCuboidTransformerEncoder(**config["model"]["align"]["model_args"])
    load_network(net, parity_dir / "align_small.ckpt", "align")
    net.set_train(False)
    return net


@pytest.mark.shared
def test_full_config_parameters_match_manifest(reference_dir):
    config = load_config(reference_dir / "diffusion_full.yaml")
    net = NoisyCuboidTransformerEncoder(**config["model"]["align"]["model_args"])
    manifest = json.loads((reference_dir / "manifests" / "manifest_align.json").read_text())
    expected = [(p["name"], tuple(p["shape"]), p["dtype"]) for p in manifest["parameters"]]
    actual = [(name, tuple(p.shape), str(p.dtype)) for name, p in net.parameters_and_names()]
    assert actual == expected
    assert len(actual) == 125
    assert sum(1 for _, _, dtype in actual if dtype == "Int64") == 6


@pytest.mark.shared
def test_alignment_output_matches_reference(small_alignment, parity_arrays):
    out = small_alignment(Tensor(parity_arrays["align_zt"]), Tensor(parity_arrays["align_t"])).asnumpy()
    assert out.shape == (2, 6, 1)
    assert _relative_error(out, parity_arrays["align_out"]) < 1e-4


def _objective(net, t, target):
    """The reference guidance objective: ||mean_T F(z, t) - avg_x_gt||_2 over the whole batch (a scalar)."""
    def objective(z_t):
        error = net(z_t, t).mean(axis=1) - target
        return ms.ops.sqrt((error * error).sum())
    return objective


@pytest.mark.shared
def test_alignment_gradient_matches_reference(small_alignment, parity_arrays):
    objective = _objective(small_alignment, Tensor(parity_arrays["align_t"]), Tensor(parity_arrays["align_avg_x_gt"]))
    z_t = Tensor(parity_arrays["align_zt"])
    loss, gradient = ms.value_and_grad(objective)(z_t)
    assert abs(float(loss) - float(parity_arrays["align_loss"])) < 1e-4 * float(parity_arrays["align_loss"])
    gradient = gradient.asnumpy()
    assert np.abs(gradient).max() > 0
    assert _relative_error(gradient, parity_arrays["align_grad_raw_fixed"]) < 1e-4
    np.testing.assert_allclose(ms.grad(objective)(z_t).asnumpy(), gradient, rtol=0, atol=1e-7)


def _tiny_kwargs(**overrides):
    kwargs = dict(input_shape=[4, 8, 8, 4], base_units=32, depth=[1, 1], num_heads=4, pool="attention",
                  readout_seq=True, t_out=3)
    kwargs.update(overrides)
    return kwargs


def test_reads_out_last_t_out_frames():
    net = NoisyCuboidTransformerEncoder(**_tiny_kwargs())
    net.set_train(False)
    z_t = Tensor(np.random.default_rng(0).standard_normal((2, 4, 8, 8, 4)).astype(np.float32))
    out = net(z_t, Tensor(np.array([3, 700]))).asnumpy()
    assert out.shape == (2, 3, 1)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("key, value", [("pool", "adaptive"), ("readout_seq", False), ("num_global_vectors", 4),
                                        ("gated_ffn", True)])
def test_unsupported_features_raise_config_error(key, value):
    with pytest.raises(ConfigError, match=key):
        NoisyCuboidTransformerEncoder(**_tiny_kwargs(**{key: value}))


def test_t_out_beyond_input_frames_raises_config_error():
    with pytest.raises(ConfigError, match="t_out"):
        NoisyCuboidTransformerEncoder(**_tiny_kwargs(t_out=9))


def test_numpy_attention_pool_matches_composed_operators_with_gradients():
    pool = AttentionPool(6, 8, 2, 3)
    rng = np.random.default_rng(0)
    tokens = Tensor(rng.standard_normal((4, 6, 8)).astype(np.float32))
    seed_grad = Tensor(rng.standard_normal((4, 3)).astype(np.float32))
    results = []
    for forward in (pool, pool.composed):
        def loss(x, forward=forward):
            return (forward(x) * seed_grad).sum()

        value, grads = ms.value_and_grad(loss, grad_position=0, weights=pool.trainable_params())(tokens)
        results.append((float(value), [grads[0].asnumpy()] + [g.asnumpy() for g in grads[1]]))
    (value, grads), (reference_value, reference_grads) = results
    assert abs(value - reference_value) < 1e-5
    assert len(grads) == len(reference_grads) == 6  # tokens + five parameters
    for got, want in zip(grads, reference_grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))
