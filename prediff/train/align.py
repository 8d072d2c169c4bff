"""Knowledge-alignment trainer: regress the future frames' average intensity from noisy target latents.

The MindEarth reference ships no alignment trainer (facts.md section 5); this follows the PyTorch original:
for a window with cached posterior and clean target frames x (6, H, W, 1) in [0, 1]::

    z_0 = mean_target + std_target * n,   t ~ U{0 .. T-1},   z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps
    y   = mean of x over (H, W, C) per frame                      (6,), [0, 1] units (VIL pixel / 255)
    loss = mean((F(z_t, t)[..., 0] - y) ** 2)

where F is the :class:`prediff.models.alignment.NoisyCuboidTransformerEncoder`. The latent cache
(:func:`prediff.train.ldm.prepare_latent_cache`) holds y as ``target_intensity``.
"""

from __future__ import annotations

import numpy as np

from prediff.diffusion.schedule import NoiseSchedule
from prediff.runtime import mindspore_module
from prediff.train.data import LatentCache, fixed_subset, shard
from prediff.train.distributed import Workers
from prediff.train.optim import AdamWUpdate, ExponentialMovingAverage
from prediff.train.settings import TrainerSettings

ms = mindspore_module()


class AlignmentObjective:
    """The alignment trainer's objective for :func:`prediff.train.loop.run_training`.

    Parameters
    ----------
    config : loaded config (``model.align.model_args`` builds the network, ``model.diffusion`` the schedule).
    settings : ``train.align`` settings.
    train_cache, val_cache : latent caches of the train and val splits; ``val_cache`` may be None.
    workers : process group.
    """

    name = "align"
    kind = "align"
    file_name = "align.ckpt"

    def __init__(self, config: dict, settings: TrainerSettings, train_cache: LatentCache,
                 val_cache: LatentCache | None, workers: Workers = Workers()):
        from prediff.models.alignment import NoisyCuboidTransformerEncoder
        from prediff.train.ldm import check_latent_shapes

        check_latent_shapes(train_cache, config)
        self.settings = settings
        self.workers = workers
        self.schedule = NoiseSchedule.from_config(config["model"]["diffusion"])
        self.network = NoisyCuboidTransformerEncoder(**config["model"]["align"]["model_args"])
        self.network.set_train(True)
        self.train_cache = train_cache
        self.n_items = len(train_cache)
        self.val_cache = val_cache
        self.val_rows = (np.array(fixed_subset(list(range(len(val_cache))), settings.val_windows, settings.seed),
                                  dtype=np.int64) if val_cache is not None else np.zeros(0, np.int64))
        self.update = AdamWUpdate(self._loss, self.network.trainable_params(), settings.weight_decay,
                                  settings.betas, settings.grad_clip, workers)
        self.ema = ExponentialMovingAverage(self.network, settings.ema_decay) if settings.ema_decay else None

    def _loss(self, z_t, t, intensity):
        return ms.ops.square(self.network(z_t, t)[..., 0] - intensity).mean()

    def _draw(self, cache: LatentCache, rows: np.ndarray, rng: np.random.Generator):
        target_shape = (len(rows),) + tuple(cache.target_logvar.shape[1:])
        t = rng.integers(0, self.schedule.num_timesteps, size=len(rows))
        noise = rng.standard_normal(target_shape).astype(np.float32)
        posterior_noise = rng.standard_normal(target_shape).astype(np.float32)
        return t, noise, posterior_noise

    def _inputs(self, cache: LatentCache, rows, t, noise, posterior_noise):
        z_t = self.schedule.q_sample(cache.target_sample(rows, posterior_noise), t, noise)
        intensity = np.asarray(cache.target_intensity[rows], dtype=np.float32)
        return ms.Tensor(z_t), ms.Tensor(t.astype(np.int32)), ms.Tensor(intensity)

    def train_step(self, items: np.ndarray, rng: np.random.Generator, step: int, lr: float) -> dict[str, float]:
        """One step of intensity-regression MSE on global batch ``items`` (window rows of the train cache)."""
        t, noise, posterior_noise = self._draw(self.train_cache, items, rng)
        rank, world = self.workers.rank, self.workers.world
        inputs = self._inputs(self.train_cache, shard(items, rank, world), shard(t, rank, world),
                              shard(noise, rank, world), shard(posterior_noise, rank, world))
        loss, grad_norm = self.update.step(inputs, lr)
        if self.ema is not None:
            self.ema.update()
        return {"loss": loss, "grad_norm": grad_norm}

    def validate(self) -> dict[str, float]:
        """MSE ([0, 1]^2 units) and MAE in VIL pixels of the predicted frame intensities, fixed draws."""
        if not len(self.val_rows):
            return {}
        rng = np.random.default_rng([self.settings.seed, 13])
        self.network.set_train(False)
        errors = []
        for start in range(0, len(self.val_rows), self.settings.batch_size):
            rows = self.val_rows[start:start + self.settings.batch_size]
            z_t, t, intensity = self._inputs(self.val_cache, rows, *self._draw(self.val_cache, rows, rng))
            errors.append(self.network(z_t, t).asnumpy()[..., 0] - intensity.asnumpy())
        self.network.set_train(True)
        errors = np.concatenate(errors)
        return {"loss": float(np.square(errors).mean()), "mae_pixels": float(np.abs(errors).mean() * 255.0)}

    def state(self) -> dict[str, np.ndarray]:
        """Optimiser moments and step (``opt/``), EMA weights (``ema/``) and, for the VAE, the discriminator."""
        arrays = self.update.state("opt/")
        if self.ema is not None:
            arrays.update(self.ema.state("ema/"))
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state` (raises :class:`prediff.errors.CheckpointError` if it does not fit)."""
        self.update.load_state(arrays, "opt/")
        if self.ema is not None:
            self.ema.load_state(arrays, "ema/")

    def published_weights(self) -> dict[str, np.ndarray]:
        """The EMA weights by parameter name when ``ema_decay`` is set, else {} (publish the current weights)."""
        return self.ema.shadow if self.ema is not None else {}
