# Tiny CPU twin of combos/mrmae_bootmae_decoder: configs/mrmae/tiny_cpu.py with BootMAE's pixel decoder (32-d,
# 2 blocks).
from mmengine.config import read_base

from mim_zoo.core.algorithms import BootMAEPixelDecoder

with read_base():
    from ...mrmae.tiny_cpu import *

model.decoder = dict(type=BootMAEPixelDecoder, embed_dim=32, depth=2, num_heads=4)
