# The embedded default dataset (mim_zoo/synthetic/shapes.py): 10 shape classes, 32x32 JPEGs in ImageNet's folder layout,
# generated on first use by tools/train.py (see `synthetic_data` below) into data/generated/shapes32.
# A tiny config trains on 8 images of every class (80, seeded: mim_zoo/engine/subsets.py; 5 iterations of 16);
# `--cfg-options train_dataloader.dataset.indices=None` trains on all 2,000.
from mmcv.transforms import RandomFlip
from mmengine.dataset import DefaultSampler, default_collate
from mmpretrain.datasets import CustomDataset, PackInputs, RandomResizedCrop
from mmpretrain.models import SelfSupDataPreprocessor

from mim_zoo.engine.subsets import class_balanced_indices
from mim_zoo.engine.transforms import CheckedLoadImage
from mim_zoo.synthetic.shapes import make_shapes_dataset

data_root = "data/generated/shapes32/"
img_size = 32
pipeline_impl = None  # one pipeline: the ImageNet pipelines (`pipelines`) of a paper config do not apply here
# tools/train.py writes the dataset if it is missing (deterministic for these arguments).
synthetic_data = [dict(type=make_shapes_dataset, root=data_root, num_train_per_class=200, num_val_per_class=50,
                       size=img_size, seed=0)]

data_preprocessor = dict(
    type=SelfSupDataPreprocessor, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True
)
train_pipeline = [
    dict(type=CheckedLoadImage, on_corrupt="raise"),  # names an unreadable file; "skip" skips and counts
    dict(type=RandomResizedCrop, scale=img_size, crop_ratio_range=(0.5, 1.0), backend="pillow",
         interpolation="bicubic"),
    dict(type=RandomFlip, prob=0.5),
    dict(type=PackInputs),
]
train_dataloader = dict(
    num_workers=0,
    drop_last=True,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate),
    dataset=dict(type=CustomDataset, data_root=data_root, data_prefix="train", pipeline=train_pipeline,
                 indices=dict(type=class_balanced_indices, per_class=8, seed=0)),
)

# Online representation monitors (mim_zoo/engine/hooks/monitors.py): off in the tiny configs (their runs take seconds);
# `tools/train.py CONFIG --monitors` switches them on: after every epoch the k-NN top-1 of the held-out val split
# (500 images) against the whole train split (2,000), and the RankMe and spread of the train features.
monitor_pipeline = [dict(type=CheckedLoadImage, on_corrupt="raise"), dict(type=PackInputs)]  # already 32 x 32
monitors = dict(
    enabled=False, interval=1,
    bank=dict(batch_size=250, dataset=dict(type=CustomDataset, data_root=data_root, data_prefix="train",
                                           pipeline=monitor_pipeline)),
    query=dict(batch_size=250, dataset=dict(type=CustomDataset, data_root=data_root, data_prefix="val",
                                            pipeline=monitor_pipeline)),
)
