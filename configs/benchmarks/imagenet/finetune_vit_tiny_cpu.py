# CPU twin of finetune_vit-b16_mae-pre_8xb128-coslr-100e_in1k.py: the same model (average pooling + fc_norm, drop
# path), layer-decayed AdamW, RandAugment, erasing, Mixup/CutMix and evaluation on the embedded shapes dataset
# (10 classes, 32 px), for the tiny ViT of configs/mae/tiny_cpu.py (64-d, 2 blocks, 4 heads, 4-px patches).
_base_ = './finetune_vit-b16_mae-pre_8xb128-coslr-100e_in1k.py'

data_root = 'data/generated/shapes32_mini/'
img_size = 32
# written on first use: 8 training and 10 validation images per class
synthetic_data = [dict(type='mim_zoo.synthetic.shapes.make_shapes_dataset', root=data_root,
                       num_train_per_class=8, num_val_per_class=10, size=img_size, seed=0)]
num_gpus = 1
batch_per_gpu = 32
batch_size = num_gpus * batch_per_gpu
lr = _base_.base_lr * batch_size / 256
embed_dims = 64
max_epochs = 2
warmup_epochs = 1

# top level, merged with the base's mean, std and to_rgb (the Runner gives it to a model without one of its own:
# a model.data_preprocessor of only num_classes fed the ViT unnormalised BGR pixels)
data_preprocessor = dict(num_classes=10)
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=embed_dims, num_layers=2, num_heads=4, feedforward_channels=4 * embed_dims),
        img_size=img_size, patch_size=4),
    head=dict(num_classes=10, in_channels=embed_dims))
train_pipeline = [dict(step, scale=img_size) if 'scale' in step else step  # the full config's, 32-px crops
                  for step in _base_.train_pipeline]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=batch_per_gpu, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, eta_min=1e-6, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)  # evaluate once, at the end
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
