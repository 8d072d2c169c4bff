"""Build the three PreDiff networks from a reference-style config and load their checkpoints.

The constructors take the config sections unchanged: ``AutoencoderKL`` the ``model.vae`` keys (without the
checkpoint path), ``CuboidTransformerUNet`` the ``model.latent_model`` keys, ``NoisyCuboidTransformerEncoder``
the ``model.align.model_args`` keys. Checkpoint paths are always explicit arguments: the paths inside the
published config (``./ckpt/vae.ckpt`` ...) are relative to wherever the reference was started and are not
used implicitly.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from prediff.config import load_config, vae_network_kwargs
from prediff.runtime import mindspore_module

ms = mindspore_module()


def build_vae(config: Mapping[str, Any] | str | os.PathLike):
    """A freshly initialised :class:`prediff.models.vae.AutoencoderKL` from ``config["model"]["vae"]``.

    ``config`` is a loaded config dict or a YAML path (both go through :func:`prediff.config.load_config`).
    """
    from prediff.models.vae import AutoencoderKL

    return AutoencoderKL(**vae_network_kwargs(load_config(config)))


def build_latent_model(config: Mapping[str, Any] | str | os.PathLike):
    """A freshly initialised ``CuboidTransformerUNet`` (latent denoiser) from ``config["model"]["latent_model"]``."""
    from prediff.models.earthformer_unet import CuboidTransformerUNet

    return CuboidTransformerUNet(**load_config(config)["model"]["latent_model"])


def build_alignment_model(config: Mapping[str, Any] | str | os.PathLike):
    """A freshly initialised ``NoisyCuboidTransformerEncoder`` from ``config["model"]["align"]["model_args"]``."""
    from prediff.models.alignment import NoisyCuboidTransformerEncoder

    return NoisyCuboidTransformerEncoder(**load_config(config)["model"]["align"]["model_args"])


def build_networks(config: Mapping[str, Any] | str | os.PathLike, vae_ckpt: str | os.PathLike | None = None,
                   latent_ckpt: str | os.PathLike | None = None, align_ckpt: str | os.PathLike | None = None,
                   seed: int | None = None):
    """Build the VAE, the latent denoiser and the alignment network, load the given checkpoints, set eval mode.

    Parameters
    ----------
    config : loaded config dict or YAML path.
    vae_ckpt, latent_ckpt, align_ckpt : published-format checkpoints (``vae.ckpt`` bare names,
        ``diffusion.ckpt`` ``main_model.`` names, ``align.ckpt`` bare names), loaded strictly; None keeps the
        fresh initialisation.
    seed : seeds MindSpore's initialisers first, so unloaded networks are reproducible (None = unseeded).

    Returns
    -------
    ``(vae, latent, align)`` Cells in eval mode (dropout off).

    Raises
    ------
    ConfigError, CheckpointError
        Invalid config; a checkpoint that is unreadable or does not match its network exactly.
    """
    from prediff.models.checkpoint import load_network

    config = load_config(config)
    if seed is not None:
        ms.set_seed(int(seed))
    networks = []
    for build, path, kind in ((build_vae, vae_ckpt, "vae"), (build_latent_model, latent_ckpt, "latent"),
                              (build_alignment_model, align_ckpt, "align")):
        net = build(config)
        if path is not None:
            load_network(net, path, kind)
        net.set_train(False)
        networks.append(net)
    return tuple(networks)
