"""The ``train:`` section of a PreDiff config: what the published ``diffusion.yaml`` does not say about training.

The published config describes the networks (``model``) and, loosely, one optimiser (``optim``) that its own
trainer does not even use (facts.md section 6). Our trainers read one section per objective::

    train:
      seed: 0                  # data order, noise draws, dropout masks and initial weights
      vae:   {steps: ..., batch_size: ..., lr: ..., recon_loss: l1, kl_weight: 1.0e-6, ...}
      ldm:   {steps: ..., batch_size: ..., lr: ..., ema_decay: 0.999, ...}
      align: {steps: ..., batch_size: ..., lr: ..., ...}

Every key is optional; left-out keys take the defaults of :data:`COMMON_KEYS` / :data:`TRAINER_KEYS`
(``seed`` defaults to ``optim.seed``). Unknown keys and wrong types raise :class:`ConfigError` naming the key
and the nearest valid one, like the ``model`` sections.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping

from prediff.errors import ConfigError

TRAINERS = ("vae", "ldm", "align")

#: Keys shared by the three trainers: (type, default, meaning).
COMMON_KEYS: dict[str, tuple[type, Any, str]] = {
    "steps": (int, 10000, "optimiser steps of the learning-rate schedule (warm-up + cosine decay)"),
    "batch_size": (int, 8, "items per step over all workers (frames for the VAE, windows otherwise)"),
    "lr": (float, 1e-4, "peak learning rate of AdamW"),
    "weight_decay": (float, 0.0, "AdamW decoupled weight decay, applied to weight matrices only"),
    "betas": (list, [0.9, 0.999], "AdamW beta1, beta2"),
    "warmup_steps": (int, 100, "linear warm-up from warmup_min_lr_ratio * lr to lr"),
    "warmup_min_lr_ratio": (float, 0.1, "learning rate at step 0 as a fraction of lr"),
    "min_lr_ratio": (float, 0.01, "learning rate at the last step as a fraction of lr (cosine floor)"),
    "grad_clip": (float, 1.0, "global-norm gradient clipping threshold; 0 = off"),
    "ema_decay": (float, None, "decay of the exponential moving average of the weights saved for inference; "
                               "null = no EMA"),
    "val_every": (int, 500, "validate every this many steps; 0 = never"),
    "val_windows": (int, 32, "validation windows (a fixed subset of the val split)"),
    "checkpoint_every": (int, 500, "write the checkpoint and the training state every this many steps"),
    "log_every": (int, 10, "append the training loss to the CSV every this many steps"),
}

#: Keys of one trainer only.
TRAINER_KEYS: dict[str, dict[str, tuple[type, Any, str]]] = {
    "vae": {
        "recon_loss": (str, "l1", "pixel reconstruction loss on the [0, 1] scale: l1, l2, l1+l2, or balanced_l1 "
                                  "(l1 weighted by the target's VIL band, see prediff.train.vae.BALANCED_WEIGHTS)"),
        "init_checkpoint": (str, None, "start from the weights of this vae.ckpt (e.g. an earlier run's) instead of "
                                       "random initial weights; null = random"),
        "train_encoder": (bool, True, "false = decoder-only fine-tuning: the encoder and quant_conv of "
                                      "init_checkpoint stay frozen, so latents encoded with it stay valid"),
        "crop_size": (int, None, "train on random square crops of this many pixels (a multiple of the VAE's "
                                 "downsampling factor) instead of whole frames; null = whole frames. Validation "
                                 "always uses whole frames"),
        "kl_weight": (float, 1e-6, "weight of the KL term (KL per frame divided by the frame's pixel count)"),
        "disc_start_step": (int, None, "step from which the patch discriminator is trained and used; null = off"),
        "disc_weight": (float, 0.1, "weight of the generator's adversarial (hinge) loss"),
        "disc_lr": (float, 1e-4, "AdamW learning rate of the discriminator (constant)"),
        "disc_layers": (int, 3, "strided convolution layers of the patch discriminator"),
        "disc_channels": (int, 32, "channels of the discriminator's first layer (doubled per layer)"),
    },
    "ldm": {},
    "align": {},
}

RECON_LOSSES = ("l1", "l2", "l1+l2", "balanced_l1")


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """Validated settings of one trainer (see :data:`COMMON_KEYS` and :data:`TRAINER_KEYS` for the meaning).

    Attributes
    ----------
    trainer : "vae", "ldm" or "align".
    seed : the run's seed.
    values : every key of the trainer, defaults filled in.
    """

    trainer: str
    seed: int
    values: dict

    def __getattr__(self, name: str):
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)


def trainer_settings(config: Mapping[str, Any], trainer: str) -> TrainerSettings:
    """Read and check ``config["train"][trainer]``.

    Parameters
    ----------
    config : a config loaded by :func:`prediff.config.load_config`.
    trainer : "vae", "ldm" or "align".

    Raises
    ------
    ConfigError
        Unknown trainer, unknown key (with the nearest valid one), wrong type or out-of-range value.
    """
    if trainer not in TRAINERS:
        raise ConfigError(f"unknown trainer {trainer!r}; choose one of {', '.join(TRAINERS)}")
    section = config.get("train") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"the train section must be a mapping with keys seed, {', '.join(TRAINERS)}")
    _reject_unknown(section, ("seed",) + TRAINERS, "train")
    seed = section.get("seed", (config.get("optim") or {}).get("seed", 0))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"train.seed must be a non-negative integer, got {seed!r}")
    own = section.get(trainer) or {}
    if not isinstance(own, Mapping):
        raise ConfigError(f"train.{trainer} must be a mapping of training settings, got {own!r}")
    schema = {**COMMON_KEYS, **TRAINER_KEYS[trainer]}
    _reject_unknown(own, tuple(schema), f"train.{trainer}")
    values = {}
    for key, (kind, default, _) in schema.items():
        values[key] = _convert(own[key], kind, f"train.{trainer}.{key}", default) if key in own else default
    _check_ranges(values, trainer)
    return TrainerSettings(trainer=trainer, seed=int(seed), values=values)


def _reject_unknown(section: Mapping, valid: tuple[str, ...], where: str) -> None:
    for key in section:
        if key not in valid:
            nearest = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
            hint = f" (did you mean {nearest[0]!r}?)" if nearest else ""
            raise ConfigError(f"unknown key {where}.{key}{hint}; valid keys: {', '.join(valid)}")


def _convert(value, kind: type, where: str, default):
    if value is None and default is None:
        return None
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    if kind is list and isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list of two numbers"}[kind]
    optional = " or null" if default is None else ""
    raise ConfigError(f"{where} must be {words}{optional}, got {value!r}")


def _check_ranges(values: dict, trainer: str) -> None:
    where = f"train.{trainer}"
    positive = ("steps", "batch_size", "checkpoint_every", "log_every")
    for key in positive:
        if values[key] < 1:
            raise ConfigError(f"{where}.{key} must be at least 1, got {values[key]}")
    for key in ("val_every", "val_windows", "warmup_steps"):
        if values[key] < 0:
            raise ConfigError(f"{where}.{key} must be >= 0, got {values[key]}")
    if values["lr"] <= 0 or values["weight_decay"] < 0 or values["grad_clip"] < 0:
        raise ConfigError(f"{where}: lr must be > 0, weight_decay and grad_clip >= 0")
    for key in ("warmup_min_lr_ratio", "min_lr_ratio"):
        if not 0 <= values[key] <= 1:
            raise ConfigError(f"{where}.{key} must lie in [0, 1], got {values[key]}")
    if not all(0 <= b < 1 for b in values["betas"]):
        raise ConfigError(f"{where}.betas must lie in [0, 1), got {values['betas']}")
    if values["ema_decay"] is not None and not 0 < values["ema_decay"] < 1:
        raise ConfigError(f"{where}.ema_decay must lie in (0, 1) or be null, got {values['ema_decay']}")
    if trainer == "vae":
        if values["recon_loss"] not in RECON_LOSSES:
            raise ConfigError(f"{where}.recon_loss must be one of {', '.join(RECON_LOSSES)}, "
                              f"got {values['recon_loss']!r}")
        if values["kl_weight"] < 0 or values["disc_weight"] < 0 or values["disc_lr"] <= 0:
            raise ConfigError(f"{where}: kl_weight and disc_weight must be >= 0 and disc_lr > 0")
        if values["disc_layers"] < 1 or values["disc_channels"] < 1:
            raise ConfigError(f"{where}: disc_layers and disc_channels must be at least 1")
        if values["crop_size"] is not None and values["crop_size"] < 1:
            raise ConfigError(f"{where}.crop_size must be a positive number of pixels or null, "
                              f"got {values['crop_size']}")
        if not values["train_encoder"] and values["init_checkpoint"] is None:
            raise ConfigError(f"{where}.train_encoder is false but {where}.init_checkpoint is null: a frozen encoder "
                              "must come from a trained vae.ckpt; set init_checkpoint to it")
        if values["disc_start_step"] is not None and values["disc_start_step"] < 0:
            raise ConfigError(f"{where}.disc_start_step must be >= 0 or null, got {values['disc_start_step']}")
