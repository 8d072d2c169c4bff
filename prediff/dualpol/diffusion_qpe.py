"""Conditional diffusion rain-rate estimation (no KDP): an ensemble of 1 km rain fields given ZH and ZDR.

The estimate is a sample of ``p(rain | ZH, ZDR at 1, 3 and 7 km)`` drawn by a small conditional denoiser with the
PreDiff machinery of :mod:`prediff.diffusion` (linear :class:`~prediff.diffusion.NoiseSchedule`, eps prediction,
:class:`~prediff.diffusion.DDIMSampler`). Several draws from independent starting noise form an ensemble.

* **State** (what is diffused): the rain rate R (mm/h) as ``x = 2 log(1 + R) / log(1 + 200) - 1`` in [-1, 1]
  (:func:`rain_to_state`); dry pixels are -1. The log compresses the heavy-rain tail so that light and heavy
  rain both matter to the loss; NaN rain is left out of the loss.
* **Condition**: six channels, ZH and ZDR at 1, 3, 7 km normalised to [0, 1] with the reader's customary ranges
  (:func:`prediff.dualpol.reader.normalise`), NaN filled with the "no echo" value 0 of the physical unit.
* **Denoiser** (:class:`ConditionalDenoiser`, MindSpore, NCHW float32): a two-level U-Net on
  ``concat(x_t, condition)`` with a sinusoidal timestep embedding added as a per-channel bias in every residual
  block; output eps, the noise in x_t.
* **Training**: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, t uniform in 0 ... T-1, masked MSE on eps,
  Adam, random square crops, deterministic (MindSpore seed + one numpy generator).
* **Sampling**: DDIM (``sampling.num_steps`` steps, ``eta``) from N(0, 1), returned in mm/h (clipped to 0-200);
  with ``sampling.clip_clean`` (default) the predicted clean state is clipped to [-1, 1] at every step and eps
  recomputed from it before the DDIM step (static thresholding).

The ensemble is summarised by its mean (:func:`ensemble_mean`) or by the learned merge of
:mod:`prediff.dualpol.merge`. Configuration: ``configs/dualpol_diffusion_qpe.yaml`` (strict keys,
:func:`load_qpe_config`); measured results and the recipe in ``docs/dualpol.md``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import yaml

from prediff.dualpol.reader import (DEFAULT_TEST_PROCESSES, HEIGHTS, RAIN, VALID_RANGES, field_key,
                                    list_processes, load_frames, normalise, split_processes)
from prediff.dualpol.scores import (RAIN_CLASSES, categorical_accum, categorical_compute, categorical_init,
                                    continuous_accum, continuous_compute, continuous_init)
from prediff.errors import CheckpointError, ConfigError, DataError
from prediff.io_utils import atomic_path

#: Condition channels in network order: ZH then ZDR, each at 1, 3, 7 km.
CONDITION_KEYS: tuple[str, ...] = tuple(field_key(v, h) for v in ("dBZ", "ZDR") for h in HEIGHTS)
#: Top of the rain-rate range (mm/h) mapped to state +1.
RAIN_MAX_MM_H = VALID_RANGES[RAIN][1]
DENOISER_FILE = "denoiser.ckpt"
MERGE_FILE = "merge.ckpt"
CONFIG_FILE = "config.yaml"


@dataclasses.dataclass(frozen=True)
class DataSection:
    """Which heights are the target and the split (``rain`` is the 1 km rain rate of the layout)."""

    test_processes: tuple[int, ...] = DEFAULT_TEST_PROCESSES
    out_of_range: str = "clip"


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """Denoiser sizes: ``width`` channels at full resolution, ``2 width`` at half; embedding size."""

    width: int = 16
    time_embedding: int = 32


@dataclasses.dataclass(frozen=True)
class DiffusionSection:
    """The linear noise schedule (as PreDiff's ``model.diffusion``)."""

    timesteps: int = 1000
    linear_start: float = 1e-4
    linear_end: float = 2e-2


@dataclasses.dataclass(frozen=True)
class SamplingSection:
    """DDIM settings and ensemble size."""

    num_steps: int = 20
    eta: float = 0.0
    members: int = 8
    seed: int = 0
    clip_clean: bool = True


@dataclasses.dataclass(frozen=True)
class TrainSection:
    """Denoiser optimisation (Adam) and the merge network's."""

    seed: int = 0
    steps: int = 1500
    batch_size: int = 8
    learning_rate: float = 2e-3
    crop: int = 32
    merge_steps: int = 300
    merge_learning_rate: float = 1e-2


@dataclasses.dataclass(frozen=True)
class DiffusionQpeConfig:
    """The whole ``configs/dualpol_diffusion_qpe.yaml``."""

    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    diffusion: DiffusionSection = DiffusionSection()
    sampling: SamplingSection = SamplingSection()
    train: TrainSection = TrainSection()

    def to_dict(self) -> dict:
        """Plain-Python form for YAML."""
        return {name: {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(section).items()}
                for name, section in ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))}


_SECTION_CLASSES = {"data": DataSection, "model": ModelSection, "diffusion": DiffusionSection,
                    "sampling": SamplingSection, "train": TrainSection}


def _convert(value: Any, default: Any, where: str) -> Any:
    try:
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(int(v) for v in value)
        if isinstance(default, (str, bool)):
            if not isinstance(value, type(default)):
                raise TypeError
            return value
        if isinstance(default, int) and (isinstance(value, bool) or float(value) != int(value)):
            raise TypeError
        return type(default)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} = {value!r} has the wrong type; expected like {default!r}") from None


def qpe_config_from_dict(raw: Mapping[str, Any], source: str = "config") -> DiffusionQpeConfig:
    """Check and convert a configuration mapping (unknown sections / keys and wrong types raise ConfigError)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source} must be a mapping with sections {', '.join(_SECTION_CLASSES)}")
    unknown = set(raw) - set(_SECTION_CLASSES)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}; valid: "
                          f"{', '.join(_SECTION_CLASSES)}")
    sections = {}
    for name, cls in _SECTION_CLASSES.items():
        given = raw.get(name) or {}
        if not isinstance(given, Mapping):
            raise ConfigError(f"{source}: section {name} must be a mapping")
        defaults = cls()
        valid = {f.name for f in dataclasses.fields(cls)}
        extra = set(given) - valid
        if extra:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(sorted(extra))} in {name}; valid: "
                              f"{', '.join(sorted(valid))}")
        sections[name] = cls(**{k: _convert(v, getattr(defaults, k), f"{name}.{k}") for k, v in given.items()})
    config = DiffusionQpeConfig(**sections)
    positive = (config.model.width, config.model.time_embedding, config.diffusion.timesteps, config.sampling.num_steps,
                config.sampling.members, config.train.steps, config.train.batch_size, config.train.crop,
                config.train.merge_steps)
    if min(positive) < 1 or config.train.learning_rate <= 0 or config.train.merge_learning_rate <= 0:
        raise ConfigError(f"{source}: sizes, steps, members, batch size, crop and learning rates must be positive")
    if config.train.crop % 2 or config.model.time_embedding % 2:
        raise ConfigError(f"{source}: train.crop and model.time_embedding must be even")
    if not 0.0 <= config.sampling.eta <= 1.0:
        raise ConfigError(f"{source}: sampling.eta must lie in [0, 1]")
    if config.sampling.num_steps > config.diffusion.timesteps:
        raise ConfigError(f"{source}: sampling.num_steps ({config.sampling.num_steps}) exceeds diffusion.timesteps")
    return config


def load_qpe_config(path: str | Path) -> DiffusionQpeConfig:
    """Read a diffusion-QPE YAML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; start from configs/dualpol_diffusion_qpe.yaml")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    return qpe_config_from_dict(raw, str(path))


def rain_to_state(rain: np.ndarray) -> np.ndarray:
    """Rain rate (mm/h, any shape; NaN kept) -> diffusion state in [-1, 1] (float32), 0 mm/h -> -1."""
    clipped = np.clip(np.asarray(rain, dtype=np.float64), 0.0, RAIN_MAX_MM_H)
    return (2.0 * np.log1p(clipped) / math.log1p(RAIN_MAX_MM_H) - 1.0).astype(np.float32)


def state_to_rain(state: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rain_to_state`: state (clipped to [-1, 1]) -> rain rate in mm/h, float32 in [0, 200]."""
    clipped = np.clip(np.asarray(state, dtype=np.float64), -1.0, 1.0)
    return np.expm1((clipped + 1.0) / 2.0 * math.log1p(RAIN_MAX_MM_H)).astype(np.float32)


def condition_array(fields: Mapping[str, np.ndarray]) -> np.ndarray:
    """The six condition channels of a set of frames.

    Parameters
    ----------
    fields : key -> (N, H, W) physical units (dBZ, dB) for every key of :data:`CONDITION_KEYS`; NaN = missing.

    Returns
    -------
    (N, 6, H, W) float32 in [0, 1], NaN replaced by the normalised "no echo" value of 0 dBZ / 0 dB.
    """
    missing = [key for key in CONDITION_KEYS if key not in fields]
    if missing:
        raise DataError(f"the diffusion QPE needs field(s) {', '.join(missing)}; read ZH and ZDR at 1, 3 and 7 km")
    return np.stack([normalise(np.nan_to_num(np.asarray(fields[key], dtype=np.float32), nan=0.0), key)
                     for key in CONDITION_KEYS], axis=1)


def timestep_embedding(timesteps: np.ndarray, size: int) -> np.ndarray:
    """Sinusoidal embedding (Vaswani et al. 2017) of integer timesteps: (B,) -> (B, size) float32."""
    half = size // 2
    frequencies = np.exp(-math.log(10000.0) * np.arange(half, dtype=np.float64) / half)
    angles = np.asarray(timesteps, dtype=np.float64)[:, None] * frequencies[None]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def build_denoiser(config: DiffusionQpeConfig):
    """A fresh :class:`ConditionalDenoiser` of ``config`` (weights from MindSpore's global seed)."""
    from prediff.dualpol.diffusion_net import ConditionalDenoiser

    return ConditionalDenoiser(len(CONDITION_KEYS), config.model.width, config.model.time_embedding)


def schedule_of(config: DiffusionQpeConfig):
    """The :class:`~prediff.diffusion.NoiseSchedule` of ``config`` (linear, PreDiff's)."""
    from prediff.diffusion.schedule import NoiseSchedule

    section = config.diffusion
    return NoiseSchedule.linear(section.timesteps, section.linear_start, section.linear_end)


def training_frames(root: str | Path, config: DiffusionQpeConfig,
                    split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Condition and rain of every frame of one split of a dataset root.

    Returns
    -------
    condition (N, 6, H, W) float32 in [0, 1]; rain (N, H, W) float32 mm/h (NaN = missing).
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    keys = CONDITION_KEYS + (RAIN,)
    train, test = split_processes(list_processes(root, keys[0]), config.data.test_processes)
    processes = train if split == "train" else test
    if not processes:
        raise DataError(f"the {split} split of {root} is empty (test processes: {list(config.data.test_processes)}); "
                        "generate more processes with `prediff dualpol demo` or change data.test_processes")
    fields = load_frames(root, keys, processes, out_of_range=config.data.out_of_range)
    return condition_array(fields), fields[RAIN]


def train_denoiser(config: DiffusionQpeConfig, condition: np.ndarray, rain: np.ndarray,
                   log: Callable[[str], None] = print, log_every: int = 100):
    """Train a fresh denoiser on eps prediction (deterministic, see the module docstring).

    Parameters
    ----------
    condition : (N, 6, H, W) float32 in [0, 1]; rain : (N, H, W) float32 mm/h, NaN = missing.

    Returns
    -------
    (network, history): history a list of (step, mean loss over the last ``log_every`` steps).
    """
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    settings = config.train
    ms.set_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    schedule = schedule_of(config)
    network = build_denoiser(config)
    optimizer = ms.nn.Adam(network.trainable_params(), learning_rate=settings.learning_rate)
    state = rain_to_state(rain)

    def loss_fn(noisy, cond, embedding, noise, valid):
        error = (network(noisy, cond, embedding) - noise) ** 2
        return (error * valid).sum() / ms.ops.maximum(valid.sum(), ms.Tensor(1.0, ms.float32))

    gradient_fn = ms.value_and_grad(loss_fn, None, optimizer.parameters)
    size = rain.shape[-1]
    crop = min(settings.crop, size)
    history, recent, started = [], [], time.time()
    network.set_train(True)
    for step in range(1, settings.steps + 1):
        batch = rng.choice(len(state), size=min(settings.batch_size, len(state)), replace=False)
        row, col = rng.integers(0, size - crop + 1, size=2)
        clean = state[batch, None, row:row + crop, col:col + crop]
        cond = condition[batch, :, row:row + crop, col:col + crop]
        timesteps = rng.integers(0, schedule.num_timesteps, size=len(batch))
        noise = rng.standard_normal(clean.shape).astype(np.float32)
        valid = np.isfinite(clean).astype(np.float32)
        noisy = schedule.q_sample(np.nan_to_num(clean, nan=-1.0), timesteps, noise)
        loss, gradients = gradient_fn(ms.Tensor(noisy), ms.Tensor(cond),
                                      ms.Tensor(timestep_embedding(timesteps, config.model.time_embedding)),
                                      ms.Tensor(noise), ms.Tensor(valid))
        optimizer(gradients)
        recent.append(float(loss))
        if step % log_every == 0 or step == settings.steps:
            history.append((step, float(np.mean(recent))))
            log(f"denoiser step {step}/{settings.steps}  loss {np.mean(recent):.4f}  ({time.time() - started:.0f} s)")
            recent = []
    network.set_train(False)
    return network, history


def sample_ensemble(network, config: DiffusionQpeConfig, condition: np.ndarray, members: int | None = None,
                    seed: int | None = None, num_steps: int | None = None,
                    progress: Callable[[float], None] | None = None) -> np.ndarray:
    """Draw an ensemble of rain fields with DDIM.

    Parameters
    ----------
    network : trained :class:`ConditionalDenoiser`.
    condition : (N, 6, H, W) float32 in [0, 1] (:func:`condition_array`).
    members, seed, num_steps : override ``config.sampling`` (ensemble size M, noise seed, DDIM steps).
    progress : optional callback with the fraction done (0-1).

    Returns
    -------
    (N, M, H, W) float32 rain rate in mm/h, each member from independent starting noise.
    """
    from prediff.diffusion.ddim import DDIMSampler
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    sampling = config.sampling
    members = sampling.members if members is None else int(members)
    if members < 1:
        raise ConfigError(f"the ensemble needs at least one member, got {members}")
    sampler = DDIMSampler(schedule_of(config), sampling.num_steps if num_steps is None else int(num_steps),
                          eta=sampling.eta)
    rng = np.random.default_rng(sampling.seed if seed is None else seed)
    condition = np.asarray(condition, dtype=np.float32)
    n, _, height, width = condition.shape
    # every (frame, member) pair is one batch entry; the sampler works on (B, T, H, W, C) latents
    repeated = np.repeat(condition, members, axis=0)
    sample = rng.standard_normal((n * members, 1, height, width, 1)).astype(np.float32)
    cond_tensor = ms.Tensor(repeated)
    alphas_cumprod = sampler.schedule.float64_tables()["alphas_cumprod"]
    for index, t in enumerate(sampler.timesteps):
        embedding = ms.Tensor(timestep_embedding(np.full(n * members, t), config.model.time_embedding))
        eps = network(ms.Tensor(sample[..., 0]), cond_tensor, embedding).asnumpy()[..., None]
        if config.sampling.clip_clean:
            eps = _clipped_eps(sample, eps, alphas_cumprod[t])
        noise = rng.standard_normal(sample.shape).astype(np.float32) if sampler.eta > 0 else None
        sample = sampler.step(eps, index, sample, noise).prev_sample
        if progress is not None:
            progress((index + 1) / sampler.num_steps)
    return state_to_rain(sample[:, 0, :, :, 0]).reshape(n, members, height, width)


def _clipped_eps(sample: np.ndarray, eps: np.ndarray, alpha_cumprod: float) -> np.ndarray:
    """eps consistent with the predicted clean state clipped to [-1, 1] (static thresholding, Ho et al. 2020).

    A briefly trained denoiser predicts clean states outside the state range at high noise levels; DDIM then
    carries them into the sample (rain far above 200 mm/h before the final clip). Recomputing eps from the
    clipped prediction keeps the DDIM step unchanged otherwise.
    """
    signal, spread = math.sqrt(alpha_cumprod), math.sqrt(1.0 - alpha_cumprod)
    clean = np.clip((sample - spread * eps) / signal, -1.0, 1.0)
    return ((sample - signal * clean) / spread).astype(np.float32)


def ensemble_mean(ensemble: np.ndarray) -> np.ndarray:
    """Mean over members: (N, M, H, W) mm/h -> (N, H, W) float32 mm/h."""
    return np.asarray(ensemble, dtype=np.float32).mean(axis=1)


def save_qpe_model(directory: str | Path, config: DiffusionQpeConfig, denoiser, merge=None) -> Path:
    """Write ``denoiser.ckpt``, ``merge.ckpt`` (when given) and ``config.yaml`` into ``directory`` (atomically)."""
    from prediff.models.checkpoint import write_checkpoint

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_checkpoint({name: p.asnumpy() for name, p in denoiser.parameters_and_names()}, directory / DENOISER_FILE)
    if merge is not None:
        write_checkpoint({name: p.asnumpy() for name, p in merge.parameters_and_names()}, directory / MERGE_FILE)
    with atomic_path(directory / CONFIG_FILE) as temporary:
        temporary.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return directory


def load_strict(network, path: Path) -> None:
    """Set every parameter of ``network`` from the checkpoint ``path`` (names and shapes must match exactly)."""
    from prediff.models.checkpoint import read_checkpoint
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing; train one with `prediff dualpol qpe --method diffusion "
                              "--train` or use assets/dualpol_diffusion_qpe")
    stored = read_checkpoint(path)
    expected = {name: tuple(p.shape) for name, p in network.parameters_and_names()}
    wrong = sorted(n for n in expected if n not in stored or tuple(stored[n].shape) != expected[n])
    unexpected = sorted(set(stored) - set(expected))
    if wrong or unexpected:
        raise CheckpointError(f"{path} does not match the network of its config: {len(wrong)} missing or reshaped "
                              f"(e.g. {wrong[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}); use the "
                              "config.yaml saved beside it")
    for name, parameter in network.parameters_and_names():
        parameter.set_data(ms.Tensor(stored[name]))


def load_qpe_model(directory: str | Path):
    """Load what :func:`save_qpe_model` wrote. Returns (denoiser, merge network or None, config)."""
    from prediff.dualpol.merge import build_merge

    directory = Path(directory)
    config = load_qpe_config(directory / CONFIG_FILE)
    denoiser = build_denoiser(config)
    load_strict(denoiser, directory / DENOISER_FILE)
    denoiser.set_train(False)
    merge = None
    if (directory / MERGE_FILE).is_file():
        merge = build_merge(config.sampling.members)
        load_strict(merge, directory / MERGE_FILE)
        merge.set_train(False)
    return denoiser, merge, config


def score_rain_estimates(estimates: Mapping[str, np.ndarray], observation: np.ndarray,
                         window_sizes: Sequence[int] = (1,)) -> dict[str, dict]:
    """MSE, MRE (rain >= 0.1 mm/h), RBIAS and the rain-class CSI of several rain maps of one observation.

    Parameters
    ----------
    estimates : name -> (N, H, W) mm/h (NaN = missing); observation : (N, H, W) mm/h.
    window_sizes : neighbourhood windows of the categorical scores (1 = pixel-wise).

    Returns
    -------
    name -> {"continuous": ..., "categorical": ...} as :func:`prediff.dualpol.qpe.score_estimators`.
    """
    truth = np.asarray(observation, dtype=np.float64)[:, None]
    results = {}
    for name, estimate in estimates.items():
        continuous = continuous_init(1, min_observation=0.1)
        continuous_accum(continuous, np.asarray(estimate, dtype=np.float64)[:, None], truth)
        categorical = categorical_init(RAIN_CLASSES, 1, window_sizes)
        categorical_accum(categorical, np.asarray(estimate, dtype=np.float64)[:, None], truth)
        results[name] = {"continuous": continuous_compute(continuous), "categorical": categorical_compute(categorical)}
    return results


def fit_merge_on_training(denoiser, config: DiffusionQpeConfig, condition: np.ndarray, rain: np.ndarray,
                          n_frames: int = 48, log: Callable[[str], None] = print):
    """Sample training ensembles and fit the learned merge (:func:`prediff.dualpol.merge.train_merge`) on them.

    To keep the CPU cost small the ensembles are drawn on ``n_frames`` random training frames, each cut to a
    random ``train.crop`` square (the merge works per pixel, so crops lose nothing), with a sampling seed
    different from the evaluation one.

    Parameters
    ----------
    condition : (N, 6, H, W) float32 in [0, 1]; rain : (N, H, W) mm/h.

    Returns
    -------
    (merge network, history) as :func:`prediff.dualpol.merge.train_merge`.
    """
    from prediff.dualpol.merge import train_merge
    from prediff.dualpol.reader import denormalise

    rng = np.random.default_rng(config.train.seed + 1)
    frames = rng.choice(len(condition), size=min(int(n_frames), len(condition)), replace=False)
    crop = min(config.train.crop, condition.shape[-1])
    corners = rng.integers(0, condition.shape[-1] - crop + 1, size=(len(frames), 2))
    cond = np.stack([condition[f, :, r:r + crop, c:c + crop] for f, (r, c) in zip(frames, corners)])
    truth = np.stack([rain[f, r:r + crop, c:c + crop] for f, (r, c) in zip(frames, corners)])
    log(f"sampling {len(frames)} training crops x {config.sampling.members} members for the merge")
    ensemble = sample_ensemble(denoiser, config, cond, seed=config.sampling.seed + 1)
    # the first condition channel is ZH at 1 km, normalised
    reflectivity = denormalise(cond[:, 0], "dBZ")
    return train_merge(ensemble, reflectivity, truth, steps=config.train.merge_steps,
                       learning_rate=config.train.merge_learning_rate, seed=config.train.seed, log=log)


def train_qpe_model(root: str | Path, config: DiffusionQpeConfig, directory: str | Path,
                    log: Callable[[str], None] = print) -> Path:
    """Train the denoiser and the merge on the train split of ``root`` and save both into ``directory``."""
    condition, rain = training_frames(root, config, "train")
    log(f"training the denoiser on {len(rain)} frames of {rain.shape[-1]}x{rain.shape[-1]} pixels")
    denoiser, _ = train_denoiser(config, condition, rain, log)
    merge, _ = fit_merge_on_training(denoiser, config, condition, rain, log=log)
    return save_qpe_model(directory, config, denoiser, merge)


def diffusion_qpe_experiment(root: str | Path, directory: str | Path,
                             test_processes: Sequence[int] | None = None, frame_step: int = 1,
                             members: int | None = None, progress: Callable[[float], None] | None = None) -> dict:
    """Score the diffusion ensemble (mean, learned merge) side by side with the classic estimators.

    The classic laws (:func:`prediff.dualpol.qpe.fit_estimators` at 1 km) are fitted on the train processes of
    ``root``; every estimate is scored on every ``frame_step``-th frame of the test processes against the rain
    file (the KDP-based rain truth of the layout).

    Returns
    -------
    dict: ``scores`` (:func:`score_rain_estimates`), ``estimators`` (the fitted laws), ``estimates`` (name ->
    (N, H, W) mm/h), ``ensemble`` (N, M, H, W) mm/h, ``observation`` (N, H, W) mm/h, ``test_processes``,
    ``config``.
    """
    from prediff.dualpol.merge import merge_ensemble
    from prediff.dualpol.qpe import fit_estimators

    denoiser, merge, config = load_qpe_model(directory)
    test_processes = config.data.test_processes if test_processes is None else tuple(test_processes)
    train, test = split_processes(list_processes(root, CONDITION_KEYS[0]), test_processes)
    if not train or not test:
        raise DataError(f"{root} needs processes in both splits (test = {sorted(test_processes)}), found "
                        f"{len(train)} train and {len(test)} test processes")
    estimators = fit_estimators(load_frames(root, ("dBZ@1.0km", "ZDR@1.0km", RAIN), train), "1.0km")
    testing = load_frames(root, CONDITION_KEYS + (RAIN,), test, frame_step=frame_step)
    ensemble = sample_ensemble(denoiser, config, condition_array(testing), members=members, progress=progress)
    estimates = {law.name: law.predict(testing).astype(np.float32) for law in estimators}
    estimates["diffusion mean"] = ensemble_mean(ensemble)
    if merge is not None and ensemble.shape[1] == merge.members:
        estimates["diffusion merge"] = merge_ensemble(merge, ensemble, testing["dBZ@1.0km"])
    return {"scores": score_rain_estimates(estimates, testing[RAIN]), "estimators": estimators,
            "estimates": estimates, "ensemble": ensemble, "observation": testing[RAIN], "test_processes": test,
            "config": config}
