"""Parity with the MindEarth reference's metrics (parity_small.npz, metric_* arrays)."""

import numpy as np
import pytest

from prediff.errors import DataError
from prediff.verify import reference_metric_outputs

pytestmark = pytest.mark.shared


def test_reference_metric_outputs_reproduce_parity_small(parity_arrays):
    outputs = reference_metric_outputs(parity_arrays["metric_pred"], parity_arrays["seq"][:, 7:],
                                       parity_arrays["metric_thresholds"])
    for name in ("metric_hits", "metric_misses", "metric_fas"):
        np.testing.assert_array_equal(outputs[name], parity_arrays[name].astype(np.int64), err_msg=name)
        assert outputs[name].dtype == np.int64
    for name in ("metric_csi", "metric_pod", "metric_sucr", "metric_csi_avg", "metric_pod_avg", "metric_sucr_avg",
                 "metric_ssim", "metric_mse", "metric_mae"):
        np.testing.assert_allclose(outputs[name], parity_arrays[name], rtol=0, atol=1e-6, err_msg=name)
    # the legacy "bias" reaches 2.5e4 at threshold 219: compare relatively
    for name in ("metric_bias", "metric_bias_avg"):
        np.testing.assert_allclose(outputs[name], parity_arrays[name], rtol=1e-6, err_msg=name)


def test_reference_metric_outputs_need_nthwc():
    with pytest.raises(DataError, match="NTHWC"):
        reference_metric_outputs(np.zeros((6, 8, 8)), np.zeros((6, 8, 8)))
