"""Strict YAML configurations made of dataclass sections, shared by the dual-pol nowcaster and diffusion QPE.

A configuration file is a mapping of section name -> mapping of keys; each section is a frozen dataclass whose
fields (with their defaults) are the valid keys. :func:`sections_from_dict` rejects unknown sections and keys
(naming the valid ones) and converts every value to the type of its default: tuples from YAML lists (element
type of the default's first element), strings and booleans only from the same type, integers only from
integral numbers, floats from any number. Keys left out keep their defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import yaml

from prediff.errors import ConfigError


def convert_value(value: Any, default: Any, where: str) -> Any:
    """``value`` converted to the type of ``default`` (see the module docstring); ConfigError naming ``where``."""
    try:
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(convert_value(v, default[0], where) for v in value) if default else tuple(value)
        if isinstance(default, (str, bool)):
            if not isinstance(value, type(default)):
                raise TypeError
            return value
        if isinstance(default, int) and (isinstance(value, bool) or float(value) != int(value)):
            raise TypeError
        return type(default)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} = {value!r} has the wrong type; expected like {default!r}") from None


def sections_from_dict(raw: Mapping[str, Any], section_classes: Mapping[str, type], source: str) -> dict[str, Any]:
    """Check and convert a configuration mapping section by section.

    Parameters
    ----------
    raw : the parsed YAML (section -> key -> value); missing sections get their defaults.
    section_classes : section name -> frozen dataclass with a default for every field.
    source : file name (or "config") used in error messages.

    Returns
    -------
    section name -> dataclass instance.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source} must be a mapping with sections {', '.join(section_classes)}")
    unknown = set(raw) - set(section_classes)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}; valid: "
                          f"{', '.join(section_classes)}")
    sections = {}
    for name, cls in section_classes.items():
        given = raw.get(name) or {}
        if not isinstance(given, Mapping):
            raise ConfigError(f"{source}: section {name} must be a mapping")
        defaults = cls()
        valid = {f.name for f in dataclasses.fields(cls)}
        extra = set(given) - valid
        if extra:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(sorted(extra))} in {name}; valid: "
                              f"{', '.join(sorted(valid))}")
        sections[name] = cls(**{key: convert_value(value, getattr(defaults, key), f"{name}.{key}")
                                for key, value in given.items()})
    return sections


def read_yaml_mapping(path: str | Path, template: str) -> tuple[Any, str]:
    """Parse a YAML configuration file; returns (content, source name). ``template`` is the file to start from."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; start from {template}")
    try:
        return yaml.safe_load(path.read_text()) or {}, str(path)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None


def sections_to_dict(config: Any) -> dict:
    """Plain-Python form (lists, numbers, strings) of a dataclass of dataclass sections, for YAML."""
    return {field.name: {key: list(value) if isinstance(value, tuple) else value
                         for key, value in dataclasses.asdict(getattr(config, field.name)).items()}
            for field in dataclasses.fields(config)}
