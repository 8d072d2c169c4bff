"""Jobs the app runs in its worker process (:mod:`prediff.app.worker`); these may import MindSpore.

Each job is ``function(progress, **kwargs) -> result`` with picklable arguments and result; ``progress(fraction,
message)`` reports and raises :class:`prediff.app.worker.JobCancelled` when the user cancels.
"""

from __future__ import annotations


def check_model(progress, config: str, vae: str, diffusion: str, align: str, device: str = "CPU") -> dict:
    """Build the three PreDiff networks from ``config`` and load the checkpoints strictly.

    Parameters
    ----------
    progress : the worker's progress callback.
    config : path of the reference-style YAML config (e.g. the published ``diffusion.yaml``).
    vae, diffusion, align : paths of ``vae.ckpt``, ``diffusion.ckpt`` (``main_model.`` names) and ``align.ckpt``.
    device : MindSpore device of the worker ("CPU", "GPU", "Ascend").

    Returns
    -------
    dict with ``device``, ``mindspore`` (version) and ``networks``: a list of one-line load summaries
    (tensors and parameter elements per checkpoint).

    Raises
    ------
    ConfigError, CheckpointError : invalid config; a checkpoint that does not match its network.
    """
    from prediff.runtime import mindspore_module

    progress(0.02, "starting MindSpore")
    ms = mindspore_module(device)
    from prediff.config import load_config
    from prediff.models.build import build_alignment_model, build_latent_model, build_vae
    from prediff.models.checkpoint import load_network

    progress(0.1, "reading the config")
    loaded = load_config(config)
    summaries = []
    steps = (("VAE", build_vae, vae, "vae"), ("latent denoiser", build_latent_model, diffusion, "latent"),
             ("alignment network", build_alignment_model, align, "align"))
    for index, (title, build, path, kind) in enumerate(steps):
        progress(0.1 + 0.3 * index, f"building the {title} and loading {path}")
        report = load_network(build(loaded), path, kind)
        summaries.append(report.summary())
    progress(1.0, "all checkpoints match their networks")
    return {"device": device, "mindspore": ms.__version__, "networks": summaries}


#: The worker keeps the last loaded pipeline, so successive runs on one model skip building the networks.
_LOADED_PIPELINE: dict = {}


def _pipeline(progress, config: str, vae: str, diffusion: str, align: str, device: str = "CPU"):
    """The :class:`prediff.pipeline.PreDiffPipeline` of these files, loaded once per worker and file version.

    ``intensity_stats.json`` next to the config, when present, enables ``mu+k*sigma`` targets.
    """
    import os
    from pathlib import Path

    from prediff.diffusion.targets import INTENSITY_STATS_FILE
    from prediff.pipeline import PreDiffPipeline

    paths = (config, vae, diffusion, align)
    stats = Path(config).parent / INTENSITY_STATS_FILE
    # file sizes and modification times: a retrained checkpoint under the same path is reloaded
    key = (device, stats.is_file()) + tuple((path, os.stat(path).st_mtime_ns, os.stat(path).st_size)
                                            for path in paths if os.path.isfile(path))
    if _LOADED_PIPELINE.get("key") != key:
        progress(0.02, "loading the model (first run on this model)")
        _LOADED_PIPELINE.clear()
        _LOADED_PIPELINE["pipeline"] = PreDiffPipeline.from_files(config, vae, diffusion, align,
                                                                   stats=stats if stats.is_file() else None,
                                                                   device=device)
        _LOADED_PIPELINE["key"] = key
    return _LOADED_PIPELINE["pipeline"]


def _sampling_progress(progress, start: float, stop: float, what: str):
    """A ``progress(done, total)`` callback for the pipeline that reports into [start, stop] of the job."""
    def report(done: int, total: int) -> None:
        progress(start + (stop - start) * done / max(total, 1), f"{what}: {done} of {total} member-steps")
    return report


def run_forecast(progress, model: dict, context, observed, times, grid, members: int = 8, sampler: str = "ddim",
                 steps: int | None = 20, eta: float = 0.0, target: str | None = None,
                 guidance_scale: float | None = None, seed: int = 0, baselines: tuple = ()) -> dict:
    """An ensemble nowcast of one window, its baselines, its skill and its NetCDF file.

    Parameters
    ----------
    progress : the worker's progress callback (cancelling raises inside sampling).
    model : ``config``, ``vae``, ``diffusion``, ``align`` paths and ``device``
        (:func:`prediff.app.forecast.model_job_kwargs`).
    context : (7, H, W) uint8 VIL pixels (255 = missing).
    observed : (6, H, W) uint8 observed VIL pixels after the context, or None.
    times : (7,) datetime64 of the context frames.
    grid : :class:`prediff.data.geo.Grid` of the patch.
    members, sampler, steps, eta, target, guidance_scale, seed : see :meth:`prediff.pipeline.PreDiffPipeline.forecast`.
    baselines : names of :func:`prediff.verify.get_baseline` to run on the same context (STEPS with the same
        number of members and seed).

    Returns
    -------
    dict with ``vil`` (M, 6, H, W) float32 VIL pixels, ``lead_times`` (6,) minutes, ``valid_times`` (6,)
    datetime64, ``mean_intensity`` / ``predicted_intensity`` (M,) and ``target_intensity`` (M,) or None in
    [0, 1] units, ``baselines`` {name: (6, H, W) or (M, 6, H, W) float32 VIL pixels}, ``skill`` (DataFrame of
    :func:`prediff.app.forecast.skill_table`, None without an observation), ``netcdf`` (bytes of the forecast
    dataset), ``attrs`` (the dataset's attributes) and ``seconds`` (sampling wall time).

    Raises
    ------
    ConfigError, CheckpointError, DataError : bad model files, settings or a context the model cannot take.
    """
    import tempfile
    import time
    from pathlib import Path

    import numpy as np

    from prediff.app.forecast import skill_table
    from prediff.data.export import write_netcdf
    from prediff.verify import get_baseline

    pipeline = _pipeline(progress, **model)
    share = 0.8 if baselines else 0.95
    started = time.monotonic()
    dataset = pipeline.forecast(context, members=members, sampler=sampler, steps=steps, eta=eta, target=target,
                                guidance_scale=guidance_scale, seed=seed,
                                progress=_sampling_progress(progress, 0.05, share, "sampling"),
                                context_coords={"grid": grid, "time": times}, observed_future=observed)
    seconds = time.monotonic() - started
    n_leads = dataset.sizes["lead_time"]
    baseline_fields = {}
    for index, name in enumerate(baselines):
        progress(share + (0.95 - share) * index / len(baselines), f"running the {name} baseline")
        options = {"n_members": members, "seed": seed} if name == "steps" else {}
        baseline_fields[name] = get_baseline(name, **options).forecast(context, n_leads).astype(np.float32)
    progress(0.96, "scoring and writing the NetCDF file")
    vil = dataset["vil"].values
    skill = None
    if "vil_observed" in dataset:
        skill = skill_table({"PreDiff": vil, **baseline_fields}, dataset["vil_observed"].values)
    with tempfile.TemporaryDirectory() as folder:
        netcdf = write_netcdf(dataset, Path(folder) / "forecast.nc").read_bytes()
    return {"vil": vil, "lead_times": dataset["lead_time"].values,
            "valid_times": dataset["time"].values if "time" in dataset.coords else None,
            "mean_intensity": dataset["mean_intensity"].values,
            "predicted_intensity": dataset["predicted_intensity"].values,
            "target_intensity": dataset["target_intensity"].values if "target_intensity" in dataset else None,
            "baselines": baseline_fields, "skill": skill, "netcdf": netcdf,
            "attrs": {key: value for key, value in dataset.attrs.items() if not isinstance(value, np.ndarray)},
            "seconds": seconds}


def run_denoising(progress, model: dict, context, observed, times, grid, sampler: str = "ddim",
                  steps: int | None = 20, eta: float = 0.0, target: str | None = None,
                  guidance_scale: float | None = None, seed: int = 0, member: int = 0,
                  max_shown: int = 50) -> dict:
    """Drive the sampler one step at a time for one member and keep what the denoising view shows.

    Every step runs (DDPM: all 1000); the decoded predicted clean frames and the latent are kept for every
    k-th step (at most ``max_shown`` steps, the last one always), so the page can scrub without recomputing.

    Parameters
    ----------
    member : which ensemble member (noise stream ``(seed, member)``, the same as in a forecast).
    max_shown : most steps whose frames are kept.
    Others : see :func:`run_forecast`.

    Returns
    -------
    dict with ``steps`` (S,) shown step numbers, ``timesteps`` (S,) training timesteps, ``noise_level`` (S,)
    sqrt(1 - abar_t) of each shown step's input, ``clean`` (S, 6, H, W) uint8 VIL pixels of the decoded
    predicted clean forecast, ``latent`` (S, 6, h, w, L) float16 noisy input latent, ``predicted_intensity``
    (S,) and ``target_intensity`` (S,) or None ([0, 1] units), ``num_steps``, ``final`` (6, H, W) uint8 decoded
    final sample and ``observed_intensity`` (float, [0, 1] units) or None.
    """
    import numpy as np

    from prediff.app.forecast import shown_steps
    from prediff.pipeline import MAX_VIL_PIXEL

    pipeline = _pipeline(progress, **model)
    run = pipeline.step_through(context, members=1, sampler=sampler, steps=steps, eta=eta, target=target,
                                guidance_scale=guidance_scale, seed=seed, first_member=member,
                                context_coords={"grid": grid, "time": times}, observed_future=observed)
    keep = set(shown_steps(run.num_steps, max_shown))
    kept = {name: [] for name in ("steps", "timesteps", "noise_level", "clean", "latent", "predicted", "target")}

    def pixels(frames_unit):
        return np.clip(np.rint(frames_unit[0, ..., 0] * 255.0), 0, MAX_VIL_PIXEL).astype(np.uint8)

    for report in run:
        if report.index in keep:
            kept["steps"].append(report.index)
            kept["timesteps"].append(report.timestep)
            kept["noise_level"].append(report.noise_level)
            kept["clean"].append(pixels(run.decode_clean(report)))
            kept["latent"].append(report.latent[0].astype(np.float16))
            kept["predicted"].append(float(report.predicted_intensity[0]))
            if report.target_intensity is not None:
                kept["target"].append(float(np.asarray(report.target_intensity).reshape(-1)[0]))
        progress(0.05 + 0.9 * (report.index + 1) / run.num_steps, f"step {report.index + 1} of {run.num_steps}")
    observed_intensity = None
    if observed is not None:
        valid = np.asarray(observed) != 255
        observed_intensity = float(np.where(valid, observed, 0).mean() / 255.0)
    return {"steps": np.array(kept["steps"]), "timesteps": np.array(kept["timesteps"]),
            "noise_level": np.array(kept["noise_level"], dtype=np.float32), "clean": np.stack(kept["clean"]),
            "latent": np.stack(kept["latent"]), "predicted_intensity": np.array(kept["predicted"], dtype=np.float32),
            "target_intensity": np.array(kept["target"], dtype=np.float32) if target is not None else None,
            "num_steps": run.num_steps, "final": pixels(pipeline.decode_unit(run.latent)),
            "observed_intensity": observed_intensity}


def run_scenarios(progress, model: dict, context, observed, times, grid, targets: tuple = (None,),
                  members: int = 4, sampler: str = "ddim", steps: int | None = 20, eta: float = 0.0,
                  guidance_scale: float | None = None, seed: int = 0) -> dict:
    """Ensembles of one window under several guidance targets, all from the same seed (so the same noise).

    Parameters
    ----------
    targets : target texts (:func:`prediff.diffusion.parse_target`); None = the unguided (unaligned) ensemble.
    Others : see :func:`run_forecast`.

    Returns
    -------
    dict with ``scenarios`` {label: (M, 6, H, W) float32 VIL pixels} (label "unguided" or the target text),
    ``target_intensity`` {label: (M,) [0, 1] units or None}, ``predicted_intensity`` {label: (M,)},
    ``lead_times`` (6,) minutes and ``valid_times`` (6,) datetime64 or None.
    """
    fields, target_values, predicted = {}, {}, {}
    dataset = None
    for index, target in enumerate(targets):
        label = "unguided" if target is None else str(target)
        dataset = _pipeline(progress, **model).forecast(
            context, members=members, sampler=sampler, steps=steps, eta=eta, target=target,
            guidance_scale=guidance_scale, seed=seed, context_coords={"grid": grid, "time": times},
            observed_future=observed,
            progress=_sampling_progress(progress, 0.05 + 0.9 * index / len(targets),
                                        0.05 + 0.9 * (index + 1) / len(targets), f"scenario {label}"))
        fields[label] = dataset["vil"].values
        predicted[label] = dataset["predicted_intensity"].values
        target_values[label] = dataset["target_intensity"].values if "target_intensity" in dataset else None
    return {"scenarios": fields, "target_intensity": target_values, "predicted_intensity": predicted,
            "lead_times": dataset["lead_time"].values,
            "valid_times": dataset["time"].values if "time" in dataset.coords else None}
