"""``prediff forecast``: an ensemble nowcast of one window of one event, written as CF NetCDF.

``prediff forecast --model DIR --data DIR --event ID [--window K] --members 8 --sampler ddim --steps 20
--seed 0 [--target mu+4sigma] --out forecast.nc``. The model is a folder (``--model``), explicit files
(``--config --vae --latent --align``) or, by default, the demo model. The file holds the ensemble ``vil``
(member, lead_time, y, x) and, when the window has it, the observed future ``vil_observed`` for verification.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that choose a model: ``--model DIR`` or ``--config/--vae/--latent/--align``, ``--stats``,
    ``--device``, ``--batch-size``."""
    group = parser.add_argument_group("model (default: the demo model in assets/demo_model)")
    group.add_argument("--model", type=Path, metavar="DIR",
                       help="folder with config.yaml, vae.ckpt, diffusion.ckpt, align.ckpt [, intensity_stats.json]")
    group.add_argument("--config", type=Path, help="PreDiff YAML config (with --vae, --latent, --align)")
    group.add_argument("--vae", type=Path, help="vae.ckpt (bare names)")
    group.add_argument("--latent", type=Path, help="diffusion.ckpt (names prefixed main_model.)")
    group.add_argument("--align", type=Path, help="align.ckpt (bare names)")
    group.add_argument("--stats", type=Path, help="intensity_stats.json for mu+k*sigma targets")
    group.add_argument("--batch-size", type=int, default=8, metavar="B", help="members per network call (default 8)")
    group.add_argument("--device", help="CPU (default), GPU or Ascend; default $PREDIFF_DEVICE")


def add_sampling_arguments(parser: argparse.ArgumentParser, members: int = 8, steps: int = 20) -> None:
    """Add ``--members --sampler --steps --eta --guidance-scale --seed``."""
    parser.add_argument("--members", type=int, default=members, metavar="M", help=f"ensemble size (default {members})")
    parser.add_argument("--sampler", choices=("ddim", "ddpm"), default="ddim",
                        help="ddim (default; any number of steps) or ddpm (the reference's 1000 ancestral steps)")
    parser.add_argument("--steps", type=int, default=steps, metavar="S",
                        help=f"DDIM steps (default {steps}); with --sampler ddpm leave it out or give 1000")
    parser.add_argument("--eta", type=float, default=0.0, metavar="E",
                        help="DDIM noise, 0 = deterministic (default) ... 1 = ancestral")
    parser.add_argument("--guidance-scale", type=float, default=None, metavar="G",
                        help="alignment guidance strength (default: the config's guide_scale, 50)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")


def pipeline_from_args(args: argparse.Namespace):
    """The :class:`prediff.pipeline.PreDiffPipeline` chosen by :func:`add_model_arguments` options."""
    from prediff.errors import ConfigError
    from prediff.pipeline import PreDiffPipeline

    files = {"--config": args.config, "--vae": args.vae, "--latent": args.latent, "--align": args.align}
    given = [option for option, value in files.items() if value is not None]
    if args.model is not None and given:
        raise ConfigError(f"give either --model DIR or {', '.join(files)}, not both (got --model and "
                          f"{', '.join(given)})")
    if args.model is not None:
        pipeline = PreDiffPipeline.from_folder(args.model, device=args.device, batch_size=args.batch_size)
    elif given:
        missing = [option for option, value in files.items() if value is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)} missing: a model given by files needs all of "
                              f"{', '.join(files)} (or use --model DIR)")
        pipeline = PreDiffPipeline.from_files(args.config, args.vae, args.latent, args.align, device=args.device,
                                              batch_size=args.batch_size)
    else:
        pipeline = PreDiffPipeline.demo(device=args.device, batch_size=args.batch_size)
    if args.stats is not None:
        from prediff.diffusion import IntensityStats

        pipeline.stats = IntensityStats.load(args.stats)
    return pipeline


def sampling_steps(args: argparse.Namespace) -> int | None:
    """``--steps`` as the pipeline takes it: DDPM ignores the DDIM default."""
    if args.sampler == "ddpm" and args.steps == 20:
        return None
    return args.steps


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "forecast", help="ensemble nowcast of one event window, written as NetCDF",
        description="Sample an ensemble nowcast from the context frames of one forecast window of one event "
                    "and write it as CF-1.8 NetCDF (dims member, lead_time, y, x), with the observed future "
                    "as vil_observed when the window has it.")
    add_model_arguments(parser)
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset folder holding CATALOG.csv and data/")
    parser.add_argument("--event", required=True, metavar="ID", help="event id (list them with `prediff events`)")
    parser.add_argument("--window", type=int, default=0, metavar="K", help="forecast window of the event (default 0)")
    add_sampling_arguments(parser)
    parser.add_argument("--target", metavar="T",
                        help="guidance target: mu+4sigma, mean=40 (VIL pixels), mean=2.5kg, context*2, oracle*2; "
                             "default: no guidance")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE.nc", help="output NetCDF file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from prediff.data.export import event_to_xarray, write_netcdf
    from prediff.data.sevir import SevirDataset

    dataset = SevirDataset(args.data)
    dataset.row(args.event)
    window = event_to_xarray(dataset, args.event, window=args.window)
    pipeline = pipeline_from_args(args)
    with tqdm(total=args.members * (args.steps if args.sampler == "ddim" else pipeline.schedule.num_timesteps),
              unit="member-step", disable=args.quiet, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        forecast = pipeline.forecast(window, members=args.members, sampler=args.sampler, steps=sampling_steps(args),
                                     eta=args.eta, target=args.target, guidance_scale=args.guidance_scale,
                                     seed=args.seed, progress=progress)
    write_netcdf(forecast, args.out)
    observed = " with the observed future" if "vil_observed" in forecast else ""
    print(f"wrote {args.out}: {args.members} member(s) x {forecast.sizes['lead_time']} lead times{observed}")
    # a rare MindSpore abort at interpreter exit after guided gradients must not cost the output
    sys.stdout.flush()
    sys.stderr.flush()
    return 0
