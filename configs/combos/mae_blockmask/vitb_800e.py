# Combination no paper trained: MAE with BootMAE's block-wise masking. MAE ViT-B/16 800 epochs
# (configs/mae/vitb_800e.py) with BEiT blocks of 120 patches topped up to exactly 147 of 196 (LightDXY/BootMAE
# datasets.py + utils.py:mask_to_index) instead of MAE's per-patch random 75%: the same masking ratio, spatially
# correlated holes.
from mmengine.config import read_base

from mim_zoo.core.masking import BlockMasking

with read_base():
    from ...mae.vitb_800e import *

model.masking = dict(type=BlockMasking, num_masking_patches=120, min_num_patches=16, max_num_patches=60,
                     total_masked=147)
