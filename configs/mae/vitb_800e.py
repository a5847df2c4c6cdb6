# MAE ViT-B/16, 800 epochs: the official recipe of facebookresearch/mae (PRETRAIN.md, main_pretrain.py,
# models_mae.py:mae_vit_base_patch16_dec512d8b). Batch 4096 = 8 GPUs x 512; lr = blr * batch / 256 with blr 1.5e-4;
# AdamW(0.9, 0.95), wd 0.05 (none on 1-D parameters and biases, as timm's add_weight_decay); 40 warm-up epochs from
# zero, then half-cycle cosine to 0 (per iteration); RandomResizedCrop(0.2-1) + flip; norm-pix loss, mask ratio 0.75.
# The recipe is resolved at launch (mim_zoo/engine/recipe.py): on 4 GPUs the batch is 2048 and the lr 1.2e-3, and
# `--cfg-options recipe.epochs=10` (or train_cfg.max_epochs=10) gives a 10-epoch schedule.
from mmengine.config import read_base

from mim_zoo.core.algorithms import MAE
from mim_zoo.core.encoders import ViTEncoder
from mim_zoo.core.masking import RandomMasking
from mim_zoo.core.targets import PixelTarget

with read_base():
    from .._base_.datasets.imagenet_pretrain import *
    from .._base_.default_runtime import *
    from .._base_.schedules.mim_pretrain import *

# The 40 warm-up epochs of the official 800- and 1600-epoch runs; a shorter run warms up for 1/20 of its length.
recipe = dict(num_gpus=8, batch_per_gpu=512, base_lr=1.5e-4, lr_scaling="linear", epochs=800, warmup_epochs=40,
              full_warmup_from=800, min_lr=0.0)

model = dict(
    type=MAE,
    data_preprocessor=data_preprocessor,
    encoder=dict(type=ViTEncoder, arch="vit_base_patch16_224", img_size=img_size, pos_embed="sincos", init="mae"),
    masking=dict(type=RandomMasking, ratio=0.75),
    target=dict(type=PixelTarget, norm="patch"),
    decoder=dict(embed_dim=512, depth=8, num_heads=16),
)
