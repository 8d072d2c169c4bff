"""PreDiff Workbench: probabilistic precipitation nowcasting with latent diffusion (MindSpore).

Importing :mod:`prediff` is cheap and never imports MindSpore; the model packages
(:mod:`prediff.models`, :mod:`prediff.diffusion`, :mod:`prediff.pipeline`, :mod:`prediff.train`)
do. See ``docs/architecture.md``.
"""

__version__ = "0.1.0"
