# BootMAE ViT-B/16, 800 epochs: the official recipe of LightDXY/BootMAE@d604b18
# (scripts/pretrain/bash_pre_BootMAE_Base_800.sh, run_pretraining.py, optim_factory.py, utils.py, datasets.py).
# Batch 2048 = 8 GPUs x 256; lr = 1.5e-4 * batch / 256, 40 warm-up epochs from zero, then a per-iteration cosine to an
# absolute min lr of 1e-4 (--min_lr 1e-4, not scaled); AdamW(0.9, 0.95) (hard-coded in create_adamw_optimizer), wd 0.05
# except 1-D parameters, biases and {pos_embed, cls_token} (get_parameter_groups + no_weight_decay; the 3-D mask tokens
# ARE decayed); RandomResizedCrop(0.2-1, bicubic) + flip; mean = std = 127.5 (Inception mean/std on [0, 1]).
# Masking 120 in blocks + random to 147; centre-weighted losses (--weight_mask); feature weight ramped to 1 over the
# first 25% of the epochs (--feature_weight 1); EMA 0.999 -> 0.9999 (epoch 100) -> 0.99999 (epoch 400)
# (--model_ema_decay 0.999 --model_ema_dynamic, utils.py:adjust_ema_momentum), set per epoch.
# The official script passes --epochs 801 (an 801-epoch cosine and ramp; fine-tuning takes checkpoint-799, i.e. after
# 800 epochs); we train 800 epochs on an 800-epoch schedule: the last lr differs from 1e-4 by < 1e-9.
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
    from .._base_.datasets.imagenet_pretrain import *
    from .._base_.default_runtime import *

num_gpus = 8
batch_per_gpu = 256
batch_size = num_gpus * batch_per_gpu  # 2048; tools/train.py checks it against the launched world size
base_lr = 1.5e-4
lr = base_lr * batch_size / 256
min_lr = 1e-4
max_epochs = 800
warmup_epochs = 40

train_dataloader.batch_size = batch_per_gpu
data_preprocessor.mean = [127.5, 127.5, 127.5]
data_preprocessor.std = [127.5, 127.5, 127.5]

model = dict(
    type=BootMAE,
    data_preprocessor=data_preprocessor,
    encoder=dict(type=ViTEncoder, arch="vit_base_patch16_224", img_size=img_size, pos_embed="sincos",
                 sincos_layout="mocov3", init="bootmae"),
    masking=dict(type=BlockMasking, num_masking_patches=120, min_num_patches=16, max_num_patches=60, min_aspect=0.3,
                 total_masked=147, max_roll=3),
    pixel_target=dict(type=PixelTarget, norm="patch_channel"),
    feature_target=dict(type=MomentumTarget, block=-1, final_norm=False, norm="ln"),
    # official: both decoders use the encoder's head count (12 -> head_dim 42 in the 512-d pixel decoder)
    pixel_decoder=dict(embed_dim=512, depth=2, num_heads=12, context_block=0, head="conv_transpose"),
    feature_decoder=dict(embed_dim=None, depth=2, num_heads=12, context_block=-1, head="linear"),
    center_weighting=True,
)

optim_wrapper = dict(
    constructor=MIMOptimWrapperConstructor,  # leaves the frozen target generators out, in one log line
    type=OptimWrapper,  # `tools/train.py --amp` switches to mmengine's AmpOptimWrapper (the official runs use AMP)
    optimizer=dict(type=AdamW, lr=lr, betas=(0.9, 0.95), weight_decay=0.05, fused=True),  # fused: same update, one pass
    paramwise_cfg=dict(flat_decay_mult=0.0, bias_decay_mult=0.0, custom_keys={"cls_token": dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-8, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=min_lr, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type=EpochBasedTrainLoop, max_epochs=max_epochs)

ema_points = [(0, 0.999), (100, 0.9999), (400, 0.99999)]  # large: [(0, 0.999), (100, 0.9999)]
custom_hooks = [
    dict(
        type=MIMScheduleHook,
        momentum=dict(type="piecewise_linear", points=ema_points),
        loss_weights=dict(feature=dict(type="linear_warmup", fraction=0.25, final=1.0)),
    )
]
