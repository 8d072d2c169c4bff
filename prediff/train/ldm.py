"""Latent-diffusion trainer: epsilon prediction on the latents of a frozen VAE, conditioned on the context.

For a window with cached posterior (see :class:`prediff.train.data.LatentCache`)::

    z_0  = mean_target + std_target * n         (a fresh posterior sample of the 6 target latents)
    cond = mean_context                          (the posterior mode of the 7 context latents)
    t ~ U{0 .. T-1},  eps ~ N(0, I),  z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps
    loss = mean((denoiser(z_t, t, cond) - eps) ** 2)

as in MindEarth PreDiff (facts.md section 6), with our AdamW + warm-up + cosine schedule, global-norm clipping
and optional EMA weights (the EMA is what ``diffusion.ckpt`` holds when ``ema_decay`` is set).

The latents are encoded once per (VAE checkpoint, dataset split) by :func:`prepare_latent_cache` and read
from memory-mapped ``.npy`` files afterwards; the alignment trainer shares the same cache.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from prediff.config import latent_scale, vae_network_kwargs
from prediff.diffusion.schedule import NoiseSchedule
from prediff.errors import CheckpointError, ConfigError, DataError
from prediff.runtime import mindspore_module
from prediff.train.data import (LatentCache, build_latent_cache, file_digest, fixed_subset, latent_cache_key,
                                open_latent_cache, open_split, shard)
from prediff.train.distributed import Workers
from prediff.train.optim import AdamWUpdate, ExponentialMovingAverage
from prediff.train.settings import TrainerSettings

ms = mindspore_module()

#: How long workers other than 0 wait for worker 0 to finish encoding the latent cache.
CACHE_WAIT_SECONDS = 6 * 3600


def vae_posterior_encoder(vae, frames_per_call: int = 26) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A function mapping frames ``(n, L, H, W, 1)`` float32 [0, 1] to the VAE posterior's (mean, logvar).

    Both outputs are ``(n, L, h, w, C)`` float32 (NTHWC latents); ``frames_per_call`` bounds memory.
    """

    def encode(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, length, height, width, channels = frames.shape
        flat = np.ascontiguousarray(frames.reshape(n * length, height, width, channels).transpose(0, 3, 1, 2))
        means, logvars = [], []
        for start in range(0, len(flat), frames_per_call):
            posterior = vae.encode(ms.Tensor(flat[start:start + frames_per_call]))
            means.append(posterior.mean.asnumpy())
            logvars.append(posterior.logvar.asnumpy())

        def nthwc(parts):
            array = np.concatenate(parts)
            return array.transpose(0, 2, 3, 1).reshape((n, length) + array.shape[2:] + (array.shape[1],))

        return nthwc(means), nthwc(logvars)

    return encode


def prepare_latent_cache(config: dict, vae_checkpoint: str | Path, data_root, split: str, directory: str | Path,
                         workers: Workers = Workers(), progress: bool = True) -> LatentCache:
    """The latent cache of ``split`` for the VAE in ``vae_checkpoint``, encoding it first if needed.

    Worker 0 encodes (and writes ``directory``); the other workers wait for the finished cache. A cache built
    for another VAE checkpoint, dataset, split or window is rebuilt.

    Raises
    ------
    CheckpointError : the VAE checkpoint is missing or does not fit ``model.vae``.
    DataError : the split has no windows; a worker waited too long for worker 0.
    """
    vae_checkpoint = Path(vae_checkpoint)
    if not vae_checkpoint.is_file():
        raise CheckpointError(f"the VAE checkpoint {vae_checkpoint} does not exist; train it first with "
                              "`prediff train vae ...` or pass --vae PATH/vae.ckpt")
    dataset = open_split(data_root, config, split)
    key = latent_cache_key(file_digest(vae_checkpoint), dataset)
    directory = Path(directory)
    cache = open_latent_cache(directory, key, dataset)
    if cache is not None:
        return cache
    if not workers.is_main:
        deadline = time.monotonic() + CACHE_WAIT_SECONDS
        while cache is None:
            if time.monotonic() > deadline:
                raise DataError(f"worker {workers.rank} gave up waiting for worker 0 to write the latent cache "
                                f"{directory}; check worker 0's log")
            time.sleep(2.0)
            cache = open_latent_cache(directory, key, dataset)
        return cache
    from prediff.models.checkpoint import load_network
    from prediff.models.vae import AutoencoderKL
    from tqdm import tqdm

    vae = AutoencoderKL(**vae_network_kwargs(config))
    load_network(vae, vae_checkpoint, "vae")
    vae.set_train(False)
    events = len(dict.fromkeys(event_id for event_id, _ in dataset.windows()))
    with tqdm(total=events, desc=f"encode {split} latents", unit="event", disable=not progress) as bar:
        def advance(done: int, total: int) -> None:
            bar.update(done - bar.n)

        return build_latent_cache(vae_posterior_encoder(vae), dataset, directory, key, progress=advance)


def check_latent_shapes(cache: LatentCache, config: dict) -> None:
    """Raise :class:`ConfigError` if the cached latents do not have the denoiser's shapes."""
    expected_context = list(config["model"]["latent_model"]["input_shape"])
    expected_target = list(config["model"]["latent_model"]["target_shape"])
    context = [cache.context] + list(cache.latent_shape)
    target = [cache.target] + list(cache.latent_shape)
    if context != expected_context or target != expected_target:
        raise ConfigError(f"the VAE's latents are context {context} / target {target} (T, H, W, C) but "
                          f"model.latent_model expects {expected_context} / {expected_target}; the frame size of "
                          "the data, the VAE's depth and the latent shapes of the config must agree")


class LatentObjective:
    """What the latent-diffusion and alignment objectives share: a network trained on noised target latents.

    Both draw (t, eps, posterior noise) per window of a latent cache, noise a fresh posterior sample of the target
    latents with the diffusion schedule, and train with AdamW (+ optional EMA). Subclasses set ``name``, ``kind``,
    ``file_name``, build ``network`` and define ``_loss``, ``_inputs`` and ``validate``.

    Parameters
    ----------
    config : loaded config (``model.diffusion`` builds the schedule).
    settings : the trainer's settings.
    train_cache, val_cache : latent caches of the train and val splits (:func:`prepare_latent_cache`);
        ``val_cache`` may be None (no validation).
    workers : process group.
    network : the network to train (built by the subclass after the cache shapes were checked).
    """

    def __init__(self, config: dict, settings: TrainerSettings, train_cache: LatentCache,
                 val_cache: LatentCache | None, workers: Workers, network):
        self.settings = settings
        self.workers = workers
        self.schedule = NoiseSchedule.from_config(config["model"]["diffusion"])
        self.latent_scale = latent_scale(config)
        self.network = network
        self.network.set_train(True)
        self.train_cache = train_cache
        self.n_items = len(train_cache)
        self.val_cache = val_cache
        self.val_rows = (np.array(fixed_subset(list(range(len(val_cache))), settings.val_windows, settings.seed),
                                  dtype=np.int64) if val_cache is not None else np.zeros(0, np.int64))
        self.update = AdamWUpdate(self._loss, self.network.trainable_params(), settings.weight_decay,
                                  settings.betas, settings.grad_clip, workers)
        self.ema = ExponentialMovingAverage(self.network, settings.ema_decay) if settings.ema_decay else None

    def _draw(self, cache: LatentCache, rows: np.ndarray, rng: np.random.Generator):
        """Draw (t, eps, posterior noise) for ``rows`` of ``cache``, as numpy arrays.

        The draws are made for all of ``rows`` (the global batch) so that every worker consumes the same
        random numbers; the caller keeps its shard.
        """
        target_shape = (len(rows), cache.target) + cache.latent_shape
        t = rng.integers(0, self.schedule.num_timesteps, size=len(rows))
        noise = rng.standard_normal(target_shape).astype(np.float32)
        posterior_noise = rng.standard_normal(target_shape).astype(np.float32)
        return t, noise, posterior_noise

    def train_step(self, items: np.ndarray, rng: np.random.Generator, step: int, lr: float) -> dict[str, float]:
        """One optimisation step of ``_loss`` on global batch ``items`` (window rows of the train cache)."""
        t, noise, posterior_noise = self._draw(self.train_cache, items, rng)
        rank, world = self.workers.rank, self.workers.world
        inputs = self._inputs(self.train_cache, shard(items, rank, world), shard(t, rank, world),
                              shard(noise, rank, world), shard(posterior_noise, rank, world))
        loss, grad_norm = self.update.step(inputs, lr)
        if self.ema is not None:
            self.ema.update()
        return {"loss": loss, "grad_norm": grad_norm}

    def state(self) -> dict[str, np.ndarray]:
        """Optimiser moments and step (``opt/``) and EMA weights (``ema/``)."""
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


class LatentDiffusionObjective(LatentObjective):
    """The latent-diffusion trainer's objective for :func:`prediff.train.loop.run_training`.

    Parameters
    ----------
    config : loaded config (``model.latent_model`` builds the denoiser, ``model.diffusion`` the schedule).
    settings : ``train.ldm`` settings.
    train_cache, val_cache : latent caches of the train and val splits (:func:`prepare_latent_cache`);
        ``val_cache`` may be None (no validation).
    workers : process group.
    """

    name = "ldm"
    kind = "latent"
    file_name = "diffusion.ckpt"

    def __init__(self, config: dict, settings: TrainerSettings, train_cache: LatentCache,
                 val_cache: LatentCache | None, workers: Workers = Workers()):
        from prediff.models.earthformer_unet import CuboidTransformerUNet

        check_latent_shapes(train_cache, config)
        super().__init__(config, settings, train_cache, val_cache, workers,
                         CuboidTransformerUNet(**config["model"]["latent_model"]))

    def _loss(self, z_t, t, cond, noise):
        return ms.ops.square(self.network(z_t, t, cond) - noise).mean()

    def _inputs(self, cache: LatentCache, rows: np.ndarray, t, noise, posterior_noise):
        clean = self.latent_scale * cache.target_sample(rows, posterior_noise)
        z_t = self.schedule.q_sample(clean, t, noise)
        cond = self.latent_scale * cache.conditioning(rows)
        return ms.Tensor(z_t), ms.Tensor(t.astype(np.int32)), ms.Tensor(cond), ms.Tensor(noise)

    def validate(self) -> dict[str, float]:
        """Epsilon MSE on the fixed validation windows with fixed draws, overall and per quarter of t."""
        if not len(self.val_rows):
            return {}
        rng = np.random.default_rng([self.settings.seed, 11])
        self.network.set_train(False)
        errors, steps = [], []
        for start in range(0, len(self.val_rows), self.settings.batch_size):
            rows = self.val_rows[start:start + self.settings.batch_size]
            t, noise, posterior_noise = self._draw(self.val_cache, rows, rng)
            z_t, t_tensor, cond, _ = self._inputs(self.val_cache, rows, t, noise, posterior_noise)
            predicted = self.network(z_t, t_tensor, cond).asnumpy()
            errors.append(np.square(predicted - noise).reshape(len(rows), -1).mean(axis=1))
            steps.append(t)
        self.network.set_train(True)
        errors, steps = np.concatenate(errors), np.concatenate(steps)
        metrics = {"loss": float(errors.mean())}
        quarter = self.schedule.num_timesteps / 4
        for index in range(4):
            chosen = (steps >= index * quarter) & (steps < (index + 1) * quarter)
            if chosen.any():
                metrics[f"loss_t{int(index * quarter)}-{int((index + 1) * quarter) - 1}"] = float(errors[chosen].mean())
        return metrics

