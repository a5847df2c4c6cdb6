"""The converter table (a plain dict: converters are not config-built plugins)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

StateDict = dict[str, Tensor]
CONVERTERS: dict[str, Callable[[StateDict], StateDict]] = {}


def register_converter(name: str) -> Callable[[Callable[[StateDict], StateDict]], Callable[[StateDict], StateDict]]:
    def decorate(fn: Callable[[StateDict], StateDict]) -> Callable[[StateDict], StateDict]:
        if name in CONVERTERS:
            raise KeyError(f"a converter named {name!r} is already registered")
        CONVERTERS[name] = fn
        return fn

    return decorate


def convert_state_dict(name: str, state_dict: StateDict) -> StateDict:
    """Convert an official state dict of layout ``name`` into mim_zoo's keys."""
    if name not in CONVERTERS:
        raise KeyError(f"no converter for layout {name!r}; available: {', '.join(sorted(CONVERTERS))}")
    return CONVERTERS[name](state_dict)


def rename_prefixes(state_dict: StateDict, mapping: list[tuple[str, str]], drop: tuple[str, ...] = ()) -> StateDict:
    """Rename keys by the first matching ``(old_prefix, new_prefix)``; keys starting with a ``drop`` prefix vanish.

    A key that no rule matches raises, naming it: a converter never silently forgets weights.
    """
    out: StateDict = {}
    for key, value in state_dict.items():
        if key.startswith(drop):
            continue
        for old, new in mapping:
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            raise KeyError(f"unexpected key {key!r} in the source checkpoint (no conversion rule matches it)")
    return out
