"""The diffusion noise schedule: beta_t and every table derived from it, as numpy arrays.

PreDiff (and MindEarth's reference) use the latent-diffusion "linear" schedule over 1000 training steps,
which is linear in sqrt(beta)::

    beta_t = linspace(sqrt(1e-4), sqrt(2e-2), 1000)[t] ** 2        t = 0 ... 999

Every table is derived in float64 and stored as float32, exactly as the reference does, so samplers that
index these tables reproduce the reference's arithmetic. The float64 tables stay available for
samplers that combine entries (DDIM strides), where rounding a product of float32 entries would add error.

The schedule holds no weights and no framework tensors: samplers apply it in numpy.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from prediff.errors import ConfigError

#: Floor of the posterior variance before its logarithm (the reference's clip; log(1e-20) = -46.05 at t = 0).
POSTERIOR_VARIANCE_FLOOR = 1e-20


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """Variance-preserving noise schedule with T training timesteps.

    ``z_t = sqrt(abar_t) * z_0 + sqrt(1 - abar_t) * noise`` with ``abar_t = prod_{s<=t} (1 - beta_s)``.

    Attributes
    ----------
    betas : (T,) float64, beta_t (dimensionless variance added at step t).

    All other tables are properties: float32 arrays of shape (T,), derived in float64 (the reference's
    ``register_schedule``), or float64 through :meth:`float64_tables`.
    """

    betas: np.ndarray

    def __post_init__(self):
        betas = np.asarray(self.betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size < 2:
            raise ConfigError(f"a noise schedule needs a 1-D array of at least 2 betas, got shape {betas.shape}")
        if not np.all((betas > 0) & (betas < 1)):
            raise ConfigError("every beta of a noise schedule must lie in (0, 1); check linear_start / linear_end")
        object.__setattr__(self, "betas", betas)
        tables64 = _derive_tables(betas)
        tables32 = {name: table.astype(np.float32) for name, table in tables64.items()}
        for table in (*tables64.values(), *tables32.values()):
            table.setflags(write=False)
        object.__setattr__(self, "_tables64", tables64)
        object.__setattr__(self, "_tables32", tables32)

    @classmethod
    def linear(cls, num_timesteps: int = 1000, linear_start: float = 1e-4,
               linear_end: float = 2e-2) -> "NoiseSchedule":
        """The latent-diffusion "linear" schedule: betas linear in sqrt(beta), computed in float64.

        Parameters
        ----------
        num_timesteps : T, number of training timesteps (1000 in PreDiff).
        linear_start, linear_end : beta_0 and beta_{T-1}.
        """
        if int(num_timesteps) < 2:
            raise ConfigError(f"timesteps must be at least 2, got {num_timesteps}")
        roots = np.linspace(np.sqrt(linear_start), np.sqrt(linear_end), int(num_timesteps), dtype=np.float64)
        return cls(roots ** 2)

    @classmethod
    def from_config(cls, diffusion_config: Mapping) -> "NoiseSchedule":
        """Build the schedule from a reference-style ``model.diffusion`` config section.

        Reads ``timesteps``, ``beta_schedule`` (only ``"linear"`` is supported, as in every published
        PreDiff config), ``linear_start``, ``linear_end`` and ``given_betas`` (a list overrides the rest).
        """
        given = diffusion_config.get("given_betas")
        if given is not None:
            return cls(np.asarray(given, dtype=np.float64))
        kind = diffusion_config.get("beta_schedule", "linear")
        if kind != "linear":
            raise ConfigError(f"beta_schedule {kind!r} is not supported; use 'linear' (the PreDiff schedule) "
                              "or give the betas explicitly with given_betas")
        return cls.linear(int(diffusion_config.get("timesteps", 1000)),
                          float(diffusion_config.get("linear_start", 1e-4)),
                          float(diffusion_config.get("linear_end", 2e-2)))

    @property
    def num_timesteps(self) -> int:
        """T, the number of training timesteps."""
        return int(self.betas.size)

    def float64_tables(self) -> dict[str, np.ndarray]:
        """Every derived table in float64 (read-only), keyed by the reference's buffer names without ``sched_``.

        Returns
        -------
        dict of (T,) float64 arrays: ``betas``, ``alphas_cumprod``, ``alphas_cumprod_prev``,
        ``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod``, ``sqrt_recip_alphas_cumprod``,
        ``sqrt_recipm1_alphas_cumprod``, ``posterior_variance``, ``posterior_log_variance_clipped``,
        ``posterior_mean_coef1``, ``posterior_mean_coef2``.
        """
        return self._tables64

    def tables(self) -> dict[str, np.ndarray]:
        """The float32 tables the reference stores (same keys as :meth:`float64_tables`, read-only)."""
        return self._tables32

    def noise_level(self, timestep) -> np.ndarray:
        """sqrt(1 - abar_t): the standard deviation of the noise in z_t (0 = clean, ~1 = pure noise).

        Parameters
        ----------
        timestep : int or int array, 0 <= t < T.

        Returns
        -------
        float64 array of the shape of ``timestep``.
        """
        return np.sqrt(1.0 - self._tables64["alphas_cumprod"][np.asarray(timestep)])

    def q_sample(self, clean: np.ndarray, timesteps, noise: np.ndarray) -> np.ndarray:
        """Noise clean samples to step t: ``sqrt(abar_t) * clean + sqrt(1 - abar_t) * noise`` (the training input).

        Parameters
        ----------
        clean : (B, ...) float32, z_0 (e.g. NTHWC target latents).
        timesteps : (B,) int, 0 <= t < T, one per sample.
        noise : (B, ...) float32 N(0, 1) draws, same shape as ``clean``.

        Returns
        -------
        (B, ...) float32 z_t, computed with the float32 tables like the reference's ``q_sample``.
        """
        t = self.check_timesteps(timesteps)
        shape = (-1,) + (1,) * (np.ndim(clean) - 1)
        signal = self._tables32["sqrt_alphas_cumprod"][t].reshape(shape)
        spread = self._tables32["sqrt_one_minus_alphas_cumprod"][t].reshape(shape)
        return (signal * np.asarray(clean, np.float32) + spread * np.asarray(noise, np.float32)).astype(np.float32)

    def check_timesteps(self, timesteps) -> np.ndarray:
        """Return ``timesteps`` as an int64 array after checking 0 <= t < T (raises :class:`ConfigError`)."""
        t = np.asarray(timesteps)
        if not np.issubdtype(t.dtype, np.integer):
            raise ConfigError(f"timesteps must be integers, got dtype {t.dtype}")
        if t.size and (t.min() < 0 or t.max() >= self.num_timesteps):
            raise ConfigError(f"timesteps must lie in 0 ... {self.num_timesteps - 1}, got {t.min()} ... {t.max()}")
        return t.astype(np.int64)


def _derive_tables(betas: np.ndarray) -> dict[str, np.ndarray]:
    """The reference's ``register_schedule`` in float64 (``v_posterior = 0``)."""
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.append(1.0, abar[:-1])
    posterior_variance = betas * (1.0 - abar_prev) / (1.0 - abar)
    return {
        "betas": betas.copy(),
        "alphas_cumprod": abar,
        "alphas_cumprod_prev": abar_prev,
        "sqrt_alphas_cumprod": np.sqrt(abar),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - abar),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / abar),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / abar - 1.0),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": np.log(np.maximum(posterior_variance, POSTERIOR_VARIANCE_FLOOR)),
        "posterior_mean_coef1": betas * np.sqrt(abar_prev) / (1.0 - abar),
        "posterior_mean_coef2": (1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar),
    }
