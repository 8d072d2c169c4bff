"""The networks never reshape a non-contiguous MindSpore view.

On CPU, MindSpore 2.7.2 corrupts the heap when PYNATIVE code reshapes a non-contiguous view (a slice along a
non-leading axis, a transpose): nothing fails at once, the process aborts later, typically at exit ("corrupted
double-linked list", exit status 134; `prediff parity` did so on every run). The networks make such views
contiguous first. The abort itself depends on the allocation pattern, so the test checks the cause instead:
every ``Tensor.reshape`` during sampling with all three networks (and the VAE's encode and decode) gets a
contiguous tensor.
"""

from __future__ import annotations

import numpy as np
import pytest

from prediff.runtime import mindspore_module
from tiny_model import tiny_config

ms = mindspore_module()


@pytest.fixture
def reshapes_of_views(monkeypatch):
    """Records the shapes of non-contiguous tensors reshaped while the fixture is active."""
    found = []
    original = ms.Tensor.reshape

    def checked(self, *shape):
        if not self.is_contiguous():
            found.append(tuple(self.shape))
        return original(self, *shape)

    monkeypatch.setattr(ms.Tensor, "reshape", checked)
    return found


def test_sampling_and_the_vae_reshape_only_contiguous_tensors(reshapes_of_views):
    from prediff.diffusion import AlignmentGuidance, mindspore_denoiser
    from prediff.models.build import build_networks

    config = tiny_config()
    vae, latent, align = build_networks(config, seed=0)
    shape = tuple(config["model"]["latent_model"]["target_shape"])
    rng = np.random.default_rng(0)
    cond = rng.standard_normal((2,) + tuple(config["model"]["latent_model"]["input_shape"])).astype(np.float32)
    sample = rng.standard_normal((2,) + shape).astype(np.float32)
    mindspore_denoiser(latent, cond)(sample, np.array([500, 20]))
    AlignmentGuidance(align, 0.2, scale=50.0).evaluate(sample, np.array([500, 20]), with_gradient=True)
    frames = vae.decode_latents(sample, chunk_size=4).asnumpy()
    vae.encode_frames(frames)
    assert reshapes_of_views == []
