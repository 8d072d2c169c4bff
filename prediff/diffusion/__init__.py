"""Diffusion sampling for PreDiff: noise schedule, DDPM / DDIM samplers, alignment guidance, targets, stepping.

Following diffusers' split, nothing here holds network weights: samplers are driven one step at a time
with the denoiser's output, and networks enter only as callables. See ``docs/sampling.md``.

* :mod:`~prediff.diffusion.schedule` — :class:`NoiseSchedule` (the reference's linear schedule tables).
* :mod:`~prediff.diffusion.ddpm` — :class:`DDPMSampler` (the reference's ancestral step).
* :mod:`~prediff.diffusion.ddim` — :class:`DDIMSampler` (any number of steps, eta, spacing).
* :mod:`~prediff.diffusion.guidance` — :class:`AlignmentGuidance` (real gradient, per-sample objective).
* :mod:`~prediff.diffusion.targets` — guidance targets and their CLI spelling.
* :mod:`~prediff.diffusion.stepping` — :class:`SamplingRun`, seeded noise, step reports, resume, cancel.
"""

from __future__ import annotations

from prediff.diffusion.ddim import SPACINGS, DDIMSampler, ddim_timesteps
from prediff.diffusion.ddpm import DDPMSampler, StepOutput
from prediff.diffusion.guidance import OBJECTIVES, AlignmentGuidance, GuidanceEvaluation
from prediff.diffusion.schedule import NoiseSchedule
from prediff.diffusion.stepping import (FixedNoise, SamplingRun, SamplingState, SeededNoise, StepReport,
                                        mindspore_denoiser)
from prediff.diffusion.targets import IntensityStats, TargetSpec, intensity_stats_from_windows, parse_target
from prediff.errors import ConfigError

SAMPLERS = ("ddpm", "ddim")


def get_sampler(name: str, schedule: NoiseSchedule, **options):
    """Build a sampler by name.

    Parameters
    ----------
    name : ``"ddpm"`` (options: ``first_timestep``) or ``"ddim"`` (options: ``num_steps``, ``eta``,
        ``spacing``).
    schedule : the noise schedule.

    Returns
    -------
    DDPMSampler or DDIMSampler
    """
    kinds = {"ddpm": DDPMSampler, "ddim": DDIMSampler}
    if name not in kinds:
        raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    try:
        return kinds[name](schedule, **options)
    except TypeError as error:
        raise ConfigError(f"bad options for sampler {name!r}: {error}") from error


__all__ = [
    "SAMPLERS", "SPACINGS", "OBJECTIVES", "NoiseSchedule", "DDPMSampler", "DDIMSampler", "StepOutput",
    "ddim_timesteps", "AlignmentGuidance", "GuidanceEvaluation", "IntensityStats", "TargetSpec",
    "intensity_stats_from_windows", "parse_target", "SamplingRun", "SamplingState", "StepReport", "SeededNoise",
    "FixedNoise", "mindspore_denoiser", "get_sampler",
]
