"""``prediff parity``: run the MindEarth reference's parity inputs through this workbench and compare.

``prediff parity --config small_config.yaml --vae vae_small.ckpt --latent latent_small.ckpt --align
align_small.ckpt --inputs parity_small.npz --out ours.npz [--compare parity_small.npz]`` writes the output
arrays under the reference's key names (:func:`prediff.parity.parity_outputs`); with ``--compare`` it prints
``max|diff| / max|ref|`` per key and PASS / FAIL at 1e-4, and exits with status 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "parity", help="compute the reference's parity outputs from its inputs; optionally compare",
        description="Read parity input arrays (names of reference/parity/README.md), compute the reference's "
                    "outputs with this workbench's networks, samplers and metrics, write them as .npz and "
                    "optionally compare them with a reference file.")
    parser.add_argument("--config", required=True, type=Path, help="PreDiff YAML config the checkpoints belong to")
    parser.add_argument("--vae", required=True, type=Path, help="vae checkpoint (bare names)")
    parser.add_argument("--latent", required=True, type=Path, help="latent denoiser checkpoint (main_model. names)")
    parser.add_argument("--align", required=True, type=Path, help="alignment network checkpoint (bare names)")
    parser.add_argument("--inputs", required=True, type=Path, metavar="IN.npz", help="input arrays")
    parser.add_argument("--out", required=True, type=Path, metavar="OUT.npz", help="output arrays (written atomically)")
    parser.add_argument("--compare", type=Path, metavar="REF.npz", help="reference outputs to compare with")
    parser.add_argument("--tolerance", type=float, default=None, help="relative tolerance (default 1e-4)")
    parser.add_argument("--device", help="CPU (default), GPU or Ascend; default $PREDIFF_DEVICE")
    parser.set_defaults(handler=run)


def _load_npz(path: Path, option: str) -> dict:
    import numpy as np

    from prediff.errors import DataError

    if not path.is_file():
        raise DataError(f"{option} {path} does not exist; pass the .npz file of parity arrays")
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise DataError(f"{option} {path} is not a readable .npz file ({error}); write it with numpy.savez") from None


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from prediff.config import load_config
    from prediff.io_utils import atomic_path
    from prediff.parity import TOLERANCE, compare_outputs, parity_outputs
    from prediff.runtime import mindspore_module

    inputs = _load_npz(args.inputs, "--inputs")
    reference = _load_npz(args.compare, "--compare") if args.compare is not None else None
    config = load_config(args.config)
    mindspore_module(args.device)
    from prediff.models.build import build_networks

    networks = build_networks(config, args.vae, args.latent, args.align)
    outputs, notes = parity_outputs(config, *networks, inputs)
    with atomic_path(args.out) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **outputs)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {args.out}: {len(outputs)} arrays")
    status = 0
    if reference is not None:
        tolerance = TOLERANCE if args.tolerance is None else args.tolerance
        rows = compare_outputs(outputs, reference, tolerance)
        for row in rows:
            verdict = "PASS" if row.passed else "FAIL"
            detail = f"  {row.detail}" if row.detail else ""
            print(f"{verdict}  {row.key:<32} max|diff|/max|ref| = {row.relative_error:.3e}{detail}")
        failed = sum(not row.passed for row in rows)
        print(f"{len(rows) - failed} of {len(rows)} key(s) within {tolerance:g} x max|ref|")
        status = 1 if failed else 0
    sys.stdout.flush()
    return status
