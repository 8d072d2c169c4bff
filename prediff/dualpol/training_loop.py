"""The Adam loop shared by the dual-pol networks (nowcaster, diffusion denoiser, ensemble merge).

Each trainer builds its network after seeding MindSpore, then hands :func:`fit_adam` a loss function of MindSpore
tensors and a batch drawer. The batch drawer owns the trainer's numpy generator, so the sequence of batches (and
hence the checkpoint) is fixed by the trainer's seed on one device and thread count.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np


def fit_adam(network, loss_fn: Callable, next_batch: Callable[[int], Sequence[np.ndarray]], steps: int,
             learning_rate: float, log: Callable[[str], None] = print, log_every: int = 25,
             label: str = "step", loss_name: str = "loss",
             on_log: Callable[[int], None] | None = None, on_step: Callable[[int], None] | None = None,
             compile_graph: bool = False) -> list[tuple[int, float]]:
    """Minimise ``loss_fn`` over ``network``'s trainable parameters with Adam, one batch per step.

    Parameters
    ----------
    network : MindSpore ``nn.Cell``; set to training mode during the loop and to inference mode after it.
    loss_fn : ``loss_fn(*tensors) -> scalar tensor``, called with the arrays of one batch as float32 tensors.
    next_batch : ``next_batch(step) -> arrays`` (float32 numpy) of step ``step`` (1-based).
    steps, learning_rate : number of Adam steps and its learning rate.
    log, log_every, label, loss_name : progress lines ``"<label> 25/400  <loss_name> 0.01234  (12 s)"``.
    on_log : called with the step number after each progress line (e.g. to save a snapshot of the weights).
    on_step : called with the step number after every step (e.g. to validate every so many steps); the network
        is in training mode again when it returns.
    compile_graph : compile loss and gradient into one graph (``mindspore.jit``); ``loss_fn`` must then be a
        Cell made of MindSpore operations. Same losses as PYNATIVE, ~2.7x faster for the nowcaster.

    Returns
    -------
    history: list of (step, mean loss over the steps since the previous entry), one entry every ``log_every``
    steps and one at the last step.
    """
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    optimizer = ms.nn.Adam(network.trainable_params(), learning_rate=learning_rate)
    gradient_fn = ms.value_and_grad(loss_fn, None, optimizer.parameters)
    if compile_graph:
        gradient_fn = ms.jit(gradient_fn)
    history, recent, started = [], [], time.time()
    network.set_train(True)
    for step in range(1, int(steps) + 1):
        loss, gradients = gradient_fn(*(ms.Tensor(np.asarray(a, dtype=np.float32)) for a in next_batch(step)))
        optimizer(gradients)
        recent.append(float(loss))
        if step % log_every == 0 or step == steps:
            history.append((step, float(np.mean(recent))))
            log(f"{label} {step}/{steps}  {loss_name} {np.mean(recent):.5f}  ({time.time() - started:.0f} s)")
            recent = []
            if on_log is not None:
                on_log(step)
        if on_step is not None:
            on_step(step)
            network.set_train(True)
    network.set_train(False)
    return history


def masked_mean_square(ms, error, valid):
    """``sum(error^2 valid) / max(sum(valid), 1)``: the MSE over the valid entries (MindSpore tensors, any shape).

    ``valid`` is a 0/1 mask or, more generally, non-negative weights (0 = left out); with weights of at least 1
    the result is the weighted mean of the squared error.
    """
    return ((error ** 2) * valid).sum() / ms.ops.maximum(valid.sum(), ms.Tensor(1.0, ms.float32))


def weighted_square_loss(network):
    """``masked_mean_square(network(x) - y, weights)`` as a Cell, so :func:`fit_adam` can compile it.

    The Cell's ``construct(x, y, weights)`` takes the network's input, its target (same shape as its output,
    missing values zero-filled) and the per-entry weights (0 = left out). (A factory, so that importing this module
    does not import MindSpore: the app's process must not.)
    """
    from prediff.runtime import mindspore_module

    ms = mindspore_module()

    class WeightedSquareLoss(ms.nn.Cell):
        def __init__(self):
            super().__init__()
            self.network = network

        def construct(self, x, y, weights):
            return masked_mean_square(ms, self.network(x) - y, weights)

    return WeightedSquareLoss()
