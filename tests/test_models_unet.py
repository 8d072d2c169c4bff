"""Tests of the latent denoiser (``CuboidTransformerUNet``) and its building blocks.

Parity fixtures come from the MindEarth reference run on the small config (../shared/reference/parity).
The numpy-backed kernels (convolution, dense, GELU, fused axial attention) are checked against MindSpore's own
operators, forward and backward, on small random inputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from prediff.config import load_config
from prediff.errors import ConfigError
from prediff.runtime import mindspore_module

ms = mindspore_module()

from prediff.models import blocks, cuboid  # noqa: E402  (after MindSpore setup)
from prediff.models.checkpoint import load_network  # noqa: E402
from prediff.models.earthformer_unet import CuboidTransformerUNet  # noqa: E402

Tensor = ms.Tensor


def _relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(actual - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def small_config(parity_dir):
    return load_config(parity_dir / "small_config.yaml")


@pytest.fixture(scope="module")
def small_unet(small_config, parity_dir):
    net = CuboidTransformerUNet(**small_config["model"]["latent_model"])
    load_network(net, parity_dir / "latent_small.ckpt", "latent")
    net.set_train(False)
    return net


# ----------------------------------------------------------------------------------------------------------
# checkpoint layout


@pytest.mark.shared
def test_full_config_parameters_match_manifest(reference_dir):
    config = load_config(reference_dir / "diffusion_full.yaml")
    net = CuboidTransformerUNet(**config["model"]["latent_model"])
    manifest = json.loads((reference_dir / "manifests" / "manifest_latent.json").read_text())
    expected = [(p["name"], tuple(p["shape"]), p["dtype"]) for p in manifest["parameters"]]
    actual = [(name, tuple(p.shape), str(p.dtype)) for name, p in net.parameters_and_names()]
    assert actual == expected
    assert len(actual) == 688
    assert sum(1 for _, _, dtype in actual if dtype == "Int64") == 48
    inside = {p["name_inside_PreDiffModule"] for p in manifest["parameters"]}
    assert inside == {"main_model." + name for name, _, _ in actual}


@pytest.mark.shared
def test_relative_position_index_equals_checkpoint(parity_dir):
    stored = ms.load_checkpoint(str(parity_dir / "latent_small.ckpt"))
    for name in ("main_model.down_self_blocks.0.0.attn_l.0.relative_position_index",
                 "main_model.up_self_blocks.1.0.attn_l.1.relative_position_index"):
        index = stored[name].asnumpy()
        axis = int(name.split("attn_l.")[1][0])
        size = [1, 1, 1]
        size[axis] = index.shape[0]
        np.testing.assert_array_equal(cuboid.relative_position_index(tuple(size)), index)


def test_weight_sharing_one_time_embed_block_per_level():
    net = CuboidTransformerUNet(input_shape=[3, 8, 8, 4], target_shape=[2, 8, 8, 4], base_units=32,
                                depth=[2, 3], num_heads=4)
    names = [name for name, _ in net.parameters_and_names()]
    assert {n.split(".")[1] for n in names if n.startswith("down_time_embed_blocks.")} == {"0", "1"}
    assert {n.split(".")[1] for n in names if n.startswith("up_time_embed_blocks.")} == {"0", "1"}
    assert {".".join(n.split(".")[1:3]) for n in names if n.startswith("down_self_blocks.")} == {
        "0.0", "0.1", "1.0", "1.1", "1.2"}


# ----------------------------------------------------------------------------------------------------------
# reference parity


@pytest.mark.shared
def test_timestep_embedding_matches_reference(parity_arrays):
    embedding = blocks.timestep_embedding(Tensor(parity_arrays["temb_t"]), 64).asnumpy()
    np.testing.assert_allclose(embedding, parity_arrays["temb_dim64"], rtol=0, atol=1e-6)


@pytest.mark.shared
def test_unet_output_matches_reference(small_unet, parity_arrays):
    out = small_unet(Tensor(parity_arrays["unet_zt"]), Tensor(parity_arrays["unet_t"]),
                     Tensor(parity_arrays["unet_cond"])).asnumpy()
    assert out.shape == (2, 6, 16, 16, 4)
    assert _relative_error(out, parity_arrays["unet_out"]) < 1e-4


@pytest.mark.shared
def test_unet_step_eps_matches_reference(small_unet, parity_arrays):
    out = small_unet(Tensor(parity_arrays["step_zt"]), Tensor(parity_arrays["step_t"]),
                     Tensor(parity_arrays["cond_zc"])).asnumpy()
    assert _relative_error(out, parity_arrays["step_eps"]) < 1e-4


# ----------------------------------------------------------------------------------------------------------
# fresh networks and config handling


def _tiny_kwargs(**overrides):
    kwargs = dict(input_shape=[3, 8, 8, 4], target_shape=[2, 8, 8, 4], base_units=32, depth=[1, 1], num_heads=4)
    kwargs.update(overrides)
    return kwargs


def test_fresh_network_starts_like_reference():
    net = CuboidTransformerUNet(**_tiny_kwargs())
    params = dict(net.parameters_and_names())
    for name, parameter in params.items():
        zero = (name.startswith("final_proj.") or ".ffn_2." in name or ".proj." in name
                or ".out_layers.3." in name)
        if zero:
            assert not parameter.asnumpy().any(), name
    assert params["down_time_embed_blocks.0.in_layers.2.weight"].asnumpy().std() > 0
    assert params["down_self_blocks.0.0.attn_l.0.qkv.weight"].asnumpy().std() > 0
    x_t = Tensor(np.random.default_rng(0).standard_normal((2, 2, 8, 8, 4)).astype(np.float32))
    cond = Tensor(np.random.default_rng(1).standard_normal((2, 3, 8, 8, 4)).astype(np.float32))
    out = net(x_t, Tensor(np.array([5, 900])), cond).asnumpy()
    assert out.shape == (2, 2, 8, 8, 4)
    assert not out.any()


@pytest.mark.parametrize("key, value", [("num_global_vectors", 8), ("gated_ffn", True),
                                        ("use_attn_pattern", False), ("hierarchical_pos_embed", True),
                                        ("downsample_type", "conv"), ("ffn_activation", "swish")])
def test_unsupported_features_raise_config_error(key, value):
    with pytest.raises(ConfigError, match=key):
        CuboidTransformerUNet(**_tiny_kwargs(**{key: value}))


def test_mismatched_shapes_raise_config_error():
    with pytest.raises(ConfigError, match="target_shape"):
        CuboidTransformerUNet(**_tiny_kwargs(target_shape=[2, 8, 8, 5]))
    with pytest.raises(ConfigError, match="patch-merged"):
        CuboidTransformerUNet(**_tiny_kwargs(input_shape=[3, 7, 7, 4], target_shape=[2, 7, 7, 4]))


# ----------------------------------------------------------------------------------------------------------
# numpy-backed kernels against MindSpore operators, forward and backward


def _random(shape, seed):
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("kernel", [(3, 3, 3), (1, 1, 1), (1, 3, 3)])
def test_conv_kernel_matches_mindspore_conv3d_with_gradients(kernel):
    x = _random((2, 3, 4, 5, 6), 0)
    weight = _random((7, 6) + kernel, 1)
    bias = _random((7,), 2)
    seed_grad = _random((2, 3, 4, 5, 7), 3)
    padding = tuple(p for k in kernel for p in (k // 2, k // 2))
    reference_conv = ms.ops.Conv3D(out_channel=7, kernel_size=kernel, pad_mode="pad", pad=padding)

    def reference(x, weight, bias):
        out = reference_conv(x.transpose(0, 4, 1, 2, 3), weight).transpose(0, 2, 3, 4, 1) + bias
        return (out * seed_grad).sum()

    kernel_cell = blocks._SameConvFunction()

    def ours(x, weight, bias):
        return (kernel_cell(x, weight, bias) * seed_grad).sum()

    assert abs(float(ours(x, weight, bias)) - float(reference(x, weight, bias))) < 1e-3
    grads = ms.grad(ours, grad_position=(0, 1, 2))(x, weight, bias)
    expected = ms.grad(reference, grad_position=(0, 1, 2))(x, weight, bias)
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-4, atol=1e-4)


def _randomise(net, seed):
    rng = np.random.default_rng(seed)
    for _, parameter in net.parameters_and_names():
        if parameter.dtype == ms.float32:
            parameter.set_data(Tensor(0.3 * rng.standard_normal(parameter.shape).astype(np.float32)))


def _fused_and_composed(layer, inputs, seed_grad, flags):
    """Loss and gradients (inputs, parameters) of ``layer`` on its fused path and on its composed path.

    The composed path is the training-with-dropout path; the layer is built with zero dropout rates so the
    dropout cells are identities, and ``flags`` (attribute names) are raised to force that path.
    """
    def loss(*args):
        return (layer(*args) * seed_grad).sum()

    results = []
    for composed in (False, True):
        layer.set_train(composed)
        for flag in flags:
            setattr(layer, flag, 0.5 if composed else 0.0)
        value = float(loss(*inputs))
        grads = ms.grad(loss, grad_position=tuple(range(len(inputs))), weights=layer.trainable_params())(*inputs)
        results.append((value, grads))
    return results


def _assert_same(results):
    (fused_value, fused_grads), (composed_value, composed_grads) = results
    assert abs(fused_value - composed_value) < 1e-4 * max(1.0, abs(composed_value))
    fused_flat = list(fused_grads[0]) + list(fused_grads[1])
    composed_flat = list(composed_grads[0]) + list(composed_grads[1])
    assert len(fused_flat) == len(composed_flat)
    for got, want in zip(fused_flat, composed_flat):
        want = want.asnumpy()
        np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-3, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_fused_feed_forward_matches_composed_layers():
    layer = blocks.PositionwiseFFN(8, 32, 0.0, "gelu")
    _randomise(layer, 0)
    _assert_same(_fused_and_composed(layer, [_random((2, 3, 4, 5, 8), 1)], _random((2, 3, 4, 5, 8), 2),
                                     ["dropout_rate"]))


@pytest.mark.parametrize("channels, out_channels, emb_channels", [(8, 8, 16), (5, 8, None)])
def test_fused_res_block_matches_composed_layers(channels, out_channels, emb_channels):
    layer = blocks.TimeEmbedResBlock(channels, out_channels, emb_channels=emb_channels, dropout=0.0)
    _randomise(layer, 0)
    inputs = [_random((2, 3, 4, 4, channels), 1)]
    if emb_channels:
        inputs.append(_random((2, emb_channels), 2))
    _assert_same(_fused_and_composed(layer, inputs, _random((2, 3, 4, 4, out_channels), 3), ["dropout_rate"]))


@pytest.mark.parametrize("axis", [1, 2, 3])
def test_fused_attention_layer_matches_composed_layers(axis):
    grid = (3, 4, 5)
    size = [1, 1, 1]
    size[axis - 1] = grid[axis - 1]
    layer = cuboid.AxialSelfAttention(8, 2, tuple(size), axis)
    _randomise(layer, axis)
    _assert_same(_fused_and_composed(layer, [_random((2, *grid, 8), 1)], _random((2, *grid, 8), 2),
                                     ["attn_drop_rate", "proj_drop_rate"]))


def test_linear_and_gelu_kernels_match_mindspore_with_gradients():
    x = _random((5, 6), 0)
    weight = _random((4, 6), 1)
    bias = _random((4,), 2)
    affine = blocks._AffineFunction()
    gelu = blocks.ExactGELU()

    def ours(x, weight, bias):
        return (gelu(affine(x, weight, bias)) ** 2).sum()

    def reference(x, weight, bias):
        return (ms.ops.gelu(ms.ops.matmul(x, weight.T) + bias, approximate="none") ** 2).sum()

    assert abs(float(ours(x, weight, bias)) - float(reference(x, weight, bias))) < 1e-4
    grads = ms.grad(ours, grad_position=(0, 1, 2))(x, weight, bias)
    expected = ms.grad(reference, grad_position=(0, 1, 2))(x, weight, bias)
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [1, 2, 3])
def test_fused_axial_attention_matches_mindspore_path_with_gradients(axis):
    grid = (3, 4, 5)
    size = [1, 1, 1]
    size[axis - 1] = grid[axis - 1]
    layer = cuboid.AxialSelfAttention(8, 2, tuple(size), axis, attn_drop=0.1)
    layer.set_train(False)
    qkv = _random((2, *grid, 24), axis)
    seed_grad = _random((2, *grid, 8), 10 + axis)

    def fused(qkv, table):
        return (layer.attend(qkv, _bias_from(table)) * seed_grad).sum()

    def plain(qkv, table):
        return (layer.attend_with_dropout(qkv, _bias_from(table)) * seed_grad).sum()

    def _bias_from(table):
        index = layer.relative_position_index.reshape(-1)
        return ms.ops.gather(table, index, 0).reshape(layer.length, layer.length, 2).transpose(2, 0, 1)

    table = Tensor(layer.relative_position_bias_table.asnumpy())
    assert abs(float(fused(qkv, table)) - float(plain(qkv, table))) < 1e-4
    grads = ms.grad(fused, grad_position=(0, 1))(qkv, table)
    expected = ms.grad(plain, grad_position=(0, 1))(qkv, table)
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-4, atol=1e-5)


def test_channels_last_group_norm_matches_mindspore():
    x = _random((2, 3, 4, 4, 64), 0)
    ours = blocks.GroupNorm(32, 64)
    ours.gamma.set_data(_random((64,), 1))
    ours.beta.set_data(_random((64,), 2))
    reference = ms.nn.GroupNorm(32, 64, eps=1e-5)
    reference.gamma.set_data(ours.gamma.value())
    reference.beta.set_data(ours.beta.value())
    expected = reference(x.transpose(0, 4, 1, 2, 3).reshape(2, 64, 3, 16)).reshape(2, 64, 3, 4, 4)
    np.testing.assert_allclose(ours(x).asnumpy(), expected.transpose(0, 2, 3, 4, 1).asnumpy(),
                               rtol=1e-4, atol=1e-4)


def test_training_mode_with_dropout_differentiates_every_parameter():
    net = CuboidTransformerUNet(**_tiny_kwargs(attn_drop=0.1, proj_drop=0.1, ffn_drop=0.1))
    _randomise(net, 0)
    net.set_train(True)
    x_t, cond = _random((1, 2, 8, 8, 4), 1), _random((1, 3, 8, 8, 4), 2)
    steps = Tensor(np.array([10]))

    def loss(x_t):
        return (net(x_t, steps, cond) ** 2).mean()

    value, grads = ms.value_and_grad(loss, grad_position=None, weights=net.trainable_params())(x_t)
    assert np.isfinite(float(value))
    assert len(grads) == len(net.trainable_params())
    for parameter, grad in zip(net.trainable_params(), grads):
        assert grad.shape == parameter.shape
        assert np.isfinite(grad.asnumpy()).all(), parameter.name
    assert np.abs(grads[-2].asnumpy()).max() > 0
