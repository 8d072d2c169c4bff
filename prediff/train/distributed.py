"""Data-parallel training over several processes started by MindSpore's launcher ``msrun``.

``msrun --worker_num=2 --local_worker_num=2 --master_port=P --log_dir=D $(which prediff) train ...`` starts one
process per worker with ``MS_ROLE=MS_WORKER`` and ``MS_WORKER_NUM`` set; :func:`setup_workers` then joins the
collective group (``mindspore.communication.init``, which on CPU uses MindSpore's own TCP collectives) and
selects ``DATA_PARALLEL``. The training loop relies on four rules:

* identical initial weights: every worker seeds MindSpore's initialisers with the run seed before building;
* sharded data: worker r takes every W-th item of the global shuffled batch (:func:`prediff.train.data.shard`);
* gradients averaged over workers (``nn.DistributedGradReducer(mean=True)``) before clipping and the update,
  so all workers apply the same update to the same weights;
* only worker 0 writes checkpoints, the training state, the CSV logs and the progress bar.

A plain ``prediff train`` (no ``msrun``) is one worker and touches no collective code.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from prediff.runtime import mindspore_module

ms = mindspore_module()


@dataclasses.dataclass(frozen=True)
class Workers:
    """The process group of a training run.

    Attributes
    ----------
    rank : this worker's index, 0 ... world - 1.
    world : number of workers (1 without ``msrun``).
    """

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """True on worker 0, the one that writes files and logs."""
        return self.rank == 0

    def grad_reducer(self, parameters):
        """``nn.DistributedGradReducer`` averaging gradients of ``parameters`` over the workers (None if alone)."""
        if self.world == 1:
            return None
        return ms.nn.DistributedGradReducer(parameters, mean=True, degree=self.world)

    def mean(self, value: float) -> float:
        """The average of a scalar over all workers (the value itself when alone)."""
        if self.world == 1:
            return float(value)
        total = ms.ops.AllReduce()(ms.Tensor(np.array([value], np.float32)))
        return float(total.asnumpy()[0]) / self.world


def launched_by_msrun() -> bool:
    """True inside a process started by ``msrun`` (a worker or the scheduler)."""
    return os.environ.get("MS_ROLE") in ("MS_WORKER", "MS_SCHED") and "MS_WORKER_NUM" in os.environ


def setup_workers() -> Workers:
    """Join the collective group when started by ``msrun``; a single :class:`Workers` otherwise.

    ``msrun`` also runs the command in a scheduler process (``MS_ROLE=MS_SCHED``) that only coordinates the
    workers: there ``init()`` serves the cluster until the workers are done, and the process then exits
    without training.
    """
    if not launched_by_msrun():
        return Workers()
    from mindspore.communication import get_group_size, get_rank, init

    init()
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        raise SystemExit(0)
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    return Workers(rank=int(get_rank()), world=int(get_group_size()))
