"""Parity with the MindEarth PreDiff reference: compute its fixture outputs from its fixture inputs.

:func:`parity_outputs` takes the input arrays of ``reference/parity/parity_small.npz`` (names in
``reference/parity/README.md``) and the three networks, and returns the arrays the reference produced, under the
reference's key names, computed by this workbench: VAE moments / posterior / reconstruction / decode, context
latents, the denoiser's eps, the alignment output and its (working) gradient, one DDPM step with and without
guidance, the 3-step loop when its noise is given, the metrics and the schedule tables. :func:`compare_outputs`
checks them against a reference file: ``max|out - ref| / max|ref|`` per key, PASS at ``<= 1e-4``.

Guidance arrays follow the *intended* behaviour (``*_fixed`` keys: a real gradient, MindEarth's batch-norm
objective), not the shipped zero gradient. Batch size and widths come from the arrays and the config.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from prediff.errors import DataError

#: Tolerance of :func:`compare_outputs`: max|out - ref| <= TOLERANCE * max|ref| (the fixtures' suggested bound).
TOLERANCE = 1e-4
#: Output keys and the input keys each one needs (``seq`` holds context + target, NTHWC, [0, 1]).
REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "vae_enc_moments": ("seq",), "vae_post_mean": ("seq",), "vae_post_logvar": ("seq",), "vae_recon": ("seq",),
    "vae_dec_out": ("vae_dec_in",), "cond_zc": ("seq",), "decode_first_stage_out": ("decode_first_stage_in",),
    "unet_out": ("unet_zt", "unet_t", "unet_cond"), "align_out": ("align_zt", "align_t"),
    "align_grad_raw_fixed": ("align_zt", "align_t", "align_avg_x_gt"),
    "step_eps": ("seq", "step_zt", "step_t"), "step_z0_pred": ("seq", "step_zt", "step_t"),
    "step_mean": ("seq", "step_zt", "step_t"), "step_out_noalign": ("seq", "step_zt", "step_t", "step_noise"),
    "step_out_align_fixed": ("seq", "step_zt", "step_t", "step_noise", "align_avg_x_gt"),
    "loop_out_latent_noalign": ("seq", "loop_xT", "loop_noises"),
    "loop_out_pixels_noalign": ("seq", "loop_xT", "loop_noises"),
    "loop_out_latent_align_fixed": ("seq", "loop_xT", "loop_noises", "align_avg_x_gt"),
    **{f"metric_{name}": ("seq", "metric_pred") for name in (
        "hits", "misses", "fas", "csi", "pod", "sucr", "bias", "csi_avg", "pod_avg", "sucr_avg", "bias_avg",
        "ssim", "mse", "mae")},
}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One key compared with the reference.

    Attributes
    ----------
    key : array name.
    relative_error : max|out - ref| / max|ref| (max|out - ref| when the reference is all zero), NaN on a shape
        mismatch.
    passed : relative_error <= tolerance and same shape.
    detail : empty, or why the key failed (shape mismatch, missing output).
    """

    key: str
    relative_error: float
    passed: bool
    detail: str = ""


def _check_inputs(inputs: Mapping[str, np.ndarray], config: Mapping) -> None:
    latent_shape = tuple(config["model"]["diffusion"]["latent_shape"])
    for key in ("unet_zt", "align_zt", "step_zt", "loop_xT", "decode_first_stage_in"):
        if key in inputs and tuple(np.shape(inputs[key])[1:]) != latent_shape:
            raise DataError(f"input {key} has shape {np.shape(inputs[key])}; the config's latents are (B,) + "
                            f"{latent_shape} — use the config the fixtures were made with")
    if "seq" in inputs and np.ndim(inputs["seq"]) != 5:
        raise DataError(f"input seq must be NTHWC (B, T, H, W, C) on the [0, 1] scale, got shape "
                        f"{np.shape(inputs['seq'])}")


def parity_outputs(config: Mapping, vae, latent, align, inputs: Mapping[str, np.ndarray]) -> tuple[dict, list[str]]:
    """Compute the reference's output arrays from its input arrays.

    Parameters
    ----------
    config : loaded config (the fixtures' ``small_config.yaml`` for ``parity_small.npz``).
    vae, latent, align : the networks in eval mode with the fixtures' checkpoints loaded.
    inputs : arrays by README name: ``seq`` (B, 13, H, W, 1) [0, 1]; ``vae_dec_in`` (N, L, h, w);
        ``decode_first_stage_in``, ``unet_zt``, ``align_zt``, ``step_zt``, ``step_noise``, ``loop_xT``
        (B, 6, h, w, L); ``unet_cond`` (B, 7, h, w, L); ``unet_t``, ``align_t``, ``step_t`` (B,) int;
        ``align_avg_x_gt`` (B, 1) [0, 1]; ``loop_noises`` (S, B, 6, h, w, L); ``metric_pred`` (B, 6, H, W, 1) [0, 1].

    Returns
    -------
    (outputs, notes): ``outputs`` maps reference key -> np.ndarray (float32 unless the reference's is
    otherwise; metric counts int64); ``notes`` lists keys skipped because an input is absent.
    """
    from prediff.diffusion import (AlignmentGuidance, DDPMSampler, FixedNoise, NoiseSchedule, SamplingRun,
                                   mindspore_denoiser)
    from prediff.runtime import mindspore_module
    from prediff.verify.reference import reference_metric_outputs

    ms = mindspore_module()
    _check_inputs(inputs, config)
    outputs: dict[str, np.ndarray] = {}
    notes = []
    for key, needed in REQUIRED_INPUTS.items():
        absent = [name for name in needed if name not in inputs]
        if absent:
            notes.append(f"{key}: skipped, input {', '.join(absent)} absent")
    available = {key for key, needed in REQUIRED_INPUTS.items() if all(name in inputs for name in needed)}
    t_in = int(config["model"]["diffusion"]["latent_cond_shape"][0])
    scale = float(config["model"]["align"]["guide_scale"])
    schedule = NoiseSchedule.from_config(config["model"]["diffusion"])

    def tensor(name):
        return ms.Tensor(np.ascontiguousarray(inputs[name], dtype=np.float32))

    if "seq" in inputs:
        seq = np.asarray(inputs["seq"], dtype=np.float32)
        frames = np.ascontiguousarray(seq[0, :t_in].transpose(0, 3, 1, 2))
        posterior = vae.encode(ms.Tensor(frames))
        outputs.update(vae_enc_moments=posterior.moments.asnumpy(), vae_post_mean=posterior.mean.asnumpy(),
                       vae_post_logvar=posterior.logvar.asnumpy(), vae_recon=vae(ms.Tensor(frames)).asnumpy())
        zc = vae.encode_frames(seq[:, :t_in]).asnumpy()
        outputs["cond_zc"] = zc
    if "vae_dec_out" in available:
        outputs["vae_dec_out"] = vae.decode(tensor("vae_dec_in")).asnumpy()
    if "decode_first_stage_out" in available:
        outputs["decode_first_stage_out"] = vae.decode_latents(inputs["decode_first_stage_in"]).asnumpy()
    if "unet_out" in available:
        outputs["unet_out"] = latent(tensor("unet_zt"), ms.Tensor(np.asarray(inputs["unet_t"]).astype(np.int32)),
                                     tensor("unet_cond")).asnumpy()
    if "align_out" in available:
        outputs["align_out"] = align(tensor("align_zt"),
                                     ms.Tensor(np.asarray(inputs["align_t"]).astype(np.int32))).asnumpy()
    if "align_grad_raw_fixed" in available:
        unscaled = AlignmentGuidance(align, inputs["align_avg_x_gt"], scale=1.0, objective="reference")
        outputs["align_grad_raw_fixed"] = unscaled.evaluate(inputs["align_zt"], inputs["align_t"]).direction
    if "step_eps" in available:
        denoise = mindspore_denoiser(latent, zc)
        z_t, t = np.asarray(inputs["step_zt"], dtype=np.float32), np.asarray(inputs["step_t"])
        eps = denoise(z_t, t)
        ddpm = DDPMSampler(schedule)
        outputs["step_eps"] = eps
        outputs["step_z0_pred"] = ddpm.predict_clean(eps, t, z_t)
        # the mean does not depend on the noise; zeros stand in when step_noise is absent
        outputs["step_mean"] = ddpm.step_at(eps, t, z_t, np.zeros_like(z_t)).mean
        if "step_out_noalign" in available:
            outputs["step_out_noalign"] = ddpm.step_at(eps, t, z_t, inputs["step_noise"]).prev_sample
        if "step_out_align_fixed" in available:
            guidance = AlignmentGuidance(align, inputs["align_avg_x_gt"], scale=scale, objective="reference")
            direction = guidance.evaluate(z_t, t).direction
            outputs["step_out_align_fixed"] = ddpm.step_at(eps, t, z_t, inputs["step_noise"],
                                                           guidance=direction).prev_sample
    if "loop_out_latent_noalign" in available:
        noises = np.asarray(inputs["loop_noises"], dtype=np.float32)
        sampler = DDPMSampler(schedule, first_timestep=noises.shape[0] - 1)
        denoise = mindspore_denoiser(latent, zc)
        unguided = SamplingRun(sampler, denoise, FixedNoise(inputs["loop_xT"], noises),
                               latent_shape=np.shape(inputs["loop_xT"])).run()
        outputs["loop_out_latent_noalign"] = unguided
        outputs["loop_out_pixels_noalign"] = vae.decode_latents(unguided).asnumpy()
        if "loop_out_latent_align_fixed" in available:
            guidance = AlignmentGuidance(align, inputs["align_avg_x_gt"], scale=scale, objective="reference")
            outputs["loop_out_latent_align_fixed"] = SamplingRun(
                sampler, denoise, FixedNoise(inputs["loop_xT"], noises), latent_shape=np.shape(inputs["loop_xT"]),
                guidance=guidance).run()
    if "metric_hits" in available:
        outputs.update(reference_metric_outputs(inputs["metric_pred"], seq[:, t_in:]))
    outputs.update({f"sched_{name}": table for name, table in schedule.tables().items()})
    return {key: np.asarray(value) for key, value in outputs.items()}, notes


def compare_outputs(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                    tolerance: float = TOLERANCE) -> list[Comparison]:
    """Compare every output key that the reference also holds.

    Returns
    -------
    One :class:`Comparison` per shared key, in the order of ``outputs``; keys of ``outputs`` that the
    reference lacks are left out.
    """
    rows = []
    for key, value in outputs.items():
        if key not in reference:
            continue
        expected = np.asarray(reference[key], dtype=np.float64)
        actual = np.asarray(value, dtype=np.float64)
        if actual.shape != expected.shape:
            rows.append(Comparison(key, float("nan"), False, f"shape {actual.shape} != reference {expected.shape}"))
            continue
        difference = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
        magnitude = float(np.max(np.abs(expected))) if expected.size else 0.0
        relative = difference / magnitude if magnitude > 0 else difference
        rows.append(Comparison(key, relative, bool(relative <= tolerance)))
    return rows
