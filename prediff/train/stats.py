"""Climatology of the future-hour average intensity over a dataset's training windows, and the latent scale.

For every train-split window, the average of its target frames (the 6 future frames; mean over T, H, W of
VIL pixel / 255) is one sample; mu and sigma (ddof = 1) of those samples are the
:class:`prediff.diffusion.targets.IntensityStats` that knowledge-alignment targets ``mu + k sigma`` use.
Every pixel counts as in the reference (a missing pixel 255 would count as 1.0; the reference's selection
keeps only complete events).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from prediff.diffusion.targets import IntensityStats, intensity_stats_from_windows
from prediff.train.data import open_split


def target_windows(dataset, progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
    """Yield the target frames ``(target, H, W)`` uint8 VIL pixels of every window of ``dataset``."""
    windows = dataset.windows()
    context = dataset.window.context
    for done, (event_id, k) in enumerate(windows, start=1):
        yield dataset.read_window(event_id, k)[context:]
        if progress is not None:
            progress(done, len(windows))


def future_intensity_stats(data_root: str | os.PathLike, config: Mapping[str, Any], split: str = "train",
                           progress: Callable[[int, int], None] | None = None) -> IntensityStats:
    """mu, sigma and count of the per-window future average intensity over ``split`` of ``data_root``.

    Parameters
    ----------
    data_root : SEVIR-format tree.
    config : loaded config (split dates ``data.*``, window ``layout`` / denoiser frames, ``data.stride``).
    split : "train" (the default, as the climatology must not see the evaluation data), "val" or "test".
    progress : optional ``progress(done, total)`` callback.

    Returns
    -------
    IntensityStats in [0, 1] units (VIL pixel / 255).
    """
    dataset = open_split(data_root, config, split)
    window = dataset.window
    source = (f"{dataset.root} {split} split, {len(dataset.windows())} windows, mean of the {window.target} "
              f"target frames after {window.context} context frames (stride {window.stride})")
    return intensity_stats_from_windows(target_windows(dataset, progress), units="pixel", source=source)


def latent_standard_deviation(cache, frames_per_block: int = 4096) -> float:
    """Standard deviation of every posterior-mean latent value of a :class:`prediff.train.data.LatentCache`.

    ``1 / std`` is the ``model.diffusion.scale_factor`` that gives the denoiser unit-variance latents (LDM's
    ``scale_by_std``, computed once over the whole training split instead of from the first batch). Accumulated in
    float64 block by block, so the memory-mapped cache is never loaded whole.
    """
    total = total_square = 0.0
    count = 0
    for start in range(0, len(cache.frame_mean), frames_per_block):
        block = np.asarray(cache.frame_mean[start:start + frames_per_block], dtype=np.float64)
        total += block.sum()
        total_square += np.square(block).sum()
        count += block.size
    mean = total / count
    return float(np.sqrt(max(total_square / count - mean * mean, 0.0)))
