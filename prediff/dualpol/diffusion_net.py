"""Networks of the conditional diffusion QPE (MindSpore, NCHW float32); see :mod:`prediff.dualpol.diffusion_qpe`.

:class:`ConditionalDenoiser` predicts the noise eps in a noisy rain state x_t given the six ZH / ZDR condition
channels and the timestep embedding. Two resolution levels (width ``w`` at full resolution, ``2 w`` at half),
residual blocks whose first convolution output gets a per-channel bias from the timestep embedding (the usual
DDPM conditioning on t), nearest-neighbour upsampling and one skip connection. Inputs must have an even side.
"""

from __future__ import annotations

from prediff.runtime import mindspore_module

ms = mindspore_module()
nn = ms.nn
ops = ms.ops


class TimeResidualBlock(nn.Cell):
    """``x' + conv(silu(conv(x) + dense(embedding)))``: (N, C_in, H, W), (N, E) -> (N, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, embedding_size: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, pad_mode="same", has_bias=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, pad_mode="same", has_bias=True)
        self.time_bias = nn.Dense(embedding_size, out_channels)
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1, has_bias=True) if in_channels != out_channels
                         else None)
        self.act = nn.SiLU()

    def construct(self, x, embedding):
        skip = x if self.shortcut is None else self.shortcut(x)
        hidden = self.act(self.conv1(x) + self.time_bias(embedding)[:, :, None, None])
        return self.act(skip + self.conv2(hidden))


class ConditionalDenoiser(nn.Cell):
    """eps(x_t, condition, t) for rain states.

    Parameters
    ----------
    condition_channels : number of condition channels (6: ZH and ZDR at 1, 3, 7 km).
    width : channels at full resolution (twice that at half resolution).
    embedding_size : size of the sinusoidal timestep embedding given to :meth:`construct`.

    ``construct(noisy, condition, embedding)``: noisy (N, 1, H, W) state x_t, condition (N, 6, H, W) in [0, 1],
    embedding (N, E) from :func:`prediff.dualpol.diffusion_qpe.timestep_embedding`; returns (N, 1, H, W) eps.
    """

    def __init__(self, condition_channels: int = 6, width: int = 16, embedding_size: int = 32):
        super().__init__()
        self.time_mlp = nn.SequentialCell(nn.Dense(embedding_size, 2 * width), nn.SiLU(),
                                          nn.Dense(2 * width, 2 * width))
        self.encode = TimeResidualBlock(1 + condition_channels, width, 2 * width)
        self.down = nn.MaxPool2d(kernel_size=2, stride=2)
        self.middle = TimeResidualBlock(width, 2 * width, 2 * width)
        self.middle2 = TimeResidualBlock(2 * width, 2 * width, 2 * width)
        self.decode = TimeResidualBlock(3 * width, width, 2 * width)
        self.head = nn.Conv2d(width, 1, 1, has_bias=True)
        self.concat = ops.Concat(axis=1)

    def construct(self, noisy, condition, embedding):
        time = self.time_mlp(embedding)
        skip = self.encode(self.concat((noisy, condition)), time)
        low = self.middle2(self.middle(self.down(skip), time), time)
        height, width = skip.shape[-2], skip.shape[-1]
        up = ops.interpolate(low, size=(height, width), mode="nearest")
        return self.head(self.decode(self.concat((up, skip)), time))
