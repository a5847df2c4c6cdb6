# BootMAE ViT-L/16, 800 epochs: vitb_800e.py with the differences of LightDXY/BootMAE@d604b18
# scripts/pretrain/bash_pre_BootMAE_Large_800.sh and models/modeling_pretrain_bootmae.py:bootmae_large:
# * ViT-L (1024-d, 24 blocks, 16 heads); the feature decoder reads block 23 (-1), both decoders use 16 heads
#   (512 / 16 = 32 per head in the pixel decoder: no fractional-head quirk);
# * --batch_size 128 per GPU; the script uses every GPU of one node and the README quotes "16 V100-32GB ... 128*16 =
#   2048", so 16 x 128 = 2048 (the GPU count of the large run is not stated; the launch decides the batch);
# * no --min_lr: the argparse default 1e-5; no --model_ema_dynamic: the EMA momentum plateaus at 0.9999 after epoch 100.
from mmengine.config import read_base

with read_base():
    from .vitb_800e import *

recipe.update(num_gpus=16, batch_per_gpu=128, min_lr=1e-5)
model.encoder.arch = "vit_large_patch16_224"
model.pixel_decoder.num_heads = 16
model.feature_decoder.num_heads = 16
default_hooks.mim_schedule.momentum.points = [(0, 0.999), (100, 0.9999)]
