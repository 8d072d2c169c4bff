"""Speed of the frame VAE at the published full size, against the MindEarth reference on this CPU.

Builds ``AutoencoderKL`` from the published config (block_out_channels [128, 256, 512, 512], latent 64) with
random weights, then times, after one warm-up call each, the encode of 7 context frames (7, 1, 128, 128)
to the posterior and the decode of 6 latents (6, 64, 16, 16). Prints the median seconds over ``--runs``
runs, the ratio to the reference's medians (facts.md section 11: 8.2 s encode, 10.1 s decode; < 1 = faster)
and the peak resident memory of the process. The CPU seconds (all threads) are printed too: on a shared
machine they show the work done when the wall time is inflated by other processes.

Usage: ``.venv/bin/python benchmarks/bench_vae.py [--runs 3] [--config configs/prediff_sevirlr_full.yaml]``
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path

import numpy as np

REFERENCE_SECONDS = {"encode 7 frames": 8.2, "decode 6 latents": 10.1}
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "prediff_sevirlr_full.yaml"


def _time(function, runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU seconds of ``runs`` calls after one warm-up call."""
    function()
    wall, cpu = [], []
    for _ in range(runs):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
    return wall, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs after the warm-up (default 3)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config with the VAE to time")
    args = parser.parse_args(argv)

    from prediff.models.build import build_vae
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    ms.set_seed(0)
    vae = build_vae(args.config)
    vae.set_train(False)
    rng = np.random.default_rng(0)
    frames = ms.Tensor(rng.random((7, vae.in_channels, 128, 128), dtype=np.float32))
    latents = ms.Tensor(rng.standard_normal((6, vae.latent_channels, 16, 16), dtype=np.float32))
    operations = {
        "encode 7 frames": lambda: vae.encode(frames).mean.asnumpy(),
        "decode 6 latents": lambda: vae.decode(latents).asnumpy(),
    }
    print(f"load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(wall times are only comparable to the reference on an otherwise idle machine)")
    for name, operation in operations.items():
        wall, cpu = _time(operation, args.runs)
        median = statistics.median(wall)
        runs = ", ".join(f"{d:.2f}" for d in wall)
        print(f"{name:18s} median {median:6.2f} s  (runs {runs}; CPU {statistics.median(cpu):.2f} s)  "
              f"reference {REFERENCE_SECONDS[name]:.1f} s  ratio {median / REFERENCE_SECONDS[name]:.2f}")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak RSS {peak_gb:.2f} GB (reference VAE-only process: 1.59 GB)")


if __name__ == "__main__":
    main()
