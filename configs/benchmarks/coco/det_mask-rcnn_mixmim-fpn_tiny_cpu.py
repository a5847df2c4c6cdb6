# CPU twin of det_mask-rcnn_mixmim-b-fpn_mixmae-pre_8xb2-ms-crop-3x_coco.py: the same Mask R-CNN (MixMIM Swin pyramid
# with padded windows and interpolated positions, FPN, RPN, shared 2-fc box head, mask head), the multi-scale + crop
# augmentation with every size divided by 10, AdamW with the Swin recipe's weight-decay exclusions and a step
# schedule, trained and evaluated through mmdet's CocoDataset and CocoMetric (box and mask AP) on a toy COCO of 64-px
# scenes (mim_zoo/synthetic/toy_data.py, written by tools/benchmark.py), for the tiny MixMIM Swin of
# configs/mixmae/tiny_cpu.py (32-d, depths 1/1/2, heads 1/2/4, 2-px patches, windows 4, 32 px): three stages at
# strides 2/4/8 (+16/32 from FPN's extra levels); heads are 32 channels wide. One epoch of 8 iterations.
_base_ = './det_mask-rcnn_mixmim-b-fpn_mixmae-pre_8xb2-ms-crop-3x_coco.py'

data_root = 'data/generated/toy_coco/'
synthetic_data = [dict(type='mim_zoo.synthetic.toy_data.make_toy_dataset',
                       kind='coco', root=data_root, num_train=16, num_val=8, size=64, seed=0)]
num_gpus = 1
batch_per_gpu = 2
batch_size = num_gpus * batch_per_gpu
channels = [32, 64, 128]
width = 32
strides = [2, 4, 8, 16, 32]
max_epochs = 1
milestones = [round(max_epochs * 27 / 36), round(max_epochs * 33 / 36)]  # the 3x schedule's steps, rescaled
warmup_iters = 2
multi_scales = [(s // 10, 133) for s in range(480, 801, 32)]  # (48, 133) ... (80, 133)

model = dict(
    backbone=dict(
        # `_delete_`: replaces the base's arch='base' string
        arch=dict(_delete_=True, embed_dims=32, depths=[1, 1, 2], num_heads=[1, 2, 4]),
        pretrain_img_size=32, patch_size=2, window_size=[4, 4, 4], out_indices=(0, 1, 2)),
    neck=dict(in_channels=channels, out_channels=width, num_outs=len(strides)),
    rpn_head=dict(in_channels=width, feat_channels=width, anchor_generator=dict(strides=strides)),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width, featmap_strides=strides[:4]),
        bbox_head=dict(in_channels=width, fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=width, featmap_strides=strides[:4]),
        mask_head=dict(in_channels=width, conv_out_channels=width)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(score_thr=0.0, max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice',
         transforms=[
             [dict(type='RandomChoiceResize', scales=multi_scales, keep_ratio=True)],
             [dict(type='RandomChoiceResize', scales=[(40, 133), (50, 133), (60, 133)], keep_ratio=True),
              dict(type='RandomCrop', crop_type='absolute_range', crop_size=(38, 60), allow_negative_crop=True),
              dict(type='RandomChoiceResize', scales=multi_scales, keep_ratio=True)],
         ]),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(133, 80), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=batch_per_gpu, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=milestones, gamma=0.1),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=1)
