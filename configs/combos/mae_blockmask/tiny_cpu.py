# Tiny CPU twin of combos/mae_blockmask: configs/mae/tiny_cpu.py (8x8 grid) with the block counts scaled by 64/196.
from mmengine.config import read_base

from mim_zoo.core.masking import BlockMasking

with read_base():
    from ...mae.tiny_cpu import *

model.masking = dict(type=BlockMasking, num_masking_patches=39, min_num_patches=4, max_num_patches=20,
                     total_masked=48)
