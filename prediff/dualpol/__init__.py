"""Dual-polarisation radar nowcasting and rainfall estimation on the NJU-CPOL layout (S-band, Nanjing).

One module per concern (physics, formulas and the measured table in ``docs/dualpol.md``):

* :mod:`~prediff.dualpol.reader` — the NJU-CPOL layout, windows, invalid-value policy, normalisation ranges;
* :mod:`~prediff.dualpol.synthetic` — drop size distribution physics and the synthetic corpus generator;
* :mod:`~prediff.dualpol.qpe` — Marshall-Palmer, fitted Z-R and R(Z, ZDR) rain-rate estimators;
* :mod:`~prediff.dualpol.scores` — MSE, MRE, RBIAS, CSI (thresholds and rain classes), fuzzy POD / F / HK;
* :mod:`~prediff.dualpol.shapley` — exact Shapley values of input channels;
* :mod:`~prediff.dualpol.unet` — the multi-branch residual U-Net (MindSpore);
* :mod:`~prediff.dualpol.train` — its deterministic training loop and evaluation against persistence;
* :mod:`~prediff.dualpol.diffusion_qpe` — conditional diffusion rain-rate ensemble from ZH and ZDR (DDIM);
* :mod:`~prediff.dualpol.diffusion_net` — its conditional denoiser (MindSpore);
* :mod:`~prediff.dualpol.merge` — learned per-pixel merge of the ensemble (MindSpore).

MindSpore is imported at module level only by ``unet``, ``diffusion_net`` and ``merge``; ``train`` and
``diffusion_qpe`` import it inside the functions that need it.
"""
