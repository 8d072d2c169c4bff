"""One entry point for the three trainers: set up workers and seeds, build the objective, run the loop.

``train("vae" | "ldm" | "align", config, data_root, run_dir, ...)`` is what ``prediff train`` calls; tests and
notebooks can call it directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from prediff.config import load_config
from prediff.errors import ConfigError
from prediff.runtime import mindspore_module
from prediff.train.distributed import Workers, setup_workers
from prediff.train.loop import RunResult, run_training
from prediff.train.randomness import SeededDropout
from prediff.train.settings import TRAINERS, trainer_settings

ms = mindspore_module()


def train(trainer: str, config, data_root, run_dir, resume: bool = False, max_steps: int | None = None,
          vae_checkpoint=None, latent_cache_dir=None, workers: Workers | None = None, progress: bool = True,
          callbacks: Iterable[Callable[[int, dict], None]] = ()) -> RunResult:
    """Train one PreDiff network.

    Parameters
    ----------
    trainer : "vae", "ldm" (latent denoiser) or "align" (knowledge-alignment network).
    config : YAML path or loaded config; ``model`` builds the networks, ``train.<trainer>`` sets the training.
    data_root : SEVIR-format tree (CATALOG.csv + data/); train / val splits by the config's dates.
    run_dir : output folder (checkpoint, training state, CSV logs, plot, ``config.yaml``).
    resume : continue the run saved in ``run_dir``.
    max_steps : stop after this many steps in total (None = ``train.<trainer>.steps``).
    vae_checkpoint : ``vae.ckpt`` of the frozen VAE (ldm, align); default ``run_dir/vae.ckpt``.
    latent_cache_dir : where the encoded latents live (ldm, align); default ``run_dir/latents``. Point the
        ldm and align runs at the same folder to encode once.
    workers : process group; default: joined from ``msrun``'s environment, else a single worker.
    progress : show progress bars (worker 0).
    callbacks : ``callback(step, metrics)`` after every step (see :func:`prediff.train.loop.run_training`).

    Returns
    -------
    :class:`prediff.train.loop.RunResult`.
    """
    if trainer not in TRAINERS:
        raise ConfigError(f"unknown trainer {trainer!r}; choose one of {', '.join(TRAINERS)}")
    config = load_config(config)
    settings = trainer_settings(config, trainer)
    workers = workers if workers is not None else setup_workers()
    run_dir = Path(run_dir)
    if trainer == "vae":
        from prediff.train.vae import VAEObjective

        ms.set_seed(settings.seed)
        objective = VAEObjective(config, settings, data_root, workers)
    else:
        objective = _latent_objective(trainer, config, settings, data_root, run_dir, vae_checkpoint,
                                      latent_cache_dir, workers, progress)
    dropout = SeededDropout(settings.seed, workers.rank)
    dropout.attach(objective.network)
    return run_training(objective, settings, config, run_dir, workers=workers, dropout=dropout, resume=resume,
                        max_steps=max_steps, progress=progress, callbacks=callbacks)


def _latent_objective(trainer, config, settings, data_root, run_dir: Path, vae_checkpoint, latent_cache_dir,
                      workers: Workers, progress: bool):
    from prediff.train.data import open_split
    from prediff.train.ldm import prepare_latent_cache

    vae_checkpoint = Path(vae_checkpoint) if vae_checkpoint is not None else run_dir / "vae.ckpt"
    cache_dir = Path(latent_cache_dir) if latent_cache_dir is not None else run_dir / "latents"
    train_cache = prepare_latent_cache(config, vae_checkpoint, data_root, "train", cache_dir / "train", workers,
                                       progress)
    val_cache = None
    if settings.val_every and settings.val_windows and open_split(data_root, config, "val").windows():
        val_cache = prepare_latent_cache(config, vae_checkpoint, data_root, "val", cache_dir / "val", workers,
                                         progress)
    # seed after the caches: building the encoding VAE draws from MindSpore's initialiser stream
    ms.set_seed(settings.seed)
    if trainer == "ldm":
        from prediff.train.ldm import LatentDiffusionObjective

        return LatentDiffusionObjective(config, settings, train_cache, val_cache, workers)
    from prediff.train.align import AlignmentObjective

    return AlignmentObjective(config, settings, train_cache, val_cache, workers)

