"""Every algorithm is imported here, so ``import mim_zoo`` registers it (STYLE R8)."""

from .base import BaseMIM
from .mae import MAE, MAEDecoder
from .mrmae import MRMAE

__all__ = ["BaseMIM", "MAE", "MAEDecoder", "MRMAE"]
