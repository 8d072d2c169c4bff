"""Knowledge-alignment guidance: steer sampling toward a target future average intensity.

The alignment network F(z_t, t) -> (B, T_out, 1) predicts, from a noisy latent, the per-frame average
intensity of the clean future frames ([0, 1] units: VIL pixel / 255 averaged over H, W). The objective
is the distance between its time average and the target y::

    per_sample (default):  U_i = || mean_T F(z_t, t)_i - y_i ||_2         one value per ensemble member
    reference:             U   = || mean_T F(z_t, t) - y ||_2 over the whole batch (MindEarth's formula)

Samplers receive the guidance direction ``g = scale * grad_z sum_i U_i``. With the per-sample objective
member i's direction depends on member i alone (F treats samples independently in eval mode), so
ensemble members never influence each other. The reference objective couples them through the shared
norm; it is kept, under that name, to reproduce the reference's fixtures.

The gradient is a real MindSpore gradient through the alignment network (``mindspore.value_and_grad``).
MindEarth's reference wraps the network input in ``stop_gradient`` and therefore always gets 0.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from prediff.errors import ConfigError, DataError
from prediff.runtime import mindspore_module

OBJECTIVES = ("per_sample", "reference")

#: Floor under a squared norm before its square root: keeps the gradient finite (zero) at a perfect match.
_SQUARED_NORM_FLOOR = 1e-30

#: alignment_fn(z_t: Tensor (B, T, H, W, C) float32, t: Tensor (B,) int32) -> Tensor (B, T_out, K) float32.
AlignmentFn = Callable


@dataclasses.dataclass(frozen=True)
class GuidanceEvaluation:
    """The alignment network's view of one noisy latent.

    Attributes
    ----------
    predicted_intensity : (B,) float32, mean over frames of F(z_t, t), [0, 1] units (VIL pixel / 255).
    target_intensity : (B,) float32, the target y, [0, 1] units.
    objective : (B,) float32 per-sample U_i; for the ``"reference"`` objective every entry holds the batch norm.
    direction : (B, T, H, W, C) float32 g = scale * grad_z sum U, or None when no gradient was asked for.
    """

    predicted_intensity: np.ndarray
    target_intensity: np.ndarray
    objective: np.ndarray
    direction: np.ndarray | None


def _objective(predicted, target, objective: str, ops):
    """Per-sample (B,) objective values from (B, K) predictions and targets, as MindSpore tensors."""
    squared = ops.square(predicted - target)
    if objective == "per_sample":
        return ops.sqrt(ops.maximum(squared.sum(axis=1), _SQUARED_NORM_FLOOR))
    batch_norm = ops.sqrt(ops.maximum(squared.sum(), _SQUARED_NORM_FLOOR))
    return ops.broadcast_to(batch_norm, (predicted.shape[0],))


class AlignmentGuidance:
    """Guidance toward a target average intensity through a differentiable alignment network.

    Parameters
    ----------
    alignment_fn : callable ``(z_t, t) -> (B, T_out, K)`` on MindSpore tensors (z_t float32 NTHWC latent,
        t int32 (B,)), differentiable in z_t, e.g. a ``NoisyCuboidTransformerEncoder`` in eval mode
        (``set_train(False)``: dropout would make the gradient random).
    target : (B,) or (B, 1) or scalar, target average intensity in [0, 1] units (VIL pixel / 255);
        a scalar applies to every member. See :mod:`prediff.diffusion.targets`.
    scale : guidance scale (``model.align.guide_scale``, 50 in PreDiff); 0 switches the shift off while
        still reporting the predicted intensity.
    objective : ``"per_sample"`` (default, members independent) or ``"reference"`` (MindEarth's batch norm).
    """

    def __init__(self, alignment_fn: AlignmentFn, target, scale: float = 50.0, objective: str = "per_sample"):
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown guidance objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
        scale = float(scale)
        if not np.isfinite(scale) or scale < 0:
            raise ConfigError(f"guidance scale must be a finite number >= 0, got {scale}")
        target = np.asarray(target, dtype=np.float32)
        if target.ndim == 2 and target.shape[1] == 1:
            target = target[:, 0]
        if target.ndim > 1 or not np.all(np.isfinite(target)):
            raise DataError(f"the guidance target must be a finite scalar or one value per member (B,) or (B, 1), "
                            f"got shape {target.shape}")
        self.alignment_fn = alignment_fn
        self.target = target
        self.scale = scale
        self.objective = objective
        self._checked_shapes: set[tuple] = set()

    @property
    def enabled(self) -> bool:
        """True when the guidance moves the samples (scale > 0)."""
        return self.scale > 0

    def targets_for(self, batch: int) -> np.ndarray:
        """(batch,) float32 target of each member (a scalar target is repeated)."""
        if self.target.ndim == 0:
            return np.full(batch, self.target, dtype=np.float32)
        if self.target.shape[0] != batch:
            raise DataError(f"the guidance target has {self.target.shape[0]} values but the batch has {batch} "
                            "members; give one target per member or a single value")
        return self.target

    def evaluate(self, sample: np.ndarray, timesteps, with_gradient: bool | None = None) -> GuidanceEvaluation:
        """Predicted intensity, objective and (by default when enabled) the guidance direction at z_t.

        Parameters
        ----------
        sample : (B, T, H, W, C) float32 noisy latent z_t.
        timesteps : (B,) int training timestep of each member.
        with_gradient : compute ``direction``; default: only when :attr:`enabled`.

        Returns
        -------
        GuidanceEvaluation
        """
        ms = mindspore_module()
        from prediff.models.blocks import input_gradients_only

        ops = ms.ops
        z = np.ascontiguousarray(sample, dtype=np.float32)
        batch = z.shape[0]
        t = np.asarray(timesteps)
        if t.shape != (batch,):
            raise DataError(f"timesteps must have shape ({batch},), one per member, got {t.shape}")
        target_np = self.targets_for(batch)
        target = ms.Tensor(target_np[:, None])
        t_tensor = ms.Tensor(t.astype(np.int32))

        def objective_sum(latent):
            output = self.alignment_fn(latent, t_tensor)
            if output.ndim != 3 or output.shape[0] != batch:
                raise DataError(f"the alignment network must return (B={batch}, T_out, K), got shape {output.shape}")
            predicted = output.mean(axis=1)
            values = _objective(predicted, target, self.objective, ops)
            # the batch-norm objective is one scalar; summing its B broadcast copies would scale it by B
            total = values.sum() if self.objective == "per_sample" else values[0]
            return total, predicted, values

        gradient = self.enabled if with_gradient is None else bool(with_gradient)
        if gradient and z.shape not in self._checked_shapes:
            # An exception raised while MindSpore records a gradient leaves its PYNATIVE autograd state broken
            # for the rest of the process, so a new input shape is first checked by a plain forward pass.
            objective_sum(ms.Tensor(z))
            self._checked_shapes.add(z.shape)
        if gradient:
            # only grad_z is wanted: the numpy kernels skip their parameter gradients (half of the backward)
            with input_gradients_only():
                (_, predicted, values), grad = ms.value_and_grad(objective_sum, grad_position=0, has_aux=True)(
                    ms.Tensor(z))
            direction = np.float32(self.scale) * grad.asnumpy().astype(np.float32)
        else:
            _, predicted, values = objective_sum(ms.Tensor(z))
            self._checked_shapes.add(z.shape)
            direction = None
        predicted = predicted.asnumpy()
        return GuidanceEvaluation(predicted_intensity=predicted.mean(axis=1).astype(np.float32),
                                  target_intensity=target_np.copy(),
                                  objective=values.asnumpy().astype(np.float32),
                                  direction=direction)
