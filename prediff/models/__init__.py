"""The three PreDiff networks and their checkpoint I/O.

* :mod:`prediff.models.vae` -- ``AutoencoderKL``: VIL frames (NCHW, [0, 1]) <-> latents (NCHW, 1/8 size).
* :mod:`prediff.models.earthformer_unet` -- ``CuboidTransformerUNet``: the latent denoiser (epsilon prediction).
* :mod:`prediff.models.alignment` -- ``NoisyCuboidTransformerEncoder``: knowledge-alignment network.
* :mod:`prediff.models.checkpoint` -- strict ``.ckpt`` load / atomic save in the published MindEarth formats.
* :mod:`prediff.models.build` -- build the networks from a reference-style config and load checkpoints.

Submodules import MindSpore (through :func:`prediff.runtime.mindspore_module`); this package file does not,
so ``import prediff.models`` stays cheap.
"""
