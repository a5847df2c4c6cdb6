# ImageNet-1k in its usual folder layout (data/imagenet/train/n01440764/*.JPEG), read by mmpretrain's ImageNet.
# Augmentation of MAE / BootMAE / MixMIM pretraining: RandomResizedCrop(224, scale 0.2-1, bicubic) + horizontal flip
# (facebookresearch/mae main_pretrain.py; LightDXY/BootMAE datasets.py; Sense-X/MixMIM main_pretrain.py).
from mmcv.transforms import RandomFlip
from mmengine.dataset import DefaultSampler, default_collate
from mmpretrain.datasets import CenterCrop, ImageNet, PackInputs, RandomResizedCrop, ResizeEdge
from mmpretrain.models import SelfSupDataPreprocessor

from mim_zoo.engine.pipeline import (
                                     DecodeRandomResizedCrop,
                                     DeferredRandomFlip,
                                     NvJpegDataPreprocessor,
                                     PackEncodedInputs,
                                     collate_encoded,
)
from mim_zoo.engine.transforms import CheckedLoadImage

data_root = "data/imagenet/"
img_size = 224

# ImageNet mean/std on 0-255 RGB (MAE, MixMIM); BootMAE overrides with mean = std = 127.5. The batch arrives as
# uint8 (4x less to pin and copy than float) and is normalised on the device.
data_preprocessor = dict(type=SelfSupDataPreprocessor, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         to_rgb=True, non_blocking=True)

# The input pipeline, one switch: `--cfg-options pipeline_impl=mmpretrain` (tools/train.py installs the choice after
# the overrides: mim_zoo.engine.pipeline.apply_pipeline_impl). The three give the same output distribution
# (benchmarks/README.md, "4. The input pipeline"):
#   "fast"        the crop box sampled from the file's header, the JPEG decoded at the smallest DCT scale that keeps
#                 the crop >= 2 x img_size (1/2, 1/4, 1/8), only the crop's region (libjpeg-turbo 3, bundled in the
#                 stack's turbojpeg wheel; else the whole image by OpenCV), then resize with torch's Pillow-filter
#                 kernels
#   "mmpretrain"  mmpretrain's transforms: full decode (OpenCV), crop, Pillow resize, flip
#   "nvjpeg"      CUDA only: the workers read the files and sample the crop boxes; the data preprocessor decodes the
#                 batch with nvjpeg and crops, resizes and flips on the GPU
pipeline_impl = "fast"
crop = dict(scale=img_size, crop_ratio_range=(0.2, 1.0), interpolation="bicubic")
pipelines = dict(
    fast=dict(pipeline=[dict(type=DecodeRandomResizedCrop, **crop, on_corrupt="raise"),  # "skip": skip and count
                        dict(type=RandomFlip, prob=0.5),
                        dict(type=PackInputs)],
              collate_fn=dict(type=default_collate), data_preprocessor=SelfSupDataPreprocessor),
    mmpretrain=dict(pipeline=[dict(type=CheckedLoadImage, on_corrupt="raise"),  # names an unreadable file
                              dict(type=RandomResizedCrop, **crop, backend="pillow"),
                              dict(type=RandomFlip, prob=0.5),
                              dict(type=PackInputs)],
                    collate_fn=dict(type=default_collate), data_preprocessor=SelfSupDataPreprocessor),
    nvjpeg=dict(pipeline=[dict(type=DecodeRandomResizedCrop, **crop, decode="device", on_corrupt="raise"),
                          dict(type=DeferredRandomFlip, prob=0.5),
                          dict(type=PackEncodedInputs)],
                collate_fn=dict(type=collate_encoded), data_preprocessor=NvJpegDataPreprocessor),
)
train_pipeline = pipelines[pipeline_impl]["pipeline"]
train_dataloader = dict(
    num_workers="auto",  # the cores of this process's share of the machine, less one, at most 16
    persistent_workers=True,  # no re-fork (and dataset copy) per epoch
    pin_memory=True,
    prefetch_factor=2,  # batches in flight per worker: 2 x workers x 512 images already cover seconds of GPU time
    drop_last=True,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=pipelines[pipeline_impl]["collate_fn"],
    dataset=dict(type=ImageNet, data_root=data_root, split="train", pipeline=train_pipeline),
)

# Online representation monitors (mim_zoo/engine/hooks/monitors.py), on in every ImageNet config: every 10 epochs (and
# at the start and the end) the k-NN top-1 of 5,000 val images (5 per class, 10% of val) against a bank of 128,000
# train images (128 per class, 10% of train), both class-balanced draws fixed by seed 0, resized to 256 on the short
# side and centre-cropped (mmpretrain's ImageNet test pipeline), and the RankMe and spread of the bank's features.
# Off: `--cfg-options monitors.enabled=False`; the cost is logged with every evaluation.
monitor_pipeline = [dict(type=CheckedLoadImage, on_corrupt="raise"),
                    dict(type=ResizeEdge, scale=256, edge="short", backend="pillow", interpolation="bicubic"),
                    dict(type=CenterCrop, crop_size=img_size),
                    dict(type=PackInputs)]
monitors = dict(
    enabled=True, interval=10,
    bank=dict(batch_size=256, num_workers=8, per_class=128,
              dataset=dict(type=ImageNet, data_root=data_root, split="train", pipeline=monitor_pipeline)),
    query=dict(batch_size=256, num_workers=8, per_class=5,
               dataset=dict(type=ImageNet, data_root=data_root, split="val", pipeline=monitor_pipeline)),
)
