# MAE on CPU in seconds: a 2-block 64-d ViT on 32x32 shapes (4x4 patches), 8 iterations. CI trains it.
from mmengine.config import read_base
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from mmengine.runner import EpochBasedTrainLoop
from torch.optim import AdamW

from mim_zoo.core.algorithms import MAE
from mim_zoo.core.encoders import ViTEncoder
from mim_zoo.core.masking import RandomMasking
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

tiny_vit = dict(type=ViTEncoder, arch="vit_tiny_patch16_224", img_size=img_size, patch_size=4, embed_dim=64,
                depth=2, num_heads=4)
model = dict(
    type=MAE,
    data_preprocessor=data_preprocessor,
    encoder=tiny_vit,
    masking=dict(type=RandomMasking, ratio=0.75),
    target=dict(type=PixelTarget, norm="patch"),
    decoder=dict(embed_dim=32, depth=1, num_heads=4),
)
optim_wrapper = dict(
    constructor=MIMOptimWrapperConstructor,  # leaves the frozen target generators out, in one log line
    type=OptimWrapper,
    optimizer=dict(type=AdamW, lr=lr, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-8, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type=EpochBasedTrainLoop, max_epochs=max_epochs)
default_hooks.logger.interval = 1
default_hooks.checkpoint.max_keep_ckpts = 2
