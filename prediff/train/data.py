"""Training data: seeded shuffled order over windows, sharding over workers, and the latent cache.

* :class:`ShuffledOrder` — epoch ``e`` visits the items in ``default_rng([seed, e]).permutation(n)``; step ``s``
  takes positions ``s*B ... s*B+B-1`` of the concatenated epochs (a batch may straddle two epochs). The order is
  a pure function of (seed, step), so a resumed run reads exactly the batches the uninterrupted one would, and
  every worker can compute it without communication. Worker ``r`` of ``W`` takes every W-th item of the global
  batch (:func:`shard`). The MindEarth reference, by contrast, trains without shuffling (facts.md section 2).
* :func:`open_split` — a :class:`prediff.data.sevir.SevirDataset` of one split with the config's dates and
  window (``layout.t_in`` context + ``layout.t_out`` target frames every ``data.stride`` frames).
* :class:`LatentCache` — the frozen VAE's posterior over every window, encoded once and memory-mapped from
  ``.npy`` files, so the latent-diffusion and alignment epochs never run the VAE encoder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from prediff.data.catalog import Selection, SplitDates
from prediff.data.sevir import SevirDataset, WindowSpec
from prediff.data.vil import pixels_to_unit
from prediff.errors import ConfigError, DataError
from prediff.io_utils import atomic_path

LATENT_CACHE_FORMAT = 1


class ShuffledOrder:
    """Seeded epoch-wise permutation of ``n_items`` items, cut into global batches of ``batch_size``.

    Parameters
    ----------
    n_items : number of training items (windows, or frames for the VAE), >= 1.
    batch_size : items per optimiser step over all workers.
    seed : run seed; epoch ``e`` uses ``numpy.random.default_rng([seed, e])``.
    """

    def __init__(self, n_items: int, batch_size: int, seed: int):
        if n_items < 1:
            raise DataError("the training split holds no items; check --data and the split dates "
                            "(data.train_val_split_date) of the config")
        self.n_items = int(n_items)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._epoch: int | None = None
        self._permutation: np.ndarray | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        """(n_items,) int64: the visiting order of ``epoch``."""
        if epoch != self._epoch:
            self._permutation = np.random.default_rng([self.seed, int(epoch)]).permutation(self.n_items)
            self._epoch = epoch
        return self._permutation

    def batch(self, step: int) -> np.ndarray:
        """(batch_size,) int64: the item indices of global batch ``step`` (0-based)."""
        positions = np.arange(step * self.batch_size, (step + 1) * self.batch_size, dtype=np.int64)
        epochs, offsets = np.divmod(positions, self.n_items)
        return np.array([self.permutation(int(e))[o] for e, o in zip(epochs, offsets)], dtype=np.int64)

    def epoch_of(self, step: int) -> float:
        """Epochs completed at the start of ``step`` (fractional)."""
        return step * self.batch_size / self.n_items


def shard(items: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Worker ``rank``'s part of a global batch: every ``world``-th row starting at ``rank``."""
    return items[rank::world]


def fixed_subset(windows: list, count: int, seed: int) -> list:
    """Up to ``count`` of ``windows`` chosen once by ``seed``, in their original order (a fixed validation set)."""
    if count >= len(windows):
        return list(windows)
    chosen = np.sort(np.random.default_rng([seed, 7]).choice(len(windows), size=count, replace=False))
    return [windows[i] for i in chosen]


def split_selection(config: Mapping[str, Any]) -> Selection:
    """The event selection of the config's ``data`` section: split dates and optional start/end dates.

    ``data.train_val_split_date`` and ``data.train_test_split_date`` are ``[year, month, day]`` lists (the
    published keys); the defaults are the shipped 2019-03-19 / 2019-06-01.
    """
    data = config.get("data") or {}

    def date(key: str, default):
        value = data.get(key)
        if value is None:
            return default
        try:
            return pd.Timestamp(*[int(v) for v in value]) if isinstance(value, list) else pd.Timestamp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"data.{key} must be [year, month, day] or a date string, got {value!r}") from None

    defaults = SplitDates()
    dates = SplitDates(train_end=date("train_val_split_date", defaults.train_end),
                       val_end=date("train_test_split_date", defaults.val_end))
    return Selection(start=date("start_date", None), end=date("end_date", None), split_dates=dates)


def window_spec(config: Mapping[str, Any]) -> WindowSpec:
    """Context / target / stride of the config: the denoiser's frames and ``data.stride`` (default 6)."""
    unet = config["model"]["latent_model"]
    stride = int((config.get("data") or {}).get("stride", 6))
    return WindowSpec(context=int(unet["input_shape"][0]), target=int(unet["target_shape"][0]), stride=stride)


def open_split(root: str | os.PathLike, config: Mapping[str, Any], split: str) -> SevirDataset:
    """The windows of ``split`` ("train", "val", "test") of the SEVIR-format tree at ``root``."""
    return SevirDataset(root, split=split, selection=split_selection(config), window=window_spec(config))


def read_windows(dataset: SevirDataset, windows: list[tuple[str, int]], indices) -> np.ndarray:
    """Read windows ``indices`` of the list ``windows`` as one array.

    Returns
    -------
    (N, L, H, W) uint8 VIL pixels (255 = missing), L = context + target frames.
    """
    return np.stack([dataset.read_window(*windows[int(i)]) for i in indices])


def unit_frames(pixels: np.ndarray) -> np.ndarray:
    """VIL pixels ``(..., H, W)`` -> network input ``(..., H, W, 1)`` float32 in [0, 1]; missing (255) -> 0."""
    return pixels_to_unit(pixels, missing="zero")[..., None]


@dataclasses.dataclass
class LatentCache:
    """The frozen VAE's posterior over every window of one split (arrays memory-mapped, read-only).

    Attributes
    ----------
    windows : the (event_id, k) window of each row, in the dataset's order.
    mean : (N, L, h, w, C) float32, posterior mean (= mode) of every frame; the first ``context`` frames are
        the conditioning latents, the rest the target means.
    target_logvar : (N, target, h, w, C) float32, posterior log-variance of the target frames; a training
        target is ``mean + exp(logvar / 2) * noise`` drawn afresh at every visit (the reference's posterior
        sample, without re-running the encoder).
    target_intensity : (N, target) float32, average of each clean target frame over (H, W, C) on the [0, 1]
        scale (VIL pixel / 255, missing as 0): the alignment network's regression target.
    context : number of context frames.
    """

    windows: list[tuple[str, int]]
    mean: np.ndarray
    target_logvar: np.ndarray
    target_intensity: np.ndarray
    context: int

    def __len__(self) -> int:
        return len(self.windows)

    def conditioning(self, rows) -> np.ndarray:
        """(n, context, h, w, C) float32 conditioning latents of ``rows``."""
        return np.asarray(self.mean[rows, :self.context], dtype=np.float32)

    def target_sample(self, rows, noise: np.ndarray) -> np.ndarray:
        """(n, target, h, w, C) float32 posterior samples of the target latents for the given N(0, 1) noise."""
        mean = np.asarray(self.mean[rows, self.context:], dtype=np.float32)
        std = np.exp(np.float32(0.5) * np.asarray(self.target_logvar[rows], dtype=np.float32))
        return (mean + std * noise.astype(np.float32)).astype(np.float32)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def latent_cache_key(vae_digest: str, dataset: SevirDataset) -> str:
    """Identity of a cache: the VAE checkpoint's digest, the dataset folder, split, window and window list."""
    payload = json.dumps({"format": LATENT_CACHE_FORMAT, "vae": vae_digest, "root": str(dataset.root.resolve()),
                          "split": dataset.split, "window": dataclasses.asdict(dataset.window),
                          "windows": dataset.windows()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def open_latent_cache(directory: str | os.PathLike, key: str) -> LatentCache | None:
    """The cache in ``directory`` if it is complete and was built for ``key``, else None."""
    directory = Path(directory)
    index_path = directory / "index.json"
    if not index_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text())
        if index.get("key") != key:
            return None
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r")
                  for name in ("mean", "target_logvar", "target_intensity")}
    except (OSError, ValueError):
        return None
    windows = [(str(e), int(k)) for e, k in index["windows"]]
    if any(len(array) != len(windows) for array in arrays.values()):
        return None
    return LatentCache(windows=windows, context=int(index["context"]), **arrays)


def build_latent_cache(encode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], dataset: SevirDataset,
                       directory: str | os.PathLike, key: str, windows_per_call: int = 4,
                       progress: Callable[[int, int], None] | None = None) -> LatentCache:
    """Encode every window of ``dataset`` once and write the cache (each file atomically, ``index.json`` last).

    Parameters
    ----------
    encode : maps frames ``(n, L, H, W, 1)`` float32 [0, 1] to the posterior ``(mean, logvar)``, each
        ``(n, L, h, w, C)`` float32 (see :func:`prediff.train.ldm.vae_posterior_encoder`).
    dataset : the split to encode.
    directory : cache folder (created); an existing cache there is replaced.
    key : :func:`latent_cache_key` of the VAE and dataset.
    windows_per_call : windows encoded per VAE call (memory bound).
    progress : optional ``progress(done, total)`` callback.

    Returns
    -------
    The opened :class:`LatentCache`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.json").unlink(missing_ok=True)
    windows = dataset.windows()
    if not windows:
        raise DataError(f"the {dataset.split} split of {dataset.root} has no windows to encode; check the "
                        "split dates of the config")
    context = dataset.window.context
    with contextlib.ExitStack() as stack:
        # rows are streamed into memory-mapped files so a full SEVIR-LR split never sits in memory
        outputs: dict[str, np.ndarray] = {}
        for start in range(0, len(windows), windows_per_call):
            stop = min(start + windows_per_call, len(windows))
            frames = unit_frames(read_windows(dataset, windows, range(start, stop)))
            mean, logvar = encode(frames)
            rows = {"mean": mean, "target_logvar": logvar[:, context:],
                    "target_intensity": frames[:, context:].mean(axis=(2, 3, 4), dtype=np.float64)}
            if not outputs:
                for name, block in rows.items():
                    temporary = stack.enter_context(atomic_path(directory / f"{name}.npy"))
                    outputs[name] = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32,
                                                              shape=(len(windows),) + block.shape[1:])
            for name, block in rows.items():
                outputs[name][start:stop] = block
            if progress is not None:
                progress(stop, len(windows))
        for array in outputs.values():
            array.flush()
        outputs.clear()
    with atomic_path(directory / "index.json") as temporary:
        temporary.write_text(json.dumps({"format": LATENT_CACHE_FORMAT, "key": key, "context": context,
                                         "split": dataset.split, "root": str(dataset.root),
                                         "windows": [list(w) for w in windows]}))
    cache = open_latent_cache(directory, key)
    if cache is None:
        raise DataError(f"the latent cache just written to {directory} cannot be read back; check free disk space")
    return cache
