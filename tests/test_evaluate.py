"""``prediff evaluate`` and the streaming / resumable evaluation loop, on the demo corpus with a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tiny_model import write_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from prediff.cli import main

    root = tmp_path_factory.mktemp("corpus")
    assert main(["data", "demo", "--events", "4", "--out", str(root), "--force", "--quiet"]) == 0
    return root


@pytest.mark.slow
def test_evaluate_end_to_end(model_dir, corpus, tmp_path, capsys):
    from prediff.cli import main

    out = tmp_path / "eval"
    command = ["evaluate", "--model", str(model_dir), "--data", str(corpus), "--split", "test", "--limit", "2",
               "--methods", "prediff,prediff-aligned,persistence,extrapolation,steps", "--members", "2",
               "--steps", "2", "--seed", "0", "--out", str(out), "--quiet"]
    assert main(command) == 0
    assert "scored 2 window(s)" in capsys.readouterr().out
    for name in ("scores.json", "scores.csv", "plots.html", "plotly.min.js", "csi_by_lead_time.png",
                 "crps_by_lead_time.png", "rank_histograms.png", "reliability.png", "state.pkl"):
        assert (out / name).stat().st_size > 0, name
    scores = json.loads((out / "scores.json").read_text())
    assert scores["windows"] == 2 and scores["settings"]["target"] == "oracle*2"
    methods = scores["methods"]
    assert list(methods) == ["prediff", "prediff (ensemble mean)", "prediff-aligned",
                             "prediff-aligned (ensemble mean)", "persistence", "extrapolation", "steps",
                             "steps (ensemble mean)"]
    assert methods["prediff (ensemble mean)"]["all_lead_times"]["CRPS"] == methods["prediff"]["all_lead_times"]["CRPS"]
    assert methods["prediff"]["n_forecasts"] == 2 and methods["prediff"]["n_members"] == 2
    assert methods["persistence"]["n_members"] is None and "CRPS" not in methods["persistence"]["all_lead_times"]
    assert len(methods["steps"]["by_threshold"]["16"]["CSI"]) == 6
    assert methods["prediff-aligned"]["all_lead_times"]["CRPS"] is not None
    import pandas as pd

    table = pd.read_csv(out / "scores.csv")
    assert len(table) == 8 * 7 and set(table["method"]) == set(methods)
    # rerun: everything is already scored, nothing changes
    before = (out / "scores.json").read_text()
    assert main(command) == 0
    assert (out / "scores.json").read_text() == before
    # other settings in the same folder are refused
    assert main(command[:-3] + ["--members", "3", "--out", str(out), "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err


class _Stop(Exception):
    pass


def test_interrupted_run_resumes_to_the_uninterrupted_result(model_dir, corpus, tmp_path):
    from prediff.data.sevir import SevirDataset
    from prediff.pipeline import EnsembleForecaster, PreDiffPipeline
    from prediff.verify.evaluate import BaselineMethod, EvaluationState, method_scores, run_evaluation

    pipeline = PreDiffPipeline.from_folder(model_dir)
    dataset = SevirDataset(corpus, split="test")
    methods = {"prediff": EnsembleForecaster(pipeline, n_members=1, steps=1),
               "persistence": BaselineMethod("persistence")}
    settings = {"case": "resume"}
    whole = run_evaluation(dataset, methods, tmp_path / "whole", settings=settings, seed=3, limit=2)

    def stop_after_first(key):
        raise _Stop(key)

    with pytest.raises(_Stop):
        run_evaluation(dataset, methods, tmp_path / "parts", settings=settings, seed=3, limit=2,
                       after_window=stop_after_first)
    saved = EvaluationState.load(tmp_path / "parts")
    assert len(saved.done) == 1 and saved.accumulators["prediff"].n_forecasts == 1
    scored = []
    resumed = run_evaluation(dataset, methods, tmp_path / "parts", settings=settings, seed=3, limit=2,
                             after_window=scored.append)
    assert len(scored) == 1 and resumed.done == whole.done
    for name in methods:
        assert json.dumps(method_scores(resumed.accumulators[name])) == json.dumps(method_scores(whole.accumulators[name]))


def test_limit_extends_a_run_and_unknown_methods_are_refused(corpus, tmp_path, capsys):
    from prediff.cli import main
    from prediff.data.sevir import SevirDataset
    from prediff.verify.evaluate import BaselineMethod, run_evaluation

    dataset = SevirDataset(corpus, split="test")
    methods = {"persistence": BaselineMethod("persistence")}
    first = run_evaluation(dataset, methods, tmp_path, settings={}, limit=1)
    assert first.accumulators["persistence"].n_forecasts == 1
    scored = []
    extended = run_evaluation(dataset, methods, tmp_path, settings={}, limit=3, after_window=scored.append)
    assert len(scored) == 2 and extended.accumulators["persistence"].n_forecasts == 3
    assert main(["evaluate", "--data", str(corpus), "--methods", "persistence,magic", "--out", str(tmp_path)]) == 2
    assert "magic" in capsys.readouterr().err


def test_window_seeds_differ_per_window_and_repeat_per_run():
    from prediff.verify.evaluate import window_seed

    seeds = [window_seed(0, n) for n in range(50)]
    assert len(set(seeds)) == 50 and seeds == [window_seed(0, n) for n in range(50)]
    assert window_seed(1, 0) != window_seed(0, 1)
    assert np.all(np.asarray(seeds) >= 0)


def test_the_ensemble_mean_row_scores_the_mean_field(corpus, tmp_path):
    from prediff.data.sevir import SevirDataset
    from prediff.verify.by_lead_time import ScoreAccumulator
    from prediff.verify.evaluate import method_scores, run_evaluation, window_seed

    class NoisyPersistence:
        n_members = 3

        def forecast(self, context, observed, seed):
            rng = np.random.default_rng(seed)
            last = context[-1].astype(np.float32)
            return np.clip(last[None, None] + rng.normal(0, 40, (3, len(observed)) + last.shape), 0, 254)

    dataset = SevirDataset(corpus, split="test")
    state = run_evaluation(dataset, {"noisy": NoisyPersistence()}, tmp_path / "eval", settings={"case": "mean"},
                           seed=1, limit=1)
    assert set(state.accumulators) == {"noisy", "noisy (ensemble mean)"}
    event_id, k = dataset.windows()[0]
    pixels = dataset.read_window(event_id, k)
    context, observed = pixels[:dataset.window.context], pixels[dataset.window.context:]
    members = NoisyPersistence().forecast(context, observed, window_seed(1, 0))
    by_hand = ScoreAccumulator(n_lead_times=len(observed))
    by_hand.update(members.mean(axis=0), observed)
    mean_row = method_scores(state.accumulators["noisy (ensemble mean)"])
    pooled_row = method_scores(state.accumulators["noisy"])
    expected = method_scores(by_hand)
    assert mean_row["all_lead_times"]["MSE"] == pytest.approx(expected["all_lead_times"]["MSE"], rel=1e-6)
    assert mean_row["all_lead_times"]["MSE"] < pooled_row["all_lead_times"]["MSE"]
