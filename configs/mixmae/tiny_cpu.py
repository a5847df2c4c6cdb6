# MixMAE on CPU in seconds: a 3-stage 32-d Swin (patch 2, windows 4) on 32x32 shapes, 8 iterations. CI trains it.
# Stage grids 16/8/4 (windowed, windowed, global); output grid 4x4 at stride 8, so 8x8 target patches and
# 8 of 16 tokens mixed from the partner. The batch (16) is even, as MixMAE requires.
from mmengine.config import read_base
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from mmengine.runner import EpochBasedTrainLoop
from torch.optim import AdamW

from mim_zoo.core.algorithms import MixMAE
from mim_zoo.core.masking import MixingMask
from mim_zoo.core.encoders.mixmim import MixMIMEncoder
from mim_zoo.engine.optim import MIMOptimWrapperConstructor
from mim_zoo.core.targets import PixelTarget

with read_base():
    from .._base_.datasets.shapes_tiny import *
    from .._base_.default_runtime import *

num_gpus = 1
batch_size = num_gpus * batch_per_gpu
base_lr = 1.5e-4
lr = base_lr * batch_size / 256
max_epochs = 2
warmup_epochs = 1
train_dataloader.dataset.indices = 4 * batch_per_gpu  # 4 iterations per epoch

tiny_swin = dict(type=MixMIMEncoder, arch=dict(embed_dims=32, depths=[1, 1, 2], num_heads=[1, 2, 4]),
                 img_size=img_size, patch_size=2, window_size=[4, 4, 4])
model = dict(
    type=MixMAE,
    data_preprocessor=data_preprocessor,
    encoder=tiny_swin,
    masking=dict(type=MixingMask, ratio=0.5),
    target=dict(type=PixelTarget, norm="patch"),
    decoder=dict(embed_dim=32, depth=1, num_heads=4),
)
optim_wrapper = dict(
    constructor=MIMOptimWrapperConstructor,  # leaves the frozen target generators out, in one log line
    type=OptimWrapper,
    optimizer=dict(type=AdamW, lr=lr, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-8, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type=EpochBasedTrainLoop, max_epochs=max_epochs)
default_hooks.logger.interval = 1
default_hooks.checkpoint.max_keep_ckpts = 2
