"""DDIM sampling (Song et al. 2021) on a subset of the training timesteps, with eta in [0, 1].

A step from timestep t to the next timestep s < t of the chosen subset (s = -1 after the last one, with
abar_{-1} = 1), for an eps-predicting denoiser::

    x0_hat  = sqrt(1/abar_t) * z_t - sqrt(1/abar_t - 1) * eps_hat
    sigma   = eta * sqrt((1 - abar_s) / (1 - abar_t)) * sqrt(1 - abar_t / abar_s)
    z_s     = sqrt(abar_s) * x0_hat + sqrt(1 - abar_s - sigma^2) * eps_hat + sigma * noise

eta = 0 is the deterministic DDIM sampler; eta = 1 over all T timesteps is exactly the DDPM ancestral
step (same mean and variance, see ``docs/sampling.md``).

Guidance acts on eps so that x0_hat and the step stay consistent::

    eps' = eps_hat + (S_{t->s} / |c_{t->s}|) * g          g = scale * grad_z U(z_t, t)

where c_{t->s} = d z_s / d eps_hat (< 0) and S_{t->s} = sum of the DDPM posterior stds of the training
steps s+1 ... t. The step's mean therefore moves by exactly ``-S_{t->s} * g``: for unit strides this is the
reference's DDPM shift ``-std_t * g``, and for strided schedules it is the sum of the DDPM shifts the
stride replaces, so ``guidance_scale`` means the same push for any number of steps.

Timestep spacings (how the subset of N of the T training timesteps is chosen), all descending:

* ``"trailing"`` (default): t_k = round(T - k T/N) - 1, starts at T-1 (pure noise), ends at round(T/N) - 1.
  Recommended by Lin et al. (2024, "Common diffusion noise schedules and sample steps are flawed").
* ``"leading"``: t_k = (N - 1 - k) * (T // N), the original DDIM "uniform" subset; ends at 0 but starts
  at (N-1) (T//N), below T-1, so the first latent is slightly too noisy for its timestep.
* ``"linspace"``: round(linspace(T-1, 0, N)): starts at T-1 and ends at 0 (for N > 1).

All three give T-1, ..., 0 for N = T.
"""

from __future__ import annotations

import numpy as np

from prediff.diffusion.ddpm import StepOutput, check_latent
from prediff.diffusion.schedule import NoiseSchedule
from prediff.errors import ConfigError, DataError

SPACINGS = ("trailing", "leading", "linspace")


def ddim_timesteps(num_steps: int, num_train_timesteps: int = 1000, spacing: str = "trailing") -> np.ndarray:
    """The N training timesteps a DDIM run visits, in sampling (descending) order.

    Parameters
    ----------
    num_steps : N, 1 <= N <= T.
    num_train_timesteps : T.
    spacing : ``"trailing"``, ``"leading"`` or ``"linspace"`` (see the module docstring).

    Returns
    -------
    (N,) int64, strictly decreasing, within 0 ... T-1.
    """
    total = int(num_train_timesteps)
    count = int(num_steps)
    if not 1 <= count <= total:
        raise ConfigError(f"the number of DDIM steps must lie in 1 ... {total}, got {num_steps}")
    if spacing == "trailing":
        steps = np.round(np.arange(total, 0, -total / count))[:count].astype(np.int64) - 1
    elif spacing == "leading":
        steps = (np.arange(count, dtype=np.int64) * (total // count))[::-1]
    elif spacing == "linspace":
        steps = np.round(np.linspace(total - 1, 0, count)).astype(np.int64)
    else:
        raise ConfigError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return np.ascontiguousarray(steps)


class DDIMSampler:
    """DDIM sampler over N of the T training timesteps, one step at a time.

    Parameters
    ----------
    schedule : the noise schedule (T training timesteps).
    num_steps : N, number of denoiser evaluations (e.g. 10, 20, 50, 100, or T).
    eta : 0 (deterministic) ... 1 (DDPM-like ancestral noise).
    spacing : timestep spacing, see :func:`ddim_timesteps`.
    """

    name = "ddim"

    def __init__(self, schedule: NoiseSchedule, num_steps: int = 50, eta: float = 0.0, spacing: str = "trailing"):
        if not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(f"eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
        self.schedule = schedule
        self.eta = float(eta)
        self.spacing = spacing
        self.timesteps = ddim_timesteps(num_steps, schedule.num_timesteps, spacing)
        self._coefficients = self._step_coefficients()

    @property
    def num_steps(self) -> int:
        """Number of steps of a full run."""
        return int(self.timesteps.size)

    def noise_level(self, index: int) -> float:
        """sqrt(1 - abar_t) of the latent that step ``index`` starts from."""
        return float(self.schedule.noise_level(self.timesteps[index]))

    def describe(self) -> dict:
        """The settings that define this sampler (for saving with a run)."""
        return {"sampler": self.name, "num_steps": self.num_steps, "eta": self.eta, "spacing": self.spacing}

    def previous_timesteps(self) -> np.ndarray:
        """(N,) int64 timestep each step lands on: the next entry of ``timesteps``, -1 (clean) after the last."""
        return np.append(self.timesteps[1:], -1)

    def _step_coefficients(self) -> dict[str, np.ndarray]:
        """Per-step coefficients in float64, stored float32 (index = step)."""
        tables = self.schedule.float64_tables()
        t = self.timesteps
        s = self.previous_timesteps()
        abar_t = tables["alphas_cumprod"][t]
        abar_s = np.where(s >= 0, tables["alphas_cumprod"][np.maximum(s, 0)], 1.0)
        sigma = self.eta * np.sqrt((1.0 - abar_s) / (1.0 - abar_t) * (1.0 - abar_t / abar_s))
        direction = np.sqrt(np.maximum(1.0 - abar_s - sigma ** 2, 0.0))
        recip = np.sqrt(1.0 / abar_t)
        recipm1 = np.sqrt(1.0 / abar_t - 1.0)
        eps_gain = direction - np.sqrt(abar_s) * recipm1
        ddpm_std = np.exp(0.5 * tables["posterior_log_variance_clipped"])
        cumulative_std = np.concatenate([[0.0], np.cumsum(ddpm_std)])
        summed_std = cumulative_std[t + 1] - cumulative_std[s + 1]
        coefficients = {
            "sqrt_recip_alphas_cumprod": recip,
            "sqrt_recipm1_alphas_cumprod": recipm1,
            "sqrt_alphas_cumprod_prev": np.sqrt(abar_s),
            "direction": direction,
            "sigma": sigma,
            "guidance_eps_weight": summed_std / np.abs(eps_gain),
            "guidance_mean_shift": summed_std,
        }
        return {name: value.astype(np.float32) for name, value in coefficients.items()}

    def guidance_mean_shift(self, index: int) -> float:
        """S_{t->s}: the step's mean moves by ``-S * g`` under guidance g (sum of the replaced DDPM stds)."""
        return float(self._coefficients["guidance_mean_shift"][index])

    def step(self, model_eps: np.ndarray, index: int, sample: np.ndarray, noise: np.ndarray | None,
             guidance: np.ndarray | None = None) -> StepOutput:
        """Step ``index``: from ``timesteps[index]`` to the next timestep of the subset (or to clean).

        Parameters
        ----------
        model_eps : (B, T, H, W, C) float32 denoiser output eps_hat(z_t, t).
        index : step number, 0 ... N-1.
        sample : (B, T, H, W, C) float32 noisy latent z_t.
        noise : (B, T, H, W, C) standard normal noise; may be None when eta = 0 or at the last step.
        guidance : (B, T, H, W, C) guidance direction g = scale * grad_z U(z_t, t), or None
            (see the module docstring for how it enters).

        Returns
        -------
        StepOutput with ``prev_sample`` = z_s.
        """
        if not 0 <= int(index) < self.num_steps:
            raise ConfigError(f"DDIM step index must lie in 0 ... {self.num_steps - 1}, got {index}")
        c = {name: value[int(index)] for name, value in self._coefficients.items()}
        z = check_latent("sample", sample)
        eps = check_latent("model_eps", model_eps, z.shape)
        if guidance is not None:
            eps = eps + c["guidance_eps_weight"] * check_latent("guidance", guidance, z.shape)
        pred_clean = c["sqrt_recip_alphas_cumprod"] * z - c["sqrt_recipm1_alphas_cumprod"] * eps
        mean = c["sqrt_alphas_cumprod_prev"] * pred_clean + c["direction"] * eps
        if c["sigma"] > 0:
            if noise is None:
                raise DataError(f"noise is required for DDIM step {index} (eta = {self.eta})")
            prev = mean + c["sigma"] * check_latent("noise", noise, z.shape)
        else:
            prev = mean
        return StepOutput(prev_sample=prev.astype(np.float32), pred_clean=pred_clean.astype(np.float32),
                          mean=mean.astype(np.float32),
                          std=np.full(z.shape[0], c["sigma"], dtype=np.float32))
