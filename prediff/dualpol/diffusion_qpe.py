"""Conditional diffusion rain-rate estimation (no KDP): an ensemble of 1 km rain fields given ZH and ZDR.

The estimate is a sample of ``p(rain | ZH, ZDR at 1, 3 and 7 km)`` drawn by a small conditional denoiser with the
PreDiff machinery of :mod:`prediff.diffusion` (linear :class:`~prediff.diffusion.NoiseSchedule`, eps prediction,
:class:`~prediff.diffusion.DDIMSampler`). Several draws from independent starting noise form an ensemble.

* **Rain state**: the rain rate R (mm/h) as ``s(R) = 2 log(1 + R) / log(1 + 200) - 1`` in [-1, 1]
  (:func:`rain_to_state`); dry pixels are -1. The log compresses the heavy-rain tail.
* **Residual over a fitted law** (what is diffused, ``diffusion.prior: "R(Z, ZDR)"``):
  ``x = (s(R) - s(R_prior)) / residual_scale`` with R_prior the
  R(Z, ZDR) power law at 1 km (:func:`prediff.dualpol.qpe.fit_power_law`) fitted on the training frames and
  stored with the model (:class:`RainDiffusionModel`). The law carries the deterministic part of the Z-R
  relation; the diffusion only learns the scatter around it, which is small (std ~0.015 in s on the synthetic
  corpus), so ``residual_scale`` (0.02) brings it to unit scale, well conditioned for eps prediction, and the
  denoiser's errors are errors around the law, not over the whole rain range. Where ZH at 1 km is "no echo"
  (<= 0 dBZ) every member is 0 mm/h, as for the laws. NaN rain is left out of the loss. With
  ``diffusion.prior: "none"`` (the default, so that model folders written before the residual design load as
  they were trained) the rain state itself is diffused: ``x = s(R)``.
* **Condition**: six channels, ZH and ZDR at 1, 3, 7 km normalised to [0, 1] with the reader's customary ranges
  (:func:`prediff.dualpol.reader.normalise`), NaN filled with the "no echo" value 0 of the physical unit.
* **Denoiser** (:class:`~prediff.dualpol.diffusion_net.ConditionalDenoiser`, MindSpore, NCHW float32): a
  two-level U-Net on ``concat(x_t, condition)`` with a sinusoidal timestep embedding added as a per-channel bias
  in every residual block; output eps, the noise in x_t.
* **Training**: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, t uniform in 0 ... T-1, masked MSE on eps,
  Adam, random square crops, deterministic (MindSpore seed + one numpy generator).
* **Sampling**: DDIM (``sampling.num_steps`` steps, ``eta``) from N(0, 1), returned in mm/h (clipped to 0-200);
  with ``sampling.clip_clean`` (default) the predicted clean residual is clipped at every step to
  ``[-residual_clip, residual_clip]`` (5: the training residuals lie within about -1.3 ... 2.9 between their 1st
  and 99th percentiles) and to the values whose rain state lies in [-1, 1], and eps is recomputed from it before
  the DDIM step (static thresholding, as Imagen / DDPM clip x_0 to the data range).

The ensemble is summarised by its mean (:func:`ensemble_mean`) or by the learned merge of
:mod:`prediff.dualpol.merge`. Configuration: ``configs/dualpol_diffusion_qpe.yaml`` (strict keys,
:func:`load_qpe_config`); measured results and the recipe in ``docs/dualpol.md``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import yaml

from prediff.dualpol.config_io import read_yaml_mapping, sections_from_dict, sections_to_dict
from prediff.dualpol.qpe import PowerLawRain, fit_power_law
from prediff.dualpol.reader import (DEFAULT_TEST_PROCESSES, HEIGHTS, RAIN, VALID_RANGES, denormalise, field_key,
                                    list_processes, load_frames, normalise, split_processes)
from prediff.dualpol.scores import (RAIN_CLASSES, categorical_accum, categorical_compute, categorical_init,
                                    continuous_accum, continuous_compute, continuous_init)
from prediff.dualpol.training_loop import fit_adam, masked_mean_square
from prediff.errors import CheckpointError, ConfigError, DataError
from prediff.io_utils import atomic_path

#: Condition channels in network order: ZH then ZDR, each at 1, 3, 7 km.
CONDITION_KEYS: tuple[str, ...] = tuple(field_key(v, h) for v in ("dBZ", "ZDR") for h in HEIGHTS)
#: Top of the rain-rate range (mm/h) mapped to state +1.
RAIN_MAX_MM_H = VALID_RANGES[RAIN][1]
#: Features of the prior law the diffusion state is a residual over (R(Z, ZDR) at 1 km).
PRIOR_FEATURES: tuple[str, ...] = ("dBZ@1.0km", "ZDR@1.0km")
#: Values of ``diffusion.prior``: diffuse the rain state itself, or its residual over the fitted R(Z, ZDR) law.
PRIORS: tuple[str, ...] = ("none", "R(Z, ZDR)")
DENOISER_FILE = "denoiser.ckpt"
MERGE_FILE = "merge.ckpt"
CONFIG_FILE = "config.yaml"
PRIOR_FILE = "prior_law.yaml"


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
    """The linear noise schedule (as PreDiff's ``model.diffusion``) and what is diffused (see the module docstring)."""

    timesteps: int = 1000
    linear_start: float = 1e-4
    linear_end: float = 2e-2
    prior: str = "none"
    residual_scale: float = 0.02


@dataclasses.dataclass(frozen=True)
class SamplingSection:
    """DDIM settings and ensemble size."""

    num_steps: int = 20
    eta: float = 0.0
    members: int = 8
    seed: int = 0
    clip_clean: bool = True
    residual_clip: float = 5.0


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
        return sections_to_dict(self)


_SECTION_CLASSES = {"data": DataSection, "model": ModelSection, "diffusion": DiffusionSection,
                    "sampling": SamplingSection, "train": TrainSection}


def qpe_config_from_dict(raw: Mapping[str, Any], source: str = "config") -> DiffusionQpeConfig:
    """Check and convert a configuration mapping (unknown sections / keys and wrong types raise ConfigError)."""
    config = DiffusionQpeConfig(**sections_from_dict(raw, _SECTION_CLASSES, source))
    positive = (config.model.width, config.model.time_embedding, config.diffusion.timesteps, config.sampling.num_steps,
                config.sampling.members, config.train.steps, config.train.batch_size, config.train.crop,
                config.train.merge_steps)
    if (min(positive) < 1 or config.train.learning_rate <= 0 or config.train.merge_learning_rate <= 0
            or config.diffusion.residual_scale <= 0):
        raise ConfigError(f"{source}: sizes, steps, members, batch size, crop, learning rates and the residual scale "
                          "must be positive")
    if config.train.crop % 2 or config.model.time_embedding % 2:
        raise ConfigError(f"{source}: train.crop and model.time_embedding must be even")
    if config.diffusion.prior not in PRIORS:
        raise ConfigError(f"{source}: diffusion.prior must be one of {', '.join(repr(p) for p in PRIORS)}, got "
                          f"{config.diffusion.prior!r}")
    if config.sampling.residual_clip <= 0:
        raise ConfigError(f"{source}: sampling.residual_clip must be positive (units of diffusion.residual_scale)")
    if not 0.0 <= config.sampling.eta <= 1.0:
        raise ConfigError(f"{source}: sampling.eta must lie in [0, 1]")
    if config.sampling.num_steps > config.diffusion.timesteps:
        raise ConfigError(f"{source}: sampling.num_steps ({config.sampling.num_steps}) exceeds diffusion.timesteps")
    return config


def load_qpe_config(path: str | Path) -> DiffusionQpeConfig:
    """Read a diffusion-QPE YAML file (see the module docstring)."""
    raw, source = read_yaml_mapping(path, "configs/dualpol_diffusion_qpe.yaml")
    return qpe_config_from_dict(raw, source)


def rain_to_state(rain: np.ndarray) -> np.ndarray:
    """Rain rate (mm/h, any shape; NaN kept) -> diffusion state in [-1, 1] (float32), 0 mm/h -> -1."""
    clipped = np.clip(np.asarray(rain, dtype=np.float64), 0.0, RAIN_MAX_MM_H)
    return (2.0 * np.log1p(clipped) / math.log1p(RAIN_MAX_MM_H) - 1.0).astype(np.float32)


def state_to_rain(state: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rain_to_state`: state (clipped to [-1, 1]) -> rain rate in mm/h, float32 in [0, 200]."""
    clipped = np.clip(np.asarray(state, dtype=np.float64), -1.0, 1.0)
    return np.expm1((clipped + 1.0) / 2.0 * math.log1p(RAIN_MAX_MM_H)).astype(np.float32)


def rain_to_residual(rain: np.ndarray, prior_rain: np.ndarray, scale: float) -> np.ndarray:
    """Diffused variable ``(s(R) - s(R_prior)) / scale`` (float32, NaN where R is NaN); R, R_prior in mm/h."""
    return ((rain_to_state(rain) - rain_to_state(prior_rain)) / scale).astype(np.float32)


def residual_to_rain(residual: np.ndarray, prior_rain: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of :func:`rain_to_residual`: rain rate in mm/h, float32 in [0, 200] (the state is clipped to [-1, 1])."""
    return state_to_rain(rain_to_state(prior_rain) + scale * np.asarray(residual, dtype=np.float32))


@dataclasses.dataclass
class RainDiffusionModel:
    """A trained conditional denoiser with the rain law its diffused residual is taken over.

    Attributes
    ----------
    network : :class:`~prediff.dualpol.diffusion_net.ConditionalDenoiser`.
    prior : the R(Z, ZDR) law at 1 km (:data:`PRIOR_FEATURES`) fitted on the training frames, or None when the
        rain state itself is diffused (``diffusion.prior: "none"``).
    """

    network: Any
    prior: PowerLawRain | None

    def prior_rain(self, condition: np.ndarray) -> np.ndarray | None:
        """The prior law's rain rate from condition channels: (N, 6, H, W) in [0, 1] -> (N, H, W) float32 mm/h.

        None without a prior law.
        """
        if self.prior is None:
            return None
        fields = {key: denormalise(condition[:, CONDITION_KEYS.index(key)], key) for key in self.prior.features}
        return self.prior.predict(fields).astype(np.float32)


def fit_prior(condition: np.ndarray, rain: np.ndarray) -> PowerLawRain:
    """Least-squares R(Z, ZDR) law at 1 km (:func:`prediff.dualpol.qpe.fit_power_law`) on condition frames.

    Parameters
    ----------
    condition : (N, 6, H, W) float32 in [0, 1] (:func:`condition_array`); rain : (N, H, W) mm/h.
    """
    fields = {key: denormalise(condition[:, CONDITION_KEYS.index(key)], key) for key in PRIOR_FEATURES}
    return fit_power_law({**fields, RAIN: rain}, PRIOR_FEATURES, "R(Z, ZDR)")


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
                   log: Callable[[str], None] = print, log_every: int = 100,
                   snapshot: Callable[[int, "RainDiffusionModel"], None] | None = None):
    """Fit the prior law (if any), then train a fresh denoiser on eps prediction (deterministic).

    Parameters
    ----------
    condition : (N, 6, H, W) float32 in [0, 1]; rain : (N, H, W) float32 mm/h, NaN = missing.
    snapshot : optional ``snapshot(step, model)`` called every ``log_every`` steps (the weights at step k are
        those of a k-step training with the same config).

    Returns
    -------
    (model, history): a :class:`RainDiffusionModel` and a list of (step, mean loss over the last ``log_every``
    steps).
    """
    from prediff.runtime import mindspore_module

    ms = mindspore_module()
    settings = config.train
    ms.set_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    schedule = schedule_of(config)
    prior = None if config.diffusion.prior == "none" else fit_prior(condition, rain)
    if prior is not None:
        log(f"prior law {prior.describe()}")
    model = RainDiffusionModel(build_denoiser(config), prior)
    residual = (rain_to_state(rain) if prior is None
                else rain_to_residual(rain, model.prior_rain(condition), config.diffusion.residual_scale))
    size = rain.shape[-1]
    crop = min(settings.crop, size)

    def next_batch(_step):
        batch = rng.choice(len(residual), size=min(settings.batch_size, len(residual)), replace=False)
        row, col = rng.integers(0, size - crop + 1, size=2)
        clean = residual[batch, None, row:row + crop, col:col + crop]
        timesteps = rng.integers(0, schedule.num_timesteps, size=len(batch))
        noise = rng.standard_normal(clean.shape).astype(np.float32)
        noisy = schedule.q_sample(np.nan_to_num(clean, nan=0.0), timesteps, noise)
        return (noisy, condition[batch, :, row:row + crop, col:col + crop],
                timestep_embedding(timesteps, config.model.time_embedding), noise, np.isfinite(clean))

    def loss_fn(noisy, cond, embedding, noise, valid):
        return masked_mean_square(ms, model.network(noisy, cond, embedding) - noise, valid)

    history = fit_adam(model.network, loss_fn, next_batch, settings.steps, settings.learning_rate, log, log_every,
                       label="denoiser step", on_log=None if snapshot is None else lambda step: snapshot(step, model))
    return model, history


def sample_ensemble(model: RainDiffusionModel, config: DiffusionQpeConfig, condition: np.ndarray,
                    members: int | None = None, seed: int | None = None, num_steps: int | None = None,
                    progress: Callable[[float], None] | None = None) -> np.ndarray:
    """Draw an ensemble of rain fields with DDIM.

    Parameters
    ----------
    model : trained :class:`RainDiffusionModel`.
    condition : (N, 6, H, W) float32 in [0, 1] (:func:`condition_array`).
    members, seed, num_steps : override ``config.sampling`` (ensemble size M, noise seed, DDIM steps).
    progress : optional callback with the fraction done (0-1).

    Returns
    -------
    (N, M, H, W) float32 rain rate in mm/h, each member from independent starting noise; with a prior law, 0
    where ZH at 1 km is "no echo".
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
    scale = config.diffusion.residual_scale
    prior = model.prior_rain(condition)
    # every (frame, member) pair is one batch entry; the sampler works on (B, T, H, W, C) latents
    repeated = np.repeat(condition, members, axis=0)
    if prior is None:
        bounds = (-1.0, 1.0)
    else:
        # residuals within the training range whose rain state stays in [-1, 1]
        prior_state = np.repeat(rain_to_state(prior), members, axis=0)[:, None, :, :, None]
        limit = sampling.residual_clip
        bounds = (np.maximum((-1.0 - prior_state) / scale, -limit), np.minimum((1.0 - prior_state) / scale, limit))
    sample = rng.standard_normal((n * members, 1, height, width, 1)).astype(np.float32)
    cond_tensor = ms.Tensor(repeated)
    alphas_cumprod = sampler.schedule.float64_tables()["alphas_cumprod"]
    for index, t in enumerate(sampler.timesteps):
        embedding = ms.Tensor(timestep_embedding(np.full(n * members, t), config.model.time_embedding))
        eps = model.network(ms.Tensor(sample[..., 0]), cond_tensor, embedding).asnumpy()[..., None]
        if config.sampling.clip_clean:
            eps = _clipped_eps(sample, eps, alphas_cumprod[t], *bounds)
        noise = rng.standard_normal(sample.shape).astype(np.float32) if sampler.eta > 0 else None
        sample = sampler.step(eps, index, sample, noise).prev_sample
        if progress is not None:
            progress((index + 1) / sampler.num_steps)
    diffused = sample[:, 0, :, :, 0].reshape(n, members, height, width)
    if prior is None:
        return state_to_rain(diffused)
    ensemble = residual_to_rain(diffused, prior[:, None], scale)
    return np.where(prior[:, None] > 0.0, ensemble, 0.0).astype(np.float32)


def _clipped_eps(sample: np.ndarray, eps: np.ndarray, alpha_cumprod: float, low, high) -> np.ndarray:
    """eps consistent with the predicted clean sample clipped to [low, high] (static thresholding, Ho et al. 2020).

    A briefly trained denoiser predicts clean samples outside the valid range at high noise levels; DDIM then
    carries them into the sample. Recomputing eps from the clipped prediction keeps the DDIM step unchanged
    otherwise. ``low`` and ``high`` broadcast against ``sample``.
    """
    signal, spread = math.sqrt(alpha_cumprod), math.sqrt(1.0 - alpha_cumprod)
    clean = np.clip((sample - spread * eps) / signal, low, high)
    return ((sample - signal * clean) / spread).astype(np.float32)


def ensemble_mean(ensemble: np.ndarray) -> np.ndarray:
    """Mean over members: (N, M, H, W) mm/h -> (N, H, W) float32 mm/h."""
    return np.asarray(ensemble, dtype=np.float32).mean(axis=1)


def save_qpe_model(directory: str | Path, config: DiffusionQpeConfig, model: RainDiffusionModel,
                   merge=None) -> Path:
    """Write ``denoiser.ckpt``, ``prior_law.yaml`` (with a prior), ``merge.ckpt`` (when given) and ``config.yaml``."""
    from prediff.models.checkpoint import write_checkpoint

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_checkpoint({name: p.asnumpy() for name, p in model.network.parameters_and_names()},
                     directory / DENOISER_FILE)
    if merge is not None:
        write_checkpoint({name: p.asnumpy() for name, p in merge.parameters_and_names()}, directory / MERGE_FILE)
    if model.prior is None:
        (directory / PRIOR_FILE).unlink(missing_ok=True)
    else:
        prior = {"name": model.prior.name, "features": list(model.prior.features),
                 "coefficients": list(model.prior.coefficients), "intercept": model.prior.intercept}
        with atomic_path(directory / PRIOR_FILE) as temporary:
            temporary.write_text(yaml.safe_dump(prior, sort_keys=False))
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


def load_prior(path: Path) -> PowerLawRain:
    """Read the prior law written by :func:`save_qpe_model`."""
    if not path.is_file():
        raise CheckpointError(f"{path} (the prior rain law of the model) is missing; retrain the model with "
                              "`prediff dualpol qpe --method diffusion --train ...`")
    try:
        raw = yaml.safe_load(path.read_text())
        return PowerLawRain(str(raw["name"]), tuple(str(k) for k in raw["features"]),
                            tuple(float(c) for c in raw["coefficients"]), float(raw["intercept"]))
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is not a prior law file (name, features, coefficients, intercept): "
                              f"{error}") from None


def load_qpe_model(directory: str | Path):
    """Load what :func:`save_qpe_model` wrote. Returns (:class:`RainDiffusionModel`, merge network or None, config)."""
    from prediff.dualpol.merge import build_merge

    directory = Path(directory)
    config = load_qpe_config(directory / CONFIG_FILE)
    network = build_denoiser(config)
    load_strict(network, directory / DENOISER_FILE)
    network.set_train(False)
    prior = None if config.diffusion.prior == "none" else load_prior(directory / PRIOR_FILE)
    model = RainDiffusionModel(network, prior)
    merge = None
    if (directory / MERGE_FILE).is_file():
        merge = build_merge(config.sampling.members)
        load_strict(merge, directory / MERGE_FILE)
        merge.set_train(False)
    return model, merge, config


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


def fit_merge_on_training(model: RainDiffusionModel, config: DiffusionQpeConfig, condition: np.ndarray, rain: np.ndarray,
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

    rng = np.random.default_rng(config.train.seed + 1)
    frames = rng.choice(len(condition), size=min(int(n_frames), len(condition)), replace=False)
    crop = min(config.train.crop, condition.shape[-1])
    corners = rng.integers(0, condition.shape[-1] - crop + 1, size=(len(frames), 2))
    cond = np.stack([condition[f, :, r:r + crop, c:c + crop] for f, (r, c) in zip(frames, corners)])
    truth = np.stack([rain[f, r:r + crop, c:c + crop] for f, (r, c) in zip(frames, corners)])
    log(f"sampling {len(frames)} training crops x {config.sampling.members} members for the merge")
    ensemble = sample_ensemble(model, config, cond, seed=config.sampling.seed + 1)
    # the first condition channel is ZH at 1 km, normalised
    reflectivity = denormalise(cond[:, 0], "dBZ")
    return train_merge(ensemble, reflectivity, truth, steps=config.train.merge_steps,
                       learning_rate=config.train.merge_learning_rate, seed=config.train.seed, log=log)


def train_qpe_model(root: str | Path, config: DiffusionQpeConfig, directory: str | Path,
                    log: Callable[[str], None] = print, snapshot_every: int | None = None) -> Path:
    """Train the denoiser and the merge on the train split of ``root`` and save both into ``directory``.

    With ``snapshot_every`` the denoiser (without merge) is saved into ``directory`` every that many steps, its
    ``config.yaml`` saying the steps done, so a training stopped early leaves a usable, reproducible model.
    """
    condition, rain = training_frames(root, config, "train")
    log(f"training the denoiser on {len(rain)} frames of {rain.shape[-1]}x{rain.shape[-1]} pixels")

    def save_snapshot(step, model):
        if step % snapshot_every == 0 and step < config.train.steps:
            done = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=step))
            save_qpe_model(directory, done, model)
            (Path(directory) / MERGE_FILE).unlink(missing_ok=True)
            log(f"saved the denoiser after {step} steps to {directory}")

    model, _ = train_denoiser(config, condition, rain, log, log_every=min(100, snapshot_every or 100),
                              snapshot=save_snapshot if snapshot_every else None)
    merge, _ = fit_merge_on_training(model, config, condition, rain, log=log)
    return save_qpe_model(directory, config, model, merge)


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

    model, merge, config = load_qpe_model(directory)
    test_processes = config.data.test_processes if test_processes is None else tuple(test_processes)
    train, test = split_processes(list_processes(root, CONDITION_KEYS[0]), test_processes)
    if not train or not test:
        raise DataError(f"{root} needs processes in both splits (test = {sorted(test_processes)}), found "
                        f"{len(train)} train and {len(test)} test processes")
    estimators = fit_estimators(load_frames(root, ("dBZ@1.0km", "ZDR@1.0km", RAIN), train), "1.0km")
    testing = load_frames(root, CONDITION_KEYS + (RAIN,), test, frame_step=frame_step)
    ensemble = sample_ensemble(model, config, condition_array(testing), members=members, progress=progress)
    estimates = {law.name: law.predict(testing).astype(np.float32) for law in estimators}
    estimates["diffusion mean"] = ensemble_mean(ensemble)
    if merge is not None and ensemble.shape[1] == merge.members:
        estimates["diffusion merge"] = merge_ensemble(merge, ensemble, testing["dBZ@1.0km"])
    return {"scores": score_rain_estimates(estimates, testing[RAIN]), "estimators": estimators,
            "estimates": estimates, "ensemble": ensemble, "observation": testing[RAIN], "test_processes": test,
            "config": config}
