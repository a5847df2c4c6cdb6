# MixMAE Swin-B/W14, 600 epochs: the official recipe of Sense-X/MixMIM@2b2f5a9 (exp/base_600ep/pretrain.sh,
# main_pretrain.py, models_mixmim.py:mixmim_base; README: 85.1 IN-1K fine-tune).
#
# Batch 2048 = 16 GPUs x 128, as pretrain.sh launches it and the README states ("Batch size is 128 * 16 = 2048");
# the 1024 of the issue is the official *fine-tune* batch (finetune.sh, 8 x 128). mmpretrain's re-implementation
# (mixmim_mixmim-base_16xb128-coslr-300e_in1k.py) also pretrains with 16 x 128. lr = blr * batch / 256 with
# blr 1.5e-4 (1.2e-3 at 2048). AdamW(0.9, 0.95), wd 0.05 except on 1-D parameters and biases (timm
# add_weight_decay, called without a skip list, so the decoder's mask token *is* decayed; the fixed position table
# has no gradient). 40 warm-up epochs from zero, then half-cycle cosine to 0, per iteration (util/lr_sched.py).
# RandomResizedCrop(224, 0.2-1, bicubic) + flip; norm-pix loss on 32x32 patches; mixing ratio 0.5, one mask per
# GPU batch (each process draws its own: diff_rank_seed). The official runs use AMP: add --amp.
# The 40 warm-up epochs are kept down to 300 epochs (mmpretrain's 300-epoch MixMIM config warms up for 40 too); a
# shorter run warms up for 2/15 of its length.
from mmengine.config import read_base

from mim_zoo.core.algorithms import MixMAE
from mim_zoo.core.encoders.mixmim import MixMIMEncoder
from mim_zoo.core.masking import MixingMask
from mim_zoo.core.targets import PixelTarget

with read_base():
    from .._base_.datasets.imagenet_pretrain import *
    from .._base_.default_runtime import *
    from .._base_.schedules.mim_pretrain import *

# batch_per_gpu must be even: each image is mixed with its batch mirror
recipe = dict(num_gpus=16, batch_per_gpu=128, base_lr=1.5e-4, lr_scaling="linear", epochs=600, warmup_epochs=40,
              full_warmup_from=300, min_lr=0.0)

model = dict(
    type=MixMAE,
    data_preprocessor=data_preprocessor,
    encoder=dict(type=MixMIMEncoder, arch="base", img_size=img_size, patch_size=4, window_size=[14, 14, 14, 7],
                 drop_path_rate=0.0),
    masking=dict(type=MixingMask, ratio=0.5),
    target=dict(type=PixelTarget, norm="patch"),  # patch size = the encoder's output stride (32)
    decoder=dict(embed_dim=512, depth=8, num_heads=16),
)
# no decay on every 1-D parameter (LN weights and biases, Linear/conv biases), as timm's add_weight_decay
optim_wrapper.paramwise_cfg = dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0)
