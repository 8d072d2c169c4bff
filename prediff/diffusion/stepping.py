"""Step-through sampling: drive a sampler one step at a time, observe every step, stop, resume, cancel.

:class:`SamplingRun` composes a sampler (:class:`~prediff.diffusion.ddpm.DDPMSampler` or
:class:`~prediff.diffusion.ddim.DDIMSampler`), a denoiser callable, a noise source and, optionally,
alignment guidance and a decoder. Iterating over it runs one step per item and yields a
:class:`StepReport` (timestep, noise level, latent, predicted clean latent, predicted vs target
intensity). Breaking out of the loop stops it; iterating again, or building a new run from
:attr:`SamplingRun.state`, resumes it with the same trajectory as an uninterrupted run.

Randomness lives only in the noise source. :class:`SeededNoise` draws each member's noise for each step
from its own counter-based generator ``(seed, member, stream)``, so

* one seed gives the same trajectory on every rerun and after a stop/resume;
* guided and unguided runs with the same seed share the initial latent and every step's noise;
* member m's noise does not depend on the ensemble size.

No global random state (numpy's or MindSpore's) is read or changed.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from prediff.diffusion.guidance import AlignmentGuidance
from prediff.errors import ConfigError, DataError
from prediff.runtime import mindspore_module

#: denoiser(z_t: (B, T, H, W, C) float32, t: (B,) int64) -> eps_hat (B, T, H, W, C) float32, numpy in and out.
Denoiser = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: decode(latent: (B, T, H, W, C) float32) -> frames (B, T, H', W', 1) float32 in [0, 1] units (not clamped).
Decoder = Callable[[np.ndarray], np.ndarray]


class NoiseSource(Protocol):
    """Where a run's standard normal noise comes from."""

    def initial(self, shape: Sequence[int]) -> np.ndarray:
        """(B, T, H, W, C) float32 starting latent z_T ~ N(0, I)."""

    def step(self, index: int, shape: Sequence[int]) -> np.ndarray:
        """(B, T, H, W, C) float32 noise consumed by step ``index``."""


class SeededNoise:
    """Reproducible noise: member m's draw for stream k comes from ``numpy.random.default_rng([seed, m, k])``.

    Stream 0 is the initial latent, stream ``index + 1`` the noise of step ``index``.

    Parameters
    ----------
    seed : non-negative integer seed of the run.
    first_member : number of the first member of the batch (lets an ensemble be extended or split
        across jobs while each member keeps its own noise).
    """

    def __init__(self, seed: int, first_member: int = 0):
        if int(seed) < 0 or int(first_member) < 0:
            raise ConfigError(f"seed and first_member must be >= 0, got seed={seed}, first_member={first_member}")
        self.seed = int(seed)
        self.first_member = int(first_member)

    def _draw(self, stream: int, shape: Sequence[int]) -> np.ndarray:
        batch, *member_shape = shape
        draws = [np.random.default_rng([self.seed, self.first_member + member, stream]).standard_normal(
            member_shape, dtype=np.float32) for member in range(batch)]
        return np.stack(draws)

    def initial(self, shape: Sequence[int]) -> np.ndarray:
        """(B, ...) float32 standard normal starting latent (stream 0)."""
        return self._draw(0, shape)

    def step(self, index: int, shape: Sequence[int]) -> np.ndarray:
        """(B, ...) float32 standard normal noise of step ``index`` (stream ``index + 1``)."""
        return self._draw(int(index) + 1, shape)


class FixedNoise:
    """Noise given as arrays (e.g. a reference fixture's injected noise).

    Parameters
    ----------
    initial : (B, T, H, W, C) starting latent.
    steps : (S, B, T, H, W, C) noise of steps 0 ... S-1.
    """

    def __init__(self, initial: np.ndarray, steps: np.ndarray):
        self._initial = np.asarray(initial, dtype=np.float32)
        self._steps = np.asarray(steps, dtype=np.float32)
        if self._steps.shape[1:] != self._initial.shape:
            raise DataError(f"step noise of shape {self._steps.shape} does not fit the initial latent "
                            f"{self._initial.shape}; expected (S,) + the latent shape")

    def initial(self, shape: Sequence[int]) -> np.ndarray:
        """The given starting latent (``shape`` must match)."""
        if tuple(shape) != self._initial.shape:
            raise DataError(f"the given initial latent has shape {self._initial.shape}, the run needs {tuple(shape)}")
        return self._initial.copy()

    def step(self, index: int, shape: Sequence[int]) -> np.ndarray:
        """The given noise of step ``index``."""
        if not 0 <= int(index) < self._steps.shape[0]:
            raise DataError(f"no noise was given for step {index}; {self._steps.shape[0]} steps are available")
        return self._steps[int(index)].copy()


def mindspore_denoiser(network, cond: np.ndarray) -> Denoiser:
    """Wrap a MindSpore eps-network ``network(x_t, t, cond)`` as a numpy :data:`Denoiser`.

    Parameters
    ----------
    network : e.g. ``CuboidTransformerUNet`` in eval mode: ``(x_t (B,T,H,W,C) float32, t (B,) int32,
        cond (B,T_in,H,W,C) float32) -> eps (B,T,H,W,C)``.
    cond : (B, T_in, H, W, C) or (1, T_in, H, W, C) float32 context latents; one context is repeated for
        every member.
    """
    ms = mindspore_module()
    cond = np.ascontiguousarray(cond, dtype=np.float32)
    cond_tensors: dict[int, object] = {}

    def denoise(sample: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
        batch = sample.shape[0]
        if batch not in cond_tensors:
            if cond.shape[0] not in (1, batch):
                raise DataError(f"the context holds {cond.shape[0]} sequences for {batch} members; "
                                "give one context or one per member")
            cond_tensors[batch] = ms.Tensor(np.repeat(cond, batch // cond.shape[0], axis=0))
        eps = network(ms.Tensor(np.ascontiguousarray(sample, dtype=np.float32)),
                      ms.Tensor(np.asarray(timesteps).astype(np.int32)), cond_tensors[batch])
        return eps.asnumpy()

    return denoise


@dataclasses.dataclass(frozen=True)
class SamplingState:
    """Where a run stands: enough to resume it with the same noise source.

    Attributes
    ----------
    next_index : the step to run next (``num_steps`` when finished).
    latent : (B, T, H, W, C) float32 current latent (the input of step ``next_index``).
    sampler : the sampler's settings (:meth:`describe`), checked on resume.
    """

    next_index: int
    latent: np.ndarray
    sampler: dict


@dataclasses.dataclass(frozen=True)
class StepReport:
    """What one step did.

    Attributes
    ----------
    index : step number, 0 ... num_steps - 1.
    num_steps : steps in the full run.
    timestep : training timestep t the step started from.
    noise_level : sqrt(1 - abar_t), the noise std in the step's input latent (~1 at the start, 0 = clean).
    latent : (B, T, H, W, C) float32 input latent z_t.
    pred_clean : (B, T, H, W, C) float32 predicted clean latent x0_hat.
    next_latent : (B, T, H, W, C) float32 output latent.
    predicted_intensity : (B,) float32 alignment network's predicted future average intensity at z_t,
        [0, 1] units, or None without an alignment network.
    target_intensity : (B,) float32 guidance target, [0, 1] units, or None.
    """

    index: int
    num_steps: int
    timestep: int
    noise_level: float
    latent: np.ndarray
    pred_clean: np.ndarray
    next_latent: np.ndarray
    predicted_intensity: np.ndarray | None = None
    target_intensity: np.ndarray | None = None


class SamplingRun:
    """A sampling run driven one step at a time.

    Parameters
    ----------
    sampler : a DDPM or DDIM sampler (``timesteps``, ``step``, ``noise_level``, ``describe``).
    denoiser : :data:`Denoiser` (e.g. from :func:`mindspore_denoiser`).
    noise : :class:`SeededNoise`, :class:`FixedNoise` or any :class:`NoiseSource`.
    latent_shape : (B, T, H, W, C) of the latent, B = ensemble members; needed unless ``state`` is given.
    guidance : alignment guidance; with scale 0 it only reports the predicted intensity, and the
        trajectory is exactly the unguided one.
    decode : :data:`Decoder` used by :meth:`decode_clean` (optional).
    state : a :attr:`state` of an earlier run with the same sampler and noise source, to resume it.
    progress : called with each :class:`StepReport` after its step.
    cancel : object with ``is_set()`` (e.g. ``threading.Event``); once set, the run stops before the next
        step with :attr:`cancelled` true and a valid :attr:`state`.
    decode_cache_size : number of decoded steps kept by :meth:`decode_clean`.
    """

    def __init__(self, sampler, denoiser: Denoiser, noise: NoiseSource, *,
                 latent_shape: Sequence[int] | None = None, guidance: AlignmentGuidance | None = None,
                 decode: Decoder | None = None, state: SamplingState | None = None,
                 progress: Callable[[StepReport], None] | None = None, cancel=None, decode_cache_size: int = 16):
        self.sampler = sampler
        self.denoiser = denoiser
        self.noise = noise
        self.guidance = guidance
        self.decode = decode
        self.progress = progress
        self.cancel = cancel
        self.cancelled = False
        self._decoded: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._decode_cache_size = max(1, int(decode_cache_size))
        if state is not None:
            if state.sampler != sampler.describe():
                raise ConfigError(f"the saved state belongs to sampler {state.sampler}, not {sampler.describe()}; "
                                  "resume with the sampler settings it was started with")
            if not 0 <= state.next_index <= sampler.num_steps:
                raise DataError(f"the saved state's step {state.next_index} is outside 0 ... {sampler.num_steps}")
            self._index = int(state.next_index)
            self._latent = np.array(state.latent, dtype=np.float32)
        elif latent_shape is None:
            raise ConfigError("give latent_shape (B, T, H, W, C) to start a run, or state to resume one")
        else:
            self._index = 0
            self._latent = np.asarray(noise.initial(tuple(int(n) for n in latent_shape)), dtype=np.float32)

    @property
    def num_steps(self) -> int:
        """Steps in the full run."""
        return self.sampler.num_steps

    @property
    def done(self) -> bool:
        """True once every step has run."""
        return self._index >= self.sampler.num_steps

    @property
    def latent(self) -> np.ndarray:
        """(B, T, H, W, C) float32 current latent (the final sample once :attr:`done`)."""
        return self._latent.copy()

    @property
    def state(self) -> SamplingState:
        """A copy of where the run stands, for resuming it later."""
        return SamplingState(next_index=self._index, latent=self._latent.copy(), sampler=self.sampler.describe())

    def _run_step(self) -> StepReport:
        index = self._index
        z = self._latent
        t = np.full(z.shape[0], self.sampler.timesteps[index], dtype=np.int64)
        evaluation = self.guidance.evaluate(z, t) if self.guidance is not None else None
        direction = evaluation.direction if evaluation is not None else None
        eps = np.asarray(self.denoiser(z, t), dtype=np.float32)
        if eps.shape != z.shape:
            raise DataError(f"the denoiser returned shape {eps.shape} for a latent of shape {z.shape}")
        output = self.sampler.step(eps, index, z, self.noise.step(index, z.shape), guidance=direction)
        self._latent = output.prev_sample
        self._index = index + 1
        return StepReport(index=index, num_steps=self.num_steps, timestep=int(t[0]),
                          noise_level=self.sampler.noise_level(index), latent=z, pred_clean=output.pred_clean,
                          next_latent=output.prev_sample,
                          predicted_intensity=None if evaluation is None else evaluation.predicted_intensity,
                          target_intensity=None if evaluation is None else evaluation.target_intensity)

    def __iter__(self) -> Iterator[StepReport]:
        while not self.done:
            if self.cancel is not None and self.cancel.is_set():
                self.cancelled = True
                return
            report = self._run_step()
            if self.progress is not None:
                self.progress(report)
            yield report

    def run(self) -> np.ndarray:
        """Run the remaining steps; returns the current latent (the sample, unless cancelled)."""
        for _ in self:
            pass
        return self.latent

    def decode_clean(self, report: StepReport) -> np.ndarray:
        """Decoded predicted clean frames of a step, cached by step index.

        Returns
        -------
        (B, T, H', W', 1) float32 frames in [0, 1] units, as the decoder returns them (not clamped).
        """
        if self.decode is None:
            raise ConfigError("this run has no decoder; pass decode= (e.g. the VAE's decode) to see frames")
        if report.index in self._decoded:
            self._decoded.move_to_end(report.index)
            return self._decoded[report.index]
        frames = np.asarray(self.decode(report.pred_clean), dtype=np.float32)
        frames.setflags(write=False)
        self._decoded[report.index] = frames
        while len(self._decoded) > self._decode_cache_size:
            self._decoded.popitem(last=False)
        return frames
