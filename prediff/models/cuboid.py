"""Axial cuboid self-attention (Earthformer) with Swin-style relative-position bias, and the cuboid block.

The published PreDiff networks use the "axial" attention pattern: three attention layers per block whose
cuboids span the whole time axis, the whole height axis and the whole width axis in turn, i.e. attention
along T, along H and along W. With cuboids covering a full axis there is no shifting, no padding and the
attention mask is all-true, so a cuboid is just one line of the ``(B, T, H, W, C)`` grid.

Parameter names follow the checkpoints: ``attn_l.<k>.{relative_position_bias_table, relative_position_index,
qkv.weight, proj.weight, proj.bias, norm.gamma, norm.beta}`` and ``ffn_l.<k>.{ffn_1, ffn_2, layer_norm}``.
The ``relative_position_index`` buffers are int64 non-trainable Parameters, because the published
checkpoints store them.

Each attention layer — LayerNorm, qkv projection, bias lookup, per-line softmax attention on strided views,
output projection, residual — is one numpy step with a hand-written backward pass (see the speed notes in
:mod:`prediff.models.blocks`); in training, the dropout layers' masks are inputs of that step.
"""

from __future__ import annotations

import numpy as np

from prediff.errors import ConfigError
from prediff.models.blocks import (
    NORM_EPS,
    BatchSplitKernel,
    LayerNorm,
    Linear,
    PositionwiseFFN,
    dropout_mask,
    normalise_rows,
    normalise_rows_backward,
    parameter_gradients_wanted,
)
from prediff.runtime import mindspore_module

ms = mindspore_module()
nn = ms.nn
ops = ms.ops
Parameter = ms.Parameter
Tensor = ms.Tensor

#: Attention axis of each layer of an axial block, as an index into (B, T, H, W, C).
AXIAL_AXES = (1, 2, 3)


def axial_cuboid_sizes(shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Cuboid sizes of the axial pattern for a ``(T, H, W)`` grid: ``[(T,1,1), (1,H,1), (1,1,W)]``."""
    time, height, width = shape
    return [(time, 1, 1), (1, height, 1), (1, 1, width)]


def relative_position_index(cuboid_size: tuple[int, int, int]) -> np.ndarray:
    """Swin-style index into the bias table for every (query, key) pair of a cuboid.

    Returns
    -------
    (V, V) int64, V = prod(cuboid_size)
        ``(dt + Tc-1) * (2Hc-1)(2Wc-1) + (dh + Hc-1) * (2Wc-1) + (dw + Wc-1)`` for the coordinate differences
        (query - key) of the two cells, cells ordered row-major over (t, h, w).
    """
    tc, hc, wc = cuboid_size
    coords = np.stack(np.meshgrid(np.arange(tc), np.arange(hc), np.arange(wc), indexing="ij")).reshape(3, -1)
    relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    relative = relative + np.array([tc - 1, hc - 1, wc - 1])
    strides = np.array([(2 * hc - 1) * (2 * wc - 1), 2 * wc - 1, 1])
    return (relative * strides).sum(-1).astype(np.int64)


def _head_views(qkv: np.ndarray, axis: int, num_heads: int) -> list[np.ndarray]:
    """Views ``(..., heads, L, head_dim)`` of q, k, v in a ``(B, T, H, W, 3C)`` array, L along ``axis``."""
    batch, time, height, width, _ = qkv.shape
    split = qkv.reshape(batch, time, height, width, 3, num_heads, -1)
    return [np.moveaxis(split[:, :, :, :, part], (axis, 4), (-2, -3)) for part in range(3)]


def _row_sums(matrices: np.ndarray) -> np.ndarray:
    """Sums over the last axis, ``(..., L, L) -> (..., L, 1)``: einsum's loop is ~6x faster than ``sum(axis=-1)``
    on rows of 13-16 values."""
    return np.einsum("...ij->...i", matrices)[..., None]


def _attention_weights(scaled_query: np.ndarray, key: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """softmax(q k^T + bias) over the keys, ``(..., heads, L, L)``.

    Each score matrix is shifted by its largest entry rather than each row by its own (softmax is unchanged by
    any per-row constant, and one maximum over L * L values is ~10x cheaper than L maxima over L values). A row
    that lies over ~87 below its matrix's maximum would underflow to zeros; such rows, if any, are recomputed with
    their own maximum.
    """
    score = np.matmul(scaled_query, np.swapaxes(key, -1, -2))
    score += bias
    exponent = score - score.reshape(score.shape[:-2] + (-1,)).max(axis=-1)[..., None, None]
    np.exp(exponent, out=exponent)
    totals = _row_sums(exponent)
    underflow = totals[..., 0] < np.float32(1e-30)
    if underflow.any():
        rows = score[underflow]
        rows = np.exp(rows - rows.max(axis=-1, keepdims=True))
        exponent[underflow] = rows
        totals[underflow] = rows.sum(axis=-1, keepdims=True)
    exponent /= totals
    return exponent


def _axial_attention(qkv: np.ndarray, bias: np.ndarray, axis: int, num_heads: int, scale: np.float32,
                     weights_mask: np.ndarray | None = None):
    """Attention along ``axis`` of ``qkv (B, T, H, W, 3C)`` -> ``(B, T, H, W, C)``, heads merged back.

    ``weights_mask`` (lines..., heads, L, L), optional: dropout keep-mask multiplied onto the softmax weights.
    """
    return _axial_attention_and_weights(qkv, bias, axis, num_heads, scale, weights_mask)[0]


def _axial_attention_and_weights(qkv: np.ndarray, bias: np.ndarray, axis: int, num_heads: int, scale: np.float32,
                                 weights_mask: np.ndarray | None = None):
    """:func:`_axial_attention` and its softmax weights ``(lines..., heads, L, L)`` before the dropout mask."""
    query, key, value = _head_views(qkv, axis, num_heads)
    weights = _attention_weights(query * scale, key, bias)
    kept = weights if weights_mask is None else weights * weights_mask
    out = np.empty(qkv.shape[:-1] + (qkv.shape[-1] // 3,), np.float32)
    out_heads = np.moveaxis(out.reshape(out.shape[:-1] + (num_heads, -1)), (axis, 4), (-2, -3))
    np.matmul(kept, value, out=out_heads)
    return out, weights


def _axial_attention_backward(qkv: np.ndarray, bias: np.ndarray, axis: int, num_heads: int, scale: np.float32,
                              grad_out: np.ndarray, weights_mask: np.ndarray | None = None,
                              weights: np.ndarray | None = None):
    """Gradients (qkv, bias) of :func:`_axial_attention` for the output gradient ``grad_out (B,T,H,W,C)``.

    ``weights``: the forward pass's softmax weights if kept (recomputed otherwise).
    """
    query, key, value = _head_views(qkv, axis, num_heads)
    scaled_query = query * scale
    if weights is None:
        weights = _attention_weights(scaled_query, key, bias)
    kept = weights if weights_mask is None else weights * weights_mask
    grad_out = np.moveaxis(grad_out.reshape(grad_out.shape[:-1] + (num_heads, -1)), (axis, 4), (-2, -3))
    grad_qkv = np.empty_like(qkv)
    grad_query, grad_key, grad_value = _head_views(grad_qkv, axis, num_heads)
    np.matmul(np.swapaxes(kept, -1, -2), grad_out, out=grad_value)
    grad_weights = np.matmul(grad_out, np.swapaxes(value, -1, -2))
    if weights_mask is not None:
        grad_weights *= weights_mask
    grad_score = weights * (grad_weights - _row_sums(grad_weights * weights))
    np.matmul(grad_score, key, out=grad_query)
    grad_query *= scale
    np.matmul(np.swapaxes(grad_score, -1, -2), scaled_query, out=grad_key)
    return grad_qkv, grad_score.reshape((-1,) + grad_score.shape[-3:]).sum(axis=0)


class _AxialAttentionFunction(nn.Cell):
    """Scaled dot-product attention along one grid axis, in numpy with an exact backward pass.

    ``construct(qkv (B, T, H, W, 3C), bias (heads, L, L)) -> (B, T, H, W, C)`` float32, where ``qkv`` holds
    ``[q | k | v]`` with heads contiguous (the reference's layout) and L is the length of ``axis``. Working on
    strided views of the projection output avoids the layout shuffles that dominate this step with
    MindSpore's CPU kernels.
    """

    def __init__(self, axis: int, num_heads: int, scale: float):
        super().__init__()
        self.axis = axis
        self.num_heads = num_heads
        self.scale = np.float32(scale)

    def construct(self, qkv, bias):
        return Tensor.from_numpy(_axial_attention(qkv.asnumpy(), bias.asnumpy(), self.axis, self.num_heads,
                                                  self.scale))

    def bprop(self, qkv, bias, out, dout):
        grads = _axial_attention_backward(qkv.asnumpy(), bias.asnumpy(), self.axis, self.num_heads, self.scale,
                                          dout.asnumpy())
        return tuple(Tensor.from_numpy(g) for g in grads)


class _FusedAttentionFunction(BatchSplitKernel, _AxialAttentionFunction):
    """``x + proj(attention(qkv(LayerNorm(x))))`` in numpy with an exact backward pass.

    ``construct(x (B,T,H,W,C), gamma, beta, qkv_weight [3C, C], bias_table [rows, heads], bias_index (L, L),
    proj_weight [C, C], proj_bias [C]) -> (B, T, H, W, C)`` float32: the whole residual attention layer,
    relative-position bias lookup included, in one step (no gradient flows to the integer index).
    """

    def _qkv(self, x, gamma, beta, qkv_weight):
        channels = x.shape[-1]
        x_hat, rstd = normalise_rows(x.reshape(-1, channels), NORM_EPS)
        normed = x_hat * gamma + beta
        qkv = (normed @ qkv_weight.T).reshape(x.shape[:-1] + (3 * channels,))
        return x_hat, rstd, normed, qkv

    def _bias(self, table, index):
        length = index.shape[0]
        return np.ascontiguousarray(table[index.reshape(-1)].reshape(length, length, -1).transpose(2, 0, 1))

    def _forward(self, arrays, weights_mask, out_mask, keep=True):
        """Output and the intermediates its backward pass needs (all of them, whatever ``keep``)."""
        x, gamma, beta, qkv_weight, table, index, proj_weight, proj_bias = arrays
        channels = x.shape[-1]
        bias = self._bias(table, index)
        x_hat, rstd, normed, qkv = self._qkv(x, gamma, beta, qkv_weight)
        attended, weights = _axial_attention_and_weights(qkv, bias, self.axis, self.num_heads, self.scale,
                                                         weights_mask)
        out = attended.reshape(-1, channels) @ proj_weight.T
        out += proj_bias
        if out_mask is not None:
            out *= out_mask.reshape(-1, channels)
        out += x.reshape(-1, channels)
        return out.reshape(x.shape), (bias, x_hat, rstd, normed, qkv, weights, attended)

    def _backward(self, arrays, weights_mask, out_mask, grad_out, saved):
        x, gamma, _, qkv_weight, table, index, proj_weight, _ = arrays
        bias, x_hat, rstd, normed, qkv, weights, attended = saved
        channels = x.shape[-1]
        grad_rows = grad_out.reshape(-1, channels)
        grad_projected = grad_rows if out_mask is None else grad_rows * out_mask.reshape(-1, channels)
        grad_attended = (grad_projected @ proj_weight).reshape(x.shape)
        grad_qkv, grad_bias = _axial_attention_backward(qkv, bias, self.axis, self.num_heads, self.scale,
                                                        grad_attended, weights_mask, weights)
        grad_qkv_rows = grad_qkv.reshape(-1, 3 * channels)
        grad_normed = grad_qkv_rows @ qkv_weight
        grad_x = normalise_rows_backward(grad_normed * gamma, x_hat, rstd)
        grad_x += grad_rows
        if not parameter_gradients_wanted():
            return [grad_x.reshape(x.shape)] + [np.zeros_like(array) for array in arrays[1:]]
        grad_table = np.zeros_like(table)
        np.add.at(grad_table, index.reshape(-1), grad_bias.transpose(1, 2, 0).reshape(-1, table.shape[1]))
        return [grad_x.reshape(x.shape), np.einsum("nc,nc->c", grad_normed, x_hat), grad_normed.sum(axis=0),
                grad_qkv_rows.T @ normed, grad_table, np.zeros_like(index),
                grad_projected.T @ attended.reshape(-1, channels), grad_projected.sum(axis=0)]

    def construct(self, x, gamma, beta, qkv_weight, bias_table, bias_index, proj_weight, proj_bias):
        arrays = [t.asnumpy() for t in (x, gamma, beta, qkv_weight, bias_table, bias_index, proj_weight, proj_bias)]
        return self._run(arrays, (None, None))

    def bprop(self, x, gamma, beta, qkv_weight, bias_table, bias_index, proj_weight, proj_bias, out, dout):
        arrays = [t.asnumpy() for t in (x, gamma, beta, qkv_weight, bias_table, bias_index, proj_weight, proj_bias)]
        return _gradient_tensors(self._gradients(arrays, (None, None), out, dout))


class _FusedAttentionDropoutFunction(_FusedAttentionFunction):
    """:class:`_FusedAttentionFunction` with dropout on the attention weights and on the projection (training).

    Two more inputs: ``weights_mask`` (B, lines..., heads, L, L) — the lines of the attended axis in the order
    of the remaining grid axes — and ``out_mask (B, T, H, W, C)``, scaled keep-masks from
    :func:`prediff.models.blocks.dropout_mask`; they get zero gradients.
    """

    def construct(self, x, gamma, beta, qkv_weight, bias_table, bias_index, proj_weight, proj_bias, weights_mask,
                  out_mask):
        arrays = [t.asnumpy() for t in (x, gamma, beta, qkv_weight, bias_table, bias_index, proj_weight, proj_bias)]
        return self._run(arrays, (weights_mask.asnumpy(), out_mask.asnumpy()))

    def bprop(self, x, gamma, beta, qkv_weight, bias_table, bias_index, proj_weight, proj_bias, weights_mask,
              out_mask, out, dout):
        arrays = [t.asnumpy() for t in (x, gamma, beta, qkv_weight, bias_table, bias_index, proj_weight, proj_bias)]
        masks = [weights_mask.asnumpy(), out_mask.asnumpy()]
        grads = self._gradients(arrays, masks, out, dout)
        return _gradient_tensors(grads + [np.zeros_like(mask) for mask in masks])


def _gradient_tensors(arrays) -> tuple:
    """Tensors of C-contiguous gradient arrays (dtype kept, so the int64 index gets an int64 zero gradient)."""
    return tuple(Tensor.from_numpy(np.ascontiguousarray(array)) for array in arrays)


class AxialSelfAttention(nn.Cell):
    """Multi-head self-attention along one axis of ``(B, T, H, W, C)``, with relative-position bias.

    ``x -> x + proj(softmax(q k^T / sqrt(d) + bias) v)`` with q, k, v from ``LayerNorm(x)`` — the residual
    add of the reference's cuboid block is included. Shape-preserving, float32. The layer runs as one fused
    numpy step (:class:`_FusedAttentionFunction`; :class:`_FusedAttentionDropoutFunction` with the dropout
    masks as inputs in training).

    Parameters
    ----------
    dim : channels C.
    num_heads : heads; ``dim`` must be divisible by it.
    cuboid_size : (Tc, Hc, Wc) with only the attended axis > 1.
    axis : 1, 2 or 3 — the attended axis of the input.
    attn_drop, proj_drop : dropout after the softmax and after the output projection (training only).
    use_relative_pos, use_final_proj : as the reference's keys of the same name.
    attn_init_mode, proj_init_mode : linear init modes of ``qkv`` and ``proj`` (published "0" and "2").
    """

    def __init__(self, dim: int, num_heads: int, cuboid_size: tuple[int, int, int], axis: int,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, use_relative_pos: bool = True,
                 use_final_proj: bool = True, attn_init_mode: str = "0", proj_init_mode: str = "2"):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"num_heads={num_heads} must divide the block width {dim}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.length = int(np.prod(cuboid_size))
        self.use_relative_pos = use_relative_pos
        self.use_final_proj = use_final_proj
        if use_relative_pos:
            table_rows = int(np.prod([2 * size - 1 for size in cuboid_size]))
            table = ms.common.initializer.initializer(
                ms.common.initializer.TruncatedNormal(sigma=0.02), (table_rows, num_heads), ms.float32).init_data()
            self.relative_position_bias_table = Parameter(table, name="relative_position_bias_table")
            self.relative_position_index = Parameter(Tensor(relative_position_index(cuboid_size)),
                                                     name="relative_position_index", requires_grad=False)
        self.qkv = Linear(dim, 3 * dim, has_bias=False, init_mode=attn_init_mode)
        if use_final_proj:
            self.proj = Linear(dim, dim, init_mode=proj_init_mode)
            self.proj_drop = nn.Dropout(p=proj_drop)
        self.norm = LayerNorm(dim)
        self.attend = _AxialAttentionFunction(axis, num_heads, self.scale)
        self.fused = _FusedAttentionFunction(axis, num_heads, self.scale)
        self.fused_dropout = _FusedAttentionDropoutFunction(axis, num_heads, self.scale)
        self.attn_drop_rate = float(attn_drop)
        self.attn_drop = nn.Dropout(p=attn_drop)
        self._no_bias = Tensor(np.zeros((num_heads, self.length, self.length), np.float32))
        # Permutation moving the attended axis next to the channels, and its inverse.
        order = [0] + [a for a in AXIAL_AXES if a != axis] + [axis, 4]
        self.line_order = tuple(order)
        self.grid_order = tuple(int(i) for i in np.argsort(order))
        self.batch_matmul = ops.BatchMatMul()
        self.batch_matmul_bt = ops.BatchMatMul(transpose_b=True)

    def _bias(self) -> Tensor:
        """(heads, L, L) relative-position bias of the attended line."""
        if not self.use_relative_pos:
            return self._no_bias
        index = self.relative_position_index.reshape(-1)
        bias = ops.gather(self.relative_position_bias_table, index, 0)
        return bias.reshape(self.length, self.length, self.num_heads).transpose(2, 0, 1)

    def attend_with_dropout(self, qkv: Tensor, bias: Tensor) -> Tensor:
        """MindSpore-autodiff attention with dropout on the attention weights (training with attn_drop > 0).

        Same inputs and output as the fused kernel: ``qkv (B, T, H, W, 3C)``, ``bias (heads, L, L)`` ->
        ``(B, T, H, W, C)``.
        """
        lines = qkv.transpose(self.line_order)
        lines_shape = lines.shape
        length = lines_shape[-2]
        heads = lines.reshape(-1, length, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        score = self.batch_matmul_bt(heads[0] * self.scale, heads[1]) + bias
        weights = self.attn_drop(ops.softmax(score, axis=-1))
        out = self.batch_matmul(weights, heads[2]).transpose(0, 2, 1, 3)
        return out.reshape(lines_shape[:-1] + (lines_shape[-1] // 3,)).transpose(self.grid_order)

    def construct(self, x: Tensor) -> Tensor:
        if not (self.use_final_proj and self.use_relative_pos):
            return self.composed(x)
        arguments = (x, self.norm.gamma, self.norm.beta, self.qkv.weight, self.relative_position_bias_table,
                     self.relative_position_index, self.proj.weight, self.proj.bias)
        weights_mask = dropout_mask(self.attn_drop, self._weights_shape(x.shape))
        out_mask = dropout_mask(self.proj_drop, x.shape)
        if weights_mask is None and out_mask is None:
            return self.fused(*arguments)
        if weights_mask is None:
            weights_mask = Tensor(np.ones(self._weights_shape(x.shape), np.float32))
        if out_mask is None:
            out_mask = Tensor(np.ones(x.shape, np.float32))
        return self.fused_dropout(*arguments, weights_mask, out_mask)

    def _weights_shape(self, shape: tuple) -> tuple:
        """Shape of the attention weights for an input of ``shape``: (B, other axes..., heads, L, L)."""
        lines = tuple(shape[a] for a in self.line_order[:-2])
        return lines + (self.num_heads, self.length, self.length)

    def composed(self, x: Tensor) -> Tensor:
        """The layer from its individual cells (MindSpore autodiff), the reference the fused kernels are tested
        against; also the path of the configurations without relative-position bias or final projection."""
        qkv = self.qkv(self.norm(x))
        if self.training and self.attn_drop_rate > 0:
            out = self.attend_with_dropout(qkv, self._bias())
        else:
            out = self.attend(qkv, self._bias())
        if self.use_final_proj:
            out = self.proj_drop(self.proj(out))
        return x + out


class StackCuboidSelfAttentionBlock(nn.Cell):
    """One axial cuboid block: attention along T, H, W, each followed by a feed-forward layer.

    ``(B, T, H, W, dim) -> (B, T, H, W, dim)`` float32. With ``use_inter_ffn`` (published)::

        for k in 0, 1, 2:  x = x + Attn_k(x);  x = ffn_l[k](x)     (attn_l[k](x) computes x + Attn_k(x))

    otherwise the three attentions run first and a single ``ffn_l[0]`` follows.

    Parameters
    ----------
    dim, num_heads : width and heads.
    grid : (T, H, W) of the level; the cuboids are :func:`axial_cuboid_sizes` of it.
    attn_drop, proj_drop, ffn_drop : dropout rates (training only).
    activation : FFN activation name.
    use_inter_ffn, use_relative_pos, use_final_proj : the reference's keys.
    attn_init_mode, ffn_init_mode, ffn2_init_mode, attn_proj_init_mode : reference linear init modes.
    """

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int, int], attn_drop: float = 0.0,
                 proj_drop: float = 0.0, ffn_drop: float = 0.0, activation: str = "gelu",
                 use_inter_ffn: bool = True, use_relative_pos: bool = True, use_final_proj: bool = True,
                 attn_init_mode: str = "0", ffn_init_mode: str = "0", ffn2_init_mode: str = "2",
                 attn_proj_init_mode: str = "2"):
        super().__init__()
        cuboid_sizes = axial_cuboid_sizes(grid)
        self.use_inter_ffn = use_inter_ffn
        num_ffn = len(cuboid_sizes) if use_inter_ffn else 1
        self.ffn_l = nn.CellList([
            PositionwiseFFN(dim, 4 * dim, ffn_drop, activation, ffn_init_mode, ffn2_init_mode)
            for _ in range(num_ffn)])
        self.attn_l = nn.CellList([
            AxialSelfAttention(dim, num_heads, size, axis, attn_drop, proj_drop, use_relative_pos,
                               use_final_proj, attn_init_mode, attn_proj_init_mode)
            for size, axis in zip(cuboid_sizes, AXIAL_AXES)])

    def construct(self, x: Tensor) -> Tensor:
        if self.use_inter_ffn:
            for attention, ffn in zip(self.attn_l, self.ffn_l):
                x = ffn(attention(x))
            return x
        for attention in self.attn_l:
            x = attention(x)
        return self.ffn_l[0](x)
