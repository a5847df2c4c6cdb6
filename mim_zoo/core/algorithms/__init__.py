"""Every algorithm is imported here, so ``import mim_zoo`` registers it (STYLE R8)."""

from .base import BaseMIM
from .bootmae import BootMAE, BootMAEFeatureDecoder, BootMAEPixelDecoder, TargetAwareDecoder
from .mae import MAE, MAEDecoder
from .mixmae import MixMAE, MixMAEDecoder
from .mrmae import MRMAE

__all__ = ["BaseMIM", "BootMAE", "BootMAEFeatureDecoder", "BootMAEPixelDecoder", "MAE", "MAEDecoder", "MixMAE",
           "MixMAEDecoder", "MRMAE", "TargetAwareDecoder"]
