"""Reproducible randomness for training: every random draw is a function of (seed, step, worker).

MindSpore's ``nn.Dropout`` keeps its random state inside the kernel, where neither ``set_seed`` nor
``set_rng_state`` reaches it (tried on 2.7.2): a resumed process would draw other dropout masks than the
uninterrupted one. :class:`SeededDropout` therefore replaces the ``construct`` of every ``nn.Dropout`` of the
trained networks with a numpy-drawn mask from a generator re-seeded at each step from (seed, step, rank); in
evaluation mode the layers stay the identity, exactly as before.

The loop's other draws (diffusion timesteps, noise, posterior samples) come from one ``numpy.random.Generator``
whose state is saved in the training-state file.
"""

from __future__ import annotations

import types

import numpy as np

from prediff.runtime import mindspore_module

ms = mindspore_module()

#: Separates the dropout stream from other streams derived from the same seed.
_DROPOUT_STREAM = 0xD40F


class SeededDropout:
    """Dropout masks drawn from ``default_rng([seed, step, rank, stream])`` for every attached network.

    Parameters
    ----------
    seed : run seed.
    rank : worker index (each worker drops different units).
    """

    def __init__(self, seed: int, rank: int = 0):
        self.seed = int(seed)
        self.rank = int(rank)
        self.generator = np.random.default_rng([self.seed, 0, self.rank, _DROPOUT_STREAM])

    def begin_step(self, step: int) -> None:
        """Re-seed for optimiser step ``step`` (call before the step's forward pass)."""
        self.generator = np.random.default_rng([self.seed, int(step), self.rank, _DROPOUT_STREAM])

    def attach(self, network) -> int:
        """Route every ``nn.Dropout`` inside ``network`` through this object; returns how many were found."""
        source = self
        count = 0

        def construct(layer, x):
            if not layer.training or layer.p == 0:
                return x
            keep = 1.0 - float(layer.p)
            mask = (source.generator.random(tuple(x.shape)) < keep).astype(np.float32) / np.float32(keep)
            return x * ms.Tensor(mask)

        for _, cell in network.cells_and_names():
            if isinstance(cell, ms.nn.Dropout):
                cell.construct = types.MethodType(construct, cell)
                count += 1
        return count


def generator_state(generator: np.random.Generator) -> dict:
    """The JSON-serialisable state of a numpy Generator."""
    return generator.bit_generator.state


def restore_generator(state: dict) -> np.random.Generator:
    """A Generator continuing exactly from :func:`generator_state`."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
