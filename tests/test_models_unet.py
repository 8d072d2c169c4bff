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
from prediff.models.threads import blockwise  # noqa: E402
from prediff.train.randomness import SeededDropout  # noqa: E402

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


def _fused_and_composed(layer, inputs, seed_grad, dropout=None):
    """Loss and gradients (inputs, parameters) of ``layer`` on its fused path and on its composed path.

    The composed path (``layer.composed``) builds the layer from its individual cells with MindSpore autodiff.
    With ``dropout`` (a :class:`SeededDropout` attached to the layer) both run in training mode and draw the
    same masks, so they must agree exactly as without dropout.
    """
    results = []
    for forward in (layer, layer.composed):
        def loss(*args):
            return (forward(*args) * seed_grad).sum()

        layer.set_train(dropout is not None)
        if dropout is not None:
            dropout.begin_step(7)
        value = float(loss(*inputs))
        if dropout is not None:
            dropout.begin_step(7)
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


def _seeded_dropout(layer):
    dropout = SeededDropout(3)
    assert dropout.attach(layer) > 0
    return dropout


@pytest.mark.parametrize("activation", ["gelu", "relu", "leaky"])
@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_fused_feed_forward_matches_composed_layers(rate, activation):
    layer = blocks.PositionwiseFFN(8, 32, rate, activation)
    _randomise(layer, 0)
    dropout = _seeded_dropout(layer) if rate else None
    _assert_same(_fused_and_composed(layer, [_random((2, 3, 4, 5, 8), 1)], _random((2, 3, 4, 5, 8), 2), dropout))


def test_feed_forward_inference_in_row_chunks_equals_one_pass(monkeypatch):
    layer = blocks.PositionwiseFFN(8, 32, 0.0, "gelu")
    _randomise(layer, 0)
    x = _random((2, 3, 4, 5, 8), 1)
    whole = layer(x).asnumpy()
    monkeypatch.setattr(blocks, "FFN_CHUNK_HIDDEN_ELEMENTS", 32 * 7)  # 7-row chunks, the last one ragged
    np.testing.assert_allclose(layer(x).asnumpy(), whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(whole, layer.composed(x).asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [3, 32, 64])
def test_row_normalisation_and_its_gradient_match_the_textbook_formulas(channels):
    rng = np.random.default_rng(channels)
    x = (5.0 + 3.0 * rng.standard_normal((257, channels))).astype(np.float32)
    x_hat, rstd = blocks.normalise_rows(x, 1e-5)
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(axis=1, keepdims=True)
    want_rstd = 1.0 / np.sqrt((centred ** 2).mean(axis=1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(rstd, want_rstd, rtol=1e-5)
    np.testing.assert_allclose(x_hat, centred * want_rstd, rtol=0, atol=2e-5)
    # the gradient of sum(g * x_hat) against central differences in float64 of the same formula
    grad_x_hat = rng.standard_normal(x.shape).astype(np.float32)
    got = blocks.normalise_rows_backward(grad_x_hat, x_hat, rstd)

    def objective(values):
        shifted = values - values.mean(axis=1, keepdims=True)
        return np.sum(grad_x_hat * shifted / np.sqrt((shifted ** 2).mean(axis=1, keepdims=True) + 1e-5), axis=1)

    step = 1e-4
    for column in (0, channels - 1):
        plus, minus = x64.copy(), x64.copy()
        plus[:, column] += step
        minus[:, column] -= step
        numeric = (objective(plus) - objective(minus)) / (2 * step)
        np.testing.assert_allclose(got[:, column], numeric, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("channels, out_channels, emb_channels, rate", [(8, 8, 16, 0.0), (5, 8, None, 0.0),
                                                                        (8, 16, 12, 0.3)])
def test_fused_res_block_matches_composed_layers(channels, out_channels, emb_channels, rate):
    layer = blocks.TimeEmbedResBlock(channels, out_channels, emb_channels=emb_channels, dropout=rate)
    _randomise(layer, 0)
    inputs = [_random((2, 3, 4, 4, channels), 1)]
    if emb_channels:
        inputs.append(_random((2, emb_channels), 2))
    dropout = _seeded_dropout(layer) if rate else None
    _assert_same(_fused_and_composed(layer, inputs, _random((2, 3, 4, 4, out_channels), 3), dropout))


@pytest.mark.parametrize("axis, attn_drop, proj_drop", [(1, 0.0, 0.0), (2, 0.0, 0.0), (3, 0.0, 0.0),
                                                        (1, 0.3, 0.2), (2, 0.3, 0.0), (3, 0.0, 0.2)])
def test_fused_attention_layer_matches_composed_layers(axis, attn_drop, proj_drop):
    grid = (3, 4, 5)
    size = [1, 1, 1]
    size[axis - 1] = grid[axis - 1]
    layer = cuboid.AxialSelfAttention(8, 2, tuple(size), axis, attn_drop=attn_drop, proj_drop=proj_drop)
    _randomise(layer, axis)
    dropout = _seeded_dropout(layer) if attn_drop or proj_drop else None
    _assert_same(_fused_and_composed(layer, [_random((2, *grid, 8), 1)], _random((2, *grid, 8), 2), dropout))


def test_dropout_masks_change_the_training_output():
    layer = blocks.PositionwiseFFN(8, 32, 0.5, "gelu")
    _randomise(layer, 0)
    dropout = _seeded_dropout(layer)
    x = _random((2, 3, 4, 5, 8), 1)
    layer.set_train(False)
    plain = layer(x).asnumpy()
    layer.set_train(True)
    dropout.begin_step(1)
    first = layer(x).asnumpy()
    dropout.begin_step(2)
    second = layer(x).asnumpy()
    assert np.abs(first - plain).max() > 1e-3
    assert np.abs(first - second).max() > 1e-3


def _training_gradients(net, inputs):
    def loss(x_t, steps, cond):
        return (net(x_t, steps, cond) ** 2).mean()

    value, grads = ms.value_and_grad(loss, grad_position=0, weights=net.trainable_params())(*inputs)
    return float(value), [g.asnumpy() for g in [grads[0]] + list(grads[1])]


def test_saved_activations_give_the_recomputed_gradients():
    net = CuboidTransformerUNet(**_tiny_kwargs())
    _randomise(net, 0)
    net.set_train(False)
    inputs = (_random((2, 2, 8, 8, 4), 1), Tensor(np.array([10, 700])), _random((2, 3, 8, 8, 4), 2))
    store = blocks.SAVED_ACTIVATIONS
    value, grads = _training_gradients(net, inputs)
    assert not store._entries and store._bytes == 0
    limit = store.limit_bytes
    store.limit_bytes = 0  # every entry is evicted at once: each backward recomputes its forward
    try:
        recomputed_value, recomputed = _training_gradients(net, inputs)
    finally:
        store.limit_bytes = limit
    assert value == recomputed_value
    for got, want in zip(grads, recomputed):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert np.abs(grads[0]).max() > 0


def test_input_gradients_only_skips_parameter_gradients_and_keeps_the_input_gradient():
    net = CuboidTransformerUNet(**_tiny_kwargs())
    _randomise(net, 0)
    net.set_train(False)
    inputs = (_random((2, 2, 8, 8, 4), 1), Tensor(np.array([10, 700])), _random((2, 3, 8, 8, 4), 2))
    _, full = _training_gradients(net, inputs)
    with blocks.input_gradients_only():
        assert not blocks.parameter_gradients_wanted()
        _, input_only = _training_gradients(net, inputs)
    assert blocks.parameter_gradients_wanted()
    np.testing.assert_allclose(input_only[0], full[0], rtol=1e-5, atol=1e-7)
    fused_weights = [i + 1 for i, p in enumerate(net.trainable_params())
                     if p.name.endswith(("in_layers.2.weight", "ffn_1.weight", "qkv.weight"))]
    assert fused_weights
    for index in fused_weights:
        assert np.abs(full[index]).max() > 0
        assert not input_only[index].any()


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


def test_gelu_and_normal_cdf_kernels_are_exact_to_float32_over_the_whole_line():
    """The branch-free sign identities hold on both sides, at 0, in the far tails and across block borders."""
    from scipy.special import erf

    h = np.concatenate([np.linspace(-40, 40, 200_001), [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float32)
    exact_cdf = 0.5 * (1 + erf(h.astype(np.float64) / np.sqrt(2)))
    cdf = blockwise(blocks._normal_cdf_block, h)
    gelu = blocks._gelu(h)
    assert np.abs(cdf - exact_cdf).max() < 4e-7
    assert np.abs(gelu - h * exact_cdf).max() < 4e-7
    assert gelu[-4] == 0 and cdf[-4] == 0.5
    assert np.isnan(blocks._gelu(np.array([np.nan], np.float32))).all()
    derivative = blocks._gelu_derivative(h)
    exact_derivative = exact_cdf + h * np.exp(-0.5 * h.astype(np.float64) ** 2) / np.sqrt(2 * np.pi)
    assert np.abs(derivative - exact_derivative).max() < 4e-7


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


def _assert_same_gradients(ours, reference, inputs):
    positions = tuple(range(len(inputs)))
    assert abs(float(ours(*inputs)) - float(reference(*inputs))) < 1e-4 * max(1.0, abs(float(reference(*inputs))))
    for got, want in zip(ms.grad(ours, grad_position=positions)(*inputs),
                         ms.grad(reference, grad_position=positions)(*inputs)):
        want = want.asnumpy()
        np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))


def test_positional_embedding_kernel_matches_mindspore_with_gradients():
    layer = blocks.PosEmbed(6, 5, 7, 8)
    seed_grad = _random((2, 3, 4, 5, 6), 9)

    def ours(x, t_table, h_table, w_table):
        return (layer.add_embedding(x, t_table, h_table, w_table) * seed_grad).sum()

    def reference(x, t_table, h_table, w_table):
        out = x + t_table[:3].reshape(3, 1, 1, 6) + h_table[:4].reshape(1, 4, 1, 6) + w_table[:5].reshape(1, 1, 5, 6)
        return (out * seed_grad).sum()

    _assert_same_gradients(ours, reference, [_random((2, 3, 4, 5, 6), 1), _random((5, 6), 2), _random((7, 6), 3),
                                             _random((8, 6), 4)])


def test_patch_merge_kernel_matches_mindspore_with_gradients():
    layer = blocks.PatchMerging3D(6, 10, (1, 2, 2))
    seed_grad = _random((2, 3, 2, 3, 10), 9)
    layer_norm = ms.ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=blocks.NORM_EPS)
    # (h, w, c) of one frame -> (h / 2, w / 2, dh, dw, c)
    patch_order = Tensor(np.arange(144).reshape(2, 2, 3, 2, 6).transpose(0, 2, 1, 3, 4).reshape(-1))

    def ours(x, gamma, beta, weight):
        return (layer.merge(x, gamma, beta, weight) * seed_grad).sum()

    def reference(x, gamma, beta, weight):
        # the 2 x 2 patches in (dh, dw, c) order as a gather: on CPU, MindSpore 2.7.2's gradient of a 6-D or 7-D
        # transpose after a reshape corrupts the heap (the process aborts at exit), and that of strided slices
        # fails ('StridedSliceGrad ... out of bounds')
        return (ms.ops.matmul(layer_norm(ms.ops.gather(x.reshape(6, 144), patch_order, 1).reshape(2, 3, 2, 3, 24),
                                         gamma, beta)[0], weight.T) * seed_grad).sum()

    _assert_same_gradients(ours, reference, [_random((2, 3, 4, 6, 6), 1), _random((24,), 2), _random((24,), 3),
                                             _random((10, 24), 4)])


def test_group_norm_silu_kernel_matches_mindspore_with_gradients():
    """Two channels per group, so the per-channel statistics are combined into groups."""
    norm = blocks.GroupNorm(4, 8)
    fused = blocks.GroupNormSiLU(4)
    seed_grad = _random((3, 10, 8), 9)

    def ours(x, gamma, beta):
        return (fused(x, gamma, beta) * seed_grad).sum()

    def reference(x, gamma, beta):
        norm.gamma.set_data(gamma)
        norm.beta.set_data(beta)
        return (ms.ops.silu(norm(x)) * seed_grad).sum()

    def functional(x, gamma, beta):
        """The same in MindSpore operators, differentiable in gamma and beta too."""
        grouped = x.reshape(3, 10, 4, 2)
        mean = grouped.mean(axis=(1, 3), keep_dims=True)
        variance = ((grouped - mean) ** 2).mean(axis=(1, 3), keep_dims=True)
        x_hat = ((grouped - mean) / ms.ops.sqrt(variance + blocks.NORM_EPS)).reshape(3, 10, 8)
        return (ms.ops.silu(x_hat * gamma + beta) * seed_grad).sum()

    x, gamma, beta = _random((3, 10, 8), 1), _random((8,), 2), _random((8,), 3)
    assert abs(float(ours(x, gamma, beta)) - float(reference(x, gamma, beta))) < 1e-4
    assert abs(float(functional(x, gamma, beta)) - float(reference(x, gamma, beta))) < 1e-4
    for got, want in zip(ms.grad(ours, grad_position=(0, 1, 2))(x, gamma, beta),
                         ms.grad(functional, grad_position=(0, 1, 2))(x, gamma, beta)):
        np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("factors, kernel", [((2, 2), 3), ((3, 2), 5), ((2, 3), 1), ((1, 2), 3)])
def test_upsample_conv_on_the_source_grid_equals_convolving_the_upsampled_map(factors, kernel):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
    weight = np.random.default_rng(1).standard_normal((5, 6, kernel, kernel)).astype(np.float32)
    bias = np.random.default_rng(2).standard_normal(5).astype(np.float32)
    upsampled = x.repeat(factors[0], axis=2).repeat(factors[1], axis=3)
    expected = blocks._conv_forward(upsampled, weight[:, :, None], bias)
    got = blocks._upsample_conv_forward(x, weight, bias, factors)
    assert got.shape == (2, 3, 4 * factors[0], 5 * factors[1], 5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_upsample_conv_kernel_matches_mindspore_with_gradients():
    layer = blocks.Upsample3DLayer(6, 5, (8, 6))
    seed_grad = _random((2, 3, 8, 6, 5), 9)
    reference_conv = ms.ops.Conv2D(out_channel=5, kernel_size=3, pad_mode="pad", pad=1)

    def ours(x, weight, bias):
        return (layer.upsample_convolve(x, weight, bias) * seed_grad).sum()

    def reference(x, weight, bias):
        wide = ms.ops.broadcast_to(x.reshape(2, 3, 4, 1, 3, 1, 6), (2, 3, 4, 2, 3, 2, 6)).reshape(6, 8, 6, 6)
        out = reference_conv(wide.transpose(0, 3, 1, 2), weight).transpose(0, 2, 3, 1) + bias
        return (out.reshape(2, 3, 8, 6, 5) * seed_grad).sum()

    _assert_same_gradients(ours, reference, [_random((2, 3, 4, 3, 6), 1), _random((5, 6, 3, 3), 2),
                                             _random((5,), 3)])


def test_attention_softmax_matches_the_per_row_formula_even_for_rows_far_below_the_maximum():
    from prediff.models.cuboid import _attention_weights

    rng = np.random.default_rng(0)
    query, key = rng.standard_normal((2, 3, 4, 5, 8)).astype(np.float32), rng.standard_normal((2, 3, 4, 5, 8))
    bias = rng.standard_normal((4, 5, 5)).astype(np.float32)
    bias[1, 2] -= 200.0  # one row of head 1 far below the rest of its matrix: it would underflow to zeros
    score = query.astype(np.float64) @ np.swapaxes(key, -1, -2) + bias
    expected = np.exp(score - score.max(axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    weights = _attention_weights(query, key.astype(np.float32), bias)
    assert np.isfinite(weights).all()
    np.testing.assert_allclose(weights, expected, atol=2e-6)
