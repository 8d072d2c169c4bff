"""DDPM ancestral step: parity with the reference's ``p_sample`` given its denoiser output and noise."""

import numpy as np
import pytest

from prediff.diffusion import DDPMSampler, NoiseSchedule, get_sampler
from prediff.errors import ConfigError, DataError


def _close(actual, reference, tolerance=1e-4):
    return np.max(np.abs(actual - reference)) <= tolerance * np.max(np.abs(reference))


@pytest.fixture(scope="module")
def sampler():
    return DDPMSampler(NoiseSchedule.linear())


@pytest.mark.shared
def test_unguided_step_matches_reference(parity_arrays, sampler):
    a = parity_arrays
    output = sampler.step_at(a["step_eps"], a["step_t"], a["step_zt"], a["step_noise"])
    assert _close(output.pred_clean, a["step_z0_pred"])
    assert _close(output.mean, a["step_mean"])
    assert _close(output.prev_sample, a["step_out_noalign"])
    np.testing.assert_allclose(output.std ** 2, a["step_var"].reshape(-1), rtol=1e-5)


@pytest.mark.shared
def test_guided_step_with_reference_shift_matches_fixed_reference(parity_arrays, sampler):
    a = parity_arrays
    output = sampler.step_at(a["step_eps"], a["step_t"], a["step_zt"], a["step_noise"],
                             guidance=a["step_align_shift_fixed"])
    assert _close(output.prev_sample, a["step_out_align_fixed"])
    moved = np.abs(output.prev_sample[0] - a["step_out_noalign"][0]).max()
    assert moved > 1e-4, "the guided step must differ from the unguided one at t=500"


def test_last_step_adds_no_noise_and_returns_clean_prediction(sampler):
    rng = np.random.default_rng(0)
    z, eps = (rng.standard_normal((2, 2, 3, 3, 1), dtype=np.float32) for _ in range(2))
    output = sampler.step(eps, sampler.num_steps - 1, z, noise=None)
    assert sampler.timesteps[-1] == 0
    np.testing.assert_array_equal(output.std, 0.0)
    np.testing.assert_allclose(output.prev_sample, output.pred_clean, atol=1e-6)


def test_timesteps_and_truncation(sampler):
    np.testing.assert_array_equal(sampler.timesteps, np.arange(999, -1, -1))
    truncated = get_sampler("ddpm", NoiseSchedule.linear(), first_timestep=2)
    np.testing.assert_array_equal(truncated.timesteps, [2, 1, 0])
    with pytest.raises(ConfigError):
        DDPMSampler(NoiseSchedule.linear(), first_timestep=1000)


def test_bad_inputs_raise_user_errors(sampler):
    z = np.zeros((2, 2, 3, 3, 1), np.float32)
    with pytest.raises(DataError, match="shape"):
        sampler.step(np.zeros((2, 2, 3, 3, 2), np.float32), 0, z, z)
    with pytest.raises(DataError, match="noise"):
        sampler.step(z, 0, z, None)
    with pytest.raises(ConfigError):
        get_sampler("euler", NoiseSchedule.linear())
