"""Guidance and sampling loops with the real small-config networks against the reference fixtures.

Skips when the network modules or ``../shared`` are absent. The networks are built from
``small_config.yaml`` and loaded with MindSpore's own checkpoint loader, so these tests check the
samplers, not the project's checkpoint code.
"""

import numpy as np
import pytest
import yaml

from prediff.diffusion import (AlignmentGuidance, DDPMSampler, FixedNoise, NoiseSchedule, SamplingRun,
                               mindspore_denoiser)
from prediff.runtime import mindspore_module

pytestmark = pytest.mark.shared


def _close(actual, reference, tolerance=1e-4):
    return np.max(np.abs(actual - reference)) <= tolerance * np.max(np.abs(reference))


def _load(network, path, prefix=""):
    ms = mindspore_module()
    parameters = ms.load_checkpoint(str(path))
    if prefix:
        parameters = {name[len(prefix):]: value for name, value in parameters.items() if name.startswith(prefix)}
    not_loaded, _ = ms.load_param_into_net(network, parameters, strict_load=True)
    assert not not_loaded, f"parameters not loaded from {path}: {not_loaded[:5]}"
    network.set_train(False)
    return network


@pytest.fixture(scope="module")
def small_config(parity_dir):
    return yaml.safe_load((parity_dir / "small_config.yaml").read_text())


@pytest.fixture(scope="module")
def alignment_network(parity_dir, small_config):
    alignment = pytest.importorskip("prediff.models.alignment")
    network = alignment.NoisyCuboidTransformerEncoder(**small_config["model"]["align"]["model_args"])
    return _load(network, parity_dir / "align_small.ckpt")


@pytest.fixture(scope="module")
def denoiser_network(parity_dir, small_config):
    unet = pytest.importorskip("prediff.models.earthformer_unet")
    network = unet.CuboidTransformerUNet(**small_config["model"]["latent_model"])
    return _load(network, parity_dir / "latent_small.ckpt", prefix="main_model.")


def test_reference_objective_and_real_gradient_match_fixed_reference(parity_arrays, alignment_network):
    a = parity_arrays
    guidance = AlignmentGuidance(alignment_network, a["align_avg_x_gt"], scale=50.0, objective="reference")
    evaluation = guidance.evaluate(a["align_zt"], a["align_t"])
    assert evaluation.objective[0] == pytest.approx(float(a["align_loss"]), rel=1e-4)
    np.testing.assert_allclose(evaluation.predicted_intensity, a["align_out"].mean(axis=(1, 2)), rtol=1e-4)
    assert _close(evaluation.direction, a["align_mean_shift_fixed"])
    assert np.abs(evaluation.direction).max() > 0, "the gradient must not vanish (the reference's bug)"


def test_guided_ddpm_step_matches_fixed_reference(parity_arrays, alignment_network):
    a = parity_arrays
    guidance = AlignmentGuidance(alignment_network, a["align_avg_x_gt"], scale=50.0, objective="reference")
    direction = guidance.evaluate(a["step_zt"], a["step_t"]).direction
    assert _close(direction, a["step_align_shift_fixed"])
    output = DDPMSampler(NoiseSchedule.linear()).step_at(a["step_eps"], a["step_t"], a["step_zt"], a["step_noise"],
                                                         guidance=direction)
    assert _close(output.prev_sample, a["step_out_align_fixed"])


@pytest.mark.slow
def test_per_sample_gradient_equals_single_member_gradients(parity_arrays, alignment_network):
    a = parity_arrays
    both = AlignmentGuidance(alignment_network, a["align_avg_x_gt"]).evaluate(a["align_zt"], a["align_t"])
    for member in range(2):
        alone = AlignmentGuidance(alignment_network, a["align_avg_x_gt"][member:member + 1]).evaluate(
            a["align_zt"][member:member + 1], a["align_t"][member:member + 1])
        assert _close(both.direction[member], alone.direction[0], 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("guided", [False, True])
def test_three_step_loop_matches_reference(parity_arrays, denoiser_network, alignment_network, guided):
    a = parity_arrays
    guidance = (AlignmentGuidance(alignment_network, a["align_avg_x_gt"], scale=50.0, objective="reference")
                if guided else None)
    run = SamplingRun(DDPMSampler(NoiseSchedule.linear(), first_timestep=2),
                      mindspore_denoiser(denoiser_network, a["cond_zc"]), FixedNoise(a["loop_xT"], a["loop_noises"]),
                      latent_shape=a["loop_xT"].shape, guidance=guidance)
    reference = a["loop_out_latent_align_fixed" if guided else "loop_out_latent_noalign"]
    assert _close(run.run(), reference)


def test_unet_output_through_adapter_matches_reference(parity_arrays, denoiser_network):
    a = parity_arrays
    eps = mindspore_denoiser(denoiser_network, a["unet_cond"])(a["unet_zt"], a["unet_t"])
    assert _close(eps, a["unet_out"])
