# Tiny CPU twin of combos/mrmae_blockmask: configs/mrmae/tiny_cpu.py with the block counts scaled to the 8x8 grid.
from mmengine.config import read_base

from mim_zoo.core.masking import BlockMasking

with read_base():
    from ...mrmae.tiny_cpu import *

model.masking = dict(type=BlockMasking, num_masking_patches=39, min_num_patches=4, max_num_patches=20,
                     total_masked=48)
