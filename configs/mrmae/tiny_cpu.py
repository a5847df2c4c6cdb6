# MR-MAE on CPU in seconds: a 2-block 64-d ViT on the embedded 32x32 shapes (4x4 patches), 8 iterations, mimicking
# two tiny teachers. The teachers are RANDOMLY INITIALISED tiny ViTs written by tools/train.py (mim_zoo/synthetic/teachers.py)
# in the real on-disk layouts: an OpenAI-CLIP TorchScript archive and a DINO state dict. They exercise the loading
# and mimicking code paths only; they teach nothing. Everything else mirrors vitb_400e.py.
from mmengine.config import read_base
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from mmengine.runner import EpochBasedTrainLoop
from torch.optim import AdamW

from mim_zoo.core.algorithms import MRMAE
from mim_zoo.core.encoders import ViTEncoder
from mim_zoo.core.masking import RandomMasking
from mim_zoo.engine.optim import MIMOptimWrapperConstructor
from mim_zoo.core.targets import PixelTarget, TeacherTarget
from mim_zoo.synthetic.teachers import generate_teachers

with read_base():
    from .._base_.datasets.shapes_tiny import *
    from .._base_.default_runtime import *

num_gpus = 1
batch_size = num_gpus * batch_per_gpu
base_lr = 1.5e-4
lr = base_lr * batch_size / 256
max_epochs = 2
warmup_epochs = 1
train_dataloader.dataset.indices = 4 * batch_per_gpu  # 4 iterations per epoch

# Tiny teachers on the student's 8x8 token grid; one set of sizes for writing the files and for loading them.
tiny_teacher = dict(img_size=img_size, patch_size=4, embed_dim=48, depth=2, num_heads=3)
teacher_root = "data/generated/teachers/"
clip_file = teacher_root + "tiny_random_clip_ViT-B-16.pt"
dino_file = teacher_root + "tiny_random_dino_vitbase16_pretrain.pth"
synthetic_data = synthetic_data + [dict(type=generate_teachers, specs=[
    dict(path=clip_file, layout="openai_clip", file_format="torchscript", seed=1, **tiny_teacher),
    dict(path=dino_file, layout="dino", file_format="torch", seed=2, **tiny_teacher),
])]
clip_norm = dict(mean=[122.7709383, 116.7460125, 104.09373615], std=[68.5005327, 66.6321579, 70.32316305])
dino_norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
data_norm = dict(input_mean=data_preprocessor["mean"], input_std=data_preprocessor["std"])

model = dict(
    type=MRMAE,
    data_preprocessor=data_preprocessor,
    encoder=dict(type=ViTEncoder, arch="vit_tiny_patch16_224", img_size=img_size, patch_size=4, embed_dim=64,
                 depth=2, num_heads=4),
    masking=dict(type=RandomMasking, ratio=0.75),
    target=dict(type=PixelTarget, norm="patch"),
    decoder=dict(embed_dim=32, depth=1, num_heads=4),
    teachers=dict(
        clip=dict(type=TeacherTarget, arch="vit_base_patch16_clip_quickgelu_224", checkpoint=clip_file,
                  model_kwargs=tiny_teacher, source="a tiny random teacher written by mim_zoo.synthetic.teachers",
                  **clip_norm, **data_norm),
        dino=dict(type=TeacherTarget, arch="vit_base_patch16_224", checkpoint=dino_file, model_kwargs=tiny_teacher,
                  source="a tiny random teacher written by mim_zoo.synthetic.teachers", **dino_norm, **data_norm),
    ),
    mimic_head=dict(depth=1),
    mimic_loss="mse",
    loss_weights=dict(rec=1.0, mimic_clip=1.0, mimic_dino=1.0),
)
optim_wrapper = dict(
    constructor=MIMOptimWrapperConstructor,  # leaves the frozen target generators out, in one log line
    type=OptimWrapper,
    optimizer=dict(type=AdamW, lr=lr, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-8, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type=EpochBasedTrainLoop, max_epochs=max_epochs)
default_hooks.logger.interval = 1
default_hooks.checkpoint.max_keep_ckpts = 2
