"""Issue #8 acceptance, recomputed from the shipped models on the shipped corpus (assets/dualpol_*).

Nothing here compares against stored numbers: the nowcasts, the diffusion ensemble and every score are computed
afresh, so the tests fail if a shipped checkpoint, the corpus, the reader or a score changes the ranking.
The measured values are in docs/dualpol.md ("Nowcasting ZH at 1 km", "Conditional diffusion QPE").
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "assets" / "dualpol_corpus"
NOWCASTERS = REPO / "assets" / "dualpol_unet"
DIFFUSION_QPE = REPO / "assets" / "dualpol_diffusion_qpe"
#: Frames 0, 7, 14, 21 of the two test processes: 8 frames x 8 members x 20 DDIM steps, about a minute of CPU.
FRAME_STEP = 7


@pytest.fixture(scope="module")
def nowcast_scores():
    """MSE (dBZ^2) and pixel CSI at ZH >= 35 dBZ of both shipped U-Nets and persistence on the test split."""
    from prediff.dualpol.reader import denormalise
    from prediff.dualpol.train import load_nowcaster, load_split, persistence, predict, score_nowcasts

    forecasts, observation = {}, None
    for name in ("dualpol", "dualpol_zh_only"):
        network, config = load_nowcaster(NOWCASTERS / f"{name}.ckpt")
        inputs, targets, _ = load_split(CORPUS, config, "test")
        forecasts[name] = predict(network, inputs)
        observation = denormalise(targets, "dBZ")
        forecasts["persistence"] = persistence(inputs, config)
    scores = score_nowcasts(forecasts, observation, window_sizes=(1,))
    return {name: {"MSE": result["continuous"]["all"]["MSE"],
                   "CSI": result["categorical"]["all_lead_times"]["CSI"][0, 0]} for name, result in scores.items()}


def test_both_nowcasts_beat_persistence_on_mse(nowcast_scores):
    mse = {name: score["MSE"] for name, score in nowcast_scores.items()}
    assert mse["dualpol"] < mse["persistence"], mse
    assert mse["dualpol_zh_only"] < mse["persistence"], mse


@pytest.mark.xfail(strict=True, reason="issue #8 not met: the shipped dual-pol U-Net has the higher CSI at 35 dBZ "
                                       "but not the lower MSE (64.0 vs 61.0 dBZ^2 for ZH-only), docs/dualpol.md")
def test_dualpol_nowcast_beats_zh_only_on_mse(nowcast_scores):
    mse = {name: score["MSE"] for name, score in nowcast_scores.items()}
    assert mse["dualpol"] < mse["dualpol_zh_only"], mse


def test_both_nowcasts_beat_persistence_on_csi_at_35_dbz(nowcast_scores):
    csi = {name: score["CSI"] for name, score in nowcast_scores.items()}
    assert csi["dualpol"] > csi["persistence"], csi
    assert csi["dualpol_zh_only"] > csi["persistence"], csi


def test_dualpol_nowcast_beats_zh_only_on_csi_at_35_dbz(nowcast_scores):
    csi = {name: score["CSI"] for name, score in nowcast_scores.items()}
    assert csi["dualpol"] > csi["dualpol_zh_only"], csi


@pytest.mark.slow
def test_diffusion_qpe_ensemble_beats_marshall_palmer_on_mse():
    from prediff.dualpol.diffusion_qpe import diffusion_qpe_experiment

    result = diffusion_qpe_experiment(CORPUS, DIFFUSION_QPE, [0, 1], frame_step=FRAME_STEP)
    mse = {name: scores["continuous"]["all"]["MSE"] for name, scores in result["scores"].items()}
    # the learned merge is the ensemble's product; the plain mean ties with Marshall-Palmer on these 8 frames
    # (0.74 vs 0.73 (mm/h)^2, docs/dualpol.md) and beats it only on the larger 24-process test split
    assert mse["diffusion merge"] < mse["Marshall-Palmer"], mse
    assert result["ensemble"].shape[1] == 8
