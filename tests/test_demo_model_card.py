"""The demo model's card (docs/demo_model.md) states scores that `prediff evaluate` reproduces (issue #6).

The two `prediff evaluate` runs behind the card's tables are kept as `docs/demo_model_scores/*.json` (their
`scores.json`). This test reruns the unguided PreDiff ensemble and persistence on the whole shipped test split
with the shipped demo model (about 15 minutes on 2 cores) and compares, and checks that the card prints those
numbers and that the stored run belongs to the shipped checkpoints.
"""

from __future__ import annotations

import json

import pytest

#: Scores compared (all lead times pooled) and the methods they are compared for.
SCORES = ("CSI-M", "MSE", "MAE")
METHODS = ("prediff", "prediff (ensemble mean)", "persistence")


def _stored(repo_root, name: str) -> dict:
    return json.loads((repo_root / "docs" / "demo_model_scores" / f"{name}.json").read_text())


def test_the_stored_run_belongs_to_the_shipped_checkpoints_and_the_card_prints_it(repo_root):
    from prediff.pipeline import PreDiffPipeline

    stored = _stored(repo_root, "prediff")
    assert stored["settings"]["checkpoints"] == PreDiffPipeline.demo().checkpoints
    card = (repo_root / "docs" / "demo_model.md").read_text()
    for method in ("prediff", "prediff (ensemble mean)"):
        scores = stored["methods"][method]["all_lead_times"]
        assert f"{scores['CSI-M']:.3f}" in card and f"{scores['CRPS']:.4f}" in card, method
    baselines = _stored(repo_root, "baselines")["methods"]
    for method in ("persistence", "extrapolation", "steps", "steps (ensemble mean)"):
        assert f"{baselines[method]['all_lead_times']['CSI-M']:.3f}" in card, method


@pytest.mark.slow
def test_evaluate_reproduces_the_model_card_scores(repo_root, tmp_path):
    from prediff.cli import main

    stored = _stored(repo_root, "prediff")
    settings = stored["settings"]
    out = tmp_path / "eval"
    command = ["evaluate", "--data", str(repo_root / "assets" / "demo_corpus"), "--split", settings["split"],
               "--methods", "prediff,persistence", "--members", str(settings["members"]), "--sampler",
               settings["sampler"], "--steps", str(settings["steps"]), "--eta", str(settings["eta"]),
               "--seed", str(settings["seed"]), "--out", str(out), "--quiet"]
    assert main(command) == 0
    rerun = json.loads((out / "scores.json").read_text())
    assert rerun["windows"] == stored["windows"] == 36
    expected = {**stored["methods"], "persistence": _stored(repo_root, "baselines")["methods"]["persistence"]}
    for method in METHODS:
        for score in SCORES:
            got, want = rerun["methods"][method]["all_lead_times"][score], expected[method]["all_lead_times"][score]
            assert got == pytest.approx(want, rel=5e-3, abs=1e-4), (method, score)
    got, want = rerun["methods"]["prediff"]["all_lead_times"]["CRPS"], expected["prediff"]["all_lead_times"]["CRPS"]
    assert got == pytest.approx(want, rel=5e-3)
