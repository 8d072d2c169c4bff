"""``prediff evaluate``: score PreDiff (unguided and aligned) and the baselines on a dataset split.

``prediff evaluate --model DIR --data DIR --split test [--limit N] --methods prediff,prediff-aligned,persistence,
extrapolation,steps --members 8 --steps 20 --seed 0 --out DIR [--target oracle*2]`` streams the split's windows
through one :class:`prediff.verify.ScoreAccumulator` per method (:func:`prediff.verify.evaluate.run_evaluation`),
saving its state after every window: rerunning the same command resumes, and a larger ``--limit`` extends the
run. Writes ``scores.json``, ``scores.csv``, PNG plots and ``plots.html``.

``prediff-aligned`` is guided toward ``--target``; the default ``oracle*2`` (twice the observed future's mean
intensity) is the MindEarth reference's "KC" evaluation, so its numbers compare with the published ones but use
the answer. ``--target mu+2sigma`` (climatology, needs ``intensity_stats.json``) is the forecast-time choice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prediff.commands.forecast import add_model_arguments, add_sampling_arguments

METHODS = ("prediff", "prediff-aligned", "persistence", "extrapolation", "steps")
DEFAULT_ALIGNED_TARGET = "oracle*2"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score PreDiff and baselines on a split (resumable); writes scores and plots",
        description="Stream the forecast windows of a dataset split through every method, accumulate the "
                    "verification scores by lead time, and write scores.json, scores.csv, PNG plots and "
                    "plots.html. Rerunning the same command resumes an interrupted run.")
    add_model_arguments(parser)
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset folder holding CATALOG.csv and data/")
    parser.add_argument("--split", choices=("train", "val", "test"), default="test", help="date split (default test)")
    parser.add_argument("--limit", type=int, metavar="N", help="score only the first N windows of the split")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated methods out of {', '.join(METHODS)} (default all)")
    add_sampling_arguments(parser)
    parser.add_argument("--target", default=DEFAULT_ALIGNED_TARGET, metavar="T",
                        help="guidance target of prediff-aligned (default oracle*2, the reference's KC evaluation; "
                             "mu+2sigma for a forecast-time target)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (state, scores, plots)")
    parser.add_argument("--restart", action="store_true", help="discard a saved state in --out and start again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def _methods(text: str) -> list[str]:
    from prediff.errors import ConfigError

    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise ConfigError(f"unknown method(s) {', '.join(unknown) or '(none given)'} in --methods; choose from "
                          f"{', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from prediff.commands.forecast import pipeline_from_args, sampling_steps
    from prediff.data.sevir import SevirDataset
    from prediff.verify.evaluate import BaselineMethod, run_evaluation, write_reports

    names = _methods(args.methods)
    dataset = SevirDataset(args.data, split=args.split)
    n_lead_times = dataset.window.target
    settings = {"data": str(Path(args.data).resolve()), "split": args.split, "methods": names,
                "members": args.members, "seed": args.seed}
    methods = {}
    if any(name.startswith("prediff") for name in names):
        from prediff.pipeline import EnsembleForecaster

        pipeline = pipeline_from_args(args)
        steps = sampling_steps(args)
        settings.update(model=pipeline.name, checkpoints=pipeline.checkpoints, sampler=args.sampler, steps=steps,
                        eta=args.eta, guidance_scale=args.guidance_scale)
        if "prediff-aligned" in names:
            settings["target"] = args.target
        for name in names:
            if name.startswith("prediff"):
                methods[name] = EnsembleForecaster(
                    pipeline, args.members, args.sampler, steps, args.eta,
                    target=args.target if name == "prediff-aligned" else None, guidance_scale=args.guidance_scale)
    for name in names:
        if not name.startswith("prediff"):
            methods[name] = BaselineMethod(name, n_lead_times, args.members if name == "steps" else None)
    methods = {name: methods[name] for name in names}
    total = len(dataset) if args.limit is None else min(len(dataset), max(args.limit, 0))
    with tqdm(total=total, unit="window", disable=args.quiet, file=sys.stderr) as bar:
        state = run_evaluation(dataset, methods, args.out, settings=settings, limit=args.limit, restart=args.restart,
                               seed=args.seed, progress=lambda done, _total: bar.update(done - bar.n))
    written = write_reports(state, args.out)
    print(f"scored {len(state.done)} window(s) of the {args.split} split with {', '.join(names)}; wrote "
          f"{', '.join(sorted(written))} to {args.out}")
    sys.stdout.flush()
    sys.stderr.flush()
    return 0
