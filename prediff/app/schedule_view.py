"""The noise-schedule chart of the denoising page (no Streamlit here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prediff.config import load_config
from prediff.diffusion.schedule import NoiseSchedule

PUBLISHED_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "prediff_sevirlr_full.yaml"


def schedule_of(config_path: str | Path = PUBLISHED_CONFIG) -> NoiseSchedule:
    """The noise schedule of a reference-style config's ``model.diffusion`` section.

    Raises
    ------
    ConfigError : unreadable or invalid config.
    """
    return NoiseSchedule.from_config(load_config(config_path)["model"]["diffusion"])


def schedule_figure(schedule: NoiseSchedule, sampling_steps: int = 50):
    """Plotly chart of the signal and noise fractions of z_t against the timestep t.

    Parameters
    ----------
    schedule : the training schedule (T timesteps).
    sampling_steps : number of evenly spaced DDIM steps to mark (the sampler visits these timesteps).

    Returns
    -------
    plotly.graph_objects.Figure: sqrt(abar_t) (share of the clean latent) and sqrt(1 - abar_t) (noise standard
    deviation) for t = 0 ... T-1, with the DDIM timesteps as markers.
    """
    import plotly.graph_objects as go

    t = np.arange(schedule.num_timesteps)
    noise = schedule.noise_level(t)
    signal = np.sqrt(schedule.float64_tables()["alphas_cumprod"])
    visited = np.unique(np.linspace(0, schedule.num_timesteps - 1, max(2, sampling_steps)).round().astype(int))
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=t, y=signal, name="signal √ᾱₜ", line={"color": "#2c7fb8"}))
    figure.add_trace(go.Scatter(x=t, y=noise, name="noise √(1-ᾱₜ)", line={"color": "#d95f0e"}))
    figure.add_trace(go.Scatter(x=visited, y=schedule.noise_level(visited), mode="markers", name="DDIM steps",
                                marker={"size": 5, "color": "#444"}))
    figure.update_layout(xaxis_title="diffusion timestep t", yaxis_title="fraction of z_t", height=360,
                         margin={"l": 60, "r": 20, "t": 30, "b": 50}, legend={"orientation": "h", "y": 1.12})
    return figure
