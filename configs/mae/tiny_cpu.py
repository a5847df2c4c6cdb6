# MAE on CPU in seconds: vitb_800e.py with a 2-block 64-d ViT (4x4 patches) and a 1-block decoder, on 8 images of each
# of the 10 embedded 32x32 shapes, one process x 16: 2 epochs of 5 iterations, the 800-epoch schedule shrunk to 2
# (0.1 warm-up epochs; mim_zoo/engine/recipe.py). CI trains it.
from mmengine.config import read_base

with read_base():
    from .vitb_800e import *
    from .._base_.datasets.shapes_tiny import *  # replaces the ImageNet data (same normalisation)

recipe.update(num_gpus=1, batch_per_gpu=16, epochs=2)
tiny_vit = dict(model.encoder, arch="vit_tiny_patch16_224", img_size=img_size, patch_size=4, embed_dim=64, depth=2,
                num_heads=4)
model.encoder = tiny_vit
model.decoder = dict(embed_dim=32, depth=1, num_heads=4)
default_hooks.logger.interval = 1
default_hooks.checkpoint.max_keep_ckpts = 2
