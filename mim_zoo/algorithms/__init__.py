"""Every algorithm is imported here, so ``import mim_zoo`` registers it (STYLE R8)."""

from .base import BaseMIM
from .bootmae import BootMAE, BootMAEFeatureDecoder, BootMAEPixelDecoder, TargetAwareDecoder
from .mae import MAE, MAEDecoder
from .mrmae import MRMAE

__all__ = ["BaseMIM", "BootMAE", "BootMAEFeatureDecoder", "BootMAEPixelDecoder", "MAE", "MAEDecoder", "MRMAE",
           "TargetAwareDecoder"]
