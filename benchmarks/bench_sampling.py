"""Speed of sampling: single DDIM steps at full size, and complete small-model forecasts.

(a) ``--full``: the published (full-size) config with random weights; one DDIM step (denoiser forward +
    sampler update) without and with alignment guidance (alignment forward + input gradient), at batch 1 and 4.
    Reference (facts.md section 11, MindEarth on a 2-core CPU): 20.7 s per unguided and 23.2 s per guided DDPM
    step at batch 1. Heavy: several minutes.
(b) ``--small`` (default): the small config (``assets/demo_model/config.yaml`` when the demo model exists, else
    ``configs/prediff_small.yaml``), random weights; a complete 8-member, 20-step DDIM forecast through
    :meth:`prediff.pipeline.PreDiffPipeline.forecast`, VAE encode and decode included, unguided and guided.
    Target: <= 10 s.

Prints median (and min) wall seconds over ``--runs`` runs after one warm-up, ratios to the reference / target,
and the 1-minute load average: the machine is shared, and a load well above the core count inflates every
wall time.

Usage::

    .venv/bin/python benchmarks/bench_sampling.py [--small] [--full] [--runs 3] [--full-config PATH]
        [--small-config PATH] [--batches 1 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_denoiser import randomise, timed  # noqa: E402  (shared benchmark helpers)

REFERENCE_DDPM_STEP_S = 20.7
REFERENCE_GUIDED_DDPM_STEP_S = 23.2
SMALL_FORECAST_TARGET_S = 10.0
DEFAULT_FULL_CONFIG = REPO_ROOT / "configs" / "prediff_sevirlr_full.yaml"


def small_config_path() -> Path:
    """The shipped demo model's config, else ``configs/demo.yaml``, else ``configs/prediff_small.yaml``."""
    for candidate in (REPO_ROOT / "assets" / "demo_model" / "config.yaml", REPO_ROOT / "configs" / "demo.yaml"):
        if candidate.is_file():
            return candidate
    return REPO_ROOT / "configs" / "prediff_small.yaml"


def random_pipeline(config_path: Path, batch_size: int = 8):
    """A :class:`PreDiffPipeline` of freshly built networks whose weights are all random (no zero layers)."""
    from prediff.config import load_config
    from prediff.models.build import build_networks
    from prediff.pipeline import PreDiffPipeline

    config = load_config(config_path)
    networks = build_networks(config, seed=0)
    for seed, net in enumerate(networks):
        randomise(net, seed + 1)
    return PreDiffPipeline(config, *networks, name=f"random weights ({config_path.name})", batch_size=batch_size)


def line(label: str, timings: tuple[list[float], list[float]], reference: float | None, reference_name: str) -> str:
    """One result line: median / min wall seconds, median process CPU seconds (all threads), ratio of the median
    wall time to the reference, load average."""
    wall, cpu = timings
    median = statistics.median(wall)
    text = f"{label:<44s} median {median:7.2f} s  min {min(wall):7.2f} s  CPU {statistics.median(cpu):7.2f} s"
    if reference is not None:
        text += f"  {reference_name} {reference:5.1f} s  ratio {median / reference:5.2f}"
    return text + f"  load {os.getloadavg()[0]:4.1f}"


def bench_full(config_path: Path, runs: int, batches: list[int]) -> None:
    """(a) one DDIM step, unguided and guided, at each batch size."""
    from prediff.diffusion import AlignmentGuidance, SamplingRun, SeededNoise, mindspore_denoiser

    pipeline = random_pipeline(config_path)
    rng = np.random.default_rng(0)
    cond_shape = (1,) + tuple(pipeline.config["model"]["diffusion"]["latent_cond_shape"])
    context_latents = rng.standard_normal(cond_shape, dtype=np.float32)
    sampler = pipeline.sampler("ddim", 20, 0.0)
    denoiser = mindspore_denoiser(pipeline.latent, context_latents)
    print(f"(a) full config {config_path}, random weights, runs {runs}", flush=True)
    for batch in batches:
        for guided in (False, True):
            guidance = AlignmentGuidance(pipeline.align, 0.2, scale=50.0) if guided else None

            def one_step():
                run = SamplingRun(sampler, denoiser, SeededNoise(0), latent_shape=(batch,) + pipeline.latent_shape,
                                  guidance=guidance)
                next(iter(run))

            timings = timed(one_step, runs)
            reference = (REFERENCE_GUIDED_DDPM_STEP_S if guided else REFERENCE_DDPM_STEP_S) if batch == 1 else None
            label = f"DDIM step, batch {batch}, {'guided' if guided else 'unguided'}"
            print(line(label, timings, reference, "reference DDPM step"), flush=True)


def bench_small(config_path: Path, runs: int, members: int, steps: int) -> None:
    """(b) a complete forecast (encode, sample, decode), unguided and guided."""
    pipeline = random_pipeline(config_path)
    frames = (pipeline.context_frames,) + pipeline.frame_shape
    context = np.random.default_rng(0).integers(0, 200, frames).astype(np.uint8)
    print(f"(b) small config {config_path}, random weights, {members} members x {steps} DDIM steps, runs {runs}",
          flush=True)
    for target in (None, "mean=40"):
        # a 2-step forecast goes through every network shape, so it warms up as well as a full one
        timings = timed(lambda: pipeline.forecast(context, members=members, steps=steps, target=target), runs,
                        warmup=lambda: pipeline.forecast(context, members=members, steps=2, target=target))
        label = f"forecast, {'guided (mean=40)' if target else 'unguided'}"
        print(line(label, timings, SMALL_FORECAST_TARGET_S, "target"), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="(b) complete small-config forecast (default)")
    parser.add_argument("--full", action="store_true", help="(a) single full-size DDIM steps (minutes)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement (after one warm-up)")
    parser.add_argument("--full-config", type=Path, default=DEFAULT_FULL_CONFIG, help="full-size config YAML")
    parser.add_argument("--small-config", type=Path, default=None,
                        help="small config YAML (default: the shipped demo model's, else configs/demo.yaml)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="batch sizes of (a)")
    parser.add_argument("--members", type=int, default=8, help="ensemble size of (b)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps of (b)")
    args = parser.parse_args(argv)
    from prediff.runtime import mindspore_module

    mindspore_module()
    print(f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)", flush=True)
    if args.small or not args.full:
        bench_small(args.small_config or small_config_path(), args.runs, args.members, args.steps)
    if args.full:
        bench_full(args.full_config, args.runs, args.batches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
