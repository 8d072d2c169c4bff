"""prediff.models.checkpoint and `prediff checkpoint`: strict loading, useful mismatch messages, atomic saving."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest

from prediff.cli import main as cli_main
from prediff.config import load_config
from prediff.errors import CheckpointError
from prediff.runtime import mindspore_module

ms = mindspore_module()

from prediff.models.build import (build_alignment_model, build_latent_model,  # noqa: E402
                                  build_networks, build_vae)
from prediff.models.checkpoint import (guess_kind, load_network, read_checkpoint,  # noqa: E402
                                       save_network, write_checkpoint)

PARITY_FILES = {"vae": "vae_small.ckpt", "latent": "latent_small.ckpt", "align": "align_small.ckpt"}
#: (tensors, parameter elements, integer elements) of the parity checkpoints (parity/README.md).
PARITY_COUNTS = {"vae": (248, 334_093, 0), "latent": (220, 1_037_890, None), "align": (125, 556_441, None)}
BUILDERS = {"vae": build_vae, "latent": build_latent_model, "align": build_alignment_model}


@pytest.fixture(scope="module")
def small_config_path(repo_root):
    return repo_root / "configs" / "prediff_small.yaml"


@pytest.fixture(scope="module")
def small_config(small_config_path):
    return load_config(small_config_path)


@pytest.fixture
def fresh_vae(small_config):
    ms.set_seed(1)
    return build_vae(small_config)


def _values(net) -> dict[str, np.ndarray]:
    return {name: p.asnumpy().copy() for name, p in net.parameters_and_names()}


@pytest.mark.shared
@pytest.mark.parametrize("kind", ["vae", "latent", "align"])
def test_parity_checkpoints_load_strictly_and_exactly(kind, small_config, parity_dir):
    net = BUILDERS[kind](small_config)
    path = parity_dir / PARITY_FILES[kind]
    report = load_network(net, path, kind)
    tensors, elements, integer_elements = PARITY_COUNTS[kind]
    assert (report.tensors, report.elements) == (tensors, elements)
    if integer_elements is not None:
        assert report.integer_elements == integer_elements
    assert str(path) in report.summary() and f"{elements:,}" in report.summary()
    stored = read_checkpoint(path)
    prefix = "main_model." if kind == "latent" else ""
    loaded = _values(net)
    assert set(stored) == {prefix + name for name in loaded}
    for name, array in loaded.items():
        assert array.dtype == stored[prefix + name].dtype
        np.testing.assert_array_equal(array, stored[prefix + name])


@pytest.mark.shared
def test_renamed_missing_and_misshaped_tensors_are_all_named(fresh_vae, parity_dir, tmp_path):
    arrays = read_checkpoint(parity_dir / "vae_small.ckpt")
    arrays["encoder.conv_in.kernel"] = arrays.pop("encoder.conv_in.weight")
    del arrays["decoder.conv_out.bias"]
    arrays["quant_conv.weight"] = np.zeros((8, 8, 3, 3), np.float32)
    broken = write_checkpoint(arrays, tmp_path / "broken.ckpt")
    before = _values(fresh_vae)
    with pytest.raises(CheckpointError) as caught:
        load_network(fresh_vae, broken, "vae")
    message = str(caught.value)
    assert "missing from the file (2):\n    encoder.conv_in.weight\n    decoder.conv_out.bias" in message
    assert "unexpected in the file (1):\n    encoder.conv_in.kernel" in message
    assert "quant_conv.weight: [8, 8, 3, 3] float32 vs [8, 8, 1, 1] float32" in message
    assert "'encoder.conv_in.kernel' in the file looks like a renamed 'encoder.conv_in.weight'" in message
    # All or nothing: the matching tensors were not assigned either.
    after = _values(fresh_vae)
    assert all(np.array_equal(before[name], after[name]) for name in before)


@pytest.mark.shared
def test_wrong_file_for_the_kind_is_explained(small_config, parity_dir):
    with pytest.raises(CheckpointError, match=r"names lack the main_model\. prefix.*passed as --latent"):
        load_network(build_latent_model(small_config), parity_dir / "vae_small.ckpt", "latent")
    with pytest.raises(CheckpointError, match=r"latent denoiser \(diffusion.ckpt\): was that file passed as --vae "
                                              r"instead of --latent"):
        load_network(build_vae(small_config), parity_dir / "latent_small.ckpt", "vae")
    with pytest.raises(CheckpointError, match=r"alignment network \(align.ckpt\): was that file passed as --latent"):
        load_network(build_latent_model(small_config), parity_dir / "align_small.ckpt", "latent")
    # A denoiser file with bare names: the reference would silently load nothing; we refuse and say why.
    bare = {name[len("main_model."):]: a for name, a in read_checkpoint(parity_dir / "latent_small.ckpt").items()}
    assert guess_kind(bare) == "latent"


@pytest.mark.shared
def test_width_and_depth_mismatches_point_at_the_config(small_config, parity_dir):
    wider = copy.deepcopy(small_config)
    wider["model"]["vae"]["block_out_channels"] = [16, 32, 64, 64]
    with pytest.raises(CheckpointError, match=r"2x smaller than the network's: the config's "
                                              r"model\.vae\.block_out_channels"):
        load_network(build_vae(wider), parity_dir / "vae_small.ckpt", "vae")
    deeper = copy.deepcopy(small_config)
    deeper["model"]["vae"]["layers_per_block"] = 3
    with pytest.raises(CheckpointError, match=r"fewer blocks .* model\.vae\.layers_per_block") as caught:
        load_network(build_vae(deeper), parity_dir / "vae_small.ckpt", "vae")
    assert "encoder.down_blocks.0.resnets.2.conv1.weight" in str(caught.value)


@pytest.mark.shared
def test_extra_enclosing_prefix_is_reported(fresh_vae, parity_dir, tmp_path):
    arrays = {f"first_stage_model.{n}": a for n, a in read_checkpoint(parity_dir / "vae_small.ckpt").items()}
    path = write_checkpoint(arrays, tmp_path / "wrapped.ckpt")
    with pytest.raises(CheckpointError, match=r"extra prefix 'first_stage_model\.'"):
        load_network(fresh_vae, path, "vae")


@pytest.mark.shared
def test_relative_position_index_must_equal_the_computed_one(small_config, parity_dir, tmp_path):
    arrays = read_checkpoint(parity_dir / "latent_small.ckpt")
    index_names = [n for n in arrays if n.endswith("relative_position_index")]
    assert index_names and all(arrays[n].dtype == np.int64 for n in index_names)
    arrays[index_names[0]] = arrays[index_names[0]][::-1].copy()
    path = write_checkpoint(arrays, tmp_path / "diffusion.ckpt")
    with pytest.raises(CheckpointError, match=r"integer index buffers with other values.*\n    " + index_names[0]):
        load_network(build_latent_model(small_config), path, "latent")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_unreadable_files_raise_checkpoint_errors(content, fresh_vae, tmp_path):
    path = tmp_path / "vae.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"vae\.ckpt (is empty|is not a readable|does not exist)"):
        load_network(fresh_vae, path, "vae")


def test_truncated_file_and_wrong_suffix(fresh_vae, tmp_path):
    good = save_network(fresh_vae, tmp_path / "vae.ckpt", "vae")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_network(fresh_vae, truncated, "vae")
    renamed = tmp_path / "vae.bin"
    shutil.copy(good, renamed)
    with pytest.raises(CheckpointError, match=r"must end with \.ckpt"):
        load_network(fresh_vae, renamed, "vae")
    with pytest.raises(CheckpointError, match=r"is a directory; pass the checkpoint file inside it"):
        load_network(fresh_vae, tmp_path, "vae")


def test_save_load_round_trip_is_bit_exact(small_config, fresh_vae, tmp_path):
    path = save_network(fresh_vae, tmp_path / "vae.ckpt", "vae")
    assert [p.name for p in tmp_path.iterdir()] == ["vae.ckpt"]  # no temporary left behind
    stored = read_checkpoint(path)
    assert list(stored) == [name for name, _ in fresh_vae.parameters_and_names()]
    ms.set_seed(2)
    other = build_vae(small_config)
    load_network(other, path, "vae")
    original, reloaded = _values(fresh_vae), _values(other)
    assert all(original[n].tobytes() == reloaded[n].tobytes() for n in original)
    # Saving over an existing file replaces it atomically.
    save_network(other, path, "vae")
    assert [p.name for p in tmp_path.iterdir()] == ["vae.ckpt"]


def test_write_checkpoint_keeps_dtypes_and_order(tmp_path):
    arrays = {"b.index": np.arange(6, dtype=np.int64).reshape(2, 3), "a.weight": np.linspace(0, 1, 4, dtype=np.float32)}
    path = write_checkpoint(arrays, tmp_path / "x.ckpt")
    stored = read_checkpoint(path)
    assert list(stored) == ["b.index", "a.weight"]
    for name, array in arrays.items():
        assert stored[name].dtype == array.dtype
        np.testing.assert_array_equal(stored[name], array)


def test_latent_round_trip_carries_main_model_prefix(small_config, tmp_path):
    ms.set_seed(4)
    net = build_latent_model(small_config)
    path = save_network(net, tmp_path / "diffusion.ckpt", "latent")
    stored = read_checkpoint(path)
    assert stored and all(name.startswith("main_model.") for name in stored)
    assert any(a.dtype == np.int64 for a in stored.values())
    report = load_network(build_latent_model(small_config), path, "latent")
    assert report.tensors == len(stored) and report.integer_elements > 0


@pytest.mark.shared
def test_build_networks_loads_all_three_in_eval_mode(small_config, parity_dir):
    vae, latent, align = build_networks(small_config, vae_ckpt=parity_dir / "vae_small.ckpt",
                                        latent_ckpt=parity_dir / "latent_small.ckpt",
                                        align_ckpt=parity_dir / "align_small.ckpt")
    for net in (vae, latent, align):
        assert not net.training
    np.testing.assert_array_equal(vae.quant_conv.bias.asnumpy(), read_checkpoint(parity_dir / "vae_small.ckpt")
                                  ["quant_conv.bias"])


def test_build_networks_seed_is_reproducible(small_config):
    first = _values(build_networks(small_config, seed=7)[0])
    second = _values(build_networks(small_config, seed=7)[0])
    assert all(np.array_equal(first[n], second[n]) for n in first)


@pytest.mark.shared
def test_cli_check_reports_counts(small_config_path, parity_dir, capsys):
    status = cli_main(["checkpoint", "check", "--config", str(small_config_path),
                       "--vae", str(parity_dir / "vae_small.ckpt"), "--latent", str(parity_dir / "latent_small.ckpt"),
                       "--align", str(parity_dir / "align_small.ckpt")])
    out = capsys.readouterr().out
    assert status == 0
    assert "248 tensors, 334,093 parameter elements" in out
    assert "220 tensors, 1,037,890 parameter elements" in out
    assert "125 tensors, 556,441 parameter elements" in out


@pytest.mark.shared
def test_cli_check_fails_listing_every_problem(small_config_path, parity_dir, capsys):
    status = cli_main(["checkpoint", "check", "--config", str(small_config_path),
                       "--vae", str(parity_dir / "latent_small.ckpt"), "--align", str(parity_dir / "align_small.ckpt")])
    captured = capsys.readouterr()
    assert status == 1
    assert "FAILED" in captured.err and "encoder.conv_in.weight" in captured.err
    assert "main_model.final_proj.weight" in captured.err
    assert "125 tensors" in captured.out  # the good file is still checked and reported


def test_cli_init_writes_loadable_files(small_config_path, tmp_path, capsys):
    out_dir = tmp_path / "fresh"
    assert cli_main(["checkpoint", "init", "--config", str(small_config_path), "--out", str(out_dir),
                     "--seed", "5"]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["align.ckpt", "diffusion.ckpt", "vae.ckpt"]
    assert "wrote" in capsys.readouterr().out
    # Reference initialisation: the denoiser's output projection starts at zero (facts.md section 10).
    assert not np.any(read_checkpoint(out_dir / "diffusion.ckpt")["main_model.final_proj.weight"])
    status = cli_main(["checkpoint", "check", "--config", str(small_config_path), "--vae", str(out_dir / "vae.ckpt"),
                       "--latent", str(out_dir / "diffusion.ckpt"), "--align", str(out_dir / "align.ckpt")])
    assert status == 0
    # Existing files are not replaced without --force (user error, exit status 2).
    assert cli_main(["checkpoint", "init", "--config", str(small_config_path), "--out", str(out_dir)]) == 2
    assert "--force" in capsys.readouterr().err
