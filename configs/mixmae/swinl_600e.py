# MixMAE Swin-L/W14, 600 epochs (Sense-X/MixMIM@2b2f5a9 models_mixmim.py:mixmim_large: embed 192, heads
# [6, 12, 24, 48]; README: 85.9 fine-tune). The repository ships only the base script; the same recipe and batch
# (16 x 128) are assumed. Set model.encoder.grad_checkpointing=True on smaller GPUs.
from mmengine.config import read_base

with read_base():
    from .swinb_600e import *

model.encoder.arch = "large"
