# BootMAE on CPU in seconds: vitb_800e.py with a 2-block 64-d ViT on the embedded 32x32 shapes (4x4 patches -> 8x8
# grid), one process x 16, 2 epochs of 5 iterations; the lr schedule, the EMA breakpoints and the feature-weight ramp
# are the 800-epoch ones shrunk to 2. CI trains it. The block mask is scaled to the 64-patch grid (official 120 / 147
# of 196, blocks of 16-60: here 39 / 48 of 64, blocks of 5-20); the pixel decoder keeps a fractional head split (32-d
# with 3 heads of 10, as 512-d with 12 of 42).
from mmengine.config import read_base

from mim_zoo.core.masking import BlockMasking

with read_base():
    from .vitb_800e import *
    from .._base_.datasets.shapes_tiny import *  # replaces the ImageNet data (the model keeps BootMAE's 127.5)

recipe.update(num_gpus=1, batch_per_gpu=16, epochs=2, min_lr=0.0)  # the absolute 1e-4 exceeds this batch's lr
data_preprocessor = model.data_preprocessor  # BootMAE's mean = std = 127.5, not the base's ImageNet statistics
model.encoder.update(arch="vit_tiny_patch16_224", img_size=img_size, patch_size=4, embed_dim=64, depth=2, num_heads=4)
model.masking = dict(type=BlockMasking, num_masking_patches=39, min_num_patches=5, max_num_patches=20, total_masked=48)
model.pixel_decoder.update(embed_dim=32, num_heads=3)
model.feature_decoder.num_heads = 4
default_hooks.logger.interval = 1
default_hooks.checkpoint.max_keep_ckpts = 2
