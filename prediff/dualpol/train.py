"""Training, inference and evaluation of the dual-pol ZH nowcaster (:class:`prediff.dualpol.unet.DualPolUNet`).

Configuration (``configs/dualpol.yaml``, ``configs/dualpol_zh_only.yaml``): three sections whose keys are checked
strictly (:func:`load_config`):

* ``data`` — ``input_heights``, ``target`` (field key nowcast, e.g. ``dBZ@1.0km``), ``n_input``, ``n_target``,
  ``stride``, ``test_processes``, ``val_processes`` (held out of training to choose the checkpoint; the rest
  train), ``out_of_range``;
* ``model`` — ``variables`` (one branch each), ``width``, ``levels``, ``se_reduction``;
* ``train`` — ``seed``, ``steps``, ``batch_size``, ``learning_rate``, ``crop`` (side of the random square crops
  trained on; the network is fully convolutional and predicts whole frames), ``loss_thresholds_dbz`` and
  ``loss_weights`` (the intensity weighting of the loss, below), ``val_every`` (validate every so many steps on
  the whole frames of ``val_processes`` and keep the weights with the lowest validation loss; 0 = keep the
  last weights).

Inputs of a window: for each variable (branch) and each input height, the ``n_input`` context frames, channel
order variable -> height -> time, normalised to [0, 1]; missing (NaN) input pixels are filled with the "no
echo" value 0 of their physical unit before normalisation. Targets: ``n_target`` frames of the target field,
normalised; the loss is the weighted mean of the squared error over the valid (finite) target pixels, a pixel's
weight set by its observed ZH: ``loss_weights[k]`` with k the number of ``loss_thresholds_dbz`` at or below it
(no thresholds: the plain MSE). This is the balanced MSE of Shi et al. (2017, NeurIPS, "Deep learning for
precipitation nowcasting: a benchmark and a new model"): a network trained on the plain MSE smooths the few
intense cores below the warning thresholds, because under uncertainty their conditional mean is lower.

Determinism: MindSpore's global seed and one numpy generator (``train.seed``) fix the initial weights, the batch
order and the crops; on one device and thread count the same config gives the same checkpoint. The learning rate
is constant, so the weights after k steps are those of a k-step training: the checkpoint kept by validation is
saved with ``train.steps`` set to its step. The training step is compiled (``mindspore.jit``).
The checkpoint is written as ``<name>.ckpt`` with its configuration beside it as ``<name>.yaml``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import yaml

from prediff.dualpol.config_io import read_yaml_mapping, sections_from_dict, sections_to_dict
from prediff.dualpol.reader import (DEFAULT_TEST_PROCESSES, HEIGHTS, VARIABLES, NjuCpolDataset, denormalise,
                                    field_key, list_processes, normalise, split_processes, variable_of)
from prediff.dualpol.scores import (NOWCAST_EVENTS, categorical_accum, categorical_compute, categorical_init,
                                    continuous_accum, continuous_compute, continuous_init)
from prediff.dualpol.training_loop import fit_adam, weighted_square_loss
from prediff.errors import CheckpointError, ConfigError
from prediff.io_utils import atomic_path


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which fields, windows and split the nowcaster uses (see the module docstring)."""

    input_heights: tuple[str, ...] = ("1.0km", "3.0km", "7.0km")
    target: str = "dBZ@1.0km"
    n_input: int = 10
    n_target: int = 10
    stride: int = 2
    test_processes: tuple[int, ...] = DEFAULT_TEST_PROCESSES
    val_processes: tuple[int, ...] = ()
    out_of_range: str = "clip"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Constructor arguments of the network that do not follow from the data."""

    variables: tuple[str, ...] = VARIABLES
    width: int = 8
    levels: int = 3
    se_reduction: int = 4


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (Adam on the intensity-weighted MSE of the module docstring)."""

    seed: int = 0
    steps: int = 400
    batch_size: int = 4
    learning_rate: float = 1e-3
    crop: int = 32
    loss_thresholds_dbz: tuple[float, ...] = ()
    loss_weights: tuple[float, ...] = (1.0,)
    val_every: int = 0

    def pixel_weights(self, target_dbz: np.ndarray) -> np.ndarray:
        """Loss weight of each target pixel: (...) ZH in dBZ (NaN allowed) -> (...) float32, 0 where NaN."""
        classes = np.searchsorted(np.asarray(self.loss_thresholds_dbz, dtype=np.float64),
                                  np.nan_to_num(target_dbz, nan=0.0), side="right")
        weights = np.asarray(self.loss_weights, dtype=np.float32)[classes]
        return np.where(np.isfinite(target_dbz), weights, 0.0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class NowcastConfig:
    """The whole configuration file."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    @property
    def branch_keys(self) -> list[str]:
        """Input field keys in channel order (variable -> height)."""
        return [field_key(v, h) for v in self.model.variables for h in self.data.input_heights]

    @property
    def channels_per_branch(self) -> int:
        return self.data.n_input * len(self.data.input_heights)

    @property
    def last_frame_channel(self) -> int:
        """Channel (within the dBZ branch) of the last context frame at the target height."""
        height = self.data.target.split("@")[1]
        return self.data.input_heights.index(height) * self.data.n_input + self.data.n_input - 1

    def to_dict(self) -> dict:
        """Plain-Python form (lists, numbers, strings) for YAML."""
        return sections_to_dict(self)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def config_from_dict(raw: Mapping[str, Any], source: str = "config") -> NowcastConfig:
    """Check and convert a configuration mapping (unknown keys and wrong types raise ConfigError)."""
    config = NowcastConfig(**sections_from_dict(raw, _SECTIONS, source))
    _check(config, source)
    return config


def _check(config: NowcastConfig, source: str) -> None:
    data, model, train = config.data, config.model, config.train
    for height in data.input_heights:
        if height not in HEIGHTS:
            raise ConfigError(f"{source}: data.input_heights has {height!r}; choose from {', '.join(HEIGHTS)}")
    if variable_of(data.target) != "dBZ" or data.target.split("@")[1] not in data.input_heights:
        raise ConfigError(f"{source}: data.target must be 'dBZ@<height>' at one of the input heights, got "
                          f"{data.target!r}")
    for variable in model.variables:
        if variable not in VARIABLES:
            raise ConfigError(f"{source}: model.variables has {variable!r}; choose from {', '.join(VARIABLES)}")
    if "dBZ" not in model.variables:
        raise ConfigError(f"{source}: model.variables must include 'dBZ' (the nowcast field)")
    if min(data.n_input, data.n_target, data.stride, model.width, model.levels, model.se_reduction,
           train.steps, train.batch_size, train.crop) < 1 or train.learning_rate <= 0:
        raise ConfigError(f"{source}: frame counts, stride, sizes, steps, batch size, crop and learning rate must "
                          "be positive")
    thresholds, weights = train.loss_thresholds_dbz, train.loss_weights
    # an empty default tuple gives the strict reader no element type, so the thresholds are checked here
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in thresholds):
        raise ConfigError(f"{source}: train.loss_thresholds_dbz must be a list of numbers (dBZ), got "
                          f"{list(thresholds)}")
    if (len(weights) != len(thresholds) + 1 or any(w <= 0 for w in weights)
            or any(b <= a for a, b in zip(thresholds, thresholds[1:]))):
        raise ConfigError(f"{source}: train.loss_weights needs one positive weight per ZH class, i.e. "
                          f"len(loss_thresholds_dbz) + 1 = {len(thresholds) + 1}, and the thresholds must increase; "
                          f"got thresholds {list(thresholds)}, weights {list(weights)}")
    if set(data.val_processes) & set(data.test_processes):
        raise ConfigError(f"{source}: data.val_processes {list(data.val_processes)} overlap data.test_processes; "
                          "choose validation processes from the training ones")
    if train.val_every < 0 or (train.val_every and not data.val_processes):
        raise ConfigError(f"{source}: train.val_every must be >= 0, and > 0 only with data.val_processes")
    if train.crop % 2 ** (model.levels - 1):
        raise ConfigError(f"{source}: train.crop {train.crop} must be divisible by 2^(levels-1) = "
                          f"{2 ** (model.levels - 1)}")


def load_config(path: str | Path) -> NowcastConfig:
    """Read a dual-pol nowcasting YAML file (see the module docstring)."""
    raw, source = read_yaml_mapping(path, "configs/dualpol.yaml")
    return config_from_dict(raw, source)


def window_arrays(dataset: NjuCpolDataset, index: int, config: NowcastConfig) -> tuple[np.ndarray, np.ndarray]:
    """Network input and target of one window.

    Returns
    -------
    inputs : (C, H, W) float32 in [0, 1], C = len(variables) * len(input_heights) * n_input.
    target : (n_target, H, W) float32 normalised target field, NaN where missing.
    """
    window = dataset.window(index, keys=config.branch_keys + [config.data.target])
    channels = [normalise(np.nan_to_num(window.inputs(key), nan=0.0), key) for key in config.branch_keys]
    target = window.targets(config.data.target)
    return np.concatenate(channels, axis=0), np.where(np.isnan(target), np.nan, normalise(target, "dBZ"))


def load_split(root: str | Path, config: NowcastConfig, split: str) -> tuple[np.ndarray, np.ndarray, list]:
    """All windows of the ``"train"``, ``"val"`` or ``"test"`` split in memory (train = neither val nor test).

    Returns
    -------
    inputs (N, C, H, W) float32, targets (N, n_target, H, W) float32 (normalised, NaN = missing), and the
    (process, start frame) of each window.
    """
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be 'train', 'val' or 'test', got {split!r}")
    keys = config.branch_keys + [config.data.target]
    held_out = tuple(config.data.test_processes) + tuple(config.data.val_processes)
    train_processes, held = split_processes(list_processes(root, keys[0]), held_out)
    processes = {"train": train_processes, "val": [p for p in held if p in set(config.data.val_processes)],
                 "test": [p for p in held if p in set(config.data.test_processes)]}[split]
    if not processes:
        raise ConfigError(f"the {split} split of {root} is empty (test processes: {list(config.data.test_processes)}, "
                          f"validation processes: {list(config.data.val_processes)}); generate more processes or "
                          "change data.test_processes / data.val_processes")
    dataset = NjuCpolDataset(root, keys=keys, n_input=config.data.n_input, n_target=config.data.n_target,
                             stride=config.data.stride, processes=processes, out_of_range=config.data.out_of_range)
    pairs = [window_arrays(dataset, i, config) for i in range(len(dataset))]
    if not pairs:
        raise ConfigError(f"the {split} split has no window of {config.data.n_input + config.data.n_target} frames")
    return (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), list(dataset.window_index))


def build_network(config: NowcastConfig):
    """The :class:`~prediff.dualpol.unet.DualPolUNet` described by ``config`` (weights from MindSpore's seed)."""
    from prediff.dualpol.unet import DualPolUNet

    return DualPolUNet(config.model.variables, config.channels_per_branch, config.data.n_target,
                       config.last_frame_channel, width=config.model.width, levels=config.model.levels,
                       se_reduction=config.model.se_reduction)


def validation_loss(network, config: NowcastConfig, inputs: np.ndarray, targets: np.ndarray,
                    batch_size: int = 8) -> float:
    """The training loss (intensity-weighted MSE of normalised ZH) of ``network`` on whole frames.

    inputs (N, C, H, W), targets (N, n_target, H, W) as :func:`load_split` returns them.
    """
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    network.set_train(False)
    weighted, total = 0.0, 0.0
    for start in range(0, len(inputs), batch_size):
        target = targets[start:start + batch_size]
        weights = config.train.pixel_weights(denormalise(target, "dBZ"))
        output = network(ms.Tensor(inputs[start:start + batch_size])).asnumpy()
        weighted += float(np.sum(np.square(output - np.nan_to_num(target, nan=0.0), dtype=np.float64) * weights))
        total += float(weights.sum(dtype=np.float64))
    return weighted / max(total, 1.0)


@dataclasses.dataclass
class TrainingResult:
    """What :func:`train_network` returns besides the network.

    history : (step, mean training loss over the last ``log_every`` steps) pairs.
    validation : (step, validation loss) pairs, empty without validation.
    kept_step : the step whose weights the network holds (the last, or the best validated).
    """

    history: list
    validation: list
    kept_step: int


def train_network(config: NowcastConfig, inputs: np.ndarray, targets: np.ndarray,
                  log: Callable[[str], None] = print, log_every: int = 25,
                  snapshot: Callable[[int, Any], None] | None = None,
                  validation: tuple[np.ndarray, np.ndarray] | None = None):
    """Train a fresh network with Adam on random crops (deterministic, see the module docstring).

    Parameters
    ----------
    inputs : (N, C, H, W) float32 in [0, 1]; targets : (N, n_target, H, W) float32, NaN = missing.
    snapshot : optional ``snapshot(step, network)`` called every ``log_every`` steps; the weights at step k are
        those of a k-step training with the same config (constant learning rate, same batch sequence).
    validation : the (inputs, targets) of the validation split; with ``train.val_every`` > 0 the network is
        scored on them every ``val_every`` steps and the weights with the lowest validation loss are kept.

    Returns
    -------
    (network, :class:`TrainingResult`).
    """
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    settings = config.train
    ms.set_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    network = build_network(config)
    size = inputs.shape[-1]
    crop = min(settings.crop, size)

    def next_batch(_step):
        batch = rng.choice(len(inputs), size=min(settings.batch_size, len(inputs)), replace=False)
        row, col = rng.integers(0, size - crop + 1, size=2)
        y = targets[batch, :, row:row + crop, col:col + crop]
        weights = settings.pixel_weights(denormalise(y, "dBZ"))
        return inputs[batch, :, row:row + crop, col:col + crop], np.nan_to_num(y, nan=0.0), weights

    scores, best = [], {"loss": np.inf, "step": settings.steps, "weights": None}

    def validate(step: int) -> None:
        if validation is None or not settings.val_every or step % settings.val_every:
            return
        loss = validation_loss(network, config, *validation)
        scores.append((step, loss))
        log(f"validation at step {step}: loss {loss:.5f}")
        if loss < best["loss"]:
            best.update(loss=loss, step=step, weights={n: p.asnumpy().copy() for n, p in network.parameters_and_names()})

    history = fit_adam(network, weighted_square_loss(network), next_batch, settings.steps, settings.learning_rate, log,
                       log_every, on_log=None if snapshot is None else lambda step: snapshot(step, network),
                       on_step=validate, compile_graph=True)
    if best["weights"] is not None:
        for name, parameter in network.parameters_and_names():
            ms.ops.assign(parameter, ms.Tensor(best["weights"][name]))
        log(f"kept the weights of step {best['step']} (lowest validation loss {best['loss']:.5f})")
    return network, TrainingResult(history=history, validation=scores, kept_step=int(best["step"]))


def save_nowcaster(network, config: NowcastConfig, path: str | Path) -> Path:
    """Write ``<path>`` (.ckpt, the weights) and the same name with .yaml (the config), both atomically."""
    from prediff.models.checkpoint import write_checkpoint

    path = Path(path)
    write_checkpoint({name: p.asnumpy() for name, p in network.parameters_and_names()}, path)
    with atomic_path(path.with_suffix(".yaml")) as temporary:
        temporary.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def load_nowcaster(path: str | Path, config: NowcastConfig | None = None):
    """Load a network written by :func:`save_nowcaster` strictly (every parameter, same shapes).

    ``config`` defaults to the ``.yaml`` beside the checkpoint. Returns (network, config).
    """
    from prediff.models.checkpoint import read_checkpoint
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    path = Path(path)
    if config is None:
        config_path = path.with_suffix(".yaml")
        if not config_path.is_file():
            raise CheckpointError(f"{config_path} (the configuration saved with {path.name}) is missing; pass "
                                  "--config with the file the checkpoint was trained from")
        config = load_config(config_path)
    stored = read_checkpoint(path)
    network = build_network(config)
    expected = {name: tuple(p.shape) for name, p in network.parameters_and_names()}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong = sorted(n for n in set(expected) & set(stored) if tuple(stored[n].shape) != expected[n])
    if missing or unexpected or wrong:
        raise CheckpointError(f"{path} does not match the network of its config: {len(missing)} missing "
                              f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}), "
                              f"{len(wrong)} with other shapes (e.g. {wrong[:2]}); use the config it was trained with")
    for name, parameter in network.parameters_and_names():
        parameter.set_data(ms.Tensor(stored[name]))
    network.set_train(False)
    return network, config


def predict(network, inputs: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """Nowcast in physical units: (N, C, H, W) normalised inputs -> (N, n_target, H, W) float32 dBZ in [0, 65]."""
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    outputs = [network(ms.Tensor(inputs[i:i + batch_size])).asnumpy() for i in range(0, len(inputs), batch_size)]
    return denormalise(np.clip(np.concatenate(outputs), 0.0, 1.0), "dBZ")


def persistence(inputs: np.ndarray, config: NowcastConfig) -> np.ndarray:
    """Last context frame of the target field repeated: (N, C, H, W) -> (N, n_target, H, W) float32 dBZ."""
    channel = config.model.variables.index("dBZ") * config.channels_per_branch + config.last_frame_channel
    last = denormalise(inputs[:, channel], "dBZ")
    return np.repeat(last[:, None], config.data.n_target, axis=1)


def score_nowcasts(forecasts: Mapping[str, np.ndarray], observation: np.ndarray,
                   window_sizes: Sequence[int] = (1, 4, 8)) -> dict[str, dict]:
    """MSE and CSI / POD / F / HK at ZH >= 35 dBZ of several nowcasts of one observation.

    Parameters
    ----------
    forecasts : method name -> (N, T, H, W) dBZ; observation : (N, T, H, W) dBZ (NaN = missing).

    Returns
    -------
    method -> {"continuous": :func:`~prediff.dualpol.scores.continuous_compute` output,
    "categorical": :func:`~prediff.dualpol.scores.categorical_compute` output}.
    """
    results = {}
    n_lead_times = observation.shape[1]
    for name, forecast in forecasts.items():
        continuous = continuous_init(n_lead_times, min_observation=1.0)
        continuous_accum(continuous, forecast, observation)
        categorical = categorical_init(NOWCAST_EVENTS, n_lead_times, window_sizes)
        categorical_accum(categorical, forecast, observation)
        results[name] = {"continuous": continuous_compute(continuous), "categorical": categorical_compute(categorical)}
    return results
