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
