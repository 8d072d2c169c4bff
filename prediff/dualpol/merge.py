"""Learned merge of a rain-rate ensemble into one field: per-pixel weights on the sorted members (MindSpore).

The ensemble mean is the MSE-optimal summary only if the members are calibrated draws; a briefly trained
diffusion model is not, and its spread carries information about where it errs. The merge network looks at
each pixel's ensemble statistics and the reflectivity and returns a convex combination of the sorted members:

* features (:func:`ensemble_features`, (N, M + 3, H, W)): the M members sorted per pixel (order statistics) in
  the diffusion state ``2 log(1 + R) / log(201) - 1``, their mean and standard deviation in that state, and ZH at
  1 km normalised to [0, 1];
* network (:class:`MergeNetwork`): 1 x 1 convolutions ``M + 3 -> hidden -> M`` with SiLU, softmax over the M
  outputs = per-pixel weights of the sorted members (so the result stays between the ensemble's min and max);
* merged rain (mm/h) = ``sum_k w_k R_(k)``; trained by Adam on the MSE in mm/h over the valid pixels of the
  training frames (the score it is judged by).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from prediff.dualpol.diffusion_qpe import rain_to_state
from prediff.dualpol.reader import normalise
from prediff.dualpol.training_loop import fit_adam, masked_mean_square
from prediff.errors import DataError
from prediff.runtime import mindspore_module

ms = mindspore_module()
nn = ms.nn

#: Hidden channels of the merge network.
MERGE_HIDDEN = 16


def ensemble_features(ensemble: np.ndarray, reflectivity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel inputs of the merge network and the sorted members.

    Parameters
    ----------
    ensemble : (N, M, H, W) rain rate in mm/h (members in any order).
    reflectivity : (N, H, W) ZH at 1 km in dBZ (NaN = missing, treated as no echo).

    Returns
    -------
    features : (N, M + 3, H, W) float32 (see the module docstring); sorted : (N, M, H, W) float32 mm/h, members
    sorted ascending per pixel.
    """
    ensemble = np.asarray(ensemble, dtype=np.float32)
    reflectivity = np.asarray(reflectivity, dtype=np.float32)
    if ensemble.ndim != 4 or reflectivity.shape != ensemble.shape[:1] + ensemble.shape[2:]:
        raise DataError(f"ensemble {ensemble.shape} must be (N, M, H, W) and reflectivity {reflectivity.shape} "
                        "(N, H, W) of the same frames")
    ordered = np.sort(ensemble, axis=1)
    state = rain_to_state(ordered)
    zh = normalise(np.nan_to_num(reflectivity, nan=0.0), "dBZ")[:, None]
    features = np.concatenate([state, state.mean(axis=1, keepdims=True), state.std(axis=1, keepdims=True), zh],
                              axis=1)
    return features.astype(np.float32), ordered


class MergeNetwork(nn.Cell):
    """Per-pixel softmax weights of M sorted members: (N, M + 3, H, W) features -> (N, M, H, W) weights."""

    def __init__(self, members: int, hidden: int = MERGE_HIDDEN):
        super().__init__()
        self.members = members
        self.hidden = nn.Conv2d(members + 3, hidden, 1, has_bias=True)
        self.out = nn.Conv2d(hidden, members, 1, has_bias=True)
        self.act = nn.SiLU()
        self.softmax = nn.Softmax(axis=1)

    def construct(self, features):
        return self.softmax(self.out(self.act(self.hidden(features))))


def build_merge(members: int) -> MergeNetwork:
    """A fresh merge network for an M-member ensemble (weights from MindSpore's global seed)."""
    return MergeNetwork(int(members))


def train_merge(ensemble: np.ndarray, reflectivity: np.ndarray, rain: np.ndarray, steps: int = 300,
                learning_rate: float = 1e-2, batch_size: int = 8, seed: int = 0,
                log: Callable[[str], None] = print, log_every: int = 50):
    """Fit a merge network on training ensembles.

    Parameters
    ----------
    ensemble : (N, M, H, W) mm/h; reflectivity : (N, H, W) dBZ at 1 km; rain : (N, H, W) mm/h truth (NaN =
    missing, left out of the loss).

    Returns
    -------
    (network, history) with history a list of (step, mean MSE in (mm/h)^2 over the last ``log_every`` steps).
    """
    ms.set_seed(seed)
    rng = np.random.default_rng(seed)
    features, ordered = ensemble_features(ensemble, reflectivity)
    rain = np.asarray(rain, dtype=np.float32)
    valid = np.isfinite(rain)[:, None]
    truth = np.nan_to_num(rain, nan=0.0)[:, None]
    network = build_merge(ordered.shape[1])

    def next_batch(_step):
        batch = rng.choice(len(features), size=min(batch_size, len(features)), replace=False)
        return features[batch], ordered[batch], truth[batch], valid[batch]

    def loss_fn(x, members, y, mask):
        merged = (network(x) * members).sum(axis=1, keepdims=True)
        return masked_mean_square(ms, merged - y, mask)

    history = fit_adam(network, loss_fn, next_batch, steps, learning_rate, log, log_every, label="merge step",
                       loss_name="MSE (mm/h)^2")
    return network, history


def merge_ensemble(network: MergeNetwork, ensemble: np.ndarray, reflectivity: np.ndarray,
                   batch_size: int = 8) -> np.ndarray:
    """Merged rain field: (N, M, H, W) mm/h ensemble + (N, H, W) dBZ -> (N, H, W) float32 mm/h."""
    features, ordered = ensemble_features(ensemble, reflectivity)
    if ordered.shape[1] != network.members:
        raise DataError(f"the merge network was trained for {network.members} members, the ensemble has "
                        f"{ordered.shape[1]}; sample with sampling.members = {network.members}")
    weights = np.concatenate([network(ms.Tensor(features[i:i + batch_size])).asnumpy()
                              for i in range(0, len(features), batch_size)])
    return (weights * ordered).sum(axis=1).astype(np.float32)
