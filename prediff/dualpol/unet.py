"""Multi-branch residual U-Net for dual-pol ZH nowcasting (MindSpore, NCHW float32).

Architecture:

* **One encoder per variable** (ZH, ZDR, KDP): the branch input stacks the variable's ``n_input`` context frames
  at every input height as channels, normalised to [0, 1] (:func:`prediff.dualpol.reader.normalise`). Each level
  is a residual block (two 3x3 convolutions + ReLU with an identity or 1x1 shortcut); levels are separated by
  2x2 max-pooling, widths ``width * 2^level``.
* **Squeeze-and-excitation fusion** at every level: the branch features are concatenated, re-weighted per
  channel by a squeeze-and-excitation gate (global mean -> dense -> ReLU -> dense -> sigmoid; Hu et al. 2018),
  and projected back to the level width by a 1x1 convolution. The fused features feed the decoder's skips.
* **Decoder**: nearest-neighbour 2x upsampling, concatenation with the fused skip of that level, residual block;
  a 1x1 head outputs ``n_target`` frames of normalised ZH.
* **Residual output**: the head predicts the change from the last context ZH frame at the target height,
  so an untrained network starts from persistence.

The ZH-only variant is the same network with one branch (``variables=("dBZ",)``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from prediff.errors import ConfigError
from prediff.runtime import mindspore_module

ms = mindspore_module()
nn = ms.nn
ops = ms.ops


class ResidualBlock(nn.Cell):
    """``relu(x' + conv(relu(conv(x))))`` with ``x'`` = x or its 1x1 projection; (N, C_in, H, W) -> (N, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, pad_mode="same", has_bias=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, pad_mode="same", has_bias=True)
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1, has_bias=True) if in_channels != out_channels
                         else None)
        self.relu = nn.ReLU()

    def construct(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.relu(skip + self.conv2(self.relu(self.conv1(x))))


class SqueezeExcitationFusion(nn.Cell):
    """Fuse B branch feature maps: concat (N, B*C, H, W) -> SE channel gate -> 1x1 conv -> (N, C, H, W)."""

    def __init__(self, n_branches: int, channels: int, reduction: int):
        super().__init__()
        total = n_branches * channels
        hidden = max(total // reduction, 1)
        self.squeeze = nn.Dense(total, hidden)
        self.excite = nn.Dense(hidden, total)
        self.project = nn.Conv2d(total, channels, 1, has_bias=True)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def construct(self, features):
        x = ops.concat(features, axis=1)
        gate = self.sigmoid(self.excite(self.relu(self.squeeze(x.mean(axis=(2, 3))))))
        return self.project(x * gate[:, :, None, None])


class Encoder(nn.Cell):
    """Residual encoder: (N, C_in, H, W) -> list of ``levels`` maps, level l of shape (N, width 2^l, H/2^l, W/2^l)."""

    def __init__(self, in_channels: int, width: int, levels: int):
        super().__init__()
        widths = [width * 2 ** level for level in range(levels)]
        self.blocks = nn.CellList([ResidualBlock(c_in, c_out)
                                   for c_in, c_out in zip([in_channels] + widths[:-1], widths)])
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def construct(self, x):
        features = []
        for level, block in enumerate(self.blocks):
            if level > 0:
                x = self.pool(x)
            x = block(x)
            features.append(x)
        return features


class DualPolUNet(nn.Cell):
    """Multi-branch residual U-Net: normalised dual-pol context -> normalised ZH at the target lead times.

    Parameters
    ----------
    variables : branch variables in input order, e.g. ``("dBZ", "ZDR", "KDP")`` or ``("dBZ",)``.
    channels_per_branch : input channels of each branch (``n_input * n_heights``).
    n_target : output frames.
    last_frame_channel : channel index, within the dBZ branch, of the last context frame at the target height
        (the base the residual output is added to).
    width : channels of the first level; levels : number of resolution levels (H and W divisible by 2^(levels-1)).
    se_reduction : squeeze-and-excitation reduction ratio.

    Inputs: (N, len(variables) * channels_per_branch, H, W) float32 in [0, 1], branches concatenated in order.
    Output: (N, n_target, H, W) float32, normalised ZH (not clipped).
    """

    def __init__(self, variables: Sequence[str], channels_per_branch: int, n_target: int, last_frame_channel: int,
                 width: int = 8, levels: int = 3, se_reduction: int = 4):
        super().__init__()
        self.variables = tuple(variables)
        if "dBZ" not in self.variables:
            raise ConfigError(f"the network nowcasts ZH, so 'dBZ' must be one of its variables, got {variables}")
        if width < 1 or levels < 1 or not 0 <= last_frame_channel < channels_per_branch:
            raise ConfigError(f"invalid U-Net size: width {width}, levels {levels}, last frame channel "
                              f"{last_frame_channel} of {channels_per_branch}")
        self.channels_per_branch = int(channels_per_branch)
        self.levels = int(levels)
        self.base_channel = self.variables.index("dBZ") * self.channels_per_branch + int(last_frame_channel)
        self.encoders = nn.CellList([Encoder(self.channels_per_branch, width, levels) for _ in self.variables])
        self.fusions = nn.CellList([SqueezeExcitationFusion(len(self.variables), width * 2 ** level, se_reduction)
                                    for level in range(levels)])
        self.decoders = nn.CellList([ResidualBlock(width * 2 ** (level + 1) + width * 2 ** level, width * 2 ** level)
                                     for level in range(levels - 1)])
        self.head = nn.Conv2d(width, n_target, 1, has_bias=True)

    def construct(self, x):
        per_branch = [encoder(x[:, b * self.channels_per_branch:(b + 1) * self.channels_per_branch])
                      for b, encoder in enumerate(self.encoders)]
        fused = [fusion([features[level] for features in per_branch]) for level, fusion in enumerate(self.fusions)]
        y = fused[-1]
        for level in range(self.levels - 2, -1, -1):
            y = ops.interpolate(y, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)
            y = self.decoders[level](ops.concat([y, fused[level]], axis=1))
        base = x[:, self.base_channel:self.base_channel + 1]
        return base + self.head(y)


def check_grid(size: int, levels: int) -> None:
    """Raise ConfigError unless an image side ``size`` is divisible by ``2^(levels-1)``."""
    factor = 2 ** (levels - 1)
    if size % factor:
        raise ConfigError(f"image side {size} is not divisible by {factor} (2^(levels-1)); crop the grid or "
                          "use fewer levels")


def count_parameters(net: nn.Cell) -> int:
    """Number of trainable scalars."""
    return int(sum(np.prod(p.shape) for p in net.trainable_params()))
