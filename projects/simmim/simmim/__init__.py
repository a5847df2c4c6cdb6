"""SimMIM as a mim_zoo plugin that lives outside the package (imported through ``custom_imports``)."""

from .simmim import SimMIM, UnitMasking

__all__ = ["SimMIM", "UnitMasking"]
