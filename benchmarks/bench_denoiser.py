"""Speed of the latent denoiser and the alignment network at the published (full-size) configuration.

Measures, with random weights, after one warm-up call each:

* one ``CuboidTransformerUNet`` forward at batch 1 and at batch 4,
* one ``NoisyCuboidTransformerEncoder`` forward + gradient w.r.t. its input (the guidance objective),

and prints the median (and min) wall time over ``--runs`` runs, the median process CPU time (all threads),
the ratio to the MindEarth reference measured on the same kind of 2-core CPU (facts.md section 11: 19.9 s per
denoiser forward at batch 1, 2.83 s per alignment forward + input gradient), the peak resident memory of the
process after each phase and the 1-minute load average (other processes on the machine inflate wall times;
a load well above the core count makes the wall figures meaningless).

Usage::

    .venv/bin/python benchmarks/bench_denoiser.py [--config diffusion.yaml] [--runs 3] [--batches 1 4]

The config defaults to ``../shared/reference/diffusion_full.yaml``. The machine is shared: compare figures
taken in one run, and check ``uptime`` — other processes inflate every number.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

#: Reference figures (MindEarth PreDiff, MindSpore 2.7.2, 2-core CPU, median of 3 after warm-up).
REFERENCE_UNET_BATCH1_S = 19.9
REFERENCE_ALIGN_GRAD_S = 2.83
DEFAULT_CONFIG = REPO_ROOT.parent / "shared" / "reference" / "diffusion_full.yaml"


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def randomise(net, seed: int) -> None:
    """Overwrite every float parameter with small random values, so no layer is a zero-initialised no-op."""
    import mindspore as ms

    rng = np.random.default_rng(seed)
    for _, parameter in net.parameters_and_names():
        if parameter.dtype == ms.float32:
            fan_in = int(np.prod(parameter.shape[1:])) if len(parameter.shape) > 1 else 1
            values = rng.standard_normal(parameter.shape, dtype=np.float32) / np.float32(np.sqrt(fan_in))
            parameter.set_data(ms.Tensor(values))


def timed(function, runs: int, warmup=None) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU seconds of ``runs`` calls of ``function`` after one warm-up call (of ``warmup``
    when given, e.g. a shorter run through the same shapes)."""
    (warmup or function)()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def report(label: str, timings: tuple[list[float], list[float]], reference: float | None) -> None:
    """Print median / min wall time, median CPU time, the speed-up over ``reference`` and the peak RSS."""
    wall, cpu = timings
    median = statistics.median(wall)
    line = (f"{label:<36s} median {median:6.2f} s  min {min(wall):6.2f} s  "
            f"(CPU {statistics.median(cpu):6.2f} s)")
    if reference is not None:
        line += f"  reference {reference:5.2f} s  speed-up x{reference / median:4.1f}"
    print(line + f"  peak RSS {peak_rss_gb():4.2f} GB  load {os.getloadavg()[0]:4.1f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="reference-style config YAML")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement (after one warm-up)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="denoiser batch sizes")
    args = parser.parse_args(argv)

    from prediff.config import load_config
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    from prediff.models.alignment import NoisyCuboidTransformerEncoder
    from prediff.models.earthformer_unet import CuboidTransformerUNet

    config = load_config(args.config)
    latent = config["model"]["latent_model"]
    align_args = config["model"]["align"]["model_args"]
    rng = np.random.default_rng(0)

    unet = CuboidTransformerUNet(**latent)
    randomise(unet, 1)
    unet.set_train(False)
    t_in, height, width, channels = latent["input_shape"]
    t_out = latent["target_shape"][0]
    print(f"config {args.config}  runs {args.runs}  denoiser batches {args.batches}", flush=True)
    for batch in args.batches:
        x_t = ms.Tensor(rng.standard_normal((batch, t_out, height, width, channels), dtype=np.float32))
        cond = ms.Tensor(rng.standard_normal((batch, t_in, height, width, channels), dtype=np.float32))
        steps = ms.Tensor(rng.integers(0, 1000, batch))
        seconds = timed(lambda: unet(x_t, steps, cond).asnumpy(), args.runs)
        report(f"denoiser forward, batch {batch}", seconds, REFERENCE_UNET_BATCH1_S if batch == 1 else None)
    del unet

    align = NoisyCuboidTransformerEncoder(**align_args)
    randomise(align, 2)
    align.set_train(False)
    frames, height, width, channels = align_args["input_shape"]
    z_t = ms.Tensor(rng.standard_normal((1, frames, height, width, channels), dtype=np.float32))
    steps = ms.Tensor(np.array([500]))
    target = ms.Tensor(np.array([[0.2]], np.float32))

    def objective(z):
        error = align(z, steps).mean(axis=1) - target
        return ms.ops.sqrt((error * error).sum())

    gradient = ms.value_and_grad(objective)
    report("alignment forward, batch 1", timed(lambda: align(z_t, steps).asnumpy(), args.runs), None)
    report("alignment forward + input gradient", timed(lambda: gradient(z_t)[1].asnumpy(), args.runs),
           REFERENCE_ALIGN_GRAD_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
