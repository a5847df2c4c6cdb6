# ImageNet-1k in its usual folder layout (data/imagenet/train/n01440764/*.JPEG), read by mmpretrain's ImageNet.
# Augmentation of MAE / BootMAE / MixMIM pretraining: RandomResizedCrop(224, scale 0.2-1, bicubic) + horizontal flip
# (facebookresearch/mae main_pretrain.py; LightDXY/BootMAE datasets.py; Sense-X/MixMIM main_pretrain.py).
from mmcv.transforms import RandomFlip
from mmengine.dataset import DefaultSampler, default_collate
from mmpretrain.datasets import ImageNet, PackInputs, RandomResizedCrop
from mmpretrain.models import SelfSupDataPreprocessor

from mim_zoo.engine.transforms import CheckedLoadImage

data_root = "data/imagenet/"
img_size = 224

# ImageNet mean/std on 0-255 RGB (MAE, MixMIM); BootMAE overrides with mean = std = 127.5.
data_preprocessor = dict(
    type=SelfSupDataPreprocessor, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True
)
train_pipeline = [
    dict(type=CheckedLoadImage, on_corrupt="raise"),  # names an unreadable file; "skip" skips and counts
    dict(type=RandomResizedCrop, scale=img_size, crop_ratio_range=(0.2, 1.0), backend="pillow",
         interpolation="bicubic"),
    dict(type=RandomFlip, prob=0.5),
    dict(type=PackInputs),
]
train_dataloader = dict(
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate),
    dataset=dict(type=ImageNet, data_root=data_root, split="train", pipeline=train_pipeline),
)
