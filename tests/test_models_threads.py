"""Splitting the numpy kernels over the cores (prediff.models.threads) gives the unsplit results."""

from __future__ import annotations

import numpy as np
import pytest

from prediff.models import threads


def _linear_forward(arrays):
    x, weight = arrays
    return x @ weight, (x,)


def _linear_backward(arrays, grad_out, saved):
    (x,) = saved
    return [grad_out @ arrays[1].T, x.T @ grad_out]


@pytest.fixture()
def two_workers(monkeypatch):
    monkeypatch.setattr(threads, "WORKERS", 2)
    monkeypatch.setattr(threads, "SHARES_PER_WORKER", 2)


def test_batch_parallel_equals_the_whole_batch_and_passes_weights_whole(two_workers):
    rng = np.random.default_rng(0)
    x, weight = rng.standard_normal((7, 5), dtype=np.float32), rng.standard_normal((5, 3), dtype=np.float32)
    shapes = []

    def kernel(arrays):
        shapes.append((arrays[0].shape, arrays[1].shape))
        return arrays[0] @ arrays[1]

    np.testing.assert_array_equal(threads.batch_parallel(kernel, [x, weight], (0,)), x @ weight)
    assert sorted(shapes) == [((1, 5), (5, 3))] + [((2, 5), (5, 3))] * 3  # 4 shares: 2 per worker


def test_forward_and_backward_shares_concatenate_inputs_and_sum_weight_gradients(two_workers):
    rng = np.random.default_rng(1)
    x, weight = rng.standard_normal((6, 4), dtype=np.float32), rng.standard_normal((4, 2), dtype=np.float32)
    grad_out = rng.standard_normal((6, 2), dtype=np.float32)
    out, shares = threads.forward_shares(_linear_forward, [x, weight], (0,))
    assert shares.bounds == (0, 1, 3, 4, 6) and len(shares.saved) == 4
    np.testing.assert_allclose(out, x @ weight, rtol=1e-6)
    grad_x, grad_weight = threads.backward_shares(_linear_backward, [x, weight], (0,), grad_out, shares)
    np.testing.assert_allclose(grad_x, grad_out @ weight.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_weight, x.T @ grad_out, rtol=1e-5, atol=1e-6)


def test_a_kernel_called_inside_a_worker_runs_unsplit(two_workers):
    batches = []

    def inner(arrays):
        batches.append(arrays[0].shape[0])
        return arrays[0]

    def outer(arrays):
        return threads.batch_parallel(inner, arrays, (0,))

    threads.batch_parallel(outer, [np.zeros((8, 1), np.float32)], (0,))
    assert sorted(batches) == [2, 2, 2, 2]  # the outer call's 4 shares, each run whole by the inner call


def test_blockwise_equals_the_function_on_the_whole_array(two_workers):
    h = np.random.default_rng(2).standard_normal((3, threads.BLOCK_ELEMENTS + 5), dtype=np.float32)
    np.testing.assert_array_equal(threads.blockwise(np.tanh, h), np.tanh(h))


def test_single_threaded_blas_restores_the_thread_count():
    setters = threads._openblas_thread_setters()
    if setters is None:
        pytest.skip("numpy's OpenBLAS is not reachable here")
    get_threads, _ = setters
    before = get_threads()
    with threads.single_threaded_blas():
        assert get_threads() == 1
    assert get_threads() == before
