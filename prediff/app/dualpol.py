"""App-side logic of the Dual-pol page (no Streamlit here) and its worker jobs.

The page reads a dataset in the NJU-CPOL layout (the shipped synthetic corpus by default), shows one window of
ZH / ZDR / KDP, nowcasts ZH with the shipped U-Nets, estimates rain with the classic laws and the conditional
diffusion ensemble, scores everything and explains the six-channel R(Z, ZDR) law with Shapley values.

Numpy work (reading, classic QPE, scores, Shapley) runs in the app process; the two network jobs
(:func:`nowcast_job`, :func:`diffusion_qpe_job`) run in the worker process (:mod:`prediff.app.worker`) and are
the only places that reach MindSpore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from prediff.app.state import REPO_ROOT
from prediff.dualpol.reader import (FRAME_MINUTES, HEIGHTS, RADAR_DIR, RAIN, RAIN_DIR, VARIABLES, NjuCpolDataset,
                                    field_key, list_processes, load_frames, split_processes)
from prediff.dualpol.scores import (NOWCAST_EVENTS, RAIN_CLASSES, categorical_accum, categorical_compute,
                                    categorical_init, continuous_accum, continuous_compute, continuous_init,
                                    event_label)
from prediff.errors import DataError

SHIPPED_CORPUS = REPO_ROOT / "assets" / "dualpol_corpus"
NOWCAST_CHECKPOINTS: dict[str, Path] = {
    "dual-pol U-Net": REPO_ROOT / "assets" / "dualpol_unet" / "dualpol.ckpt",
    "ZH-only U-Net": REPO_ROOT / "assets" / "dualpol_unet" / "dualpol_zh_only.ckpt",
}
DIFFUSION_QPE_DIR = REPO_ROOT / "assets" / "dualpol_diffusion_qpe"
#: Every radar field key, variable-major (ZH, ZDR, KDP) then height (1, 3, 7 km).
RADAR_KEYS: tuple[str, ...] = tuple(field_key(v, h) for v in VARIABLES for h in HEIGHTS)
N_INPUT = N_TARGET = 10
#: Neighbourhood window sizes (pixels) of the fuzzy CSI.
FUZZY_WINDOWS: tuple[int, ...] = (1, 2, 4, 8)


def check_dataset(root: str | Path) -> dict:
    """Open a dataset root and summarise it, or raise :class:`DataError` saying what is wrong.

    Returns
    -------
    dict: ``root`` (str), ``processes`` (list of int), ``frames`` (process -> frame count), ``grid`` (pixels
    per side), ``test_processes`` / ``train_processes`` (customary split, lists).
    """
    text = str(root).strip()
    if not text:
        raise DataError("no dataset folder given; enter the root that holds NJU_CPOL_update2308/ and "
                        "NJU_CPOL_kdpRain/, or choose the shipped corpus")
    path = Path(text).expanduser()
    if not path.is_dir():
        raise DataError(f"{path} is not a folder; enter the root that holds {RADAR_DIR}/ and {RAIN_DIR}/")
    if not (path / RADAR_DIR).is_dir() or not (path / RAIN_DIR).is_dir():
        raise DataError(f"{path} is not in the NJU-CPOL layout: it needs {RADAR_DIR}/<variable>/<height>/"
                        f"data_dir_NNN/ and {RAIN_DIR}/data_dir_NNN/ (see docs/dualpol.md), or write a synthetic "
                        "corpus there with `prediff dualpol demo --out <folder>`")
    dataset = NjuCpolDataset(path, keys=RADAR_KEYS + (RAIN,), n_input=N_INPUT, n_target=N_TARGET, stride=1)
    frames = {process: dataset.frame_count(process) for process in dataset.processes}
    first = dataset.read_frame(RADAR_KEYS[0], dataset.processes[0], 0)
    train, test = split_processes(dataset.processes)
    return {"root": str(path), "processes": list(dataset.processes), "frames": frames, "grid": int(first.shape[0]),
            "train_processes": train, "test_processes": test}


def window_starts(frame_count: int) -> list[int]:
    """First frames of the complete 10 + 10 frame windows of a process with ``frame_count`` frames."""
    return list(range(0, max(frame_count - N_INPUT - N_TARGET + 1, 0)))


def read_window(root: str | Path, process: int, start: int) -> dict[str, np.ndarray]:
    """Every radar field and the rain rate of one window.

    Returns
    -------
    dict key -> (20, H, W) float32 in physical units (dBZ, dB, deg/km, mm/h), NaN = missing; frames 0-9 are
    the context, 10-19 the next hour.
    """
    dataset = NjuCpolDataset(root, keys=RADAR_KEYS + (RAIN,), n_input=N_INPUT, n_target=N_TARGET, stride=1,
                             processes=[int(process)])
    if (int(process), int(start)) not in dataset.window_index:
        raise DataError(f"process {process} has no 20-frame window starting at frame {start}; valid starts: "
                        f"{window_starts(dataset.frame_count(int(process)))}")
    window = dataset.window(dataset.window_index.index((int(process), int(start))))
    return {key: np.asarray(values, dtype=np.float32) for key, values in window.fields.items()}


def echo_masked(fields: Mapping[str, np.ndarray], min_reflectivity: float = 5.0) -> dict[str, np.ndarray]:
    """ZDR and KDP set to NaN where ZH at the same height is below ``min_reflectivity`` (dBZ), for display.

    Without echo ZDR and KDP are undefined (the layout stores 0 there), and a 0 dB / 0 deg/km colour over the
    whole dry area would hide the echoes; radar displays blank them the same way. Other keys pass unchanged.

    Parameters
    ----------
    fields : key -> (T, H, W) physical units.

    Returns
    -------
    dict key -> (T, H, W) float32.
    """
    masked = {}
    for key, values in fields.items():
        variable, _, height = key.partition("@")
        if variable in ("ZDR", "KDP") and f"dBZ@{height}" in fields:
            values = np.where(np.asarray(fields[f"dBZ@{height}"]) >= min_reflectivity, values, np.nan)
        masked[key] = np.asarray(values, dtype=np.float32)
    return masked


def time_labels(start: int, count: int = N_INPUT + N_TARGET) -> list[str]:
    """Slider labels of a window: minutes relative to the last context frame, e.g. ``"-54 min"`` ... ``"+60 min"``."""
    return [f"{(k - N_INPUT + 1) * FRAME_MINUTES:+d} min (frame {start + k})" for k in range(count)]


def fit_classic_laws(root: str | Path) -> tuple[list, str]:
    """Marshall-Palmer, fitted Z-R and R(Z, ZDR) at 1 km, fitted on the train processes of ``root``.

    A root without train processes (e.g. only data_dir_000-010) borrows the fit of the shipped corpus.

    Returns
    -------
    (laws, note): the :class:`~prediff.dualpol.qpe.PowerLawRain` list and a sentence saying where they were
    fitted.
    """
    from prediff.dualpol.qpe import fit_estimators

    keys = ("dBZ@1.0km", "ZDR@1.0km", RAIN)
    train, _ = split_processes(list_processes(root, keys[0]))
    source = Path(root)
    if not train:
        source = SHIPPED_CORPUS
        train, _ = split_processes(list_processes(source, keys[0]))
    laws = fit_estimators(load_frames(source, keys, train), "1.0km")
    where = "this dataset" if source == Path(root) else "the shipped corpus (this dataset has no train process)"
    return laws, f"fitted on process(es) {', '.join(map(str, train))} of {where}"


def classic_qpe(laws: Sequence, fields: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rain rate of each classic law: name -> (N, H, W) float32 mm/h from fields key -> (N, H, W) dBZ / dB."""
    return {law.name: law.predict(fields).astype(np.float32) for law in laws}


def qpe_score_tables(estimates: Mapping[str, np.ndarray], observation: np.ndarray,
                     window_sizes: Sequence[int] = FUZZY_WINDOWS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score rain maps against the rain truth.

    Parameters
    ----------
    estimates : method -> (N, H, W) mm/h; observation : (N, H, W) mm/h (NaN = missing).

    Returns
    -------
    scores : DataFrame indexed by method, columns ``MSE ((mm/h)²)``, ``MRE``, ``RBIAS`` and ``CSI <class>``
    for each rain class (pixel-wise); fuzzy : DataFrame indexed by method, one column per (class, window size)
    ``CSI <class>, s=<s>`` of the neighbourhood CSI.
    """
    truth = np.asarray(observation, dtype=np.float64)[:, None]
    labels = [event_label(event, "mm/h") for event in RAIN_CLASSES]
    rows, fuzzy = {}, {}
    for name, estimate in estimates.items():
        prediction = np.asarray(estimate, dtype=np.float64)[:, None]
        continuous = continuous_init(1, min_observation=0.1)
        continuous_accum(continuous, prediction, truth)
        categorical = categorical_init(RAIN_CLASSES, 1, window_sizes)
        categorical_accum(categorical, prediction, truth)
        errors = continuous_compute(continuous)["all"]
        csi = categorical_compute(categorical)["all_lead_times"]["CSI"]
        rows[name] = {"MSE ((mm/h)²)": errors["MSE"], "MRE": errors["MRE"], "RBIAS": errors["RBIAS"],
                      **{f"CSI {label}": float(csi[0, k]) for k, label in enumerate(labels)}}
        fuzzy[name] = {f"CSI {label}, s={s}": float(csi[w, k]) for k, label in enumerate(labels)
                       for w, s in enumerate(window_sizes)}
    return pd.DataFrame.from_dict(rows, orient="index"), pd.DataFrame.from_dict(fuzzy, orient="index")


def nowcast_score_table(forecasts: Mapping[str, np.ndarray], observation: np.ndarray,
                        window_sizes: Sequence[int] = FUZZY_WINDOWS) -> pd.DataFrame:
    """MSE (dBZ²) and CSI at ZH >= 35 dBZ vs window size of ZH nowcasts.

    Parameters
    ----------
    forecasts : method -> (T, H, W) dBZ; observation : (T, H, W) dBZ (NaN = missing).

    Returns
    -------
    DataFrame indexed by method: ``MSE (dBZ²)``, ``MRE``, then ``CSI ≥35 dBZ, s=<s>`` per window size.
    """
    truth = np.asarray(observation, dtype=np.float64)[None]
    n_lead_times = truth.shape[1]
    rows = {}
    for name, forecast in forecasts.items():
        prediction = np.asarray(forecast, dtype=np.float64)[None]
        continuous = continuous_init(n_lead_times, min_observation=1.0)
        continuous_accum(continuous, prediction, truth)
        categorical = categorical_init(NOWCAST_EVENTS, n_lead_times, window_sizes)
        categorical_accum(categorical, prediction, truth)
        errors = continuous_compute(continuous)["all"]
        csi = categorical_compute(categorical)["all_lead_times"]["CSI"]
        rows[name] = {"MSE (dBZ²)": errors["MSE"], "MRE": errors["MRE"],
                      **{f"CSI ≥35 dBZ, s={s}": float(csi[w, 0]) for w, s in enumerate(window_sizes)}}
    return pd.DataFrame.from_dict(rows, orient="index")


def window_shapley(root: str | Path, fields: Mapping[str, np.ndarray], baseline: str = "mean") -> dict:
    """Shapley values of ZH / ZDR at 1, 3, 7 km on the MSE of the six-channel R(Z, ZDR) law, over a window.

    The law is fitted on the train processes of ``root`` (or of the shipped corpus when ``root`` has none);
    absent channels take the ``baseline``: ``"mean"`` (training mean, dry pixels included) or ``"no-echo"``
    (0 dBZ / 0 dB). Values are per frame of the window and averaged over its 20 frames.

    Returns
    -------
    dict: ``values`` (pd.Series channel -> mean Shapley value, (mm/h)²), ``law`` (its description),
    ``baseline`` (channel -> value), ``error_all`` / ``error_none`` (mean MSE with all / no channels).
    """
    from prediff.dualpol.qpe import fit_power_law
    from prediff.dualpol.reader import variable_of
    from prediff.dualpol.shapley import NO_ECHO_BASELINE, channel_shapley, training_mean_baseline

    players = [field_key(v, h) for v in ("dBZ", "ZDR") for h in HEIGHTS]
    source = Path(root)
    train, _ = split_processes(list_processes(source, players[0]))
    if not train:
        source = SHIPPED_CORPUS
        train, _ = split_processes(list_processes(source, players[0]))
    training = load_frames(source, players + [RAIN], train)
    law = fit_power_law(training, players, "multi-height R(Z, ZDR)")
    if baseline == "mean":
        values = training_mean_baseline(training, players)
    else:
        values = {key: NO_ECHO_BASELINE[variable_of(key)] for key in players}
    window = {key: fields[key] for key in players}
    result = channel_shapley(law.predict, window, players, fields[RAIN], values)
    return {"values": pd.Series(result["mean"], index=players), "law": law.describe(), "baseline": values,
            "error_all": float(result["error_all"].mean()), "error_none": float(result["error_none"].mean())}


# --- worker jobs (run in the worker process; they may import MindSpore) --------------------------------------

def nowcast_job(progress, root: str, process: int, start: int, checkpoints: Mapping[str, str]) -> dict:
    """Nowcast the next hour of ZH at 1 km with each checkpoint, plus persistence and the truth.

    Parameters
    ----------
    progress : the worker's progress callback.
    root, process, start : the window (see :func:`read_window`).
    checkpoints : method name -> path of a :func:`prediff.dualpol.train.save_nowcaster` checkpoint.

    Returns
    -------
    dict method -> (10, H, W) float32 dBZ: every checkpoint's nowcast, ``"persistence"`` and ``"observed"``.
    """
    from prediff.dualpol.train import load_nowcaster, persistence, predict, window_arrays

    results: dict[str, np.ndarray] = {}
    for index, (name, path) in enumerate(checkpoints.items()):
        progress(index / (len(checkpoints) + 1), f"loading {Path(path).name}")
        network, config = load_nowcaster(path)
        dataset = NjuCpolDataset(root, keys=config.branch_keys + [config.data.target], n_input=config.data.n_input,
                                 n_target=config.data.n_target, stride=1, processes=[int(process)],
                                 out_of_range=config.data.out_of_range)
        if (int(process), int(start)) not in dataset.window_index:
            raise DataError(f"process {process} has no window starting at frame {start} for {name}")
        inputs, target = window_arrays(dataset, dataset.window_index.index((int(process), int(start))), config)
        progress((index + 0.5) / (len(checkpoints) + 1), f"nowcasting with {name}")
        results[name] = predict(network, inputs[None])[0]
        if "persistence" not in results:
            from prediff.dualpol.reader import denormalise

            results["persistence"] = persistence(inputs[None], config)[0]
            results["observed"] = denormalise(target, "dBZ")
    progress(1.0, "nowcasts done")
    return {name: np.asarray(values, dtype=np.float32) for name, values in results.items()}


def diffusion_qpe_job(progress, condition_fields: Mapping[str, np.ndarray], model_dir: str,
                      members: int | None = None, seed: int = 0) -> dict:
    """Diffusion ensemble rain rate for some frames, its mean and the learned merge.

    Parameters
    ----------
    progress : the worker's progress callback (also the cancellation point, once per DDIM step).
    condition_fields : key -> (N, H, W) ZH (dBZ) and ZDR (dB) at 1, 3, 7 km.
    model_dir : folder written by :func:`prediff.dualpol.diffusion_qpe.save_qpe_model`.
    members : ensemble size (default: the config's; the merge needs exactly that size).
    seed : sampling seed.

    Returns
    -------
    dict: ``"diffusion mean"`` and (when a merge network is saved and the size fits) ``"diffusion merge"``
    (N, H, W) mm/h, ``"ensemble spread"`` (N, H, W) standard deviation over members (mm/h), ``"members"`` (M).
    """
    from prediff.dualpol.diffusion_qpe import condition_array, ensemble_mean, load_qpe_model, sample_ensemble

    progress(0.02, "loading the diffusion QPE model")
    denoiser, merge, config = load_qpe_model(model_dir)
    ensemble = sample_ensemble(denoiser, config, condition_array(condition_fields), members=members, seed=seed,
                               progress=lambda fraction: progress(0.05 + 0.9 * fraction, "DDIM sampling"))
    result = {"diffusion mean": ensemble_mean(ensemble), "ensemble spread": ensemble.std(axis=1).astype(np.float32),
              "members": int(ensemble.shape[1])}
    if merge is not None and ensemble.shape[1] == merge.members:
        from prediff.dualpol.merge import merge_ensemble

        result["diffusion merge"] = merge_ensemble(merge, ensemble, condition_fields["dBZ@1.0km"])
    progress(1.0, "ensemble done")
    return result
