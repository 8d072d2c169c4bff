"""DDIM: spacings, equivalence with DDPM at eta=1 over all steps, and accuracy on analytic eps-models."""

import numpy as np
import pytest

from prediff.diffusion import (DDIMSampler, DDPMSampler, NoiseSchedule, SamplingRun, SeededNoise, ddim_timesteps)
from prediff.errors import ConfigError

SCHEDULE = NoiseSchedule.linear()
ABAR = SCHEDULE.float64_tables()["alphas_cumprod"]


def gaussian_eps(mean, std):
    """Exact eps-prediction E[eps | z_t] for data x0 ~ N(mean, std^2) element-wise (a Gaussian posterior)."""
    def eps(z, t):
        a = ABAR[t].reshape((-1,) + (1,) * (z.ndim - 1))
        return (np.sqrt(1 - a) * (z - np.sqrt(a) * mean) / (a * std ** 2 + 1 - a)).astype(np.float32)
    return eps


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("count", [1, 7, 10, 20, 50, 100, 1000])
def test_spacings_are_strictly_decreasing_subsets(spacing, count):
    steps = ddim_timesteps(count, 1000, spacing)
    assert steps.shape == (count,)
    assert np.all(np.diff(steps) < 0) and steps.min() >= 0 and steps.max() <= 999
    if count == 1000:
        np.testing.assert_array_equal(steps, np.arange(999, -1, -1))


def test_spacing_endpoints():
    assert list(ddim_timesteps(10, 1000, "trailing")[[0, -1]]) == [999, 99]
    assert list(ddim_timesteps(10, 1000, "leading")[[0, -1]]) == [900, 0]
    assert list(ddim_timesteps(10, 1000, "linspace")[[0, -1]]) == [999, 0]
    with pytest.raises(ConfigError):
        ddim_timesteps(10, 1000, "quadratic")
    with pytest.raises(ConfigError):
        ddim_timesteps(1001, 1000)
    with pytest.raises(ConfigError):
        DDIMSampler(SCHEDULE, 10, eta=1.5)


def test_eta1_all_steps_equals_ddpm_step_by_step():
    """Per step, DDIM(eta=1, unit stride) has the DDPM posterior mean and std, with and without guidance."""
    ddpm, ddim = DDPMSampler(SCHEDULE), DDIMSampler(SCHEDULE, 1000, eta=1.0)
    rng = np.random.default_rng(1)
    shape = (2, 3, 4, 4, 2)
    for index in [0, 1, 250, 500, 900, 990, 998, 999]:
        z, eps, noise, direction = (rng.standard_normal(shape, dtype=np.float32) for _ in range(4))
        for guidance in (None, 0.3 * direction):
            a = ddpm.step(eps, index, z, noise, guidance=guidance)
            b = ddim.step(eps, index, z, noise, guidance=guidance)
            np.testing.assert_allclose(b.std, a.std, rtol=1e-5, atol=1e-12)
            scale = np.abs(a.prev_sample).max()
            assert np.abs(b.mean - a.mean).max() <= 2e-6 * scale
            assert np.abs(b.prev_sample - a.prev_sample).max() <= 2e-6 * scale


def test_eta1_all_steps_matches_ddpm_in_distribution():
    """Both samplers draw x0 ~ N(0.7, 0.3^2) from the exact eps-model of that Gaussian (20000 draws)."""
    mean, std, draws = 0.7, 0.3, 20000
    eps = gaussian_eps(mean, std)
    ddpm = SamplingRun(DDPMSampler(SCHEDULE), eps, SeededNoise(1), latent_shape=(1, draws)).run()
    ddim = SamplingRun(DDIMSampler(SCHEDULE, 1000, eta=1.0), eps, SeededNoise(2), latent_shape=(1, draws)).run()
    mean_tol = 5 * std / np.sqrt(draws)
    std_tol = 5 * std / np.sqrt(2 * draws)
    for x in (ddpm, ddim):
        assert abs(x.mean() - mean) < mean_tol
        assert abs(x.std() - std) < std_tol + 0.005
    assert abs(ddpm.mean() - ddim.mean()) < mean_tol * 1.5
    assert abs(ddpm.std() - ddim.std()) < std_tol * 1.5 + 0.005


@pytest.mark.parametrize("count", [1, 10, 20, 50, 100])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
def test_few_steps_recover_point_mass_exactly(count, eta, spacing):
    """For data at a single point the exact eps-model predicts x0 exactly, so any DDIM run must end there."""
    point = 0.42
    run = SamplingRun(DDIMSampler(SCHEDULE, count, eta=eta, spacing=spacing), gaussian_eps(point, 0.0),
                      SeededNoise(5), latent_shape=(3, 50))
    np.testing.assert_allclose(run.run(), point, atol=1e-5)


def test_few_steps_on_gaussian_converge_with_more_steps():
    mean, std, draws = -0.3, 0.5, 20000
    eps = gaussian_eps(mean, std)
    errors = []
    for count in (10, 20, 50):
        x = SamplingRun(DDIMSampler(SCHEDULE, count, eta=0.0), eps, SeededNoise(9), latent_shape=(1, draws)).run()
        assert abs(x.mean() - mean) < 0.02
        errors.append(abs(x.std() - std))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05 * std


def test_guidance_moves_ddim_mean_by_summed_ddpm_std():
    ddim = DDIMSampler(SCHEDULE, 10, eta=0.0)
    rng = np.random.default_rng(3)
    z, eps, direction = (rng.standard_normal((1, 2, 2, 2, 1), dtype=np.float32) for _ in range(3))
    stds = np.exp(0.5 * SCHEDULE.float64_tables()["posterior_log_variance_clipped"])
    for index in (0, 4, 9):
        plain = ddim.step(eps, index, z, None)
        guided = ddim.step(eps, index, z, None, guidance=direction)
        t, s = ddim.timesteps[index], ddim.previous_timesteps()[index]
        expected = stds[s + 1:t + 1].sum()
        assert ddim.guidance_mean_shift(index) == pytest.approx(expected, rel=1e-6)
        np.testing.assert_allclose(guided.mean - plain.mean, -expected * direction, rtol=1e-3, atol=1e-6)
