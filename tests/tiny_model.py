"""A tiny PreDiff model (128x128 frames, 16x16x4 latents, narrow networks) for fast pipeline / CLI tests.

Used by ``test_pipeline.py``, ``test_cli_forecast.py``, ``test_parity_cli.py`` and ``test_evaluate.py``:
the shapes are those of the small config, the widths are cut so that one sampler step takes milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_config() -> dict:
    """configs/prediff_small.yaml with every network narrowed (same frame, latent and window shapes)."""
    config = yaml.safe_load((REPO / "configs" / "prediff_small.yaml").read_text())
    model = config["model"]
    model["vae"].update(block_out_channels=[4, 4, 4, 4], layers_per_block=1, norm_num_groups=2)
    model["latent_model"].update(base_units=8, num_heads=2)
    model["align"]["model_args"].update(base_units=8, num_heads=2)
    return config


def write_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Write ``config.yaml`` and fresh ``vae.ckpt`` / ``diffusion.ckpt`` / ``align.ckpt`` (``prediff checkpoint
    init``) into ``folder``; returns the folder."""
    from prediff.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    assert main(["checkpoint", "init", "--config", str(folder / "config.yaml"), "--out", str(folder),
                 "--seed", str(seed)]) == 0
    return folder
