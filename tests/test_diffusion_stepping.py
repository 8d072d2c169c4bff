"""Step-through runs: reports, seeds, stop/resume, cancel, decode cache, noise sources."""

import threading

import numpy as np
import pytest

from prediff.diffusion import (DDIMSampler, DDPMSampler, FixedNoise, NoiseSchedule, SamplingRun, SeededNoise,
                               get_sampler)
from prediff.errors import ConfigError, DataError

SCHEDULE = NoiseSchedule.linear()
SHAPE = (2, 3, 4, 4, 2)


def denoiser(z, t):
    """A deterministic stand-in eps-model that depends on t."""
    return (np.tanh(z) * (t.reshape(-1, 1, 1, 1, 1) / 1000.0)).astype(np.float32)


@pytest.fixture(params=["ddpm", "ddim"])
def sampler(request):
    if request.param == "ddpm":
        return DDPMSampler(SCHEDULE, first_timestep=9)
    return get_sampler("ddim", SCHEDULE, num_steps=10, eta=0.7, spacing="linspace")


def test_reports_describe_every_step(sampler):
    reports = list(SamplingRun(sampler, denoiser, SeededNoise(0), latent_shape=SHAPE))
    assert [r.index for r in reports] == list(range(10))
    assert [r.timestep for r in reports] == list(sampler.timesteps)
    levels = [r.noise_level for r in reports]
    assert all(a > b for a, b in zip(levels, levels[1:]))
    for before, after in zip(reports, reports[1:]):
        np.testing.assert_array_equal(after.latent, before.next_latent)
    assert reports[0].pred_clean.shape == SHAPE and reports[0].predicted_intensity is None


def test_same_seed_same_trajectory_other_seed_differs(sampler):
    first = SamplingRun(sampler, denoiser, SeededNoise(7), latent_shape=SHAPE).run()
    again = SamplingRun(sampler, denoiser, SeededNoise(7), latent_shape=SHAPE).run()
    other = SamplingRun(sampler, denoiser, SeededNoise(8), latent_shape=SHAPE).run()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_stop_and_resume_reproduces_the_uninterrupted_run(sampler):
    full = SamplingRun(sampler, denoiser, SeededNoise(3), latent_shape=SHAPE).run()
    run = SamplingRun(sampler, denoiser, SeededNoise(3), latent_shape=SHAPE)
    for report in run:
        if report.index == 3:
            break
    saved = run.state
    assert saved.next_index == 4 and not run.done
    resumed = SamplingRun(sampler, denoiser, SeededNoise(3), state=saved)
    np.testing.assert_array_equal(resumed.run(), full)
    np.testing.assert_array_equal(run.run(), full)
    assert run.done and resumed.done


def test_resume_with_another_sampler_is_refused():
    run = SamplingRun(DDIMSampler(SCHEDULE, 10), denoiser, SeededNoise(0), latent_shape=SHAPE)
    with pytest.raises(ConfigError, match="resume"):
        SamplingRun(DDIMSampler(SCHEDULE, 20), denoiser, SeededNoise(0), state=run.state)
    with pytest.raises(ConfigError, match="latent_shape"):
        SamplingRun(DDIMSampler(SCHEDULE, 10), denoiser, SeededNoise(0))


def test_cancel_stops_cleanly_and_leaves_global_random_state_alone(sampler):
    cancel = threading.Event()
    seen = []

    def progress(report):
        seen.append(report.index)
        if report.index == 2:
            cancel.set()

    global_state = np.random.get_state()[1].copy()
    run = SamplingRun(sampler, denoiser, SeededNoise(1), latent_shape=SHAPE, progress=progress, cancel=cancel)
    run.run()
    assert run.cancelled and not run.done and seen == [0, 1, 2]
    assert run.state.next_index == 3
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)
    cancel.clear()
    full = SamplingRun(sampler, denoiser, SeededNoise(1), latent_shape=SHAPE).run()
    np.testing.assert_array_equal(run.run(), full)


def test_decoded_clean_frames_are_cached():
    calls = []

    def decode(latent):
        calls.append(latent.shape)
        return np.repeat(np.repeat(latent[..., :1], 2, axis=2), 2, axis=3)

    run = SamplingRun(DDIMSampler(SCHEDULE, 5), denoiser, SeededNoise(0), latent_shape=SHAPE, decode=decode,
                      decode_cache_size=2)
    reports = list(run)
    frames = run.decode_clean(reports[1])
    assert frames.shape == (2, 3, 8, 8, 1)
    assert run.decode_clean(reports[1]) is frames and len(calls) == 1
    run.decode_clean(reports[2])
    run.decode_clean(reports[3])
    run.decode_clean(reports[1])
    assert len(calls) == 4, "the cache holds 2 steps, so step 1 was evicted and decoded again"
    with pytest.raises(ConfigError, match="decoder"):
        SamplingRun(DDIMSampler(SCHEDULE, 5), denoiser, SeededNoise(0), latent_shape=SHAPE).decode_clean(reports[0])


def test_seeded_noise_is_per_member_and_independent_of_ensemble_size():
    noise = SeededNoise(5)
    small, large = noise.step(3, (2, 4, 4)), noise.step(3, (5, 4, 4))
    np.testing.assert_array_equal(large[:2], small)
    np.testing.assert_array_equal(SeededNoise(5, first_member=2).step(3, (3, 4, 4)), large[2:])
    assert not np.allclose(noise.step(4, (2, 4, 4)), small)
    assert not np.allclose(noise.initial((2, 4, 4)), small)
    assert small.dtype == np.float32 and abs(float(large.std()) - 1.0) < 0.3
    with pytest.raises(ConfigError):
        SeededNoise(-1)


def test_fixed_noise_checks_shapes():
    fixed = FixedNoise(np.zeros((2, 3)), np.ones((4, 2, 3)))
    np.testing.assert_array_equal(fixed.step(3, (2, 3)), 1.0)
    with pytest.raises(DataError):
        fixed.step(4, (2, 3))
    with pytest.raises(DataError):
        fixed.initial((3, 3))
    with pytest.raises(DataError):
        FixedNoise(np.zeros((2, 3)), np.ones((4, 2, 4)))


def test_denoiser_with_wrong_output_shape_is_reported():
    run = SamplingRun(DDIMSampler(SCHEDULE, 5), lambda z, t: z[:1], SeededNoise(0), latent_shape=SHAPE)
    with pytest.raises(DataError, match="denoiser"):
        run.run()


def test_guided_and_unguided_runs_start_from_the_same_noise():
    from prediff.diffusion import AlignmentGuidance
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    alignment = lambda z, t: ms.ops.sigmoid(z.mean(axis=(2, 3, 4))).reshape(z.shape[0], -1, 1)  # noqa: E731
    sampler = DDPMSampler(SCHEDULE, first_timestep=3)
    plain = list(SamplingRun(sampler, denoiser, SeededNoise(2), latent_shape=SHAPE))
    guided = list(SamplingRun(sampler, denoiser, SeededNoise(2), latent_shape=SHAPE,
                              guidance=AlignmentGuidance(alignment, 0.9, scale=50.0)))
    np.testing.assert_array_equal(guided[0].latent, plain[0].latent)
    assert not np.array_equal(guided[-1].next_latent, plain[-1].next_latent)
    assert guided[0].target_intensity.tolist() == pytest.approx([0.9, 0.9])


def test_mindspore_denoiser_repeats_one_context_for_all_members():
    from prediff.diffusion import mindspore_denoiser
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    seen = {}

    def network(x, t, cond):
        seen.update(t_dtype=t.dtype, cond_shape=cond.shape)
        return x * 0 + cond.mean(axis=1, keep_dims=True)[:, :, :, :, :x.shape[-1]]

    cond = np.arange(1 * 7 * 4 * 4 * 2, dtype=np.float32).reshape(1, 7, 4, 4, 2)
    eps = mindspore_denoiser(network, cond)(np.zeros(SHAPE, np.float32), np.array([5, 5]))
    assert eps.shape == SHAPE and seen["t_dtype"] == ms.int32 and seen["cond_shape"] == (2, 7, 4, 4, 2)
    np.testing.assert_allclose(eps[1], np.broadcast_to(cond.mean(axis=1), (3, 4, 4, 2)))
    with pytest.raises(DataError, match="context"):
        mindspore_denoiser(network, np.zeros((3, 7, 4, 4, 2), np.float32))(np.zeros(SHAPE, np.float32),
                                                                          np.array([5, 5]))
