# CPU twin of seg_upernet_vit-b16_mae-pre_8xb2-160k_ade20k-512x512.py: the same model (BEiT blocks with new relative
# bias and layer scale, Feature2Pyramid, UPerHead + FCN auxiliary head, 150 classes), optimizer (layer-decayed AdamW),
# schedule shape, pipeline and sliding-window evaluation through mmseg's ADE20KDataset and IoUMetric, on a toy
# ADE20K of 64-px scenes (mim_zoo/synthetic/toy_data.py, written by tools/benchmark.py) for the tiny ViT of
# configs/mae/tiny_cpu.py (64-d, 2 blocks, 4 heads, 4-px patches, 32 px). 8 iterations.
_base_ = './seg_upernet_vit-b16_mae-pre_8xb2-160k_ade20k-512x512.py'

data_root = 'data/generated/toy_ade20k/'
synthetic_data = [dict(type='mim_zoo.synthetic.toy_data.make_toy_dataset',
                       kind='ade20k', root=data_root, num_train=16, num_val=8, size=64, seed=0)]
crop_size = (64, 64)
img_scale = (256, 64)
num_gpus = 1
batch_per_gpu = 2
batch_size = num_gpus * batch_per_gpu
embed_dims = 64
max_iters = 8
warmup_iters = 2
val_interval = max_iters

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(img_size=crop_size, patch_size=4, embed_dims=embed_dims, num_layers=2, num_heads=4,
                  out_indices=[0, 0, 1, 1]),
    neck=dict(embed_dim=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4, channels=32),
    auxiliary_head=dict(in_channels=embed_dims, channels=32),
    test_cfg=dict(crop_size=crop_size, stride=(43, 43)))
# mmseg's ADE20K pipelines with the sizes of the toy scenes: resize to (256, 64) x 0.5-2, crop 64 x 64
sizes = dict(scale=img_scale, crop_size=crop_size)
train_pipeline = [{**step, **{k: v for k, v in sizes.items() if k in step}} for step in _base_.train_pipeline]
test_pipeline = [{**step, **{k: v for k, v in sizes.items() if k in step}} for step in _base_.test_pipeline]
train_dataloader = dict(batch_size=batch_per_gpu, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1),
                     visualization=dict(type='SegVisualizationHook', draw=False))
