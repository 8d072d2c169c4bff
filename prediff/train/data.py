"""Training data: seeded shuffled order over windows, sharding over workers, and the latent cache.

* :class:`ShuffledOrder` — epoch ``e`` visits the items in ``default_rng([seed, e]).permutation(n)``; step ``s``
  takes positions ``s*B ... s*B+B-1`` of the concatenated epochs (a batch may straddle two epochs). The order is
  a pure function of (seed, step), so a resumed run reads exactly the batches the uninterrupted one would, and
  every worker can compute it without communication. Worker ``r`` of ``W`` takes every W-th item of the global
  batch (:func:`shard`). The MindEarth reference, by contrast, trains without shuffling (facts.md section 2).
* :func:`open_split` — a :class:`prediff.data.sevir.SevirDataset` of one split with the config's dates and
  window (``layout.t_in`` context + ``layout.t_out`` target frames every ``data.stride`` frames).
* :class:`LatentCache` — the frozen VAE's posterior over every frame, encoded once and memory-mapped from
  ``.npy`` files, so the latent-diffusion and alignment epochs never run the VAE encoder; windows of any stride
  are cut from the cached frames.
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

LATENT_CACHE_FORMAT = 2


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
    """The frozen VAE's posterior over every frame of one split (arrays memory-mapped, read-only), and the windows
    cut from those frames.

    Frames, not windows, are encoded and stored: overlapping windows (``data.stride`` below the window length)
    share their frames, so a stride-1 training set costs no more encoding or disk than stride 6.

    Attributes
    ----------
    windows : the (event_id, k) window of each row, in the dataset's order.
    window_first : (N,) int64, index into the frame arrays of each window's first frame.
    frame_mean : (F, h, w, C) float32, posterior mean (= mode) of every frame of the split's events.
    frame_logvar : (F, h, w, C) float32, posterior log-variance of every frame.
    frame_intensity : (F,) float32, average of each frame over (H, W) on the [0, 1] scale (VIL pixel / 255,
        missing as 0): the alignment network's regression target.
    context, target : frames per window before / after the forecast time.
    """

    windows: list[tuple[str, int]]
    window_first: np.ndarray
    frame_mean: np.ndarray
    frame_logvar: np.ndarray
    frame_intensity: np.ndarray
    context: int
    target: int

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(h, w, C) of one latent frame."""
        return tuple(self.frame_mean.shape[1:])

    def _gather(self, array: np.ndarray, rows, offset: int, count: int) -> np.ndarray:
        """Frames ``offset .. offset + count - 1`` of each window in ``rows``: (n, count, ...) float32."""
        first = self.window_first[np.asarray(rows, dtype=np.int64)]
        return np.asarray(array[first[:, None] + offset + np.arange(count)], dtype=np.float32)

    def conditioning(self, rows) -> np.ndarray:
        """(n, context, h, w, C) float32 conditioning latents (posterior means) of ``rows``."""
        return self._gather(self.frame_mean, rows, 0, self.context)

    def target_mean(self, rows) -> np.ndarray:
        """(n, target, h, w, C) float32 posterior means of the target frames of ``rows``."""
        return self._gather(self.frame_mean, rows, self.context, self.target)

    def target_logvar(self, rows) -> np.ndarray:
        """(n, target, h, w, C) float32 posterior log-variances of the target frames of ``rows``."""
        return self._gather(self.frame_logvar, rows, self.context, self.target)

    def target_intensity(self, rows) -> np.ndarray:
        """(n, target) float32 average intensity ([0, 1] units) of each clean target frame of ``rows``."""
        return self._gather(self.frame_intensity, rows, self.context, self.target)

    def target_sample(self, rows, noise: np.ndarray) -> np.ndarray:
        """(n, target, h, w, C) float32 posterior samples of the target latents for the given N(0, 1) noise.

        A training target is ``mean + exp(logvar / 2) * noise`` drawn afresh at every visit (the reference's
        posterior sample, without re-running the encoder).
        """
        std = np.exp(np.float32(0.5) * self.target_logvar(rows))
        return (self.target_mean(rows) + std * noise.astype(np.float32)).astype(np.float32)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _event_frames(dataset: SevirDataset) -> list[tuple[str, int]]:
    """(event_id, frame count) of every event of the dataset that has at least one window, in id order."""
    events = dict.fromkeys(event_id for event_id, _ in dataset.windows())
    return [(event_id, dataset.event_shape(event_id)[0]) for event_id in events]


def latent_cache_key(vae_digest: str, dataset: SevirDataset) -> str:
    """Identity of a cache: the VAE checkpoint's digest, the dataset folder, split and its events' frames.

    The window stride is not part of it: windows are cut from the cached frames when the cache is opened.
    """
    payload = json.dumps({"format": LATENT_CACHE_FORMAT, "vae": vae_digest, "root": str(dataset.root.resolve()),
                          "split": dataset.split, "events": _event_frames(dataset)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def open_latent_cache(directory: str | os.PathLike, key: str, dataset: SevirDataset) -> LatentCache | None:
    """The cache in ``directory`` if it is complete and was built for ``key``, with ``dataset``'s windows; else None."""
    directory = Path(directory)
    index_path = directory / "index.json"
    if not index_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text())
        if index.get("key") != key:
            return None
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r")
                  for name in ("frame_mean", "frame_logvar", "frame_intensity")}
    except (OSError, ValueError):
        return None
    offsets = {str(event_id): int(offset) for event_id, offset in index["offsets"]}
    if any(len(array) != int(index["frames"]) for array in arrays.values()):
        return None
    windows = dataset.windows()
    first = np.array([offsets[event_id] + dataset.window_starts(event_id)[k] for event_id, k in windows],
                     dtype=np.int64)
    return LatentCache(windows=windows, window_first=first, context=dataset.window.context,
                       target=dataset.window.target, **arrays)


def build_latent_cache(encode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], dataset: SevirDataset,
                       directory: str | os.PathLike, key: str,
                       progress: Callable[[int, int], None] | None = None) -> LatentCache:
    """Encode every frame of the split's events once and write the cache (each file atomically, ``index.json`` last).

    Parameters
    ----------
    encode : maps frames ``(n, L, H, W, 1)`` float32 [0, 1] to the posterior ``(mean, logvar)``, each
        ``(n, L, h, w, C)`` float32 (see :func:`prediff.train.ldm.vae_posterior_encoder`); called once per event.
    dataset : the split to encode.
    directory : cache folder (created); an existing cache there is replaced.
    key : :func:`latent_cache_key` of the VAE and dataset.
    progress : optional ``progress(done, total)`` callback, in events.

    Returns
    -------
    The opened :class:`LatentCache`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.json").unlink(missing_ok=True)
    events = _event_frames(dataset)
    if not events:
        raise DataError(f"the {dataset.split} split of {dataset.root} has no windows to encode; check the "
                        "split dates of the config")
    offsets = np.concatenate([[0], np.cumsum([frames for _, frames in events])])
    with contextlib.ExitStack() as stack:
        # rows are streamed into memory-mapped files so a full SEVIR-LR split never sits in memory
        outputs: dict[str, np.ndarray] = {}
        for number, (event_id, _) in enumerate(events):
            frames = unit_frames(dataset.read_event(event_id))[None]
            mean, logvar = encode(frames)
            rows = {"frame_mean": mean[0], "frame_logvar": logvar[0],
                    "frame_intensity": frames[0].mean(axis=(1, 2, 3), dtype=np.float64)}
            if not outputs:
                for name, block in rows.items():
                    temporary = stack.enter_context(atomic_path(directory / f"{name}.npy"))
                    outputs[name] = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32,
                                                              shape=(int(offsets[-1]),) + block.shape[1:])
            for name, block in rows.items():
                outputs[name][offsets[number]:offsets[number + 1]] = block
            if progress is not None:
                progress(number + 1, len(events))
        for array in outputs.values():
            array.flush()
        outputs.clear()
    with atomic_path(directory / "index.json") as temporary:
        temporary.write_text(json.dumps({"format": LATENT_CACHE_FORMAT, "key": key, "split": dataset.split,
                                         "root": str(dataset.root), "frames": int(offsets[-1]),
                                         "offsets": [[event_id, int(offset)]
                                                     for (event_id, _), offset in zip(events, offsets)]}))
    cache = open_latent_cache(directory, key, dataset)
    if cache is None:
        raise DataError(f"the latent cache just written to {directory} cannot be read back; check free disk space")
    return cache
