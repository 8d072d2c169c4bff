"""VAE trainer: frame reconstruction + KL (+ optional adversarial patch discriminator), as in PreDiff / LDM.

Items are single frames: every frame of every training window (a frame shared by two overlapping windows
counts twice), optionally cut to a random square crop (``crop_size``; the network is convolutional, and
crops make a CPU step several times cheaper). For frames ``x`` (N, 1, H, W) in [0, 1] (VIL pixel / 255, missing as 0)::

    q(z | x) = encoder(x);   z = mean + std * noise;   x_rec = decoder(z)
    loss = recon(x_rec, x) + kl_weight * KL(q || N(0, I)) / (H * W)
           [ + disc_weight * mean(-D(x_rec))      from step disc_start_step on ]

``recon`` is the per-pixel mean absolute (``l1``), squared (``l2``) error or their sum (``l1+l2``), or the
absolute error weighted by the target's VIL band (``balanced_l1``, :data:`BALANCED_WEIGHTS`; the "balanced" losses
of Shi et al. 2017, TrajGRU, which counter the blur that under-predicts heavy cores). Dividing the
per-frame KL by the pixel count keeps ``kl_weight`` comparable to LDM's 1e-6 on per-frame sums. The
discriminator ``D`` (:class:`PatchDiscriminator`) is trained with the hinge loss on real frames vs
reconstructions; its weight is a constant (``disc_weight``), not LDM's adaptive gradient-ratio weight.

Decoder-only fine-tuning (``train_encoder: false`` with ``init_checkpoint``) freezes the encoder and
``quant_conv`` of a trained VAE: latents already encoded with it (the latent-diffusion trainer's cache) stay valid
while the decoder keeps improving, the way Stable Diffusion's improved decoders were made. The frozen encoder runs
outside the gradient, and the constant KL term is left out.

Validation reconstructs every frame of a fixed subset of validation windows through the posterior mode and
reports the loss, MAE / MSE on the [0, 1] scale and CSI at each SEVIR VIL threshold (aggregate counts).
"""

from __future__ import annotations

import numpy as np

from prediff.config import vae_network_kwargs
from prediff.data.vil import SEVIR_THRESHOLDS
from prediff.errors import ConfigError, DataError
from prediff.runtime import mindspore_module
from prediff.train.data import fixed_subset, open_split, read_windows, shard, unit_frames
from prediff.models.checkpoint import load_network
from prediff.models.vae import gaussian_kl, posterior_parameters
from prediff.train.loop import restore_parameters
from prediff.train.distributed import Workers
from prediff.train.optim import AdamWUpdate, ExponentialMovingAverage
from prediff.train.settings import RECON_LOSSES, TrainerSettings
from prediff.verify.categorical import categorical_accum, categorical_compute, categorical_init

ms = mindspore_module()
nn = ms.nn
ops = ms.ops

#: ``balanced_l1`` weights: (lowest VIL pixel of the band, weight of a target pixel in that band).
BALANCED_WEIGHTS = ((0, 1.0), (16, 2.0), (74, 5.0), (133, 10.0), (181, 20.0))
#: Parameter-name prefixes of the part of the VAE that maps frames to latents (frozen when train_encoder is false).
ENCODER_PREFIXES = ("encoder.", "quant_conv.")


class PatchDiscriminator(nn.Cell):
    """PatchGAN discriminator (pix2pix / LDM style) on single frames.

    ``(N, 1, H, W)`` float32 [0, 1] -> ``(N, 1, H', W')`` real-vs-reconstructed logits, one per patch.
    ``layers`` stride-2 4x4 convolutions with ``channels * 2**i`` outputs (GroupNorm + LeakyReLU(0.2) after all
    but the first), then a stride-1 4x4 convolution to one logit map.
    """

    def __init__(self, layers: int = 3, channels: int = 32):
        super().__init__()
        cells = []
        width_in = 1
        for index in range(layers):
            width = channels * 2 ** index
            cells.append(nn.Conv2d(width_in, width, 4, stride=2, pad_mode="pad", padding=1, has_bias=True))
            if index > 0:
                cells.append(nn.GroupNorm(min(32, width), width))
            cells.append(nn.LeakyReLU(0.2))
            width_in = width
        cells.append(nn.Conv2d(width_in, 1, 4, stride=1, pad_mode="pad", padding=1, has_bias=True))
        self.layers = nn.SequentialCell(cells)

    def construct(self, frames):
        """Patch logits ``(N, 1, H', W')`` of frames ``(N, 1, H, W)``."""
        return self.layers(frames)


class VAELoss(nn.Cell):
    """The VAE's training loss as one Cell, so that ``mindspore.jit`` compiles loss and gradient into one graph.

    ``construct(frames (N, 1, h, w) float32 [0, 1], draws)`` -> scalar loss. With ``train_encoder`` the draws are
    the posterior noise ``(N, L, h/8, w/8)`` (N(0, 1)) and the loss is ``recon + kl_weight * KL / (h * w)``;
    without, they are latents of the frozen encoder and the loss is ``recon`` alone (decoder-only fine-tuning).
    With a ``discriminator`` the generator's hinge term ``- disc_weight * mean(D(x_rec))`` is added.
    Every setting is fixed at construction: a compiled graph does not see later attribute changes.
    """

    def __init__(self, network, recon_loss: str, kl_weight: float, train_encoder: bool = True,
                 discriminator=None, disc_weight: float = 0.0):
        super().__init__()
        if recon_loss not in RECON_LOSSES:
            raise ConfigError(f"train.vae.recon_loss={recon_loss!r} is not one of {', '.join(RECON_LOSSES)}")
        self.network = network
        self.recon_loss = recon_loss
        self.kl_weight = float(kl_weight)
        self.train_encoder = bool(train_encoder)
        self.adversarial = discriminator is not None
        self.discriminator = discriminator
        self.disc_weight = float(disc_weight)

    def reconstruction_loss(self, frames, reconstruction):
        """Mean per-pixel reconstruction loss (scalar) of ``reconstruction`` against ``frames``, both (N, 1, h, w)."""
        error = reconstruction - frames
        if self.recon_loss == "balanced_l1":
            weights = ops.ones_like(frames)
            for (_, lower_weight), (threshold, weight) in zip(BALANCED_WEIGHTS, BALANCED_WEIGHTS[1:]):
                weights = weights + (frames >= threshold / 255.0).astype(ms.float32) * (weight - lower_weight)
            return (weights * ops.abs(error)).mean()
        if self.recon_loss == "l2":
            return ops.square(error).mean()
        if self.recon_loss == "l1+l2":
            return ops.abs(error).mean() + ops.square(error).mean()
        return ops.abs(error).mean()

    @staticmethod
    def kl_per_pixel(mean, logvar, frames):
        """KL(q || N(0, I)) per frame divided by the frame's pixel count, averaged over the batch (scalar)."""
        return gaussian_kl(mean, logvar).mean() / (frames.shape[2] * frames.shape[3])

    def construct(self, frames, draws):
        if self.train_encoder:
            mean, logvar = posterior_parameters(self.network.posterior_moments(frames))
            reconstruction = self.network.decode(mean + ops.exp(0.5 * logvar) * draws)
            loss = (self.reconstruction_loss(frames, reconstruction)
                    + self.kl_weight * self.kl_per_pixel(mean, logvar, frames))
        else:
            reconstruction = self.network.decode(draws)
            loss = self.reconstruction_loss(frames, reconstruction)
        if self.adversarial:
            loss = loss - self.disc_weight * self.discriminator(reconstruction).mean()
        return loss


class DiscriminatorLoss(nn.Cell):
    """Hinge loss of the patch discriminator: ``mean(relu(1 - D(real))) + mean(relu(1 + D(reconstruction)))``."""

    def __init__(self, discriminator):
        super().__init__()
        self.discriminator = discriminator

    def construct(self, frames, reconstruction):
        real = self.discriminator(frames)
        fake = self.discriminator(reconstruction)
        return ops.relu(1.0 - real).mean() + ops.relu(1.0 + fake).mean()


class VAEObjective:
    """The VAE trainer's objective for :func:`prediff.train.loop.run_training`.

    Parameters
    ----------
    config : loaded config (``model.vae`` builds the network).
    settings : ``train.vae`` settings.
    data_root : SEVIR-format tree (train and val splits by the config's dates).
    workers : process group.
    """

    name = "vae"
    kind = "vae"
    file_name = "vae.ckpt"

    def __init__(self, config: dict, settings: TrainerSettings, data_root, workers: Workers = Workers()):
        from prediff.models.vae import AutoencoderKL

        self.settings = settings
        self.workers = workers
        self.network = AutoencoderKL(**vae_network_kwargs(config))
        if settings.init_checkpoint is not None:
            load_network(self.network, settings.init_checkpoint, "vae")
        self.network.set_train(True)
        self.train_data = open_split(data_root, config, "train")
        self.train_windows = self.train_data.windows()
        if not self.train_windows:
            raise DataError(f"the train split of {data_root} has no windows; check --data and the split dates "
                            "(data.train_val_split_date) of the config")
        self.frames_per_window = self.train_data.window.length
        self._frame_size = self.train_data.event_shape(self.train_windows[0][0])[1]
        crop = settings.crop_size
        if crop is not None and (crop > self._frame_size or crop % self.network.downsampling_factor):
            raise ConfigError(f"train.vae.crop_size {crop} must be at most the frame size {self._frame_size} and a "
                              f"multiple of the VAE's downsampling factor {self.network.downsampling_factor}")
        self.n_items = len(self.train_windows) * self.frames_per_window
        self.val_data = open_split(data_root, config, "val")
        self.val_windows = fixed_subset(self.val_data.windows(), settings.val_windows, settings.seed)
        self.discriminator = None
        self.adversarial_active = False
        trained = [p for p in self.network.trainable_params()
                   if settings.train_encoder or not p.name.startswith(ENCODER_PREFIXES)]
        self.loss = VAELoss(self.network, settings.recon_loss, settings.kl_weight, settings.train_encoder)
        self.update = AdamWUpdate(self.loss, trained, settings.weight_decay, settings.betas, settings.grad_clip,
                                  workers, compile_graph=True)
        if settings.disc_start_step is not None:
            self.discriminator = PatchDiscriminator(settings.disc_layers, settings.disc_channels)
            self.discriminator.set_train(True)
            self.disc_update = AdamWUpdate(DiscriminatorLoss(self.discriminator),
                                           self.discriminator.trainable_params(), 0.0, settings.betas,
                                           settings.grad_clip, workers, compile_graph=True)
            # same parameters and optimiser state, plus the generator's adversarial term
            self.adversarial_update = self.update.with_loss(
                VAELoss(self.network, settings.recon_loss, settings.kl_weight, settings.train_encoder,
                        self.discriminator, settings.disc_weight))
        self.ema = (ExponentialMovingAverage(self.network, settings.ema_decay)
                    if settings.ema_decay is not None else None)

    # --- loop interface ----------------------------------------------------------------------------------

    def _frames(self, items: np.ndarray, corners: np.ndarray | None) -> np.ndarray:
        """(n, 1, h, w) float32 [0, 1] frames of ``items``, cropped at ``corners`` (n, 2) when given."""
        windows, frames = np.divmod(items, self.frames_per_window)
        pixels = read_windows(self.train_data, self.train_windows, windows)
        selected = pixels[np.arange(len(items)), frames]
        if corners is not None:
            size = self.settings.crop_size
            selected = np.stack([frame[r:r + size, c:c + size] for frame, (r, c) in zip(selected, corners)])
        return np.ascontiguousarray(unit_frames(selected).transpose(0, 3, 1, 2))

    def train_step(self, items: np.ndarray, rng: np.random.Generator, step: int, lr: float) -> dict[str, float]:
        """One step on the global batch of frame ``items``: VAE update, then (if active) discriminator update."""
        rank, world = self.workers.rank, self.workers.world
        latent_shape = self._latent_shape()
        corners = None
        if self.settings.crop_size is not None:
            corners = rng.integers(0, self._frame_size - self.settings.crop_size + 1, size=(len(items), 2))
        noise = rng.standard_normal((len(items),) + latent_shape).astype(np.float32)
        local = shard(items, rank, world)
        frames = ms.Tensor(self._frames(local, None if corners is None else shard(corners, rank, world)))
        local_noise = ms.Tensor(shard(noise, rank, world))
        self.adversarial_active = self.discriminator is not None and step >= self.settings.disc_start_step
        update = self.adversarial_update if self.adversarial_active else self.update
        if self.settings.train_encoder:
            loss, grad_norm = update.step((frames, local_noise), lr)
        else:
            latents = ops.stop_gradient(self.network.encode(frames).sample(local_noise))
            loss, grad_norm = update.step((frames, latents), lr)
        metrics = {"loss": loss, "grad_norm": grad_norm}
        if self.adversarial_active:
            reconstruction = self.network.decode(self.network.encode(frames).sample(local_noise))
            disc_loss, _ = self.disc_update.step((frames, ops.stop_gradient(reconstruction)), self.settings.disc_lr)
            metrics["disc_loss"] = self.workers.mean(disc_loss)
        if self.ema is not None:
            self.ema.update()
        return metrics

    def _latent_shape(self) -> tuple[int, int, int]:
        size = self.settings.crop_size or self._frame_size
        factor = self.network.downsampling_factor
        return (self.network.latent_channels, size // factor, size // factor)

    def validate(self) -> dict[str, float]:
        """Loss, MAE, MSE ([0, 1] scale) and CSI per SEVIR threshold of posterior-mode reconstructions."""
        if not self.val_windows:
            return {}
        self.network.set_train(False)
        counts = categorical_init(SEVIR_THRESHOLDS, n_lead_times=self.frames_per_window)
        totals = {"loss": 0.0, "mae": 0.0, "mse": 0.0}
        for index in range(len(self.val_windows)):
            pixels = read_windows(self.val_data, self.val_windows, [index])
            frames_np = np.ascontiguousarray(unit_frames(pixels[0]).transpose(0, 3, 1, 2))
            frames = ms.Tensor(frames_np)
            posterior = self.network.encode(frames)
            reconstruction = self.network.decode(posterior.mode())
            recon = self.loss.reconstruction_loss(frames, reconstruction)
            kl = self.loss.kl_per_pixel(posterior.mean, posterior.logvar, frames)
            totals["loss"] += float((recon + self.settings.kl_weight * kl).asnumpy())
            rec = reconstruction.asnumpy()
            totals["mae"] += float(np.abs(rec - frames_np).mean())
            totals["mse"] += float(np.square(rec - frames_np).mean())
            categorical_accum(counts, (rec[:, 0] * 255.0)[None], pixels.astype(np.float32))
        self.network.set_train(True)
        scores = categorical_compute(counts)["all_lead_times"]["CSI"][0]
        metrics = {key: value / len(self.val_windows) for key, value in totals.items()}
        metrics.update({f"csi_{int(t)}": float(s) for t, s in zip(SEVIR_THRESHOLDS, scores)})
        return metrics

    def state(self) -> dict[str, np.ndarray]:
        """Optimiser moments and step (``opt/``), EMA weights (``ema/``) and, for the VAE, the discriminator."""
        arrays = self.update.state("opt/")
        if self.ema is not None:
            arrays.update(self.ema.state("ema/"))
        if self.discriminator is not None:
            arrays.update({f"disc/{n}": p.asnumpy() for n, p in self.discriminator.parameters_and_names()})
            arrays.update(self.disc_update.state("disc_opt/"))
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state` (raises :class:`prediff.errors.CheckpointError` if it does not fit)."""
        self.update.load_state(arrays, "opt/")
        if self.ema is not None:
            self.ema.load_state(arrays, "ema/")
        if self.discriminator is not None:
            restore_parameters(self.discriminator, arrays, "disc/", "discriminator")
            self.disc_update.load_state(arrays, "disc_opt/")

    def published_weights(self) -> dict[str, np.ndarray]:
        """The EMA weights by parameter name when ``ema_decay`` is set, else {} (publish the current weights)."""
        return self.ema.shadow if self.ema is not None else {}

