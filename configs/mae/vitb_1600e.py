# MAE ViT-B/16, 1600 epochs: vitb_800e.py with the longer schedule (facebookresearch/mae PRETRAIN.md; 83.6 fine-tune).
from mmengine.config import read_base

with read_base():
    from .vitb_800e import *

recipe.epochs = 1600
