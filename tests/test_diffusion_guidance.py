"""Alignment guidance: real gradients (vs finite differences), per-sample independence, scale 0 = off."""

import numpy as np
import pytest

from prediff.diffusion import (AlignmentGuidance, DDIMSampler, DDPMSampler, NoiseSchedule, SamplingRun,
                               SeededNoise)
from prediff.errors import ConfigError, DataError
from prediff.runtime import mindspore_module

SHAPE = (3, 6, 4, 4, 2)


def analytic_alignment():
    """F(z, t)[b, f] = sigmoid(w_f * mean_{H,W,C} z[b, f]^2 ... + c_t): smooth, per sample, (B, 6, 1)."""
    ms = mindspore_module()
    weights = ms.Tensor(np.linspace(0.5, 1.5, 6, dtype=np.float32).reshape(1, 6))

    def alignment(z, t):
        frame_mean = z.mean(axis=(2, 3, 4)) + 0.3 * (z * z).mean(axis=(2, 3, 4))
        shift = (t.astype(ms.float32) / 1000.0).reshape(-1, 1)
        return ms.ops.sigmoid(weights * frame_mean - 1.0 + shift).reshape(z.shape[0], 6, 1)

    return alignment


def objective_numpy(z, t, target, objective):
    """The objective recomputed in float64 numpy for finite differences."""
    frame_mean = z.mean(axis=(2, 3, 4)) + 0.3 * (z * z).mean(axis=(2, 3, 4))
    predicted = 1 / (1 + np.exp(-(np.linspace(0.5, 1.5, 6) * frame_mean - 1.0 + t[:, None] / 1000.0)))
    difference = predicted.mean(axis=1) - target
    return np.abs(difference).sum() if objective == "per_sample" else np.sqrt((difference ** 2).sum())


@pytest.fixture(scope="module")
def latent():
    return np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)


@pytest.mark.parametrize("objective", ["per_sample", "reference"])
def test_gradient_matches_finite_differences(latent, objective):
    t = np.array([900, 400, 10])
    target = np.array([0.9, 0.1, 0.6])
    scale = 7.0
    evaluation = AlignmentGuidance(analytic_alignment(), target, scale=scale, objective=objective).evaluate(latent, t)
    gradient = evaluation.direction / scale
    rng = np.random.default_rng(1)
    z64 = latent.astype(np.float64)
    for _ in range(3):
        v = rng.standard_normal(SHAPE)
        h = 1e-4
        fd = (objective_numpy(z64 + h * v, t, target, objective)
              - objective_numpy(z64 - h * v, t, target, objective)) / (2 * h)
        assert np.sum(gradient * v) == pytest.approx(fd, rel=2e-3, abs=1e-7)
    assert np.abs(gradient).max() > 0


def test_objective_values_and_predicted_intensity(latent):
    t = np.array([900, 400, 10])
    target = np.array([0.9, 0.1, 0.6])
    per_sample = AlignmentGuidance(analytic_alignment(), target).evaluate(latent, t, with_gradient=False)
    reference = AlignmentGuidance(analytic_alignment(), target, objective="reference").evaluate(latent, t)
    difference = per_sample.predicted_intensity - target
    np.testing.assert_allclose(per_sample.objective, np.abs(difference), rtol=1e-5)
    np.testing.assert_allclose(reference.objective, np.sqrt((difference ** 2).sum()), rtol=1e-5)
    assert per_sample.direction is None
    np.testing.assert_allclose(per_sample.target_intensity, target.astype(np.float32))


def test_per_sample_objective_keeps_members_independent(latent):
    t = np.full(3, 500)
    alignment = analytic_alignment()
    base = AlignmentGuidance(alignment, [0.9, 0.1, 0.6]).evaluate(latent, t).direction
    changed = AlignmentGuidance(alignment, [0.9, 0.1, 0.0]).evaluate(latent, t).direction
    np.testing.assert_array_equal(changed[:2], base[:2])
    assert not np.array_equal(changed[2], base[2])
    coupled = AlignmentGuidance(alignment, [0.9, 0.1, 0.6], objective="reference").evaluate(latent, t).direction
    coupled_changed = AlignmentGuidance(alignment, [0.9, 0.1, 0.0], objective="reference").evaluate(latent, t).direction
    assert not np.allclose(coupled_changed[0], coupled[0]), "the reference objective couples members"


def test_members_of_a_guided_run_do_not_influence_each_other():
    alignment = analytic_alignment()
    sampler = DDIMSampler(NoiseSchedule.linear(), 5, eta=0.5)
    eps = lambda z, t: 0.1 * z  # noqa: E731 - a tiny stand-in denoiser
    runs = [SamplingRun(sampler, eps, SeededNoise(3), latent_shape=SHAPE,
                        guidance=AlignmentGuidance(alignment, target, scale=20.0)).run()
            for target in ([0.9, 0.1, 0.6], [0.9, 0.1, 0.05])]
    np.testing.assert_array_equal(runs[0][:2], runs[1][:2])
    assert not np.array_equal(runs[0][2], runs[1][2])


@pytest.mark.parametrize("sampler", [DDPMSampler(NoiseSchedule.linear(), first_timestep=4),
                                     DDIMSampler(NoiseSchedule.linear(), 5, eta=1.0)])
def test_scale_zero_gives_exactly_the_unguided_result(sampler):
    eps = lambda z, t: 0.2 * z  # noqa: E731
    plain = SamplingRun(sampler, eps, SeededNoise(11), latent_shape=SHAPE).run()
    reports = []
    off = SamplingRun(sampler, eps, SeededNoise(11), latent_shape=SHAPE,
                      guidance=AlignmentGuidance(analytic_alignment(), 0.5, scale=0.0), progress=reports.append)
    np.testing.assert_array_equal(off.run(), plain)
    assert reports[0].predicted_intensity.shape == (3,)
    on = SamplingRun(sampler, eps, SeededNoise(11), latent_shape=SHAPE,
                     guidance=AlignmentGuidance(analytic_alignment(), 0.5, scale=5.0)).run()
    assert not np.array_equal(on, plain)


def test_guidance_pulls_predicted_intensity_toward_target():
    alignment = analytic_alignment()
    ms = mindspore_module()
    schedule = NoiseSchedule.linear()
    sampler = DDIMSampler(schedule, 20, eta=0.0)
    abar = schedule.float64_tables()["alphas_cumprod"]

    def eps(z, t):  # exact eps-model of data x0 ~ N(0, 0.3^2)
        a = abar[t].reshape(-1, 1, 1, 1, 1)
        return (np.sqrt(1 - a) * z / (0.09 * a + 1 - a)).astype(np.float32)
    target = np.array([0.8, 0.8, 0.8])

    def final_error(scale):
        z = SamplingRun(sampler, eps, SeededNoise(4), latent_shape=SHAPE,
                        guidance=AlignmentGuidance(alignment, target, scale=scale)).run()
        predicted = alignment(ms.Tensor(z), ms.Tensor(np.zeros(3, np.int32))).asnumpy().mean(axis=(1, 2))
        return np.abs(predicted - target)

    unguided, guided = final_error(0.0), final_error(50.0)
    assert np.all(guided < 0.5 * unguided), (guided, unguided)


def test_bad_guidance_settings_raise_user_errors(latent):
    with pytest.raises(ConfigError):
        AlignmentGuidance(analytic_alignment(), 0.5, objective="batch")
    with pytest.raises(ConfigError):
        AlignmentGuidance(analytic_alignment(), 0.5, scale=-1)
    with pytest.raises(DataError, match="members"):
        AlignmentGuidance(analytic_alignment(), [0.1, 0.2]).evaluate(latent, np.full(3, 10))


def test_alignment_output_of_wrong_shape_is_reported(latent):
    ms = mindspore_module()
    flat = lambda z, t: ms.ops.sigmoid(z.mean(axis=(2, 3, 4)))  # noqa: E731 - (B, T) without the channel axis
    with pytest.raises(DataError, match="T_out, K"):
        AlignmentGuidance(flat, 0.5).evaluate(latent, np.full(3, 10))
    # the error is raised outside MindSpore's gradient recording, so later gradients (here through a
    # LayerNorm, whose backward is what a broken recording fails in) still work
    norm = ms.nn.LayerNorm((2,))
    normed = lambda z, t: ms.ops.sigmoid((norm(z) * z).mean(axis=(2, 3, 4))).reshape(z.shape[0], 6, 1)  # noqa: E731
    direction = AlignmentGuidance(normed, 0.5).evaluate(latent, np.full(3, 10)).direction
    assert np.all(np.isfinite(direction)) and np.abs(direction).max() > 0
