# MixMAE Swin-B/W14, 300 epochs: swinb_600e.py with the shorter schedule (the length of mmpretrain's
# mixmim_mixmim-base_16xb128-coslr-300e_in1k.py, 84.63 fine-tune there; the converted official 300-epoch
# checkpoint reaches 84.6 in mmcls). The same 40 warm-up epochs.
from mmengine.config import read_base

with read_base():
    from .swinb_600e import *

recipe.epochs = 300
