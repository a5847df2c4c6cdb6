# BootMAE ViT-B/16, 800 epochs: the official recipe of LightDXY/BootMAE@d604b18
# (scripts/pretrain/bash_pre_BootMAE_Base_800.sh, run_pretraining.py, optim_factory.py, utils.py, datasets.py).
# Batch 2048 = 8 GPUs x 256; lr = 1.5e-4 * batch / 256, 40 warm-up epochs from zero, then a per-iteration cosine to an
# absolute min lr of 1e-4 (--min_lr 1e-4, not scaled); AdamW(0.9, 0.95) (hard-coded in create_adamw_optimizer), wd 0.05
# except 1-D parameters, biases and {pos_embed, cls_token} (get_parameter_groups + no_weight_decay; the 3-D mask tokens
# ARE decayed); RandomResizedCrop(0.2-1, bicubic) + flip; mean = std = 127.5 (Inception mean/std on [0, 1]).
# Masking 120 in blocks + random to 147; centre-weighted losses (--weight_mask); feature weight ramped to 1 over the
# first 25% of the epochs (--feature_weight 1); EMA 0.999 -> 0.9999 (epoch 100) -> 0.99999 (epoch 400)
# (--model_ema_decay 0.999 --model_ema_dynamic, utils.py:adjust_ema_momentum), set per epoch; a run of another length
# stretches the breakpoints with it (100/800 and 400/800 of the run).
# The official script passes --epochs 801 (an 801-epoch cosine and ramp; fine-tuning takes checkpoint-799, i.e. after
# 800 epochs); we train 800 epochs on an 800-epoch schedule: the last lr differs from 1e-4 by < 1e-9.
from mmengine.config import read_base

from mim_zoo.core.algorithms import BootMAE
from mim_zoo.core.encoders import ViTEncoder
from mim_zoo.core.masking import BlockMasking
from mim_zoo.core.targets import MomentumTarget, PixelTarget
from mim_zoo.engine.hooks import MIMScheduleHook

with read_base():
    from .._base_.datasets.imagenet_pretrain import *
    from .._base_.default_runtime import *
    from .._base_.schedules.mim_pretrain import *

# 40 warm-up epochs in the official (only) 800-epoch run; a shorter run warms up for 1/20 of its length.
recipe = dict(num_gpus=8, batch_per_gpu=256, base_lr=1.5e-4, lr_scaling="linear", epochs=800, warmup_epochs=40,
              full_warmup_from=800, min_lr=1e-4)
data_preprocessor.update(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])

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
optim_wrapper.paramwise_cfg = dict(flat_decay_mult=0.0, bias_decay_mult=0.0,
                                   custom_keys={"cls_token": dict(decay_mult=0.0)})
default_hooks.mim_schedule = dict(  # a named default hook: vitl_800e.py and the tiny config edit it by name
    type=MIMScheduleHook,
    momentum=dict(type="scaled_piecewise_linear", points=[(0, 0.999), (100, 0.9999), (400, 0.99999)],
                  reference_epochs=800),
    loss_weights=dict(feature=dict(type="linear_warmup", fraction=0.25, final=1.0)),
)
