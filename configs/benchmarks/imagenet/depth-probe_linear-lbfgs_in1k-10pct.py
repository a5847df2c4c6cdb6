# The linear probe of every depth (`tools/benchmark.py CKPT --tasks depth_probe`; mim_zoo/engine/depth_probe.py): the
# frozen encoder's output after every block (ViT: as its class token and as the mean of its patch tokens; MixMIM Swin:
# after every stage, the mean of its tokens) and after the final norm, each fitted by the same L-BFGS logistic
# regression on standardised features (mim_zoo/engine/probes.py: linear_probe, its L2 weight chosen on a held-out fifth
# of train) on a fixed, class-balanced 10% of ImageNet-1k train (128 images per class) and scored on 10% of val (5 per
# class): the split the pretraining monitors use (configs/_base_/datasets/imagenet_pretrain.py). Inputs are normalised
# as the checkpoint's pretraining config normalised them. Features are kept in float16 (26 x 128k x 768 for ViT-B:
# 5 GB).
data_root = 'data/imagenet/'
img_size = 224
test_pipeline = [  # mmpretrain's ImageNet test pipeline
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
probe = dict(
    train=dict(batch_size=256, num_workers=8, per_class=128,
               dataset=dict(type='ImageNet', data_root=data_root, split='train', pipeline=test_pipeline)),
    val=dict(batch_size=256, num_workers=8, per_class=5,
             dataset=dict(type='ImageNet', data_root=data_root, split='val', pipeline=test_pipeline)),
    weight_decays=(1e-4, 1e-3, 1e-2),
    precision='auto',  # bf16 autocast where the device runs it natively
    keep='float16',
)
