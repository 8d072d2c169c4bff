"""PreDiff Workbench: probabilistic precipitation nowcasting with latent diffusion (MindSpore).

Importing :mod:`prediff` is cheap and never imports MindSpore; the model packages
(:mod:`prediff.models`, :mod:`prediff.diffusion`, :mod:`prediff.pipeline`, :mod:`prediff.train`)
do. See ``docs/architecture.md``.
"""

import os as _os

# MindSpore's generated protobuf modules only import under protobuf's pure-Python implementation once another
# library (Streamlit) has loaded protobuf's C++ one, and the choice is made at protobuf's first import: so it is
# made here, before anything that imports prediff can import protobuf. See prediff/runtime.py.
_os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

__version__ = "0.1.0"
