"""``prediff train vae|ldm|align``: train the VAE, the latent denoiser or the alignment network.

    prediff train vae   --config CFG --data DIR --out RUN_DIR [--resume] [--max-steps N] [--set KEY=VALUE ...]
    prediff train ldm   --config CFG --data DIR --out RUN_DIR [--vae RUN_DIR/vae.ckpt] [--latent-cache DIR]
    prediff train align --config CFG --data DIR --out RUN_DIR [--vae RUN_DIR/vae.ckpt] [--latent-cache DIR]

Data parallel on several processes: prefix the command with MindSpore's launcher, e.g.
``msrun --worker_num=2 --local_worker_num=2 --master_port=8118 --log_dir=logs $(which prediff) train ...``.
Ctrl-C saves the run; ``--resume`` continues it bit-identically. See docs/training.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train the VAE, the latent diffusion model or the alignment network",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trainer", choices=("vae", "ldm", "align"),
                        help="vae: autoencoder; ldm: latent denoiser (needs a trained VAE); align: alignment network "
                             "(needs a trained VAE)")
    parser.add_argument("--config", required=True, help="PreDiff YAML config (model + train sections)")
    parser.add_argument("--data", required=True, type=Path, help="SEVIR-format dataset folder (CATALOG.csv + data/)")
    parser.add_argument("--out", required=True, type=Path,
                        help="run folder: checkpoint, <trainer>_state.npz, CSV logs, loss plot")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many steps in total (the schedule still spans train.<trainer>.steps)")
    parser.add_argument("--vae", type=Path, default=None,
                        help="frozen VAE checkpoint for ldm / align (default OUT/vae.ckpt)")
    parser.add_argument("--latent-cache", type=Path, default=None,
                        help="folder of the encoded latents for ldm / align (default OUT/latents); share it "
                             "between the ldm and align runs to encode once")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="change one config value for this run (repeatable), e.g. --set "
                             "train.vae.train_encoder=false; the run folder's config.yaml records the result")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--device", help="CPU (default), GPU or Ascend; default $PREDIFF_DEVICE")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from prediff.errors import ConfigError
    from prediff.runtime import mindspore_module

    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps must be at least 1, got {args.max_steps}")
    if args.trainer == "vae" and (args.vae is not None or args.latent_cache is not None):
        raise ConfigError("--vae and --latent-cache belong to `prediff train ldm` / `align`, not to the VAE trainer")
    mindspore_module(args.device)
    from prediff.config import apply_overrides
    from prediff.train.trainers import train

    config = apply_overrides(args.config, args.overrides) if args.overrides else args.config
    result = train(args.trainer, config, args.data, args.out, resume=args.resume, max_steps=args.max_steps,
                   vae_checkpoint=args.vae, latent_cache_dir=args.latent_cache, progress=not args.no_progress)
    if result.checkpoint is not None:
        state = "interrupted at" if result.interrupted else "finished"
        print(f"{args.trainer}: {state} step {result.step}; checkpoint {result.checkpoint} "
              f"({result.seconds_per_step:.2f} s/step)")
    return 130 if result.interrupted else 0
