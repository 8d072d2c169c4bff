"""``prediff checkpoint ...``: verify published checkpoints against a config, or write fresh ones.

* ``prediff checkpoint check --config CFG --vae vae.ckpt --latent diffusion.ckpt --align align.ckpt`` builds
  each network from the config and loads its file strictly; prints, per file, the tensors and parameter
  elements loaded, or every missing / unexpected / mis-shaped name. Exit status 1 if any file fails.
* ``prediff checkpoint init --config CFG --out DIR [--seed S]`` writes freshly initialised networks as
  ``DIR/vae.ckpt``, ``DIR/diffusion.ckpt`` and ``DIR/align.ckpt`` in the published formats.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Output file name of each kind, as published.
FILE_NAMES = {"vae": "vae.ckpt", "latent": "diffusion.ckpt", "align": "align.ckpt"}


def register(subparsers) -> None:
    parser = subparsers.add_parser("checkpoint", help="check published checkpoints against a config, or write fresh ones")
    checkpoint_subparsers = parser.add_subparsers(dest="checkpoint_command", metavar="CHECKPOINT_COMMAND")
    checkpoint_subparsers.required = True

    check = checkpoint_subparsers.add_parser(
        "check", help="load vae / diffusion / align checkpoints strictly into the networks of a config")
    check.add_argument("--config", required=True, help="PreDiff YAML config the checkpoints were trained with")
    check.add_argument("--vae", type=Path, help="vae.ckpt (bare names)")
    check.add_argument("--latent", type=Path, help="diffusion.ckpt (names prefixed main_model.)")
    check.add_argument("--align", type=Path, help="align.ckpt (bare names)")
    check.add_argument("--device", help="CPU (default), GPU or Ascend; default $PREDIFF_DEVICE")
    check.set_defaults(handler=_check)

    init = checkpoint_subparsers.add_parser(
        "init", help="write freshly initialised networks as DIR/vae.ckpt, DIR/diffusion.ckpt, DIR/align.ckpt")
    init.add_argument("--config", required=True, help="PreDiff YAML config to build the networks from")
    init.add_argument("--out", required=True, type=Path, help="output directory (created)")
    init.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    init.add_argument("--force", action="store_true", help="replace checkpoint files that already exist in --out")
    init.add_argument("--device", help="CPU (default), GPU or Ascend; default $PREDIFF_DEVICE")
    init.set_defaults(handler=_init)


def _builders():
    from prediff.models.build import build_alignment_model, build_latent_model, build_vae

    return {"vae": build_vae, "latent": build_latent_model, "align": build_alignment_model}


def _check(args: argparse.Namespace) -> int:
    from prediff.config import load_config
    from prediff.errors import CheckpointError
    from prediff.runtime import mindspore_module

    files = {kind: path for kind, path in (("vae", args.vae), ("latent", args.latent), ("align", args.align))
             if path is not None}
    if not files:
        print("error: give at least one of --vae, --latent, --align", file=sys.stderr)
        return 2
    config = load_config(args.config)
    mindspore_module(args.device)
    from prediff.models.checkpoint import load_network

    builders = _builders()
    failures = 0
    for kind, path in files.items():
        try:
            report = load_network(builders[kind](config), path, kind)
        except CheckpointError as error:
            failures += 1
            print(f"FAILED {error}", file=sys.stderr)
            continue
        print(f"OK     {report.summary()}")
    return 1 if failures else 0


def _init(args: argparse.Namespace) -> int:
    from prediff.config import load_config
    from prediff.errors import CheckpointError
    from prediff.runtime import mindspore_module

    config = load_config(args.config)
    targets = {kind: args.out / name for kind, name in FILE_NAMES.items()}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not args.force:
        raise CheckpointError(f"{', '.join(existing)} already exist; choose another --out or pass --force to replace")
    ms = mindspore_module(args.device)
    from prediff.models.checkpoint import save_network

    ms.set_seed(args.seed)
    for kind, build in _builders().items():
        net = build(config)
        save_network(net, targets[kind], kind)
        elements = sum(parameter.size for parameter in net.get_parameters())
        print(f"wrote {targets[kind]}: {len(net.parameters_dict())} tensors, {elements:,} parameter elements")
    return 0
