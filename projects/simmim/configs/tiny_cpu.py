# SimMIM (projects/simmim) on CPU in seconds: built by name through custom_imports, outside the mim_zoo package.
from mmengine.config import read_base

with read_base():
    from ....configs.mae.tiny_cpu import *

custom_imports = dict(imports=["projects.simmim.simmim"], allow_failed_imports=False)

model = dict(
    type="SimMIM",  # registered in mim_zoo's MODELS by projects/simmim/simmim/simmim.py
    data_preprocessor=data_preprocessor,
    encoder=tiny_vit,
    masking=dict(type="UnitMasking", ratio=0.6, unit=2),
)
