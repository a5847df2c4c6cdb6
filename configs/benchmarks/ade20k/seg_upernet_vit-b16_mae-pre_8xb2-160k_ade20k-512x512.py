# ADE20K semantic segmentation with UperNet on a MAE-pretrained ViT-B/16, the MAE/BEiT recipe of mmseg
# (mmseg configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py + _base_/models/upernet_mae.py; BEiT
# semantic_segmentation; MAE paper A.4): BEiT blocks with a zero-initialised relative position bias and layer scale
# initialised to 1 (both new), the pretrained absolute positions resized to 32 x 32, drop path 0.1, features of
# blocks 4/6/8/12 turned into a 4x/2x/1x/0.5x pyramid (Feature2Pyramid), UPerHead (768 channels, pool scales 1/2/3/6)
# + FCN auxiliary head (block 8, weight 0.4), SyncBN; 512 x 512 crops of images resized to (2048, 512) x 0.5-2.0,
# flip, photometric distortion; AdamW lr 1e-4, betas (0.9, 0.999), wd 0.05 (none on 1-D parameters), layer decay
# 0.65, 1500 linear warm-up iterations then poly (power 1) to 0, 160k iterations x 16 images; sliding-window
# inference (512, stride 341), mIoU over the 150 classes.
# tools/benchmark.py sets model.backbone.mim_checkpoint to the pretraining checkpoint.
_base_ = [
    'mmseg::_base_/models/upernet_mae.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mim_zoo.core.downstream.mmseg'], allow_failed_imports=False)

crop_size = (512, 512)
num_gpus = 8
batch_per_gpu = 2
batch_size = num_gpus * batch_per_gpu
lr = 1e-4
layer_decay_rate = 0.65
max_iters = 160000
warmup_iters = 1500
val_interval = 16000
embed_dims = 768

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='MIMBEiT',
        mim_checkpoint=None,
        img_size=crop_size,
        patch_size=16,
        embed_dims=embed_dims,
        num_layers=12,
        num_heads=12,
        mlp_ratio=4,
        init_values=1.0,
        drop_path_rate=0.1,
        out_indices=[3, 5, 7, 11]),
    neck=dict(embed_dim=embed_dims, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[embed_dims] * 4, num_classes=150, channels=embed_dims),
    auxiliary_head=dict(in_channels=embed_dims, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

train_dataloader = dict(batch_size=batch_per_gpu)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

# plain fp32 here; `--amp` (tools/train.py, tools/benchmark.py) switches to AmpOptimWrapper as in the original
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=layer_decay_rate, flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=val_interval, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
