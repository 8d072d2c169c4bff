"""Knowledge-alignment trainer: regress the future frames' average intensity from noisy target latents.

The MindEarth reference ships no alignment trainer (facts.md section 5); this follows the PyTorch original:
for a window with cached posterior and clean target frames x (6, H, W, 1) in [0, 1]::

    z_0 = mean_target + std_target * n,   t ~ U{0 .. T-1},   z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps
    y   = mean of x over (H, W, C) per frame                      (6,), [0, 1] units (VIL pixel / 255)
    loss = mean((F(z_t, t)[..., 0] - y) ** 2)

where F is the :class:`prediff.models.alignment.NoisyCuboidTransformerEncoder`. The latent cache
(:func:`prediff.train.ldm.prepare_latent_cache`) holds y per frame (``target_intensity``).
"""

from __future__ import annotations

import numpy as np

from prediff.runtime import mindspore_module
from prediff.train.data import LatentCache
from prediff.train.distributed import Workers
from prediff.train.ldm import LatentObjective, check_latent_shapes
from prediff.train.settings import TrainerSettings

ms = mindspore_module()


class AlignmentObjective(LatentObjective):
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

        check_latent_shapes(train_cache, config)
        super().__init__(config, settings, train_cache, val_cache, workers,
                         NoisyCuboidTransformerEncoder(**config["model"]["align"]["model_args"]))

    def _loss(self, z_t, t, intensity):
        return ms.ops.square(self.network(z_t, t)[..., 0] - intensity).mean()

    def _inputs(self, cache: LatentCache, rows, t, noise, posterior_noise):
        z_t = self.schedule.q_sample(self.latent_scale * cache.target_sample(rows, posterior_noise), t, noise)
        intensity = cache.target_intensity(rows)
        return ms.Tensor(z_t), ms.Tensor(t.astype(np.int32)), ms.Tensor(intensity)

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
