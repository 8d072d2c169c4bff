"""Training of the three PreDiff networks: VAE, latent denoiser and knowledge-alignment network.

Modules, one concern each:

* :mod:`prediff.train.settings` — the ``train:`` config section (validated, with defaults);
* :mod:`prediff.train.data` — seeded shuffled order, worker shards, dataset splits, the latent cache;
* :mod:`prediff.train.optim` — learning-rate schedule, AdamW update with clipping / all-reduce, EMA;
* :mod:`prediff.train.randomness` — per-step seeded dropout masks and Generator state (bit-identical resume);
* :mod:`prediff.train.loop` — the shared loop: logs, validation, checkpoints, resume, Ctrl-C;
* :mod:`prediff.train.distributed` — data parallel over ``msrun`` workers;
* :mod:`prediff.train.vae`, :mod:`prediff.train.ldm`, :mod:`prediff.train.align` — the three objectives;
* :mod:`prediff.train.trainers` — :func:`train`, the entry point ``prediff train`` calls;
* :mod:`prediff.train.stats` — climatology of the future-hour average intensity (``prediff stats``).

This package file imports nothing, so importing :mod:`prediff.train.settings` or :mod:`prediff.train.stats`
stays light. See docs/training.md.
"""
