"""The workbench's session settings: explicit ``st.session_state`` keys, their defaults, and typed views.

Everything the user chooses in the global sidebar lives under the keys below (the sidebar widgets use them
as their ``key=``), so every page reads the same choice. The functions take any mutable mapping, so tests
and non-Streamlit code can use a plain dict in place of ``st.session_state``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Literal, MutableMapping

from prediff.errors import CheckpointError, ConfigError, DataError
from prediff.runtime import DEVICES

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CORPUS_DIR = REPO_ROOT / "assets" / "demo_corpus"
DEMO_MODEL_DIR = REPO_ROOT / "assets" / "demo_model"
#: Environment variable naming another folder to serve as the demo model (same files as assets/demo_model), e.g.
#: a model still in training or a random-weight model for benchmarks; read by :func:`demo_model_dir` only.
DEMO_MODEL_DIR_ENV = "PREDIFF_DEMO_MODEL_DIR"
#: Files of a model folder such as the demo model: the config and the three published-format checkpoints.
MODEL_FILES = {"config": "config.yaml", "vae": "vae.ckpt", "diffusion": "diffusion.ckpt", "align": "align.ckpt"}

# --- session_state keys (one place, so pages never disagree) ------------------------------------------------
DATA_KIND = "prediff.data.kind"
SEVIR_ROOT = "prediff.data.sevir_root"
IMPORTED_ROOT = "prediff.data.imported_root"
MODEL_KIND = "prediff.model.kind"
MODEL_CONFIG = "prediff.model.config"
MODEL_VAE = "prediff.model.vae"
MODEL_DIFFUSION = "prediff.model.diffusion"
MODEL_ALIGN = "prediff.model.align"
DEVICE = "prediff.device"
SEED = "prediff.seed"
EVENT_ID = "prediff.events.event_id"
RUNNER = "prediff.worker.runner"

DATA_KINDS = {"demo": "Demo storm corpus", "sevir": "SEVIR / SEVIR-LR folder", "imported": "Imported radar folder"}
MODEL_KINDS = {"demo": "Demo model", "checkpoints": "Checkpoint files"}


def init_state(state: MutableMapping) -> None:
    """Put every key's default into ``state`` unless the user already chose a value.

    The environment can preset the sidebar: ``PREDIFF_DATA`` (a SEVIR-format folder, chosen instead of the demo
    corpus) and ``PREDIFF_DEVICE`` (CPU, GPU or Ascend).
    """
    preset_data = os.environ.get("PREDIFF_DATA", "").strip()
    state.setdefault(DATA_KIND, "sevir" if preset_data else "demo")
    state.setdefault(SEVIR_ROOT, preset_data)
    state.setdefault(IMPORTED_ROOT, "")
    state.setdefault(MODEL_KIND, "demo")
    for key in (MODEL_CONFIG, MODEL_VAE, MODEL_DIFFUSION, MODEL_ALIGN):
        state.setdefault(key, "")
    device = os.environ.get("PREDIFF_DEVICE", "CPU")
    state.setdefault(DEVICE, device if device in DEVICES else "CPU")
    state.setdefault(SEED, 0)


def demo_model_dir() -> Path:
    """The folder of the "Demo model" choice: ``$PREDIFF_DEMO_MODEL_DIR`` when set, else ``assets/demo_model``.

    The folder holds :data:`MODEL_FILES` and, optionally, ``intensity_stats.json`` (for μ + k·σ targets).
    """
    override = os.environ.get(DEMO_MODEL_DIR_ENV, "").strip()
    return Path(override).expanduser() if override else DEMO_MODEL_DIR


@dataclasses.dataclass(frozen=True)
class DataSource:
    """The dataset chosen in the sidebar.

    Attributes
    ----------
    kind : "demo", "sevir" or "imported".
    root : folder of the SEVIR-format tree (``CATALOG.csv`` + ``data/``).
    require_complete : apply the reference's ``pct_missing == 0`` selection; off for imported radar, whose
        patches usually reach beyond radar coverage.
    """

    kind: Literal["demo", "sevir", "imported"]
    root: Path
    require_complete: bool

    @property
    def label(self) -> str:
        return f"{DATA_KINDS[self.kind]} ({self.root})"


def data_source(state: MutableMapping) -> DataSource:
    """The :class:`DataSource` of the sidebar choice.

    Raises
    ------
    DataError : a folder kind was chosen but no folder entered.
    """
    kind = state.get(DATA_KIND, "demo")
    if kind == "demo":
        return DataSource("demo", DEMO_CORPUS_DIR, require_complete=True)
    if kind not in DATA_KINDS:
        raise DataError(f"unknown dataset kind {kind!r}; choose one of {', '.join(DATA_KINDS)}")
    text = str(state.get(SEVIR_ROOT if kind == "sevir" else IMPORTED_ROOT, "")).strip()
    if not text:
        what = "SEVIR / SEVIR-LR" if kind == "sevir" else "imported radar"
        raise DataError(f"no {what} folder entered; type the folder that holds CATALOG.csv and data/ in the "
                        "sidebar, or choose the demo storm corpus")
    return DataSource(kind, Path(text).expanduser(), require_complete=kind != "imported")


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """The model chosen in the sidebar: a config and the three published-format checkpoints.

    Attributes
    ----------
    kind : "demo" (:func:`demo_model_dir`) or "checkpoints" (paths typed by the user).
    config, vae, diffusion, align : file paths (``diffusion`` is the latent denoiser, ``main_model.`` names).
    device : MindSpore device ("CPU", "GPU", "Ascend") for the worker process.
    seed : sampling seed.
    """

    kind: Literal["demo", "checkpoints"]
    config: Path
    vae: Path
    diffusion: Path
    align: Path
    device: str
    seed: int

    def files(self) -> dict[str, Path]:
        """``{"config": ..., "vae": ..., "diffusion": ..., "align": ...}``."""
        return {"config": self.config, "vae": self.vae, "diffusion": self.diffusion, "align": self.align}

    def missing_files(self) -> dict[str, Path]:
        """The entries of :meth:`files` that are not existing files."""
        return {name: path for name, path in self.files().items() if not path.is_file()}

    def validate(self) -> None:
        """Check that every file exists and has the expected suffix.

        Raises
        ------
        CheckpointError : the demo model is not trained yet, or a typed path is missing / not a file /
            not a ``.ckpt``.
        ConfigError : the config path is not a YAML file.
        """
        missing = self.missing_files()
        if self.kind == "demo" and missing:
            folder = self.config.parent
            if folder != DEMO_MODEL_DIR:
                raise CheckpointError(
                    f"${DEMO_MODEL_DIR_ENV} points to {folder}, which lacks {', '.join(sorted(missing))}; point it "
                    "to a folder holding config.yaml, vae.ckpt, diffusion.ckpt and align.ckpt, or unset it to use "
                    "assets/demo_model")
            raise CheckpointError(
                f"the demo model is not trained yet ({folder} lacks {', '.join(sorted(missing))}); train "
                "it with the project's demo training command (see docs/training.md), or choose 'Checkpoint files' "
                "and point to the published MindEarth PreDiff vae.ckpt, diffusion.ckpt, align.ckpt and their config")
        if missing:
            listing = "; ".join(f"{name}: {path if str(path) not in ('', '.') else '(empty)'}"
                                for name, path in missing.items())
            raise CheckpointError(f"these model files do not exist: {listing}; enter full paths to existing files "
                                  "(the published checkpoints are vae.ckpt, diffusion.ckpt and align.ckpt)")
        if self.config.suffix.lower() not in (".yaml", ".yml"):
            raise ConfigError(f"the config {self.config} is not a YAML file; use the diffusion.yaml shipped with the "
                              "checkpoints or one of configs/*.yaml")
        for name in ("vae", "diffusion", "align"):
            path = self.files()[name]
            if path.suffix.lower() != ".ckpt":
                raise CheckpointError(f"the {name} checkpoint {path} is not a .ckpt file; MindSpore checkpoints end "
                                      "in .ckpt")


def model_source(state: MutableMapping) -> ModelSource:
    """The :class:`ModelSource` of the sidebar choice (not validated; call :meth:`ModelSource.validate`)."""
    device = state.get(DEVICE, "CPU")
    seed = int(state.get(SEED, 0))
    if state.get(MODEL_KIND, "demo") == "demo":
        folder = demo_model_dir()
        paths = {name: folder / file for name, file in MODEL_FILES.items()}
    else:
        paths = {name: Path(str(state.get(key, "")).strip()).expanduser()
                 for name, key in (("config", MODEL_CONFIG), ("vae", MODEL_VAE), ("diffusion", MODEL_DIFFUSION),
                                   ("align", MODEL_ALIGN))}
    return ModelSource(kind=state.get(MODEL_KIND, "demo"), device=device, seed=seed, **paths)
