"""Strict reading and atomic writing of MindSpore ``.ckpt`` files in the published MindEarth PreDiff formats.

The three published files name their tensors differently (facts.md section 9):

===========  ==============================  =====================================================
kind         file                            tensor names
===========  ==============================  =====================================================
``vae``      ``vae.ckpt``                    bare: ``encoder.*``, ``decoder.*``, ``quant_conv.*`` ...
``latent``   ``diffusion.ckpt``              ``main_model.`` + the denoiser's own names
``align``    ``align.ckpt``                  bare: ``first_proj.*``, ``down_self_blocks.*``, ``out.*`` ...
===========  ==============================  =====================================================

:func:`load_network` is strict, unlike the reference's ``load_param_into_net`` (which silently skips what it
cannot match): every missing, unexpected, mis-shaped or mis-typed tensor is collected, and one
:class:`CheckpointError` lists them all with the likely cause (wrong file for this network, config widths or
depths that do not match the checkpoint, a missing ``main_model.`` prefix). Nothing is assigned unless the
whole file matches. Integer tensors (the cuboid attention's ``relative_position_index`` buffers, stored as
Parameters) are computed by the network; the file's copy must be equal to them.

:func:`save_network` writes the same format atomically; a save -> load round trip is bit-exact.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from prediff.errors import CheckpointError, ConfigError
from prediff.io_utils import atomic_path
from prediff.runtime import mindspore_module

ms = mindspore_module()

#: Name prefix each kind of checkpoint carries in front of the network's own parameter names.
PREFIXES = {"vae": "", "latent": "main_model.", "align": ""}
#: Human names of each kind, for messages.
DESCRIPTIONS = {
    "vae": "VAE (vae.ckpt)",
    "latent": "latent denoiser (diffusion.ckpt)",
    "align": "alignment network (align.ckpt)",
}
#: The config keys that set tensor widths resp. block counts of each network.
WIDTH_KEYS = {
    "vae": "model.vae.block_out_channels / latent_channels",
    "latent": "model.latent_model.base_units",
    "align": "model.align.model_args.base_units",
}
DEPTH_KEYS = {
    "vae": "model.vae.layers_per_block / block_out_channels",
    "latent": "model.latent_model.depth",
    "align": "model.align.model_args.depth",
}
#: Command-line option through which each kind is passed (`prediff checkpoint check`).
OPTIONS = {"vae": "--vae", "latent": "--latent", "align": "--align"}


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What :func:`load_network` loaded.

    Attributes
    ----------
    path : the checkpoint file.
    kind : ``"vae"``, ``"latent"`` or ``"align"``.
    tensors : number of tensors in the file (= parameters of the network).
    elements : total number of parameter elements (floats + integer index buffers).
    integer_elements : elements of the integer tensors (verified equal to the network's, not copied).
    """

    path: Path
    kind: str
    tensors: int
    elements: int
    integer_elements: int

    def summary(self) -> str:
        """One line for the CLI: file, kind, tensors and parameter elements."""
        return (f"{DESCRIPTIONS[self.kind]}: {self.path}: {self.tensors} tensors, {self.elements:,} parameter "
                f"elements ({self.integer_elements:,} of them integer index buffers) loaded")


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every tensor of a MindSpore ``.ckpt`` file, in file order.

    Returns
    -------
    ``{name: array}`` with each array's stored dtype (float32, int64, ...) and shape.

    Raises
    ------
    CheckpointError
        The file is missing, not named ``*.ckpt``, empty, truncated or otherwise unreadable.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; pass the checkpoint file inside it (e.g. {path / 'vae.ckpt'})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist; check the path "
                              "(the published files are vae.ckpt, diffusion.ckpt and align.ckpt)")
    if path.suffix != ".ckpt":
        raise CheckpointError(f"checkpoint file {path} must end with .ckpt (MindSpore reads only that name); "
                              "rename or link it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file {path} is empty; the download or save was interrupted - "
                              "fetch or write it again")
    try:
        parameters = ms.load_checkpoint(str(path))
    except (ValueError, RuntimeError, TypeError, OSError) as error:
        raise CheckpointError(f"checkpoint file {path} is not a readable MindSpore checkpoint (corrupt or truncated; "
                              f"MindSpore says: {error}); fetch or write it again") from None
    if not parameters:
        raise CheckpointError(f"checkpoint file {path} holds no tensors; fetch or write it again")
    return {name: parameter.asnumpy() for name, parameter in parameters.items()}


def write_checkpoint(arrays: Mapping[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Write ``{name: array}`` as a MindSpore ``.ckpt`` file atomically, keeping names, order, dtypes and shapes.

    ``path`` must end with ``.ckpt``. Returns the path written.
    """
    path = Path(path)
    if path.suffix != ".ckpt":
        raise CheckpointError(f"checkpoint output {path} must end with .ckpt")
    entries = [{"name": name, "data": ms.Tensor(np.asarray(array))} for name, array in arrays.items()]
    try:
        with atomic_path(path) as temporary:
            # save_checkpoint appends ".ckpt" to any other name, so write to such a name and move it into place.
            staged = temporary.with_name(temporary.name + ".ckpt")
            try:
                ms.save_checkpoint(entries, str(staged))
                os.replace(staged, temporary)
            finally:
                staged.unlink(missing_ok=True)
            # MindSpore leaves its output read-only; a workbench output should be replaceable by the user.
            os.chmod(temporary, 0o644)
    except OSError as error:
        raise CheckpointError(f"cannot write checkpoint {path}: {error}; choose a writable location with free "
                              "space") from None
    return path


def network_parameters(net) -> dict:
    """The network's parameters as ``{name: Parameter}``, names relative to ``net`` (no checkpoint prefix)."""
    return dict(net.parameters_and_names())


def load_network(net, path: str | os.PathLike, kind: str) -> LoadReport:
    """Load a published-format checkpoint into ``net`` strictly (all or nothing).

    Parameters
    ----------
    net : the MindSpore Cell built from the config (``AutoencoderKL``, ``CuboidTransformerUNet`` or
        ``NoisyCuboidTransformerEncoder``).
    path : the ``.ckpt`` file.
    kind : ``"vae"`` (bare names), ``"latent"`` (``main_model.`` prefix) or ``"align"`` (bare names).

    Returns
    -------
    :class:`LoadReport` with the counts loaded.

    Raises
    ------
    CheckpointError
        Unreadable file, or any tensor missing / unexpected / of another shape or dtype / (integer buffers)
        of other values; the message lists all of them, grouped, with the likely cause.
    """
    prefix = _prefix(kind)
    path = Path(path)
    stored = read_checkpoint(path)
    expected = {prefix + name: parameter for name, parameter in network_parameters(net).items()}
    problems = _compare(stored, expected)
    if problems.any():
        raise CheckpointError(_mismatch_message(path, kind, stored, expected, problems))
    integer_elements = 0
    for name, parameter in expected.items():
        array = stored[name]
        if np.issubdtype(array.dtype, np.integer):
            integer_elements += array.size
        else:
            # in place: a compiled graph (mindspore.jit, e.g. the VAE's inference decode) holds the parameter's
            # buffer, and set_data would give the parameter a new one the graph never sees
            ms.ops.assign(parameter, ms.Tensor(array))
    return LoadReport(path=path, kind=kind, tensors=len(stored), elements=sum(a.size for a in stored.values()),
                      integer_elements=integer_elements)


def save_network(net, path: str | os.PathLike, kind: str) -> Path:
    """Write ``net``'s parameters to ``path`` in the published format of ``kind`` (atomic, bit-exact)."""
    prefix = _prefix(kind)
    arrays = {prefix + name: parameter.asnumpy() for name, parameter in network_parameters(net).items()}
    return write_checkpoint(arrays, path)


def guess_kind(names) -> str | None:
    """Which published network a set of tensor names belongs to (ignoring prefixes), or None if unclear."""
    names = list(names)
    if any(re.search(r"(^|\.)decoder\.up_blocks\.", n) for n in names) and any(
            re.search(r"(^|\.)encoder\.down_blocks\.", n) for n in names):
        return "vae"
    if any(re.search(r"(^|\.)final_proj\.", n) for n in names) or any(".up_self_blocks." in f".{n}" for n in names):
        return "latent"
    if any(re.search(r"(^|\.)out\.2\.qkv_proj\.", n) for n in names):
        return "align"
    return None


@dataclasses.dataclass
class _Problems:
    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple, str, tuple, str]]
    wrong_values: list[str]

    def any(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched or self.wrong_values)


def _prefix(kind: str) -> str:
    if kind not in PREFIXES:
        raise ConfigError(f"unknown checkpoint kind {kind!r}; choose one of {', '.join(PREFIXES)}")
    return PREFIXES[kind]


def _dtype_name(dtype) -> str:
    return str(dtype).replace("mindspore.", "").lower()


def _compare(stored: dict[str, np.ndarray], expected: dict) -> _Problems:
    problems = _Problems(missing=[n for n in expected if n not in stored],
                         unexpected=[n for n in stored if n not in expected], mismatched=[], wrong_values=[])
    for name, parameter in expected.items():
        if name not in stored:
            continue
        array = stored[name]
        net_shape, net_dtype = tuple(parameter.shape), _dtype_name(parameter.dtype)
        if tuple(array.shape) != net_shape or np.dtype(array.dtype).name != net_dtype:
            problems.mismatched.append((name, tuple(array.shape), np.dtype(array.dtype).name, net_shape, net_dtype))
        elif np.issubdtype(array.dtype, np.integer) and not np.array_equal(array, parameter.asnumpy()):
            problems.wrong_values.append(name)
    return problems


def _mismatch_message(path: Path, kind: str, stored: dict, expected: dict, problems: _Problems) -> str:
    lines = [f"checkpoint {path} does not match the {DESCRIPTIONS[kind]} built from the config "
             f"({len(stored)} tensors in the file, {len(expected)} in the network):"]
    lines += [f"  likely cause: {hint}" for hint in _hints(kind, stored, expected, problems)]
    if problems.missing:
        lines.append(f"  missing from the file ({len(problems.missing)}):")
        lines += [f"    {name}" for name in problems.missing]
    if problems.unexpected:
        lines.append(f"  unexpected in the file ({len(problems.unexpected)}):")
        lines += [f"    {name}" for name in problems.unexpected]
    if problems.mismatched:
        lines.append(f"  mis-shaped or mis-typed ({len(problems.mismatched)}; file vs network):")
        lines += [f"    {name}: {list(file_shape)} {file_dtype} vs {list(net_shape)} {net_dtype}"
                  for name, file_shape, file_dtype, net_shape, net_dtype in problems.mismatched]
    if problems.wrong_values:
        lines.append(f"  integer index buffers with other values than the network computes ({len(problems.wrong_values)}):")
        lines += [f"    {name}" for name in problems.wrong_values]
    return "\n".join(lines)


def _hints(kind: str, stored: dict, expected: dict, problems: _Problems) -> list[str]:
    hints = []
    prefix = PREFIXES[kind]
    option = OPTIONS[kind]
    names = list(stored)
    guessed = guess_kind(names)
    if guessed is not None and guessed != kind:
        hints.append(f"the tensor names are those of the {DESCRIPTIONS[guessed]}: was that file passed as "
                     f"{option} instead of {OPTIONS[guessed]}?")
    if prefix and not any(n.startswith(prefix) for n in names):
        hints.append(f"names lack the {prefix} prefix that diffusion.ckpt carries: is this a vae/align checkpoint "
                     f"passed as {option}, or a denoiser saved without the prefix?")
    if not prefix and names and all(n.startswith("main_model.") for n in names):
        hints.append(f"names carry the main_model. prefix of diffusion.ckpt: was the denoiser checkpoint passed "
                     f"as {option}?")
    extra = _extra_prefix(names, set(expected))
    if extra:
        hints.append(f"every name carries an extra prefix {extra!r} (saved from an enclosing module): re-save the "
                     "network itself, without that prefix")
    if problems.mismatched:
        hints.append(_shape_hint(kind, problems.mismatched))
    hints += _rename_hints(stored, expected, problems)
    if (problems.missing or problems.unexpected) and _same_structure(problems, stored, expected):
        more = "more" if len(stored) > len(expected) else "fewer"
        hints.append(f"the file has {more} blocks of the same structure than the network: the config's "
                     f"{DEPTH_KEYS[kind]} may not match this checkpoint")
    if not hints:
        hints.append(f"the file was not written for this {DESCRIPTIONS[kind]} or this config; check the file and "
                     "the config it was trained with")
    return hints


def _extra_prefix(names: list[str], expected: set[str]) -> str | None:
    heads = {name.split(".", 1)[0] for name in names}
    if len(heads) != 1 or not all("." in name for name in names):
        return None
    head = heads.pop() + "."
    stripped = {name[len(head):] for name in names}
    for candidate_prefix in ("", "main_model."):
        if {candidate_prefix + name for name in stripped} & expected and head != candidate_prefix:
            return head
    return None


def _shape_hint(kind: str, mismatched: list) -> str:
    ratios = set()
    for _, file_shape, _, net_shape, _ in mismatched:
        if len(file_shape) != len(net_shape):
            ratios.add(None)
            continue
        for file_size, net_size in zip(file_shape, net_shape):
            if file_size != net_size:
                ratios.add(file_size / net_size if net_size else None)
    if len(ratios) == 1 and None not in ratios and len(mismatched) > 1:
        ratio = ratios.pop()
        size = f"{ratio:g}x larger" if ratio > 1 else f"{1 / ratio:g}x smaller"
        return (f"the file's tensors are {size} than the network's: the config's {WIDTH_KEYS[kind]} may not "
                "match this checkpoint")
    return (f"{len(mismatched)} tensor(s) have other shapes or dtypes: the config's {WIDTH_KEYS[kind]} "
            "(or other widths) may not match this checkpoint")


def _rename_hints(stored: dict, expected: dict, problems: _Problems) -> list[str]:
    """Pair each unexpected name with the most similar missing name of the same shape (a likely rename)."""
    if not problems.missing or len(problems.unexpected) > 20:
        return []
    hints = []
    for name in problems.unexpected:
        same_shape = [m for m in problems.missing if tuple(expected[m].shape) == tuple(stored[name].shape)]
        nearest = difflib.get_close_matches(name, same_shape, n=1, cutoff=0.6)
        if nearest:
            hints.append(f"{name!r} in the file looks like a renamed {nearest[0]!r}")
    return hints


def _template(name: str) -> str:
    return re.sub(r"\.\d+(?=\.)", ".#", name)


def _block(name: str) -> str | None:
    match = re.match(r"^(.*\.\d+\.)", name)
    return match.group(1) if match else None


def _same_structure(problems: _Problems, stored: dict, expected: dict) -> bool:
    """True if the differences are whole numbered blocks whose structure exists on both sides (a depth change)."""
    for differing, other in ((problems.missing, stored), (problems.unexpected, expected)):
        other_templates = {_template(n) for n in other}
        for name in differing:
            block = _block(name)
            if block is None or _template(name) not in other_templates:
                return False
            if any(n.startswith(block) for n in other):
                return False
    return True
