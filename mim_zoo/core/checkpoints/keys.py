"""The vocabulary both conversion directions share: state dicts, converted results, key renaming, errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

StateDict = dict[str, Tensor]


@dataclass
class Converted:
    """A converted state dict and the source keys left out on purpose (key -> reason)."""

    state_dict: StateDict
    dropped: dict[str, str] = field(default_factory=dict)


class ConversionError(KeyError):
    """A key no conversion rule knows, or a file of another layout. A converter never silently forgets weights."""

    def __str__(self) -> str:
        return str(self.args[0])


def rename_prefixes(state_dict: Mapping[str, Tensor], mapping: Iterable[tuple[str, str]],
                    drop: tuple[str, ...] = ()) -> StateDict:
    """Rename keys by the first matching ``(old_prefix, new_prefix)``; keys starting with a ``drop`` prefix vanish.

    A key that no rule matches raises :class:`ConversionError`, naming it.
    """
    mapping = list(mapping)
    out: StateDict = {}
    for key, value in state_dict.items():
        if key.startswith(drop):
            continue
        for old, new in mapping:
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            raise ConversionError(f"unexpected key {key!r} in the source checkpoint (no conversion rule matches it)")
    return out


def state_dict_entry(checkpoint: Any, keys: tuple[str, ...] = ("model", "state_dict")) -> StateDict:
    """The state dict of a loaded checkpoint file: the first of ``keys`` present, else the file itself.

    Official releases hold it under ``model`` (facebookresearch/mae ``util/misc.py:save_model``, BootMAE
    ``utils.py:save_model``, MixMIM), mmengine files under ``state_dict``; a DDP ``module.`` prefix is removed.
    """
    entry = checkpoint
    if isinstance(checkpoint, Mapping):
        entry = next((checkpoint[k] for k in keys if isinstance(checkpoint.get(k), Mapping)), checkpoint)
    if not isinstance(entry, Mapping) or not entry or not all(isinstance(v, Tensor) for v in entry.values()):
        found = list(checkpoint)[:8] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ConversionError(f"no state dict of tensors under {' or '.join(map(repr, keys))} (found {found})")
    return {k.removeprefix("module."): v for k, v in entry.items()}
