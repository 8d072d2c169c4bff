"""Reference-style PreDiff configuration files.

The layout is the published MindEarth ``diffusion.yaml``: top-level sections ``data``, ``layout``, ``optim``,
``logging``, ``trainer``, ``eval``, ``model`` and ``summary``, where ``model`` holds ``diffusion``, ``align``
(with the alignment network's constructor keys in ``align.model_args``), ``latent_model`` (the denoiser's
constructor keys) and ``vae`` (the autoencoder's keys). The published file and the parity ``small_config.yaml``
load unchanged.

What :func:`load_config` adds to a plain ``yaml.safe_load``:

* PyYAML follows YAML 1.1, which reads ``1e-4`` (an exponent without a decimal point) as a *string*; every
  such string is turned into a float, wherever it appears.
* The ``model`` sections are checked strictly: an unknown key raises :class:`ConfigError` naming the key and
  the nearest valid one; a missing required key raises; values are converted to the expected type (an
  int where a float is expected becomes a float) or rejected; optional keys left out get the published value.
* The shapes the three networks and the diffusion must agree on (latent channels, context / target frames,
  latent size) are cross-checked, so a mismatch is reported before any network is built.

Other sections are passed through (their consumers check them), with the numeric-string fix applied.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from prediff.errors import ConfigError

#: Marks a key that has no default and must be present.
REQUIRED = object()

#: An exponent-form number without a decimal point ("1e-4", "-2E+3"): a string in YAML 1.1, a float in YAML 1.2.
_EXPONENT_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")

_INIT_MODES = {
    "attn_linear_init_mode": ("str", "0"),
    "ffn_linear_init_mode": ("str", "0"),
    "ffn2_linear_init_mode": ("str", "2"),
    "attn_proj_linear_init_mode": ("str", "2"),
    "conv_init_mode": ("str", "0"),
    "down_linear_init_mode": ("str", "0"),
    "global_proj_linear_init_mode": ("str", "2"),
    "norm_init_mode": ("str", "0"),
}

_CUBOID_COMMON = {
    "scale_alpha": ("float", 1.0),
    "num_heads": ("int", REQUIRED),
    "attn_drop": ("float", 0.1),
    "proj_drop": ("float", 0.1),
    "ffn_drop": ("float", 0.1),
    "downsample": ("int", 2),
    "downsample_type": ("str", "patch_merge"),
    "depth": ("int_list", REQUIRED),
    "use_attn_pattern": ("bool", True),
    "num_global_vectors": ("int", 0),
    "global_dim_ratio": ("int", 1),
    "ffn_activation": ("str", "gelu"),
    "gated_ffn": ("bool", False),
    "norm_layer": ("str", "layer_norm"),
    "padding_type": ("str", "zeros"),
    "use_relative_pos": ("bool", True),
    "self_attn_use_final_proj": ("bool", True),
    **_INIT_MODES,
    "time_embed_channels_mult": ("int", 4),
    "time_embed_use_scale_shift_norm": ("bool", False),
    "time_embed_dropout": ("float", 0.0),
}

#: Every key of each ``model`` section: (kind, default or REQUIRED). Defaults are the published values.
MODEL_SCHEMA: dict[str, dict[str, tuple[str, Any]]] = {
    "diffusion": {
        "data_shape": ("int_list", REQUIRED),
        "timesteps": ("int", 1000),
        "beta_schedule": ("str", "linear"),
        "log_every_t": ("int", 100),
        "clip_denoised": ("bool", False),
        "linear_start": ("float", 1e-4),
        "linear_end": ("float", 2e-2),
        "cosine_s": ("float", 8e-3),
        "given_betas": ("float_list?", None),
        "original_elbo_weight": ("float", 0.0),
        "v_posterior": ("float", 0.0),
        "l_simple_weight": ("float", 1.0),
        "learn_logvar": ("bool", False),
        "logvar_init": ("float", 0.0),
        "latent_shape": ("int_list", REQUIRED),
        "cond_stage_forward": ("str?", None),
        "scale_by_std": ("bool", False),
        "scale_factor": ("float", 1.0),
        "latent_cond_shape": ("int_list", REQUIRED),
    },
    "align": {
        "alignment_type": ("str", "avg_x"),
        "guide_scale": ("float", 50.0),
        "model_type": ("str", "cuboid"),
        "model_args": ("section", REQUIRED),
        "model_ckpt_path": ("str?", None),
    },
    "align.model_args": {
        "input_shape": ("int_list", REQUIRED),
        "out_channels": ("int", 1),
        "base_units": ("int", REQUIRED),
        **_CUBOID_COMMON,
        "use_inter_ffn": ("bool", True),
        "hierarchical_pos_embed": ("bool", False),
        "use_global_vector_ffn": ("bool", True),
        "use_global_self_attn": ("bool", False),
        "separate_global_qkv": ("bool", False),
        "pool": ("str", "attention"),
        "readout_seq": ("bool", True),
        "t_out": ("int", REQUIRED),
    },
    "latent_model": {
        "input_shape": ("int_list", REQUIRED),
        "target_shape": ("int_list", REQUIRED),
        "base_units": ("int", REQUIRED),
        "block_units": ("int?", None),
        **_CUBOID_COMMON,
        "upsample_type": ("str", "upsample"),
        "upsample_kernel_size": ("int", 3),
        "use_global_vector_ffn": ("bool", False),
        "use_global_self_attn": ("bool", True),
        "separate_global_qkv": ("bool", True),
        "unet_res_connect": ("bool", True),
    },
    "vae": {
        "pretrained_ckpt_path": ("str?", None),
        "data_channels": ("int", 1),
        "down_block_types": ("str_list", REQUIRED),
        "in_channels": ("int", REQUIRED),
        "block_out_channels": ("int_list", REQUIRED),
        "act_fn": ("str", "silu"),
        "latent_channels": ("int", REQUIRED),
        "up_block_types": ("str_list", REQUIRED),
        "norm_num_groups": ("int", REQUIRED),
        "layers_per_block": ("int", REQUIRED),
        "out_channels": ("int", REQUIRED),
    },
}

#: Keys of the ``model.vae`` section that are not constructor arguments of the autoencoder.
VAE_NON_NETWORK_KEYS = ("pretrained_ckpt_path", "data_channels")

#: The top-level sections of the reference layout (only ``model`` is required).
SECTIONS = ("data", "layout", "optim", "logging", "trainer", "eval", "model", "summary")
MODEL_SECTIONS = ("diffusion", "align", "latent_model", "vae")


def load_config(path_or_dict: str | os.PathLike | Mapping[str, Any]) -> dict:
    """Read, type-check and complete a reference-style PreDiff config.

    Parameters
    ----------
    path_or_dict : path of a YAML file in the layout of the published ``diffusion.yaml``, or an already
        parsed mapping of the same layout (it is deep-copied, never modified).

    Returns
    -------
    A new nested ``dict``: exponent strings such as ``"1e-4"`` are floats everywhere; every ``model``
    section holds all its keys with the expected Python types (lists for shapes), optional ones filled with
    the published defaults.

    Raises
    ------
    ConfigError
        Unreadable file or YAML syntax error; unknown key in a model section (with the nearest valid key);
        missing required key; value of the wrong type; networks whose shapes do not fit together.
    """
    if isinstance(path_or_dict, Mapping):
        raw, source = copy.deepcopy(dict(path_or_dict)), "the config"
    else:
        raw, source = _read_yaml(Path(path_or_dict)), str(path_or_dict)
    config = _fix_exponent_strings(raw)
    if "model" not in config:
        raise ConfigError(f"{source} has no 'model' section{_nearest_hint('model', config)}; a PreDiff config "
                          "needs model.diffusion, model.align, model.latent_model and model.vae")
    model = _require_mapping(config["model"], "model", source)
    config["model"] = _check_section(model, "model", {name: ("section", REQUIRED) for name in MODEL_SECTIONS}, source)
    for name in MODEL_SECTIONS:
        config["model"][name] = _check_section(_require_mapping(config["model"][name], f"model.{name}", source),
                                               f"model.{name}", MODEL_SCHEMA[name], source)
    align = config["model"]["align"]
    align["model_args"] = _check_section(_require_mapping(align["model_args"], "model.align.model_args", source),
                                         "model.align.model_args", MODEL_SCHEMA["align.model_args"], source)
    _check_consistency(config, source)
    return config


def apply_overrides(path_or_dict: str | os.PathLike | Mapping[str, Any], assignments: list[str]) -> dict:
    """A config with ``KEY=VALUE`` assignments applied, e.g. ``train.vae.train_encoder=false``.

    Parameters
    ----------
    path_or_dict : YAML file or parsed mapping (not modified).
    assignments : dotted key paths and YAML values (``VALUE`` is parsed as YAML: numbers, booleans, null, lists).
        The parent of every key must exist, or be a section of ``train``; the result still goes through
        :func:`load_config`, which checks the keys and types.

    Returns
    -------
    The parsed (not yet checked) config mapping with the assignments applied.

    Raises
    ------
    ConfigError
        An assignment without ``=``, an empty key, a value that is not YAML, or a parent that does not exist.
    """
    config = (copy.deepcopy(dict(path_or_dict)) if isinstance(path_or_dict, Mapping)
              else _read_yaml(Path(path_or_dict)))
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        parts = key.strip().split(".")
        if not separator or not all(parts):
            raise ConfigError(f"--set {assignment!r}: write KEY=VALUE with a dotted key, e.g. "
                              "train.vae.train_encoder=false")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {assignment!r}: the value is not valid YAML ({error})") from None
        section = config
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(section.get(part), Mapping):
                if parts[0] != "train" or section.get(part) is not None:
                    raise ConfigError(f"--set {assignment!r}: the config has no section "
                                      f"{'.'.join(parts[:depth + 1])}{_nearest_hint(part, section)}")
                section[part] = {}
            section = section[part]
        section[parts[-1]] = value
    return config


def latent_scale(config: Mapping[str, Any]) -> float:
    """The factor between VAE latents and the diffusion model's latents: ``z_model = scale_factor * z_vae``.

    ``model.diffusion.scale_factor`` (LDM's convention; 1.0 in the published configs, so their latents are the
    VAE's as they are). It should make the latents' standard deviation about 1, the variance the noise schedule
    was designed for. ``scale_by_std: true`` (LDM's estimate from the first training batch, kept as a network
    buffer) is not supported: measure the std of the encoded training latents and write 1/std as scale_factor.

    Raises
    ------
    ConfigError
        ``scale_by_std`` is true, or ``scale_factor`` is not positive.
    """
    diffusion = config["model"]["diffusion"]
    if diffusion.get("scale_by_std"):
        raise ConfigError("model.diffusion.scale_by_std: true is not supported; set it to false and write 1 / (the "
                          "standard deviation of the encoded training latents) as model.diffusion.scale_factor")
    scale = float(diffusion.get("scale_factor", 1.0))
    if not scale > 0:
        raise ConfigError(f"model.diffusion.scale_factor must be positive, got {scale}")
    return scale


def vae_network_kwargs(config: Mapping[str, Any]) -> dict:
    """The ``model.vae`` keys that are constructor arguments of :class:`prediff.models.vae.AutoencoderKL`."""
    return {key: value for key, value in config["model"]["vae"].items() if key not in VAE_NON_NETWORK_KEYS}


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass the path of a PreDiff YAML config "
                          "(e.g. configs/prediff_sevirlr_full.yaml)")
    try:
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML ({error}); fix the syntax at the position shown") \
            from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections ({', '.join(SECTIONS)}), "
                          f"not {type(content).__name__}")
    return content


def _fix_exponent_strings(value):
    if isinstance(value, dict):
        return {key: _fix_exponent_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fix_exponent_strings(item) for item in value]
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()):
        return float(value)
    return value


def _require_mapping(value, where: str, source: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} in {source} must be a mapping of keys, not {type(value).__name__} ({value!r})")
    return value


def _nearest_hint(key: str, candidates) -> str:
    nearest = difflib.get_close_matches(str(key), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {nearest[0]!r}?)" if nearest else ""


def _check_section(section: dict, where: str, schema: dict[str, tuple[str, Any]], source: str) -> dict:
    unknown = [key for key in section if key not in schema]
    if unknown:
        details = "; ".join(f"{where}.{key}{_nearest_hint(key, schema)}" for key in unknown)
        raise ConfigError(f"unknown key(s) in {source}: {details}. Valid keys of {where}: {', '.join(schema)}")
    missing = [key for key, (_, default) in schema.items() if default is REQUIRED and key not in section]
    if missing:
        details = ", ".join(f"{where}.{key}" for key in missing)
        raise ConfigError(f"missing required key(s) in {source}: {details}; add them (see "
                          "configs/prediff_sevirlr_full.yaml for the published values)")
    checked = {}
    for key, (kind, default) in schema.items():
        if key not in section:
            checked[key] = copy.deepcopy(default)
        elif kind == "section":
            checked[key] = section[key]
        else:
            checked[key] = _convert(section[key], kind, f"{where}.{key}", source)
    return checked


_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "int_list": "a list of integers", "float_list": "a list of numbers", "str_list": "a list of strings"}


def _convert(value, kind: str, where: str, source: str):
    optional = kind.endswith("?")
    base = kind.rstrip("?")
    if value is None and optional:
        return None
    converted = _convert_value(value, base)
    if converted is None:
        words = _KIND_WORDS[base] + (" or null" if optional else "")
        raise ConfigError(f"{where} in {source} must be {words}, got {value!r}")
    return converted


def _convert_value(value, kind: str):
    if kind.endswith("_list"):
        if not isinstance(value, (list, tuple)):
            return None
        items = [_convert_value(item, kind[:-5]) for item in value]
        return None if any(item is None for item in items) else items
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if kind == "str":
        return value if isinstance(value, str) else None
    if isinstance(value, bool):
        return None
    if kind == "int":
        if isinstance(value, int):
            return value
        return int(value) if isinstance(value, float) and value.is_integer() else None
    if kind == "float":
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(value) if isinstance(value, str) else None
        except ValueError:
            return None
    raise ValueError(f"unknown schema kind {kind!r}")


def _check_consistency(config: dict, source: str) -> None:
    model = config["model"]
    vae, unet, diffusion = model["vae"], model["latent_model"], model["diffusion"]
    align_args = model["align"]["model_args"]

    def require(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(f"inconsistent config {source}: {message}")

    for key in ("data_shape", "latent_shape", "latent_cond_shape"):
        require(len(diffusion[key]) == 4, f"model.diffusion.{key} must be [T, H, W, C], got {diffusion[key]}")
    for key in ("input_shape", "target_shape"):
        require(len(unet[key]) == 4, f"model.latent_model.{key} must be [T, H, W, C], got {unet[key]}")
    require(len(align_args["input_shape"]) == 4,
            f"model.align.model_args.input_shape must be [T, H, W, C], got {align_args['input_shape']}")
    require(vae["in_channels"] == vae["data_channels"],
            f"model.vae.in_channels ({vae['in_channels']}) differs from model.vae.data_channels "
            f"({vae['data_channels']})")
    latent = vae["latent_channels"]
    for where, shape in (("model.diffusion.latent_shape", diffusion["latent_shape"]),
                         ("model.diffusion.latent_cond_shape", diffusion["latent_cond_shape"]),
                         ("model.latent_model.input_shape", unet["input_shape"]),
                         ("model.latent_model.target_shape", unet["target_shape"]),
                         ("model.align.model_args.input_shape", align_args["input_shape"])):
        require(shape[-1] == latent, f"{where} has {shape[-1]} channels but model.vae.latent_channels is {latent}")
    require(unet["target_shape"] == diffusion["latent_shape"],
            f"model.latent_model.target_shape {unet['target_shape']} differs from model.diffusion.latent_shape "
            f"{diffusion['latent_shape']}")
    require(unet["input_shape"] == diffusion["latent_cond_shape"],
            f"model.latent_model.input_shape {unet['input_shape']} differs from model.diffusion.latent_cond_shape "
            f"{diffusion['latent_cond_shape']}")
    require(align_args["input_shape"] == diffusion["latent_shape"],
            f"model.align.model_args.input_shape {align_args['input_shape']} differs from "
            f"model.diffusion.latent_shape {diffusion['latent_shape']}")
    require(align_args["t_out"] == diffusion["latent_shape"][0],
            f"model.align.model_args.t_out ({align_args['t_out']}) differs from the number of target frames "
            f"({diffusion['latent_shape'][0]})")
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    data_t, data_h, data_w, data_c = diffusion["data_shape"]
    require(data_c == vae["out_channels"],
            f"model.diffusion.data_shape has {data_c} channels but model.vae.out_channels is {vae['out_channels']}")
    require([data_t, data_h // factor, data_w // factor] == diffusion["latent_shape"][:3],
            f"model.diffusion.data_shape {diffusion['data_shape']} does not map to latent_shape "
            f"{diffusion['latent_shape']} through the VAE's downsampling factor {factor}")
    layout = config.get("layout")
    if isinstance(layout, dict):
        for key, expected in (("t_in", unet["input_shape"][0]), ("t_out", unet["target_shape"][0])):
            if key in layout:
                require(layout[key] == expected, f"layout.{key} ({layout[key]}) differs from the denoiser's "
                                                 f"{'context' if key == 't_in' else 'target'} frames ({expected})")
