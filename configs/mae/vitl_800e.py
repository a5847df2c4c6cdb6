# MAE ViT-L/16, 800 epochs (facebookresearch/mae PRETRAIN.md: 64 GPUs x 64 = 4096; models_mae.py
# mae_vit_large_patch16_dec512d8b). Same recipe as ViT-B; gradient checkpointing is available for smaller GPUs.
from mmengine.config import read_base

with read_base():
    from .vitb_800e import *

recipe.update(num_gpus=64, batch_per_gpu=64)
model.encoder.arch = "vit_large_patch16_224"
