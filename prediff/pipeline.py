"""PreDiffPipeline: observed context frames in, a georeferenced ensemble forecast (xarray) out.

The pipeline composes the three networks of :mod:`prediff.models` with the samplers of
:mod:`prediff.diffusion`: the 7 context frames are encoded by the VAE (posterior mode), the latent denoiser
is driven by a DDIM or DDPM sampler from seeded noise (optionally steered by knowledge-alignment guidance
toward a target average intensity), and the sampled latents are decoded back to VIL frames.

Conventions (see ``docs/forecast.md``):

* Context frames are **VIL pixels** 0-255 (uint8 or float). A missing pixel (255, or NaN) is fed to the network
  as 0 (no VIL): the network cannot take NaN, and MindEarth's selection never shows it missing pixels.
* The forecast ``vil`` is float32 VIL pixels clipped to 0..254: the decoder is unconstrained, and 255 is the
  "missing" code of SEVIR's encoding, so no forecast pixel may take it. Float keeps the sub-pixel detail that
  CRPS and MSE see; round it for a uint8 product.
* Member m always draws its noise from ``(seed, m)`` (:class:`prediff.diffusion.SeededNoise`): the same seed
  gives the same ensemble whatever the batch size, and a guided and an unguided forecast with one seed start
  from the same latent and share every step's noise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from prediff.config import latent_scale
from prediff.data.layout import MISSING_PIXEL
from prediff.data.vil import pixels_to_unit
from prediff.errors import ConfigError, DataError
from prediff.runtime import mindspore_module

#: File names inside a model folder (``--model DIR``); the statistics file is optional.
MODEL_FILES = {"config": "config.yaml", "vae": "vae.ckpt", "latent": "diffusion.ckpt", "align": "align.ckpt"}
INTENSITY_STATS_FILE = "intensity_stats.json"
#: Attribute label of each checkpoint kind in forecast files (the published file stems).
CHECKPOINT_LABELS = {"vae": "vae", "latent": "diffusion", "align": "align"}
#: The demo model shipped with the workbench (trained on the demo corpus).
DEMO_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo_model"
#: Frames per VAE decoder call when decoding forecasts: 48 frames (8 members x 6 lead times) of the demo VAE
#: decode in ~2.1 s as six calls of 8 against ~3.0 s as one call of 48 (2 cores; the activations of small calls stay
#: in cache). Chunking never changes a frame's result: the decoder treats frames independently.
DECODE_CHUNK_FRAMES = 8
#: Minutes between frames of SEVIR-LR (and of the forecast's lead times).
FRAME_MINUTES = 10
#: Largest valid VIL pixel; 255 is SEVIR's "missing".
MAX_VIL_PIXEL = MISSING_PIXEL - 1


class ForecastCancelled(Exception):
    """A forecast was stopped through its ``cancel`` event before every member was sampled."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_folder_files(model_dir: str | os.PathLike) -> dict[str, Path]:
    """The files of a model folder: ``config``, ``vae``, ``latent``, ``align`` and, if present, ``stats``.

    Raises
    ------
    ConfigError when the folder or one of the four required files is missing.
    """
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise ConfigError(f"the model folder {model_dir} does not exist; pass a folder holding "
                          f"{', '.join(MODEL_FILES.values())} (and optionally {INTENSITY_STATS_FILE})")
    files = {kind: model_dir / name for kind, name in MODEL_FILES.items()}
    missing = [path.name for path in files.values() if not path.is_file()]
    if missing:
        raise ConfigError(f"the model folder {model_dir} lacks {', '.join(missing)}; a model folder holds "
                          f"{', '.join(MODEL_FILES.values())} (write checkpoints with `prediff checkpoint init` "
                          "or train them with `prediff train`)")
    if (model_dir / INTENSITY_STATS_FILE).is_file():
        files["stats"] = model_dir / INTENSITY_STATS_FILE
    return files


@dataclasses.dataclass(frozen=True)
class ForecastInput:
    """A context prepared for the networks, with what is known about where and when it was observed.

    Attributes
    ----------
    context_pixels : (T_in, H, W) float32 VIL pixels as given (NaN / 255 = missing).
    context_unit : (1, T_in, H, W, 1) float32 network input, [0, 1] units, missing pixels as 0.
    observed_future : (T_obs, H, W) uint8 VIL pixels of the frames after the context, or None.
    grid : :class:`prediff.data.geo.Grid` of the patch, or None.
    crs_attrs : CF grid-mapping attributes to copy, or None.
    last_time : valid time (datetime64[ns]) of the last context frame, or None.
    attrs : attributes of the source (event id, window ...) copied to the forecast.
    """

    context_pixels: np.ndarray
    context_unit: np.ndarray
    observed_future: np.ndarray | None
    grid: Any
    crs_attrs: dict | None
    last_time: np.datetime64 | None
    attrs: dict


class PreDiffPipeline:
    """Ensemble nowcasts with PreDiff: VAE + latent denoiser + alignment network + sampler.

    Parameters
    ----------
    config : loaded config (:func:`prediff.config.load_config`).
    vae, latent, align : the three networks in eval mode (:func:`prediff.models.build.build_networks`).
    stats : climatological intensity statistics (needed for ``mu+k*sigma`` targets), or None.
    checkpoints : SHA-256 of each loaded file by kind (``vae``, ``latent``, ``align``), recorded in forecasts.
    name : model name recorded in forecasts.
    batch_size : ensemble members sampled per network call (memory vs speed; results do not depend on it).
    """

    def __init__(self, config: Mapping, vae, latent, align, *, stats=None, checkpoints: Mapping[str, str] | None = None,
                 name: str = "PreDiff", batch_size: int = 8):
        from prediff.diffusion import NoiseSchedule

        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1 member, got {batch_size}")
        self.config = config
        self.vae, self.latent, self.align = vae, latent, align
        self.stats = stats
        self.checkpoints = dict(checkpoints or {})
        self.name = name
        self.batch_size = int(batch_size)
        diffusion = config["model"]["diffusion"]
        self.latent_shape = tuple(int(n) for n in diffusion["latent_shape"])
        self.context_frames = int(diffusion["latent_cond_shape"][0])
        self.frame_shape = tuple(int(n) for n in diffusion["data_shape"][1:3])
        self.default_guidance_scale = float(config["model"]["align"]["guide_scale"])
        self.schedule = NoiseSchedule.from_config(diffusion)
        self.latent_scale = latent_scale(config)

    @property
    def lead_times(self) -> np.ndarray:
        """(T_out,) int64 lead times in minutes, 10, 20, ..."""
        return FRAME_MINUTES * np.arange(1, self.latent_shape[0] + 1, dtype=np.int64)

    # --- construction -------------------------------------------------------------------------------

    @classmethod
    def from_files(cls, config, vae, latent, align, stats=None, device: str | None = None, batch_size: int = 8,
                   name: str | None = None) -> "PreDiffPipeline":
        """Build the networks from ``config`` and load the three checkpoints strictly.

        Parameters
        ----------
        config : YAML path (or loaded dict) in the published ``diffusion.yaml`` layout.
        vae, latent, align : ``vae.ckpt`` (bare names), ``diffusion.ckpt`` (``main_model.`` names), ``align.ckpt``.
        stats : ``intensity_stats.json`` (or the folder holding it), optional.
        device : CPU, GPU or Ascend (default ``$PREDIFF_DEVICE`` or CPU).
        batch_size : members per network call.
        name : model name for the forecast attributes (default: the config file's folder name).

        Raises
        ------
        ConfigError, CheckpointError, DataError for an invalid config, checkpoint or statistics file.
        """
        from prediff.config import load_config
        from prediff.diffusion import IntensityStats

        mindspore_module(device)
        from prediff.models.build import build_networks

        loaded = load_config(config)
        paths = {"vae": Path(vae), "latent": Path(latent), "align": Path(align)}
        networks = build_networks(loaded, paths["vae"], paths["latent"], paths["align"])
        if name is None:
            name = Path(config).resolve().parent.name if not isinstance(config, Mapping) else "PreDiff"
        checkpoints = {kind: file_sha256(path) for kind, path in paths.items()}
        return cls(loaded, *networks, stats=None if stats is None else IntensityStats.load(stats),
                   checkpoints=checkpoints, name=name, batch_size=batch_size)

    @classmethod
    def from_folder(cls, model_dir: str | os.PathLike, device: str | None = None,
                    batch_size: int = 8) -> "PreDiffPipeline":
        """Load a model folder holding ``config.yaml``, ``vae.ckpt``, ``diffusion.ckpt``, ``align.ckpt`` and
        optionally ``intensity_stats.json`` (see :data:`MODEL_FILES`)."""
        files = model_folder_files(model_dir)
        return cls.from_files(files["config"], files["vae"], files["latent"], files["align"], stats=files.get("stats"),
                              device=device, batch_size=batch_size, name=Path(model_dir).resolve().name)

    @classmethod
    def demo(cls, device: str | None = None, batch_size: int = 8) -> "PreDiffPipeline":
        """The demo model of ``assets/demo_model`` (small config trained on the demo corpus).

        Raises
        ------
        ConfigError while the demo model has not been trained and shipped yet.
        """
        if not DEMO_MODEL_DIR.is_dir():
            raise ConfigError(f"the demo model folder {DEMO_MODEL_DIR} is not there yet (the demo model has not been "
                              "trained); pass --model DIR or --config/--vae/--latent/--align, e.g. checkpoints "
                              "written by `prediff checkpoint init`")
        return cls.from_folder(DEMO_MODEL_DIR, device=device, batch_size=batch_size)

    # --- inputs -------------------------------------------------------------------------------------

    def prepare(self, context, context_coords: Mapping | None = None,
                observed_future=None) -> ForecastInput:
        """Check a context and collect its georeferencing.

        Parameters
        ----------
        context : one of

            * (T_in, H, W) array of VIL pixels 0-255 (uint8 or float; 255 / NaN = missing);
            * an ``xarray.DataArray`` (time, y, x) of VIL pixels;
            * an ``xarray.Dataset`` with ``vil`` (time, y, x), e.g. from
              :func:`prediff.data.export.event_to_xarray` for one window: its first ``context_frames``
              frames are the context and the rest the observed future. Its ``y``/``x``, ``lat``/``lon``,
              ``crs`` and ``time`` are carried over.
        context_coords : for a plain array: ``{"grid": prediff.data.geo.Grid, "time": (T_in,) datetime64}``,
            either key optional.
        observed_future : (T, H, W) VIL pixels observed after the context (for ``oracle`` targets and for
            verification), optional.
        """
        import xarray as xr

        grid, crs_attrs, last_time, attrs = None, None, None, {}
        future = observed_future
        if isinstance(context, xr.Dataset):
            if "vil" not in context:
                raise DataError("the context dataset has no 'vil' variable; pass prediff.data.export.event_to_xarray "
                                "output or a (T, H, W) array of VIL pixels")
            attrs = {key: context.attrs[key] for key in ("event_id", "event_type", "window_index", "time_utc")
                     if key in context.attrs}
            if "crs" in context:
                crs_attrs = dict(context["crs"].attrs)
            n_context = int(context.attrs.get("context_frames", self.context_frames))
            vil = context["vil"]
            if vil.sizes.get("time", 0) > n_context:
                if future is None:
                    future = vil.isel(time=slice(n_context, None)).values
                vil = vil.isel(time=slice(0, n_context))
            context = vil
        if isinstance(context, xr.DataArray):
            if "x" in context.coords and "y" in context.coords and crs_attrs is not None:
                from prediff.data.geo import Grid

                grid = Grid(str(crs_attrs.get("proj4", "")), np.asarray(context["x"].values, dtype=np.float64),
                            np.asarray(context["y"].values, dtype=np.float64))
            if "time" in context.coords:
                last_time = np.datetime64(context["time"].values[-1], "ns")
            context = context.values
        if context_coords:
            grid = context_coords.get("grid", grid)
            if context_coords.get("time") is not None:
                last_time = np.datetime64(np.asarray(context_coords["time"])[-1], "ns")
            if grid is not None and crs_attrs is None:
                from prediff.data.export import grid_mapping_attrs

                crs_attrs = grid_mapping_attrs(grid.proj)
        pixels = np.asarray(context, dtype=np.float32)
        expected = (self.context_frames,) + self.frame_shape
        if pixels.shape != expected:
            raise DataError(f"the context has shape {pixels.shape}; this model needs {expected} = (context frames, "
                            "height, width) of VIL pixels, oldest frame first")
        if grid is not None and tuple(grid.shape) != self.frame_shape:
            raise DataError(f"the grid has {grid.shape} pixels but the frames are {self.frame_shape}; pass the grid "
                            "of the context patch")
        if future is not None:
            future = np.asarray(future)
            if future.ndim != 3 or future.shape[1:] != self.frame_shape:
                raise DataError(f"the observed future has shape {future.shape}; expected (T, H, W) with "
                                f"H, W = {self.frame_shape}")
            future = np.where(np.isfinite(future), future, MISSING_PIXEL).astype(np.uint8)
        finite = np.where(np.isfinite(pixels), pixels, MISSING_PIXEL)
        unit = pixels_to_unit(finite, missing="zero")[None, ..., None]
        return ForecastInput(context_pixels=pixels, context_unit=np.ascontiguousarray(unit), observed_future=future,
                             grid=grid, crs_attrs=crs_attrs, last_time=last_time, attrs=attrs)

    # --- building blocks ----------------------------------------------------------------------------

    def encode_context(self, context_unit: np.ndarray) -> np.ndarray:
        """(1, T_in, H, W, 1) float32 [0, 1] context -> (1, T_in, h, w, L) float32 context latents (posterior mode,
        times ``model.diffusion.scale_factor``: the latent space of the denoiser)."""
        return self.latent_scale * self.vae.encode_frames(context_unit).asnumpy()

    def decode_unit(self, latents: np.ndarray) -> np.ndarray:
        """(B, T, h, w, L) denoiser latents -> (B, T, H, W, 1) float32 frames in [0, 1] units, not clamped."""
        vae_latents = np.ascontiguousarray(latents, dtype=np.float32) / np.float32(self.latent_scale)
        return self.vae.decode_latents(vae_latents, chunk_size=DECODE_CHUNK_FRAMES).asnumpy()

    def predicted_intensity(self, latents: np.ndarray) -> np.ndarray:
        """(B,) float32 the alignment network's predicted average intensity ([0, 1] units) of clean latents (t = 0)."""
        from prediff.diffusion import AlignmentGuidance

        probe = AlignmentGuidance(self.align, 0.0, scale=0.0)
        return probe.evaluate(latents, np.zeros(latents.shape[0], dtype=np.int64), with_gradient=False).predicted_intensity

    def sampler(self, name: str = "ddim", steps: int | None = 20, eta: float = 0.0):
        """A sampler by name. ``"ddim"``: ``steps`` strided steps (trailing spacing), ``eta`` in [0, 1];
        ``"ddpm"``: the reference's ancestral chain over every training timestep (``steps`` must be None or T)."""
        from prediff.diffusion import get_sampler

        if name == "ddpm":
            total = self.schedule.num_timesteps
            if steps not in (None, total):
                raise ConfigError(f"the DDPM sampler always visits all {total} timesteps; use --steps {total}, or "
                                  f"--sampler ddim --eta 1 for a {steps}-step ancestral sampler")
            return get_sampler("ddpm", self.schedule)
        if steps is None or int(steps) < 1:
            raise ConfigError(f"DDIM needs a number of steps >= 1, got {steps}")
        if not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(f"eta must lie in [0, 1], got {eta}")
        return get_sampler(name, self.schedule, num_steps=int(steps), eta=float(eta))

    def resolve_target(self, target: str | None, members: int, prepared: ForecastInput):
        """The parsed target spec and its (members,) float32 values in [0, 1] units (None, None unguided)."""
        from prediff.diffusion import parse_target

        if target is None:
            return None, None
        spec = parse_target(target)
        future = None
        if prepared.observed_future is not None:
            future = pixels_to_unit(prepared.observed_future[: self.latent_shape[0]], missing="zero")[None, ..., None]
        values = spec.resolve(members, stats=self.stats, context=prepared.context_unit, future=future)
        return spec, values

    def _guidance(self, values: np.ndarray | None, scale: float):
        from prediff.diffusion import AlignmentGuidance

        if values is None:
            return None
        return AlignmentGuidance(self.align, values, scale=scale)

    # --- sampling -----------------------------------------------------------------------------------

    def step_through(self, context, members: int = 1, sampler: str = "ddim", steps: int | None = 20, eta: float = 0.0,
                     target: str | None = None, guidance_scale: float | None = None, seed: int = 0,
                     first_member: int = 0, progress=None, cancel=None, state=None, context_coords=None,
                     observed_future=None):
        """A :class:`prediff.diffusion.SamplingRun` to drive one step at a time (the app's denoising view).

        Parameters are those of :meth:`forecast`; ``first_member`` numbers the members (their noise streams),
        ``state`` resumes an earlier run. Without a target the alignment network still reports its predicted
        intensity at every step (guidance scale 0, the trajectory is the unguided one).

        Returns
        -------
        SamplingRun whose ``decode_clean(report)`` gives (B, T_out, H, W, 1) float32 frames in [0, 1] units
        (multiply by 255 for VIL pixels).
        """
        from prediff.diffusion import AlignmentGuidance, SamplingRun, SeededNoise, mindspore_denoiser

        prepared = self.prepare(context, context_coords, observed_future)
        scale = self.default_guidance_scale if guidance_scale is None else float(guidance_scale)
        _, values = self.resolve_target(target, members, prepared)
        guidance = (AlignmentGuidance(self.align, 0.0, scale=0.0) if values is None
                    else AlignmentGuidance(self.align, values, scale=scale))
        zc = self.encode_context(prepared.context_unit)
        return SamplingRun(self.sampler(sampler, steps, eta), mindspore_denoiser(self.latent, zc),
                           SeededNoise(seed, first_member=first_member),
                           latent_shape=None if state is not None else (int(members),) + self.latent_shape,
                           guidance=guidance, decode=self.decode_unit, state=state, progress=progress, cancel=cancel)

    def sample_members(self, prepared: ForecastInput, members: int = 8, sampler: str = "ddim", steps: int | None = 20,
                       eta: float = 0.0, target_values: np.ndarray | None = None, guidance_scale: float | None = None,
                       seed: int = 0, progress: Callable[[int, int], None] | None = None, cancel=None) -> dict:
        """Sample and decode an ensemble for a prepared context.

        Returns
        -------
        dict with ``vil`` (M, T_out, H, W) float32 VIL pixels clipped to 0..254, ``mean_intensity`` (M,) the
        forecast's average intensity and ``predicted_intensity`` (M,) the alignment network's estimate of it,
        both float32 in [0, 1] units.

        Raises
        ------
        ForecastCancelled when ``cancel`` is set before the last member is done.
        """
        from prediff.diffusion import SamplingRun, SeededNoise, mindspore_denoiser

        if int(members) < 1:
            raise ConfigError(f"members must be >= 1, got {members}")
        scale = self.default_guidance_scale if guidance_scale is None else float(guidance_scale)
        sampler_obj = self.sampler(sampler, steps, eta)
        denoiser = mindspore_denoiser(self.latent, self.encode_context(prepared.context_unit))
        total = int(members) * sampler_obj.num_steps
        done = 0
        frames, predicted = [], []
        for start in range(0, int(members), self.batch_size):
            count = min(self.batch_size, int(members) - start)

            def report_step(_report, start=start):
                nonlocal done
                done += count
                if progress is not None:
                    progress(done, total)

            guidance = self._guidance(None if target_values is None else target_values[start:start + count], scale)
            run = SamplingRun(sampler_obj, denoiser, SeededNoise(seed, first_member=start),
                              latent_shape=(count,) + self.latent_shape, guidance=guidance, progress=report_step,
                              cancel=cancel)
            latents = run.run()
            if run.cancelled:
                raise ForecastCancelled(f"forecast cancelled after {start} of {members} members")
            frames.append(self.decode_unit(latents)[..., 0])
            predicted.append(self.predicted_intensity(latents))
        unit = np.concatenate(frames)
        vil = np.clip(unit * np.float32(255.0), 0.0, MAX_VIL_PIXEL).astype(np.float32)
        return {"vil": vil, "mean_intensity": (vil.reshape(vil.shape[0], -1).mean(axis=1) / 255.0).astype(np.float32),
                "predicted_intensity": np.concatenate(predicted).astype(np.float32)}

    def forecast(self, context, members: int = 8, sampler: str = "ddim", steps: int | None = 20, eta: float = 0.0,
                 target: str | None = None, guidance_scale: float | None = 50.0, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None, cancel=None, context_coords=None,
                 observed_future=None):
        """An ensemble nowcast from the context frames.

        Parameters
        ----------
        context : T_in = 7 context frames of VIL pixels (see :meth:`prepare` for the accepted forms).
        members : ensemble size M.
        sampler : ``"ddim"`` (default) or ``"ddpm"`` (all 1000 reference steps).
        steps : DDIM steps (ignored for DDPM, which must be None or T).
        eta : DDIM stochasticity, 0 (deterministic ODE) ... 1 (ancestral, the reference's calibration).
        target : guidance target (``mu+4sigma``, ``mean=40``, ``context*2``, ``oracle*2`` ...,
            :func:`prediff.diffusion.parse_target`), None for an unguided forecast.
        guidance_scale : strength of the alignment guidance (None: the config's ``guide_scale``); ignored
            without a target.
        seed : noise seed; member m uses the noise streams ``(seed, m)``.
        progress : called as ``progress(done, total)`` (member-steps) after every sampler step.
        cancel : object with ``is_set()``; when set, sampling stops and :class:`ForecastCancelled` is raised.
        context_coords, observed_future : see :meth:`prepare`.

        Returns
        -------
        xarray.Dataset with dims (member, lead_time, y, x):

        * ``vil`` (member, lead_time, y, x) float32 VIL pixels, clipped to 0..254;
        * ``mean_intensity`` / ``predicted_intensity`` (member,) float32, [0, 1] units: the forecast's average
          intensity and the alignment network's estimate of it (at t = 0); ``target_intensity`` (member,)
          when guided;
        * ``vil_observed`` (lead_time, y, x) uint8 (255 = missing) when the observed future is known;
        * coords ``member``, ``lead_time`` (minutes), ``time`` (valid times, when the context times are known),
          ``y``, ``x``, ``lat``, ``lon`` and a ``crs`` grid-mapping variable when the grid is known;
        * attributes: model, checkpoint SHA-256 hashes, sampler, steps, eta, seed, target (text, kind, resolved
          value), guidance scale.
        """
        prepared = self.prepare(context, context_coords, observed_future)
        spec, values = self.resolve_target(target, members, prepared)
        scale = self.default_guidance_scale if guidance_scale is None else float(guidance_scale)
        sampler_obj = self.sampler(sampler, steps, eta)
        result = self.sample_members(prepared, members, sampler, steps, eta, values, scale, seed, progress, cancel)
        settings = {"sampler": sampler, "steps": int(sampler_obj.num_steps), "eta": float(eta) if sampler == "ddim"
                    else 1.0, "seed": int(seed), "members": int(members)}
        guided = {"target": target, "spec": spec, "values": values, "scale": scale} if spec is not None else None
        return self._to_dataset(prepared, result, settings, guided)

    def _to_dataset(self, prepared: ForecastInput, result: dict, settings: dict, guided: dict | None):
        import xarray as xr

        from prediff.data.export import VIL_ENCODING_DESCRIPTION

        members, n_leads = result["vil"].shape[:2]
        lead_times = self.lead_times[:n_leads]
        mapping = {"grid_mapping": "crs"} if prepared.crs_attrs is not None else {}
        data_vars = {
            "vil": xr.Variable(("member", "lead_time", "y", "x"), result["vil"], attrs={
                "long_name": "forecast vertically integrated liquid, SEVIR pixel encoding",
                "units": "1", "valid_range": np.array([0.0, MAX_VIL_PIXEL], dtype=np.float32),
                "description": VIL_ENCODING_DESCRIPTION + "; float pixels clipped to 0..254 (255 is SEVIR's missing "
                               "code and never forecast)", **mapping}, encoding={"zlib": True, "complevel": 4}),
            "mean_intensity": xr.Variable("member", result["mean_intensity"], attrs={
                "long_name": "average forecast intensity over lead times and pixels", "units": "1",
                "description": "VIL pixel / 255 averaged over (lead_time, y, x)"}),
            "predicted_intensity": xr.Variable("member", result["predicted_intensity"], attrs={
                "long_name": "alignment network's estimate of the average intensity at t = 0", "units": "1",
                "description": "VIL pixel / 255"}),
        }
        if guided is not None:
            data_vars["target_intensity"] = xr.Variable("member", guided["values"], attrs={
                "long_name": "guidance target average intensity", "units": "1", "description": "VIL pixel / 255"})
        if prepared.observed_future is not None:
            observed = prepared.observed_future[:n_leads]
            if observed.shape[0] == n_leads:
                data_vars["vil_observed"] = xr.Variable(("lead_time", "y", "x"), observed, attrs={
                    "long_name": "observed vertically integrated liquid, SEVIR pixel encoding", "units": "1",
                    "description": VIL_ENCODING_DESCRIPTION, **mapping},
                    encoding={"_FillValue": np.uint8(MISSING_PIXEL), "zlib": True, "complevel": 4})
        coords = {"member": ("member", np.arange(members, dtype=np.int32), {"long_name": "ensemble member"}),
                  "lead_time": ("lead_time", lead_times, {"long_name": "lead time after the last context frame",
                                                          "units": "minutes"})}
        if prepared.last_time is not None:
            valid = prepared.last_time + lead_times.astype("timedelta64[m]").astype("timedelta64[ns]")
            coords["time"] = ("lead_time", valid, {"standard_name": "time", "long_name": "valid time (UTC)"})
        if prepared.grid is not None:
            grid = prepared.grid
            lat, lon = grid.latlon()
            coords.update({
                "y": ("y", grid.y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y",
                                    "long_name": "y of the pixel centre (row 0 = south)"}),
                "x": ("x", grid.x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X",
                                    "long_name": "x of the pixel centre"}),
                "lat": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
                "lon": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"})})
        if prepared.crs_attrs is not None:
            data_vars["crs"] = xr.Variable((), np.int32(0), attrs=prepared.crs_attrs)
        attrs = {"Conventions": "CF-1.8", "title": "PreDiff ensemble nowcast", **prepared.attrs,
                 "model": self.name, **{f"{CHECKPOINT_LABELS.get(kind, kind)}_checkpoint_sha256": digest
                    for kind, digest in self.checkpoints.items()},
                 **settings, "guided": int(guided is not None),
                 "target": "none" if guided is None else guided["target"],
                 "guidance_scale": 0.0 if guided is None else float(guided["scale"])}
        if guided is not None:
            attrs.update(target_kind=guided["spec"].kind, target_resolved=guided["spec"].describe(),
                         target_value=np.asarray(guided["values"], dtype=np.float32))
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)


@dataclasses.dataclass
class EnsembleForecaster:
    """A PreDiff configuration as an evaluation method (:class:`prediff.verify.evaluate.Method`).

    Attributes
    ----------
    pipeline : the loaded pipeline.
    n_members : ensemble size M.
    sampler, steps, eta : sampler settings (see :meth:`PreDiffPipeline.forecast`).
    target : guidance target text (e.g. ``oracle*2``, ``mu+2sigma``) or None for unguided sampling.
    guidance_scale : guidance strength (None: the config's ``guide_scale``).
    """

    pipeline: PreDiffPipeline
    n_members: int = 8
    sampler: str = "ddim"
    steps: int | None = 20
    eta: float = 0.0
    target: str | None = None
    guidance_scale: float | None = None

    def forecast(self, context: np.ndarray, observed: np.ndarray, seed: int) -> np.ndarray:
        """(M, T_out, H, W) float32 VIL pixels (0..254) from (T_in, H, W) context pixels; ``observed`` (T_out, H, W)
        is used only by an ``oracle`` target. Guided and unguided forecasters given one seed share their noise."""
        prepared = self.pipeline.prepare(context, observed_future=observed)
        _, values = self.pipeline.resolve_target(self.target, self.n_members, prepared)
        return self.pipeline.sample_members(prepared, self.n_members, self.sampler, self.steps, self.eta, values,
                                            self.guidance_scale, seed)["vil"]
