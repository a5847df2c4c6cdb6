# BootMAE on CPU in seconds: a 2-block 64-d ViT on 32x32 shapes (4x4 patches -> 8x8 grid), 8 iterations. CI trains it.
# The block mask is scaled to the 64-patch grid (official 120 / 147 of 196, blocks of 16-60: here 39 / 48 of 64,
# blocks of 5-20); the pixel decoder keeps a fractional head split (32-d with 3 heads of 10, as 512-d with 12 of 42);
# the EMA and ramp schedules are the 800-epoch ones stretched to 2 epochs.
from mmengine.config import read_base
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from mmengine.runner import EpochBasedTrainLoop
from torch.optim import AdamW

from mim_zoo.core.algorithms import BootMAE
from mim_zoo.core.encoders import ViTEncoder
from mim_zoo.engine.hooks import MIMScheduleHook
from mim_zoo.core.masking import BlockMasking
from mim_zoo.engine.optim import MIMOptimWrapperConstructor
from mim_zoo.core.targets import MomentumTarget, PixelTarget

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
data_preprocessor.mean = [127.5, 127.5, 127.5]
data_preprocessor.std = [127.5, 127.5, 127.5]

tiny_vit = dict(type=ViTEncoder, arch="vit_tiny_patch16_224", img_size=img_size, patch_size=4, embed_dim=64,
                depth=2, num_heads=4, pos_embed="sincos", sincos_layout="mocov3", init="bootmae")
model = dict(
    type=BootMAE,
    data_preprocessor=data_preprocessor,
    encoder=tiny_vit,
    masking=dict(type=BlockMasking, num_masking_patches=39, min_num_patches=5, max_num_patches=20, total_masked=48),
    pixel_target=dict(type=PixelTarget, norm="patch_channel"),
    feature_target=dict(type=MomentumTarget),
    pixel_decoder=dict(embed_dim=32, depth=2, num_heads=3),
    feature_decoder=dict(depth=2, num_heads=4),
)
optim_wrapper = dict(
    constructor=MIMOptimWrapperConstructor,  # leaves the frozen target generators out, in one log line
    type=OptimWrapper,
    optimizer=dict(type=AdamW, lr=lr, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(flat_decay_mult=0.0, bias_decay_mult=0.0, custom_keys={"cls_token": dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-8, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type=EpochBasedTrainLoop, max_epochs=max_epochs)
custom_hooks = [
    dict(
        type=MIMScheduleHook,
        momentum=dict(type="scaled_piecewise_linear", points=[(0, 0.999), (100, 0.9999), (400, 0.99999)],
                      reference_epochs=800),
        loss_weights=dict(feature=dict(type="linear_warmup", fraction=0.25, final=1.0)),
    )
]
default_hooks.logger.interval = 1
default_hooks.checkpoint.max_keep_ckpts = 2
