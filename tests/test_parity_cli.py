"""``prediff parity``: the reference's fixtures reproduced key by key, and a second (batch 3) fixture set."""

from __future__ import annotations

import numpy as np
import pytest

from tiny_model import write_tiny_model


def _parity_command(config, folder_or_files, inputs, out, compare=None):
    vae, latent, align = folder_or_files
    command = ["parity", "--config", str(config), "--vae", str(vae), "--latent", str(latent), "--align", str(align),
               "--inputs", str(inputs), "--out", str(out)]
    return command + (["--compare", str(compare)] if compare is not None else [])


@pytest.mark.shared
@pytest.mark.slow
def test_parity_reproduces_every_reference_key(parity_dir, parity_arrays, tmp_path, capsys):
    from prediff.cli import main
    from prediff.parity import REQUIRED_INPUTS

    out = tmp_path / "ours.npz"
    checkpoints = [parity_dir / name for name in ("vae_small.ckpt", "latent_small.ckpt", "align_small.ckpt")]
    status = main(_parity_command(parity_dir / "small_config.yaml", checkpoints, parity_dir / "parity_small.npz",
                                  out, compare=parity_dir / "parity_small.npz"))
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "FAIL" not in printed
    with np.load(out) as ours:
        produced = set(ours.files)
        assert set(REQUIRED_INPUTS) <= produced
        for key in sorted(produced):
            expected = parity_arrays[key].astype(np.float64)
            difference = np.abs(ours[key].astype(np.float64) - expected).max()
            assert difference <= 1e-4 * max(np.abs(expected).max(), 1e-30), key
        for key in ("metric_hits", "metric_misses", "metric_fas"):
            np.testing.assert_array_equal(ours[key], parity_arrays[key])


@pytest.fixture(scope="module")
def second_fixture_set(tmp_path_factory):
    """Tiny random checkpoints (seed 1) and random inputs with batch size 3."""
    folder = write_tiny_model(tmp_path_factory.mktemp("parity_tiny"), seed=1)
    rng = np.random.default_rng(1)
    batch, latent = 3, (6, 16, 16, 4)
    inputs = {
        "seq": rng.uniform(0, 1, (batch, 13, 128, 128, 1)).astype(np.float32),
        "vae_dec_in": rng.standard_normal((6, 4, 16, 16)).astype(np.float32),
        "decode_first_stage_in": rng.standard_normal((batch,) + latent).astype(np.float32),
        "unet_zt": rng.standard_normal((batch,) + latent).astype(np.float32),
        "unet_t": np.array([999, 17, 400]), "unet_cond": rng.standard_normal((batch, 7, 16, 16, 4)).astype(np.float32),
        "align_zt": rng.standard_normal((batch,) + latent).astype(np.float32), "align_t": np.array([5, 500, 999]),
        "align_avg_x_gt": rng.uniform(0, 0.5, (batch, 1)).astype(np.float32),
        "step_zt": rng.standard_normal((batch,) + latent).astype(np.float32), "step_t": np.array([500, 0, 3]),
        "step_noise": rng.standard_normal((batch,) + latent).astype(np.float32),
        "loop_xT": rng.standard_normal((batch,) + latent).astype(np.float32),
        "loop_noises": rng.standard_normal((3, batch) + latent).astype(np.float32),
        "metric_pred": rng.uniform(0, 1, (batch, 6, 128, 128, 1)).astype(np.float32),
    }
    path = folder / "inputs.npz"
    np.savez(path, **inputs)
    return folder, path


def test_second_fixture_set_writes_every_key_with_its_shape(second_fixture_set, tmp_path, capsys):
    from prediff.cli import main

    folder, inputs = second_fixture_set
    out = tmp_path / "out.npz"
    files = [folder / "vae.ckpt", folder / "diffusion.ckpt", folder / "align.ckpt"]
    assert main(_parity_command(folder / "config.yaml", files, inputs, out)) == 0
    assert "note:" not in capsys.readouterr().out
    latent, pixels = (3, 6, 16, 16, 4), (3, 6, 128, 128, 1)
    expected = {"vae_enc_moments": (7, 8, 16, 16), "vae_post_mean": (7, 4, 16, 16), "vae_post_logvar": (7, 4, 16, 16),
                "vae_recon": (7, 1, 128, 128), "vae_dec_out": (6, 1, 128, 128), "cond_zc": (3, 7, 16, 16, 4),
                "decode_first_stage_out": pixels, "unet_out": latent, "align_out": (3, 6, 1),
                "align_grad_raw_fixed": latent, "step_eps": latent, "step_z0_pred": latent, "step_mean": latent,
                "step_out_noalign": latent, "step_out_align_fixed": latent, "loop_out_latent_noalign": latent,
                "loop_out_pixels_noalign": pixels, "loop_out_latent_align_fixed": latent, "metric_hits": (6,),
                "metric_csi": (6,), "metric_bias": (6,), "metric_ssim": (), "metric_mse": (), "metric_mae": ()}
    with np.load(out) as ours:
        for key, shape in expected.items():
            assert ours[key].shape == shape, key
            assert np.all(np.isfinite(ours[key])), key
        # guidance toward the target really moves the step (the reference's stop_gradient made it a no-op)
        assert np.abs(ours["step_out_align_fixed"][0] - ours["step_out_noalign"][0]).max() > 0
        # t = 0 injects no noise: the step output is the mean
        np.testing.assert_array_equal(ours["step_out_noalign"][1], ours["step_mean"][1])


def test_compare_fails_on_a_perturbed_reference_and_notes_missing_inputs(second_fixture_set, tmp_path, capsys):
    from prediff.cli import main

    folder, inputs = second_fixture_set
    files = [folder / "vae.ckpt", folder / "diffusion.ckpt", folder / "align.ckpt"]
    with np.load(inputs) as data:
        reduced = {key: data[key] for key in ("seq", "unet_zt", "unet_t", "unet_cond", "metric_pred")}
    reduced_path = tmp_path / "reduced.npz"
    np.savez(reduced_path, **reduced)
    out = tmp_path / "out.npz"
    assert main(_parity_command(folder / "config.yaml", files, reduced_path, out)) == 0
    printed = capsys.readouterr().out
    assert "note: align_out: skipped, input align_zt, align_t absent" in printed
    with np.load(out) as ours:
        reference = {key: ours[key] for key in ours.files}
        assert "align_out" not in reference and "unet_out" in reference
    assert main(_parity_command(folder / "config.yaml", files, reduced_path, tmp_path / "again.npz",
                                compare=out)) == 0
    reference["cond_zc"] = reference["cond_zc"] * 1.01
    np.savez(tmp_path / "perturbed.npz", **reference)
    capsys.readouterr()
    assert main(_parity_command(folder / "config.yaml", files, reduced_path, tmp_path / "again.npz",
                                compare=tmp_path / "perturbed.npz")) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("FAIL")] == ["cond_zc"]
