"""mim_zoo's own pretraining checkpoints as a source layout: the weights and the config saved in them, without the
optimizer, scheduler and loop state (a file to share, evaluate or ``load_from``; ``--check`` verifies it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .keys import ConversionError, StateDict, state_dict_entry
from .sources import SourceLayout, mmengine_epoch, register_source


def mim_zoo_to_mim_zoo(checkpoint: Any) -> StateDict:
    """A checkpoint written by ``tools/train.py`` (mmengine ``state_dict``): the weights alone, DDP prefix removed."""
    if not (isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("meta", {}).get("cfg"), str)):
        raise ConversionError("not an mmengine checkpoint with its config (meta['cfg']); mim_zoo's own files come "
                              "from tools/train.py")
    return state_dict_entry(checkpoint, ("state_dict",))


register_source(SourceLayout(
    name="mim_zoo",
    summary="a mim_zoo pretraining checkpoint: the weights and the config saved in it, without the training state",
    files="work_dirs/<config>/epoch_N.pth (tools/train.py; mmengine state_dict + meta['cfg'])",
    convert=mim_zoo_to_mim_zoo,
    epoch=mmengine_epoch,
    own_config=True,
))
