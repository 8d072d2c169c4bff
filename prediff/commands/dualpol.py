"""``prediff dualpol ...``: dual-polarisation radar corpus, rain-rate estimation, nowcasting and attribution.

Sub-commands: ``demo`` (write a synthetic NJU-CPOL corpus), ``train`` (train the multi-branch U-Net),
``nowcast`` (run a checkpoint on one window), ``qpe`` (fit and compare the rain-rate estimators; ``--method
diffusion`` adds the conditional diffusion ensemble),
``evaluate`` (nowcasts vs persistence: MSE, CSI at 35 dBZ) and ``shapley`` (channel Shapley values).
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("dualpol", help="dual-pol radar: synthetic corpus, QPE, nowcasting, Shapley",
                                   description="Dual-polarisation radar (NJU-CPOL layout): see docs/dualpol.md.")
    commands = parser.add_subparsers(dest="dualpol_command", metavar="DUALPOL_COMMAND")
    commands.required = True

    demo = commands.add_parser("demo", help="write a synthetic dual-pol corpus in the NJU-CPOL layout")
    demo.add_argument("--out", required=True, metavar="DIR", help="dataset root to create")
    demo.add_argument("--processes", type=int, nargs="+", default=[0, 1, 11], metavar="P",
                      help="process indices (data_dir_NNN) to simulate, or one count N for 0..N-1 "
                           "(default: 0 1 11 as the shipped corpus)")
    demo.add_argument("--frames", type=int, default=20, help="frames per process, 6 min apart (default 20)")
    demo.add_argument("--grid", type=int, default=64, help="pixels per side; the release is 256 (default 64)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    demo.set_defaults(handler=run_demo)

    train = commands.add_parser("train", help="train the multi-branch residual U-Net nowcaster")
    train.add_argument("--data", required=True, metavar="DIR", help="NJU-CPOL root (real or synthetic)")
    train.add_argument("--config", required=True, metavar="YAML", help="e.g. configs/dualpol.yaml")
    train.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.ckpt; the config is "
                                                                     "copied beside it as .yaml)")
    train.add_argument("--steps", type=int, help="override train.steps")
    train.add_argument("--seed", type=int, help="override train.seed (initial weights, batches, crops)")
    train.add_argument("--save-every", type=int, metavar="N",
                       help="also save the checkpoint every N steps (its .yaml records the steps done)")
    train.set_defaults(handler=run_train)

    nowcast = commands.add_parser("nowcast", help="nowcast ZH for one window with a trained checkpoint")
    nowcast.add_argument("--data", required=True, metavar="DIR")
    nowcast.add_argument("--checkpoint", required=True, metavar="CKPT")
    nowcast.add_argument("--process", type=int, required=True, help="process index (data_dir_NNN)")
    nowcast.add_argument("--start", type=int, default=0, help="first context frame (default 0)")
    nowcast.add_argument("--out", required=True, metavar="NPY",
                         help="output .npy: (n_target, H, W) float32 ZH in dBZ")
    nowcast.set_defaults(handler=run_nowcast)

    qpe = commands.add_parser("qpe", help="fit Marshall-Palmer / Z-R / R(Z, ZDR) on train, score on test")
    qpe.add_argument("--data", required=True, metavar="DIR")
    qpe.add_argument("--height", default="1.0km", help="height of ZH and ZDR (default 1.0km)")
    qpe.add_argument("--test-processes", type=int, nargs="+", default=list(range(11)), metavar="P")
    qpe.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    qpe.add_argument("--method", choices=("classic", "diffusion"), default="classic",
                     help="classic: the three power laws; diffusion: also the conditional diffusion ensemble "
                          "(mean and learned merge) at 1 km, side by side with them")
    qpe.add_argument("--model", default="assets/dualpol_diffusion_qpe", metavar="DIR",
                     help="diffusion QPE model folder (denoiser.ckpt, merge.ckpt, config.yaml)")
    qpe.add_argument("--train", metavar="YAML", help="with --method diffusion: first train a model from this config "
                                                     "(e.g. configs/dualpol_diffusion_qpe.yaml) into --model")
    qpe.add_argument("--save-every", type=int, metavar="N", help="with --train: save the denoiser every N steps "
                                                                   "(its config.yaml records the steps done)")
    qpe.add_argument("--frame-step", type=int, default=1, help="diffusion: score every n-th test frame (default 1)")
    qpe.add_argument("--members", type=int, help="diffusion: ensemble size (default: the model config's)")
    qpe.set_defaults(handler=run_qpe)

    evaluate = commands.add_parser("evaluate", help="score nowcast checkpoints and persistence on the test split")
    evaluate.add_argument("--data", required=True, metavar="DIR")
    evaluate.add_argument("--checkpoint", required=True, nargs="+", metavar="CKPT",
                          help="checkpoints (same data section in their configs)")
    evaluate.add_argument("--windows", nargs="+", type=int, default=[1, 4, 8], metavar="S",
                          help="neighbourhood window sizes for POD / F / HK (default 1 4 8)")
    evaluate.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    evaluate.set_defaults(handler=run_evaluate)

    shapley = commands.add_parser("shapley", help="exact Shapley values of ZH / ZDR at 1/3/7 km on a QPE error")
    shapley.add_argument("--data", required=True, metavar="DIR")
    shapley.add_argument("--baseline", choices=("mean", "no-echo"), default="mean",
                         help="value of an absent channel (default: training mean)")
    shapley.add_argument("--test-processes", type=int, nargs="+", default=list(range(11)), metavar="P")
    shapley.add_argument("--frame-step", type=int, default=5, help="use every n-th frame (default 5)")
    shapley.add_argument("--json", metavar="FILE", help="also write the values as JSON")
    shapley.set_defaults(handler=run_shapley)


def _write_json(path: str | None, payload) -> None:
    if path is None:
        return
    import numpy as np

    from prediff.io_utils import atomic_path

    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, np.ndarray):
            return plain(value.tolist())
        if isinstance(value, (float, np.floating)):
            return None if not np.isfinite(value) else float(value)
        if isinstance(value, np.integer):
            return int(value)
        return value

    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(plain(payload), indent=2))
    print(f"wrote {path}")


def run_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from prediff.dualpol.synthetic import write_corpus

    processes = range(args.processes[0]) if len(args.processes) == 1 else args.processes
    written = write_corpus(args.out, processes=processes, n_frames=args.frames, grid_size=args.grid, seed=args.seed,
                           dtype=args.dtype)
    size = sum(p.stat().st_size for p in Path(args.out).rglob("*.npy"))
    print(f"wrote {len(written)} process(es) x {args.frames} frames of {args.grid}x{args.grid} ({args.dtype}) to "
          f"{args.out}: {size / 1e6:.1f} MB")
    return 0


def run_train(args: argparse.Namespace) -> int:
    import dataclasses

    from prediff.dualpol.train import load_config, load_split, save_nowcaster, train_network

    config = load_config(args.config)
    overrides = {name: getattr(args, name) for name in ("steps", "seed") if getattr(args, name) is not None}
    if overrides:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, **overrides))
    inputs, targets, windows = load_split(args.data, config, "train")
    validation = load_split(args.data, config, "val")[:2] if config.train.val_every else None
    print(f"training on {len(windows)} windows, inputs {inputs.shape}, {config.train.steps} steps"
          + (f", validating on {len(validation[0])} windows every {config.train.val_every} steps" if validation else ""))

    def snapshot(step, network):
        if args.save_every and step % args.save_every == 0 and step < config.train.steps:
            done = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=step))
            save_nowcaster(network, done, args.out)
            print(f"saved the weights after {step} steps to {args.out}")

    network, result = train_network(config, inputs, targets, snapshot=snapshot if args.save_every else None,
                                    validation=validation)
    # constant learning rate: the kept weights are exactly those of a training that stopped at the kept step
    kept = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=result.kept_step))
    save_nowcaster(network, kept, args.out)
    print(f"wrote {args.out} (the weights after {result.kept_step} steps)")
    return 0


def run_nowcast(args: argparse.Namespace) -> int:
    import numpy as np

    from prediff.dualpol.reader import NjuCpolDataset
    from prediff.dualpol.train import load_nowcaster, predict, window_arrays
    from prediff.errors import DataError
    from prediff.io_utils import atomic_path

    network, config = load_nowcaster(args.checkpoint)
    dataset = NjuCpolDataset(args.data, keys=config.branch_keys + [config.data.target], n_input=config.data.n_input,
                             n_target=config.data.n_target, stride=1, processes=[args.process],
                             out_of_range=config.data.out_of_range)
    if (args.process, args.start) not in dataset.window_index:
        raise DataError(f"no window starting at frame {args.start} in process {args.process}; valid starts: 0.."
                        f"{dataset.frame_count(args.process) - config.data.n_input - config.data.n_target}")
    inputs, _ = window_arrays(dataset, dataset.window_index.index((args.process, args.start)), config)
    forecast = predict(network, inputs[None])[0]
    with atomic_path(args.out) as temporary, open(temporary, "wb") as handle:
        np.save(handle, forecast.astype(np.float32))
    print(f"wrote {args.out}: {forecast.shape} dBZ, max {forecast.max():.1f} dBZ")
    return 0


def run_qpe(args: argparse.Namespace) -> int:
    if args.method == "diffusion":
        return run_diffusion_qpe(args)
    from prediff.dualpol.qpe import qpe_experiment
    from prediff.dualpol.scores import RAIN_CLASSES, event_label

    result = qpe_experiment(args.data, args.height, args.test_processes)
    print(f"fitted on processes {result['train_processes']}, scored on {result['test_processes']}")
    labels = [event_label(e, "mm/h") for e in RAIN_CLASSES]
    print(f"{'estimator':<17} {'law':<44} {'MSE':>8} {'MRE':>6} {'RBIAS':>7} " + " ".join(f"{'CSI ' + l:>16}"
                                                                                        for l in labels))
    table = {}
    for law in result["estimators"]:
        scores = result["scores"][law.name]
        allc = scores["continuous"]["all"]
        csi = scores["categorical"]["all_lead_times"]["CSI"][0]
        print(f"{law.name:<17} {law.describe():<44} {allc['MSE']:8.2f} {allc['MRE']:6.3f} {allc['RBIAS']:7.3f} "
              + " ".join(f"{c:16.3f}" for c in csi))
        table[law.name] = {"law": law.describe(), "coefficients": list(law.coefficients), "intercept": law.intercept,
                           **{k: allc[k] for k in ("MSE", "MRE", "RBIAS")}, "CSI": dict(zip(labels, csi))}
    _write_json(args.json, table)
    return 0


def run_diffusion_qpe(args: argparse.Namespace) -> int:
    import time

    from prediff.dualpol.diffusion_qpe import diffusion_qpe_experiment, load_qpe_config, train_qpe_model
    from prediff.dualpol.scores import RAIN_CLASSES, event_label
    from prediff.errors import ConfigError

    if args.height != "1.0km":
        raise ConfigError("the diffusion QPE estimates rain at 1 km from ZH and ZDR at all three heights; "
                          "drop --height")
    if args.train:
        config = load_qpe_config(args.train)
        if sorted(config.data.test_processes) != sorted(args.test_processes):
            raise ConfigError(f"{args.train} holds out processes {list(config.data.test_processes)} but "
                              f"--test-processes is {args.test_processes}; make them agree")
        started = time.process_time()
        train_qpe_model(args.data, config, args.model, snapshot_every=args.save_every)
        print(f"wrote {args.model} ({time.process_time() - started:.0f} s of CPU time in this process)")
    result = diffusion_qpe_experiment(args.data, args.model, args.test_processes, frame_step=args.frame_step,
                                      members=args.members)
    print(f"scored on processes {result['test_processes']} ({len(result['observation'])} frames), "
          f"{result['ensemble'].shape[1]} members, {result['config'].sampling.num_steps} DDIM steps")
    labels = [event_label(e, "mm/h") for e in RAIN_CLASSES]
    print(f"{'estimator':<17} {'MSE':>8} {'MRE':>6} {'RBIAS':>7} " + " ".join(f"{'CSI ' + l:>16}" for l in labels))
    table = {}
    for name, scores in result["scores"].items():
        allc = scores["continuous"]["all"]
        csi = scores["categorical"]["all_lead_times"]["CSI"][0]
        print(f"{name:<17} {allc['MSE']:8.2f} {allc['MRE']:6.3f} {allc['RBIAS']:7.3f} "
              + " ".join(f"{c:16.3f}" for c in csi))
        table[name] = {**{k: allc[k] for k in ("MSE", "MRE", "RBIAS")}, "CSI": dict(zip(labels, csi))}
    _write_json(args.json, table)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from prediff.dualpol.train import load_nowcaster, load_split, persistence, predict, score_nowcasts
    from prediff.errors import ConfigError

    networks = [load_nowcaster(path) for path in args.checkpoint]
    data_configs = {network_config.data for _, network_config in networks}
    if len(data_configs) > 1:
        raise ConfigError("the checkpoints were trained with different data sections; evaluate them separately")
    forecasts, observation = {}, None
    for path, (network, config) in zip(args.checkpoint, networks):
        inputs, targets, windows = load_split(args.data, config, "test")
        forecasts[Path(path).stem] = predict(network, inputs)
        if observation is None:
            from prediff.dualpol.reader import denormalise

            observation = denormalise(targets, "dBZ")
            forecasts = {"persistence": persistence(inputs, config), **forecasts}
    results = score_nowcasts(forecasts, observation, args.windows)
    print(f"test split: {len(windows)} windows; ZH >= 35 dBZ events, all lead times")
    header = f"{'method':<24} {'MSE dBZ^2':>10} " + " ".join(f"{'CSI s=' + str(s):>9}" for s in args.windows)
    print(header + f" {'POD':>6} {'F':>6} {'HK':>6}")
    table = {}
    for name, result in results.items():
        cat = result["categorical"]["all_lead_times"]
        mse = result["continuous"]["all"]["MSE"]
        print(f"{name:<24} {mse:10.2f} " + " ".join(f"{c:9.3f}" for c in cat["CSI"][:, 0])
              + f" {cat['POD'][0, 0]:6.3f} {cat['F'][0, 0]:6.3f} {cat['HK'][0, 0]:6.3f}")
        table[name] = {"MSE": mse, "MSE_per_lead_time": result["continuous"]["per_lead_time"]["MSE"],
                       "window_sizes": list(args.windows), **{k: cat[k][:, 0] for k in ("CSI", "POD", "F", "HK")},
                       "CSI_per_lead_time": result["categorical"]["per_lead_time"]["CSI"][0, 0]}
    _write_json(args.json, table)
    return 0


def run_shapley(args: argparse.Namespace) -> int:
    from prediff.dualpol.shapley import rain_channel_shapley

    result = rain_channel_shapley(args.data, test_processes=args.test_processes, baseline=args.baseline,
                                  frame_step=args.frame_step)
    print(f"law: {result['law'].describe()}")
    print(f"{result['n_frames']} test frames; MSE with all channels {result['error_all'].mean():.2f}, with none "
          f"{result['error_none'].mean():.2f} (mm/h)^2; baseline {args.baseline}")
    print(f"{'channel':<12} {'baseline':>9} {'Shapley (MSE)':>14} {'std over frames':>16}")
    for k, key in enumerate(result["players"]):
        print(f"{key:<12} {result['baseline'][key]:9.3f} {result['mean'][k]:14.3f} "
              f"{result['per_sample'][:, k].std():16.3f}")
    _write_json(args.json, {"players": result["players"], "mean": result["mean"],
                            "per_sample": result["per_sample"], "baseline": result["baseline"],
                            "error_all": result["error_all"], "error_none": result["error_none"],
                            "law": result["law"].describe()})
    return 0
