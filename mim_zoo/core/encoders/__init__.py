"""Encoder adapters over canonical implementations: timm's ViT (:mod:`.vit`) and mmpretrain's MixMIM Swin
(:mod:`.mixmim`)."""

from .mixmim import MixMIMEncoder
from .vit import ViTEncoder

__all__ = ["MixMIMEncoder", "ViTEncoder"]
