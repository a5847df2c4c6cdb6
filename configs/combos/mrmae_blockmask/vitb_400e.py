# Combination no paper trained: MR-MAE with BootMAE's block-wise masking (BEiT blocks of 120 patches topped up to
# exactly 147 of 196; LightDXY/BootMAE datasets.py + utils.py:mask_to_index). The mimic loss then acts on visible
# tokens that cluster outside large holes, the reconstruction on block-shaped holes. Otherwise
# configs/mrmae/vitb_400e.py.
from mmengine.config import read_base

from mim_zoo.core.masking import BlockMasking

with read_base():
    from ...mrmae.vitb_400e import *

model.masking = dict(type=BlockMasking, num_masking_patches=120, min_num_patches=16, max_num_patches=60,
                     total_masked=147)
