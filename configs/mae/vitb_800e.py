# MAE ViT-B/16, 800 epochs: the official recipe of facebookresearch/mae (PRETRAIN.md, main_pretrain.py,
# models_mae.py:mae_vit_base_patch16_dec512d8b). Batch 4096 = 8 GPUs x 512; lr = blr * batch / 256 with blr 1.5e-4;
# AdamW(0.9, 0.95), wd 0.05 (none on 1-D parameters and biases, as timm's add_weight_decay); 40 warm-up epochs from
# zero, then half-cycle cosine to 0 (per iteration); RandomResizedCrop(0.2-1) + flip; norm-pix loss, mask ratio 0.75.
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
    from .._base_.datasets.imagenet_pretrain import *
    from .._base_.default_runtime import *

num_gpus = 8
batch_per_gpu = 512
batch_size = num_gpus * batch_per_gpu  # 4096; tools/train.py checks it against the launched world size
base_lr = 1.5e-4
lr = base_lr * batch_size / 256
max_epochs = 800
warmup_epochs = 40

train_dataloader.batch_size = batch_per_gpu

model = dict(
    type=MAE,
    data_preprocessor=data_preprocessor,
    encoder=dict(type=ViTEncoder, arch="vit_base_patch16_224", img_size=img_size, pos_embed="sincos", init="mae"),
    masking=dict(type=RandomMasking, ratio=0.75),
    target=dict(type=PixelTarget, norm="patch"),
    decoder=dict(embed_dim=512, depth=8, num_heads=16),
)

optim_wrapper = dict(
    constructor=MIMOptimWrapperConstructor,  # leaves the frozen target generators out, in one log line
    type=OptimWrapper,  # `tools/train.py --amp` switches to mmengine's AmpOptimWrapper (the official runs use AMP)
    optimizer=dict(type=AdamW, lr=lr, betas=(0.9, 0.95), weight_decay=0.05, fused=True),  # fused: same update, one pass
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-8, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type=EpochBasedTrainLoop, max_epochs=max_epochs)
