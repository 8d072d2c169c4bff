"""DDPM ancestral sampling with the MindEarth PreDiff reference's exact step (``LatentDiffusion.p_sample``).

One step from z_t (noise level t) to z_{t-1}, for an eps-predicting denoiser::

    x0_hat   = sqrt(1/abar_t) * z_t - sqrt(1/abar_t - 1) * eps_hat            (no clipping)
    mean     = coef1_t * x0_hat + coef2_t * z_t                                (posterior q(z_{t-1} | z_t, x0_hat))
    std_t    = exp(0.5 * posterior_log_variance_clipped_t)
    mean'    = mean - std_t * g                                               (guidance, g = scale * grad U)
    z_{t-1}  = mean' + 1[t > 0] * std_t * noise

The samplers hold no weights and no random state: the caller passes the denoiser output and the noise,
which is what makes runs reproducible and lets guided and unguided runs share their noise. Arithmetic is
float32 numpy on float32 tables, as in the reference.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from prediff.diffusion.schedule import NoiseSchedule
from prediff.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class StepOutput:
    """What one sampler step produced.

    Attributes
    ----------
    prev_sample : (B, T, H, W, C) float32 latent at the next (lower) noise level.
    pred_clean : (B, T, H, W, C) float32 predicted clean latent x0_hat that the step used (for DDIM with
        guidance this comes from the guided eps; for DDPM guidance only moves the mean).
    mean : (B, T, H, W, C) float32 the step's mean, guidance included; ``prev_sample = mean + std * noise``.
    std : (B,) float32 standard deviation of the injected noise (0 at the last DDPM step and for DDIM eta=0).
    """

    prev_sample: np.ndarray
    pred_clean: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def _per_sample(table: np.ndarray, timesteps: np.ndarray, ndim: int) -> np.ndarray:
    """Gather ``table[t]`` for each sample and shape it (B, 1, ..., 1) to broadcast over a latent."""
    return table[timesteps].reshape((-1,) + (1,) * (ndim - 1))


def check_latent(name: str, array, reference_shape: tuple | None = None) -> np.ndarray:
    """``array`` as a float32 batch of latents (B, ...), of ``reference_shape`` when given, else DataError."""
    latent = np.asarray(array, dtype=np.float32)
    if latent.ndim < 2:
        raise DataError(f"{name} must be a batch of latents (B, T, H, W, C), got shape {latent.shape}")
    if reference_shape is not None and latent.shape != reference_shape:
        raise DataError(f"{name} has shape {latent.shape} but the latent has shape {reference_shape}; "
                        "pass arrays of the same (B, T, H, W, C) shape")
    return latent


class DDPMSampler:
    """Ancestral DDPM sampler over the training timesteps, one step at a time (the reference's sampler).

    Parameters
    ----------
    schedule : the noise schedule (T training timesteps).
    first_timestep : timestep the chain starts from; default T - 1 (pure noise). A smaller value
        reproduces the reference's ``sample(timesteps=k)`` truncation (``first_timestep = k - 1``),
        which starts from a low noise level and is *not* a fast sampler: use :class:`DDIMSampler`.

    Notes
    -----
    ``timesteps`` runs ``first_timestep, ..., 1, 0``; step ``index`` denoises from ``timesteps[index]``.
    """

    name = "ddpm"

    def __init__(self, schedule: NoiseSchedule, first_timestep: int | None = None):
        self.schedule = schedule
        last = schedule.num_timesteps - 1
        first = last if first_timestep is None else int(first_timestep)
        if not 0 <= first <= last:
            raise ConfigError(f"first_timestep must lie in 0 ... {last}, got {first_timestep}")
        self.timesteps = np.arange(first, -1, -1, dtype=np.int64)

    @property
    def num_steps(self) -> int:
        """Number of steps of a full run."""
        return int(self.timesteps.size)

    def noise_level(self, index: int) -> float:
        """sqrt(1 - abar_t) of the latent that step ``index`` starts from."""
        return float(self.schedule.noise_level(self.timesteps[index]))

    def describe(self) -> dict:
        """The settings that define this sampler (for saving with a run)."""
        return {"sampler": self.name, "first_timestep": int(self.timesteps[0])}

    def predict_clean(self, model_eps: np.ndarray, timesteps, sample: np.ndarray) -> np.ndarray:
        """x0_hat = sqrt(1/abar_t) z_t - sqrt(1/abar_t - 1) eps_hat, per sample, float32, no clipping.

        Parameters
        ----------
        model_eps : (B, T, H, W, C) predicted noise.
        timesteps : (B,) int training timestep of each sample.
        sample : (B, T, H, W, C) noisy latent z_t.
        """
        tables = self.schedule.tables()
        t = self.schedule.check_timesteps(timesteps)
        z = check_latent("sample", sample)
        eps = check_latent("model_eps", model_eps, z.shape)
        return (_per_sample(tables["sqrt_recip_alphas_cumprod"], t, z.ndim) * z
                - _per_sample(tables["sqrt_recipm1_alphas_cumprod"], t, z.ndim) * eps)

    def step_at(self, model_eps: np.ndarray, timesteps, sample: np.ndarray, noise: np.ndarray | None,
                guidance: np.ndarray | None = None) -> StepOutput:
        """One ancestral step with a timestep per sample (the reference allows mixed t in a batch).

        Parameters
        ----------
        model_eps : (B, T, H, W, C) float32 denoiser output eps_hat(z_t, t).
        timesteps : (B,) int training timestep of each sample.
        sample : (B, T, H, W, C) float32 noisy latent z_t.
        noise : (B, T, H, W, C) standard normal noise, or None when every t is 0 (no noise is added there).
        guidance : (B, T, H, W, C) guidance direction g = scale * grad_z U(z_t, t), or None; the mean
            moves by ``-std_t * g`` (the reference's convention: scaled by the posterior *std*).

        Returns
        -------
        StepOutput with ``prev_sample`` = z_{t-1}.
        """
        tables = self.schedule.tables()
        t = self.schedule.check_timesteps(timesteps)
        z = check_latent("sample", sample)
        if t.shape != (z.shape[0],):
            raise DataError(f"timesteps must have shape ({z.shape[0]},), one per sample, got {t.shape}")
        pred_clean = self.predict_clean(model_eps, t, z)
        mean = (_per_sample(tables["posterior_mean_coef1"], t, z.ndim) * pred_clean
                + _per_sample(tables["posterior_mean_coef2"], t, z.ndim) * z)
        std = np.exp(np.float32(0.5) * _per_sample(tables["posterior_log_variance_clipped"], t, z.ndim))
        if guidance is not None:
            mean = mean - std * check_latent("guidance", guidance, z.shape)
        noisy = (t > 0).reshape(std.shape)
        if np.any(noisy):
            if noise is None:
                raise DataError("noise is required for a DDPM step at t > 0")
            prev = mean + noisy.astype(np.float32) * std * check_latent("noise", noise, z.shape)
        else:
            prev = mean
        return StepOutput(prev_sample=prev.astype(np.float32), pred_clean=pred_clean.astype(np.float32),
                          mean=mean.astype(np.float32),
                          std=np.where(noisy, std, 0.0).reshape(-1).astype(np.float32))

    def step(self, model_eps: np.ndarray, index: int, sample: np.ndarray, noise: np.ndarray | None,
             guidance: np.ndarray | None = None) -> StepOutput:
        """Step ``index`` of the chain: all samples at timestep ``timesteps[index]``; see :meth:`step_at`."""
        batch = np.asarray(sample).shape[0]
        return self.step_at(model_eps, np.full(batch, self.timesteps[index], dtype=np.int64), sample, noise,
                            guidance)
