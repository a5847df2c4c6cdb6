# MixMAE on CPU in seconds: swinb_600e.py with a 3-stage 32-d Swin (patch 2, windows 4) and a 1-block decoder on the
# embedded 32x32 shapes, one process x 16 (even, as MixMAE requires), 2 epochs of 5 iterations (the 600-epoch
# schedule shrunk to 2). CI trains it. Stage grids 16/8/4 (windowed, windowed, global); output grid 4x4 at stride 8,
# so 8x8 target patches and 8 of 16 tokens mixed from the partner.
from mmengine.config import read_base

from mim_zoo.core.encoders.mixmim import MixMIMEncoder

with read_base():
    from .swinb_600e import *
    from .._base_.datasets.shapes_tiny import *  # replaces the ImageNet data (same normalisation)

recipe.update(num_gpus=1, batch_per_gpu=16, epochs=2)
tiny_swin = dict(type=MixMIMEncoder, arch=dict(embed_dims=32, depths=[1, 1, 2], num_heads=[1, 2, 4]),
                 img_size=img_size, patch_size=2, window_size=[4, 4, 4])
model.encoder = tiny_swin
model.decoder = dict(embed_dim=32, depth=1, num_heads=4)
default_hooks.logger.interval = 1
default_hooks.checkpoint.max_keep_ckpts = 2
