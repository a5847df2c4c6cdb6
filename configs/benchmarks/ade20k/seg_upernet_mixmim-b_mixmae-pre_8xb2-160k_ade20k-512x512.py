# ADE20K UperNet on a MixMAE-pretrained Swin-B/W14 (MixMIM). MixMIM's segmentation code and settings were not
# released (METHODS.md 4.1, 8), so this is a documented default: mmseg's Swin UperNet (_base_/models/upernet_swin.py:
# UPerHead on the 4 stages, channels 512, FCN auxiliary head on stage 3) with the optimisation of the ViT recipe
# (AdamW lr 1e-4, wd 0.05 with none on 1-D parameters, layer decay 0.65 over the 24 blocks, 1500 warm-up
# iterations + poly, 160k x 16, 512 crops, slide 341) and drop path 0.1. The backbone keeps MixMIM's windows
# [14, 14, 14, 7] (zero-padded) and interpolates its fixed sin-cos positions (mim_zoo/core/downstream/mixmim_pyramid.py).
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
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
channels = [128, 256, 512, 1024]

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    # `_delete_`: mmseg's SwinTransformer arguments do not apply to MixMIM's backbone
    backbone=dict(
        _delete_=True,
        type='MIMMixMIMPyramid',
        mim_checkpoint=None,
        arch='base',
        window_size=[14, 14, 14, 7],
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=channels, num_classes=150),
    auxiliary_head=dict(in_channels=channels[2], num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

train_dataloader = dict(batch_size=batch_per_gpu)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

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
