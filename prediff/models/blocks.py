"""Building blocks shared by the Earthformer-UNet denoiser and the knowledge-alignment encoder.

Everything here works on channels-last tensors: sequences are ``NTHWC`` (batch, time, height, width,
channel) float32, so the cuboid attention, the feed-forward layers and the convolutions need no layout
changes between them. Parameter names and shapes are those of the MindEarth PreDiff checkpoints
(``weight``/``bias`` for dense and convolution layers, ``gamma``/``beta`` for norms, ``embedding_table`` for
embeddings); convolution weights keep the published ``[out, in, kT, kH, kW]`` layout.

Speed (2-core CPU, MindSpore 2.7.2). A denoiser forward is ~60 % 3x3x3 convolution and ~38 % dense layers.
MindSpore's CPU Conv3d reaches ~55 GFLOP/s, its MatMul ~90, and every element-wise kernel, reshape, strided
slice or transpose costs several milliseconds on these tensor sizes (its exact GELU alone took as long as the
dense layers around it). The hot paths therefore run in numpy (OpenBLAS sgemm, ~100 GFLOP/s per core) inside
MindSpore cells that define ``bprop``, so ``mindspore.grad`` / ``value_and_grad`` still differentiate
through them exactly (inputs and parameters; tested against MindSpore's own operators):

* convolutions: one GEMM per time tap over (kh, kw) patches built in a reused workspace
  (:class:`Conv3dSame`, :class:`Conv2dSame`); weights stay stored ``[out, in, kT, kH, kW]``;
* a whole residual block (GroupNorm -> SiLU -> conv -> + time embedding -> GroupNorm -> SiLU -> conv -> + skip),
  a whole pre-norm feed-forward layer and (in :mod:`prediff.models.cuboid`) a whole axial attention layer are
  each one fused step. In training, each dropout layer's mask (:func:`dropout_mask`, drawn by the dropout
  layer itself) is one more input of the fused step, so training runs the same few kernels as inference.

Arrays crossing between MindSpore and numpy are shared, not copied (``Tensor.asnumpy`` /
``Tensor.from_numpy``). ``benchmarks/bench_denoiser.py`` measures the result.
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
from typing import Callable, NamedTuple

import numpy as np

from prediff.errors import ConfigError
from prediff.models.threads import backward_shares, batch_parallel, blockwise, forward_shares
from prediff.runtime import mindspore_module

ms = mindspore_module()
nn = ms.nn
ops = ms.ops
Parameter = ms.Parameter
Tensor = ms.Tensor

#: The reference normalises with MindSpore's defaults: GroupNorm and LayerNorm eps 1e-5.
NORM_EPS = 1e-5
#: Groups of the residual blocks' GroupNorm (falls back to one group per channel when not divisible).
RES_BLOCK_NORM_GROUPS = 32
#: Timestep-embedding period of the sinusoidal features.
MAX_PERIOD = 10000


# ----------------------------------------------------------------------------------------------------------
# initialisers (the reference's "init modes"); all draw from MindSpore's global seed


def _init(initializer, shape) -> Tensor:
    return ms.common.initializer.initializer(initializer, shape, ms.float32).init_data()


def _zeros(shape) -> Tensor:
    return Tensor(np.zeros(shape, np.float32))


def _uniform_fan_in(shape, fan_in: int) -> Tensor:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch / MindSpore default for conv and dense layers."""
    return _init(ms.common.initializer.Uniform(1.0 / math.sqrt(fan_in)), shape)


def linear_init(weight: Parameter, bias: Parameter | None, mode: str) -> None:
    """Initialise a dense layer the way the reference's ``apply_initialization(linear_mode=mode)`` does.

    Mode ``"0"``: N(0, 1/fan_in) weights; ``"1"``: He-normal (fan_out, leaky ReLU); ``"2"``: zeros.
    Biases are zero in every mode.
    """
    initializer = ms.common.initializer
    if mode == "0":
        weight.set_data(_init(initializer.HeNormal(mode="fan_in", nonlinearity="linear"), weight.shape))
    elif mode == "1":
        weight.set_data(_init(initializer.HeNormal(mode="fan_out", nonlinearity="leaky_relu"), weight.shape))
    elif mode == "2":
        weight.set_data(_zeros(weight.shape))
    else:
        raise ConfigError(f"linear init mode {mode!r} is not supported; use '0', '1' or '2'")
    if bias is not None:
        bias.set_data(_zeros(bias.shape))


def check_init_mode(name: str, mode, allowed: tuple[str, ...]) -> str:
    """Return ``mode`` as a string, or raise :class:`ConfigError` naming the key and the allowed values."""
    mode = str(mode)
    if mode not in allowed:
        raise ConfigError(f"{name}={mode!r} is not supported; use one of {', '.join(repr(a) for a in allowed)}")
    return mode


# ----------------------------------------------------------------------------------------------------------
# timestep embedding


def timestep_embedding(timesteps: Tensor, dim: int) -> Tensor:
    """Sinusoidal diffusion-timestep features, computed exactly like the reference.

    Parameters
    ----------
    timesteps : (B,) int or float Tensor
        Diffusion step indices (0 ... 999).
    dim : int
        Feature width; an odd width gets one zero column appended.

    Returns
    -------
    (B, dim) float32 Tensor
        ``[cos(t * f_0), ..., cos(t * f_{h-1}), sin(t * f_0), ..., sin(t * f_{h-1})]`` with ``h = dim // 2``
        and ``f_i = exp(-ln(10000) * i / h)``.

    Notes
    -----
    The frequencies are evaluated with MindSpore's float32 ``exp`` in the reference's operation order; the
    CPU float32 ``exp`` is off by up to ~4e-6 relative, which at t = 999 moves the features by up to 7.5e-4
    compared with an exact formula — enough to use up most of a 1e-4 parity tolerance downstream.
    """
    half = dim // 2
    freqs = ops.exp(-math.log(MAX_PERIOD) * ops.arange(0, half, dtype=ms.float32) / half)
    args = timesteps[:, None].astype(ms.float32) * freqs[None]
    embedding = ops.cat([ops.cos(args), ops.sin(args)], axis=-1)
    if dim % 2:
        embedding = ops.cat([embedding, ops.zeros_like(embedding[:, :1])], axis=-1)
    return embedding


class TimeEmbedLayer(nn.Cell):
    """Timestep-feature MLP: Dense(base -> 4 base) -> SiLU -> Dense(4 base -> 4 base).

    ``(B, base_channels) -> (B, time_embed_channels)`` float32. Parameters ``layer.0.*``, ``layer.2.*``.
    """

    def __init__(self, base_channels: int, time_embed_channels: int):
        super().__init__()
        self.layer = nn.SequentialCell([
            Linear(base_channels, time_embed_channels, init_mode="default"),
            nn.SiLU(),
            Linear(time_embed_channels, time_embed_channels, init_mode="default"),
        ])

    def construct(self, features: Tensor) -> Tensor:
        return self.layer(features)


# ----------------------------------------------------------------------------------------------------------
# which gradients the hand-written backward passes compute


_GRADIENT_MODE = threading.local()


def parameter_gradients_wanted() -> bool:
    """False inside :func:`input_gradients_only` (in this thread), else True."""
    return getattr(_GRADIENT_MODE, "input_only", 0) == 0


@contextlib.contextmanager
def input_gradients_only():
    """Within this block the numpy kernels' backward passes skip the parameter gradients (returning zeros).

    For gradients with respect to a network's input only, such as the guidance direction
    ``grad_z U(z_t)`` (:mod:`prediff.diffusion.guidance`): the weight-gradient GEMMs are about half of a
    backward pass. Never wrap a step that updates parameters in it. Per thread, so one app session's guidance
    does not affect another thread's training.
    """
    _GRADIENT_MODE.input_only = getattr(_GRADIENT_MODE, "input_only", 0) + 1
    try:
        yield
    finally:
        _GRADIENT_MODE.input_only -= 1


# ----------------------------------------------------------------------------------------------------------
# numpy kernels: forward and backward of the element-wise and normalisation steps, float32


_INV_SQRT_2PI = np.float32(1.0 / math.sqrt(2.0 * math.pi))
#: erfc(z) = t (a1 + a2 t + ... + a5 t^4) exp(-z^2), t = 1 / (1 + p z), z >= 0: absolute error < 1.5e-7
#: (Abramowitz & Stegun 7.1.26). Built from numpy's vectorised exp this is ~3x cheaper than scipy's erf and as
#: accurate in float32 (max GELU error 3.3e-7 against float64 for |x| < 30). For Phi(-a) = erfc(a / sqrt 2) / 2
#: the 1 / sqrt 2 is folded into p and the 1 / 2 into the coefficients.
_TAIL_P = np.float32(0.3275911 / math.sqrt(2.0))
_TAIL_COEFFICIENTS = (np.array([0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429]) / 2
                      ).astype(np.float32)


def _normal_tail_block(magnitude: np.ndarray) -> np.ndarray:
    """Phi(-a) = P(N(0, 1) < -a) of a 1-D float32 block of ``a >= 0`` (new array), ~15 cheap numpy passes.

    Every pass is a plain ufunc over the block: a masked ``where=`` update or ``np.where`` costs as much as twenty
    of them (measured on 16k-element blocks), so the callers recover Phi(h) and GELU(h) from the tail through
    sign identities instead of a branch.
    """
    t = magnitude * _TAIL_P
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    series = _TAIL_COEFFICIENTS[4] * t
    for coefficient in _TAIL_COEFFICIENTS[3:0:-1]:
        series += coefficient
        series *= t
    series += _TAIL_COEFFICIENTS[0]
    series *= t
    gaussian = magnitude * magnitude
    gaussian *= np.float32(-0.5)
    np.exp(gaussian, out=gaussian)
    series *= gaussian
    return series


def _normal_cdf_block(h: np.ndarray) -> np.ndarray:
    """Standard normal CDF of a 1-D float32 block: Phi(h) = 1/2 + sign(h) (1/2 - Phi(-|h|))."""
    cdf = _normal_tail_block(np.abs(h))
    np.subtract(np.float32(0.5), cdf, out=cdf)
    np.copysign(cdf, h, out=cdf)
    cdf += np.float32(0.5)
    return cdf


def _gelu_block(h: np.ndarray) -> np.ndarray:
    """GELU of a 1-D float32 block: h Phi(h) = max(h, 0) - |h| Phi(-|h|) (NaN at +-inf, where the tail's 0 meets
    |h| = inf: an activation that overflowed is no longer meaningful, and clamping would cost a pass)."""
    magnitude = np.abs(h)
    tail = _normal_tail_block(magnitude)
    tail *= magnitude
    out = np.maximum(h, np.float32(0.0))
    out -= tail
    return out


def _gelu_derivative_block(h: np.ndarray) -> np.ndarray:
    density = np.exp(-0.5 * h * h)
    density *= _INV_SQRT_2PI * h
    density += _normal_cdf_block(h)
    return density


def _gelu(h: np.ndarray) -> np.ndarray:
    """Exact GELU ``h * Phi(h)`` = ``h * (1 + erf(h / sqrt 2)) / 2`` (new array)."""
    return blockwise(_gelu_block, h)


def _gelu_and_cdf(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(GELU(h), Phi(h))``: the forward value and the CDF that :func:`_gelu_derivative_from_cdf` reuses."""
    cdf = blockwise(_normal_cdf_block, h)
    return h * cdf, cdf


def _gelu_derivative_from_cdf(h: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """d GELU / dh = Phi(h) + h * phi(h), given Phi(h) from the forward pass (new array)."""
    density = np.exp(np.float32(-0.5) * h * h)
    density *= _INV_SQRT_2PI * h
    density += cdf
    return density


def _gelu_derivative(h: np.ndarray) -> np.ndarray:
    """d GELU / dh = Phi(h) + h * phi(h) (new array)."""
    return blockwise(_gelu_derivative_block, h)


def _row_means(x: np.ndarray) -> np.ndarray:
    """``(N, C) -> (N,)`` row means as one matrix-vector product: 2-3x faster than ``x.mean(axis=1)`` at 32-64
    channels, where numpy's reduction over a short contiguous axis pays its set-up cost per row."""
    return x @ np.full(x.shape[1], 1.0 / x.shape[1], dtype=x.dtype)


def normalise_rows(x: np.ndarray, eps: float):
    """LayerNorm without affine of the rows of ``x (N, C)`` float32: ``(x - mean) / sqrt(var + eps)`` (biased
    variance); returns ``(x_hat (N, C), rstd (N, 1))``."""
    centred = x - _row_means(x)[:, None]
    rstd = (1.0 / np.sqrt(_row_means(centred * centred) + np.float32(eps)))[:, None]
    centred *= rstd
    return centred, rstd


def normalise_rows_backward(grad_x_hat: np.ndarray, x_hat: np.ndarray, rstd: np.ndarray):
    """Input gradient ``(N, C)`` of :func:`normalise_rows` given the gradient w.r.t. ``x_hat``."""
    mean_grad = _row_means(grad_x_hat)[:, None]
    mean_projection = _row_means(grad_x_hat * x_hat)[:, None]
    return rstd * (grad_x_hat - mean_grad - x_hat * mean_projection)


def _silu_derivative(y: np.ndarray) -> np.ndarray:
    """d SiLU / dy = sigmoid(y) * (1 + y * (1 - sigmoid(y)))."""
    sigmoid = 1.0 / (1.0 + np.exp(-y))
    return sigmoid * (1.0 + y * (1.0 - sigmoid))


def _group_values_per_channel(values: np.ndarray, per_group: int) -> np.ndarray:
    """``(B, groups)`` -> ``(B, 1, C)``: each channel gets its group's value (channels of a group are adjacent)."""
    return np.repeat(values, per_group, axis=1)[:, None, :]


def _group_means(per_channel_sums: np.ndarray, per_group: int, count) -> np.ndarray:
    """``(B, C)`` per-channel sums -> ``(B, groups)`` means over the ``count`` values of each group (channels of a
    group are adjacent)."""
    batch, channels = per_channel_sums.shape
    return per_channel_sums.reshape(batch, channels // per_group, per_group).sum(axis=-1) / count


def _group_norm_silu(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int, eps: float):
    """SiLU(GroupNorm(x)) of channels-last ``x (B, ..., C)``; returns (output, x_hat grouped, rstd, y).

    ``x_hat`` is ``(B, N, groups, C/groups)`` and ``rstd`` ``(B, 1, groups, 1)``, as
    :func:`_group_norm_silu_backward` takes them. The group statistics come from per-channel sums over the
    contiguous row axis (a reduction over the strided axes (1, 3) of the grouped view was 9x slower at two
    channels per group).
    """
    batch, channels = x.shape[0], x.shape[-1]
    per_group = channels // groups
    rows = x.reshape(batch, -1, channels)
    count = np.float32(rows.shape[1] * per_group)
    mean = _group_means(rows.sum(axis=1), per_group, count)
    x_hat = rows - _group_values_per_channel(mean, per_group)
    variance = _group_means(np.einsum("bnc,bnc->bc", x_hat, x_hat), per_group, count)
    rstd = np.float32(1.0) / np.sqrt(variance + np.float32(eps))
    x_hat *= _group_values_per_channel(rstd, per_group)
    y = (x_hat * gamma + beta).reshape(x.shape)
    out = y / (1.0 + np.exp(-y))
    return out, x_hat.reshape(batch, -1, groups, per_group), rstd[:, None, :, None], y


def _group_norm_silu_backward(grad_out, x_hat, rstd, y, gamma):
    """Gradients (x, gamma, beta) of :func:`_group_norm_silu` for the output gradient ``grad_out``.

    The group means of the normalisation's backward pass come from per-channel sums along the contiguous row axis,
    as in the forward pass (6x faster than reducing the grouped view's strided axes at two channels per group).
    """
    batch, _, groups, per_group = x_hat.shape
    channels = y.shape[-1]
    grad_y = grad_out * _silu_derivative(y)
    flat_grad_y = grad_y.reshape(-1, channels)
    x_hat_rows = x_hat.reshape(batch, -1, channels)
    grad_gamma = np.einsum("nc,nc->c", flat_grad_y, x_hat_rows.reshape(-1, channels))
    grad_beta = flat_grad_y.sum(axis=0)
    grad_x_hat = (grad_y * gamma).reshape(batch, -1, channels)
    count = np.float32(grad_x_hat.shape[1] * per_group)
    mean_grad = _group_means(grad_x_hat.sum(axis=1), per_group, count)
    mean_projection = _group_means(np.einsum("bnc,bnc->bc", grad_x_hat, x_hat_rows), per_group, count)
    grad_x_hat -= _group_values_per_channel(mean_grad, per_group)
    grad_x_hat -= x_hat_rows * _group_values_per_channel(mean_projection, per_group)
    grad_x_hat *= _group_values_per_channel(rstd.reshape(batch, groups), per_group)
    return grad_x_hat.reshape(y.shape), grad_gamma, grad_beta


def _as_arrays(*tensors) -> list[np.ndarray]:
    """numpy views of MindSpore tensors (shared memory, no copy)."""
    return [tensor.asnumpy() for tensor in tensors]


def _as_tensors(arrays) -> tuple:
    """MindSpore tensors sharing the memory of C-contiguous copies (when needed) of numpy arrays."""
    return tuple(Tensor.from_numpy(np.ascontiguousarray(array, dtype=np.float32)) for array in arrays)


class SavedActivations:
    """Forward intermediates the fused kernels keep for their backward pass while a gradient is being recorded.

    A fused kernel's ``bprop`` receives only the inputs and the output, so without this it recomputes its
    forward pass (a third of a training step). Entries are keyed by (kernel, output buffer address) — MindSpore
    hands ``bprop`` a new Tensor over the same buffer — and hold the output array, so the address cannot be
    reused while the entry lives. ``bprop`` removes its entry; entries of forward passes whose backward never
    runs are evicted oldest first beyond ``limit_bytes``, and a missing entry just means recomputation.
    """

    def __init__(self, limit_bytes: int = 2 << 30):
        self.limit_bytes = int(limit_bytes)
        self._entries: collections.OrderedDict = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def recording() -> bool:
        """True while MindSpore records a gradient (``grad`` / ``value_and_grad``) in PYNATIVE mode."""
        return bool(_PYNATIVE_EXECUTOR.grad_flag())

    def keep(self, kernel, out: np.ndarray, saved: tuple) -> None:
        """Store ``saved`` (arrays and scalars) for the call of ``kernel`` that returned ``out``."""
        size = sum(item.nbytes for item in _flatten(saved) if isinstance(item, np.ndarray))
        with self._lock:
            self._entries[(id(kernel), out.ctypes.data)] = (out, saved, size)
            self._bytes += size
            while self._bytes > self.limit_bytes and self._entries:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def take(self, kernel, out: np.ndarray):
        """The intermediates stored for ``kernel``'s call that returned ``out`` (removed), or None."""
        with self._lock:
            entry = self._entries.pop((id(kernel), out.ctypes.data), None)
            if entry is None:
                return None
            self._bytes -= entry[2]
        kept_out, saved, _ = entry
        return saved if kept_out.shape == out.shape else None


def _flatten(items):
    for item in items:
        if isinstance(item, (tuple, list)):
            yield from _flatten(item)
        else:
            yield item


_PYNATIVE_EXECUTOR = ms.common.api._pynative_executor
#: The process-wide store of the fused kernels' forward intermediates.
SAVED_ACTIVATIONS = SavedActivations()


#: Cached all-ones tensors by shape, the inputs :func:`dropout_mask` sends through a dropout layer.
_ONES: dict = {}


def dropout_mask(layer: nn.Dropout, shape: tuple) -> Tensor | None:
    """The scaled keep-mask (float32, 0 or 1/(1-p)) ``layer`` multiplies a ``shape`` input by, or None if inactive.

    The mask is what the layer makes of an all-ones input, so it comes from whatever drives the layer — MindSpore's
    dropout kernel, or the seeded numpy masks :class:`prediff.train.randomness.SeededDropout` installs, which then
    draw the same values in the same order as the composed layers did. Fused kernels take the mask as an input.
    """
    if not layer.training or float(layer.p) == 0.0:
        return None
    shape = tuple(int(n) for n in shape)
    if shape not in _ONES:
        if len(_ONES) > 64:
            _ONES.clear()
        _ONES[shape] = Tensor(np.ones(shape, np.float32))
    return layer(_ONES[shape])


# ----------------------------------------------------------------------------------------------------------
# dense layers and norms


class _AffineFunction(nn.Cell):
    """``x (N, in) @ weight[out, in]^T + bias[out] -> (N, out)`` float32 in numpy/OpenBLAS, with exact backward.

    OpenBLAS sgemm needs about half the CPU time of MindSpore's CPU MatMul for the denoiser's shapes.
    """

    def construct(self, x, weight, bias):
        out = x.asnumpy() @ weight.asnumpy().T
        out += bias.asnumpy()
        return Tensor.from_numpy(out)

    def bprop(self, x, weight, bias, out, dout):
        grad_out = dout.asnumpy()
        weight_np = weight.asnumpy()
        grad_x = Tensor.from_numpy(grad_out @ weight_np)
        if not parameter_gradients_wanted():
            return grad_x, Tensor.from_numpy(np.zeros_like(weight_np)), Tensor.from_numpy(np.zeros_like(bias.asnumpy()))
        return grad_x, Tensor.from_numpy(grad_out.T @ x.asnumpy()), Tensor.from_numpy(grad_out.sum(axis=0))


class _LinearFunction(nn.Cell):
    """``x (N, in) @ weight[out, in]^T -> (N, out)`` float32 in numpy/OpenBLAS, with exact backward."""

    def construct(self, x, weight):
        return Tensor.from_numpy(x.asnumpy() @ weight.asnumpy().T)

    def bprop(self, x, weight, out, dout):
        grad_out = dout.asnumpy()
        weight_np = weight.asnumpy()
        grad_x = Tensor.from_numpy(grad_out @ weight_np)
        if not parameter_gradients_wanted():
            return grad_x, Tensor.from_numpy(np.zeros_like(weight_np))
        return grad_x, Tensor.from_numpy(grad_out.T @ x.asnumpy())


class Linear(nn.Cell):
    """Dense layer on the last axis: ``(..., in_channels) -> (..., out_channels)`` float32.

    Parameters ``weight`` ``[out, in]`` and ``bias`` ``[out]`` (PyTorch order, as in the checkpoints).
    ``init_mode`` is a reference linear init mode (see :func:`linear_init`) or ``"default"`` for the
    framework default U(+-1/sqrt(in)) used by the reference's time-embedding MLP.
    """

    def __init__(self, in_channels: int, out_channels: int, has_bias: bool = True, init_mode: str = "0"):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = Parameter(_zeros((out_channels, in_channels)), name="weight")
        self.bias = Parameter(_zeros((out_channels,)), name="bias") if has_bias else None
        if init_mode == "default":
            self.weight.set_data(_uniform_fan_in((out_channels, in_channels), in_channels))
            if self.bias is not None:
                self.bias.set_data(_uniform_fan_in((out_channels,), in_channels))
        else:
            linear_init(self.weight, self.bias, init_mode)
        self.project = _AffineFunction() if has_bias else _LinearFunction()

    def construct(self, x: Tensor) -> Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_channels)
        out = self.project(rows, self.weight, self.bias) if self.bias is not None else self.project(rows, self.weight)
        return out.reshape(shape[:-1] + (self.out_channels,))


class ExactGELU(nn.Cell):
    """GELU with the exact erf form, ``x * (1 + erf(x / sqrt(2))) / 2``; shape-preserving, float32.

    Evaluated in numpy (:func:`_gelu`, about 5x less CPU than MindSpore's CPU GELU kernel) with an exact
    backward pass ``Phi(x) + x * phi(x)``.
    """

    def construct(self, x):
        return Tensor.from_numpy(_gelu(x.asnumpy()))

    def bprop(self, x, out, dout):
        return (Tensor.from_numpy(_gelu_derivative(x.asnumpy()) * dout.asnumpy()),)


class LayerNorm(nn.Cell):
    """LayerNorm over the last axis (eps 1e-5), parameters ``gamma``, ``beta``. Shape-preserving, float32."""

    def __init__(self, channels: int, eps: float = NORM_EPS):
        super().__init__()
        self.gamma = Parameter(Tensor(np.ones(channels, np.float32)), name="gamma")
        self.beta = Parameter(_zeros((channels,)), name="beta")
        self.norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)

    def construct(self, x: Tensor) -> Tensor:
        return self.norm(x, self.gamma, self.beta)[0]


class GroupNorm(nn.Cell):
    """GroupNorm of a channels-last tensor ``(N, ..., C)``: statistics per sample and channel group.

    Equivalent to ``nn.GroupNorm(num_groups, C)`` applied to the channels-first view (eps 1e-5); parameters
    ``gamma``, ``beta`` of shape ``[C]``.
    """

    def __init__(self, num_groups: int, channels: int, eps: float = NORM_EPS):
        super().__init__()
        if channels % num_groups:
            raise ConfigError(f"GroupNorm: {channels} channels cannot be split into {num_groups} groups")
        self.num_groups = num_groups
        self.channels = channels
        self.eps = eps
        self.gamma = Parameter(Tensor(np.ones(channels, np.float32)), name="gamma")
        self.beta = Parameter(_zeros((channels,)), name="beta")

    def construct(self, x: Tensor) -> Tensor:
        shape = x.shape
        grouped = x.reshape(shape[0], -1, self.num_groups, self.channels // self.num_groups)
        mean = grouped.mean(axis=(1, 3), keep_dims=True)
        centred = grouped - mean
        variance = (centred * centred).mean(axis=(1, 3), keep_dims=True)
        normalised = centred * ops.rsqrt(variance + self.eps)
        return normalised.reshape(shape) * self.gamma + self.beta


class GroupNormSiLU(nn.Cell):
    """``SiLU(GroupNorm(x))`` of channels-last ``x (N, ..., C)`` in numpy, with its exact backward.

    ``construct(x, gamma [C], beta [C]) -> same shape`` float32: the parameters of a :class:`GroupNorm` are passed
    in, so the published parameter names stay on that cell. One step instead of about ten MindSpore kernels
    forward and as many backward.
    """

    def __init__(self, num_groups: int, eps: float = NORM_EPS):
        super().__init__()
        self.num_groups = num_groups
        self.eps = eps

    def construct(self, x, gamma, beta):
        return Tensor.from_numpy(_group_norm_silu(x.asnumpy(), gamma.asnumpy(), beta.asnumpy(), self.num_groups,
                                                  self.eps)[0])

    def bprop(self, x, gamma, beta, out, dout):
        gamma_np = gamma.asnumpy()
        _, x_hat, rstd, y = _group_norm_silu(x.asnumpy(), gamma_np, beta.asnumpy(), self.num_groups, self.eps)
        return _as_tensors(_group_norm_silu_backward(dout.asnumpy(), x_hat, rstd, y, gamma_np))


def res_block_groups(channels: int) -> int:
    """GroupNorm groups of a residual block: 32 when ``channels`` is divisible by 32, else one per channel."""
    return RES_BLOCK_NORM_GROUPS if channels % RES_BLOCK_NORM_GROUPS == 0 else channels


# ----------------------------------------------------------------------------------------------------------
# convolutions as im2col matrix products


_WORKSPACE = threading.local()


def _workspace(shape: tuple) -> np.ndarray:
    """A scratch float32 array of ``shape`` in one buffer per thread, reused by every convolution.

    The patch matrix of a full-size convolution is ~35 MB per sample; allocating it afresh for each of the
    ~36 convolutions of a denoiser forward costs a page fault per 4 kB. Convolutions of one thread run one
    after the other and never keep their patches, so one grow-only buffer per thread suffices (separate
    threads, e.g. two app sessions, get separate buffers).
    """
    size = int(np.prod(shape))
    buffer = getattr(_WORKSPACE, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = _WORKSPACE.buffer = np.empty(size, np.float32)
    return buffer[:size].reshape(shape)


def _spatial_taps(kh: int, kw: int, height: int, width: int):
    """For each spatial tap: (b, c, dh, dw, h0, h1, w0, w1) with [h0:h1, w0:w1] the in-bounds output cells."""
    for b in range(kh):
        dh = b - kh // 2
        for c in range(kw):
            dw = c - kw // 2
            yield b, c, dh, dw, max(0, -dh), min(height, height - dh), max(0, -dw), min(width, width - dw)


def _spatial_patches(x: np.ndarray, kernel: tuple[int, int]) -> np.ndarray:
    """Zero-padded (kh, kw) patches of every frame: ``x (B, T, H, W, C)`` -> workspace view
    ``(B, T, H, W, kh, kw, C)``. Time taps are applied by :func:`_conv_forward` as frame offsets, which keeps the
    patch matrix kT times smaller than a full im2col.
    """
    kh, kw = kernel
    batch, time, height, width, channels = x.shape
    patches = _workspace((batch, time, height, width, kh, kw, channels))
    for b, c, dh, dw, h0, h1, w0, w1 in _spatial_taps(kh, kw, height, width):
        tap = patches[:, :, :, :, b, c, :]
        tap[:, :, h0:h1, w0:w1] = x[:, :, h0 + dh:h1 + dh, w0 + dw:w1 + dw]
        tap[:, :, :h0] = 0.0
        tap[:, :, h1:] = 0.0
        tap[:, :, :, :w0] = 0.0
        tap[:, :, :, w1:] = 0.0
    return patches


def _time_tap_ranges(kt: int, time: int):
    """For each time tap ``a``: ``(a, out_slice, in_slice)``, the output frames it reaches and the input frames
    they read (offset ``a - kt // 2``, zero padding: frames outside ``[0, T)`` contribute nothing)."""
    for a in range(kt):
        offset = a - kt // 2
        first, stop = max(0, -offset), time - max(0, offset)
        if first < stop:
            yield a, slice(first, stop), slice(first + offset, stop + offset)


def _tap_weights(weight: np.ndarray) -> np.ndarray:
    """``[out, in, kT, kH, kW]`` -> ``[kT, out, kH*kW*in]`` matching the (kh, kw, c) patch columns."""
    out_channels, in_channels, kt, kh, kw = weight.shape
    return np.ascontiguousarray(weight.transpose(2, 0, 3, 4, 1)).reshape(kt, out_channels, kh * kw * in_channels)


def _conv_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Stride-1 'same' convolution ``(B, T, H, W, Cin) -> (B, T, H, W, Cout)`` as one GEMM for all time taps.

    The patch rows of all T frames are multiplied by the kT tap matrices side by side (one GEMM with kT * Cout
    columns, several times more efficient than kT narrow ones), then output frame t sums tap a's columns of
    frame t + a - kT // 2 where that frame exists (the zero frames of the padding are never multiplied).
    """
    out_channels, in_channels, kt, kh, kw = weight.shape
    batch, time, height, width, _ = x.shape
    frame = height * width
    out = np.empty((batch, time, frame, out_channels), np.float32)
    taps = _tap_weights(weight)
    if (kt, kh, kw) == (1, 1, 1):
        np.matmul(x.reshape(batch, time * frame, in_channels), taps[0].T, out=out.reshape(batch, -1, out_channels))
        out += bias
    else:
        rows = _spatial_patches(x, (kh, kw)).reshape(batch, time * frame, -1)
        products = np.matmul(rows, taps.reshape(kt * out_channels, -1).T)
        products = products.reshape(batch, time, frame, kt, out_channels)
        np.add(products[:, :, :, kt // 2], bias, out=out)
        for a, out_frames, in_frames in _time_tap_ranges(kt, time):
            if a != kt // 2:
                out[:, out_frames] += products[:, in_frames, :, a]
    return out.reshape(batch, time, height, width, out_channels)


def _conv_input_gradient(weight: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """Input gradient of :func:`_conv_forward`: the 'same' convolution of ``grad_out (B, T, H, W, Cout)`` with the
    kernel flipped in time and space and its channel axes swapped -> ``(B, T, H, W, Cin)``.

    Stride 1 with odd kernels and zero padding makes the transposed convolution itself a 'same' convolution, so
    it reuses the forward GEMMs instead of scattering patch gradients back frame by frame.
    """
    flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1, ::-1].transpose(1, 0, 2, 3, 4))
    return _conv_forward(grad_out, flipped, np.zeros(weight.shape[1], np.float32))


def _conv_weight_gradient(x: np.ndarray, weight_shape: tuple, grad_out: np.ndarray) -> np.ndarray:
    """Weight gradient ``[Cout, Cin, kT, kH, kW]`` of :func:`_conv_forward` for input ``x`` and ``grad_out``."""
    out_channels, in_channels, kt, kh, kw = weight_shape
    batch, time, height, width, _ = x.shape
    frame = height * width
    grad_rows = grad_out.reshape(batch, time * frame, out_channels)
    if (kt, kh, kw) == (1, 1, 1):
        rows = x.reshape(batch * time * frame, in_channels)
        return (grad_rows.reshape(-1, out_channels).T @ rows).reshape(weight_shape)
    rows = _spatial_patches(x, (kh, kw)).reshape(batch, time, frame, -1)
    grad_rows = grad_rows.reshape(batch, time, frame, out_channels)
    grad_taps = np.zeros((kt, out_channels, kh * kw * in_channels), np.float32)
    for a, out_frames, in_frames in _time_tap_ranges(kt, time):
        # (B, Cout, t*F) @ (B, t*F, kh*kw*Cin): one BLAS call per sample inside numpy, summed over the batch
        out_rows = grad_rows[:, out_frames].reshape(batch, -1, out_channels)
        in_rows = rows[:, in_frames].reshape(batch, out_rows.shape[1], -1)
        np.sum(np.matmul(out_rows.transpose(0, 2, 1), in_rows), axis=0, out=grad_taps[a])
    grad_weight = grad_taps.reshape(kt, out_channels, kh, kw, in_channels).transpose(1, 4, 0, 2, 3)
    return np.ascontiguousarray(grad_weight)


def _conv_backward(x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray):
    """Gradients of :func:`_conv_forward` w.r.t. input, weight and bias for the output gradient ``grad_out``.

    Inside :func:`input_gradients_only` the weight and bias gradients are zeros (not computed).
    """
    grad_x = _conv_input_gradient(weight, grad_out)
    if not parameter_gradients_wanted():
        return grad_x, np.zeros_like(weight), np.zeros(weight.shape[0], np.float32)
    grad_bias = grad_out.reshape(-1, weight.shape[0]).sum(axis=0)
    return grad_x, _conv_weight_gradient(x, weight.shape, grad_out), grad_bias


class _SameConvFunction(nn.Cell):
    """Stride-1 'same' 3-D convolution of channels-last data with its own backward pass.

    ``construct(x (B,T,H,W,Cin), weight [Cout,Cin,kT,kH,kW], bias [Cout]) -> (B,T,H,W,Cout)`` float32, odd
    kernel sizes. The heavy work runs in numpy/OpenBLAS (see the module docstring); ``bprop`` returns the
    exact gradients for input, weight and bias, so the layer stays differentiable under ``mindspore.grad``.
    """

    def construct(self, x, weight, bias):
        return Tensor.from_numpy(_conv_forward(x.asnumpy(), weight.asnumpy(), bias.asnumpy()))

    def bprop(self, x, weight, bias, out, dout):
        grad_x, grad_weight, grad_bias = _conv_backward(x.asnumpy(), weight.asnumpy(), dout.asnumpy())
        return Tensor.from_numpy(grad_x), Tensor.from_numpy(grad_weight), Tensor.from_numpy(grad_bias)


class Conv3dSame(nn.Cell):
    """3-D convolution, stride 1, zero 'same' padding, on channels-last sequences.

    ``(B, T, H, W, in_channels) -> (B, T, H, W, out_channels)`` float32. Parameters ``weight``
    ``[out, in, k, k, k]`` (the published Conv3d layout) and ``bias`` ``[out]``. Initialised like the
    reference's conv layers (U(+-1/sqrt(fan_in)) for weight and bias) unless ``zero_init``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, zero_init: bool = False):
        super().__init__()
        shape = (out_channels, in_channels, kernel_size, kernel_size, kernel_size)
        fan_in = in_channels * kernel_size ** 3
        self.weight = Parameter(_zeros(shape) if zero_init else _uniform_fan_in(shape, fan_in), name="weight")
        self.bias = Parameter(_zeros((out_channels,)) if zero_init else _uniform_fan_in((out_channels,), fan_in),
                              name="bias")
        self.convolve = _SameConvFunction()

    def construct(self, x: Tensor) -> Tensor:
        return self.convolve(x, self.weight, self.bias)


class Conv2dSame(nn.Cell):
    """Per-frame 2-D convolution (stride 1, 'same' zero padding) of channels-last sequences.

    ``(B, T, H, W, in_channels) -> (B, T, H, W, out_channels)`` float32; parameters ``weight``
    ``[out, in, k, k]`` (the published Conv2d layout) and ``bias`` ``[out]``. Initialised like the reference's
    conv init mode "0": He-normal (fan_out, gain sqrt(1/3)) weights, U(+-1/sqrt(fan_in)) bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        initializer = ms.common.initializer
        self.weight = Parameter(
            _init(initializer.HeNormal(negative_slope=math.sqrt(5), mode="fan_out", nonlinearity="relu"), shape),
            name="weight")
        self.bias = Parameter(_uniform_fan_in((out_channels,), in_channels * kernel_size ** 2), name="bias")
        self.convolve = _SameConvFunction()

    def construct(self, x: Tensor) -> Tensor:
        return self.convolve(x, self.weight.expand_dims(2), self.bias)


# ----------------------------------------------------------------------------------------------------------
# residual block with timestep embedding


class BatchSplitKernel:
    """Mixin of the fused numpy kernels: ``_run`` and ``_gradients`` split the batch over the cores.

    A kernel defines ``_forward(arrays, *masks, keep=True) -> (out, saved)`` and
    ``_backward(arrays, *masks, grad_out, saved) -> [gradient of each array]``, where ``arrays`` are its inputs
    (those listed in ``batched_inputs`` per sample along axis 0, the others weights) and ``masks`` its dropout
    keep-masks (per sample, or None). Samples never interact inside a kernel, so both passes run as shares of
    the batch on the cores (:mod:`prediff.models.threads`) with identical results; while MindSpore records a
    gradient, the shares' intermediates are kept for ``bprop`` in :data:`SAVED_ACTIVATIONS`.
    """

    #: Indices of the per-sample inputs among the kernel's arrays.
    batched_inputs: tuple[int, ...] = (0,)

    def _split(self, arrays, masks):
        count = len(arrays)
        inputs = list(arrays) + list(masks)
        return count, inputs, tuple(self.batched_inputs) + tuple(range(count, len(inputs)))

    def _run(self, arrays, masks):
        count, inputs, batched = self._split(arrays, masks)
        if not SavedActivations.recording():
            return Tensor.from_numpy(batch_parallel(
                lambda share: self._forward(share[:count], *share[count:], keep=False)[0], inputs, batched))
        out, shares = forward_shares(lambda share: self._forward(share[:count], *share[count:]), inputs, batched)
        SAVED_ACTIVATIONS.keep(self, out, shares)
        return Tensor.from_numpy(out)

    def _gradients(self, arrays, masks, out, dout):
        count, inputs, batched = self._split(arrays, masks)
        shares = SAVED_ACTIVATIONS.take(self, out.asnumpy())
        if shares is None:
            _, shares = forward_shares(lambda share: self._forward(share[:count], *share[count:]), inputs, batched)

        # the gradient mode is per thread: carry the caller's into the workers
        mode = contextlib.nullcontext if parameter_gradients_wanted() else input_gradients_only

        def backward(share, grad_out, saved):
            with mode():
                return self._backward(share[:count], *share[count:], grad_out, saved) + [None] * len(masks)

        return backward_shares(backward, inputs, batched, dout.asnumpy(), shares)[:count]


class _FusedResBlockFunction(BatchSplitKernel, nn.Cell):
    """The residual branch of :class:`TimeEmbedResBlock` plus the skip, in numpy, with an exact backward.

    ``construct(x, skip, emb_out (B, Cout), gamma1, beta1, weight1, bias1, gamma2, beta2, weight2, bias2)``
    returns ``skip + Conv(SiLU(GN2(Conv(SiLU(GN1(x))) + emb_out)))``, channels-last ``(B, T, H, W, C)``.
    """

    batched_inputs = (0, 1, 2)

    def __init__(self, groups_in: int, groups_out: int, eps: float = NORM_EPS):
        super().__init__()
        self.groups_in = groups_in
        self.groups_out = groups_out
        self.eps = eps

    def _forward(self, arrays, mask, keep=True):
        """Output and the intermediates its backward pass needs (all of them, whatever ``keep``)."""
        x, skip, emb_out, gamma1, beta1, weight1, bias1, gamma2, beta2, weight2, bias2 = arrays
        first = _group_norm_silu(x, gamma1, beta1, self.groups_in, self.eps)
        hidden = _conv_forward(first[0], weight1, bias1)
        hidden += emb_out[:, None, None, None, :]
        second = _group_norm_silu(hidden, gamma2, beta2, self.groups_out, self.eps)
        activated = second[0] if mask is None else second[0] * mask
        out = _conv_forward(activated, weight2, bias2)
        out += skip
        return out, (first, second, activated)

    def _backward(self, arrays, mask, grad_out, saved):
        x, _, _, gamma1, _, weight1, _, gamma2, _, weight2, _ = arrays
        first, second, activated = saved
        grad_activated, grad_weight2, grad_bias2 = _conv_backward(activated, weight2, grad_out)
        if mask is not None:
            grad_activated *= mask
        grad_hidden, grad_gamma2, grad_beta2 = _group_norm_silu_backward(grad_activated, *second[1:], gamma2)
        grad_first, grad_weight1, grad_bias1 = _conv_backward(first[0], weight1, grad_hidden)
        grad_x, grad_gamma1, grad_beta1 = _group_norm_silu_backward(grad_first, *first[1:], gamma1)
        grad_emb = grad_hidden.reshape(grad_hidden.shape[0], -1, grad_hidden.shape[-1]).sum(axis=1)
        return [grad_x, grad_out, grad_emb, grad_gamma1, grad_beta1, grad_weight1, grad_bias1, grad_gamma2,
                grad_beta2, grad_weight2, grad_bias2]

    def construct(self, x, skip, emb_out, gamma1, beta1, weight1, bias1, gamma2, beta2, weight2, bias2):
        return self._run(_as_arrays(x, skip, emb_out, gamma1, beta1, weight1, bias1, gamma2, beta2, weight2, bias2),
                         (None,))

    def bprop(self, x, skip, emb_out, gamma1, beta1, weight1, bias1, gamma2, beta2, weight2, bias2, out, dout):
        arrays = _as_arrays(x, skip, emb_out, gamma1, beta1, weight1, bias1, gamma2, beta2, weight2, bias2)
        return _as_tensors(self._gradients(arrays, (None,), out, dout))


class _FusedResBlockDropoutFunction(_FusedResBlockFunction):
    """:class:`_FusedResBlockFunction` with dropout before the second convolution (training).

    One more input, ``mask (B, T, H, W, Cout)``: the scaled keep-mask (0 or 1/(1-p)) from :func:`dropout_mask`;
    it gets a zero gradient.
    """

    def construct(self, x, skip, emb_out, gamma1, beta1, weight1, bias1, gamma2, beta2, weight2, bias2, mask):
        return self._run(_as_arrays(x, skip, emb_out, gamma1, beta1, weight1, bias1, gamma2, beta2, weight2, bias2),
                         (mask.asnumpy(),))

    def bprop(self, x, skip, emb_out, gamma1, beta1, weight1, bias1, gamma2, beta2, weight2, bias2, mask, out,
              dout):
        arrays = _as_arrays(x, skip, emb_out, gamma1, beta1, weight1, bias1, gamma2, beta2, weight2, bias2)
        mask_np = mask.asnumpy()
        return _as_tensors(self._gradients(arrays, (mask_np,), out, dout) + [np.zeros_like(mask_np)])


class TimeEmbedResBlock(nn.Cell):
    """Residual block of 3x3x3 convolutions, optionally conditioned on the diffusion-timestep embedding.

    ``x (B, T, H, W, channels)`` [, ``emb (B, emb_channels)``] ``-> (B, T, H, W, out_channels)`` float32::

        h = Conv3d(SiLU(GroupNorm(x)))            in_layers.{0,2}
        h = h + Dense(SiLU(emb))                  emb_layers.1      (broadcast over T, H, W; if use_embed)
        h = Conv3d(Dropout(SiLU(GroupNorm(h))))   out_layers.{0,3}  (zero-initialised conv)
        return skip(x) + h                        skip_connection: 1x1x1 conv if widths differ, else identity

    GroupNorm uses 32 groups, or one group per channel when the width is not divisible by 32 (65 = 64 latent
    channels + the observation indicator in the denoiser's first block). The branch runs as one fused numpy
    step; with active dropout (training) the dropout layer's mask is an input of that step.
    """

    def __init__(self, channels: int, out_channels: int | None = None, emb_channels: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        out_channels = out_channels or channels
        self.out_channels = out_channels
        self.use_embed = emb_channels is not None
        self.in_layers = nn.SequentialCell([
            GroupNorm(res_block_groups(channels), channels),
            nn.SiLU(),
            Conv3dSame(channels, out_channels, 3),
        ])
        if self.use_embed:
            self.emb_layers = nn.SequentialCell([nn.SiLU(), Linear(emb_channels, out_channels, init_mode="0")])
        self.out_layers = nn.SequentialCell([
            GroupNorm(res_block_groups(out_channels), out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            Conv3dSame(out_channels, out_channels, 3, zero_init=True),
        ])
        self.skip_connection = Conv3dSame(channels, out_channels, 1) if out_channels != channels else None
        self.fused = _FusedResBlockFunction(res_block_groups(channels), res_block_groups(out_channels))
        self.fused_dropout = _FusedResBlockDropoutFunction(res_block_groups(channels), res_block_groups(out_channels))

    def construct(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        skip = x if self.skip_connection is None else self.skip_connection(x)
        if self.use_embed:
            emb_out = self.emb_layers(emb)
        else:
            emb_out = ops.zeros((x.shape[0], self.out_channels), ms.float32)
        norm_in, conv_in = self.in_layers[0], self.in_layers[2]
        norm_out, conv_out = self.out_layers[0], self.out_layers[3]
        arguments = (x, skip, emb_out, norm_in.gamma, norm_in.beta, conv_in.weight, conv_in.bias, norm_out.gamma,
                     norm_out.beta, conv_out.weight, conv_out.bias)
        mask = dropout_mask(self.out_layers[2], x.shape[:-1] + (self.out_channels,))
        if mask is None:
            return self.fused(*arguments)
        return self.fused_dropout(*arguments, mask)

    def composed(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        """The same block from its individual layers (MindSpore autodiff): the reference the fused kernels are
        tested against. Same inputs and output as ``construct``."""
        skip = x if self.skip_connection is None else self.skip_connection(x)
        h = self.in_layers(x)
        if self.use_embed:
            h = h + self.emb_layers(emb)[:, None, None, None, :]
        return skip + self.out_layers(h)


# ----------------------------------------------------------------------------------------------------------
# positional embedding, feed-forward, patch merging, upsampling


class PosEmbed(nn.Cell):
    """Learned positional embedding: separate T, H, W tables, summed and added to ``(B, T, H, W, C)``.

    Parameters ``t_embed.embedding_table`` ``[max_t, C]`` (likewise ``h_embed``, ``w_embed``), initialised
    with a truncated normal (sigma 0.02).
    """

    def __init__(self, embed_dim: int, max_t: int, max_h: int, max_w: int):
        super().__init__()
        self.embed_dim = embed_dim
        sigma = ms.common.initializer.TruncatedNormal(sigma=0.02)
        self.t_embed = nn.Embedding(max_t, embed_dim, embedding_table=_init(sigma, (max_t, embed_dim)))
        self.h_embed = nn.Embedding(max_h, embed_dim, embedding_table=_init(sigma, (max_h, embed_dim)))
        self.w_embed = nn.Embedding(max_w, embed_dim, embedding_table=_init(sigma, (max_w, embed_dim)))

        self.add_embedding = _PosEmbedFunction()

    def construct(self, x: Tensor) -> Tensor:
        return self.add_embedding(x, self.t_embed.embedding_table, self.h_embed.embedding_table,
                                  self.w_embed.embedding_table)


class _PosEmbedFunction(nn.Cell):
    """``x (B, T, H, W, C) + t_table[:T] + h_table[:H] + w_table[:W]`` (broadcast over the other axes) in numpy,
    with its exact backward: one step instead of seven MindSpore slicing, reshape and add kernels."""

    def construct(self, x, t_table, h_table, w_table):
        x_np = x.asnumpy()
        _, time, height, width, _ = x_np.shape
        out = x_np + t_table.asnumpy()[:time, None, None]
        out += h_table.asnumpy()[None, :height, None]
        out += w_table.asnumpy()[None, None, :width]
        return Tensor.from_numpy(out)

    def bprop(self, x, t_table, h_table, w_table, out, dout):
        grad = dout.asnumpy()
        grads = [grad]
        for axis, table in ((1, t_table), (2, h_table), (3, w_table)):
            table_grad = np.zeros(table.shape, np.float32)
            other = tuple(a for a in range(4) if a != axis)
            table_grad[:grad.shape[axis]] = grad.sum(axis=other)
            grads.append(table_grad)
        return _as_tensors(grads)


def activation_layer(name: str) -> nn.Cell:
    """The FFN activation by the reference's name: ``gelu`` (exact, erf), ``relu`` or ``leaky`` (slope 0.1)."""
    if name == "gelu":
        return ExactGELU()
    if name == "relu":
        return nn.ReLU()
    if name == "leaky":
        return nn.LeakyReLU(0.1)
    raise ConfigError(f"ffn_activation={name!r} is not supported; use 'gelu', 'relu' or 'leaky'")


class _FFNActivation(NamedTuple):
    """An FFN activation for the fused kernels: ``forward(h, keep) -> (a(h), saved)`` and
    ``derivative(h, saved) -> a'(h)``, where ``saved`` is what the forward pass can hand the derivative (or None)."""

    forward: Callable
    derivative: Callable


def _gelu_forward(h: np.ndarray, keep: bool):
    return _gelu_and_cdf(h) if keep else (_gelu(h), None)


def _gelu_derivative_saved(h: np.ndarray, cdf: np.ndarray | None) -> np.ndarray:
    return _gelu_derivative(h) if cdf is None else _gelu_derivative_from_cdf(h, cdf)


def _leaky_forward(h: np.ndarray, keep: bool, slope: np.float32 = np.float32(0.1)):
    return np.where(h > 0, h, slope * h), None


#: The fused FFN kernels' activations, by the reference's ``ffn_activation`` names (leaky slope 0.1 as in
#: :func:`activation_layer`). ReLU costs one pass over the hidden layer; the exact GELU about twenty.
FFN_ACTIVATIONS = {
    "gelu": _FFNActivation(_gelu_forward, _gelu_derivative_saved),
    "relu": _FFNActivation(lambda h, keep: (np.maximum(h, np.float32(0.0)), None),
                           lambda h, saved: (h > 0).astype(np.float32)),
    "leaky": _FFNActivation(_leaky_forward, lambda h, saved: np.where(h > 0, np.float32(1.0), np.float32(0.1))),
}


#: Hidden values per row chunk of the fused FFN in inference: 1 MB of float32, which fits the 1 MB L2 cache of a
#: core here (measured: 8-member demo denoiser FFN layers 14 % and 27 % faster at its two widths than unchunked).
FFN_CHUNK_HIDDEN_ELEMENTS = 1 << 18


class _FusedFFNFunction(BatchSplitKernel, nn.Cell):
    """``x + Dense2(act(Dense1(LayerNorm(x))))`` of ``x (N, C)`` in numpy, with an exact backward pass.

    Inputs: ``x``, LayerNorm ``gamma``/``beta``, ``weight1 [4C, C]``, ``bias1``, ``weight2 [C, 4C]``, ``bias2``.
    One numpy pass per step instead of a MindSpore kernel launch (and its copies) per step. ``activation``: a key
    of :data:`FFN_ACTIVATIONS`.
    """

    def __init__(self, activation: str = "gelu", eps: float = NORM_EPS):
        super().__init__()
        self.activation = FFN_ACTIVATIONS[activation]
        self.eps = eps

    def _forward(self, arrays, hidden_mask, out_mask, keep=True):
        """Output and the intermediates its backward pass needs (``keep``); without ``keep`` (inference) the
        LayerNorm's gamma and beta are folded into the first dense layer (``W1 diag(gamma)``, ``b1 + W1 beta``),
        the rows run in chunks of :data:`FFN_CHUNK_HIDDEN_ELEMENTS` hidden values, so the hidden layer stays in
        the core's cache between its passes, and nothing is kept."""
        if keep:
            return self._forward_rows(arrays, hidden_mask, out_mask, keep=True)
        x, gamma, beta, weight1, bias1, weight2, bias2 = arrays
        folded = [None, None, weight1 * gamma, bias1 + weight1 @ beta, weight2, bias2]
        out = np.empty_like(x)
        step = max(1, FFN_CHUNK_HIDDEN_ELEMENTS // weight1.shape[0])
        for start in range(0, x.shape[0], step):
            part = slice(start, start + step)
            out[part] = self._forward_rows([x[part]] + folded,
                                           None if hidden_mask is None else hidden_mask[part],
                                           None if out_mask is None else out_mask[part], keep=False)[0]
        return out, None

    def _forward_rows(self, arrays, hidden_mask, out_mask, keep):
        """The layer on rows ``x (n, C)``; ``gamma`` and ``beta`` None: already folded into ``weight1``/``bias1``."""
        x, gamma, beta, weight1, bias1, weight2, bias2 = arrays
        x_hat, rstd = normalise_rows(x, self.eps)
        normed = x_hat if gamma is None else x_hat * gamma + beta
        hidden = normed @ weight1.T
        hidden += bias1
        activated, derivative_saved = self.activation.forward(hidden, keep)
        if hidden_mask is not None:
            activated *= hidden_mask
        out = activated @ weight2.T
        out += bias2
        if out_mask is not None:
            out *= out_mask
        out += x
        return out, (x_hat, rstd, normed, hidden, derivative_saved, activated)

    def _backward(self, arrays, hidden_mask, out_mask, grad_out, saved):
        _, gamma, _, weight1, _, weight2, _ = arrays
        x_hat, rstd, normed, hidden, derivative_saved, activated = saved
        grad_projected = grad_out if out_mask is None else grad_out * out_mask
        grad_hidden = grad_projected @ weight2
        if hidden_mask is not None:
            grad_hidden *= hidden_mask
        grad_hidden *= self.activation.derivative(hidden, derivative_saved)
        grad_normed = grad_hidden @ weight1
        grad_x = normalise_rows_backward(grad_normed * gamma, x_hat, rstd)
        grad_x += grad_out
        if not parameter_gradients_wanted():
            return [grad_x] + [np.zeros_like(array) for array in arrays[1:]]
        grad_gamma = np.einsum("nc,nc->c", grad_normed, x_hat)
        return [grad_x, grad_gamma, grad_normed.sum(axis=0), grad_hidden.T @ normed, grad_hidden.sum(axis=0),
                grad_projected.T @ activated, grad_projected.sum(axis=0)]

    def construct(self, x, gamma, beta, weight1, bias1, weight2, bias2):
        return self._run(_as_arrays(x, gamma, beta, weight1, bias1, weight2, bias2), (None, None))

    def bprop(self, x, gamma, beta, weight1, bias1, weight2, bias2, out, dout):
        arrays = _as_arrays(x, gamma, beta, weight1, bias1, weight2, bias2)
        return _as_tensors(self._gradients(arrays, (None, None), out, dout))


class _FusedFFNDropoutFunction(_FusedFFNFunction):
    """:class:`_FusedFFNFunction` with dropout after the activation and after the second dense layer (training).

    Two more inputs: ``hidden_mask (N, 4C)`` and ``out_mask (N, C)``, scaled keep-masks from :func:`dropout_mask`;
    they get zero gradients.
    """

    def construct(self, x, gamma, beta, weight1, bias1, weight2, bias2, hidden_mask, out_mask):
        return self._run(_as_arrays(x, gamma, beta, weight1, bias1, weight2, bias2),
                         (hidden_mask.asnumpy(), out_mask.asnumpy()))

    def bprop(self, x, gamma, beta, weight1, bias1, weight2, bias2, hidden_mask, out_mask, out, dout):
        arrays = _as_arrays(x, gamma, beta, weight1, bias1, weight2, bias2)
        masks = _as_arrays(hidden_mask, out_mask)
        grads = self._gradients(arrays, masks, out, dout)
        return _as_tensors(grads + [np.zeros_like(mask) for mask in masks])


class PositionwiseFFN(nn.Cell):
    """Pre-norm feed-forward layer with residual: ``x + Dropout(Dense(Dropout(act(Dense(LayerNorm(x))))))``.

    ``(..., units) -> (..., units)`` float32; parameters ``ffn_1`` ``[4u, u]``, ``ffn_2`` ``[u, 4u]``,
    ``layer_norm``. ``ffn_2`` uses ``ffn2_init_mode`` (published "2": zeros, so a fresh layer is the identity).
    The layer runs as one fused numpy step, the dropout layers' masks being inputs of that step when dropout is
    active (training); :meth:`composed` is the same layer from its individual cells.
    """

    def __init__(self, units: int, hidden_size: int, dropout: float, activation: str,
                 init_mode: str = "0", ffn2_init_mode: str = "2"):
        super().__init__()
        self.ffn_1 = Linear(units, hidden_size, init_mode=init_mode)
        self.ffn_2 = Linear(hidden_size, units, init_mode=ffn2_init_mode)
        self.layer_norm = LayerNorm(units)
        self.activation = activation_layer(activation)
        self.activation_dropout = nn.Dropout(p=dropout)
        self.dropout = nn.Dropout(p=dropout)
        self.units = units
        self.hidden_size = hidden_size
        self.fused = _FusedFFNFunction(activation)
        self.fused_dropout = _FusedFFNDropoutFunction(activation)

    def construct(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.units)
        arguments = (rows, self.layer_norm.gamma, self.layer_norm.beta, self.ffn_1.weight, self.ffn_1.bias,
                     self.ffn_2.weight, self.ffn_2.bias)
        count = rows.shape[0]
        hidden_mask = dropout_mask(self.activation_dropout, (count, self.hidden_size))
        out_mask = dropout_mask(self.dropout, (count, self.units))
        if hidden_mask is None and out_mask is None:
            return self.fused(*arguments).reshape(x.shape)
        if hidden_mask is None or out_mask is None:
            ones = Tensor(np.ones((count, self.hidden_size if hidden_mask is None else self.units), np.float32))
            hidden_mask, out_mask = (ones, out_mask) if hidden_mask is None else (hidden_mask, ones)
        return self.fused_dropout(*arguments, hidden_mask, out_mask).reshape(x.shape)

    def composed(self, x: Tensor) -> Tensor:
        """The layer from its individual cells (MindSpore autodiff); same input and output as ``construct``."""
        h = self.activation(self.ffn_1(self.layer_norm(x)))
        h = self.ffn_2(self.activation_dropout(h))
        return self.dropout(h) + x


class PatchMerging3D(nn.Cell):
    """Spatial 2x2 patch merging: ``(B, T, H, W, C) -> (B, T, H/2, W/2, out_dim)`` float32.

    Each 2x2 patch is flattened in (dh, dw, c) order to 4C channels, layer-normalised and projected without
    bias (parameters ``reduction.weight`` ``[out_dim, 4C]``, ``norm.gamma``/``beta`` ``[4C]``).
    """

    def __init__(self, dim: int, out_dim: int, downsample: tuple[int, int, int], init_mode: str = "0"):
        super().__init__()
        if downsample[0] != 1:
            raise ConfigError("temporal downsampling is not supported; use downsample: <int> (spatial only)")
        self.downsample = tuple(downsample)
        merged = downsample[1] * downsample[2] * dim
        self.reduction = Linear(merged, out_dim, has_bias=False, init_mode=init_mode)
        self.norm = LayerNorm(merged)
        self.merge = _PatchMergeFunction(self.downsample)

    def construct(self, x: Tensor) -> Tensor:
        return self.merge(x, self.norm.gamma, self.norm.beta, self.reduction.weight)


class _PatchMergeFunction(nn.Cell):
    """Patch merging in numpy with its exact backward: 2-D patches -> LayerNorm -> bias-free projection.

    ``construct(x (B, T, H, W, C), gamma [4C], beta [4C], weight [out, 4C]) -> (B, T, H/dh, W/dw, out)`` float32,
    patches flattened in (dh, dw, c) order.
    """

    def __init__(self, downsample: tuple[int, int, int], eps: float = NORM_EPS):
        super().__init__()
        self.factors = tuple(downsample[1:])
        self.eps = eps

    def _merged(self, x):
        batch, time, height, width, channels = x.shape
        dh, dw = self.factors
        patches = x.reshape(batch, time, height // dh, dh, width // dw, dw, channels).transpose(0, 1, 2, 4, 3, 5, 6)
        return np.ascontiguousarray(patches).reshape(-1, dh * dw * channels)

    def construct(self, x, gamma, beta, weight):
        x_np = x.asnumpy()
        x_hat, _ = normalise_rows(self._merged(x_np), self.eps)
        x_hat *= gamma.asnumpy()
        x_hat += beta.asnumpy()
        out = x_hat @ weight.asnumpy().T
        batch, time, height, width, _ = x_np.shape
        return Tensor.from_numpy(out.reshape(batch, time, height // self.factors[0], width // self.factors[1], -1))

    def bprop(self, x, gamma, beta, weight, out, dout):
        x_np, gamma_np, weight_np = x.asnumpy(), gamma.asnumpy(), weight.asnumpy()
        x_hat, rstd = normalise_rows(self._merged(x_np), self.eps)
        grad_rows = dout.asnumpy().reshape(-1, weight_np.shape[0])
        grad_normed = grad_rows @ weight_np
        grad_merged = normalise_rows_backward(grad_normed * gamma_np, x_hat, rstd)
        batch, time, height, width, channels = x_np.shape
        dh, dw = self.factors
        grad_x = grad_merged.reshape(batch, time, height // dh, width // dw, dh, dw, channels).transpose(
            0, 1, 2, 4, 3, 5, 6).reshape(x_np.shape)
        if not parameter_gradients_wanted():
            return _as_tensors([grad_x, np.zeros_like(gamma_np), np.zeros_like(gamma_np), np.zeros_like(weight_np)])
        normed = x_hat * gamma_np + beta.asnumpy()
        return _as_tensors([grad_x, np.einsum("nc,nc->c", grad_normed, x_hat), grad_normed.sum(axis=0),
                            grad_rows.T @ normed])


class Upsample3DLayer(nn.Cell):
    """Per-frame nearest-neighbour upsampling to ``target_size`` (H, W) followed by a 2-D 'same' convolution.

    ``(B, T, h, w, dim) -> (B, T, H, W, out_dim)`` float32 with integer factors H/h, W/w; parameters
    ``conv.weight`` ``[out_dim, dim, k, k]``, ``conv.bias``.
    """

    def __init__(self, dim: int, out_dim: int, target_size: tuple[int, int], kernel_size: int = 3):
        super().__init__()
        self.target_size = tuple(target_size)
        self.conv = Conv2dSame(dim, out_dim, kernel_size)
        self.upsample_convolve = _UpsampleConvFunction(self.target_size)

    def construct(self, x: Tensor) -> Tensor:
        return self.upsample_convolve(x, self.conv.weight, self.conv.bias)


def _subpixel_conv_weights(weight: np.ndarray, factors: tuple[int, int]) -> tuple[np.ndarray, int]:
    """The 'same' k x k convolution of a nearest-upsampled map as one matrix on the original grid.

    Output cell ``(f i + p, ...)`` reads upsampled cells ``f i + p + d`` (``|d| <= k // 2``), i.e. source cells
    ``i + (p + d) // f``: per output phase ``p`` the kernel folds onto an ``n x n`` neighbourhood of the source
    cell, ``n = 2 ceil((k // 2) / f) + 1``. Returns ``(matrix [n*n*Cin, fh*fw*Cout], n)``, rows in the
    ``(kh, kw, c)`` order of :func:`_spatial_patches`, columns ``(phase_h, phase_w, c_out)``.
    """
    out_channels, in_channels, k, _ = weight.shape
    radius = k // 2
    fh, fw = factors
    reach = max(-(-radius // fh), -(-radius // fw))
    n = 2 * reach + 1
    folded = np.zeros((n, n, in_channels, fh, fw, out_channels), np.float32)
    taps = weight.transpose(2, 3, 1, 0)  # (kh, kw, Cin, Cout)
    for phase_h in range(fh):
        for dh in range(k):
            row = (phase_h + dh - radius) // fh + reach
            for phase_w in range(fw):
                for dw in range(k):
                    folded[row, (phase_w + dw - radius) // fw + reach, :, phase_h, phase_w] += taps[dh, dw]
    return folded.reshape(n * n * in_channels, fh * fw * out_channels), n


def _upsample_conv_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, factors: tuple[int, int]):
    """Nearest upsampling by ``factors`` then a 'same' 2-D convolution, ``(B, T, h, w, Cin) -> (B, T, fh h, fw w,
    Cout)``, computed on the source grid (:func:`_subpixel_conv_weights`): a patch matrix fh * fw times smaller than
    the upsampled map's and one GEMM with fh * fw times the columns (2.5x faster at the demo denoiser's 8x8 -> 16x16
    layer than convolving the upsampled map)."""
    batch, time, height, width, _ = x.shape
    fh, fw = factors
    matrix, n = _subpixel_conv_weights(weight, factors)
    rows = _spatial_patches(x, (n, n)).reshape(batch * time * height * width, -1)
    products = (rows @ matrix).reshape(batch, time, height, width, fh, fw, weight.shape[0])
    out = products.transpose(0, 1, 2, 4, 3, 5, 6).reshape(batch, time, height * fh, width * fw, weight.shape[0])
    out += bias
    return out


class _UpsampleConvFunction(nn.Cell):
    """Nearest-neighbour upsampling to ``target_size`` then a per-frame 'same' 2-D convolution, in numpy.

    ``construct(x (B, T, h, w, Cin), weight [Cout, Cin, k, k], bias [Cout]) -> (B, T, H, W, Cout)`` float32 with
    its exact backward (the upsampled cells' gradients are summed back onto their source cell). The forward pass
    runs on the source grid (:func:`_upsample_conv_forward`); the backward pass convolves the upsampled map.
    """

    def __init__(self, target_size: tuple[int, int]):
        super().__init__()
        self.target_size = tuple(target_size)

    def _factors(self, x) -> tuple[int, int]:
        """Upsampling factors (fh, fw) of ``x (B, T, h, w, C)`` to ``target_size``."""
        return self.target_size[0] // x.shape[2], self.target_size[1] // x.shape[3]

    def construct(self, x, weight, bias):
        x_np = x.asnumpy()
        return Tensor.from_numpy(_upsample_conv_forward(x_np, weight.asnumpy(), bias.asnumpy(), self._factors(x_np)))

    def bprop(self, x, weight, bias, out, dout):
        x_np, weight_np = x.asnumpy(), weight.asnumpy()
        batch, time, height, width, channels = x_np.shape
        fh, fw = self._factors(x_np)
        wide = np.broadcast_to(x_np[:, :, :, None, :, None], (batch, time, height, fh, width, fw, channels))
        upsampled = wide.reshape(batch, time, height * fh, width * fw, channels)
        grad_up, grad_weight, grad_bias = _conv_backward(upsampled, weight_np[:, :, None], dout.asnumpy())
        grad_x = grad_up.reshape(batch, time, height, fh, width, fw, channels).sum(axis=(3, 5))
        return _as_tensors([grad_x, grad_weight[:, :, 0], grad_bias])
