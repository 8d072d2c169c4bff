"""Data-parallel training with MindSpore's launcher: 2 CPU workers equal one process on the union batch."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from test_train_pipeline import storm_events, tiny_config

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_msrun_workers_match_single_process_training(tmp_path):
    from prediff.config import load_config
    from prediff.data.layout import write_sevir_tree
    from prediff.models.build import build_vae
    from prediff.models.checkpoint import read_checkpoint
    from prediff.runtime import mindspore_module
    from prediff.train.trainers import train

    msrun = shutil.which("msrun", path=str(VENV_BIN))
    if msrun is None:
        pytest.skip("msrun (MindSpore's launcher) is not installed in .venv")
    corpus = write_sevir_tree(tmp_path / "corpus", storm_events())
    config = tiny_config(vae=dict(batch_size=4, val_every=0, checkpoint_every=3, log_every=1))
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    steps = 3

    # workers start `python` from PATH: put the project's venv first
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(REPO))
    command = [msrun, "--worker_num=2", "--local_worker_num=2", f"--master_port={free_port()}",
               f"--log_dir={tmp_path / 'logs'}", "--join=True", "python", "-m", "prediff.cli", "train", "vae",
               "--config", str(config_path), "--data", str(corpus), "--out", str(tmp_path / "parallel"),
               "--max-steps", str(steps), "--no-progress"]
    launcher = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    try:
        output, _ = launcher.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        # msrun's workers and scheduler share its session: end them all, not only the launcher
        os.killpg(launcher.pid, signal.SIGKILL)
        output, _ = launcher.communicate()
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted((tmp_path / "logs").glob("*.log")))
    assert launcher.returncode == 0, output[-2000:] + logs

    single = train("vae", config, corpus, tmp_path / "single", max_steps=steps, progress=False)
    assert single.step == steps
    parallel, serial = (read_checkpoint(tmp_path / "parallel" / "vae.ckpt"),
                        read_checkpoint(tmp_path / "single" / "vae.ckpt"))
    assert parallel.keys() == serial.keys()
    for name in serial:
        np.testing.assert_allclose(parallel[name], serial[name], rtol=1e-4, atol=2e-6, err_msg=name)
    # the weights moved: equality is not just two untrained copies
    mindspore_module().set_seed(config["train"]["seed"])
    fresh = dict(build_vae(load_config(config)).parameters_and_names())
    initial_gap = max(float(np.abs(serial[n] - fresh[n].asnumpy()).max()) for n in serial)
    assert initial_gap > 1e-3
    # only worker 0 wrote the run files; both logged the same averaged losses
    assert sorted(p.name for p in (tmp_path / "parallel").iterdir() if p.suffix in (".ckpt", ".npz")) == [
        "vae.ckpt", "vae_state.npz"]
    parallel_rows = (tmp_path / "parallel" / "vae_train.csv").read_text().splitlines()
    serial_rows = (tmp_path / "single" / "vae_train.csv").read_text().splitlines()
    parallel_losses = [float(row.split(",")[3]) for row in parallel_rows[1:]]
    serial_losses = [float(row.split(",")[3]) for row in serial_rows[1:]]
    np.testing.assert_allclose(parallel_losses, serial_losses, rtol=1e-4)
