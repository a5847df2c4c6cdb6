# MR-MAE on CPU in seconds: vitb_400e.py with a 2-block 64-d ViT (4x4 patches) and a 1-block decoder on the embedded
# 32x32 shapes, one process x 16, 2 epochs of 5 iterations (the 400-epoch schedule shrunk to 2), mimicking two tiny
# teachers. The teachers are RANDOMLY INITIALISED tiny ViTs written by tools/train.py (mim_zoo/synthetic/teachers.py)
# in the real on-disk layouts: an OpenAI-CLIP TorchScript archive and a DINO state dict. They exercise the loading
# and mimicking code paths only; they teach nothing.
from mmengine.config import read_base

from mim_zoo.synthetic.teachers import generate_teachers

with read_base():
    from .vitb_400e import *
    from .._base_.datasets.shapes_tiny import *  # replaces the ImageNet data (same normalisation)

recipe.update(num_gpus=1, batch_per_gpu=16, epochs=2)
model.encoder.update(arch="vit_tiny_patch16_224", img_size=img_size, patch_size=4, embed_dim=64, depth=2, num_heads=4)
model.decoder = dict(embed_dim=32, depth=1, num_heads=4)

# Tiny teachers on the student's 8x8 token grid; one set of sizes for writing the files and for loading them.
tiny_teacher = dict(img_size=img_size, patch_size=4, embed_dim=48, depth=2, num_heads=3)
teacher_root = "data/generated/teachers/"
clip_file = teacher_root + "tiny_random_clip_ViT-B-16.pt"
dino_file = teacher_root + "tiny_random_dino_vitbase16_pretrain.pth"
synthetic_data = synthetic_data + [dict(type=generate_teachers, specs=[
    dict(path=clip_file, layout="openai_clip", file_format="torchscript", seed=1, **tiny_teacher),
    dict(path=dino_file, layout="dino", file_format="torch", seed=2, **tiny_teacher),
])]
random_source = "a tiny random teacher written by mim_zoo.synthetic.teachers"
model.teachers.clip.update(checkpoint=clip_file, model_kwargs=tiny_teacher, source=random_source)
model.teachers.dino.update(checkpoint=dino_file, model_kwargs=tiny_teacher, source=random_source)
default_hooks.logger.interval = 1
default_hooks.checkpoint.max_keep_ckpts = 2
