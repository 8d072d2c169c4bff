"""Running the numpy kernels of :mod:`prediff.models.blocks` on every CPU core.

Two ways of using the cores, both over one process-wide thread pool (numpy releases the GIL inside each
operation, so pool threads run in parallel):

* :func:`blockwise` splits one element-wise function over blocks of its input (used when a kernel runs on the
  calling thread);
* :func:`batch_parallel` splits a whole fused kernel (residual block, feed-forward layer, attention layer) over
  its batch: each worker runs the complete kernel on its share of the samples. Inference spends most of its time
  in element-wise steps, normalisations and small GEMMs that one thread would run one after the other, so this
  is the way that keeps both cores busy. Inside the workers OpenBLAS is held at one thread: its own threads
  busy-wait between calls and would take the core from the other worker (measured on the demo config: 53 CPU-s
  of which ~30 useful for an 8-member forecast with OpenBLAS at 2 threads beside the element-wise pool).

Splitting a batch never changes a sample's result: every kernel treats samples independently and each GEMM
row's dot products do not depend on how many rows the call has.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np


def _usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset``), else all cores."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: Worker threads: one per usable CPU core, at most 4.
WORKERS = max(1, min(4, _usable_cores()))
#: Elements per block of :func:`blockwise`: 256 kB of float32, so the ~20 passes of the GELU over a block run in
#: the core's L2 cache, in few enough numpy calls that two threads do not queue on the GIL between them
#: (measured: demo 8 x 20 forecast 16.1 s with 16384-element blocks, 14.6 s with 65536, 14.8 s with 262144).
BLOCK_ELEMENTS = 65536

#: Shares of the batch per worker thread in :func:`batch_parallel`: with two shares per thread the pool balances
#: the load when another process (the browser, the app server) takes part of one core, instead of every kernel
#: waiting for the thread on the busier core. Measured with the app and headless chromium on the 2 cores
#: (`bench_app.py`, 8 x 20 forecast, medians of 3): 18.0 s with one share per thread, 14.0 and 15.6 s with two;
#: alone (no browser) the same or slightly faster.
SHARES_PER_WORKER = 2

_POOL: dict = {"executor": None, "pid": None}
_IN_WORKER = threading.local()
_BLAS_LOCK = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """The worker pool, created on first use in each process (a forked child inherits the object, not its threads,
    so the pool is rebuilt per process id)."""
    if _POOL["executor"] is None or _POOL["pid"] != os.getpid():
        _POOL["executor"] = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS,
                                                                  thread_name_prefix="prediff-kernels")
        _POOL["pid"] = os.getpid()
    return _POOL["executor"]


def _in_worker() -> bool:
    return bool(getattr(_IN_WORKER, "active", False))


def _run_in_worker(function: Callable, *args):
    _IN_WORKER.active = True
    try:
        return function(*args)
    finally:
        _IN_WORKER.active = False


def blockwise(function: Callable[[np.ndarray], np.ndarray], h: np.ndarray) -> np.ndarray:
    """Apply a 1-D element-wise ``function`` to ``h`` block by block on all cores (new array of h's shape).

    Inside a :func:`batch_parallel` worker the blocks run on that worker's thread (the cores are already busy).
    """
    flat = np.ascontiguousarray(h).reshape(-1)
    out = np.empty_like(flat)

    def run(first: int, stop: int) -> None:
        for start in range(first, stop, BLOCK_ELEMENTS):
            end = min(start + BLOCK_ELEMENTS, stop)
            out[start:end] = function(flat[start:end])

    if _in_worker() or WORKERS == 1:
        run(0, flat.size)
        return out.reshape(h.shape)
    blocks_per_worker = -(-flat.size // (BLOCK_ELEMENTS * WORKERS))
    bounds = [min(i * blocks_per_worker * BLOCK_ELEMENTS, flat.size) for i in range(WORKERS + 1)]
    futures = [_pool().submit(_run_in_worker, run, bounds[i], bounds[i + 1]) for i in range(WORKERS)]
    for future in futures:
        future.result()
    return out.reshape(h.shape)


def _openblas_thread_setters():
    """``(get, set)`` of the OpenBLAS bundled with numpy, or None when it cannot be found."""
    library_dir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    if not os.path.isdir(library_dir):
        return None
    for name in sorted(os.listdir(library_dir)):
        if "openblas" not in name:
            continue
        library = ctypes.CDLL(os.path.join(library_dir, name))
        for suffix in ("64_", "", "_64_"):
            getter = getattr(library, f"openblas_get_num_threads{suffix}", None)
            setter = getattr(library, f"openblas_set_num_threads{suffix}", None)
            if getter is not None and setter is not None:
                setter.argtypes = [ctypes.c_int]
                return getter, setter
    return None


_BLAS: dict = {"setters": None, "looked_up": False}


@contextlib.contextmanager
def single_threaded_blas():
    """Hold OpenBLAS at one thread inside the block (no-op when numpy's OpenBLAS cannot be reached)."""
    with _BLAS_LOCK:
        if not _BLAS["looked_up"]:
            _BLAS["setters"] = _openblas_thread_setters()
            _BLAS["looked_up"] = True
    setters = _BLAS["setters"]
    if setters is None:
        yield
        return
    get_threads, set_threads = setters
    previous = get_threads()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(previous)


class BatchShares(NamedTuple):
    """What a fused kernel's forward pass keeps for its backward pass when it ran split over the batch:
    the share boundaries along axis 0 and each share's intermediates (``None`` where they were not kept)."""

    bounds: tuple[int, ...]
    saved: tuple


def _share_bounds(arrays: Sequence, batched: Sequence[int]) -> tuple[int, ...]:
    """Boundaries of the shares of the batch: :data:`SHARES_PER_WORKER` per worker, or a single share inside a
    worker."""
    batch = arrays[batched[0]].shape[0]
    shares = 1 if _in_worker() else max(1, min(WORKERS * SHARES_PER_WORKER, batch))
    return tuple(batch * i // shares for i in range(shares + 1))


def _share(arrays: Sequence, batched: Sequence[int], first: int, stop: int) -> list:
    """The inputs of one share: rows ``first:stop`` of the batched inputs (None stays None), the others whole."""
    return [array[first:stop] if index in batched and array is not None else array
            for index, array in enumerate(arrays)]


def _map_shares(function: Callable, calls: list[tuple]) -> list:
    """``[function(*args) for args in calls]``, on the worker threads when there is more than one call."""
    if len(calls) == 1:
        return [function(*calls[0])]
    with single_threaded_blas():
        futures = [_pool().submit(_run_in_worker, function, *args) for args in calls]
        return [future.result() for future in futures]


def batch_parallel(kernel: Callable[[list], np.ndarray], arrays: Sequence, batched: Sequence[int]) -> np.ndarray:
    """``kernel(arrays)`` computed as ``concatenate([kernel(share) for share in shares], axis=0)`` on all cores.

    Parameters
    ----------
    kernel : callable
        Maps the list of input arrays to one output array whose axis 0 is the batch axis of the inputs listed in
        ``batched`` (sample ``i`` of the output depends only on sample ``i`` of those inputs).
    arrays : sequence of numpy arrays (or None)
        The kernel's inputs.
    batched : sequence of int
        Indices into ``arrays`` of the inputs split along axis 0; the others (weights) go whole to every worker.

    Runs ``kernel`` directly when there is one core, one sample, or when called from a worker.
    """
    return forward_shares(lambda share: (kernel(share), None), arrays, batched)[0]


def forward_shares(forward: Callable[[list], tuple], arrays: Sequence, batched: Sequence[int]):
    """:func:`batch_parallel` for a forward pass that also returns what its backward pass needs.

    ``forward(share_inputs) -> (out, saved)``; returns ``(out, BatchShares)`` for :func:`backward_shares`.
    """
    bounds = _share_bounds(arrays, batched)
    calls = [(_share(arrays, batched, bounds[i], bounds[i + 1]),) for i in range(len(bounds) - 1)]
    results = _map_shares(forward, calls)
    out = results[0][0] if len(results) == 1 else np.concatenate([result[0] for result in results], axis=0)
    return out, BatchShares(bounds, tuple(result[1] for result in results))


def backward_shares(backward: Callable[[list, np.ndarray, object], list], arrays: Sequence,
                    batched: Sequence[int], grad_out: np.ndarray, shares: BatchShares) -> list:
    """Gradients of every input of a kernel whose forward pass ran through :func:`forward_shares`.

    ``backward(share_inputs, share_grad_out, share_saved) -> [gradient of each input]``. The gradients of the
    batched inputs are concatenated over the shares; those of the other inputs (weights) are summed, since a
    parameter's gradient is a sum over the samples.
    """
    bounds = shares.bounds
    calls = [(_share(arrays, batched, bounds[i], bounds[i + 1]), grad_out[bounds[i]:bounds[i + 1]], saved)
             for i, saved in enumerate(shares.saved)]
    results = _map_shares(backward, calls)
    if len(results) == 1:
        return list(results[0])
    gradients = []
    for index, parts in enumerate(zip(*results)):
        if index in batched:
            gradients.append(None if parts[0] is None else np.concatenate(parts, axis=0))
        else:
            total = parts[0].copy()
            for part in parts[1:]:
                total += part
            gradients.append(total)
    return gradients
