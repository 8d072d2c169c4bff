"""The training loop shared by the three trainers: order, steps, validation, logs, checkpoints, resume, Ctrl-C.

An *objective* (:class:`prediff.train.vae.VAEObjective`, :class:`prediff.train.ldm.LatentDiffusionObjective`,
:class:`prediff.train.align.AlignmentObjective`) knows its network, its loss and its validation; this module
drives any of them:

* step ``s`` trains on global batch ``s`` of a :class:`prediff.train.data.ShuffledOrder` (this worker's shard);
* every ``log_every`` steps a row goes to ``<name>_train.csv``; every ``val_every`` steps the validation
  metrics go to ``<name>_val.csv``; ``<name>_curves.png`` plots both (matplotlib, rewritten at checkpoints);
* ``config.yaml``: the effective config, written when the run starts;
* every ``checkpoint_every`` steps, at the end and on Ctrl-C, worker 0 writes the published checkpoint
  (``vae.ckpt`` bare names / ``diffusion.ckpt`` ``main_model.`` names / ``align.ckpt`` bare names; the EMA
  weights when the objective keeps them) and then ``<name>_state.npz``: the raw weights, optimiser moments,
  step, the numpy Generator state and the SHA-256 of the checkpoint it belongs to. Each file is atomic.
* ``resume=True`` restores all of that, so the continued run is bit-identical to an uninterrupted one (dropout
  masks are a function of (seed, step, rank), see :mod:`prediff.train.randomness`). A state file that cannot
  be read, or that belongs to another checkpoint than the one beside it (a save interrupted between the two
  files), raises :class:`CheckpointError` naming the fix.
* SIGINT (Ctrl-C) or SIGTERM sets a flag; the running step finishes, the run is saved and :func:`run_training`
  returns with ``interrupted=True``. SIGTERM is handled like SIGINT because MindSpore answers a Ctrl-C that
  arrives while a compiled graph runs (the VAE's training step) by sending its own process SIGTERM, and because
  schedulers stop jobs with it. A ``KeyboardInterrupt`` raised by a callback between steps is treated the same;
  one raised inside a step (a second Ctrl-C) is re-raised without saving, keeping the last consistent save.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import signal
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol

import numpy as np

from prediff.errors import CheckpointError, ConfigError
from prediff.io_utils import atomic_path
from prediff.models.checkpoint import PREFIXES, write_checkpoint
from prediff.runtime import mindspore_module
from prediff.train.data import ShuffledOrder, file_digest
from prediff.train.distributed import Workers
from prediff.train.optim import learning_rate
from prediff.train.randomness import SeededDropout, generator_state, restore_generator
from prediff.train.settings import TrainerSettings

ms = mindspore_module()

STATE_FORMAT = 1


class Objective(Protocol):
    """What :func:`run_training` needs from a trainer (see the module docstring)."""

    name: str            # "vae", "ldm" or "align": prefix of the run's files
    kind: str            # checkpoint kind of :mod:`prediff.models.checkpoint`
    file_name: str       # published checkpoint file name
    network: object      # the MindSpore Cell whose checkpoint is published
    n_items: int         # training items (frames or windows)

    def train_step(self, items: np.ndarray, rng: np.random.Generator, step: int, lr: float) -> dict[str, float]:
        """One optimiser step on global batch ``items``; returns at least ``loss`` and ``grad_norm``."""

    def validate(self) -> dict[str, float]:
        """Validation metrics of the current weights."""

    def state(self) -> dict[str, np.ndarray]:
        """Everything but the network weights needed to resume (optimiser moments, EMA, discriminator ...)."""

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state`."""

    def published_weights(self) -> dict[str, np.ndarray]:
        """The weights to publish, by parameter name (the EMA average when kept, else the current weights)."""


@dataclasses.dataclass
class RunResult:
    """Outcome of :func:`run_training`.

    Attributes
    ----------
    step : optimiser steps completed.
    interrupted : stopped by Ctrl-C / KeyboardInterrupt (the run was saved and can be resumed).
    checkpoint : the published checkpoint file (None on workers other than 0).
    train_losses : (step, loss) of every step run in this call.
    validation : the last validation metrics (empty if none ran).
    seconds_per_step : mean wall time per step in this call.
    """

    step: int
    interrupted: bool
    checkpoint: Path | None
    train_losses: list[tuple[int, float]]
    validation: dict[str, float]
    seconds_per_step: float


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """The files of one trainer in a run directory."""

    directory: Path
    name: str
    file_name: str

    @property
    def checkpoint(self) -> Path:
        """The published checkpoint (``vae.ckpt`` / ``diffusion.ckpt`` / ``align.ckpt``)."""
        return self.directory / self.file_name

    @property
    def state(self) -> Path:
        """The training-state file ``<name>_state.npz``."""
        return self.directory / f"{self.name}_state.npz"

    @property
    def train_csv(self) -> Path:
        """Training-loss log ``<name>_train.csv``."""
        return self.directory / f"{self.name}_train.csv"

    @property
    def val_csv(self) -> Path:
        """Validation log ``<name>_val.csv``."""
        return self.directory / f"{self.name}_val.csv"

    @property
    def plot(self) -> Path:
        """Loss-curve figure ``<name>_curves.png``."""
        return self.directory / f"{self.name}_curves.png"


def config_fingerprint(config: dict) -> str:
    """SHA-256 of the ``model`` section: a resumed run must build the same networks."""
    return hashlib.sha256(json.dumps(config["model"], sort_keys=True).encode()).hexdigest()


def run_training(objective: Objective, settings: TrainerSettings, config: dict, run_dir: str | Path,
                 workers: Workers = Workers(), dropout: SeededDropout | None = None, resume: bool = False,
                 max_steps: int | None = None, progress: bool = True,
                 callbacks: Iterable[Callable[[int, dict], None]] = ()) -> RunResult:
    """Train ``objective`` until ``settings.steps`` (or ``max_steps``) optimiser steps are done.

    Parameters
    ----------
    objective : the trainer (its network already built with the run seed).
    settings : the trainer's ``train.<name>`` settings.
    config : the loaded config (its ``model`` section must match the resumed run's).
    run_dir : output folder: checkpoint, training state, CSV logs, plot.
    workers : the process group; only worker 0 writes files.
    dropout : the dropout-mask source attached to the objective's networks (re-seeded every step).
    resume : continue from ``<name>_state.npz`` in ``run_dir``; without it, a ``run_dir`` that already holds this
        trainer's state is refused.
    max_steps : stop after this many steps in total (the learning-rate schedule still spans ``settings.steps``),
        e.g. for smoke runs; None = ``settings.steps``.
    progress : show a tqdm progress bar with ETA (worker 0).
    callbacks : called as ``callback(step, metrics)`` after every step; may raise KeyboardInterrupt to stop.

    Raises
    ------
    ConfigError : ``run_dir`` holds a run and ``resume`` is False; the resumed run used other settings.
    CheckpointError : the training state is missing, corrupt, or does not belong to the checkpoint beside it.
    """
    files = RunFiles(Path(run_dir), objective.name, objective.file_name)
    if settings.batch_size % workers.world:
        raise ConfigError(f"train.{objective.name}.batch_size ({settings.batch_size}) must be divisible by the "
                          f"number of workers ({workers.world})")
    fingerprint = config_fingerprint(config)
    start, rng = 0, np.random.default_rng(settings.seed)
    train_rows: list[dict] = []
    val_rows: list[dict] = []
    if resume:
        start, rng = _load_state(files, objective, settings, fingerprint)
        train_rows = [row for row in _read_csv(files.train_csv) if int(row["step"]) <= start]
        val_rows = [row for row in _read_csv(files.val_csv) if int(row["step"]) <= start]
    elif files.state.exists() or files.checkpoint.exists():
        raise ConfigError(f"{files.directory} already holds a {objective.name} run ({files.state.name} / "
                          f"{files.checkpoint.name}); pass --resume to continue it or choose another --out")
    stop = settings.steps if max_steps is None else int(max_steps)
    order = ShuffledOrder(objective.n_items, settings.batch_size, settings.seed)
    if workers.is_main:
        _write_config(config, files.directory)

    losses: list[tuple[int, float]] = []
    validation: dict[str, float] = {}
    step, interrupted, stepping = start, False, False
    bar = _progress_bar(objective.name, start, stop, progress and workers.is_main)
    began = time.perf_counter()
    with _sigint_flag() as stop_requested:
        try:
            while step < stop:
                if dropout is not None:
                    dropout.begin_step(step)
                lr = learning_rate(step, settings)
                stepping = True
                metrics = objective.train_step(order.batch(step), rng, step, lr)
                metrics["loss"] = workers.mean(metrics["loss"])
                step += 1
                stepping = False
                stop_requested.rearm()
                losses.append((step, metrics["loss"]))
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4g}", lr=f"{lr:.2e}", refresh=False)
                if workers.is_main and (step % settings.log_every == 0 or step == stop):
                    train_rows.append({"step": step, "epoch": round(order.epoch_of(step), 4), "lr": lr,
                                       **{key: value for key, value in metrics.items()}})
                    _write_csv(files.train_csv, train_rows)
                if settings.val_every and step % settings.val_every == 0 and workers.is_main:
                    validation = objective.validate()
                    stop_requested.rearm()
                    val_rows.append({"step": step, **validation})
                    _write_csv(files.val_csv, val_rows)
                    bar.write(f"{objective.name} step {step}: " +
                              ", ".join(f"{k} {v:.4g}" for k, v in validation.items()))
                if step % settings.checkpoint_every == 0 or step == stop:
                    _save(files, objective, settings, fingerprint, step, rng, workers, train_rows, val_rows)
                for callback in callbacks:
                    callback(step, metrics)
                if workers.mean(float(stop_requested.is_set())) > 0:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            if stepping:
                # stopped inside an update (a second Ctrl-C): the weights may be half updated, keep the last save
                bar.write(f"aborted inside step {step + 1}; the last saved step of {files.state} is kept",
                          file=sys.stderr)
                raise
            interrupted = True
            _save(files, objective, settings, fingerprint, step, rng, workers, train_rows, val_rows)
            bar.write(f"interrupted: {objective.name} saved at step {step}; continue with --resume",
                      file=sys.stderr)
        finally:
            bar.close()
    elapsed = time.perf_counter() - began
    return RunResult(step=step, interrupted=interrupted, checkpoint=files.checkpoint if workers.is_main else None,
                     train_losses=losses, validation=validation,
                     seconds_per_step=elapsed / max(1, step - start))


def _save(files: RunFiles, objective: Objective, settings: TrainerSettings, fingerprint: str, step: int,
          rng: np.random.Generator, workers: Workers, train_rows: list[dict], val_rows: list[dict]) -> None:
    """Worker 0 writes checkpoint, then the state pointing at it, then the plot (each atomically)."""
    if not workers.is_main:
        return
    prefix = PREFIXES[objective.kind]
    published = objective.published_weights()
    arrays = {}
    for name, parameter in objective.network.parameters_and_names():
        arrays[prefix + name] = published.get(name, parameter.asnumpy())
    write_checkpoint(arrays, files.checkpoint)
    meta = {"format": STATE_FORMAT, "trainer": objective.name, "step": step, "seed": settings.seed,
            "settings": settings.values, "model_fingerprint": fingerprint, "rng": generator_state(rng),
            "checkpoint": files.checkpoint.name, "checkpoint_sha256": file_digest(files.checkpoint),
            "world": workers.world}
    state = {f"net/{name}": p.asnumpy() for name, p in objective.network.parameters_and_names() if p.requires_grad}
    state.update(objective.state())
    with atomic_path(files.state) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), **state)
    _plot(files, train_rows, val_rows)


def _load_state(files: RunFiles, objective: Objective, settings: TrainerSettings,
                fingerprint: str) -> tuple[int, np.random.Generator]:
    if not files.state.is_file():
        raise CheckpointError(f"cannot resume: {files.state} does not exist (no {objective.name} run was saved in "
                              f"{files.directory}); start without --resume")
    try:
        with np.load(files.state, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"the training state {files.state} is corrupt or truncated ({error}); it cannot be "
                              "resumed - delete the run directory and train again, or restore the file") from None
    if meta.get("format") != STATE_FORMAT or meta.get("trainer") != objective.name:
        raise CheckpointError(f"{files.state} is not a {objective.name} training state (format "
                              f"{meta.get('format')}, trainer {meta.get('trainer')!r}); check --out")
    if files.checkpoint.is_file() and file_digest(files.checkpoint) != meta["checkpoint_sha256"]:
        raise CheckpointError(f"{files.checkpoint} does not belong to the training state {files.state} (step "
                              f"{meta['step']}): a save was interrupted between the two files, or one was "
                              f"replaced. The state is self-contained: delete {files.checkpoint.name} and resume "
                              "again to continue from the state's step (the checkpoint is rewritten)")
    if meta["model_fingerprint"] != fingerprint:
        raise ConfigError(f"the model section of the config differs from the one {files.state} was trained with; "
                          "resume with the run's own config")
    changed = [key for key in ("batch_size", "lr", "steps", "warmup_steps", "ema_decay")
               if meta["settings"].get(key) != settings.values.get(key)]
    if changed or meta["seed"] != settings.seed:
        raise ConfigError(f"train.{objective.name} settings differ from the resumed run's "
                          f"({', '.join(changed) or 'seed'}); resume with the run's own config, or use --max-steps "
                          "to stop earlier")
    restore_parameters(objective.network, arrays, "net/", objective.name)
    objective.load_state(arrays)
    return int(meta["step"]), restore_generator(meta["rng"])


def restore_parameters(network, arrays: Mapping[str, np.ndarray], prefix: str, what: str) -> None:
    """Set every trainable parameter of ``network`` from ``arrays[prefix + name]``.

    Raises
    ------
    CheckpointError : a weight is missing or has another shape (the state belongs to another network).
    """
    for name, parameter in network.parameters_and_names():
        if not parameter.requires_grad:
            continue
        array = arrays.get(prefix + name)
        if array is None or tuple(array.shape) != tuple(parameter.shape):
            raise CheckpointError(f"the training state has no {what} weight {name} of shape "
                                  f"{tuple(parameter.shape)}; it belongs to another network or config - check "
                                  "--config, or start a new run directory")
        # in place, so graphs compiled over the parameter (the optimiser's) see the restored values
        ms.ops.assign(parameter, ms.Tensor(array))


def _write_config(config: dict, directory: Path) -> None:
    """Keep the run's effective config beside its checkpoints (what inference must build)."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "config.yaml") as temporary:
        temporary.write_text(yaml.safe_dump(config, sort_keys=False))


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _plot(files: RunFiles, train_rows: list[dict], val_rows: list[dict]) -> None:
    """Loss curves: training loss (and validation metrics) against step, log scale."""
    if not train_rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.add_subplot()
    steps = [int(row["step"]) for row in train_rows]
    axes.plot(steps, [float(row["loss"]) for row in train_rows], label="train loss", lw=1)
    if val_rows:
        axes.plot([int(row["step"]) for row in val_rows], [float(row["loss"]) for row in val_rows],
                  "o-", label="validation loss", ms=3)
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("loss")
    axes.set_yscale("log")
    axes.set_title(f"{files.name} training")
    axes.grid(alpha=0.3)
    axes.legend()
    with atomic_path(files.plot) as temporary:
        figure.savefig(temporary, format="png")


def _progress_bar(name: str, start: int, stop: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=stop, initial=start, desc=f"train {name}", unit="step", disable=not enabled,
                dynamic_ncols=True, file=sys.stderr)


class _StopRequest:
    """Set by SIGINT or SIGTERM while installed; :meth:`rearm` puts the handlers back if a library replaced them."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.flag = threading.Event()
        self.previous = {number: signal.getsignal(number) for number in self.SIGNALS}
        self.active = threading.current_thread() is threading.main_thread()

    def is_set(self) -> bool:
        return self.flag.is_set()

    def _handler(self, signum, frame):
        if self.flag.is_set():
            # a second Ctrl-C: give up immediately
            self.restore()
            raise KeyboardInterrupt
        self.flag.set()

    def rearm(self) -> None:
        # MindSpore's runtime installs its own C-level SIGINT handler when it compiles a graph (the optimiser's),
        # which would kill the process instead of letting the step finish and the run save
        if self.active:
            for number in self.SIGNALS:
                signal.signal(number, self._handler)

    def restore(self) -> None:
        if self.active:
            for number, previous in self.previous.items():
                signal.signal(number, previous)


@contextlib.contextmanager
def _sigint_flag():
    """Yield a :class:`_StopRequest` set by SIGINT or SIGTERM while the block runs (main thread only)."""
    request = _StopRequest()
    request.rearm()
    try:
        yield request
    finally:
        request.restore()
