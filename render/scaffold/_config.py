"""Method configs (the trainers' TrainConfig / NerfConfig) as plain, versioned JSON data."""

from __future__ import annotations

__all__ = ["config_from_dict", "config_preset", "config_to_dict"]


def config_to_dict(cfg, version: int) -> dict:
    """A config dataclass as plain JSON data with its ``version`` (tuples become lists)."""
    import dataclasses

    d = dataclasses.asdict(cfg)
    for k, v in d.items():
        if isinstance(v, tuple):
            d[k] = list(v)
    d["version"] = version
    return d


def config_from_dict(cls, d: dict, nested: dict | None = None):
    """``cls(**d)`` from :func:`config_to_dict`'s output: unknown fields are an error naming them;
    ``nested`` maps a field to the callable that rebuilds it from its dict; list fields whose
    default is a tuple become tuples again."""
    import dataclasses

    d = dict(d)
    d.pop("version", None)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"config: unknown fields {sorted(unknown)}")
    for k, build in (nested or {}).items():
        if k in d and isinstance(d[k], dict):
            d[k] = build(d[k])
    for k, v in d.items():
        if isinstance(v, list) and isinstance(fields[k].default, tuple):
            d[k] = tuple(v)
    return cls(**d)


def config_preset(presets: dict, name: str, overrides: dict):
    """``presets[name]()`` with ``overrides`` replaced; an unknown name is an error listing them."""
    import dataclasses

    if name not in presets:
        raise ValueError(f"preset: expected one of {sorted(presets)}, got {name!r}")
    return dataclasses.replace(presets[name](), **overrides)
