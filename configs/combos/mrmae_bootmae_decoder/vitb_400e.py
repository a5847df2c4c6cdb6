# Combination no paper trained: MR-MAE whose pixel reconstruction goes through BootMAE's target-aware pixel decoder
# (2 blocks of self-attention, cross-attention to the encoder's block-0 output, MLP; 512-d with the official 12 heads;
# transposed-convolution head; LightDXY/BootMAE models/modeling_pretrain_bootmae.py) instead of MAE's 8x512 decoder.
# The low-level features injected by the cross-attention relieve the encoder from memorising pixel detail, which
# BootMAE argues helps; MR-MAE's mimic loss on the visible tokens is unchanged. Otherwise configs/mrmae/vitb_400e.py.
from mmengine.config import read_base

from mim_zoo.core.algorithms import BootMAEPixelDecoder

with read_base():
    from ...mrmae.vitb_400e import *

model.decoder = dict(type=BootMAEPixelDecoder, embed_dim=512, depth=2, num_heads=12)
