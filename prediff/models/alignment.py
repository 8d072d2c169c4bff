"""The knowledge-alignment network of PreDiff: ``NoisyCuboidTransformerEncoder``.

``F(z_t (B, T, 16, 16, C), t (B,)) -> (B, t_out, out_channels)``: from a noisy target latent at diffusion step
``t`` it predicts, per target frame, the frame's average intensity (published ``out_channels = 1``, in VIL/255
units, i.e. the mean over H, W of the clean frame in [0, 1]). Guidance differentiates it with respect to
``z_t``: the network is plain MindSpore autodiff end to end (no ``stop_gradient``), unlike the shipped
reference's guidance wrapper (whose gradient is identically zero).

Structure: residual block -> positional embedding -> levels of [time-embedded residual block -> axial cuboid
block] with patch merging between levels (one shared time-embedded block per level, as in the denoiser) ->
per-frame readout GroupNorm -> SiLU -> CLIP-style attention pooling over the frame's positions. Parameter
names are the bare names of the published ``align.ckpt``.
"""

from __future__ import annotations

import math

import numpy as np

from prediff.errors import ConfigError
from prediff.models.blocks import (
    GroupNorm,
    GroupNormSiLU,
    PatchMerging3D,
    PosEmbed,
    TimeEmbedLayer,
    TimeEmbedResBlock,
    check_init_mode,
    timestep_embedding,
)
from prediff.models.cuboid import StackCuboidSelfAttentionBlock
from prediff.models.earthformer_unet import as_downsample, check_unsupported, level_grids, level_units
from prediff.runtime import mindspore_module

ms = mindspore_module()
nn = ms.nn
ops = ms.ops
Parameter = ms.Parameter
Tensor = ms.Tensor


class _PointwiseConv1d(nn.Cell):
    """A kernel-1 Conv1d as a dense layer on channels-last tokens ``(N, L, in) -> (N, L, out)``.

    Parameters keep MindSpore's Conv1d layout: ``weight`` ``[out, in, 1, 1]``, ``bias`` ``[out]``; initialised
    with the framework default U(+-1/sqrt(in)).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_channels)
        uniform = ms.common.initializer.Uniform(bound)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = Parameter(ms.common.initializer.initializer(
            uniform, (out_channels, in_channels, 1, 1), ms.float32).init_data(), name="weight")
        self.bias = Parameter(ms.common.initializer.initializer(
            uniform, (out_channels,), ms.float32).init_data(), name="bias")
        self.matmul = ops.MatMul(transpose_b=True)

    def construct(self, x: Tensor) -> Tensor:
        shape = x.shape
        out = self.matmul(x.reshape(-1, self.in_channels), self.weight.reshape(self.out_channels, -1))
        return (out + self.bias).reshape(shape[:-1] + (self.out_channels,))


class AttentionPool(nn.Cell):
    """CLIP-style attention pooling of a set of tokens into one vector.

    ``(N, L, C) -> (N, output_dim)`` float32: prepend the mean token, add a learned positional embedding
    (``positional_embedding`` ``[C, L+1]``), project to q|k|v with a pointwise conv (``qkv_proj``), attend from
    the mean token to all tokens (heads split after q|k|v; q and k each scaled by head_dim^-1/4), and project
    the result with ``c_proj``. Only the mean token's output is kept, so only its query is evaluated.
    """

    def __init__(self, data_dim: int, embed_dim: int, num_heads: int, output_dim: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ConfigError(f"num_heads={num_heads} must divide the readout width {embed_dim}")
        embedding = ms.common.initializer.initializer(
            ms.common.initializer.Normal(sigma=embed_dim ** -0.5), (embed_dim, data_dim + 1), ms.float32)
        self.positional_embedding = Parameter(embedding.init_data(), name="positional_embedding")
        self.qkv_proj = _PointwiseConv1d(embed_dim, 3 * embed_dim)
        self.c_proj = _PointwiseConv1d(embed_dim, output_dim)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.batch_matmul_bt = ops.BatchMatMul(transpose_b=True)
        self.batch_matmul = ops.BatchMatMul()
        self.pool = _AttentionPoolFunction(num_heads)

    def construct(self, tokens: Tensor) -> Tensor:
        return self.pool(tokens, self.positional_embedding, self.qkv_proj.weight, self.qkv_proj.bias,
                         self.c_proj.weight, self.c_proj.bias)

    def composed(self, tokens: Tensor) -> Tensor:
        """The same pooling from MindSpore operators (autodiff): the reference :class:`_AttentionPoolFunction` is
        tested against. Same input and output as ``construct``."""
        count, length, channels = tokens.shape
        tokens = ops.cat([tokens.mean(axis=1, keep_dims=True), tokens], axis=1)
        tokens = tokens + self.positional_embedding.transpose(1, 0)
        qkv = self.qkv_proj(tokens)
        scale = 1.0 / math.sqrt(math.sqrt(self.head_dim))
        heads = (count, length + 1, self.num_heads, self.head_dim)
        query = (qkv[:, :1, :channels] * scale).reshape(count, 1, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)
        key = (qkv[:, :, channels:2 * channels] * scale).reshape(heads).transpose(0, 2, 1, 3)
        value = qkv[:, :, 2 * channels:].contiguous().reshape(heads).transpose(0, 2, 1, 3)
        weights = ops.softmax(self.batch_matmul_bt(query, key), axis=-1)
        pooled = self.batch_matmul(weights, value).reshape(count, 1, channels)
        return self.c_proj(pooled).reshape(count, -1)


class _AttentionPoolFunction(nn.Cell):
    """:class:`AttentionPool` in numpy with its exact backward pass (one step instead of ~20 MindSpore kernels).

    ``construct(tokens (N, L, C), positional_embedding [C, L+1], qkv_weight [3C, C, 1, 1], qkv_bias [3C],
    c_weight [out, C, 1, 1], c_bias [out]) -> (N, out)`` float32.
    """

    def __init__(self, num_heads: int):
        super().__init__()
        self.num_heads = num_heads

    def _forward(self, tokens, embedding, qkv_weight, qkv_bias):
        count, length, channels = tokens.shape
        head_dim = channels // self.num_heads
        scale = np.float32(1.0 / math.sqrt(math.sqrt(head_dim)))
        sequence = np.concatenate([tokens.mean(axis=1, keepdims=True), tokens], axis=1) + embedding.T
        qkv = sequence @ qkv_weight.reshape(3 * channels, channels).T
        qkv += qkv_bias
        query = (qkv[:, 0, :channels] * scale).reshape(count, self.num_heads, 1, head_dim)
        key = (qkv[:, :, channels:2 * channels] * scale).reshape(count, length + 1, self.num_heads, head_dim)
        key = key.transpose(0, 2, 1, 3)
        value = qkv[:, :, 2 * channels:].reshape(count, length + 1, self.num_heads, head_dim).transpose(0, 2, 1, 3)
        score = query @ key.transpose(0, 1, 3, 2)
        score -= score.max(axis=-1, keepdims=True)
        weights = np.exp(score)
        weights /= weights.sum(axis=-1, keepdims=True)
        pooled = (weights @ value).reshape(count, channels)
        return sequence, query, key, value, weights, pooled, scale

    def construct(self, tokens, positional_embedding, qkv_weight, qkv_bias, c_weight, c_bias):
        pooled = self._forward(tokens.asnumpy(), positional_embedding.asnumpy(), qkv_weight.asnumpy(),
                               qkv_bias.asnumpy())[5]
        c_weight_np = c_weight.asnumpy()
        out = pooled @ c_weight_np.reshape(c_weight_np.shape[0], -1).T
        out += c_bias.asnumpy()
        return Tensor.from_numpy(out)

    def bprop(self, tokens, positional_embedding, qkv_weight, qkv_bias, c_weight, c_bias, out, dout):
        tokens_np, qkv_weight_np, c_weight_np = tokens.asnumpy(), qkv_weight.asnumpy(), c_weight.asnumpy()
        count, length, channels = tokens_np.shape
        head_dim = channels // self.num_heads
        sequence, query, key, value, weights, pooled, scale = self._forward(
            tokens_np, positional_embedding.asnumpy(), qkv_weight_np, qkv_bias.asnumpy())
        grad_out = dout.asnumpy()
        grad_pooled = (grad_out @ c_weight_np.reshape(c_weight_np.shape[0], -1)).reshape(
            count, self.num_heads, 1, head_dim)
        grad_weights = grad_pooled @ value.transpose(0, 1, 3, 2)
        grad_score = weights * (grad_weights - (grad_weights * weights).sum(axis=-1, keepdims=True))
        grad_qkv = np.zeros((count, length + 1, 3 * channels), np.float32)
        grad_qkv[:, 0, :channels] = (grad_score @ key).reshape(count, channels) * scale
        grad_qkv[:, :, channels:2 * channels] = (grad_score.transpose(0, 1, 3, 2) @ query).transpose(
            0, 2, 1, 3).reshape(count, length + 1, channels) * scale
        grad_qkv[:, :, 2 * channels:] = (weights.transpose(0, 1, 3, 2) @ grad_pooled).transpose(
            0, 2, 1, 3).reshape(count, length + 1, channels)
        grad_sequence = grad_qkv @ qkv_weight_np.reshape(3 * channels, channels)
        grad_tokens = grad_sequence[:, 1:] + grad_sequence[:, :1] / np.float32(length)
        grad_qkv_rows = grad_qkv.reshape(-1, 3 * channels)
        return tuple(Tensor.from_numpy(np.ascontiguousarray(g, dtype=np.float32)) for g in (
            grad_tokens, grad_sequence.sum(axis=0).T,
            (grad_qkv_rows.T @ sequence.reshape(-1, channels)).reshape(qkv_weight_np.shape),
            grad_qkv_rows.sum(axis=0), (grad_out.T @ pooled).reshape(c_weight_np.shape), grad_out.sum(axis=0)))


class NoisyCuboidTransformerEncoder(nn.Cell):
    """Knowledge-alignment encoder of PreDiff (MindEarth parameter names and computation).

    The keyword arguments are the keys of ``model.align.model_args`` in the reference configs; keys of
    features the published configs leave off raise :class:`ConfigError` when set to other values.

    Parameters
    ----------
    input_shape : [T, H, W, C] of the noisy latent (published [6, 16, 16, 64]).
    out_channels : outputs per frame (published 1: average intensity).
    base_units, depth, num_heads, downsample : as in :class:`~prediff.models.earthformer_unet.CuboidTransformerUNet`.
    pool : readout, only "attention" (published).
    readout_seq : read out per frame (published true).
    t_out : number of last frames read out (published 6); ``None`` reads out all frames.
    padding_type, use_global_*, separate_global_qkv, global_dim_ratio, block_cuboid_* : accepted and inert,
        as in the reference at the published settings (axial cuboids span whole axes, so nothing is padded;
        global-vector keys act only with num_global_vectors > 0; cuboid patterns are ignored with
        use_attn_pattern).
    """

    def __init__(self, input_shape=None, out_channels=1, base_units=128, block_units=None, scale_alpha=1.0,
                 depth=None, downsample=2, downsample_type="patch_merge", use_attn_pattern=True,
                 block_cuboid_size=None, block_cuboid_strategy=None, block_cuboid_shift_size=None, num_heads=4,
                 attn_drop=0.0, proj_drop=0.0, ffn_drop=0.0, ffn_activation="gelu", gated_ffn=False,
                 norm_layer="layer_norm", use_inter_ffn=True, hierarchical_pos_embed=False, padding_type="zeros",
                 use_relative_pos=True, self_attn_use_final_proj=True, num_global_vectors=0,
                 use_global_vector_ffn=True, use_global_self_attn=False, separate_global_qkv=False,
                 global_dim_ratio=1, attn_linear_init_mode="0", ffn_linear_init_mode="0",
                 ffn2_linear_init_mode="2", attn_proj_linear_init_mode="2", conv_init_mode="0",
                 down_linear_init_mode="0", global_proj_linear_init_mode="2", norm_init_mode="0",
                 time_embed_channels_mult=4, time_embed_use_scale_shift_norm=False, time_embed_dropout=0.0,
                 pool="attention", readout_seq=True, t_out=None):
        super().__init__()
        if input_shape is None or depth is None:
            raise ConfigError("NoisyCuboidTransformerEncoder needs input_shape and depth "
                              "(model.align.model_args in the config)")
        time, height, width, channels = (int(v) for v in input_shape)
        check_unsupported(
            num_global_vectors=(num_global_vectors or 0, (0,)), gated_ffn=(bool(gated_ffn), (False,)),
            use_attn_pattern=(bool(use_attn_pattern), (True,)),
            hierarchical_pos_embed=(bool(hierarchical_pos_embed), (False,)),
            time_embed_use_scale_shift_norm=(bool(time_embed_use_scale_shift_norm), (False,)),
            downsample_type=(downsample_type, ("patch_merge",)), norm_layer=(norm_layer, ("layer_norm",)),
            norm_init_mode=(str(norm_init_mode), ("0",)), conv_init_mode=(str(conv_init_mode), ("0",)),
            pool=(pool, ("attention",)), readout_seq=(bool(readout_seq), (True,)),
            padding_type=(padding_type, ("zeros", "ignore", "nearest")))
        attn_init = check_init_mode("attn_linear_init_mode", attn_linear_init_mode, ("0", "1", "2"))
        ffn_init = check_init_mode("ffn_linear_init_mode", ffn_linear_init_mode, ("0", "1", "2"))
        ffn2_init = check_init_mode("ffn2_linear_init_mode", ffn2_linear_init_mode, ("0", "1", "2"))
        proj_init = check_init_mode("attn_proj_linear_init_mode", attn_proj_linear_init_mode, ("0", "1", "2"))
        down_init = check_init_mode("down_linear_init_mode", down_linear_init_mode, ("0", "1", "2"))
        check_init_mode("global_proj_linear_init_mode", global_proj_linear_init_mode, ("0", "1", "2"))
        if t_out is not None and not 0 < int(t_out) <= time:
            raise ConfigError(f"t_out={t_out} must be between 1 and the input frames ({time})")

        self.t_out = time if t_out is None else int(t_out)
        self.depth = [int(d) for d in depth]
        self.num_levels = len(self.depth)
        factors = as_downsample(downsample)
        units = level_units(int(base_units), self.num_levels, factors, float(scale_alpha), block_units)
        grids = level_grids((time, height, width), self.num_levels, factors)
        self.base_units = units[0]
        time_embed_channels = units[0] * int(time_embed_channels_mult)

        # Attribute order = the checkpoint's parameter order.
        self.first_proj = TimeEmbedResBlock(channels, units[0], dropout=float(proj_drop))
        self.pos_embed = PosEmbed(units[0], time, height, width)
        self.time_embed = TimeEmbedLayer(units[0], time_embed_channels)
        if self.num_levels > 1:
            self.downsample_layers = nn.CellList([
                PatchMerging3D(units[i], units[i + 1], factors, down_init) for i in range(self.num_levels - 1)])
        self.down_self_blocks = nn.CellList([
            nn.CellList([
                StackCuboidSelfAttentionBlock(
                    units[level], int(num_heads), grids[level], float(attn_drop), float(proj_drop),
                    float(ffn_drop), ffn_activation, bool(use_inter_ffn), bool(use_relative_pos),
                    bool(self_attn_use_final_proj), attn_init, ffn_init, ffn2_init, proj_init)
                for _ in range(self.depth[level])])
            for level in range(self.num_levels)])
        self.down_time_embed_blocks = nn.CellList([
            TimeEmbedResBlock(units[level], emb_channels=time_embed_channels, dropout=float(time_embed_dropout))
            for level in range(self.num_levels)])
        top_units = units[-1]
        top_height, top_width = grids[-1][1:]
        self.out = nn.SequentialCell([
            GroupNorm(min(top_units, 32), top_units),
            nn.SiLU(),
            AttentionPool(top_height * top_width, top_units, int(num_heads), int(out_channels)),
        ])
        # out.0 -> out.1 (GroupNorm -> SiLU) runs as one numpy step on out.0's parameters
        self.readout_norm = GroupNormSiLU(min(top_units, 32))

    def construct(self, z_t: Tensor, t: Tensor) -> Tensor:
        """Predict each target frame's average intensity from a noisy latent.

        Parameters
        ----------
        z_t : (B, T, H, W, C) float32 Tensor
            Noisy target latents at diffusion step ``t`` (NTHWC).
        t : (B,) int Tensor
            Diffusion step per sample (0 ... 999).

        Returns
        -------
        (B, t_out, out_channels) float32 Tensor
            Per-frame prediction (published: average intensity in VIL/255 units).
        """
        x = self.pos_embed(self.first_proj(z_t))
        t_emb = self.time_embed(timestep_embedding(t, self.base_units))
        for level in range(self.num_levels):
            if level > 0:
                x = self.downsample_layers[level - 1](x)
            for block in self.down_self_blocks[level]:
                x = block(self.down_time_embed_blocks[level](x, t_emb))
        batch, time, height, width, channels = x.shape
        # .contiguous(): MindSpore 2.7.2 corrupts the heap when a non-contiguous view (this slice) is reshaped
        frames = x[:, time - self.t_out:].contiguous().reshape(batch * self.t_out, height * width, channels)
        norm = self.out[0]
        return self.out[2](self.readout_norm(frames, norm.gamma, norm.beta)).reshape(batch, self.t_out, -1)
