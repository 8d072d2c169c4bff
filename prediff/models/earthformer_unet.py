"""The PreDiff latent denoiser: Earthformer-UNet (``CuboidTransformerUNet``), epsilon prediction.

``construct(x_t (B, 6, 16, 16, C), t (B,) int, cond (B, 7, 16, 16, C)) -> eps (B, 6, 16, 16, C)``, all NTHWC
float32 latents (C = 64 published). The conditioning is concatenated in time: ``[cond, x_t]`` plus one
"observed" indicator channel (1 for context frames, 0 for target frames) -> first residual block ->
positional embedding -> a two-level U-Net of axial cuboid blocks, each preceded by a timestep-conditioned
residual block -> ``final_proj`` on the target frames.

Weight sharing as in the reference: each level has ONE time-embedded residual block per side
(``down_time_embed_blocks.<level>``, ``up_time_embed_blocks.<level>``) applied before every one of that level's
``depth[level]`` cuboid blocks; only the cuboid blocks (``down_self_blocks.<level>.<k>``,
``up_self_blocks.<level>.<k>``) are separate. Parameter names are the bare names of the published
``diffusion.ckpt`` (which stores them with a ``main_model.`` prefix).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from prediff.errors import ConfigError
from prediff.models.blocks import (
    Linear,
    PatchMerging3D,
    PosEmbed,
    TimeEmbedLayer,
    TimeEmbedResBlock,
    Upsample3DLayer,
    check_init_mode,
    timestep_embedding,
)
from prediff.models.cuboid import StackCuboidSelfAttentionBlock
from prediff.runtime import mindspore_module

ms = mindspore_module()
nn = ms.nn
ops = ms.ops
Tensor = ms.Tensor


def level_units(base_units: int, num_levels: int, downsample: tuple[int, int, int], scale_alpha: float,
                block_units: Sequence[int] | None) -> list[int]:
    """Channel width per U-Net level: ``round_to_4(base * int(max(downsample) ** alpha) ** i)`` unless given."""
    if block_units is not None:
        block_units = [int(u) for u in block_units]
        if len(block_units) != num_levels or block_units[0] != base_units:
            raise ConfigError(f"block_units={block_units} must have one width per level ({num_levels}) "
                              f"and start with base_units={base_units}")
        return block_units
    widths = []
    for level in range(num_levels):
        width = base_units * int((max(downsample) ** scale_alpha) ** level)
        widths.append(width + (width - width % 4) % 4)
    return widths


def level_grids(grid: tuple[int, int, int], num_levels: int, downsample: tuple[int, int, int]) -> list:
    """(T, H, W) of every level: the input grid, then divided by ``downsample`` per patch merge."""
    grids = [tuple(grid)]
    for _ in range(num_levels - 1):
        time, height, width = grids[-1]
        if height % downsample[1] or width % downsample[2]:
            raise ConfigError(f"a {height}x{width} latent grid cannot be patch-merged by "
                              f"{downsample[1]}x{downsample[2]}; use latent sizes divisible by the downsample")
        grids.append((time // downsample[0], height // downsample[1], width // downsample[2]))
    return grids


def check_unsupported(**settings) -> None:
    """Raise :class:`ConfigError` for reference features the published configs leave off.

    Each keyword is ``name=(value, supported_values)``.
    """
    for name, (value, supported) in settings.items():
        if value not in supported:
            raise ConfigError(f"{name}={value!r} is not supported by this implementation (the published configs "
                              f"use {supported[0]!r}); remove the key or set it to {supported[0]!r}")


def as_downsample(downsample) -> tuple[int, int, int]:
    """The reference's ``downsample`` key (int = spatial factor, or a (t, h, w) triple) as a triple."""
    if isinstance(downsample, (list, tuple)):
        if len(downsample) != 3:
            raise ConfigError(f"downsample={downsample!r} must be an int or a [t, h, w] triple")
        return tuple(int(d) for d in downsample)
    return (1, int(downsample), int(downsample))


class CuboidTransformerUNet(nn.Cell):
    """Earthformer-UNet latent denoiser of PreDiff (MindEarth parameter names and computation).

    The keyword arguments are the keys of ``model.latent_model`` in the reference configs. Keys of features
    the published configs leave off (global vectors, gated FFN, hierarchical positional embedding, explicit
    cuboid patterns, scale-shift time-embedding norm) are accepted at their published values and raise
    :class:`ConfigError` otherwise. Dropouts act only in training mode (``set_train(True)``).

    Parameters
    ----------
    input_shape : [T_in, H, W, C] of the context latents (published [7, 16, 16, 64]).
    target_shape : [T_out, H, W, C] of the predicted latents (published [6, 16, 16, 64]).
    base_units : width of level 0 (published 256); level widths follow :func:`level_units`.
    depth : cuboid blocks per level (published [4, 4]).
    num_heads : attention heads.
    downsample : spatial patch-merge factor between levels.
    upsample_kernel_size : kernel of the decoder's upsampling convolution.
    attn_drop, proj_drop, ffn_drop : dropout rates; ``proj_drop`` is also the first block's dropout.
    ffn_activation : "gelu" (published), "relu" or "leaky".
    time_embed_channels_mult : timestep-MLP width as a multiple of ``base_units``.
    time_embed_dropout : dropout inside the time-embedded residual blocks.
    unet_res_connect : add encoder outputs to the decoder at each level (published true).
    padding_type, use_global_*, separate_global_qkv, global_dim_ratio, block_cuboid_* : accepted and inert,
        as in the reference at the published settings (axial cuboids span whole axes, so nothing is padded;
        global-vector keys act only with num_global_vectors > 0; cuboid patterns are ignored with
        use_attn_pattern).
    *_init_mode : the reference's initialisation modes (fresh networks start like the reference's: zero
        ``final_proj``, FFN second layers, attention output projections and residual-block output convs).
    """

    def __init__(self, input_shape=None, target_shape=None, base_units=256, block_units=None, scale_alpha=1.0,
                 depth=None, downsample=2, downsample_type="patch_merge", upsample_type="upsample",
                 upsample_kernel_size=3, use_attn_pattern=True, block_cuboid_size=None,
                 block_cuboid_strategy=None, block_cuboid_shift_size=None, num_heads=4, attn_drop=0.0,
                 proj_drop=0.0, ffn_drop=0.0, ffn_activation="gelu", gated_ffn=False, norm_layer="layer_norm",
                 use_inter_ffn=True, hierarchical_pos_embed=False, padding_type="zeros", use_relative_pos=True,
                 self_attn_use_final_proj=True, num_global_vectors=0, use_global_vector_ffn=True,
                 use_global_self_attn=False, separate_global_qkv=False, global_dim_ratio=1,
                 attn_linear_init_mode="0", ffn_linear_init_mode="0", ffn2_linear_init_mode="2",
                 attn_proj_linear_init_mode="2", conv_init_mode="0", down_linear_init_mode="0",
                 global_proj_linear_init_mode="2", norm_init_mode="0", time_embed_channels_mult=4,
                 time_embed_use_scale_shift_norm=False, time_embed_dropout=0.0, unet_res_connect=True):
        super().__init__()
        if input_shape is None or target_shape is None or depth is None:
            raise ConfigError("CuboidTransformerUNet needs input_shape, target_shape and depth "
                              "(model.latent_model in the config)")
        t_in, height, width, channels = (int(v) for v in input_shape)
        t_out, height_out, width_out, channels_out = (int(v) for v in target_shape)
        if (height, width, channels) != (height_out, width_out, channels_out):
            raise ConfigError(f"input_shape {list(input_shape)} and target_shape {list(target_shape)} must agree "
                              "in height, width and channels")
        check_unsupported(
            num_global_vectors=(num_global_vectors or 0, (0,)), gated_ffn=(bool(gated_ffn), (False,)),
            use_attn_pattern=(bool(use_attn_pattern), (True,)),
            hierarchical_pos_embed=(bool(hierarchical_pos_embed), (False,)),
            time_embed_use_scale_shift_norm=(bool(time_embed_use_scale_shift_norm), (False,)),
            downsample_type=(downsample_type, ("patch_merge",)), upsample_type=(upsample_type, ("upsample",)),
            norm_layer=(norm_layer, ("layer_norm",)), norm_init_mode=(str(norm_init_mode), ("0",)),
            conv_init_mode=(str(conv_init_mode), ("0",)),
            padding_type=(padding_type, ("zeros", "ignore", "nearest")))
        attn_init = check_init_mode("attn_linear_init_mode", attn_linear_init_mode, ("0", "1", "2"))
        ffn_init = check_init_mode("ffn_linear_init_mode", ffn_linear_init_mode, ("0", "1", "2"))
        ffn2_init = check_init_mode("ffn2_linear_init_mode", ffn2_linear_init_mode, ("0", "1", "2"))
        proj_init = check_init_mode("attn_proj_linear_init_mode", attn_proj_linear_init_mode, ("0", "1", "2"))
        down_init = check_init_mode("down_linear_init_mode", down_linear_init_mode, ("0", "1", "2"))
        check_init_mode("global_proj_linear_init_mode", global_proj_linear_init_mode, ("0", "1", "2"))

        self.t_in = t_in
        self.t_out = t_out
        self.depth = [int(d) for d in depth]
        self.num_levels = len(self.depth)
        self.unet_res_connect = bool(unet_res_connect)
        factors = as_downsample(downsample)
        units = level_units(int(base_units), self.num_levels, factors, float(scale_alpha), block_units)
        grids = level_grids((t_in + t_out, height, width), self.num_levels, factors)
        self.base_units = units[0]
        time_embed_channels = units[0] * int(time_embed_channels_mult)

        # Attribute order = the checkpoint's parameter order.
        self.first_proj = TimeEmbedResBlock(channels + 1, units[0], dropout=float(proj_drop))
        self.pos_embed = PosEmbed(units[0], t_in + t_out, height, width)
        self.time_embed = TimeEmbedLayer(units[0], time_embed_channels)
        if self.num_levels > 1:
            self.downsample_layers = nn.CellList([
                PatchMerging3D(units[i], units[i + 1], factors, down_init) for i in range(self.num_levels - 1)])
            self.upsample_layers = nn.CellList([
                Upsample3DLayer(units[i + 1], units[i], grids[i][1:], int(upsample_kernel_size))
                for i in range(self.num_levels - 1)])

        def cuboid_blocks(level: int) -> nn.CellList:
            return nn.CellList([
                StackCuboidSelfAttentionBlock(
                    units[level], int(num_heads), grids[level], float(attn_drop), float(proj_drop),
                    float(ffn_drop), ffn_activation, bool(use_inter_ffn), bool(use_relative_pos),
                    bool(self_attn_use_final_proj), attn_init, ffn_init, ffn2_init, proj_init)
                for _ in range(self.depth[level])])

        self.down_self_blocks = nn.CellList([cuboid_blocks(level) for level in range(self.num_levels)])
        self.up_self_blocks = nn.CellList([cuboid_blocks(level) for level in range(self.num_levels)])
        self.down_time_embed_blocks = nn.CellList([
            TimeEmbedResBlock(units[level], emb_channels=time_embed_channels, dropout=float(time_embed_dropout))
            for level in range(self.num_levels)])
        self.up_time_embed_blocks = nn.CellList([
            TimeEmbedResBlock(units[level], emb_channels=time_embed_channels, dropout=float(time_embed_dropout))
            for level in range(self.num_levels)])
        self.final_proj = Linear(units[0], channels, init_mode="2")

        indicator = np.zeros((1, t_in + t_out, height, width, 1), np.float32)
        indicator[:, :t_in] = 1.0
        self._observed_indicator = Tensor(indicator)

    def construct(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """Predict the noise in ``x_t``.

        Parameters
        ----------
        x_t : (B, T_out, H, W, C) float32 Tensor
            Noisy target latents at diffusion step ``t`` (NTHWC).
        t : (B,) int Tensor
            Diffusion step per sample (0 ... 999).
        cond : (B, T_in, H, W, C) float32 Tensor
            Context latents (VAE posterior means of the observed frames, NTHWC).

        Returns
        -------
        (B, T_out, H, W, C) float32 Tensor
            Predicted noise epsilon.
        """
        x = ops.cat([cond, x_t], axis=1)
        indicator = ops.broadcast_to(self._observed_indicator, x.shape[:-1] + (1,))
        x = self.first_proj(ops.cat([x, indicator], axis=-1))
        x = self.pos_embed(x)
        t_emb = self.time_embed(timestep_embedding(t, self.base_units))
        skips = []
        for level in range(self.num_levels):
            if level > 0:
                x = self.downsample_layers[level - 1](x)
            for block in self.down_self_blocks[level]:
                x = block(self.down_time_embed_blocks[level](x, t_emb))
            if self.unet_res_connect and level < self.num_levels - 1:
                skips.append(x)
        for level in range(self.num_levels - 1, -1, -1):
            if self.unet_res_connect and level < self.num_levels - 1:
                x = x + skips[level]
            for block in self.up_self_blocks[level]:
                x = block(self.up_time_embed_blocks[level](x, t_emb))
            if level > 0:
                x = self.upsample_layers[level - 1](x)
        # .contiguous(): MindSpore 2.7.2 corrupts the heap when a non-contiguous view (this slice) is reshaped
        return self.final_proj(x[:, self.t_in:].contiguous())
