"""``prediff stats``: climatology (mu, sigma) of the future-hour average intensity of a dataset's train windows.

    prediff stats --config CFG --data DIR [--out FILE_OR_DIR] [--split train] [--vae VAE.ckpt [--latent-cache DIR]]

The JSON (:class:`prediff.diffusion.targets.IntensityStats`) belongs beside the checkpoints: the forecast's
``mu + k sigma`` alignment targets read it from there. With ``--vae`` it also prints the standard deviation of
that VAE's latents over the split and the ``model.diffusion.scale_factor`` (1 / std) to train the denoiser with;
the latents are encoded into the trainers' latent cache (reused by ``prediff train ldm / align``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("stats", help="mu and sigma of the future-hour average intensity (train split)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="PreDiff YAML config (split dates and window)")
    parser.add_argument("--data", required=True, type=Path, help="SEVIR-format dataset folder")
    parser.add_argument("--out", type=Path, default=None,
                        help="output JSON file, or a folder to write intensity_stats.json into (e.g. the run folder "
                             "holding the checkpoints); default: print only")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"),
                        help="split to average over (default train)")
    parser.add_argument("--vae", type=Path, default=None,
                        help="also report the latent standard deviation of this vae.ckpt and the scale factor")
    parser.add_argument("--latent-cache", type=Path, default=None,
                        help="latent cache folder (default: latents/ beside the --vae checkpoint, where "
                             "`prediff train ldm` looks when --out is that folder)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from prediff.config import load_config
    from prediff.train.stats import future_intensity_stats

    config = load_config(args.config)

    def progress(done: int, total: int) -> None:
        if done == total or done % 100 == 0:
            print(f"\rread {done}/{total} windows", end="\n" if done == total else "", file=sys.stderr, flush=True)

    stats = future_intensity_stats(args.data, config, args.split, progress)
    print(f"mu = {stats.mu:.6f}  sigma = {stats.sigma:.6f}  (n = {stats.n} windows; [0, 1] units, "
          f"= {255 * stats.mu:.2f} +- {255 * stats.sigma:.2f} VIL pixels)")
    if args.out is not None:
        print(f"wrote {stats.save(args.out)}")
    if args.vae is not None:
        from prediff.train.ldm import prepare_latent_cache
        from prediff.train.stats import latent_standard_deviation

        cache_dir = args.latent_cache if args.latent_cache is not None else args.vae.parent / "latents"
        cache = prepare_latent_cache(config, args.vae, args.data, args.split, cache_dir / args.split)
        std = latent_standard_deviation(cache)
        print(f"latent std = {std:.4f} over {len(cache.frame_mean)} frames: model.diffusion.scale_factor = "
              f"{1.0 / std:.4f} gives the denoiser unit-variance latents")
    return 0
