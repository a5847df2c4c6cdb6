# COCO instance segmentation with Mask R-CNN on a MAE-pretrained ViT-B/16, the ViTDet recipe (Li et al., ECCV 2022;
# detectron2 projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py; mmdet
# projects/ViTDet/configs/vitdet_mask-rcnn_vit-b-mae_lsj-100e.py, 51.6 box / 45.7 mask AP with MAE): plain ViT with
# 14 x 14 window attention except in blocks 3, 6, 9, 12, zero-initialised relative positions, drop path 0.1
# (mim_zoo/core/downstream/vitdet.py); simple feature pyramid (4x/2x/1x/0.5x + P6) with channel LayerNorm; RPN with two
# convs; box head 4 convs + 1 fc and mask head with LayerNorm; large-scale jitter (1024, scale 0.1-2.0, crop, pad
# 114), batch 64; AdamW lr 1e-4, betas (0.9, 0.999), wd 0.1 (none on norms and pos_embed), layer decay 0.7, 250
# warm-up iterations, steps x0.1 at 8/9 and 26/27 of 100 epochs (184375 iterations at 118000 images per epoch).
# tools/benchmark.py sets model.backbone.mim_checkpoint to the pretraining checkpoint.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mim_zoo.core.downstream.mmdet'], allow_failed_imports=False)

image_size = (1024, 1024)
num_gpus = 16
batch_per_gpu = 4
batch_size = num_gpus * batch_per_gpu
lr = 1e-4
layer_decay_rate = 0.7
epochs = 100
images_per_epoch = 118000  # ViTDet's count for COCO train2017
max_iters = round(epochs * images_per_epoch / batch_size)  # 184375
milestones = [round(max_iters * 8 / 9), round(max_iters * 26 / 27)]  # [163889, 177546]
warmup_iters = 250
val_interval = 5000
embed_dim = 768
norm_cfg = dict(type='LayerNorm2d', requires_grad=True)
batch_augments = [dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]

model = dict(
    data_preprocessor=dict(pad_size_divisor=32, batch_augments=batch_augments),
    # `_delete_`: replaces the base's ResNet and FPN (their arguments do not apply); STYLE R18's exception for
    # text configs that inherit mmdet's bases
    backbone=dict(
        _delete_=True,
        type='ViTDetBackbone',
        mim_checkpoint=None,
        img_size=image_size[0],
        patch_size=16,
        embed_dim=embed_dim,
        depth=12,
        num_heads=12,
        drop_path_rate=0.1,
        window_size=14,
        global_blocks=(2, 5, 8, 11),
        use_rel_pos=True,
        pretrain_img_size=224),
    neck=dict(_delete_=True, type='SimpleFeaturePyramid', in_channels=embed_dim, out_channels=256,
              scales=(4.0, 2.0, 1.0, 0.5), num_outs=5),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=batch_per_gpu, num_workers=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# plain fp32 here; `--amp` (tools/train.py, tools/benchmark.py) switches to AmpOptimWrapper as in the original
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=layer_decay_rate, norm_decay_mult=0.0,
                       custom_keys={'pos_embed': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=milestones, gamma=0.1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=val_interval, max_keep_ckpts=2, save_last=True))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
auto_scale_lr = dict(base_batch_size=batch_size)
