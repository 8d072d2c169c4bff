"""Copy the trained demo model from its run folders into ``assets/demo_model`` (what the app and the CLI load).

The demo model is trained in stages (docs/demo_model.md): the VAE and then, from its frozen encoder, the latent
denoiser and the alignment network in one run folder (``runs/demo``); optionally the decoder is fine-tuned
with the encoder frozen in another (``runs/demo_decoder``). This script gathers::

    config.yaml            CONFIG, default configs/demo.yaml (model section = the one every run was trained with)
    vae.ckpt               DECODER_RUN/vae.ckpt if given (frozen encoder + fine-tuned decoder), else RUN/vae.ckpt
    diffusion.ckpt         RUN/diffusion.ckpt (EMA weights)
    align.ckpt             RUN/align.ckpt
    intensity_stats.json   RUN/intensity_stats.json (prediff stats over the training windows)

checks that the staged folder loads as a :class:`prediff.pipeline.PreDiffPipeline`, that the encoder of the
shipped VAE is the one the latent models were trained on, and then replaces ``assets/demo_model`` in one rename.

Usage::

    .venv/bin/python scripts/ship_demo_model.py [--config configs/demo.yaml] [--run runs/demo] [--decoder-run runs/demo_decoder | --no-decoder-run]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from prediff.errors import CheckpointError  # noqa: E402
from prediff.models.checkpoint import read_checkpoint  # noqa: E402
from prediff.pipeline import DEMO_MODEL_DIR, PreDiffPipeline  # noqa: E402
from prediff.train.vae import ENCODER_PREFIXES  # noqa: E402

#: Asset budget of the issue for the three checkpoints + stats + config.
MAX_BYTES = 25 * 2 ** 20


def staged_files(config: Path, run: Path, decoder_run: Path | None) -> dict[str, Path]:
    """Destination name -> source path; raises CheckpointError naming what is missing."""
    sources = {"config.yaml": config,
               "vae.ckpt": (decoder_run or run) / "vae.ckpt",
               "diffusion.ckpt": run / "diffusion.ckpt", "align.ckpt": run / "align.ckpt",
               "intensity_stats.json": run / "intensity_stats.json"}
    missing = [str(path) for path in sources.values() if not path.is_file()]
    if missing:
        raise CheckpointError(f"missing {', '.join(missing)}: train the stages first (docs/demo_model.md) and run "
                              f"`prediff stats --config {config} --data DIR --out {run}`")
    return sources


def check_encoder(shipped_vae: Path, training_vae: Path) -> None:
    """The shipped VAE's encoder must equal the one the latent caches were encoded with."""
    shipped, trained = read_checkpoint(shipped_vae), read_checkpoint(training_vae)
    changed = [name for name in trained if name.startswith(ENCODER_PREFIXES)
               and not np.array_equal(trained[name], shipped[name])]
    if changed:
        raise CheckpointError(f"{shipped_vae} has another encoder than {training_vae} ({len(changed)} tensors "
                              f"differ, e.g. {changed[0]}); fine-tune the decoder with train.vae.train_encoder=false")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "demo.yaml")
    parser.add_argument("--run", type=Path, default=REPO_ROOT / "runs" / "demo")
    decoder = parser.add_mutually_exclusive_group()
    decoder.add_argument("--decoder-run", type=Path, default=REPO_ROOT / "runs" / "demo_decoder",
                         help="run folder of a decoder-only fine-tune (train.vae.train_encoder=false)")
    decoder.add_argument("--no-decoder-run", dest="decoder_run", action="store_const", const=None,
                         help="ship the VAE of --run as it is")
    args = parser.parse_args()
    sources = staged_files(args.config, args.run, args.decoder_run)
    if args.decoder_run is not None:
        check_encoder(sources["vae.ckpt"], args.run / "vae.ckpt")
    total = sum(path.stat().st_size for path in sources.values())
    if total > MAX_BYTES:
        raise CheckpointError(f"the demo model would take {total / 2 ** 20:.1f} MB, over the {MAX_BYTES >> 20} MB budget")
    DEMO_MODEL_DIR.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo_model.", dir=DEMO_MODEL_DIR.parent))
    try:
        for name, source in sources.items():
            shutil.copyfile(source, staging / name)
        PreDiffPipeline.from_folder(staging)
        previous = DEMO_MODEL_DIR.with_name(".demo_model.previous")
        if previous.exists():
            shutil.rmtree(previous)
        if DEMO_MODEL_DIR.exists():
            DEMO_MODEL_DIR.rename(previous)
        staging.chmod(0o755)  # mkdtemp makes it private
        staging.rename(DEMO_MODEL_DIR)
        if previous.exists():
            shutil.rmtree(previous)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    for name, source in sources.items():
        print(f"{DEMO_MODEL_DIR / name}  <-  {source}")
    print(f"demo model: {total / 2 ** 20:.1f} MB")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckpointError as error:
        sys.exit(f"error: {error}")
