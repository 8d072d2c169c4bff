"""Noise schedule tables against the reference's float32 buffers (parity_small.npz ``sched_*``)."""

import numpy as np
import pytest

from prediff.diffusion.schedule import NoiseSchedule
from prediff.errors import ConfigError

TABLES = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
          "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
          "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")


@pytest.mark.shared
@pytest.mark.parametrize("name", TABLES)
def test_tables_match_reference(parity_arrays, name):
    table = NoiseSchedule.linear().tables()[name]
    reference = parity_arrays[f"sched_{name}"]
    assert table.dtype == np.float32 and table.shape == (1000,)
    assert np.all(np.abs(table - reference) <= 1e-5 * np.abs(reference))


def test_linear_schedule_endpoints_and_clipped_log_variance():
    schedule = NoiseSchedule.linear()
    tables = schedule.float64_tables()
    assert tables["betas"][0] == pytest.approx(1e-4, rel=1e-12)
    assert tables["betas"][-1] == pytest.approx(2e-2, rel=1e-12)
    assert tables["posterior_variance"][0] == 0.0
    assert tables["posterior_log_variance_clipped"][0] == pytest.approx(np.log(1e-20))
    assert schedule.noise_level(999) == pytest.approx(np.sqrt(1 - tables["alphas_cumprod"][999]))


def test_tables_are_read_only():
    tables = NoiseSchedule.linear().tables()
    with pytest.raises(ValueError):
        tables["betas"][0] = 1.0


def test_from_config_reads_reference_keys_and_rejects_other_schedules():
    schedule = NoiseSchedule.from_config({"timesteps": 100, "beta_schedule": "linear",
                                          "linear_start": 1e-3, "linear_end": 1e-2})
    assert schedule.num_timesteps == 100
    assert schedule.betas[-1] == pytest.approx(1e-2)
    with pytest.raises(ConfigError, match="cosine"):
        NoiseSchedule.from_config({"beta_schedule": "cosine"})
    with pytest.raises(ConfigError):
        NoiseSchedule(np.array([0.5, 1.5]))
    with pytest.raises(ConfigError):
        NoiseSchedule.linear().check_timesteps(np.array([1000]))
