"""Reconstruction skill of a VAE checkpoint on a dataset split: CSI/POD/SUCR per SEVIR threshold, MAE, MSE.

Every frame of every window of the split goes through the posterior mode (encoder mean -> decoder), as at
inference; the counts are accumulated over the whole split (event = VIL pixel >= threshold). This is the VAE row
of the demo model card (docs/demo_model.md).

Usage::

    .venv/bin/python scripts/score_vae.py --config assets/demo_model/config.yaml --vae assets/demo_model/vae.ckpt \
        --data assets/demo_corpus --split test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def score(config_path: Path, vae_path: Path, data: Path, split: str) -> dict:
    """Scores as ``{"CSI": {threshold: value}, "POD": ..., "SUCR": ..., "MAE_pixels": x, "MSE_pixels": x, ...}``."""
    from prediff.config import load_config
    from prediff.data.vil import SEVIR_THRESHOLDS
    from prediff.models.build import build_vae
    from prediff.models.checkpoint import load_network
    from prediff.runtime import mindspore_module
    from prediff.train.data import open_split
    from prediff.verify.categorical import categorical_accum, categorical_compute, categorical_init

    ms = mindspore_module()
    config = load_config(config_path)
    vae = build_vae(config)
    load_network(vae, vae_path, "vae")
    vae.set_train(False)
    dataset = open_split(data, config, split)
    windows = dataset.windows()
    counts = categorical_init(SEVIR_THRESHOLDS, n_lead_times=1)
    absolute, squared, pixels = 0.0, 0.0, 0
    for event_id, k in windows:
        frames = dataset.read_window(event_id, k).astype(np.float32)  # (L, H, W) VIL pixels
        unit = np.ascontiguousarray(frames[:, None] / 255.0)
        decoded = vae.decode(vae.encode(ms.Tensor(unit)).mode()).asnumpy()[:, 0] * 255.0
        reconstruction = np.clip(decoded, 0.0, 254.0)  # as the pipeline clips forecasts
        categorical_accum(counts, reconstruction[:, None], frames[:, None])
        absolute += float(np.abs(reconstruction - frames).sum())
        squared += float(np.square(reconstruction - frames).sum())
        pixels += frames.size
    scores = categorical_compute(counts)["all_lead_times"]
    result = {name: {int(t): float(v) for t, v in zip(SEVIR_THRESHOLDS, scores[name][0])}
              for name in ("CSI", "POD", "SUCR")}
    result.update(MAE_pixels=absolute / pixels, MSE_pixels=squared / pixels, windows=len(windows),
                  frames=len(windows) * dataset.window.length)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "assets" / "demo_model" / "config.yaml")
    parser.add_argument("--vae", type=Path, default=REPO_ROOT / "assets" / "demo_model" / "vae.ckpt")
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "assets" / "demo_corpus")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    args = parser.parse_args()
    print(json.dumps(score(args.config, args.vae, args.data, args.split), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
