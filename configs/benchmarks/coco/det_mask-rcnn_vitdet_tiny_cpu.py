# CPU twin of det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-100e_coco.py: the same Mask R-CNN (ViTDet backbone with
# window + global attention and relative positions, simple feature pyramid, 2-conv RPN, 4conv1fc box head and mask
# head with LayerNorm), LSJ pipeline, layer-decayed AdamW and step schedule, trained and evaluated through mmdet's
# CocoDataset and CocoMetric (box and mask AP) on a toy COCO of 64-px scenes (mim_zoo/synthetic/toy_data.py, written
# by tools/benchmark.py) for the tiny ViT of configs/mae/tiny_cpu.py (64-d, 2 blocks, 4-px patches, 32 px).
# With 4-px patches the pyramid strides are 1, 2, 4, 8 (+16); heads are 32 channels wide. 8 iterations.
_base_ = './det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-100e_coco.py'

data_root = 'data/generated/toy_coco/'
synthetic_data = [dict(type='mim_zoo.synthetic.toy_data.make_toy_dataset',
                       kind='coco', root=data_root, num_train=16, num_val=8, size=64, seed=0)]
image_size = (64, 64)
num_gpus = 1
batch_per_gpu = 2
batch_size = num_gpus * batch_per_gpu
patch_size = 4
embed_dim = 64
width = 32
strides = [patch_size // 4, patch_size // 2, patch_size, patch_size * 2, patch_size * 4]
max_iters = 8
milestones = [round(max_iters * 8 / 9), round(max_iters * 26 / 27)]
warmup_iters = 2
val_interval = max_iters
norm_cfg = dict(type='LayerNorm2d', requires_grad=True)
batch_augments = [dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]

model = dict(
    data_preprocessor=dict(batch_augments=batch_augments),
    backbone=dict(img_size=image_size[0], patch_size=patch_size, embed_dim=embed_dim, depth=2, num_heads=4,
                  window_size=4, global_blocks=(1,), pretrain_img_size=32),
    neck=dict(in_channels=embed_dim, out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width, anchor_generator=dict(strides=strides)),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width, featmap_strides=strides[:4]),
        bbox_head=dict(in_channels=width, conv_out_channels=width, fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=width, featmap_strides=strides[:4]),
        mask_head=dict(in_channels=width, conv_out_channels=width)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(score_thr=0.0, max_per_img=20)))

# the full config's LSJ pipelines at 64 x 64: resize to 64 x 0.1-2, crop and pad to 64 x 64
sizes = dict(scale=image_size, crop_size=image_size, size=image_size)
train_pipeline = [{**step, **{k: v for k, v in sizes.items() if k in step}} for step in _base_.train_pipeline]
test_pipeline = [{**step, **{k: v for k, v in sizes.items() if k in step}} for step in _base_.test_pipeline]
train_dataloader = dict(batch_size=batch_per_gpu, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=milestones, gamma=0.1),
]
train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
log_processor = dict(window_size=1)
